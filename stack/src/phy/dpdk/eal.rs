//! The DPDK Environment Abstraction Layer: started once per process,
//! cleaned up when the last handle goes, and errors that carry DPDK's own
//! reason.
//!
//! [`Eal::init`] runs `rte_eal_init` at most once per process: a second
//! call while it runs, or after it was cleaned up (DPDK cannot start
//! again), is an [`EALREADY`](libc::EALREADY) error, and so is a call
//! racing with another thread's. A failed start that DPDK lets us retry
//! (bad arguments) may be retried. `rte_eal_init` pins the calling thread
//! to the main lcore's CPU; the thread's affinity is saved before and
//! restored after, so the caller's threads keep running where they ran.
//!
//! [`Eal`] is a cheap, cloneable handle: every device holds one, so the
//! EAL outlives its ports, and `rte_eal_cleanup` runs when the last handle
//! is dropped, unless a port left mbufs in the hands of its user (see
//! [`Eal::keep_memory`]), in which case DPDK's memory stays mapped until
//! the process exits so those mbufs stay valid.
//!
//! DPDK's log goes to standard error (not to standard output and syslog,
//! DPDK's default), and its recent errors are kept so that a
//! failure can say what DPDK said ([`DpdkError::detail`]). Every `--vdev`
//! given must create an Ethernet port: a driver that rejects its arguments
//! makes [`Eal::init`] fail instead of leaving a silently missing port.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::{Duration, Instant as Clock};

use accel_dpdk_sys as sys;

/// Why a DPDK operation failed: the operation, DPDK's error number
/// (`rte_errno`, or the negated return value of an ethdev call) and, where
/// there is one, more context (which port or argument, what DPDK logged).
///
/// Built only on the error path; it never panics and carries no pointer
/// into DPDK, so it outlives the EAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkError {
    op: &'static str,
    errno: i32,
    detail: Option<Box<str>>,
}

impl DpdkError {
    /// An error of `op` with error number `errno` (positive).
    pub(crate) fn new(op: &'static str, errno: i32) -> DpdkError {
        DpdkError {
            op,
            errno: errno.abs(),
            detail: None,
        }
    }

    /// An error of `op` with the calling thread's `rte_errno`.
    pub(crate) fn last(op: &'static str) -> DpdkError {
        // SAFETY: reads the calling thread's rte_errno; no preconditions.
        DpdkError::new(op, unsafe { sys::rte_errno() })
    }

    /// Adds context, after any already there.
    pub(crate) fn with(mut self, detail: impl fmt::Display) -> DpdkError {
        self.detail = Some(match self.detail.take() {
            Some(old) => format!("{old}; {detail}").into(),
            None => detail.to_string().into(),
        });
        self
    }

    /// Adds the errors DPDK logged since [`log_mark`], if any.
    pub(crate) fn with_log(self) -> DpdkError {
        match take_log() {
            Some(log) => self.with(format_args!("DPDK said: {log}")),
            None => self,
        }
    }

    /// The DPDK call or step that failed (`"rte_eal_init"`, ...).
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The error number (positive): a Linux errno, or one of DPDK's own
    /// (`E_RTE_SECONDARY`, `E_RTE_NO_CONFIG`).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// DPDK's text for [`errno`](Self::errno) (`rte_strerror`).
    pub fn reason(&self) -> String {
        // SAFETY: rte_strerror accepts any value and needs no EAL; it
        // returns a NUL-terminated string (static, or in a per-thread
        // buffer) that stays valid until the next call on this thread,
        // and it is copied out at once.
        let text = unsafe { CStr::from_ptr(sys::rte_strerror(self.errno)) };
        text.to_string_lossy().into_owned()
    }

    /// More context: the port or argument concerned, what DPDK logged.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {} (errno {})", self.op, self.reason(), self.errno)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DpdkError {}

/// Never started; `rte_eal_init` may be called.
const UNINIT: u8 = 0;
/// `rte_eal_init` is running on some thread.
const STARTING: u8 = 1;
/// Running.
const UP: u8 = 2;
/// Cleaned up, or in a state DPDK cannot start from again.
const DONE: u8 = 3;

/// Where this process's EAL is.
static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// A handle on the running EAL; see the module documentation.
#[derive(Clone)]
pub struct Eal {
    inner: Arc<EalInner>,
}

struct EalInner {
    /// How long `rte_eal_init` took.
    startup: Duration,
    /// Ports that left mbufs with their user: DPDK's memory must stay.
    kept: AtomicUsize,
}

impl Eal {
    /// The arguments accel starts DPDK with when nothing else is
    /// configured: 256 MB of ordinary (not huge-page) memory, no shared
    /// configuration files, no PCI scan (which would take over this
    /// machine's own NIC), and the given virtual devices (`"net_tap0"`,
    /// `"net_ring0"`, `"net_memif0,role=server,socket=/run/x.sock"`).
    ///
    /// (`--no-huge` cannot be combined with `--in-memory`.)
    pub fn default_args(vdevs: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["--no-huge", "-m", "256", "--no-shconf", "--no-pci"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for vdev in vdevs {
            args.push("--vdev".to_owned());
            args.push((*vdev).to_owned());
        }
        args
    }

    /// The arguments of a process in DPDK's multi-process model, where one
    /// port is shared by several processes: the primary (`secondary`
    /// false) creates the virtual devices `vdevs` and `mem_mb` MB of
    /// shared memory, in huge pages (which [`hugepages_ready`] checks
    /// for); a secondary finds the primary by `prefix` (its runtime files
    /// under `/var/run/dpdk/<prefix>`) and sees its ports without naming
    /// them. Neither scans PCI.
    pub fn multi_process_args(prefix: &str, secondary: bool, mem_mb: u32, vdevs: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--file-prefix".into(),
            prefix.into(),
            "--proc-type".into(),
            if secondary { "secondary" } else { "primary" }.into(),
            "--no-pci".into(),
        ];
        if !secondary {
            args.extend(["-m".into(), mem_mb.to_string()]);
            for vdev in vdevs {
                args.push("--vdev".to_owned());
                args.push((*vdev).to_owned());
            }
        }
        args
    }

    /// Starts DPDK's EAL with `args` (EAL arguments only, without a program
    /// name: see [`default_args`](Self::default_args)).
    ///
    /// Fails with `EALREADY` if the EAL was started (or cleaned up) in this
    /// process before; with `EINVAL` for an argument holding a NUL byte;
    /// with DPDK's error when `rte_eal_init` fails; and with `ENODEV` when a
    /// `--vdev` did not create an Ethernet port (its driver rejected the
    /// arguments: the EAL is then cleaned up again). DPDK's logged reason is
    /// in the error's [`detail`](DpdkError::detail).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if STATE
            .compare_exchange(UNINIT, STARTING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(DpdkError::new("rte_eal_init", libc::EALREADY)
                .with("the EAL can be started once per process, and it already was"));
        }
        match Eal::start(args) {
            Ok(eal) => {
                STATE.store(UP, Ordering::Release);
                Ok(eal)
            }
            Err((error, retry)) => {
                STATE.store(if retry { UNINIT } else { DONE }, Ordering::Release);
                Err(error)
            }
        }
    }

    /// `init` once the state is ours; the error says whether DPDK may be
    /// started again.
    fn start(args: &[String]) -> Result<Eal, (DpdkError, bool)> {
        let mut argv = Vec::with_capacity(args.len() + 2);
        for (i, arg) in std::iter::once("accel")
            .chain(args.iter().map(String::as_str))
            .enumerate()
        {
            let arg = CString::new(arg).map_err(|_| {
                let error = DpdkError::new("rte_eal_init", libc::EINVAL)
                    .with(format_args!("argument {i} ({arg:?}) contains a NUL byte"));
                (error, true)
            })?;
            // DPDK may keep pointers into argv (getopt, device arguments):
            // the strings live as long as the process, and are few.
            argv.push(arg.into_raw());
        }
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());
        let argc = (argv.len() - 1) as c_int;

        install_log();
        log_mark();
        let affinity = Affinity::save();
        let clock = Clock::now();
        // SAFETY: argv holds argc valid NUL-terminated strings and a NULL,
        // all leaked so they outlive DPDK; STATE guarantees no other call
        // of rte_eal_init in this process is running or has succeeded.
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        let startup = clock.elapsed();
        let errno = if rc < 0 {
            // SAFETY: reads the calling thread's rte_errno.
            unsafe { sys::rte_errno() }
        } else {
            0
        };
        if let Some(affinity) = affinity {
            affinity.restore();
        }
        if rc < 0 {
            // DPDK lets a start that failed on its arguments be retried; it
            // answers EALREADY when it does not.
            let retry = errno != libc::EALREADY;
            return Err((DpdkError::new("rte_eal_init", errno).with_log(), retry));
        }
        let eal = Eal {
            inner: Arc::new(EalInner {
                startup,
                kept: AtomicUsize::new(0),
            }),
        };
        for name in vdev_names(args) {
            if port_by_name(name).is_none() {
                let error = DpdkError::new("rte_eal_init", libc::ENODEV)
                    .with(format_args!("--vdev {name} created no Ethernet port"))
                    .with_log();
                drop(eal); // cleans the EAL up: nothing uses it yet
                return Err((error, false));
            }
        }
        Ok(eal)
    }

    /// How long `rte_eal_init` took.
    pub fn startup_time(&self) -> Duration {
        self.inner.startup
    }

    /// Ethernet ports available (`rte_eth_dev_count_avail`).
    pub fn port_count(&self) -> u16 {
        // SAFETY: the EAL is up while `self` exists.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// Keeps DPDK's memory mapped until the process exits: called by a
    /// port whose mempool still had mbufs out when it closed.
    pub(crate) fn keep_memory(&self) {
        self.inner.kept.fetch_add(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Eal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eal")
            .field("startup", &self.inner.startup)
            .field("kept", &self.inner.kept.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for EalInner {
    fn drop(&mut self) {
        if self.kept.load(Ordering::Acquire) == 0 {
            // SAFETY: this is the last handle, so every port (which holds a
            // handle) is closed and no mbuf of ours is outstanding.
            unsafe { sys::rte_eal_cleanup() };
        }
        STATE.store(DONE, Ordering::Release);
    }
}

/// The device names of the `--vdev NAME[,args]` and `--vdev=NAME[,args]`
/// arguments.
fn vdev_names(args: &[String]) -> Vec<&str> {
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let spec = match arg.strip_prefix("--vdev") {
            Some("") => it.next().map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(spec) = spec {
            names.push(spec.split(',').next().unwrap_or(spec));
        }
    }
    names
}

/// The port id of the port called `name`, if there is one.
pub(crate) fn port_by_name(name: &str) -> Option<u16> {
    let name = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: `name` is NUL-terminated and `id` writable; the EAL is up
    // (callers hold or are creating an `Eal`).
    let rc = unsafe { sys::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut id) };
    (rc == 0).then_some(id)
}

/// Whether this machine can give a multi-process EAL `mb` MB of huge
/// pages: enough free pages of the default size, and a hugetlbfs mounted.
/// The error is one line naming the fix.
pub fn hugepages_ready(mb: u32) -> Result<(), String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let (free, page_kb) = (field("HugePages_Free:"), field("Hugepagesize:"));
    let need = (u64::from(mb) * 1024).div_ceil(page_kb.max(1));
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    let fix = "reserve them and mount hugetlbfs (scripts/install-deps does: \
               echo 256 > /proc/sys/vm/nr_hugepages; mount -t hugetlbfs nodev /dev/hugepages)";
    if free < need {
        return Err(format!(
            "several processes on one port need {mb} MB of huge pages ({need} pages of {page_kb} kB), \
             {free} are free: {fix}"
        ));
    }
    if !mounted {
        return Err(format!(
            "several processes on one port need a hugetlbfs mount, and none is mounted: {fix}"
        ));
    }
    Ok(())
}

/// The calling thread's CPU affinity, saved around `rte_eal_init`.
struct Affinity(libc::cpu_set_t);

impl Affinity {
    fn save() -> Option<Affinity> {
        // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is writable and its size is passed.
        let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
        (rc == 0).then_some(Affinity(set))
    }

    fn restore(&self) {
        // SAFETY: `self.0` is a set the kernel gave us for this thread.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

/// Most log lines kept for error messages.
const LOG_LINES: usize = 8;
/// Longest log line kept, in bytes.
const LOG_LINE_MAX: usize = 300;

/// DPDK's recent errors.
struct LogTail {
    /// The unfinished line being written.
    partial: Vec<u8>,
    /// Finished lines since the last [`log_mark`], oldest first.
    lines: VecDeque<String>,
}

static LOG: Mutex<LogTail> = Mutex::new(LogTail {
    partial: Vec::new(),
    lines: VecDeque::new(),
});

/// The most verbose DPDK log level copied to standard error (DPDK's
/// numbering: 4 = error, 5 = warning, 7 = info, 8 = debug; 0 = none).
static ECHO: AtomicU32 = AtomicU32::new(u32::MAX);

/// Sets the most verbose level of DPDK's own log lines copied to standard
/// error (`0`: none; DPDK's levels otherwise, `RTE_LOG_ERR` = 4 ...).
/// Errors are kept for [`DpdkError::detail`] whatever this says; a
/// library embedding DPDK (the shim) uses this to keep DPDK quiet and
/// report failures in its own words.
pub fn set_log_echo(max_level: u32) {
    ECHO.store(max_level, Ordering::Relaxed);
}

/// Routes DPDK's log through [`log_write`], once per process.
fn install_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `log_write` has the signature fopencookie expects and
        // ignores its cookie; the stream is never closed.
        let stream = unsafe { sys::accel_log_stream_open(Some(log_write), std::ptr::null_mut()) };
        if !stream.is_null() {
            // SAFETY: `stream` is a valid FILE that lives for the process.
            unsafe { sys::rte_openlog_stream(stream) };
        }
    });
}

/// The stdio write function of DPDK's log stream: copies the bytes to
/// standard error and keeps errors. Never panics or unwinds.
unsafe extern "C" fn log_write(_cookie: *mut c_void, buf: *const c_char, size: usize) -> isize {
    if buf.is_null() || size == 0 {
        return 0;
    }
    // SAFETY: stdio passes `size` readable bytes at `buf`.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    // SAFETY: reads the level of the message rte_log is writing on this
    // thread; no preconditions.
    let level = unsafe { sys::rte_log_cur_msg_loglevel() };
    if level as u32 <= ECHO.load(Ordering::Relaxed) {
        let _ = std::io::stderr().write_all(bytes);
    }
    if level > 0 && level as u32 <= sys::RTE_LOG_ERR {
        let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&log.partial).trim().to_owned();
                log.partial.clear();
                if !line.is_empty() {
                    if log.lines.len() == LOG_LINES {
                        log.lines.pop_front();
                    }
                    log.lines.push_back(line);
                }
            } else if log.partial.len() < LOG_LINE_MAX {
                log.partial.push(b);
            }
        }
    }
    size as isize
}

/// Forgets the errors logged so far.
pub(crate) fn log_mark() {
    let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    log.lines.clear();
    log.partial.clear();
}

/// The errors logged since [`log_mark`], joined with " | ".
fn take_log() -> Option<String> {
    let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    let lines: Vec<String> = log.lines.drain(..).collect();
    (!lines.is_empty()).then(|| lines.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn vdev_names_are_found_in_both_spellings() {
        let args = strings(&[
            "--no-huge",
            "--vdev",
            "net_tap0,iface=x",
            "--vdev=net_ring0",
            "-m",
            "64",
            "--vdev",
        ]);
        assert_eq!(vdev_names(&args), ["net_tap0", "net_ring0"]);
        let defaults = Eal::default_args(&["net_null0"]);
        assert_eq!(
            defaults,
            strings(&[
                "--no-huge",
                "-m",
                "256",
                "--no-shconf",
                "--no-pci",
                "--vdev",
                "net_null0"
            ])
        );
        assert_eq!(vdev_names(&defaults), ["net_null0"]);
    }

    #[test]
    fn errors_carry_dpdk_reason_and_context() {
        let error = DpdkError::new("rte_eth_dev_configure", -libc::EINVAL).with("port 3");
        assert_eq!(error.errno(), libc::EINVAL);
        assert_eq!(error.op(), "rte_eth_dev_configure");
        assert_eq!(
            error.to_string(),
            "rte_eth_dev_configure failed: Invalid argument (errno 22): port 3"
        );
        let error = error.with("more");
        assert_eq!(error.detail(), Some("port 3; more"));
        // DPDK's own error numbers have DPDK's own texts.
        assert_eq!(
            DpdkError::new("x", 1001).reason(),
            "Invalid call in secondary process"
        );
    }

    #[test]
    fn a_nul_in_an_argument_is_refused_before_dpdk_sees_it() {
        // The state machine lets this be retried: it never reached DPDK.
        if STATE.load(Ordering::Acquire) != UNINIT {
            return;
        }
        let error = Eal::init(&strings(&["--no-huge", "bad\0arg"])).unwrap_err();
        assert_eq!(error.errno(), libc::EINVAL);
        assert!(error.to_string().contains("NUL byte"), "{error}");
        assert_eq!(STATE.load(Ordering::Acquire), UNINIT);
    }
}
