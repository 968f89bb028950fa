//! Which queues of a `net_tap` port the kernel sends frames to.
//!
//! A multi-queue TAP interface hands each frame from the kernel to one of
//! its *attached* queues (by the flow's hash, or the queue the flow's last
//! frame from us left on), never to a detached one. When several processes
//! share a `net_tap` port, each polling queue pairs of its own, a queue
//! that no process polls must therefore be detached, or the flows the
//! kernel steers to it are lost; it is attached again when a process takes
//! it. [`TapQueues`] does that for the process that opened the port (the
//! primary, which holds a descriptor per queue; a secondary's are
//! duplicates of the same open files, so it sees the change).
//!
//! The queues are found among this process's open descriptors of
//! `/dev/net/tun` for the interface: `net_tap` opens one per queue pair
//! while setting the queues up, in queue order, so the lowest-numbered is
//! queue 0 (a queue's transmit side holds a `dup` of it, the same open
//! file; the driver's keep-alive descriptor is detached from the start and
//! is not a queue). [`TapQueues::find`] checks that there are exactly as
//! many as the port has queue pairs.
#![allow(unsafe_code)]

use std::ffi::c_char;
use std::os::fd::RawFd;

use super::eal::DpdkError;

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `TUNGETIFF`: `_IOR('T', 210, unsigned int)`.
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
/// `TUNSETQUEUE`: `_IOW('T', 217, int)`.
const TUNSETQUEUE: libc::c_ulong = 0x4004_54d9;
const IFF_TAP: libc::c_short = libc::IFF_TAP as libc::c_short;
const IFF_MULTI_QUEUE: libc::c_short = libc::IFF_MULTI_QUEUE as libc::c_short;
const IFF_ATTACH_QUEUE: libc::c_short = libc::IFF_ATTACH_QUEUE as libc::c_short;
const IFF_DETACH_QUEUE: libc::c_short = libc::IFF_DETACH_QUEUE as libc::c_short;

/// `struct ifreq` as the TUN ioctls use it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

impl IfReq {
    fn new() -> IfReq {
        IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _rest: [0; 22],
        }
    }
}

/// The queue descriptors of one TAP interface; see the module
/// documentation.
#[derive(Debug)]
pub struct TapQueues {
    iface: String,
    fds: Vec<RawFd>,
    attached: Vec<bool>,
}

impl TapQueues {
    /// The `queues` queue descriptors that a `net_tap` port of this process
    /// opened on interface `iface`, all attached. Fails with `ENOENT` when
    /// their number is not `queues` (no such port here, or a driver that
    /// opens them otherwise).
    ///
    /// Whether a queue is attached cannot be read, only tried: each
    /// candidate is detached (the kernel refuses, `EINVAL`, for one that
    /// already is: `net_tap`'s keep-alive) and attached again at once. Call
    /// it while the port carries no traffic (right after it started).
    pub fn find(iface: &str, queues: u16) -> Result<TapQueues, DpdkError> {
        let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| {
            DpdkError::new("TapQueues::find", e.raw_os_error().unwrap_or(libc::EIO)).with("/proc/self/fd")
        })?;
        let mut fds: Vec<RawFd> = dir
            .filter_map(|e| {
                let e = e.ok()?;
                let fd: RawFd = e.file_name().to_str()?.parse().ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                (target.as_os_str() == "/dev/net/tun" && interface_of(fd).as_deref() == Some(iface))
                    .then_some(fd)
            })
            .collect();
        fds.sort_unstable();
        // A queue's receive and transmit sides may hold descriptors of one
        // open file (a `dup`): one per file, the first.
        let mut distinct: Vec<RawFd> = Vec::with_capacity(fds.len());
        for fd in fds {
            if !distinct.iter().any(|&d| same_file(d, fd)) {
                distinct.push(fd);
            }
        }
        let mut attached = Vec::with_capacity(distinct.len());
        for fd in distinct {
            match set_queue(fd, false) {
                Ok(()) => {
                    set_queue(fd, true).map_err(|e| {
                        DpdkError::new("TUNSETQUEUE", e).with(format_args!("attaching {iface} again"))
                    })?;
                    attached.push(fd);
                }
                Err(libc::EINVAL) => {} // detached already
                Err(e) => {
                    return Err(DpdkError::new("TUNSETQUEUE", e).with(format_args!("a queue of {iface}")));
                }
            }
        }
        if attached.len() != usize::from(queues) {
            return Err(DpdkError::new("TapQueues::find", libc::ENOENT).with(format_args!(
                "{} attached queues of {iface} in this process, {queues} expected",
                attached.len()
            )));
        }
        Ok(TapQueues {
            iface: iface.to_owned(),
            attached: vec![true; attached.len()],
            fds: attached,
        })
    }

    /// How many queue pairs.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The descriptor of `queue` (this process's; the driver owns it), to
    /// poll for frames or to pass to another process.
    pub fn fd(&self, queue: u16) -> Option<RawFd> {
        self.fds.get(usize::from(queue)).copied()
    }

    /// Stops the kernel's per-frame signal (`O_ASYNC`, net_tap's Rx
    /// trigger) on every queue: a port owner that never polls has no use
    /// for it, and the processes that poll the queues read them whether
    /// signalled or not (the trigger is per process, and theirs never
    /// moves). Fails with the kernel's error.
    pub fn quiet_signals(&self) -> Result<(), DpdkError> {
        for (q, &fd) in self.fds.iter().enumerate() {
            // SAFETY: F_GETFL/F_SETFL on a descriptor of this process.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            // SAFETY: as above.
            if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_ASYNC) } < 0 {
                let e = std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                return Err(
                    DpdkError::new("fcntl(F_SETFL)", e).with(format_args!("queue {q} of {}", self.iface))
                );
            }
        }
        Ok(())
    }

    /// Whether the kernel sends frames to `queue`.
    pub fn is_attached(&self, queue: u16) -> bool {
        self.attached.get(usize::from(queue)).copied().unwrap_or(false)
    }

    /// Attaches `queue` (the kernel may send it frames) or detaches it (the
    /// kernel sends its flows to the attached queues). `EINVAL` for a queue
    /// past the last; the kernel's error if the ioctl fails (detaching the
    /// last attached queue is refused: the interface would go down).
    pub fn set_attached(&mut self, queue: u16, on: bool) -> Result<(), DpdkError> {
        let q = usize::from(queue);
        let Some(&fd) = self.fds.get(q) else {
            return Err(
                DpdkError::new("TapQueues::set_attached", libc::EINVAL).with(format_args!(
                    "{} has {} queues; {queue} asked",
                    self.iface,
                    self.fds.len()
                )),
            );
        };
        if self.attached[q] == on {
            return Ok(());
        }
        if !on && self.attached.iter().filter(|&&a| a).count() == 1 {
            return Err(
                DpdkError::new("TapQueues::set_attached", libc::EBUSY).with(format_args!(
                    "queue {queue} is the last attached queue of {}",
                    self.iface
                )),
            );
        }
        set_queue(fd, on).map_err(|e| {
            DpdkError::new("TUNSETQUEUE", e).with(format_args!("queue {queue} of {}", self.iface))
        })?;
        self.attached[q] = on;
        Ok(())
    }
}

/// Whether descriptors `a` and `b` of this process refer to one open file
/// (`kcmp(2)`; if the kernel cannot tell, they are taken as different).
fn same_file(a: RawFd, b: RawFd) -> bool {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: kcmp only compares kernel objects of this process.
    let pid = unsafe { libc::getpid() };
    // SAFETY: as above; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_FILE,
            a as libc::c_long,
            b as libc::c_long,
        )
    };
    rc == 0
}

/// `ioctl(fd, req, ifr)` as a raw system call (the shim, which calls
/// these, intercepts `ioctl`); the errno.
fn tun_ioctl(fd: RawFd, req: libc::c_ulong, ifr: &mut IfReq) -> Result<(), i32> {
    // SAFETY: the TUN ioctls read or write one `struct ifreq`, which `ifr`
    // is; on a descriptor that is not a TUN queue they fail.
    let rc = unsafe { libc::syscall(libc::SYS_ioctl, fd, req, ifr as *mut IfReq) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(())
}

/// Attaches (`on`) or detaches TUN queue descriptor `fd`; the errno.
pub fn set_queue(fd: RawFd, on: bool) -> Result<(), i32> {
    let mut req = IfReq::new();
    req.flags = if on { IFF_ATTACH_QUEUE } else { IFF_DETACH_QUEUE };
    tun_ioctl(fd, TUNSETQUEUE, &mut req)
}

/// A new queue of the multi-queue TAP interface `iface` (opened
/// non-blocking and close-on-exec, with raw system calls), detached: it
/// gets no frames until [`set_queue`] attaches it. The errno.
pub fn open_queue(iface: &str) -> Result<RawFd, i32> {
    let mut req = IfReq::new();
    if iface.len() >= req.name.len() || iface.contains('\0') {
        return Err(libc::EINVAL);
    }
    for (d, s) in req.name.iter_mut().zip(iface.bytes()) {
        *d = s as c_char;
    }
    // Only the queue count must agree with the interface's flags; the rest
    // are the interface's, set when it was made.
    req.flags = IFF_TAP | IFF_MULTI_QUEUE;
    let path = c"/dev/net/tun";
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    let fd = fd as RawFd;
    let r = tun_ioctl(fd, TUNSETIFF, &mut req).and_then(|()| set_queue(fd, false));
    if let Err(e) = r {
        // SAFETY: ours, unused.
        unsafe { libc::syscall(libc::SYS_close, fd) };
        return Err(e);
    }
    Ok(fd)
}

/// The interface of TUN descriptor `fd` (attached or detached), `None` if
/// it is not one.
pub fn interface_of(fd: RawFd) -> Option<String> {
    let mut req = IfReq::new();
    tun_ioctl(fd, TUNGETIFF, &mut req).ok()?;
    let bytes: Vec<u8> = req
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ifreq_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), std::mem::size_of::<libc::ifreq>());
        assert_eq!(std::mem::offset_of!(IfReq, flags), libc::IFNAMSIZ);
    }

    #[test]
    fn a_descriptor_that_is_not_a_tun_queue_names_no_interface() {
        let f = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(interface_of(f.as_raw_fd()), None);
    }

    #[test]
    fn a_dup_is_the_same_file_and_another_open_is_not() {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("/dev/null").unwrap();
        let g = f.try_clone().unwrap();
        let h = std::fs::File::open("/dev/null").unwrap();
        assert!(same_file(f.as_raw_fd(), g.as_raw_fd()));
        assert!(!same_file(f.as_raw_fd(), h.as_raw_fd()));
    }

    #[test]
    fn without_a_port_there_are_no_queues_to_find() {
        let e = TapQueues::find("accel-none0", 2).unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT, "{e}");
        assert!(e.to_string().contains("0 attached queues"), "{e}");
    }
}
