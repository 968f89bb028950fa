//! Tells Valgrind where the coroutine stacks are, so that its memcheck
//! follows a context switch onto one instead of taking every access there
//! for a write below the stack pointer (`VALGRIND_STACK_REGISTER` and
//! `VALGRIND_STACK_DEREGISTER` of `valgrind.h`).
//!
//! A client request is a no-op instruction sequence on a real CPU (four
//! rotations of `rdi` by 128 bits in all, then `xchg rbx, rbx`), which
//! Valgrind's JIT recognises; outside Valgrind it costs a few cycles and
//! returns the default. Stacks are made rarely (they are pooled), so the
//! requests are always compiled in, on x86-64 Linux; elsewhere they are
//! absent and Valgrind is not followed.

/// `VG_USERREQ__STACK_REGISTER`.
const STACK_REGISTER: usize = 0x1501;
/// `VG_USERREQ__STACK_DEREGISTER`.
const STACK_DEREGISTER: usize = 0x1502;

/// Issues client request `request` with `args`; returns Valgrind's answer,
/// or `default` when not running under Valgrind.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request(default: usize, request: usize, args: [usize; 5]) -> usize {
    let block: [usize; 6] = [request, args[0], args[1], args[2], args[3], args[4]];
    let mut result = default;
    // SAFETY: the sequence only rotates rdi by a multiple of 64 bits (no
    // change) and exchanges rbx with itself; Valgrind reads `block` (live
    // for the call) and writes its answer in rdx. No memory is written.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") block.as_ptr(),
            in("rdi") 0usize,
            options(nostack, preserves_flags, readonly),
        );
    }
    result
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request(default: usize, _request: usize, _args: [usize; 5]) -> usize {
    default
}

/// Registers the stack spanning `low..high`; returns its Valgrind id (0
/// outside Valgrind).
pub fn stack_register(low: usize, high: usize) -> usize {
    request(0, STACK_REGISTER, [low, high, 0, 0, 0])
}

/// Forgets stack `id` (from [`stack_register`]).
pub fn stack_deregister(id: usize) {
    request(0, STACK_DEREGISTER, [id, 0, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_valgrind_a_request_answers_its_default() {
        // Under Valgrind (scripts/valgrind) the id is Valgrind's own.
        if std::env::var_os("ACCEL_UNDER_VALGRIND").is_none() {
            assert_eq!(request(42, STACK_REGISTER + 0x100, [0; 5]), 42);
            assert_eq!(stack_register(0x1000, 0x2000), 0);
        }
        stack_deregister(0);
    }
}
