//! The keeper thread: it keeps the stack moving when no thread of the
//! program does.
//!
//! - While no thread waits in the shim (the program computes), it polls the
//!   stack every `ACCEL_KEEPER_US` that nobody else did, so ACKs,
//!   retransmissions and ARP go on; with every device's Rx interrupt
//!   armed, when frames come or the next timer is due (within 10
//!   periods), or when a thread of the program leaves the device to
//!   nobody (as it nudges a keeper parked for long: `W.keeper_away`).
//!   (A program that computes between calls of the shim, an event loop
//!   serving many sockets, polls the stack itself after a period:
//!   `stacks::output_or_poll`.) Between rounds it sleeps in `ppoll` on the
//!   epoll fds of the shim's sets, so that a kernel member that becomes
//!   ready is noted in order among the stack's events (see `epoll`'s
//!   module docs on order).
//! - While threads wait and one of them spins or sleeps on the device for
//!   everyone (`wait`'s spinner and sleeper), it parks. While the program's
//!   waits come and go (a busy server), it parks one period at a time and
//!   looks by itself, so that no request pays a futex wake for it; once a
//!   thread has waited through a whole period, its parks double up to a
//!   second and the thread that leaves the last wait wakes it (`Away`).
//! - While threads wait and none spins or sleeps on the device (the
//!   sleeper left: its own socket was ready), and no thread of the program
//!   has polled the stack for a period, it takes the sleeper's role: it
//!   sleeps on the Rx interrupt (or backs off polling), polls the stack
//!   when frames come, which wakes exactly the threads they are for. It
//!   steps aside as soon as a thread comes to wait (which takes the role)
//!   or what it polled woke one (the busy thread, which takes the role
//!   when it waits again).
//!
//! It takes no signal of the program's, only DPDK's (net_tap's per-frame
//! Rx trigger would be sent to it, were it on: `hooks::sigaction` refuses
//! it), so it never interrupts the program's calls.

use crate::engine::stacks;
use crate::engine::stats::{self, Driver};
use crate::engine::worker::{now, status, Sleeper, Status, W};
use crate::logging::log;
use crate::{signals, startup, sys};
use accel_coro::park::Parker;
use libc::pollfd;
use std::sync::atomic::{AtomicI32, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The keeper's parker, once it runs.
static PARKER: OnceLock<Arc<Parker>> = OnceLock::new();

thread_local! {
    /// This thread is the keeper.
    static KEEPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is the keeper.
pub fn on_keeper() -> bool {
    KEEPER.try_with(|k| k.get()).unwrap_or(false)
}

/// Whether the keeper thread runs.
pub fn running() -> bool {
    PARKER.get().is_some()
}

/// Tells the keeper that the waiting threads changed (none waits now, or
/// the one on the device left): it looks at once.
pub fn nudge() {
    if let Some(p) = PARKER.get() {
        p.unpark();
    }
}

/// In the child of `fork`: the keeper is not there (threads do not
/// survive a fork); its parker's eventfd is the parent's.
pub fn after_fork() {
    if let Some(p) = PARKER.get() {
        p.after_fork();
    }
}

/// Starts the keeper thread (once per process that starts the stack);
/// returns its thread id.
pub fn spawn() -> Option<libc::pid_t> {
    static TID: AtomicI32 = AtomicI32::new(0);
    let period = Duration::from_micros(u64::from(startup::config().keeper_us.max(1)));
    let spawned = std::thread::Builder::new()
        .name("accel-keeper".into())
        .spawn(move || {
            program_signals_off();
            let _ = KEEPER.try_with(|k| k.set(true));
            let _ = PARKER.set(Parker::current());
            TID.store(sys::gettid(), Release);
            keeper(period)
        });
    if let Err(e) = spawned {
        log!(
            warn,
            "cannot start the keeper thread ({e}): the stack moves only while the program is in a socket call"
        );
        return None;
    }
    for _ in 0..1000 {
        let tid = TID.load(Acquire);
        if tid > 0 {
            return Some(tid);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

/// The keeper (and the relay) take no signal of the program's (they go
/// to the program's threads), only DPDK's own (net_tap's Rx trigger, a
/// realtime signal set with F_SETSIG; it must be taken, or the queue of
/// pending ones overflows into a SIGIO that would end the process) and
/// SIGIO.
pub(crate) fn program_signals_off() {
    // SAFETY: sigset operations on a local set; pthread_sigmask changes
    // only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigdelset(&mut set, libc::SIGIO);
        for sig in 1..=64 {
            if signals::is_internal(sig) {
                libc::sigdelset(&mut set, sig);
            }
        }
        for sync in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
            libc::sigdelset(&mut set, sync);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn keeper(period: Duration) {
    let parker = Parker::current();
    let mut halves = Halves::default();
    let mut away = Away::new(period);
    loop {
        if status() != Status::Up {
            return;
        }
        stats::tick();
        crate::engine::lanes::keep();
        if W.waiters.load(SeqCst) == 0 {
            away.reset();
            halves.round(period, &parker);
            continue;
        }
        halves.clear();
        // A spinning thread becomes the sleeper itself when its spin ends:
        // taking the role from it would put it to sleep on its futex, and
        // its next frame would wake two threads (the keeper, then it).
        // The device is the keeper's only once no thread of the program
        // has driven it for a period: a busy thread's next wait polls it,
        // and the keeper on the device meanwhile would take its frames
        // (a wake-up and a context switch for each, and both threads
        // contending for the stack).
        let driven = || now().nanos().saturating_sub(W.last_drive.load(Relaxed)) < period.as_nanos() as u64;
        if !driven() && !W.spinning.load(SeqCst) && W.take_sleeper(Sleeper::Keeper) {
            let busy = on_device(&parker);
            W.release_sleeper(Sleeper::Keeper);
            if busy {
                // The program's threads take the role as they wait again:
                // the keeper parks a period at a time while they keep
                // coming (waits begin), and takes the role back after a
                // whole period without a new wait, or once no thread
                // drives (a sleeper that waited long gave the role up).
                W.keeper_away.store(false, SeqCst);
                loop {
                    let entered = W.entered.load(SeqCst);
                    let _ = parker.park(Some(period));
                    if W.entered.load(SeqCst) == entered
                        || !driven()
                        || W.waiters.load(SeqCst) == 0
                        || status() != Status::Up
                    {
                        break;
                    }
                }
            }
        } else {
            // A waiting thread spins or sleeps on the device: until it
            // leaves, or for as long as `Away` says.
            let _ = parker.park(Some(away.next()));
        }
    }
}

/// How long the keeper parks while a thread waits on the device. A thread
/// that leaves the last wait would have to wake it (a futex wake, and a
/// context switch on a core its program's clients may need) for every
/// request of a busy server; instead, while the waits come and go, the
/// keeper parks for one period at a time and looks by itself. Once a
/// period passes with a thread waiting throughout (the program is idle),
/// the parks double, up to a second, and `W.keeper_away` tells the next
/// thread to leave to wake it: an idle process costs no wake-ups.
struct Away {
    period: Duration,
    park: Duration,
    seen: u64,
}

impl Away {
    fn new(period: Duration) -> Away {
        Away {
            period,
            park: period,
            seen: W.undriven.load(SeqCst),
        }
    }

    /// The program's threads left their waits: parks are short again.
    fn reset(&mut self) {
        self.park = self.period;
        W.keeper_away.store(false, SeqCst);
    }

    /// The next park's length.
    fn next(&mut self) -> Duration {
        let emptied = W.undriven.load(SeqCst);
        if emptied != self.seen {
            self.seen = emptied;
            self.park = self.period;
        } else {
            self.park = (self.park * 2).min(Duration::from_secs(1));
        }
        let away = self.park > self.period;
        W.keeper_away.store(away, SeqCst);
        if away && W.undriven.load(SeqCst) != emptied {
            // A thread left the last wait between our look and the store,
            // and saw no need to nudge: look again at once.
            self.park = self.period;
            W.keeper_away.store(false, SeqCst);
        }
        self.park
    }
}

/// The sleeper's role, for the waiting threads, until none waits, or the
/// program's threads drive the device themselves again (`true`): one of
/// them spins (it becomes the sleeper when its spin ends), or a wait began
/// (that thread takes the role once its spin ends), or what the keeper
/// polled woke a thread (that thread is the busy one, and takes the role
/// when it waits again), or every wait it took the role for has ended
/// (`W.undriven` moved) and later waits find their own sleeper. Holding
/// on to the role while the program's threads come and go would make
/// every frame wake two threads, the keeper and then the one it is for,
/// and both contend for the stack: memcached's worker, while its accept
/// thread waits for ever, parked on its sockets behind the keeper for
/// every request.
fn on_device(parker: &Parker) -> bool {
    let mut backoff = Duration::from_micros(50);
    let mut fds: Vec<pollfd> = Vec::new();
    let emptied = W.undriven.load(SeqCst);
    let entered = W.entered.load(SeqCst);
    loop {
        if W.waiters.load(SeqCst) == 0 || status() != Status::Up {
            return false;
        }
        if W.undriven.load(SeqCst) != emptied
            || W.spinning.load(SeqCst)
            || W.entered.load(SeqCst) != entered
            || !W.sleeper_is(Sleeper::Keeper)
        {
            return true;
        }
        stats::tick();
        let _ = crate::engine::wait::take_woken();
        let (progress, next) = {
            let r = stats::as_driver(Driver::Keeper, stacks::poll_all);
            if let Some(above) = crate::engine::above() {
                above.hand_out(true);
            }
            (r.progress, r.next)
        };
        if crate::engine::wait::take_woken() > 0 {
            return true;
        }
        if progress {
            backoff = Duration::from_micros(50);
        }
        fds.clear();
        let armed = stacks::arm_rx_interrupts(&mut fds);
        let mut wait = if armed {
            Duration::from_millis(100)
        } else {
            let w = backoff;
            backoff = (backoff * 2).min(Duration::from_millis(1));
            w
        };
        if let Some(n) = next {
            wait = wait.min(n.saturating_since(now()));
        }
        if let Some(c) = crate::engine::lanes::sleep_cap() {
            wait = wait.min(c);
        }
        // SAFETY: no signal mask.
        if unsafe { parker.park_poll(&mut fds, Some(wait), std::ptr::null()) }.is_err() {
            std::thread::sleep(wait.min(Duration::from_millis(1)));
        }
        stacks::slept(&fds);
    }
}

/// The keeper's rounds while the program computes: the kernel halves of
/// the shim's epoll sets it watches, as (pollfd, set handle).
#[derive(Default)]
struct Halves {
    fds: Vec<pollfd>,
    sets: Vec<u32>,
    /// The kernel halves the sockets layer gave last (fd, set).
    list: Vec<(libc::c_int, u32)>,
    /// When the stacks' next timer is due, as the keeper's last poll said.
    next: Option<accel_stack::Instant>,
}

/// How many periods a round may sleep while every device will wake it when
/// frames come: timers that the program's own calls arm meanwhile (the
/// keeper knows those of its last poll) fire at most this late.
const ARMED_PERIODS: u32 = 10;

impl Halves {
    fn clear(&mut self) {
        self.fds.clear();
        self.sets.clear();
    }

    /// Sleeps `period` (watching the kernel halves), then polls the stack
    /// if nobody did in that time, and notes the kernel halves seen ready:
    /// after that poll, so that frames that came before are ordered first.
    /// While the program stays away and every device's Rx interrupt is
    /// armed, a round sleeps until the stacks' next timer instead, up to
    /// `ARMED_PERIODS` periods: a frame wakes it anyway. A program that
    /// keeps connections open while it computes or sleeps elsewhere (an
    /// idle client in `nanosleep`) cost a poll every period: 3.2 % of a
    /// core over memif.
    fn round(&mut self, period: Duration, parker: &Parker) {
        // The devices' Rx interrupts too, once the program has not driven
        // the stacks for a period (it computes, or waits on kernel fds
        // only): a frame is then handled when it comes, so that ACKs leave
        // at once and events keep their order across queues as closely as
        // the device lets us know it. While the program comes back to the
        // shim within the period (a busy server between two requests) its
        // own calls poll, and the keeper sleeping on the Rx interrupt would
        // wake for every frame that the program's thread is about to take
        // anyway: a context switch per request on the cores its clients
        // need.
        let halves = self.fds.len();
        let last = W.last_drive.load(Relaxed);
        let t = now();
        let mut sleep = period;
        if t.nanos().saturating_sub(last) >= period.as_nanos() as u64
            && stacks::arm_rx_interrupts(&mut self.fds)
        {
            sleep = period * ARMED_PERIODS;
            if let Some(n) = self.next {
                sleep = sleep.min(n.saturating_since(t));
            }
            if let Some(c) = crate::engine::lanes::sleep_cap() {
                sleep = sleep.min(c).max(period);
            }
        }
        if sleep > period {
            // A long round: a thread that leaves the device to nobody
            // (its wait ended while others wait on their sockets, or the
            // last wait ended) wakes it, as it would a keeper parked for
            // long: it must not sleep through the moments the program's
            // threads need it.
            W.keeper_away.store(true, SeqCst);
            // SAFETY: no signal mask pointer.
            if unsafe { parker.park_poll(&mut self.fds, Some(sleep), std::ptr::null()) }.is_err() {
                // No eventfd: a round of a period, as before.
                // SAFETY: as above.
                let _ = unsafe { sys::ppoll(&mut self.fds, Some(period), std::ptr::null()) };
            }
            W.keeper_away.store(false, SeqCst);
        } else if self.fds.is_empty() {
            std::thread::sleep(sleep);
        } else {
            // SAFETY: no signal mask pointer.
            let _ = unsafe { sys::ppoll(&mut self.fds, Some(sleep), std::ptr::null()) };
        }
        stacks::slept(self.fds.get(halves..).unwrap_or_default());
        let rx = self.fds.iter().skip(halves).any(|p| p.revents != 0);
        self.fds.truncate(halves);
        if W.waiters.load(SeqCst) > 0 {
            return;
        }
        let seen = self.fds.iter().any(|p| p.revents != 0);
        let last = W.last_drive.load(Relaxed);
        let due = now().nanos().saturating_sub(last) >= period.as_nanos() as u64;
        if due || seen || rx {
            self.next = stats::as_driver(Driver::Round, stacks::poll_all).next;
        }
        let Some(above) = crate::engine::above() else {
            return;
        };
        let seen_sets: Vec<u32> = self
            .fds
            .iter()
            .zip(&self.sets)
            .filter(|(p, _)| p.revents != 0)
            .map(|(_, &set)| set)
            .collect();
        // Something seen must be noted: wait for the lock then.
        let mut list = std::mem::take(&mut self.list);
        list.clear();
        if !above.round_done(&seen_sets, &mut list, seen) {
            self.list = list;
            return;
        }
        self.clear();
        for &(fd, set) in &list {
            self.fds.push(pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            self.sets.push(set);
        }
        self.list = list;
    }
}
