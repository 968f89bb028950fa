//! `cargo run --release -p accel-bench --bin coro`: the coroutine runtime's
//! costs, one `name value unit` line each, all measured in this run.
//!
//! - `bare_switch_ns`: corosensei resume + suspend round trip, no scheduler.
//! - `yield_ns`: one `yield_now` through our scheduler with two coroutines
//!   taking turns (coroutine → scheduler → the other coroutine).
//! - `bare_alternating_ns`: two coroutines resumed in turn from one plain
//!   loop, no scheduler: the floor for `yield_ns`.
//! - `spawn_ns`: spawn a (detached) coroutine and run it to its end on a
//!   pooled stack; `spawn_join_ns` the same with a join handle.
//! - `channel_pingpong_ns`: one round trip through two rendezvous channels
//!   between two coroutines of one worker.
//! - `cross_thread_wake_us`: one-way wake latency between an OS thread and a
//!   coroutine on a worker thread (half a ping-pong round trip).
//! - `parked_rss_kib`: resident memory per parked coroutine, 100,000 parked.
//! - `wio_roundtrip_us`: a blocking call handed to the wio pool and back.

use std::rc::Rc;
use std::time::Instant;

use accel_bench::{ensure_map_count, ns_per_iter, report, rss_kib};
use accel_coro::sync::{rendezvous, WaitQueue};
use accel_coro::{block_on, spawn, spawn_detached, stack, yield_now, Runtime, Wait};
use corosensei::{Coroutine, CoroutineResult};

fn bare_switch_ns() -> f64 {
    let st = stack::take(stack::DEFAULT_STACK_SIZE).expect("map a stack");
    // Resumed with `true` to go round again, `false` to return: a suspended
    // coroutine must never be dropped.
    let mut co = Coroutine::with_stack(st, |y: &corosensei::Yielder<bool, ()>, mut go: bool| {
        while go {
            go = y.suspend(());
        }
    });
    let ns = ns_per_iter(200, 5, |n| {
        for _ in 0..n {
            if let CoroutineResult::Return(()) = co.resume(true) {
                unreachable!()
            }
        }
    });
    assert!(matches!(co.resume(false), CoroutineResult::Return(())));
    ns
}

/// Two coroutines resumed alternately from one plain loop: the floor for
/// any scheduler that switches through a central loop (the CPU predicts the
/// switch worse when its target alternates).
fn bare_alternating_ns() -> f64 {
    let mk = || {
        let st = stack::take(stack::DEFAULT_STACK_SIZE).expect("map a stack");
        Coroutine::with_stack(st, |y: &corosensei::Yielder<bool, ()>, mut go: bool| {
            while go {
                go = y.suspend(());
            }
        })
    };
    let mut cs = [mk(), mk()];
    let ns = ns_per_iter(200, 5, |n| {
        for i in 0..n {
            let c = std::hint::black_box(&mut cs[(i & 1) as usize]);
            if let CoroutineResult::Return(()) = c.resume(true) {
                unreachable!()
            }
        }
    });
    for c in &mut cs {
        assert!(matches!(c.resume(false), CoroutineResult::Return(())));
    }
    ns
}

fn yield_ns() -> f64 {
    block_on(|| {
        ns_per_iter(200, 5, |n| {
            let other = spawn("other", move || (0..n).for_each(|_| yield_now()));
            (0..n).for_each(|_| yield_now());
            other.join().unwrap();
        }) / 2.0 // each iteration is two yields, one per coroutine
    })
}

/// Spawns `n` coroutines in batches of 32 and lets each batch run to its
/// end (their stacks go back to the pool) before the next.
fn spawn_batches(n: u64, spawn_one: &dyn Fn()) {
    let mut left = n;
    while left > 0 {
        let batch = left.min(32);
        (0..batch).for_each(|_| spawn_one());
        yield_now();
        left -= batch;
    }
}

fn spawn_ns() -> f64 {
    block_on(|| {
        stack::prefill(64, stack::DEFAULT_STACK_SIZE).unwrap();
        ns_per_iter(200, 5, |n| {
            spawn_batches(n, &|| {
                spawn_detached("child", || ()).unwrap();
            })
        })
    })
}

fn spawn_join_ns() -> f64 {
    block_on(|| {
        stack::prefill(64, stack::DEFAULT_STACK_SIZE).unwrap();
        ns_per_iter(200, 5, |n| spawn_batches(n, &|| drop(spawn("child", || ()))))
    })
}

fn channel_pingpong_ns() -> f64 {
    block_on(|| {
        let (ping_tx, ping_rx) = rendezvous::<u64>();
        let (pong_tx, pong_rx) = rendezvous::<u64>();
        let echo = spawn("echo", move || {
            while let Ok(v) = ping_rx.recv() {
                if pong_tx.send(v).is_err() {
                    break;
                }
            }
        });
        let ns = ns_per_iter(200, 5, |n| {
            for i in 0..n {
                ping_tx.send(i).unwrap();
                assert_eq!(pong_rx.recv().unwrap(), i);
            }
        });
        drop(ping_tx);
        echo.join().unwrap();
        ns
    })
}

fn cross_thread_wake_us() -> f64 {
    let rt = Runtime::new(1).expect("start a worker");
    let (ping_tx, ping_rx) = rendezvous::<u64>();
    let (pong_tx, pong_rx) = rendezvous::<u64>();
    let echo = rt.spawn_on(0, "echo", move || {
        while let Ok(v) = ping_rx.recv() {
            if pong_tx.send(v).is_err() {
                break;
            }
        }
    });
    let rounds = 20_000;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..rounds {
            ping_tx.send(i).unwrap();
            pong_rx.recv().unwrap();
        }
        // A round trip is four one-way wakes: each rendezvous send wakes
        // the receiver, and its receipt wakes the sender back.
        best = best.min(t.elapsed().as_nanos() as f64 / rounds as f64 / 4.0 / 1000.0);
    }
    drop(ping_tx);
    echo.join().unwrap();
    best
}

fn parked_rss_kib() -> Option<f64> {
    const N: usize = 100_000;
    if let Err(e) = ensure_map_count(N as u64) {
        eprintln!("parked_rss_kib skipped: {e}");
        return None;
    }
    Some(block_on(|| {
        let gate = Rc::new(WaitQueue::new());
        let before = rss_kib();
        let handles: Vec<_> = (0..N)
            .map(|_| {
                let g = gate.clone();
                spawn("parked", move || g.wait(Wait::forever()).unwrap())
            })
            .collect();
        while gate.len() < N {
            yield_now();
        }
        let after = rss_kib();
        gate.notify_all();
        handles.into_iter().for_each(|h| h.join().unwrap());
        (after - before) as f64 / N as f64
    }))
}

fn wio_roundtrip_us() -> f64 {
    let path = std::ffi::CString::new("/proc/self/stat").unwrap();
    block_on(move || {
        let fd = accel_coro::wio::open(&path, libc::O_RDONLY, 0).unwrap();
        let ns = ns_per_iter(200, 5, |n| {
            for _ in 0..n {
                accel_coro::wio::fstat(fd).unwrap();
            }
        });
        accel_coro::wio::close(fd).unwrap();
        ns / 1000.0
    })
}

fn main() {
    let bare = bare_switch_ns();
    report("bare_switch_ns", bare, "ns");
    let y = yield_ns();
    report("yield_ns", y, "ns");
    report("yield_over_bare", y / bare, "x");
    let alt = bare_alternating_ns();
    report("bare_alternating_ns", alt, "ns");
    report("yield_over_alternating", y / alt, "x");
    report("spawn_ns", spawn_ns(), "ns");
    report("spawn_join_ns", spawn_join_ns(), "ns");
    report("channel_pingpong_ns", channel_pingpong_ns(), "ns");
    report("cross_thread_wake_us", cross_thread_wake_us(), "us");
    if let Some(kib) = parked_rss_kib() {
        report("parked_rss_kib", kib, "KiB");
    }
    report("wio_roundtrip_us", wio_roundtrip_us(), "us");
}
