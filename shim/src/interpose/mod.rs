//! The interposer: one table of intercepted C functions
//! ([`table`](mod@table)) and the macro that turns it into everything else.
//!
//! From each line of the table, `interpose!` generates:
//! - the exported function (`exports::read`, `#[no_mangle] extern "C"`),
//!   whose body is the one [`skeleton`] for its kind;
//! - the pointer to the real function ([`real`]`::read`), resolved on first
//!   use with `dlsym(RTLD_NEXT, "read")` and cached in an atomic;
//! - a method of the [`Ops`] trait, the shim's own version of the call for
//!   fds that are ours (by default: "not ours");
//! - its entry in [`Call`] and [`NAMES`] (counters, logs);
//! - and, through `build.rs` reading the same lines, its line in the linker
//!   version script, which exports exactly these names and hides every other
//!   symbol ([`script`]).
//!
//! A line reads `KIND NAME(PARAMS) -> RET;`. The kinds:
//! - `fd(P)`: the call is about fd parameter `P`: the fd table decides, in
//!   one load, between libc and [`Ops`];
//! - `any`: no single fd decides (`socket`, `poll`, `open`): [`Ops`] is
//!   asked whenever start-up has finished and the shim is not re-entered;
//! - `hook` or `hook(P)`: the call changes which fd numbers exist (`close`,
//!   `dup2`, `close_range`) or starts a program (`execve`): a function of
//!   the crate's `hooks` module keeps the fd table in step with the kernel
//!   around the same skeleton;
//! - `pass`: always straight to libc (counted).
//!
//! Variadic C functions (`open`, `openat`, `fcntl`, `ioctl`) are written
//! `NAME(FIXED..., ...ARG: TYPE)`: the export takes the optional argument as
//! one more fixed, register-sized parameter, and the real function is called
//! through its variadic type. This is ABI-correct on x86-64 and AArch64
//! Linux: there the first six integer or pointer arguments travel in the
//! same registers whether a parameter is variadic or fixed, so the export
//! reads the argument from where the caller put it; when the caller passed
//! none (`open` without `O_CREAT`), the register holds garbage that is
//! passed on and never read, because the real function reads it only when
//! the other arguments say it is there (`O_CREAT`/`O_TMPFILE`, a `cmd` that
//! takes an argument). A value smaller than the register (`mode_t`, `int`)
//! sits in its low bits, which is where the callee's `va_arg` reads it.
//! Calling the real function through its variadic type lets the compiler
//! set up the call as a variadic one (`%al` on x86-64).

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
compile_error!("libaccel.so interposes variadic calls as shown above: Linux on x86-64 or AArch64 only");

pub(crate) mod exec;
pub(crate) mod hooks;
pub mod ops;
pub mod script;
pub mod skeleton;
pub mod table;

pub use table::{exports, real, Call, Ops, NAMES, N_CALLS};

use crate::sys;
use libc::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The real (next) definition of an intercepted C function, of type `F`,
/// looked up on first use.
///
/// Resolution is `dlsym(RTLD_NEXT, name)`: it finds the definition after
/// `libaccel.so` in the lookup order (libc's), never our own, and the shim
/// allocates nothing for it (the name is a static C string). The result,
/// or "missing", is cached in an atomic; threads racing to resolve store
/// the same address.
pub struct Real<F> {
    /// The C name, NUL-terminated.
    name: &'static str,
    /// Null: not looked up yet; [`MISSING`]: not found; else the address.
    addr: AtomicPtr<c_void>,
    _type: PhantomData<F>,
}

/// What [`Real`] caches when `dlsym` found nothing: address 1, in the
/// never-mapped first page, so never a function's address.
const MISSING: *mut c_void = std::ptr::dangling_mut::<c_void>();

impl<F: Copy> Real<F> {
    /// The real function named `name` (which must end in a NUL).
    pub const fn new(name: &'static str) -> Self {
        Real {
            name,
            addr: AtomicPtr::new(std::ptr::null_mut()),
            _type: PhantomData,
        }
    }

    /// The C name, without its NUL.
    pub fn name(&self) -> &'static str {
        self.name.strip_suffix('\0').unwrap_or(self.name)
    }

    /// The real function, or `None` if libc has none of that name.
    #[inline]
    pub fn get(&self) -> Option<F> {
        const { assert!(size_of::<F>() == size_of::<*mut c_void>()) };
        let mut addr = self.addr.load(Ordering::Relaxed);
        if addr.is_null() {
            addr = self.resolve();
        }
        if addr == MISSING {
            return None;
        }
        // SAFETY: `addr` is what dlsym returned for `name`, a function whose
        // C type the interpose table states as `F` (a function pointer, as
        // big as a data pointer, per the assertion above).
        Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&addr) })
    }

    #[cold]
    #[inline(never)]
    fn resolve(&self) -> *mut c_void {
        let addr = sys::keep_errno(|| {
            debug_assert!(self.name.ends_with('\0'));
            // SAFETY: `name` is a NUL-terminated static string; RTLD_NEXT is
            // a valid pseudo-handle.
            unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) }
        });
        let addr = if addr.is_null() { MISSING } else { addr };
        self.addr.store(addr, Ordering::Relaxed);
        addr
    }
}

/// Generates the interposer from the table: see the module's documentation.
macro_rules! interpose {
    ($(
        $kind:ident $(($key:ident))? $name:ident (
            $($a:ident : $t:ty),* $(, ... $va:ident : $vt:ty)?
        ) -> $ret:ty;
    )*) => {
        /// Every intercepted function, in table order.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Call {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                $name,
            )*
        }

        /// The C names of the intercepted functions, in table order (the
        /// exports, the version script).
        pub const NAMES: [&str; N_CALLS] = [$(stringify!($name)),*];

        /// How many functions are intercepted.
        pub const N_CALLS: usize = [$(stringify!($name)),*].len();

        /// The real functions: libc's definitions, behind ours.
        pub mod real {
            #![allow(non_upper_case_globals)]
            use super::*;
            $(
                #[doc = concat!("The real `", stringify!($name), "`.")]
                pub static $name: $crate::interpose::Real<
                    $crate::interpose::real_fn!([$($t),*] [$($vt)?] $ret)
                > = $crate::interpose::Real::new(concat!(stringify!($name), "\0"));
            )*
        }

        /// The shim's own operations, one method per intercepted function.
        ///
        /// The skeleton calls a method only for a call that is the shim's
        /// to answer (an `fd(P)` call on an fd that is not a kernel fd; an
        /// `any` call once start-up is done), and never while the shim is
        /// re-entered. Every method's default answers
        /// [`Dispatch::NotOurs`](crate::interpose::skeleton::Dispatch::NotOurs): the
        /// call goes to libc. The acceleration overrides the ones it
        /// implements.
        #[allow(clippy::too_many_arguments)]
        pub trait Ops: Sync {
            $($crate::interpose::ops_method!($kind [$($key)?] $name [$($a: $t),*] [$($va: $vt)?] $ret);)*
        }

        /// The exported functions: what the program calls.
        pub mod exports {
            use super::*;
            $($crate::interpose::export!($kind [$($key)?] $name [$($a: $t),*] [$($va: $vt)?] $ret);)*
        }
    };
}

/// The type of a real function: fixed parameters, maybe variadic.
macro_rules! real_fn {
    ([$($t:ty),*] [] $ret:ty) => { unsafe extern "C" fn($($t),*) -> $ret };
    ([$($t:ty),*] [$vt:ty] $ret:ty) => { unsafe extern "C" fn($($t),*, ...) -> $ret };
}

/// One method of [`Ops`]: with the fd's entry for keyed kinds.
macro_rules! ops_method {
    (pass $($rest:tt)*) => {};
    ($kind:ident [$key:ident] $name:ident [$($a:ident : $t:ty),*] [$($va:ident : $vt:ty)?] $ret:ty) => {
        #[doc = concat!(
            "Our `", stringify!($name), "` of an fd whose table entry is `entry` (that of `",
            stringify!($key), "`).\n\n# Safety\n\nThe arguments are the program's, unchecked: \
            pointers are valid only as far as the C contract of `", stringify!($name), "` says."
        )]
        unsafe fn $name(&self, entry: $crate::fdtable::Entry, $($a: $t,)* $($va: $vt)?)
            -> $crate::interpose::skeleton::Dispatch<$ret>
        {
            let _ = (entry, $($a,)* $($va)?);
            $crate::interpose::skeleton::Dispatch::NotOurs
        }
    };
    ($kind:ident [] $name:ident [$($a:ident : $t:ty),*] [$($va:ident : $vt:ty)?] $ret:ty) => {
        #[doc = concat!(
            "Our `", stringify!($name), "`.\n\n# Safety\n\nThe arguments are the program's, unchecked: \
            pointers are valid only as far as the C contract of `", stringify!($name), "` says."
        )]
        unsafe fn $name(&self, $($a: $t,)* $($va: $vt)?) -> $crate::interpose::skeleton::Dispatch<$ret> {
            let _ = ($($a,)* $($va)?);
            $crate::interpose::skeleton::Dispatch::NotOurs
        }
    };
}

/// The call of the real function with the export's own arguments, or the
/// `ENOSYS` failure if libc has none.
macro_rules! call_real {
    ($name:ident [$($a:ident),*] [$($va:ident)?]) => {
        || match real::$name.get() {
            // SAFETY: the program's arguments, passed on unchanged to the
            // function of the same name and C type.
            Some(f) => unsafe { f($($a,)* $($va)?) },
            None => $crate::interpose::skeleton::missing(Call::$name),
        }
    };
}

/// One exported function, its body the skeleton of its kind.
macro_rules! export {
    (fd [$key:ident] $name:ident [$($a:ident : $t:ty),*] [$($va:ident : $vt:ty)?] $ret:ty) => {
        $crate::interpose::export!(@sig $name [$($a: $t),*] [$($va: $vt)?] $ret,
            concat!("the fd table decides on `", stringify!($key), "`"), {
            $crate::interpose::skeleton::by_fd(
                Call::$name,
                $key,
                // SAFETY: the program's arguments, passed on unchanged.
                |entry| unsafe { $crate::interpose::ops::ACTIVE.$name(entry, $($a,)* $($va)?) },
                $crate::interpose::call_real!($name [$($a),*] [$($va)?]),
            )
        });
    };
    (any [] $name:ident [$($a:ident : $t:ty),*] [$($va:ident : $vt:ty)?] $ret:ty) => {
        $crate::interpose::export!(@sig $name [$($a: $t),*] [$($va: $vt)?] $ret,
            "the shim's operations are asked once start-up is done", {
            $crate::interpose::skeleton::any(
                Call::$name,
                // SAFETY: the program's arguments, passed on unchanged.
                || unsafe { $crate::interpose::ops::ACTIVE.$name($($a,)* $($va)?) },
                $crate::interpose::call_real!($name [$($a),*] [$($va)?]),
            )
        });
    };
    (hook [$($key:ident)?] $name:ident [$($a:ident : $t:ty),*] [$($va:ident : $vt:ty)?] $ret:ty) => {
        $crate::interpose::export!(@sig $name [$($a: $t),*] [$($va: $vt)?] $ret,
            "the fd table follows the kernel's fd numbers (see `hooks`)", {
            // SAFETY: the program's arguments, passed on unchanged.
            unsafe { $crate::interpose::hooks::$name($($a,)* $($va)?) }
        });
    };
    (pass [] $name:ident [$($a:ident : $t:ty),*] [$($va:ident : $vt:ty)?] $ret:ty) => {
        $crate::interpose::export!(@sig $name [$($a: $t),*] [$($va: $vt)?] $ret,
            "always straight to libc", {
            $crate::interpose::skeleton::pass(Call::$name, $crate::interpose::call_real!($name [$($a),*] [$($va)?]))
        });
    };
    (@sig $name:ident [$($a:ident : $t:ty),*] [$($va:ident : $vt:ty)?] $ret:ty, $how:expr, $body:block) => {
        #[doc = concat!(
            "The interposed `", stringify!($name), "`: ", $how, ".\n\n# Safety\n\n\
            The C contract of `", stringify!($name), "`: the arguments are passed on unchecked."
        )]
        #[cfg_attr(not(test), no_mangle)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn $name($($a: $t,)* $($va: $vt)?) -> $ret $body
    };
}

pub(crate) use {call_real, export, interpose, ops_method, real_fn};

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{c_int, c_ulong};

    #[test]
    fn version_script_exports_exactly_the_table() {
        // The names build.rs reads from the table's text are the names the
        // macro made exports for, in the same order.
        assert_eq!(script::names(include_str!("table.rs")), NAMES);
        // The script the linker got is the rendering of those names.
        let built = include_str!(concat!(env!("OUT_DIR"), "/libaccel.map"));
        assert_eq!(built, script::render(&NAMES));
        let globals: Vec<&str> = built
            .lines()
            .map(str::trim)
            .filter(|l| l.ends_with(';') && !l.contains(':') && !l.starts_with('}'))
            .map(|l| l.trim_end_matches(';'))
            .collect();
        let expected: Vec<&str> = NAMES.iter().copied().chain(script::EXTRA).collect();
        assert_eq!(globals, expected, "the table's names, then the extra exports");
        assert!(built.contains("local: *;"));
        let mut unique = NAMES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), N_CALLS, "a name is listed twice");
    }

    #[test]
    fn the_issue_list_is_covered() {
        let required =
            "socket socketpair bind listen accept accept4 connect shutdown close read readv write \
            writev recv recvfrom recvmsg recvmmsg send sendto sendmsg sendmmsg getsockopt setsockopt \
            getsockname getpeername fcntl fcntl64 ioctl dup dup2 dup3 epoll_create epoll_create1 epoll_ctl \
            epoll_wait epoll_pwait epoll_pwait2 poll ppoll select pselect sendfile sendfile64 fork execve \
            __read_chk __recv_chk __recvfrom_chk __poll_chk __fdelt_chk open openat pread pwrite fsync fstat";
        for name in required.split_whitespace() {
            assert!(NAMES.contains(&name), "{name} is not intercepted");
        }
    }

    #[test]
    fn script_parsing_skips_what_is_not_an_entry() {
        let text = "interpose! {\n    // fd(fd) commented(x: c_int) -> c_int;\n    fd(epfd) epoll_wait(epfd: c_int) -> c_int;\n    any socket(d: c_int) -> c_int;\n    hook closefrom(lowfd: c_int) -> ();\n    pass __fdelt_chk(fd: c_long) -> c_long;\n    other thing(x: c_int);\n}\n";
        assert_eq!(
            script::names(text),
            ["epoll_wait", "socket", "closefrom", "__fdelt_chk"]
        );
        assert_eq!(
            script::render(&["a", "b"])
                .lines()
                .filter(|l| l.ends_with(';'))
                .count(),
            4 + script::EXTRA.len()
        );
    }

    #[test]
    fn real_functions_resolve_and_missing_ones_say_so() {
        assert!(real::read.get().is_some());
        assert!(real::epoll_pwait2.get().is_some(), "glibc 2.35 or later");
        assert_eq!(real::read.name(), "read");
        let missing: Real<unsafe extern "C" fn() -> c_int> = Real::new("accel_no_such_function\0");
        assert!(missing.get().is_none());
        assert!(missing.get().is_none(), "cached");
    }

    #[test]
    fn exports_pass_through_to_libc() {
        let mut fds = [0; 2];
        // SAFETY: the export is called like the C function.
        let r = unsafe { exports::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        let msg = b"ping";
        // SAFETY: a valid buffer and its length.
        let n = unsafe { exports::write(fds[0], msg.as_ptr().cast(), msg.len()) };
        assert_eq!(n, 4);
        let mut avail: c_int = 0;
        // SAFETY: FIONREAD writes an int through the third argument.
        let r = unsafe { exports::ioctl(fds[1], libc::FIONREAD, &mut avail as *mut c_int as c_ulong) };
        assert_eq!((r, avail), (0, 4));
        let mut buf = [0u8; 8];
        // SAFETY: a valid buffer; buflen is its real size.
        let n = unsafe { exports::__read_chk(fds[1], buf.as_mut_ptr().cast(), 8, buf.len()) };
        assert_eq!(&buf[..n as usize], msg);
        // Variadic fcntl: F_SETFL takes an int, F_GETFL none.
        // SAFETY: fcntl with its documented arguments.
        unsafe {
            assert_eq!(
                exports::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK as c_ulong),
                0
            );
            assert_ne!(exports::fcntl(fds[1], libc::F_GETFL, 0) & libc::O_NONBLOCK, 0);
        }
        // errno comes from libc, untouched: a non-blocking read of nothing.
        crate::sys::set_errno(0);
        // SAFETY: a valid buffer.
        let n = unsafe { exports::read(fds[1], buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!((n, crate::sys::errno()), (-1, libc::EAGAIN));
        // SAFETY: closing our fds.
        unsafe { assert_eq!(exports::close(fds[0]) + exports::close(fds[1]), 0) };
        // SAFETY: an fd that is not open.
        assert_eq!(unsafe { exports::close(fds[0]) }, -1);
        assert_eq!(crate::sys::errno(), libc::EBADF);
    }

    #[test]
    fn variadic_open_passes_the_mode_on() {
        let dir = std::env::temp_dir().join(format!("accel-shim-open-{}", std::process::id()));
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
        // SAFETY: a valid path; O_CREAT takes the mode.
        let fd = unsafe { exports::open(path.as_ptr(), flags, 0o604) };
        assert!(fd >= 0);
        // SAFETY: a stat buffer for fstat to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { exports::fstat(fd, &mut st) }, 0);
        // The umask may only remove bits.
        assert_eq!(st.st_mode & 0o777 & !0o604, 0);
        assert_ne!(st.st_mode & 0o600, 0);
        // SAFETY: our fd.
        unsafe { exports::close(fd) };
        std::fs::remove_file(&dir).unwrap();
    }
}
