//! Start-up, in stages safe against recursion, and the summary at exit.
//!
//! Stages ([`stage`]):
//! 1. *Loaded*: `ld.so` mapped the library; another library's constructor
//!    may already call an intercepted function. Every call goes straight to
//!    libc: `fd` calls find an empty fd table, `any` calls check the stage.
//!    Resolving the real function (`dlsym`) is all they need.
//! 2. *Starting*: the constructor (`start`) runs, single-threaded, before
//!    `main`. It reads the configuration with `getenv` (not intercepted,
//!    no `malloc`), opens the log file with the raw `openat` system call,
//!    records `LD_PRELOAD` for `execve`, and registers the `fork` child
//!    handler. Nothing it calls is intercepted; calls still go to libc.
//! 3. *Ready*: intercepted calls run the full skeleton.
//!
//! The stack (DPDK) does not start here: it starts at the first
//! accelerated `bind`/`listen`/`connect`, so a process that never uses the
//! network pays nothing.
//!
//! At exit (`.fini_array`, so also after `main` returns or `exit` is
//! called), `ACCEL_LOG=info` writes the counters: one line, and at `debug`
//! one more with the calls per function.

use crate::config::{Config, Text};
use crate::counters::COUNTERS;
use crate::fdtable::{State, FDS};
use crate::interpose::N_CALLS;
use crate::logging::{self, log, Level};
use crate::{interpose::exec, sys};
use std::ffi::CStr;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Where start-up is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Mapped; the constructor has not run.
    Loaded = 0,
    /// The constructor is running.
    Starting = 1,
    /// Started: intercepts run the full skeleton.
    Ready = 2,
}

static STAGE: AtomicU8 = AtomicU8::new(Stage::Loaded as u8);
static CONFIG: OnceLock<Config> = OnceLock::new();

/// The current stage.
pub fn stage() -> Stage {
    match STAGE.load(Ordering::Acquire) {
        0 => Stage::Loaded,
        1 => Stage::Starting,
        _ => Stage::Ready,
    }
}

/// Whether start-up has finished.
#[inline]
pub fn ready() -> bool {
    STAGE.load(Ordering::Acquire) == Stage::Ready as u8
}

/// The configuration (the defaults until start-up has read it).
pub fn config() -> &'static Config {
    CONFIG.get().unwrap_or(&Config::DEFAULT)
}

/// The value of environment variable `name`, without allocating.
fn getenv(name: &str) -> Option<&'static [u8]> {
    let mut buf = [0u8; 64];
    buf.get_mut(..name.len())
        .filter(|_| name.len() < 64)?
        .copy_from_slice(name.as_bytes());
    // SAFETY: `buf` is NUL-terminated (it was zeroed and the name is
    // shorter); getenv returns null or a string of the environment, which
    // start-up reads before the program can change it.
    let value = unsafe { libc::getenv(buf.as_ptr().cast()) };
    // SAFETY: a non-null result is a valid NUL-terminated string.
    (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) }.to_bytes())
}

/// The library's constructor: runs once per process, before `main`.
#[ctor::ctor(unsafe)]
fn start() {
    start_once();
}

/// Start-up (stage 2); does nothing if it has already run.
pub fn start_once() {
    let from = Stage::Loaded as u8;
    if STAGE
        .compare_exchange(from, Stage::Starting as u8, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    // Read the log settings first, quietly, so that reports of bad values
    // go where the user asked.
    let quiet = Config::parse(getenv, |_| {});
    logging::set_level(quiet.log_level);
    if !quiet.log_file.is_empty() {
        open_log(&quiet.log_file);
    }
    let config = Config::parse(getenv, |bad| log!(warn, "{bad}"));
    let _ = CONFIG.set(config);
    if config.owner {
        // A port owner started by the library (see `owner`): it runs from
        // `__libc_start_main`, once every constructor has run (DPDK's
        // drivers register themselves in constructors of this library that
        // may come after this one), and the program's own `main` never
        // runs. The stage stays at Starting: its calls go straight to libc.
        return;
    }
    // The engine calls up to the sockets layer through this (see
    // `engine::Above`).
    crate::engine::set_above(&crate::sockets::table::Tables);
    if !exec::remember_preload(getenv("LD_PRELOAD").unwrap_or_default()) {
        log!(warn, "LD_PRELOAD is too long to keep: programs started without it in their environment will not get it back");
    }
    // SAFETY: registering handlers with no preconditions: the forking
    // thread takes the sockets' lock before and releases it after, in both
    // processes; in the child the handler then touches only the shim's own
    // state.
    let r = unsafe {
        libc::pthread_atfork(
            Some(crate::sockets::table::before_fork),
            Some(crate::sockets::table::after_fork_in_parent),
            Some(after_fork_in_child),
        )
    };
    if r != 0 {
        log!(
            warn,
            "pthread_atfork failed ({}): a child of fork may use its parent's sockets",
            Errno(r)
        );
    }
    STAGE.store(Stage::Ready as u8, Ordering::Release);
    log!(info, "started: {N_CALLS} calls interposed; {}", Summary(&config));
}

/// The program's `main`, as `__libc_start_main` takes it.
#[cfg(not(test))]
type Main = extern "C" fn(libc::c_int, *mut *mut libc::c_char, *mut *mut libc::c_char) -> libc::c_int;

/// glibc's `__libc_start_main`, called by the program's `_start` after the
/// constructors of every shared object: in a port owner (`ACCEL_OWNER=1`)
/// it runs the owner and never returns; otherwise it calls libc's.
///
/// # Safety
///
/// The C runtime's contract: called once, by `_start`, with its arguments.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn __libc_start_main(
    main: Main,
    argc: libc::c_int,
    argv: *mut *mut libc::c_char,
    init: *const libc::c_void,
    fini: *const libc::c_void,
    rtld_fini: *const libc::c_void,
    stack_end: *const libc::c_void,
) -> libc::c_int {
    type Real = unsafe extern "C" fn(
        Main,
        libc::c_int,
        *mut *mut libc::c_char,
        *const libc::c_void,
        *const libc::c_void,
        *const libc::c_void,
        *const libc::c_void,
    ) -> libc::c_int;
    if let Some(c) = CONFIG.get().filter(|c| c.owner) {
        crate::engine::owner::run(c);
    }
    // SAFETY: a static NUL-terminated name; RTLD_NEXT finds libc's.
    let real = unsafe { libc::dlsym(libc::RTLD_NEXT, c"__libc_start_main".as_ptr()) };
    if real.is_null() {
        // SAFETY: without libc's start there is nothing to run.
        unsafe { libc::_exit(127) };
    }
    // SAFETY: dlsym found libc's __libc_start_main, whose type this is.
    let real: Real = unsafe { std::mem::transmute::<*mut libc::c_void, Real>(real) };
    // SAFETY: the caller's arguments, passed on.
    unsafe { real(main, argc, argv, init, fini, rtld_fini, stack_end) }
}

/// `ACCEL_QUEUES` as shown (unset: `auto`, see `worker::queues_wanted`).
struct Queues(u16);

impl fmt::Display for Queues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => write!(f, "auto"),
            n => write!(f, "{n}"),
        }
    }
}

/// Opens `ACCEL_LOG_FILE` and marks its fd as the shim's own.
fn open_log(path: &Text<4096>) {
    let Ok(cpath) = CStr::from_bytes_with_nul(path.as_bytes_with_nul()) else {
        log!(warn, "ACCEL_LOG_FILE={path:?}: not a path; logging to stderr");
        return;
    };
    match logging::open_file(cpath) {
        Ok(fd) => {
            let _ = FDS.install(fd, State::Internal, 0);
        }
        Err(e) => log!(
            warn,
            "ACCEL_LOG_FILE={path:?}: cannot open it ({}); logging to stderr",
            Errno(e)
        ),
    }
}

/// The `fork` child handler: the child's accelerated connections are
/// reached through the parent's proxy (`forked`); its other accelerated
/// sockets are inert.
extern "C" fn after_fork_in_child() {
    crate::sockets::table::after_fork_in_child();
    crate::engine::worker::after_fork_in_child();
    let ctl = crate::sockets::proxy::take_child_end();
    let (inert, inherited) = crate::sockets::forked::after_fork_in_child(ctl);
    if inert + inherited > 0 {
        log!(
            info,
            "fork: {inherited} connections of the parent's stack reachable through its proxy, {inert} accelerated sockets inert in this child (pid {})",
            sys::getpid()
        );
    }
}

/// At exit, run from `.fini_array`: the sockets close as a dying
/// process's do (see [`crate::sockets::table::close_all_at_exit`]), then the
/// summary.
extern "C" fn at_exit() {
    let owing = crate::sockets::table::close_all_at_exit(std::time::Duration::from_secs(2));
    if owing > 0 {
        log!(
            warn,
            "exit: {owing} connections still had data or a FIN unacknowledged after 2 s; the peers will see them time out"
        );
    }
    if logging::enabled(Level::Info) {
        let snap = COUNTERS.snapshot();
        log!(info, "exit: calls: {snap}; {}", crate::counters::Sockets);
        if crate::engine::stacks::count() > 0 {
            log!(info, "exit: stacks:{}", crate::engine::stacks::Summary);
        }
        if logging::enabled(Level::Debug) {
            log!(debug, "exit: calls by function: {}", ByCall(&snap));
        }
    }
}

#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;

/// The configuration, as the start-up line shows it.
struct Summary<'a>(&'a Config);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        match c.ip {
            Some(ip) => write!(f, "ip={ip}")?,
            None => f.write_str("ip=none (every socket stays in the kernel)")?,
        }
        match c.gateway {
            Some(gw) => write!(f, " gw={gw}")?,
            None => f.write_str(" gw=none")?,
        }
        match c.mac {
            Some([a, b, c, d, e, g]) => write!(f, " mac={a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")?,
            None => f.write_str(" mac=device")?,
        }
        write!(
            f,
            " spin_us={} keeper_us={} queues={} fallback={:?} log={}",
            c.spin_us,
            c.keeper_us,
            Queues(c.queues),
            c.fallback,
            c.log_level.name()
        )?;
        if !c.dpdk_args.is_empty() {
            write!(f, " dpdk_args={:?}", c.dpdk_args)?;
        }
        Ok(())
    }
}

/// `name=N` for each function called, in table order.
struct ByCall<'a>(&'a crate::counters::Snapshot);

impl fmt::Display for ByCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, n)) in self.0.by_call().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={n}")?;
        }
        Ok(())
    }
}

/// An errno value shown as its description and number, without allocating.
struct Errno(libc::c_int);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 128];
        // SAFETY: `buf` is writable for its length; the XSI strerror_r writes
        // a NUL-terminated message into it or fails.
        let r = unsafe { libc::strerror_r(self.0, buf.as_mut_ptr().cast(), buf.len()) };
        let text = CStr::from_bytes_until_nul(&buf)
            .ok()
            .filter(|_| r == 0)
            .and_then(|c| c.to_str().ok());
        match text {
            Some(text) => write!(f, "{text}, errno {}", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_process_started_like_any_other() {
        // The constructor ran in this test binary too.
        assert_eq!(stage(), Stage::Ready);
        assert!(ready());
        start_once(); // a second call does nothing
        assert_eq!(stage(), Stage::Ready);
    }

    #[test]
    fn errno_is_shown_with_its_text() {
        assert_eq!(
            Errno(libc::ENOENT).to_string(),
            "No such file or directory, errno 2"
        );
    }

    #[test]
    fn the_start_up_line_shows_the_configuration() {
        let line = Summary(&Config::DEFAULT).to_string();
        assert_eq!(
            line,
            "ip=none (every socket stays in the kernel) gw=none mac=device spin_us=50 keeper_us=1000 queues=auto \
             fallback=Kernel log=warn"
        );
    }

    #[test]
    fn a_forked_child_without_a_channel_finds_accelerated_sockets_inert() {
        // A pretend accelerated socket far from the test's real fds.
        let fd = 50_000;
        FDS.install(fd, State::Tcp, 77).unwrap();
        // SAFETY: the child only reads the table and exits with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let inert = FDS.get(fd).state() == State::Inert && FDS.get(fd).handle() == 77;
            // SAFETY: leaving the child at once.
            unsafe { libc::_exit(if inert { 0 } else { 1 }) };
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
        assert_eq!(FDS.get(fd).state(), State::Tcp, "the parent is untouched");
        FDS.clear(fd);
    }
}
