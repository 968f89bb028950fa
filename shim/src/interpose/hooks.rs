//! The intercepts that change which fd numbers exist: `close`, `dup`,
//! `dup2`, `dup3`, `fcntl(F_DUPFD)`, `close_range`, `closefrom`. Each runs
//! the common skeleton and keeps the fd table in step with the kernel
//! around it.
//!
//! The rules, whoever answers the call (libc or the shim's operations):
//! - `close(fd)`: the entry is cleared *before* the kernel frees the number,
//!   so a socket created by another thread that gets the number at once is
//!   never mistaken for the old one. Linux frees the number even when
//!   `close` fails, so the entry is cleared either way.
//! - `dup`, `dup2`, `dup3`, `F_DUPFD`, `F_DUPFD_CLOEXEC`: after success, the
//!   new number gets the old one's state and handle at its own next
//!   generation, and whatever the new number held is released (`dup2` onto
//!   an fd the table knows clears it).
//! - `close_range`, `closefrom`: after success, every entry in the range is
//!   cleared (`CLOSE_RANGE_CLOEXEC` closes nothing, and clears nothing).
//!
//! A released entry goes to [`ops::fd_dropped`] (today: the log file's fd
//! was taken from the shim, so the log returns to stderr).
//!
//! Cost for plain kernel fds: one table load per fd argument, as for every
//! other intercept.

use crate::fdtable::{Entry, State, FDS};
use crate::interpose::ops::{self, ACTIVE};
use crate::interpose::skeleton;
use crate::interpose::{call_real, real, Call, Ops};
use libc::{c_int, c_uint, c_ulong};

pub(crate) use crate::interpose::exec::{execv, execve, execvp, execvpe, posix_spawn, posix_spawnp};

/// `sigaction(2)`, through the shim's handler table (see `signals`).
///
/// # Safety
///
/// `sigaction`'s: `act` and `old` are null or valid.
pub(crate) unsafe fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    skeleton::pass(Call::sigaction, || match real::sigaction.get() {
        // DPDK's own handlers (net_tap's Rx trigger signal) are not the
        // program's: they go straight to libc and never count as an
        // interruption.
        Some(f) if crate::interpose::skeleton::InShim::active() => {
            if tap_trigger_query(sig) && act.is_null() && !old.is_null() {
                // net_tap asks whether a real-time signal (SIGRTMIN+1 up
                // to SIGRTMAX; SIGIO before DPDK 20.11) is free for its Rx
                // trigger: a signal per received frame, so that an empty
                // Rx burst costs no read. Each is said to be taken, so it
                // finds none, and reads at each burst instead: the signal
                // woke a thread (the keeper) for every frame, a context
                // switch that a 2-core machine pays on the cores its
                // server and clients need. Waiting threads sleep on the
                // queue fds in `ppoll` either way.
                // SAFETY: `old` is DPDK's, valid for a write.
                unsafe {
                    let mut taken: libc::sigaction = std::mem::zeroed();
                    taken.sa_sigaction = tap_trigger_refused as extern "C" fn(c_int) as usize;
                    old.write(taken);
                }
                return 0;
            }
            crate::signals::internal(sig, act);
            // SAFETY: DPDK's arguments, passed on.
            unsafe { f(sig, act, old) }
        }
        // SAFETY: the program's arguments, with libc's sigaction.
        Some(f) => unsafe { crate::signals::sigaction(f, sig, act, old) },
        None => skeleton::missing(Call::sigaction),
    })
}

/// What net_tap finds as the handler of each signal it could take for its
/// Rx trigger when it asks (see `sigaction`): never installed, never run.
extern "C" fn tap_trigger_refused(_sig: c_int) {}

/// Whether DPDK asking about `sig` is net_tap looking for a free Rx
/// trigger signal.
fn tap_trigger_query(sig: c_int) -> bool {
    sig == libc::SIGIO || (libc::SIGRTMIN() < sig && sig < libc::SIGRTMAX())
}

/// `signal(3)`, through the shim's handler table (see `signals`).
///
/// # Safety
///
/// None beyond `signal`'s.
pub(crate) unsafe fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    skeleton::pass(Call::signal, || match real::sigaction.get() {
        // SAFETY: the program's arguments, with libc's sigaction.
        Some(f) => unsafe { crate::signals::signal(f, sig, handler) },
        None => {
            crate::sys::set_errno(libc::ENOSYS);
            libc::SIG_ERR
        }
    })
}

/// Clears `fd`'s entry and releases what it held.
fn forget(fd: c_int) {
    if let Some(old) = FDS.clear(fd) {
        ops::fd_dropped(fd, old);
    }
}

/// After a successful duplication of an fd whose entry was `src` onto
/// `new_fd` whose entry was `dst`.
fn duplicated(src: Entry, dst: Entry, new_fd: c_int) {
    if src.is_kernel() && dst.is_kernel() {
        return;
    }
    if let Some(old) = FDS.duplicate(src, new_fd) {
        ops::fd_dropped(new_fd, old);
    }
    if !src.is_kernel() {
        ops::fd_duplicated(src);
    }
}

/// Whether the program (not the shim, nor a library in a call of the
/// shim's) asks to close `entry`, one of the shim's own fds (a lane, the
/// steering program's maps, the log file, the port owner's channel):
/// a program that closes every fd it does not know (a daemon's
/// `closefrom(3)`, a loop over `/proc/self/fd`) would otherwise take it,
/// and the number, reused by the program's next `open`, would have the
/// shim write frames into the program's file. The kernel's answer for an
/// fd the program never opened is `EBADF`, and the fd stays open.
fn the_shims_own(entry: Entry) -> bool {
    entry.state() == State::Internal && !skeleton::InShim::active()
}

/// `close(2)`.
///
/// # Safety
///
/// None beyond `close`'s: the argument is a number.
pub(crate) unsafe fn close(fd: c_int) -> c_int {
    let entry = FDS.get(fd);
    if the_shims_own(entry) {
        crate::sys::set_errno(libc::EBADF);
        return -1;
    }
    if !entry.is_kernel() {
        forget(fd);
    }
    skeleton::on_entry(
        Call::close,
        entry,
        // SAFETY: the program's argument, passed on.
        |e| unsafe { ACTIVE.close(e, fd) },
        call_real!(close [fd] []),
    )
}

/// `dup(2)`.
///
/// # Safety
///
/// None beyond `dup`'s: the argument is a number.
pub(crate) unsafe fn dup(oldfd: c_int) -> c_int {
    let src = FDS.get(oldfd);
    // SAFETY: the program's argument, passed on.
    let r = skeleton::on_entry(
        Call::dup,
        src,
        |e| unsafe { ACTIVE.dup(e, oldfd) },
        call_real!(dup [oldfd] []),
    );
    if r >= 0 {
        duplicated(src, Entry::KERNEL, r);
    }
    r
}

/// `dup2(2)`.
///
/// # Safety
///
/// None beyond `dup2`'s: the arguments are numbers.
pub(crate) unsafe fn dup2(oldfd: c_int, newfd: c_int) -> c_int {
    let (src, dst) = (FDS.get(oldfd), FDS.get(newfd));
    let r = skeleton::on_entry(
        Call::dup2,
        src,
        // SAFETY: the program's arguments, passed on.
        |e| unsafe { ACTIVE.dup2(e, oldfd, newfd) },
        call_real!(dup2 [oldfd, newfd] []),
    );
    // dup2(fd, fd) changes nothing.
    if r >= 0 && oldfd != newfd {
        duplicated(src, dst, newfd);
    }
    r
}

/// `dup3(2)`.
///
/// # Safety
///
/// None beyond `dup3`'s: the arguments are numbers.
pub(crate) unsafe fn dup3(oldfd: c_int, newfd: c_int, flags: c_int) -> c_int {
    let (src, dst) = (FDS.get(oldfd), FDS.get(newfd));
    let r = skeleton::on_entry(
        Call::dup3,
        src,
        // SAFETY: the program's arguments, passed on.
        |e| unsafe { ACTIVE.dup3(e, oldfd, newfd, flags) },
        call_real!(dup3 [oldfd, newfd, flags] []),
    );
    if r >= 0 {
        duplicated(src, dst, newfd);
    }
    r
}

/// Whether an `fcntl` command makes a new fd.
fn duplicates(cmd: c_int) -> bool {
    cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC
}

/// `fcntl(2)`; `arg` is the optional third argument (see `interpose`).
///
/// # Safety
///
/// `fcntl`'s: `arg` is a valid pointer where `cmd` takes one.
pub(crate) unsafe fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let entry = FDS.get(fd);
    let r = skeleton::on_entry(
        Call::fcntl,
        entry,
        // SAFETY: the program's arguments, passed on.
        |e| unsafe { ACTIVE.fcntl(e, fd, cmd, arg) },
        call_real!(fcntl [fd, cmd] [arg]),
    );
    if r >= 0 && duplicates(cmd) {
        duplicated(entry, Entry::KERNEL, r);
    }
    r
}

/// `fcntl64`: [`fcntl`] under its large-file name.
///
/// # Safety
///
/// As for [`fcntl`].
pub(crate) unsafe fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let entry = FDS.get(fd);
    let r = skeleton::on_entry(
        Call::fcntl64,
        entry,
        // SAFETY: the program's arguments, passed on.
        |e| unsafe { ACTIVE.fcntl64(e, fd, cmd, arg) },
        call_real!(fcntl64 [fd, cmd] [arg]),
    );
    if r >= 0 && duplicates(cmd) {
        duplicated(entry, Entry::KERNEL, r);
    }
    r
}

/// The parts of `first..=last` between the shim's own fds (see
/// [`the_shims_own`]), each passed to `close`, which closes it; the first
/// error, if any. The shim's own fds are left open, as if the program had
/// never had them.
fn around_the_shims_own(
    first: c_uint,
    last: c_uint,
    mut close: impl FnMut(c_uint, c_uint) -> c_int,
) -> c_int {
    let mut from = first;
    let mut r = 0;
    if !skeleton::InShim::active() {
        FDS.internal_in(first, last, |own| {
            if own > from {
                let e = close(from, own - 1);
                if r == 0 {
                    r = e;
                }
            }
            from = own.saturating_add(1);
        });
    }
    if from <= last {
        let e = close(from, last);
        if r == 0 {
            r = e;
        }
    }
    r
}

/// `close_range(2)`, around the shim's own fds (see [`the_shims_own`];
/// marking them close-on-exec is left to the kernel).
///
/// # Safety
///
/// None beyond `close_range`'s: the arguments are numbers.
pub(crate) unsafe fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let cloexec = flags & libc::CLOSE_RANGE_CLOEXEC as c_int != 0;
    let one = |first: c_uint, last: c_uint| {
        let r = skeleton::any(
            Call::close_range,
            // SAFETY: the program's arguments, passed on.
            || unsafe { ACTIVE.close_range(first, last, flags) },
            call_real!(close_range [first, last, flags] []),
        );
        if r == 0 && !cloexec {
            FDS.clear_range(first, last, ops::fd_dropped);
        }
        r
    };
    if cloexec || first > last {
        return one(first, last);
    }
    around_the_shims_own(first, last, one)
}

/// `closefrom(3)`, around the shim's own fds (see [`the_shims_own`]).
///
/// # Safety
///
/// None beyond `closefrom`'s: the argument is a number.
pub(crate) unsafe fn closefrom(lowfd: c_int) {
    let low = lowfd.max(0) as c_uint;
    around_the_shims_own(low, c_uint::MAX, |first, last| {
        if last == c_uint::MAX {
            let lowfd = first as c_int;
            skeleton::any(
                Call::closefrom,
                // SAFETY: the program's argument, passed on.
                || unsafe { ACTIVE.closefrom(lowfd) },
                call_real!(closefrom [lowfd] []),
            );
        } else {
            // SAFETY: close_range takes plain integers (the kernel's, as
            // glibc's closefrom calls it).
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        }
        FDS.clear_range(first, last, ops::fd_dropped);
        0
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// These tests give real fds entries in the process's table: one at a
    /// time, so that one test's closed number reused by another's pipe is
    /// never misread.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn pipe() -> (c_int, c_int) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        (fds[0], fds[1])
    }

    #[test]
    fn close_clears_an_entry_and_bumps_its_generation() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (r, w) = pipe();
        let e = FDS.install(w, State::Udp, 5).unwrap();
        // SAFETY: closing fds this test owns.
        assert_eq!(unsafe { close(w) }, 0);
        assert!(FDS.get(w).is_kernel());
        assert!(FDS.get(w).generation() > e.generation());
        // SAFETY: as above.
        assert_eq!(unsafe { close(r) }, 0);
    }

    #[test]
    fn dup2_onto_a_known_fd_clears_it_and_dup_copies_ours() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (r, w) = pipe();
        let (r2, w2) = pipe();
        FDS.install(w2, State::Tcp, 9).unwrap();
        // SAFETY: fds this test owns.
        assert_eq!(unsafe { dup2(r, w2) }, w2);
        assert!(FDS.get(w2).is_kernel(), "w2 is now a copy of a kernel fd");
        // dup of an fd of ours: the copy shares the handle.
        FDS.install(r2, State::Udp, 11).unwrap();
        // SAFETY: as above.
        let copy = unsafe { fcntl(r2, libc::F_DUPFD_CLOEXEC, 0) };
        assert!(copy > r2);
        assert_eq!((FDS.get(copy).state(), FDS.get(copy).handle()), (State::Udp, 11));
        // SAFETY: as above.
        let copy2 = unsafe { dup(r2) };
        assert_eq!(FDS.get(copy2).handle(), 11);
        // SAFETY: as above.
        let r3 = unsafe { close_range(copy.min(copy2) as c_uint, copy.max(copy2) as c_uint, 0) };
        assert_eq!(r3, 0);
        assert!(FDS.get(copy).is_kernel() && FDS.get(copy2).is_kernel());
        for fd in [r, w, r2, w2] {
            // SAFETY: as above.
            unsafe { close(fd) };
        }
        assert!(FDS.get(r2).is_kernel());
    }

    /// Four fds made from one pipe at `base..base + 4` (numbers no other
    /// test uses, so that closing a range of them closes nothing else).
    fn four_at(base: c_int) -> [c_int; 4] {
        let (r, w) = pipe();
        let fds = [base, base + 1, base + 2, base + 3];
        for (i, &fd) in fds.iter().enumerate() {
            // SAFETY: fds this test owns; `fd` is free (a fixed high number).
            assert_eq!(unsafe { libc::dup2(if i % 2 == 0 { r } else { w }, fd) }, fd);
        }
        // SAFETY: as above.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
        fds
    }

    fn is_open(fd: c_int) -> bool {
        // SAFETY: F_GETFD takes no argument.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    #[test]
    fn the_program_cannot_close_the_shims_own_fds() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let [a, b, c, d] = four_at(900);
        FDS.install(b, State::Internal, 0).unwrap();
        FDS.install(d, State::Internal, 0).unwrap();
        // SAFETY: fds this test owns.
        assert_eq!(unsafe { close(b) }, -1);
        assert_eq!(crate::sys::errno(), libc::EBADF);
        assert!(is_open(b) && FDS.get(b).state() == State::Internal);
        // A range over them closes the others only.
        FDS.install(c, State::Udp, 3).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { close_range(a as c_uint, d as c_uint, 0) }, 0);
        assert!(!is_open(a) && !is_open(c) && FDS.get(c).is_kernel());
        assert!(is_open(b) && is_open(d));
        // Marking them close-on-exec is the kernel's affair.
        let cloexec = libc::CLOSE_RANGE_CLOEXEC as c_int;
        // SAFETY: as above.
        let r = unsafe { close_range(b as c_uint, d as c_uint, cloexec) };
        assert_eq!(r, 0);
        assert!(is_open(b) && is_open(d));
        // The shim itself (a call inside one of its own) closes them.
        let mark = skeleton::InShim::enter().expect("not inside the shim");
        // SAFETY: as above.
        assert_eq!(unsafe { close(b) }, 0);
        drop(mark);
        assert!(!is_open(b));
        let _ = FDS.clear(d);
        crate::sys::close(d);
    }

    #[test]
    fn a_range_is_closed_around_the_shims_own_fds() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let [a, b, c, d] = four_at(920);
        for fd in [a, c] {
            FDS.install(fd, State::Internal, 0).unwrap();
        }
        let mut parts = Vec::new();
        let r = around_the_shims_own(a as c_uint, c_uint::MAX, |x, y| {
            parts.push((x, y));
            0
        });
        assert_eq!(r, 0);
        let (b, d) = (b as c_uint, d as c_uint);
        assert_eq!(parts, [(b, b), (d, c_uint::MAX)]);
        // An error of one part is the answer; the others are still closed.
        parts.clear();
        let r = around_the_shims_own(b, d, |x, y| {
            parts.push((x, y));
            if x == b {
                libc::EINVAL
            } else {
                0
            }
        });
        assert_eq!((r, parts), (libc::EINVAL, vec![(b, b), (d, d)]));
        for fd in [a, b as c_int, c, d as c_int] {
            let _ = FDS.clear(fd);
            crate::sys::close(fd);
        }
    }

    #[test]
    fn a_failed_dup2_changes_nothing() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (r, w) = pipe();
        let e = FDS.install(w, State::Tcp, 3).unwrap();
        // SAFETY: -1 is not an fd: dup2 fails with EBADF and closes nothing.
        assert_eq!(unsafe { dup2(-1, w) }, -1);
        assert_eq!(crate::sys::errno(), libc::EBADF);
        assert_eq!(FDS.get(w), e);
        FDS.clear(w);
        // SAFETY: fds this test owns.
        unsafe {
            close(r);
            close(w);
        }
    }
}
