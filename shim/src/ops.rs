//! The shim's own operations: the [`Ops`] implementation the interposer
//! calls for fds that are ours, and what happens to an fd's entry when the
//! kernel frees its number.
//!
//! Today nothing is accelerated: [`PassThrough`] keeps every default ("not
//! ours"), so every call reaches libc. The acceleration step replaces it
//! with an implementation that answers for `Tcp`, `Udp`, `Epoll`, `Pending`
//! and `Inert` entries.

use crate::fdtable::{Entry, State};
use crate::interpose::Ops;
use crate::logging;
use libc::c_int;

/// The operations that answer nothing: every call goes to libc.
pub struct PassThrough;

impl Ops for PassThrough {}

/// The operations in use.
pub static ACTIVE: PassThrough = PassThrough;

/// The kernel freed (or replaced, by `dup2`) fd number `fd`, whose entry
/// was `entry`: release what the entry held.
///
/// This is the one place an entry is released, whichever call freed the
/// number (`close`, `dup2`/`dup3` onto it, `close_range`, `closefrom`) and
/// even when the call was a re-entry: the table is cleared first, then the
/// call runs. [`Ops::close`] still sees the old entry, but must not release
/// it again (the socket's reference count drops here: the acceleration
/// step closes a socket, sending its FIN, when its last fd goes).
pub fn fd_dropped(fd: c_int, entry: Entry) {
    if entry.state() == State::Internal {
        // The program closed the log file's fd, or dup2'd over it.
        logging::fd_lost(fd);
    }
}
