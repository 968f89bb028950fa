//! The shim's log: one line per event, written with the raw `write` system
//! call to stderr or to `ACCEL_LOG_FILE`.
//!
//! A line is formatted into a fixed buffer on the stack (`core::fmt`, no
//! allocation) and written with one `write(2)`, so lines from several
//! threads or processes sharing a file do not interleave (the log file is
//! opened `O_APPEND`). Each line reads `accel[PID]: LEVEL: message`; a
//! message longer than the buffer is cut and ends in `...`.
//!
//! Guarantees: logging never allocates, never takes a lock, never changes
//! `errno` and never fails the caller: a line that cannot be written is
//! dropped. A disabled level costs one relaxed load. Safe in a `vfork` child
//! and in a signal handler.
//!
//! The log fd is the shim's own: the program's `close`, `close_range` and
//! `closefrom` leave it open (`interpose::hooks`); if the program `dup2`s
//! over it, the fd table's bookkeeping calls [`fd_lost`] and the log goes
//! back to stderr.

use crate::sys;
use libc::c_int;
use std::ffi::CStr;
use std::fmt::{self, Write};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering::Relaxed};

/// How much the shim says (`ACCEL_LOG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Only what stops the shim from doing what was asked.
    Error = 1,
    /// Also what the user should fix (bad configuration): the default.
    Warn = 2,
    /// Also start-up, decisions (a socket stays in the kernel, and why) and
    /// the counters at exit.
    Info = 3,
    /// Everything, including each `execve` whose environment was repaired.
    Debug = 4,
}

impl Level {
    /// The level's name as `ACCEL_LOG` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// The most verbose level written.
static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);
/// Where lines go: stderr, or the log file's fd.
static FD: AtomicI32 = AtomicI32::new(libc::STDERR_FILENO);

/// Whether lines at `level` are written.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Relaxed)
}

/// Sets the most verbose level written.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Relaxed);
}

/// Sends the log to the file at `path` (appending, created `0644` if
/// missing). On failure the log stays on stderr and the errno is returned.
pub fn open_file(path: &CStr) -> Result<c_int, c_int> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
    let fd = sys::open(path, flags, 0o644)?;
    let old = FD.swap(fd, Relaxed);
    if old != libc::STDERR_FILENO {
        sys::close(old);
    }
    Ok(fd)
}

/// The fd the log is written to, if it is a file the shim opened.
pub fn file_fd() -> Option<c_int> {
    let fd = FD.load(Relaxed);
    (fd != libc::STDERR_FILENO).then_some(fd)
}

/// The program replaced fd `fd` (`dup2` onto it): if it was the log file,
/// log to stderr from now on.
pub fn fd_lost(fd: c_int) {
    let _ = FD.compare_exchange(fd, libc::STDERR_FILENO, Relaxed, Relaxed);
}

/// Writes one line at `level` if that level is enabled. Use the [`log!`]
/// macro, which skips the formatting when it is not.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut line = Line::new();
    let _ = write!(line, "accel[{}]: {}: {}", sys::getpid(), level.name(), args);
    let _ = sys::write_all(FD.load(Relaxed), line.finish());
}

/// `log!(info, "format", args...)`: one log line at that level
/// (`error`, `warn`, `info` or `debug`), formatted only if it is enabled.
#[macro_export]
#[doc(hidden)]
macro_rules! __accel_log {
    (error, $($arg:tt)+) => { $crate::__accel_log!(@ $crate::logging::Level::Error, $($arg)+) };
    (warn, $($arg:tt)+) => { $crate::__accel_log!(@ $crate::logging::Level::Warn, $($arg)+) };
    (info, $($arg:tt)+) => { $crate::__accel_log!(@ $crate::logging::Level::Info, $($arg)+) };
    (debug, $($arg:tt)+) => { $crate::__accel_log!(@ $crate::logging::Level::Debug, $($arg)+) };
    (@ $level:expr, $($arg:tt)+) => {
        if $crate::logging::enabled($level) {
            $crate::logging::write($level, format_args!($($arg)+));
        }
    };
}
#[doc(inline)]
pub use crate::__accel_log as log;

/// Longest line written, newline included; longer messages are cut.
const LINE_MAX: usize = 1024;

/// A line being formatted: a fixed buffer that cuts what does not fit.
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    cut: bool,
}

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
            cut: false,
        }
    }

    /// The line's bytes, ending in a newline (after `...` if it was cut).
    fn finish(&mut self) -> &[u8] {
        let tail: &[u8] = if self.cut { b"...\n" } else { b"\n" };
        let end = self.len.min(LINE_MAX - tail.len());
        let line = self.buf.get_mut(..end + tail.len()).unwrap_or_default();
        if let Some(slot) = line.get_mut(end..) {
            slot.copy_from_slice(tail);
        }
        line
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Room for the newline (or "...\n") that `finish` appends.
        let room = (LINE_MAX - 4).saturating_sub(self.len);
        let take = s.len().min(room);
        if take < s.len() {
            self.cut = true;
        }
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + take),
            s.as_bytes().get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        // Never an error: an error would only stop the formatting early.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(args: fmt::Arguments<'_>) -> Vec<u8> {
        let mut line = Line::new();
        let _ = line.write_fmt(args);
        line.finish().to_vec()
    }

    #[test]
    fn line_ends_in_newline() {
        assert_eq!(render(format_args!("x={}", 5)), b"x=5\n");
    }

    #[test]
    fn long_line_is_cut_with_an_ellipsis() {
        let long = "y".repeat(5000);
        let line = render(format_args!("{long}"));
        assert_eq!(line.len(), LINE_MAX - 4 + 4);
        assert!(line.ends_with(b"yyy...\n"));
    }

    #[test]
    fn levels_order_from_quiet_to_verbose() {
        assert!(Level::Error < Level::Warn && Level::Warn < Level::Info && Level::Info < Level::Debug);
        assert_eq!(Level::Debug.name(), "debug");
    }
}
