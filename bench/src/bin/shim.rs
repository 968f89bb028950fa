//! `cargo build --release -p accel-shim && cargo run --release -p accel-bench
//! --bin shim [-- LIBACCEL]`: what `libaccel.so` costs a call it passes
//! through to libc, one `name value unit` line each.
//!
//! The same loop runs twice in a child process, once plain and once under
//! `LD_PRELOAD=libaccel.so` (default: `libaccel.so` beside this binary),
//! and the difference is the interposer's cost: the fd-table lookup, the
//! counter, the real-function pointer and the extra call.
//!
//! - `read0_{direct,preloaded,overhead}_ns`: `read(pipe, buf, 0)`, a real
//!   system call that moves no data.
//! - `fcntl_{direct,preloaded,overhead}_ns`: `fcntl(fd, F_GETFL)` (a
//!   variadic call, through the hook that follows `F_DUPFD`).
//! - `pipe_1b_{direct,preloaded,overhead}_ns`: `write` then `read` of one
//!   byte through a pipe (two intercepted calls).
//! - `fdelt_chk_{direct,preloaded,overhead}_ns`: `__fdelt_chk(5)`, the check
//!   behind a fortified `FD_SET`: no system call, so the overhead stands
//!   out of the noise (the `pass` skeleton: counter and real pointer, no
//!   table lookup).
//!
//! System calls vary by tens of nanoseconds from run to run: each child runs
//! several times and the best figure of each is kept.

use std::path::PathBuf;
use std::process::Command;

use accel_bench::{ns_per_iter, report};

/// The measurements, run in the child: `name ns` lines.
fn child() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = (fds[0], fds[1]);
    let mut buf = [0u8; 1];
    let read0 = ns_per_iter(100, 7, |n| {
        for _ in 0..n {
            // SAFETY: a valid buffer; zero bytes asked.
            unsafe { libc::read(r, buf.as_mut_ptr().cast(), 0) };
        }
    });
    let fcntl = ns_per_iter(100, 7, |n| {
        for _ in 0..n {
            // SAFETY: F_GETFL takes no argument.
            unsafe { libc::fcntl(r, libc::F_GETFL) };
        }
    });
    let pipe_1b = ns_per_iter(100, 7, |n| {
        for _ in 0..n {
            // SAFETY: one valid byte each way.
            unsafe {
                libc::write(w, b"x".as_ptr().cast(), 1);
                libc::read(r, buf.as_mut_ptr().cast(), 1);
            }
        }
    });
    let fdelt = ns_per_iter(100, 7, |n| {
        for i in 0..n {
            // SAFETY: a pure check of an fd number below FD_SETSIZE.
            std::hint::black_box(unsafe { __fdelt_chk(std::hint::black_box(5 + (i as libc::c_long & 7))) });
        }
    });
    println!("read0 {read0}\nfcntl {fcntl}\npipe_1b {pipe_1b}\nfdelt_chk {fdelt}");
}

extern "C" {
    /// glibc's check behind a fortified `FD_SET`.
    fn __fdelt_chk(fd: libc::c_long) -> libc::c_long;
}

/// Runs the child, plain or preloaded, `RUNS` times, and returns the best
/// of each figure.
fn best(lib: Option<&PathBuf>) -> Vec<(String, f64)> {
    const RUNS: usize = 5;
    let mut best = run(lib);
    for _ in 1..RUNS {
        for ((_, b), (_, v)) in best.iter_mut().zip(run(lib)) {
            *b = b.min(v);
        }
    }
    best
}

/// Runs the child once, plain or preloaded, and returns its figures.
fn run(lib: Option<&PathBuf>) -> Vec<(String, f64)> {
    let exe = std::env::current_exe().expect("this binary");
    let mut cmd = Command::new(exe);
    cmd.arg("--child").env_remove("LD_PRELOAD");
    if let Some(lib) = lib {
        cmd.env("LD_PRELOAD", lib);
    }
    let out = cmd.output().expect("running the child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("a number")))
        .collect()
}

fn main() {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--child") {
        child();
        return;
    }
    let lib = arg.map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("this binary");
        exe.with_file_name("libaccel.so")
    });
    if !lib.is_file() {
        eprintln!(
            "{} not found: run `cargo build --release -p accel-shim` first, or pass its path",
            lib.display()
        );
        std::process::exit(2);
    }
    let direct = best(None);
    let preloaded = best(Some(&lib));
    for ((name, d), (_, p)) in direct.iter().zip(&preloaded) {
        report(&format!("{name}_direct_ns"), *d, "ns");
        report(&format!("{name}_preloaded_ns"), *p, "ns");
        report(&format!("{name}_overhead_ns"), p - d, "ns");
    }
}
