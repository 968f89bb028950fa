//! A coroutine that runs off its stack must be named on stderr, and the
//! process must then die of SIGSEGV. Run in a child process: this test
//! binary re-executes itself with `ACCEL_OVERFLOW_CHILD=1`.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let pad = [depth as u8; 512];
    std::hint::black_box(&pad);
    recurse(depth + 1) + pad[7] as u64
}

#[test]
fn overflow_child() {
    if std::env::var_os("ACCEL_OVERFLOW_CHILD").is_none() {
        return; // only meaningful inside the child started below
    }
    accel_coro::block_on(|| {
        accel_coro::spawn("deep-recursion", || recurse(0)).join().ok();
    });
    unreachable!("the overflow must have killed the process");
}

#[test]
fn overflow_is_named_and_fatal() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "overflow_child", "--nocapture", "--test-threads=1"])
        .env("ACCEL_OVERFLOW_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "status {:?}, stderr:\n{stderr}",
        out.status
    );
    let want = format!(
        "coroutine deep-recursion overflowed its {}-byte stack",
        accel_coro::stack::DEFAULT_STACK_SIZE
    );
    assert!(stderr.contains(&want), "stderr lacks {want:?}:\n{stderr}");
}

#[test]
fn a_fault_elsewhere_is_not_blamed_on_a_coroutine() {
    if std::env::var_os("ACCEL_NULL_CHILD").is_some() {
        accel_coro::block_on(|| {
            accel_coro::spawn("innocent", || {
                // SAFETY: deliberately faulting on a null read, in a child process.
                unsafe { std::ptr::read_volatile(std::ptr::null::<u8>()) }
            })
            .join()
            .ok();
        });
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_fault_elsewhere_is_not_blamed_on_a_coroutine",
            "--nocapture",
        ])
        .env("ACCEL_NULL_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "stderr:\n{stderr}");
    assert!(!stderr.contains("overflowed"), "{stderr}");
}
