//! accel-bench: microbenchmarks printed as `name value unit` lines, one
//! figure per line, so runs can be compared and parsed by scripts.

use std::time::Instant;

/// Prints one figure.
pub fn report(name: &str, value: f64, unit: &str) {
    if value >= 100.0 {
        println!("{name} {value:.0} {unit}");
    } else {
        println!("{name} {value:.2} {unit}");
    }
}

/// Runs `f(iters)` with growing `iters` until one run takes at least
/// `min_ms`, then returns the best nanoseconds per iteration of `reps`
/// runs of that size (the minimum filters out the machine's noise).
pub fn ns_per_iter(min_ms: u64, reps: usize, mut f: impl FnMut(u64)) -> f64 {
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        f(iters);
        if t.elapsed().as_millis() as u64 >= min_ms || iters >= 1 << 40 {
            break;
        }
        iters *= 2;
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f(iters);
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Resident set size of this process in KiB (from `/proc/self/statm`).
pub fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page / 1024
}

/// Makes sure `n` guarded stacks fit under `vm.max_map_count` (raising it
/// when running as root); returns an explanation when it cannot.
pub fn ensure_map_count(n: u64) -> Result<(), String> {
    let path = "/proc/sys/vm/max_map_count";
    let cur: u64 = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if cur >= 3 * n || std::fs::write(path, (8 * n).to_string()).is_ok() {
        Ok(())
    } else {
        Err(format!("vm.max_map_count is {cur}; {n} stacks need {}", 2 * n))
    }
}
