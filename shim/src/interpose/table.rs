//! The table: every C function `libaccel.so` intercepts, with its C
//! signature and the kind of skeleton it runs (see the parent module).
//!
//! This list is the single source of the exports, the real-function
//! pointers, the [`Ops`] methods and the linker version script. `build.rs`
//! reads the entry lines of this file as text: keep one entry per line,
//! starting with its kind.

use super::interpose;
use libc::{
    c_char, c_int, c_long, c_uint, c_ulong, c_void, epoll_event, fd_set, iovec, mmsghdr, msghdr, nfds_t,
    off64_t, off_t, pid_t, pollfd, posix_spawn_file_actions_t, posix_spawnattr_t, sighandler_t, sigset_t,
    size_t, sockaddr, socklen_t, ssize_t, stat, stat64, timespec, timeval,
};

/// `struct sigaction` (the name alone would also import libc's function).
type SigAction = libc::sigaction;

interpose! {
    // Sockets: made in the kernel; bind/listen/connect decide where they live.
    any socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    any socketpair(domain: c_int, ty: c_int, protocol: c_int, sv: *mut c_int) -> c_int;
    fd(fd) bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fd(fd) listen(fd: c_int, backlog: c_int) -> c_int;
    fd(fd) accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fd(fd) accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    fd(fd) connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fd(fd) shutdown(fd: c_int, how: c_int) -> c_int;
    fd(fd) getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int;
    fd(fd) setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int;
    fd(fd) getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fd(fd) getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;

    // Data.
    fd(fd) read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t;
    fd(fd) readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t;
    fd(fd) write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t;
    fd(fd) writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t;
    fd(fd) recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    fd(fd) recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fd(fd) recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fd(fd) recvmmsg(fd: c_int, msgs: *mut mmsghdr, vlen: c_uint, flags: c_int, timeout: *mut timespec) -> c_int;
    fd(fd) send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    fd(fd) sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t;
    fd(fd) sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fd(fd) sendmmsg(fd: c_int, msgs: *mut mmsghdr, vlen: c_uint, flags: c_int) -> c_int;
    fd(out_fd) sendfile(out_fd: c_int, in_fd: c_int, offset: *mut off_t, count: size_t) -> ssize_t;
    fd(out_fd) sendfile64(out_fd: c_int, in_fd: c_int, offset: *mut off64_t, count: size_t) -> ssize_t;
    any splice(fd_in: c_int, off_in: *mut off64_t, fd_out: c_int, off_out: *mut off64_t, len: size_t, flags: c_uint) -> ssize_t;

    // Fortified variants (-D_FORTIFY_SOURCE): the same calls, with a buffer size to check.
    fd(fd) __read_chk(fd: c_int, buf: *mut c_void, count: size_t, buflen: size_t) -> ssize_t;
    fd(fd) __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    fd(fd) __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    any __poll_chk(fds: *mut pollfd, nfds: nfds_t, timeout: c_int, fdslen: size_t) -> c_int;
    any __ppoll_chk(fds: *mut pollfd, nfds: nfds_t, timeout: *const timespec, sigmask: *const sigset_t, fdslen: size_t) -> c_int;
    pass __fdelt_chk(fd: c_long) -> c_long;

    // Control.
    hook(fd) fcntl(fd: c_int, cmd: c_int, ...arg: c_ulong) -> c_int;
    hook(fd) fcntl64(fd: c_int, cmd: c_int, ...arg: c_ulong) -> c_int;
    fd(fd) ioctl(fd: c_int, request: c_ulong, ...arg: c_ulong) -> c_int;

    // fd numbers: the table follows the kernel.
    hook(fd) close(fd: c_int) -> c_int;
    hook close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    hook closefrom(lowfd: c_int) -> ();
    hook(oldfd) dup(oldfd: c_int) -> c_int;
    hook(oldfd) dup2(oldfd: c_int, newfd: c_int) -> c_int;
    hook(oldfd) dup3(oldfd: c_int, newfd: c_int, flags: c_int) -> c_int;

    // Readiness.
    any epoll_create(size: c_int) -> c_int;
    any epoll_create1(flags: c_int) -> c_int;
    fd(fd) epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> c_int;
    fd(epfd) epoll_wait(epfd: c_int, events: *mut epoll_event, maxevents: c_int, timeout: c_int) -> c_int;
    fd(epfd) epoll_pwait(epfd: c_int, events: *mut epoll_event, maxevents: c_int, timeout: c_int, sigmask: *const sigset_t) -> c_int;
    fd(epfd) epoll_pwait2(epfd: c_int, events: *mut epoll_event, maxevents: c_int, timeout: *const timespec, sigmask: *const sigset_t) -> c_int;
    any poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int;
    any ppoll(fds: *mut pollfd, nfds: nfds_t, timeout: *const timespec, sigmask: *const sigset_t) -> c_int;
    any select(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *mut timeval) -> c_int;
    any pselect(nfds: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *const timespec, sigmask: *const sigset_t) -> c_int;

    // Signals: the shim knows when a handler ran (see `signals`).
    hook sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int;
    hook signal(sig: c_int, handler: sighandler_t) -> sighandler_t;

    // Processes.
    any fork() -> pid_t;
    hook execve(path: *const c_char, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    hook execv(path: *const c_char, argv: *const *mut c_char) -> c_int;
    hook execvp(file: *const c_char, argv: *const *mut c_char) -> c_int;
    hook execvpe(file: *const c_char, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    hook posix_spawn(pid: *mut pid_t, path: *const c_char, actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    hook posix_spawnp(pid: *mut pid_t, file: *const c_char, actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;

    // io_uring through liburing.so: SQEs on accelerated sockets are refused (see `uring`).
    any io_uring_submit(ring: *mut c_void) -> c_int;
    any io_uring_submit_and_wait(ring: *mut c_void, wait_nr: c_uint) -> c_int;
    any io_uring_submit_and_wait_timeout(ring: *mut c_void, cqe: *mut *mut c_void, wait_nr: c_uint, ts: *mut c_void, sigmask: *mut sigset_t) -> c_int;
    any io_uring_submit_and_get_events(ring: *mut c_void) -> c_int;
    any io_uring_wait_cqes(ring: *mut c_void, cqe: *mut *mut c_void, wait_nr: c_uint, ts: *mut c_void, sigmask: *mut sigset_t) -> c_int;
    any io_uring_register_files(ring: *mut c_void, files: *const c_int, nr: c_uint) -> c_int;
    any io_uring_register_files_update(ring: *mut c_void, off: c_uint, files: *const c_int, nr: c_uint) -> c_int;

    // Files: to the blocking-call pool inside a coroutine (later), else libc.
    any open(path: *const c_char, flags: c_int, ...mode: c_ulong) -> c_int;
    any open64(path: *const c_char, flags: c_int, ...mode: c_ulong) -> c_int;
    any openat(dirfd: c_int, path: *const c_char, flags: c_int, ...mode: c_ulong) -> c_int;
    any openat64(dirfd: c_int, path: *const c_char, flags: c_int, ...mode: c_ulong) -> c_int;
    any __open_2(path: *const c_char, flags: c_int) -> c_int;
    any __open64_2(path: *const c_char, flags: c_int) -> c_int;
    any __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    any __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fd(fd) pread(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t;
    fd(fd) pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t) -> ssize_t;
    fd(fd) __pread_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t, buflen: size_t) -> ssize_t;
    fd(fd) __pread64_chk(fd: c_int, buf: *mut c_void, count: size_t, offset: off64_t, buflen: size_t) -> ssize_t;
    fd(fd) pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t;
    fd(fd) pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: off64_t) -> ssize_t;
    fd(fd) fsync(fd: c_int) -> c_int;
    fd(fd) fstat(fd: c_int, buf: *mut stat) -> c_int;
    fd(fd) fstat64(fd: c_int, buf: *mut stat64) -> c_int;
}
