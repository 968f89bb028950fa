//! Stack-overflow reporting: a SIGSEGV handler that names the coroutine.
//!
//! When a coroutine runs off its stack it touches the guard page and the
//! kernel raises SIGSEGV. The handler runs on an alternate signal stack (the
//! faulting stack is unusable), compares the fault address with the guard
//! page of the coroutine that this thread is running, and if it matches
//! writes `coroutine NAME overflowed its N-byte stack` to stderr, restores
//! the default action and returns: the faulting instruction runs again and
//! the process dies of SIGSEGV as it would have without us. Any other fault
//! goes to the handler that was installed before ours (Rust's own, which
//! reports main-thread overflows), or to the default action.
//!
//! The handler is async-signal-safe: it reads only a const-initialised
//! thread-local, formats into a buffer on its own stack, and calls only
//! `write(2)` and `sigaction(2)`.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::Once;

use crate::sched::running_overflow_info;

thread_local! {
    static ALT_STACK: Cell<bool> = const { Cell::new(false) };
}

static INSTALL: Once = Once::new();
static mut PREVIOUS: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();

/// Installs the process-wide handler (once) and an alternate signal stack for
/// the calling thread (once per thread, unless it already has one).
pub(crate) fn install_for_this_thread() {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid value; we fill the fields
        // we need. PREVIOUS is written only here, inside call_once, before
        // the handler that reads it is installed.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let prev = &raw mut PREVIOUS;
            libc::sigaction(libc::SIGSEGV, &sa, (*prev).as_mut_ptr());
        }
    });
    if ALT_STACK.with(|a| a.replace(true)) {
        return;
    }
    // SAFETY: querying the current alternate stack with a valid out-pointer.
    let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut old) };
    if old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size > 0 {
        return; // Rust's runtime (or the program) already gave it one
    }
    const ALT_SIZE: usize = 64 * 1024;
    // SAFETY: an anonymous mapping; it is deliberately kept for the life of
    // the thread (the kernel may switch to it at any time until then).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ALT_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return; // overflows then die without the message, as they would anyway
    }
    let st = libc::stack_t {
        ss_sp: p,
        ss_flags: 0,
        ss_size: ALT_SIZE,
    };
    // SAFETY: st describes the mapping above.
    unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
}

/// Formats `n` in decimal into `buf`, returning the used tail.
fn fmt_usize(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

fn write_all(parts: &[&[u8]]) {
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            // SAFETY: rest is a valid slice; write(2) is async-signal-safe.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                return;
            }
            rest = &rest[n as usize..];
        }
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let p = running_overflow_info();
    // SAFETY: a non-null pointer names the running task's overflow record,
    // which lives in the scheduler's never-moved task slab.
    let run = unsafe { p.as_ref() };
    if let Some(run) = run.filter(|r| addr >= r.guard_lo && addr < r.guard_hi) {
        // SAFETY: name_ptr/name_len describe the running task's name, which
        // lives as long as the task.
        let name = unsafe { std::slice::from_raw_parts(run.name_ptr, run.name_len) };
        let mut num = [0u8; 20];
        let size = fmt_usize(run.size, &mut num);
        write_all(&[b"coroutine ", name, b" overflowed its ", size, b"-byte stack\n"]);
        reset_default(sig);
        return; // the access faults again and the default action kills us
    }
    // SAFETY: PREVIOUS was initialised before this handler was installed.
    let prev: libc::sigaction = unsafe { (&raw const PREVIOUS).cast::<libc::sigaction>().read() };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        reset_default(sig);
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it
        // has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler installed without SA_SIGINFO.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}

fn reset_default(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction with SIG_DFL is valid; sigaction(2) is
    // async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_usize(0, &mut b), b"0");
        assert_eq!(fmt_usize(65536, &mut b), b"65536");
        assert_eq!(fmt_usize(usize::MAX, &mut b), b"18446744073709551615");
    }
}
