//! accel-bench: microbenchmarks printed as `name value unit` lines, one
//! figure per line, so runs can be compared and parsed by scripts.

use std::time::Instant;

pub mod woken;

/// Prints one figure.
pub fn report(name: &str, value: f64, unit: &str) {
    if value >= 100.0 {
        println!("{name} {value:.0} {unit}");
    } else {
        println!("{name} {value:.2} {unit}");
    }
}

/// Bytes `i mod 256` for `i` in `0..512`: every [`ramp`] is a slice of it.
static RAMP: [u8; 512] = {
    let mut r = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        r[i] = i as u8;
        i += 1;
    }
    r
};

/// Message `round` of connection `id`, as the echo benchmarks send and
/// check it: both numbers (little-endian), then bytes `base + k` (mod 256)
/// with `base = round * 31 + id`, so a message misplaced in its stream or
/// sent on the wrong connection differs.
///
/// # Panics
/// If `msg` is shorter than 12 bytes or longer than 268.
pub fn message(msg: &mut [u8], id: u32, round: u64) {
    msg[..4].copy_from_slice(&id.to_le_bytes());
    msg[4..12].copy_from_slice(&round.to_le_bytes());
    let base = (round as u8).wrapping_mul(31).wrapping_add(id as u8);
    let n = msg.len() - 12;
    msg[12..].copy_from_slice(ramp(base, n));
}

/// Bytes `start + k` (mod 256) for `k` in `0..len`, without a loop.
///
/// # Panics
/// If `len` exceeds 256.
pub fn ramp(start: u8, len: usize) -> &'static [u8] {
    let start = usize::from(start);
    &RAMP[start..start + len]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_differ_by_round_and_connection() {
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        message(&mut a, 7, 3);
        assert_eq!(&a[..4], &7u32.to_le_bytes());
        assert_eq!(&a[4..12], &3u64.to_le_bytes());
        let base = 3u8.wrapping_mul(31).wrapping_add(7);
        assert!(a[12..]
            .iter()
            .enumerate()
            .all(|(k, &x)| x == base.wrapping_add(k as u8)));
        message(&mut b, 7, 4);
        assert_ne!(a[12..], b[12..]);
        message(&mut b, 8, 3);
        assert_ne!(a[12..], b[12..]);
        let mut long = [0u8; 268];
        message(&mut long, u32::MAX, u64::MAX);
        assert_eq!(
            long[267],
            (u64::MAX as u8)
                .wrapping_mul(31)
                .wrapping_add(u32::MAX as u8)
                .wrapping_add(255)
        );
    }
}
