//! A doorbell between the two ends of a `net_memif` link, so that an idle
//! end sleeps instead of polling.
//!
//! DPDK 22.11's memif has no Rx interrupt: a receiver that polls every
//! millisecond costs about 7 % of a core here when idle. Both ends of our
//! memif links are accel stacks, so they ring each other instead: a
//! receiver about to sleep on queue pair `q` marks itself asleep in a page
//! both ends map (`/dev/shm/accel-bell-ID`, ID naming the link), checks
//! the queue once more, and sleeps on a datagram socket of its own (the
//! *bell*, abstract `accel-bell-ID-ROLE-q`); a sender that has put frames
//! on queue pair `q` looks at the mark and, if set, clears it and sends
//! one byte to the bell. The mark is stored, then the queue checked; the
//! frames are stored, then the mark checked, each with a full fence
//! between: one of the two sees the other, so no frame sleeps unnoticed.
//!
//! A receiver sleeps on the bell only while the process that sends to it
//! on that queue pair rings (it wrote its pid in the page, and lives: as
//! seen within the last 100 ms, so that arming makes no system call), or
//! while the link is down (a peer that comes rings every bell of its
//! queue pairs once, as it starts); otherwise (a peer that is not accel)
//! it keeps polling.
//! The socket and page calls are raw system calls: this code runs inside
//! the shim, which must not call what it intercepts on its own behalf.
#![allow(unsafe_code)]

use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Queue pairs a page has marks for (memif's own limit is 255).
pub const MAX_QUEUES: usize = 256;

/// The page both ends map: per role (server 0, client 1) and queue pair,
/// whether the receiver sleeps, and the pid of the process that sends on
/// it (0: none yet).
#[repr(C)]
struct Page {
    asleep: [[AtomicU32; MAX_QUEUES]; 2],
    ringer: [[AtomicI32; MAX_QUEUES]; 2],
}

/// One end's view of a link's bells; see the module documentation.
pub(crate) struct Bell {
    page: *const Page,
    /// The page's file, open (and so locked shared: see
    /// [`bell_page`](super::bell_page)) while the page is mapped.
    file: i32,
    /// 0 if this end is the memif server, 1 if the client.
    role: usize,
    /// The link's name in the bells' names.
    id: String,
    /// An unbound socket to ring the peer's bells from.
    sender: i32,
    /// Per queue pair, the peer's ringer last seen alive: its pid (high 32
    /// bits) and when (the coarse clock's milliseconds, low 32 bits), so
    /// that arming, which the shim does under the stack's lock before
    /// every sleep, makes no system call (see [`Bell::peer_rings`]).
    alive: Box<[AtomicU64]>,
}

/// How long a ringer seen alive is taken to be (ms): a peer that died is
/// noticed within this, and the end then polls as with a peer that is not
/// accel.
const ALIVE_FOR_MS: u32 = 100;

/// The coarse monotonic clock, in milliseconds (wrapping).
fn coarse_ms() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable; CLOCK_MONOTONIC_COARSE always exists (vDSO).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000) as u32
}

// SAFETY: the page is shared memory of atomics, valid until drop; the
// sender socket is used with sendto only, which is thread-safe.
unsafe impl Send for Bell {}
// SAFETY: as for Send.
unsafe impl Sync for Bell {}

/// An abstract `sockaddr_un` for `name`, and its length.
fn abstract_addr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: all zeroes is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let room = addr.sun_path.len() - 1;
    let bytes = &name.as_bytes()[..name.len().min(room)];
    for (d, s) in addr.sun_path.iter_mut().skip(1).zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + bytes.len();
    (addr, len as libc::socklen_t)
}

/// A nonblocking close-on-exec datagram socket.
fn dgram() -> Result<i32, i32> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd as i32)
    }
}

use super::bell_page::{self, close, errno};

/// Where the pages are.
const DIR: &str = "/dev/shm";

/// Whether no process rings in the page open as `fd` any more: each
/// ringer is unset or names a process that is gone (see
/// [`bell_page::sweep`]). A page too short to hold the ringers has none.
fn ringers_gone(fd: i32) -> bool {
    let mut buf = vec![0u8; std::mem::size_of::<Page>()];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::syscall(libc::SYS_pread64, fd, buf.as_mut_ptr(), buf.len(), 0) };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    let ringers = buf.get(std::mem::offset_of!(Page, ringer)..n).unwrap_or_default();
    ringers.chunks_exact(4).all(|b| {
        let pid = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        // SAFETY: kill with signal 0 only checks that the process exists
        // (EPERM: it does, as another user's).
        pid <= 0 || (unsafe { libc::syscall(libc::SYS_kill, pid, 0) } != 0 && errno() == libc::ESRCH)
    })
}

impl Bell {
    /// This end (`server` or client) of the link named `id` (letters,
    /// digits, `-`); fails with the errno of what failed.
    pub fn open(id: &str, server: bool) -> Result<Bell, i32> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(libc::EINVAL);
        }
        let name = format!("{}{id}", bell_page::PREFIX);
        let fd = bell_page::open(DIR, &name)?;
        let size = std::mem::size_of::<Page>();
        // SAFETY: ftruncate and mmap on our descriptor; growing a new file
        // zero-fills it (no mark set, no ringer), an existing one keeps
        // the other end's marks.
        let page = unsafe {
            if libc::syscall(libc::SYS_ftruncate, fd, size) != 0 {
                let e = errno();
                close(fd);
                return Err(e);
            }
            let p = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            if p == libc::MAP_FAILED {
                let e = errno();
                close(fd);
                return Err(e);
            }
            p as *const Page
        };
        let sender = match dgram() {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: the mapping made above, unused.
                unsafe { libc::munmap(page as *mut libc::c_void, size) };
                close(fd);
                return Err(e);
            }
        };
        // Pages of links whose processes are all gone go now.
        bell_page::sweep(DIR, &name, ringers_gone);
        Ok(Bell {
            page,
            file: fd,
            role: usize::from(!server),
            id: id.to_owned(),
            sender,
            alive: (0..MAX_QUEUES).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn page(&self) -> &Page {
        // SAFETY: mapped for the life of `self`; a page of atomics.
        unsafe { &*self.page }
    }

    fn name(&self, role: usize, q: u16) -> String {
        format!("accel-bell-{}-{role}-{q}", self.id)
    }

    /// The bell of queue pair `q` at this end: a socket that becomes
    /// readable when the peer rings; also marks this process as the one
    /// that rings the peer's bell of `q`. Fails with `EADDRINUSE` if
    /// another process has it.
    pub fn listen(&self, q: u16) -> Result<i32, i32> {
        if usize::from(q) >= MAX_QUEUES {
            return Err(libc::EINVAL);
        }
        let fd = dgram()?;
        let (addr, len) = abstract_addr(&self.name(self.role, q));
        // SAFETY: `addr` is a sockaddr_un of `len` bytes.
        let rc = unsafe { libc::syscall(libc::SYS_bind, fd, &addr as *const libc::sockaddr_un, len) };
        if rc != 0 {
            let e = errno();
            close(fd);
            return Err(e);
        }
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        self.page().ringer[self.role][usize::from(q)].store(pid, Ordering::SeqCst);
        // Hello: a peer asleep while nobody rang it (no link) wakes, and
        // finds a ringer from now on.
        self.send(1 - self.role, q);
        Ok(fd)
    }

    /// Whether the peer's end of queue pair `q` rings this end's bell (its
    /// ringer is set and alive).
    pub fn peer_rings(&self, q: u16) -> bool {
        let Some(r) = self.page().ringer[1 - self.role].get(usize::from(q)) else {
            return false;
        };
        let pid = r.load(Ordering::SeqCst);
        if pid <= 0 {
            return false;
        }
        let now = coarse_ms();
        let seen = self.alive.get(usize::from(q));
        if let Some(seen) = seen {
            let v = seen.load(Ordering::Relaxed);
            if (v >> 32) as u32 == pid as u32 && now.wrapping_sub(v as u32) < ALIVE_FOR_MS {
                return true;
            }
        }
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = unsafe { libc::syscall(libc::SYS_kill, pid, 0) } == 0;
        if let (true, Some(seen)) = (alive, seen) {
            seen.store(u64::from(pid as u32) << 32 | u64::from(now), Ordering::Relaxed);
        }
        alive
    }

    /// Marks this end asleep on queue pair `q` (then check the queue once
    /// more before sleeping).
    pub fn arm(&self, q: u16) {
        if let Some(m) = self.page().asleep[self.role].get(usize::from(q)) {
            m.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
        }
    }

    /// Marks this end awake on queue pair `q`.
    pub fn disarm(&self, q: u16) {
        if let Some(m) = self.page().asleep[self.role].get(usize::from(q)) {
            m.store(0, Ordering::Relaxed);
        }
    }

    /// After frames were put on queue pair `q`: rings the peer's bell if
    /// the peer sleeps there. Returns whether it rang.
    pub fn ring(&self, q: u16) -> bool {
        let peer = 1 - self.role;
        fence(Ordering::SeqCst);
        let Some(m) = self.page().asleep[peer].get(usize::from(q)) else {
            return false;
        };
        if m.load(Ordering::Relaxed) == 0
            || m.compare_exchange(1, 0, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        self.send(peer, q);
        true
    }

    /// Rings this end's own bell of `q` (a sleeper that found frames while
    /// arming wakes at once).
    pub fn ring_self(&self, q: u16) {
        self.send(self.role, q);
    }

    fn send(&self, role: usize, q: u16) {
        let (addr, len) = abstract_addr(&self.name(role, q));
        let byte = [1u8];
        // SAFETY: `byte` and `addr` are live for their lengths. A full bell
        // (the sleeper has not drained it) already wakes it: EAGAIN is fine.
        unsafe {
            libc::syscall(
                libc::SYS_sendto,
                self.sender,
                byte.as_ptr(),
                1usize,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                &addr as *const libc::sockaddr_un,
                len,
            )
        };
    }

    /// Empties bell socket `fd` (what rang while this end was awake).
    pub fn drain(fd: i32) {
        let mut buf = [0u8; 64];
        // SAFETY: `buf` is writable for its length; nonblocking socket.
        while unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                fd,
                buf.as_mut_ptr(),
                buf.len(),
                libc::MSG_DONTWAIT,
                0usize,
                0usize,
            )
        } > 0
        {}
    }
}

impl Drop for Bell {
    fn drop(&mut self) {
        close(self.sender);
        close(self.file);
        // SAFETY: the mapping made in `open`, no longer used.
        unsafe { libc::munmap(self.page as *mut libc::c_void, std::mem::size_of::<Page>()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> String {
        format!("test-{}-{:?}", std::process::id(), std::thread::current().id())
            .replace(['(', ')'], "")
            .replace("ThreadId", "t")
    }

    fn readable(fd: i32, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    #[test]
    fn a_sleeping_end_is_rung_once_and_an_awake_one_never() {
        let id = id();
        let server = Bell::open(&id, true).unwrap();
        let client = Bell::open(&id, false).unwrap();
        let s3 = server.listen(3).unwrap();
        let c3 = client.listen(3).unwrap();
        assert!(server.peer_rings(3) && client.peer_rings(3));
        // The client's hello woke the server's bell.
        assert!(readable(s3, 1000));
        Bell::drain(s3);
        assert!(!server.peer_rings(4), "nobody rings queue pair 4");
        // Awake: sending rings nothing.
        assert!(!client.ring(3));
        assert!(!readable(s3, 0));
        // Asleep: the first send rings, the next ones do not (one wake).
        server.arm(3);
        assert!(client.ring(3));
        assert!(!client.ring(3));
        assert!(readable(s3, 1000));
        Bell::drain(s3);
        assert!(!readable(s3, 0));
        // The other way, and a ring of one's own.
        client.arm(3);
        assert!(server.ring(3));
        assert!(readable(c3, 1000));
        Bell::drain(c3);
        server.ring_self(3);
        assert!(readable(s3, 1000));
        server.disarm(3);
        assert!(!client.ring(3));
        for fd in [s3, c3] {
            close(fd);
        }
        let _ = std::fs::remove_file(format!("/dev/shm/accel-bell-{id}"));
    }

    #[test]
    fn a_second_listener_on_one_queue_pair_and_bad_names_are_refused() {
        let id = id();
        let a = Bell::open(&id, true).unwrap();
        let b = Bell::open(&id, true).unwrap();
        let fd = a.listen(0).unwrap();
        assert_eq!(b.listen(0), Err(libc::EADDRINUSE));
        assert_eq!(a.listen(MAX_QUEUES as u16).err(), Some(libc::EINVAL));
        assert_eq!(Bell::open("a/b", true).err(), Some(libc::EINVAL));
        assert_eq!(Bell::open("", true).err(), Some(libc::EINVAL));
        close(fd);
        let _ = std::fs::remove_file(format!("/dev/shm/accel-bell-{id}"));
    }

    #[test]
    fn a_page_is_gone_for_the_sweep_once_its_ringers_are() {
        let id = id();
        let bell = Bell::open(&id, true).unwrap();
        assert!(ringers_gone(bell.file), "nobody rings yet");
        bell.page().ringer[1][7].store(i32::MAX, Ordering::SeqCst);
        assert!(ringers_gone(bell.file), "a ringer that is not alive");
        let fd = bell.listen(7).unwrap();
        assert!(!ringers_gone(bell.file), "this process rings");
        close(fd);
        let _ = std::fs::remove_file(format!("/dev/shm/accel-bell-{id}"));
    }

    #[test]
    fn a_dead_ringer_does_not_count() {
        let id = id();
        let server = Bell::open(&id, true).unwrap();
        // A pid that is not alive (the highest possible, never a process).
        server.page().ringer[1][5].store(i32::MAX, Ordering::SeqCst);
        assert!(!server.peer_rings(5));
        let _ = std::fs::remove_file(format!("/dev/shm/accel-bell-{id}"));
    }

    #[test]
    fn a_ringer_seen_alive_is_not_asked_again_but_a_new_one_is() {
        let id = id();
        let server = Bell::open(&id, true).unwrap();
        let me = std::process::id() as i32;
        server.page().ringer[1][6].store(me, Ordering::SeqCst);
        assert!(server.peer_rings(6));
        let seen = server.alive[6].load(Ordering::Relaxed);
        assert_eq!((seen >> 32) as i32, me, "the live ringer is remembered");
        // Within ALIVE_FOR_MS the same ringer is taken as alive.
        assert!(server.peer_rings(6));
        // Another ringer (the peer restarted, or a dead one) is asked.
        server.page().ringer[1][6].store(i32::MAX, Ordering::SeqCst);
        assert!(!server.peer_rings(6), "a new ringer that is not alive");
        let _ = std::fs::remove_file(format!("/dev/shm/accel-bell-{id}"));
    }
}
