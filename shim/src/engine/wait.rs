//! How a thread waits in the shim: a blocking call (`read`, `accept`,
//! `connect`, a send with no room) or `epoll_wait`/`poll`/`select` with
//! nothing ready, below the sockets layer's registration
//! ([`crate::sockets::block`]).
//!
//! [`drive_until`] drives the stacks and asks the caller's `look` (which
//! registers the thread's waker on what it waits for and tries the
//! condition); if that finds nothing the thread sleeps until *its* waker is
//! woken: whoever drives the stacks wakes the threads of the sockets they
//! signalled and no others, so with N threads waiting a frame costs one
//! wake-up, not N. The waiting primitive is accel-coro's [`Parker`]
//! (libtcr's and libwire's waits for plain threads): a futex, or `ppoll` on
//! its eventfd when the thread must also hear kernel fds or take a signal
//! mask.
//!
//! Who drives the device while threads wait, in three roles:
//! - the *spinner*: at most one thread polls the device in a loop for
//!   `ACCEL_SPIN_US` after it enters or wakes (on two cores, two spinners
//!   starve the peer), while no more threads wait than there are CPUs and
//!   fewer of the program's other threads are busy (`SpinCredit`), and the
//!   kernel does not keep preempting it for threads that could run on its
//!   core ([`crate::engine::contention`]);
//! - the *sleeper*: at most one thread sleeps on the device for everyone,
//!   in `ppoll` on the port's Rx interrupt fd (without one: a back-off of
//!   50 µs doubling to 1 ms), never past the stack's next timer; it drives
//!   the stack when frames come, which wakes their owners. Never while a
//!   thread spins: the spinner takes the role when its spin ends, and a
//!   sleeper that finds a spinner parks instead (else it would wake for
//!   every frame that the spinner takes anyway);
//! - everyone else parks, woken only for its own socket or set.
//!
//! With lanes (net_tap, `ACCEL_LANES`: [`crate::engine::lanes`]), a
//! waiting thread of a program with several also sleeps on its own queue
//! of the tap, where the kernel sends its connections' frames, and reads
//! it when it wakes or spins; it does not poll the port's queue as it
//! enters (the sleeper does).
//!
//! A single-threaded program's thread is its own sleeper, as before: one
//! wake-up per frame. The role goes to the busy thread: a thread that has
//! waited a whole keeper period while others wait too gives it up and
//! parks (memcached's accept thread beside its worker), and a thread that
//! comes to wait takes it from the keeper. When a wait ends leaving the
//! device to nobody (no thread waits any more, or the rest are parked),
//! the keeper takes the role only once no thread of the program has
//! driven the device for a period ([`crate::engine::keeper`]): a busy
//! server comes back to the shim sooner, and pays no futex wake, no
//! context switch and no contention for the stack per request.
//!
//! `look` registers and checks the condition under the sockets' lock, and
//! a wake that comes before the sleep leaves a permit in the parker: no
//! wake-up is lost. A signal handler that runs ends the wait as
//! [`WaitEnd::Interrupted`], with the kernel's restart rule.

use crate::engine::contention::Contention;
use crate::engine::keeper;
use crate::engine::stacks;
use crate::engine::stats::{self, Driver};
use crate::engine::worker::{now, status, Sleeper, Status, W};
use crate::signals;
use crate::startup;
use accel_coro::park::{Parker, Woke};
use accel_stack::Instant;
use libc::{pollfd, sigset_t};
use std::sync::atomic::Ordering::*;
use std::time::Duration;

thread_local! {
    /// Waiting threads this thread woke (see [`note_woken`]).
    static WOKE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The look running now follows a sleep that the caller's kernel fds
    /// ended (see [`KernelLooks`]).
    static KERNEL_WOKE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The stack the calling thread's waits are for, if one ([`Focus`]).
    static FOCUS: std::cell::Cell<Option<stacks::Q>> = const { std::cell::Cell::new(None) };
}

/// While it lives, the calling thread's waits are for a socket of stack
/// `q` alone (a read on a connection): a thread that comes to wait polls
/// that stack only, not every stack. The frames of the others are for
/// other sockets, and the threads that wait for those (or the spinner, or
/// the sleeper, which poll every stack) take them; with a queue pair per
/// core, a wait then costs one stack's poll and lock, not one per queue.
pub struct Focus(Option<stacks::Q>);

impl Focus {
    /// Waits of this thread are for stack `q` until the guard drops.
    pub fn on(q: stacks::Q) -> Focus {
        Focus(FOCUS.try_with(|f| f.replace(Some(q))).unwrap_or(None))
    }
}

impl Drop for Focus {
    fn drop(&mut self) {
        let _ = FOCUS.try_with(|f| f.set(self.0));
    }
}

/// How long a wait that looks again and again (a spin, wake-ups for its
/// sockets) trusts the kernel's last "nothing ready" about the caller's
/// kernel fds, ns: about a NIC's interrupt moderation, as for net_tap's
/// empty polls (`stacks::FRESH_NS`).
const KERNEL_RECHECK_NS: u64 = 20_000;

/// When the looks of one blocking call ask the kernel about its kernel fds
/// (an epoll set's kernel half, `poll`'s kernel fds): each look used to ask
/// with a zero-timeout `epoll_wait` or `ppoll`, and a look runs after every
/// poll of a spin. redis over memif, whose set holds its wildcard
/// listener's kernel half, made about 360,000 such calls a second, three
/// in four of them inside its waits; about 45,000 now. The call's first
/// look asks (so an event that came before the call is reported by it,
/// as the kernel would), and a later look asks only if the last answer
/// was something, or is `KERNEL_RECHECK_NS` old, or the kernel fds ended
/// the thread's sleep (it sleeps on them: an event is never left there,
/// only seen up to `KERNEL_RECHECK_NS` late while the thread spins).
#[derive(Debug, Default)]
pub struct KernelLooks {
    /// When the kernel last said nothing was ready (ns of the monotonic
    /// clock; 0: ask).
    quiet_since: u64,
}

impl KernelLooks {
    /// Whether this look asks the kernel.
    pub fn due(&self) -> bool {
        self.due_at(now().nanos())
    }

    /// Whether a look at `now` asks the kernel.
    fn due_at(&self, now: u64) -> bool {
        self.quiet_since == 0
            || KERNEL_WOKE.try_with(|k| k.get()).unwrap_or(true)
            || Self::stale(self.quiet_since, now)
    }

    /// What the kernel answered: something was `ready` (or the call
    /// failed: ask again next time).
    pub fn answered(&mut self, ready: bool) {
        self.answered_at(ready, now().nanos());
    }

    /// What the kernel answered at `now`.
    fn answered_at(&mut self, ready: bool, now: u64) {
        self.quiet_since = if ready { 0 } else { now.max(1) };
    }

    /// Whether a "nothing ready" of `quiet_since` is too old at `now`.
    fn stale(quiet_since: u64, now: u64) -> bool {
        now.saturating_sub(quiet_since) >= KERNEL_RECHECK_NS
    }
}

/// The layer above woke `n` waiting threads, from this thread: what it
/// handed out after a poll went to them.
pub fn note_woken(n: usize) {
    let _ = WOKE.try_with(|w| w.set(w.get().saturating_add(n)));
}

/// How many waiting threads this thread woke since the last call.
pub fn take_woken() -> usize {
    WOKE.try_with(|w| w.replace(0)).unwrap_or(0)
}

/// Counts the calling thread among the program's threads that wait in the
/// shim (`W.threads`) from its first wait to its end (see [`SpinCredit`]).
struct Member(std::cell::Cell<bool>);

impl Member {
    fn join(&self) {
        if !self.0.replace(true) {
            W.threads.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.0.get() {
            let _ = W.threads.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        }
    }
}

thread_local! {
    static MEMBER: Member = const { Member(std::cell::Cell::new(false)) };
}

/// In the child of `fork`: only the forking thread is there.
pub(crate) fn after_fork() {
    let me = MEMBER.try_with(|m| u32::from(m.0.get())).unwrap_or(0);
    W.threads.store(me, Relaxed);
}

/// How a wait ended without its condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// The deadline passed.
    TimedOut,
    /// A signal handler ran; `restart`: the kernel would restart the call
    /// (every handler that ran had `SA_RESTART`, and the call has no
    /// timeout).
    Interrupted {
        /// Whether to go on waiting rather than fail with `EINTR`.
        restart: bool,
    },
}

/// Drives the stacks until `look` returns a result, the `deadline`
/// passes or a signal arrives (see the module documentation). `look` runs
/// right after a poll of the stacks (or, when the caller's kernel fds woke
/// the sleep, without one); it takes the sockets' lock, registers the
/// thread where it waits and tries its condition. Its argument says that
/// the thread's own waker ended the sleep before it: what it waits for is
/// likely ready. `extra` are kernel fds to sleep on as well (their
/// `revents` are overwritten); `sigmask` is the mask to sleep with
/// (`ppoll`'s).
pub fn drive_until<R>(
    deadline: Option<Instant>,
    extra: &mut [pollfd],
    sigmask: Option<&sigset_t>,
    mut look: impl FnMut(bool) -> Option<R>,
) -> Result<R, WaitEnd> {
    let _ = MEMBER.try_with(Member::join);
    W.waiters.fetch_add(1, SeqCst);
    W.entered.fetch_add(1, Relaxed);
    let mut roles = Roles::default();
    let r = drive_inner(deadline, extra, sigmask, &mut look, &mut roles);
    let was_sleeper = roles.sleeper;
    drop(roles);
    let left = W.waiters.fetch_sub(1, SeqCst).saturating_sub(1);
    if left == 0 || was_sleeper || !(W.device_watched() || W.spinning.load(SeqCst)) {
        // The device is left to nobody: no thread waits now (the program
        // computes), or those that wait are parked on their own sockets.
        // The keeper drives then. It looks within its period by itself
        // while the program keeps coming back (a server between two
        // requests: its thread drives again on its next call), so only a
        // keeper parked for longer is woken, and no request pays a futex
        // wake and a context switch for it; a sleeper that leaves others
        // waiting does not wake it either (the thread that waits next
        // takes the device, or the keeper within its period).
        W.undriven.fetch_add(1, SeqCst);
        if W.keeper_away.load(SeqCst) {
            keeper::nudge();
        }
    }
    r
}

fn drive_inner<R>(
    deadline: Option<Instant>,
    extra: &mut [pollfd],
    sigmask: Option<&sigset_t>,
    look: &mut impl FnMut(bool) -> Option<R>,
    roles: &mut Roles,
) -> Result<R, WaitEnd> {
    let spin = Duration::from_micros(u64::from(startup::config().spin_us));
    let period = Duration::from_micros(u64::from(startup::config().keeper_us.max(1)));
    let entered_at = now();
    let parker = Parker::current();
    let mut idle_since: Option<Instant> = None;
    let mut backoff = Duration::from_micros(50);
    // Filled only if the wait comes to sleeping in ppoll (the thread's
    // buffer: a thread that sleeps on its lane sleeps in ppoll every wait).
    let mut fds = FdsBuf::take();
    let start = signals::epoch();
    // A call with a timeout is never restarted (signal(7)).
    let interrupted = |known: bool| {
        let e = signals::epoch();
        let restart = if e.0 != start.0 {
            e.1 == start.1
        } else {
            known && !crate::sys::some_handler_interrupts()
        };
        WaitEnd::Interrupted {
            restart: restart && deadline.is_none(),
        }
    };
    // The caller's kernel fds woke the last sleep: their events came before
    // whatever frames the device holds now, so they are looked at first.
    let mut kernel_first = false;
    let mut first = true;
    // The thread's waker ended its last sleep.
    let mut notified = false;
    // Whether this thread's spins pay off lately (asked once per spin).
    let mut spin_now: Option<bool> = None;
    // On net_tap, with several threads: the thread's own queue, where its
    // connections' frames come (`lanes`); it sleeps on it too.
    let lane = crate::engine::lanes::take_mine();
    let _watching = lane.map(Watching::new);
    // The lane woke the last sleep; when the spinner last read it.
    let mut lane_due = false;
    let mut lane_read_at = 0u64;
    // The sleeper's last sleep, every Rx interrupt armed, ended by its
    // waker or the caller's fds: the stacks whose interrupt spoke
    // (`stacks::poll_signalled` polls those, and skips the tap queues that
    // hold nothing new).
    let mut device_signalled: Option<u64> = None;
    let mut next_timer: Option<Instant> = None;
    loop {
        if std::mem::take(&mut lane_due) {
            crate::engine::lanes::read_mine(focused());
        }
        if std::mem::take(&mut kernel_first) {
            // Once without a poll of the stack; then as usual. The look
            // asks the kernel (`KernelLooks`).
            let _ = KERNEL_WOKE.try_with(|k| k.set(true));
            let r = look(false);
            let _ = KERNEL_WOKE.try_with(|k| k.set(false));
            if let Some(r) = r {
                return Ok(r);
            }
        }
        // One thread drives the device at a time: a woken thread only
        // looks (the driver that woke it has polled), unless it spins or
        // sleeps on the device; a thread entering polls once, unless
        // another spins.
        // A thread with a lane does not poll as it enters: its frames come
        // to the lane, which its sleep hears (the port's queue has a
        // sleeper of its own).
        let signalled = device_signalled.take();
        let drive = roles.spinner || roles.sleeper || (first && lane.is_none() && !W.spinning.load(Relaxed));
        first = false;
        // The devices are polled without the sockets' lock; `look` hands
        // out what they signalled under it, before it looks.
        let res = if drive && roles.spinner {
            stats::as_driver(Driver::Spin, stacks::poll_all_spinning)
        } else if drive && roles.sleeper {
            stats::as_driver(Driver::Sleep, || match signalled {
                Some(mask) => stacks::poll_signalled(mask),
                None => stacks::poll_all(),
            })
        } else if drive {
            // A thread entering: the call that brought it here has just
            // polled, as a rule (see `poll_unless_fresh`); the stack it
            // waits for alone, if it waits for one (`Focus`).
            let focus = FOCUS.try_with(|f| f.get()).unwrap_or(None);
            stats::as_driver(Driver::Enter, || match focus {
                Some(q) => stacks::poll_unless_fresh(q),
                None => stacks::poll_all_unless_fresh(),
            })
        } else {
            accel_stack::iface::PollResult::default()
        };
        let mut res = res;
        if drive && roles.spinner && lane.is_some() {
            // The spinner reads its lane at the pace it polls the tap.
            let t = now().nanos();
            if t.saturating_sub(lane_read_at) >= LANE_SPIN_PACE_NS {
                lane_read_at = t;
                res.progress |= crate::engine::lanes::read_mine(false) > 0;
            }
        }
        if let Some(r) = look(std::mem::take(&mut notified)) {
            return Ok(r);
        }
        if drive {
            next_timer = res.next;
        }
        let (progress, next) = (res.progress, next_timer);
        if signals::epoch().0 != start.0 {
            // A handler ran while we polled: the kernel's call would have
            // been interrupted in its sleep.
            return Err(interrupted(false));
        }
        let t = now();
        if deadline.is_some_and(|d| t >= d) {
            return Err(WaitEnd::TimedOut);
        }
        if progress {
            backoff = Duration::from_micros(50);
        }
        // Spin for ACCEL_SPIN_US after entering and after each wake-up, if
        // no other thread is spinning already.
        let since = *idle_since.get_or_insert(t);
        if t.saturating_since(since) < spin
            && (roles.spinner || *spin_now.get_or_insert_with(SpinCredit::ask))
            && roles.take_spinner()
        {
            std::hint::spin_loop();
            continue;
        }
        roles.release_spinner();
        spin_now = None;
        let left = deadline.map(|d| d.saturating_since(t));
        let mask = sigmask.map_or(std::ptr::null(), |m| m as *const sigset_t);
        fds.clear();
        let own;
        // A thread that spins becomes the sleeper when its spin ends: one
        // that slept on the device meanwhile would wake for every frame
        // the spinner takes anyway, so it parks on its own sockets instead.
        if roles.sleeper && W.spinning.load(SeqCst) {
            roles.release_sleeper();
        }
        // A thread that has waited a whole keeper period while others wait
        // too is not the busy one (memcached's accept thread beside its
        // worker): it parks on its own sockets and leaves the device to a
        // thread that waits anew, or to the keeper meanwhile (which steps
        // aside for the next thread to wait). Else every frame for the busy
        // thread would wake two threads.
        let long = t.saturating_since(entered_at) >= period && W.waiters.load(SeqCst) > 1;
        if roles.sleeper && long {
            // The keeper takes the device at once (no thread of the
            // program drives it now): one wake-up per long wait.
            roles.release_sleeper();
            W.last_drive.store(0, Relaxed);
            keeper::nudge();
        }
        let woke = if roles.sleeper || (!long && !W.spinning.load(SeqCst) && roles.take_sleeper()) {
            // Asleep on the devices for everyone.
            let armed = stacks::arm_rx_interrupts(&mut fds);
            let mut wait = if armed || status() != Status::Up {
                Duration::from_millis(100)
            } else {
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_millis(1));
                w
            };
            if let Some(n) = next {
                wait = wait.min(n.saturating_since(t));
            }
            if let Some(l) = left {
                wait = wait.min(l);
            }
            if let Some(c) = crate::engine::lanes::sleep_cap() {
                wait = wait.min(c);
            }
            own = fds.len();
            push_lane(&mut fds, lane);
            fds.extend(extra.iter().map(|p| pollfd { revents: 0, ..*p }));
            // SAFETY: `mask` is null or a live signal set.
            let woke = unsafe { parker.park_poll(&mut fds, Some(wait), mask) };
            let device = fds.get(..own).unwrap_or_default();
            stacks::slept(device);
            device_signalled = (armed && matches!(woke, Ok(Woke::Notified | Woke::Fds)))
                .then(|| stacks::signalled(device))
                .flatten();
            woke
        } else if extra.is_empty() && mask.is_null() && lane.is_none() {
            own = 0;
            Ok(parker.park(left))
        } else {
            own = 0;
            push_lane(&mut fds, lane);
            fds.extend(extra.iter().map(|p| pollfd { revents: 0, ..*p }));
            // SAFETY: as above.
            unsafe { parker.park_poll(&mut fds, left, mask) }
        };
        // The lane's fd follows the device's, before the caller's.
        let own_lane = usize::from(lane.is_some());
        lane_due = lane.is_some() && fds.get(own).is_some_and(|p| p.revents != 0);
        let own = own + own_lane;
        // Without an eventfd (out of fds) the thread naps instead, briefly.
        let woke = woke.unwrap_or_else(|_| {
            std::thread::sleep(Duration::from_micros(200));
            Woke::TimedOut
        });
        for (dst, src) in extra.iter_mut().zip(fds.iter().skip(own)) {
            dst.revents = src.revents;
            kernel_first |= src.revents != 0;
        }
        if woke == Woke::Interrupted {
            return Err(interrupted(true));
        }
        notified = woke == Woke::Notified;
        idle_since = None;
    }
}

/// Whether the calling thread waits for one connection's bytes ([`Focus`]).
fn focused() -> bool {
    FOCUS.try_with(|f| f.get().is_some()).unwrap_or(false)
}

/// How often a spinning thread reads its lane, ns: as often as it polls
/// net_tap's queue (`stacks::SPIN_PACE_NS`).
const LANE_SPIN_PACE_NS: u64 = 1_500;

/// While it lives, the thread's lane is watched: the thread waits and will
/// read it (see `lanes`).
struct Watching(&'static crate::engine::lanes::Lane);

impl Watching {
    fn new(lane: &'static crate::engine::lanes::Lane) -> Watching {
        lane.watch();
        Watching(lane)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.unwatch();
    }
}

thread_local! {
    /// The calling thread's buffer of pollfds for its sleeps.
    static FDS: std::cell::Cell<Vec<pollfd>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A wait's pollfds: the thread's buffer, given back when the wait ends
/// (a wait within a signal handler's finds it taken and makes its own).
struct FdsBuf(Vec<pollfd>);

impl FdsBuf {
    fn take() -> FdsBuf {
        FdsBuf(FDS.try_with(|f| f.take()).unwrap_or_default())
    }
}

impl std::ops::Deref for FdsBuf {
    type Target = Vec<pollfd>;
    fn deref(&self) -> &Vec<pollfd> {
        &self.0
    }
}

impl std::ops::DerefMut for FdsBuf {
    fn deref_mut(&mut self) -> &mut Vec<pollfd> {
        &mut self.0
    }
}

impl Drop for FdsBuf {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        v.clear();
        let _ = FDS.try_with(|f| f.set(v));
    }
}

/// Adds `lane`'s fd to a sleep's fds.
fn push_lane(fds: &mut Vec<pollfd>, lane: Option<&crate::engine::lanes::Lane>) {
    if let Some(l) = lane {
        fds.push(pollfd {
            fd: l.fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
}

/// The roles a waiting thread holds (see the module docs); dropped, it
/// gives them up.
#[derive(Default)]
struct Roles {
    spinner: bool,
    sleeper: bool,
}

impl Roles {
    /// Becomes (or stays) the spinner, if no other thread is.
    fn take_spinner(&mut self) -> bool {
        if !self.spinner {
            self.spinner = W.spinning.compare_exchange(false, true, AcqRel, Relaxed).is_ok();
        }
        self.spinner
    }

    /// Stops spinning.
    fn release_spinner(&mut self) {
        if std::mem::take(&mut self.spinner) {
            W.spinning.store(false, Release);
        }
    }

    /// Becomes the sleeper, if no other thread is.
    fn take_sleeper(&mut self) -> bool {
        self.sleeper = W.take_sleeper(Sleeper::Thread);
        self.sleeper
    }

    /// Stops sleeping on the device.
    fn release_sleeper(&mut self) {
        if std::mem::take(&mut self.sleeper) {
            W.release_sleeper(Sleeper::Thread);
        }
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        self.release_spinner();
        self.release_sleeper();
    }
}

/// Whether a waiting thread should spin: only while no more threads wait
/// in the shim than the process has CPUs, and fewer of the program's
/// other threads are busy than it has CPUs (a thread is *busy* from its
/// first wait in the shim to its end, except while it waits there:
/// [`Member`]). A single-threaded server (or one thread per core) spins,
/// and gets its next request without a sleep; a thread-per-connection
/// server with more waiting threads than cores does not, since each spin
/// would take a core that its clients and its other threads need. Nor
/// does one whose other threads keep the cores busy: Python's
/// thread-per-connection echo over memif, 10 connections, spun whenever
/// only two threads waited, that is while eight ran or queued for the
/// GIL, and its p999 was 2.4-2.9 ms against the kernel's 0.4-0.5 (0.5-1.0
/// ms without the spin). Nor does a thread that the kernel keeps preempting
/// ([`Contention`]): other processes' threads need its core (a client's
/// event loop beside the threads of the server it loads, on two cores).
/// (A moving average of each thread's waits was tried first: it collapsed
/// redis over memif to 40 %, since the waits of a thread that stops
/// spinning grow, and so it never spins again.)
struct SpinCredit;

impl SpinCredit {
    /// Whether the cores leave room for a spinner, with `waiters` threads
    /// waiting in the shim (the caller among them) of the `threads` that
    /// use it, on `cpus` CPUs.
    fn room(waiters: u32, threads: u32, cpus: u32) -> bool {
        let busy = threads.saturating_sub(waiters);
        waiters <= cpus && busy < cpus
    }

    /// Whether to spin now.
    fn ask() -> bool {
        static CPUS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        thread_local! {
            static CONTENTION: std::cell::Cell<Contention> = const {
                std::cell::Cell::new(Contention::new())
            };
        }
        let cpus = *CPUS.get_or_init(crate::engine::worker::cpus);
        Self::room(W.waiters.load(Relaxed), W.threads.load(Relaxed), cpus)
            && CONTENTION
                .try_with(|c| {
                    let mut mine = c.get();
                    let yes = mine.may_spin(now().nanos(), crate::sys::preemptions);
                    c.set(mine);
                    yes
                })
                .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::{KernelLooks, SpinCredit, KERNEL_RECHECK_NS};

    #[test]
    fn a_look_trusts_the_kernels_nothing_for_a_while_only() {
        let t = 7_000_000_000;
        assert!(!KernelLooks::stale(t - 5_000, t));
        assert!(KernelLooks::stale(t - KERNEL_RECHECK_NS, t));
        // An answer stamped after the clock read is fresh, not stale.
        assert!(!KernelLooks::stale(t + 1_000, t));
        // The first look asks; after "something" the next asks too; after
        // "nothing" it does not, unless the kernel fds woke the sleep.
        // (At fixed times: a thread of a loaded machine may be off its
        // CPU for longer than KERNEL_RECHECK_NS between two clock reads.)
        let mut k = KernelLooks::default();
        assert!(k.due_at(t));
        k.answered_at(true, t);
        assert!(k.due_at(t + 1_000));
        k.answered_at(false, t);
        assert!(!k.due_at(t + 1_000));
        assert!(k.due_at(t + KERNEL_RECHECK_NS));
        super::KERNEL_WOKE.with(|w| w.set(true));
        assert!(k.due_at(t + 1_000));
        super::KERNEL_WOKE.with(|w| w.set(false));
    }

    #[test]
    fn a_spinner_needs_a_core_no_busy_thread_wants() {
        // A single-threaded server, and one thread per core.
        assert!(SpinCredit::room(1, 1, 2));
        assert!(SpinCredit::room(2, 2, 2));
        // memcached -t 1: its accept thread and its worker.
        assert!(SpinCredit::room(1, 2, 2));
        // A thread per connection, ten of them: never, however many wait.
        assert!(!SpinCredit::room(2, 10, 2), "eight busy threads need the cores");
        assert!(!SpinCredit::room(9, 10, 2), "more waiters than CPUs");
        // memcached -t 4 and its accept thread: on two CPUs, not with
        // three busy; on four, with one busy but not with four.
        assert!(!SpinCredit::room(2, 5, 2));
        assert!(SpinCredit::room(4, 5, 4));
        assert!(!SpinCredit::room(1, 5, 4));
        // Fewer threads than waiters (the counts read apart): none busy.
        assert!(SpinCredit::room(1, 0, 1));
    }
}
