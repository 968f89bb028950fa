//! Scale: 100,000 coroutines ping-ponging through channels across two
//! workers, and 100,000 sleeping coroutines woken in deadline order.
//!
//! 100,000 guarded stacks need 200,000 memory mappings; `scripts/test`
//! raises `vm.max_map_count` for that. Run alone, these tests raise it
//! themselves when they can (root) and otherwise fail saying why.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use accel_coro::sync::{rendezvous, WaitQueue};
use accel_coro::{Config, Runtime, Wait};

const N: usize = 100_000;
const SMALL_STACK: usize = 16 * 1024;

fn ensure_map_count() {
    let path = "/proc/sys/vm/max_map_count";
    let cur: u64 = std::fs::read_to_string(path).unwrap().trim().parse().unwrap();
    if cur < 4 * N as u64 && std::fs::write(path, (8 * N).to_string()).is_err() {
        panic!("vm.max_map_count is {cur}; {N} guarded stacks need {}: run as root or `sysctl -w vm.max_map_count={}`", 2 * N, 8 * N);
    }
}

#[test]
fn hundred_thousand_coroutines_ping_pong_across_two_workers() {
    ensure_map_count();
    let rt = Runtime::builder()
        .workers(2)
        .config(Config {
            stack_size: SMALL_STACK,
            ..Config::default()
        })
        .build()
        .unwrap();
    const ROUNDS: u64 = 5;
    let pairs = N / 2;
    let mut handles = Vec::with_capacity(N);
    for i in 0..pairs {
        let (ping_tx, ping_rx) = rendezvous::<u64>();
        let (pong_tx, pong_rx) = rendezvous::<u64>();
        // The two ends of every pair live on different workers.
        handles.push(rt.spawn_on(i % 2, "ping", move || {
            let mut sum = 0;
            for r in 0..ROUNDS {
                ping_tx.send(i as u64 * 1000 + r).unwrap();
                sum += pong_rx.recv().unwrap();
            }
            sum
        }));
        handles.push(rt.spawn_on(i % 2 + 1, "pong", move || {
            let mut n = 0;
            while let Ok(v) = ping_rx.recv() {
                pong_tx.send(v + 1).unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0u64;
    for (k, h) in handles.into_iter().enumerate() {
        let v = h.join().unwrap();
        let i = (k / 2) as u64;
        if k % 2 == 0 {
            let want: u64 = (0..ROUNDS).map(|r| i * 1000 + r + 1).sum();
            assert_eq!(v, want, "pair {i} got wrong replies");
        } else {
            assert_eq!(v, ROUNDS, "pong {i} answered {v} times");
        }
        total += 1;
    }
    assert_eq!(total, N as u64);
}

#[test]
fn hundred_thousand_sleepers_wake_in_deadline_order() {
    ensure_map_count();
    // The deadlines start `lead` after the gate opens. A run in which a
    // sleeper got to its deadline only after it had passed proves nothing
    // about order (it does not sleep at all): it is run again with twice
    // the lead. Arming the 100,000 takes about 0.2 s on an idle machine,
    // but up to 0.99 s of the first second with four busy loops on its two
    // cores.
    let mut lead = 1_000_000_000;
    let order = loop {
        match sleepers(lead) {
            Some(order) => break order,
            None if lead < 8_000_000_000 => {
                eprintln!(
                    "a sleeper came after its deadline with a {} ms lead: again with {} ms",
                    lead / 1_000_000,
                    2 * lead / 1_000_000
                );
                lead *= 2;
            }
            None => panic!("deadline already past with an 8 s lead: machine too slow"),
        }
    };
    assert_eq!(order.len(), N);
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
    assert_eq!(inversions, 0, "sleepers woke out of deadline order");
}

/// One run of the sleepers, their deadlines from `lead_ns` after the gate
/// opens: the deadlines in waking order, or `None` if a sleeper found its
/// deadline already past.
fn sleepers(lead_ns: u64) -> Option<Vec<u64>> {
    accel_coro::block_on(move || {
        let woke = Rc::new(RefCell::new(Vec::with_capacity(N)));
        let late = Rc::new(Cell::new(false));
        // Every sleeper first parks on `gate`; once all have, the base time
        // is set `lead_ns` ahead, so no deadline is past when it is armed.
        let gate = Rc::new(WaitQueue::new());
        let base = Rc::new(Cell::new(0u64));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut handles = Vec::with_capacity(N);
        for _ in 0..N {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let offset = seed % 500_000_000; // spread over half a second
            let (woke, late, base, gate) = (woke.clone(), late.clone(), base.clone(), gate.clone());
            let stack = accel_coro::stack::take(SMALL_STACK).unwrap();
            handles.push(
                accel_coro::spawn_with_stack("sleeper", stack, move || {
                    gate.wait(Wait::forever()).unwrap();
                    let deadline = base.get() + offset;
                    if accel_coro::now_ns() >= deadline {
                        late.set(true);
                        return;
                    }
                    accel_coro::sleep_until(deadline).unwrap();
                    let now = accel_coro::now_ns();
                    assert!(now >= deadline, "woke {} ns early", deadline - now);
                    woke.borrow_mut().push(deadline);
                })
                .unwrap(),
            );
        }
        while gate.len() < N {
            accel_coro::yield_now();
        }
        base.set(accel_coro::now_ns() + lead_ns);
        assert_eq!(gate.notify_all(), N);
        for h in handles {
            h.join().unwrap();
        }
        let order = Rc::try_unwrap(woke).unwrap().into_inner();
        (!late.get()).then_some(order)
    })
}
