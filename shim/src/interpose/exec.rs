//! Keeping `libaccel.so` in programs this one starts.
//!
//! A program that builds its child's environment from scratch (Python's
//! `subprocess` with `env={...}`, a daemon that scrubs its environment)
//! drops `LD_PRELOAD`, and the child would run without acceleration. So the
//! calls that start a program with an environment (`execve`, `execvpe`,
//! `posix_spawn`, `posix_spawnp`, and `execv`/`execvp`, which pass
//! `environ`) check it: if it has no `LD_PRELOAD` entry at all, the child
//! gets `LD_PRELOAD` with the value this process started with. An
//! environment that has `LD_PRELOAD` (even empty, even without us) is the
//! program's choice and is passed on untouched; a process started without
//! `LD_PRELOAD` (the library came another way) adds nothing.
//!
//! Not covered: `execl`, `execle`, `execlp` (variadic argument lists; glibc
//! runs them through its internal `execve`, which is not interposable),
//! `fexecve`, `execveat`, and `system`/`popen` (they pass `environ`, which
//! still has `LD_PRELOAD` unless the program removed it from its own
//! environment).
//!
//! Guarantees: the repaired environment is built in memory from a raw
//! `mmap`, not `malloc`, because `execve` may run in a `vfork` child, which
//! shares the parent's heap; the memory is unmapped again when the call
//! returns (it returns only on failure, or after `posix_spawn` started the
//! child). The program's arrays are never written.

use crate::config::Text;
use crate::interpose::ops::ACTIVE;
use crate::interpose::{real, Call, Ops};
use crate::logging::log;
use crate::{interpose::skeleton, sys};
use libc::{c_char, c_int, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};
use std::ffi::CStr;
use std::sync::OnceLock;

/// `LD_PRELOAD` as this process started with it; empty if unset.
static PRELOAD: OnceLock<Text<4096>> = OnceLock::new();

const NAME: &[u8] = b"LD_PRELOAD=";

extern "C" {
    /// The process's environment (POSIX `environ`).
    static environ: *const *mut c_char;
}

/// Remembers this process's `LD_PRELOAD`, at start-up. Returns `false` if
/// it is too long to keep (the repair is then off).
pub fn remember_preload(value: &[u8]) -> bool {
    let text = Text::new(value);
    let _ = PRELOAD.set(text.unwrap_or(Text::empty()));
    text.is_some()
}

/// Whether `entry` (a C string) is an `LD_PRELOAD=` entry.
///
/// # Safety
///
/// `entry` is a valid NUL-terminated string.
unsafe fn is_preload(entry: *const c_char) -> bool {
    // SAFETY: the caller's string; `to_bytes` stops at its NUL.
    unsafe { CStr::from_ptr(entry) }.to_bytes().starts_with(NAME)
}

/// Calls `run` with `envp`, or with a copy of `envp` that has
/// `LD_PRELOAD=<ours>` added if `envp` has no `LD_PRELOAD` entry (see the
/// module documentation).
///
/// # Safety
///
/// `envp` is null or a valid null-terminated array of C strings.
pub unsafe fn with_preload<R>(envp: *const *mut c_char, run: impl FnOnce(*const *mut c_char) -> R) -> R {
    // An exec that succeeds replaces the process and its stack: the reaper
    // resets the connections then (it returns only if it failed).
    crate::engine::reaper::exec_begins();
    let r = match PRELOAD.get().filter(|p| !p.is_empty()) {
        // SAFETY: the caller's promise about `envp`.
        Some(preload) => unsafe { with_value(preload.as_bytes(), envp, run) },
        None => run(envp),
    };
    crate::engine::reaper::exec_failed();
    r
}

/// [`with_preload`] with `value` as ours.
///
/// # Safety
///
/// As for [`with_preload`].
unsafe fn with_value<R>(
    value: &[u8],
    envp: *const *mut c_char,
    run: impl FnOnce(*const *mut c_char) -> R,
) -> R {
    let mut n = 0;
    if !envp.is_null() {
        loop {
            // SAFETY: a null-terminated array of valid strings, read up to
            // and including its terminator.
            let entry = unsafe { *envp.add(n) };
            if entry.is_null() {
                break;
            }
            // SAFETY: a valid string of the array.
            if unsafe { is_preload(entry) } {
                return run(envp);
            }
            n += 1;
        }
    }
    let ptrs = (n + 2) * size_of::<*mut c_char>();
    let len = ptrs + NAME.len() + value.len() + 1;
    let Some(mem) = sys::map(len) else {
        log!(
            warn,
            "exec: no memory to put LD_PRELOAD back; the new program runs without acceleration"
        );
        return run(envp);
    };
    // SAFETY: `mem` is a fresh, page-aligned mapping of `len` bytes: room
    // for `n + 2` pointers followed by the entry's bytes and NUL; the first
    // `n` pointers are copied from the program's array, which has them.
    unsafe {
        let array = mem.cast::<*mut c_char>();
        std::ptr::copy_nonoverlapping(envp, array, n);
        let entry = mem.add(ptrs);
        std::ptr::copy_nonoverlapping(NAME.as_ptr(), entry, NAME.len());
        std::ptr::copy_nonoverlapping(value.as_ptr(), entry.add(NAME.len()), value.len());
        *entry.add(NAME.len() + value.len()) = 0;
        *array.add(n) = entry.cast();
        *array.add(n + 1) = std::ptr::null_mut();
    }
    if crate::logging::enabled(crate::logging::Level::Debug) {
        let value = Text::<4096>::new(value).unwrap_or(Text::empty());
        log!(
            debug,
            "exec: the new environment had no LD_PRELOAD; keeping LD_PRELOAD={value}"
        );
    }
    let result = run(mem.cast::<*mut c_char>().cast_const());
    // SAFETY: our mapping; `run` returned, so nothing uses it any more (a
    // successful exec never returns; posix_spawn has copied it by now).
    unsafe { sys::unmap(mem, len) };
    result
}

/// The process's `environ`.
fn current_environ() -> *const *mut c_char {
    // SAFETY: reading the pointer value of libc's `environ`; no reference to
    // the static is kept.
    unsafe { environ }
}

/// `execve(2)`.
///
/// # Safety
///
/// `execve`'s: valid path, and null-terminated argument and environment
/// arrays.
pub(crate) unsafe fn execve(
    path: *const c_char,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // Inherited connections the new program keeps must work there.
    crate::sockets::forked::before_exec();
    skeleton::any(
        Call::execve,
        // SAFETY: the program's arguments, passed on.
        || unsafe { ACTIVE.execve(path, argv, envp) },
        // SAFETY: the program's arguments; `envp` satisfies `with_preload`.
        || unsafe {
            with_preload(envp, |env| match real::execve.get() {
                Some(f) => f(path, argv, env),
                None => skeleton::missing(Call::execve),
            })
        },
    )
}

/// `execvpe(3)`.
///
/// # Safety
///
/// As for [`execve`].
pub(crate) unsafe fn execvpe(
    file: *const c_char,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // Inherited connections the new program keeps must work there.
    crate::sockets::forked::before_exec();
    skeleton::any(
        Call::execvpe,
        // SAFETY: the program's arguments, passed on.
        || unsafe { ACTIVE.execvpe(file, argv, envp) },
        // SAFETY: the program's arguments; `envp` satisfies `with_preload`.
        || unsafe {
            with_preload(envp, |env| match real::execvpe.get() {
                Some(f) => f(file, argv, env),
                None => skeleton::missing(Call::execvpe),
            })
        },
    )
}

/// `execv(3)`: `execve` with `environ`.
///
/// # Safety
///
/// As for [`execve`].
pub(crate) unsafe fn execv(path: *const c_char, argv: *const *mut c_char) -> c_int {
    // Inherited connections the new program keeps must work there.
    crate::sockets::forked::before_exec();
    let envp = current_environ();
    skeleton::any(
        Call::execv,
        // SAFETY: the program's arguments, passed on.
        || unsafe { ACTIVE.execv(path, argv) },
        // SAFETY: the program's arguments; `environ` satisfies `with_preload`.
        || unsafe {
            with_preload(envp, |env| {
                match (env == envp, real::execv.get(), real::execve.get()) {
                    (true, Some(f), _) => f(path, argv),
                    (false, _, Some(f)) => f(path, argv, env),
                    _ => skeleton::missing(Call::execv),
                }
            })
        },
    )
}

/// `execvp(3)`: `execvpe` with `environ`.
///
/// # Safety
///
/// As for [`execve`].
pub(crate) unsafe fn execvp(file: *const c_char, argv: *const *mut c_char) -> c_int {
    // Inherited connections the new program keeps must work there.
    crate::sockets::forked::before_exec();
    let envp = current_environ();
    skeleton::any(
        Call::execvp,
        // SAFETY: the program's arguments, passed on.
        || unsafe { ACTIVE.execvp(file, argv) },
        // SAFETY: the program's arguments; `environ` satisfies `with_preload`.
        || unsafe {
            with_preload(envp, |env| {
                match (env == envp, real::execvp.get(), real::execvpe.get()) {
                    (true, Some(f), _) => f(file, argv),
                    (false, _, Some(f)) => f(file, argv, env),
                    _ => skeleton::missing(Call::execvp),
                }
            })
        },
    )
}

/// `posix_spawn(3)`. Returns an error number, as `posix_spawn` does.
///
/// # Safety
///
/// `posix_spawn`'s: valid pointers, null-terminated arrays.
pub(crate) unsafe fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // Inherited connections the new program keeps must work there.
    crate::sockets::forked::before_exec();
    skeleton::any(
        Call::posix_spawn,
        // SAFETY: the program's arguments, passed on.
        || unsafe { ACTIVE.posix_spawn(pid, path, actions, attr, argv, envp) },
        // SAFETY: the program's arguments; `envp` satisfies `with_preload`.
        || unsafe {
            with_preload(envp, |env| match real::posix_spawn.get() {
                Some(f) => f(pid, path, actions, attr, argv, env),
                None => libc::ENOSYS,
            })
        },
    )
}

/// `posix_spawnp(3)`. Returns an error number, as `posix_spawnp` does.
///
/// # Safety
///
/// As for [`posix_spawn`].
pub(crate) unsafe fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // Inherited connections the new program keeps must work there.
    crate::sockets::forked::before_exec();
    skeleton::any(
        Call::posix_spawnp,
        // SAFETY: the program's arguments, passed on.
        || unsafe { ACTIVE.posix_spawnp(pid, file, actions, attr, argv, envp) },
        // SAFETY: the program's arguments; `envp` satisfies `with_preload`.
        || unsafe {
            with_preload(envp, |env| match real::posix_spawnp.get() {
                Some(f) => f(pid, file, actions, attr, argv, env),
                None => libc::ENOSYS,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    const OURS: &[u8] = b"/opt/accel/libaccel.so";

    /// The environment `with_value` hands on, as strings.
    fn repaired(env: &[&str]) -> Vec<String> {
        let owned: Vec<CString> = env.iter().map(|e| CString::new(*e).unwrap()).collect();
        let mut ptrs: Vec<*mut c_char> = owned.iter().map(|c| c.as_ptr().cast_mut()).collect();
        ptrs.push(std::ptr::null_mut());
        // SAFETY: a null-terminated array of valid strings, alive for the call.
        unsafe {
            with_value(OURS, ptrs.as_ptr(), |out| {
                let mut seen = Vec::new();
                let mut i = 0;
                while !(*out.add(i)).is_null() {
                    seen.push(CStr::from_ptr(*out.add(i)).to_string_lossy().into_owned());
                    i += 1;
                }
                seen
            })
        }
    }

    #[test]
    fn ld_preload_is_put_back_only_when_missing() {
        let ours = "LD_PRELOAD=/opt/accel/libaccel.so";
        assert_eq!(repaired(&["A=1", "PATH=/bin"]), ["A=1", "PATH=/bin", ours]);
        assert_eq!(repaired(&[]), [ours]);
        // The program's own choice stands.
        assert_eq!(repaired(&["LD_PRELOAD=", "B=2"]), ["LD_PRELOAD=", "B=2"]);
        assert_eq!(
            repaired(&["B=2", "LD_PRELOAD=other.so"]),
            ["B=2", "LD_PRELOAD=other.so"]
        );
        // A null environment is an empty one.
        // SAFETY: null is allowed.
        let n = unsafe {
            with_value(OURS, std::ptr::null(), |out| {
                let mut i = 0;
                while !(*out.add(i)).is_null() {
                    i += 1;
                }
                i
            })
        };
        assert_eq!(n, 1);
    }
}
