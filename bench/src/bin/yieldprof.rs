//! Profiling aid for callgrind: `yieldprof yield N` (two coroutines yielding
//! to each other N times) or `yieldprof spawn N` (N detached spawns).
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "yield".into());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    accel_coro::block_on(move || match mode.as_str() {
        "spawn" => {
            for _ in 0..n / 32 {
                for _ in 0..32 {
                    accel_coro::spawn_detached("c", || ()).unwrap();
                }
                accel_coro::yield_now();
            }
        }
        _ => {
            let other = accel_coro::spawn("other", move || (0..n).for_each(|_| accel_coro::yield_now()));
            (0..n).for_each(|_| accel_coro::yield_now());
            other.join().unwrap();
        }
    });
}
