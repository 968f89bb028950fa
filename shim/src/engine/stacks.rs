//! The engine's stacks: one per queue pair of the port, each behind its
//! own lock, so that threads working on connections of different queues
//! do not wait for each other.
//!
//! The port is opened with `ACCEL_QUEUES` queue pairs (unset: on net_tap
//! one per CPU for a program with threads as its stack starts, else one:
//! `worker::queues_wanted`); each gets a stack with the same address and
//! MAC. (Measured on two cores: memcached -t 4 on net_tap served 28 % more
//! over two than over one, and a thread-per-connection server as many:
//! README, "Threads and queues".) A
//! connection lives on the stack of the queue its flow arrives on, for
//! life (the device's flow steering decides:
//! net_tap learns from what we send which queue a flow is on, memif's queue
//! i talks to the peer's queue i, an RSS NIC hashes); a listening or UDP
//! socket is present in every stack. Each thread is bound to one queue
//! (round robin at first use): its connects and its sends of datagrams go
//! out there, and it looks there first for a connection to accept.
//!
//! Locks: the sockets layer's lock (its socket and epoll tables) may be
//! held while a stack's is taken, never the other way round. A stack's
//! frames are sent after its lock is dropped, or at the end of the batch
//! the thread has open ([`crate::engine::device::hold_flushes`]: the
//! sockets layer's lock holds one).
//!
//! Strays: the device may deliver a segment on another queue than its
//! connection's (net_tap answers the first segment of a connection on the
//! queue of its hash, before it learns from our frames which queue the
//! flow is on); a stack keeps segments for no socket of its own, and they
//! go to the stack that has the connection ([`poll`]).
//!
//! Neighbours: an ARP reply comes in on whichever queue the device picks,
//! maybe not the one that asked; what one stack learns is taught to the
//! others after its poll ([`poll`]).

use crate::engine::device;
use crate::engine::worker::{now, ShimStack, W};
use accel_stack::iface::PollResult;
use std::cell::Cell as StdCell;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::*};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A queue pair's index.
pub type Q = u16;

/// One queue pair's stack.
pub struct Cell {
    stack: Mutex<ShimStack>,
    /// Its Rx interrupt fd, -1 if none.
    pub rx_fd: i32,
    /// When its forwarding socket was last read (ns of [`now`]; 0: read
    /// it at the next poll): see [`receive_forwarded`].
    forward_read: AtomicU64,
    /// A poll that finds no frame is a system call (net_tap's `readv`):
    /// see [`poll_unless_fresh`].
    costly: bool,
    /// `rx_fd` is a memif bell: a sleeper it wakes empties it ([`slept`]).
    bell: bool,
    /// When its last poll began (ns of [`now`]; 0: never).
    polled_at: AtomicU64,
    /// Its next timer as that poll said (ns of [`now`]; 0: none).
    next_at: AtomicU64,
    /// When a poll of it last took frames in (ns of [`now`]; 0: never):
    /// see [`cold_window`].
    rx_at: AtomicU64,
}

impl Cell {
    /// Whether a poll (and a transmit) of its device is a system call.
    pub fn costly(&self) -> bool {
        self.costly
    }

    /// What a skipped poll returns: nothing taken in, the timer of the
    /// last poll.
    fn last_word(&self) -> PollResult {
        let next = self.next_at.load(Relaxed);
        PollResult {
            next: (next != 0).then(|| accel_stack::Instant::from_nanos(next)),
            ..PollResult::default()
        }
    }
}

static CELLS: OnceLock<Box<[Cell]>> = OnceLock::new();

/// How often a thread that polls without sleeping reads the forwarding
/// sockets (see [`receive_forwarded`]), ns.
const FORWARD_READ_NS: u64 = 100_000;

/// How recent a poll of a costly device makes another needless for a
/// call that only looks whether something came ([`poll_unless_fresh`]),
/// ns: about a NIC's interrupt moderation.
const FRESH_NS: u64 = 20_000;

/// How often a spinning thread polls a costly device, ns. Back to back,
/// a spin's empty `readv`s on net_tap came about 1.5 times as often once
/// its looks stopped asking the kernel about its kernel fds each time
/// (`wait::KernelLooks`), and redis served 3-4 % fewer; this keeps the
/// spin's pace on the tap what it was, while its looks (no system call)
/// go on in between.
const SPIN_PACE_NS: u64 = 1_500;

/// How long a queue stays hot after a poll took frames from it, ns (see
/// [`cold_window`]).
const HOT_NS: u64 = 1_000_000;

/// How often a caller that only looks polls a cold queue of a port with a
/// hot one, ns (see [`cold_window`]).
const COLD_NS: u64 = 50_000;

/// Installs the stacks (once, at start).
pub fn install(stacks: Vec<(ShimStack, i32)>) -> Result<(), String> {
    // Other processes' stacks share the address too (see `procs`).
    let several = stacks.len() > 1 || crate::engine::procs::attached();
    let cells: Box<[Cell]> = stacks
        .into_iter()
        .map(|(mut s, rx_fd)| {
            // A segment may come in on another queue than its connection's
            // (see `poll`).
            s.iface.set_handover(several);
            // An Rx interrupt fd without a bell is a kernel queue's (net_tap,
            // or an owner's shared tap queue): reading it is a system call.
            let bell = s.device.dpdk.has_bell();
            let costly = rx_fd >= 0 && !bell;
            Cell {
                stack: Mutex::new(s),
                rx_fd,
                forward_read: AtomicU64::new(0),
                costly,
                bell: bell && rx_fd >= 0,
                polled_at: AtomicU64::new(0),
                next_at: AtomicU64::new(0),
                rx_at: AtomicU64::new(0),
            }
        })
        .collect();
    CELLS
        .set(cells)
        .map_err(|_| "the stacks are installed already".to_owned())
}

/// The stacks (none before start, and none in the child of a fork: they
/// are the parent's).
pub fn cells() -> &'static [Cell] {
    if crate::engine::worker::status() != crate::engine::worker::Status::Up {
        return &[];
    }
    CELLS.get().map_or(&[], |c| c)
}

/// How many stacks there are (0 before start).
pub fn count() -> usize {
    cells().len()
}

/// Stack `q`, locked; `None` before start or past the last.
pub fn lock(q: Q) -> Option<StackGuard> {
    let cell = cells().get(usize::from(q))?;
    if let Ok(g) = cell.stack.try_lock() {
        return Some(StackGuard {
            guard: ManuallyDrop::new(g),
            q,
        });
    }
    // Held: how long the wait lasts is counted (the counters file).
    let since = now();
    let g = cell.stack.lock().unwrap_or_else(|e| e.into_inner());
    crate::engine::stats::lock_waited(crate::engine::stats::Lock::Stack, since);
    Some(StackGuard {
        guard: ManuallyDrop::new(g),
        q,
    })
}

thread_local! {
    /// The stack a [`lock_or_mark_busy`] of this thread found held, until
    /// [`take_busy`].
    static BUSY: std::cell::Cell<Option<Q>> = const { std::cell::Cell::new(None) };
}

/// Why [`lock_or_mark_busy`] did not lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotLocked {
    /// Another thread holds it (marked for [`take_busy`]).
    Held,
    /// There is no such stack.
    Gone,
}

/// Stack `q`, locked, for a thread that holds the sockets' lock and must
/// not sleep for the stack's under it: with 200 threads on two cores, a
/// wait's look that slept for a stack (a few hundred us, often more) held
/// every other call of the program behind the sockets' lock, and its
/// waiters queued for 16 ms and more, 5,000 times a second. After a short
/// spin ([`try_lock_briefly`]), if the lock is still held, the stack is
/// marked for the caller's [`take_busy`]: the caller lets the sockets'
/// lock go, waits for the stack's alone, and tries again
/// (`sockets::block`).
pub fn lock_or_mark_busy(q: Q) -> Result<StackGuard, NotLocked> {
    if cells().get(usize::from(q)).is_none() {
        return Err(NotLocked::Gone);
    }
    try_lock_briefly(q).ok_or_else(|| {
        let _ = BUSY.try_with(|b| b.set(Some(q)));
        NotLocked::Held
    })
}

/// The stack a [`lock_or_mark_busy`] of this thread found held since the
/// last call, if one (and the mark is cleared).
pub fn take_busy() -> Option<Q> {
    BUSY.try_with(|b| b.take()).unwrap_or(None)
}

/// Stack `q`, locked, if nobody holds it.
pub fn try_lock(q: Q) -> Option<StackGuard> {
    let cell = cells().get(usize::from(q))?;
    let guard = cell.stack.try_lock().ok()?;
    Some(StackGuard {
        guard: ManuallyDrop::new(guard),
        q,
    })
}

/// As [`try_lock`], after a short spin if another thread holds it (as
/// long as std's mutex spins before it sleeps): for a thread that holds
/// the sockets' lock and would rather let it go than sleep for the
/// stack's. A holder that is running lets go within the spin; one that is
/// off its CPU does not.
pub fn try_lock_briefly(q: Q) -> Option<StackGuard> {
    for _ in 0..100 {
        if let Some(g) = try_lock(q) {
            return Some(g);
        }
        std::hint::spin_loop();
    }
    None
}

/// A locked stack. Dropped, it unlocks, then sends the frames built
/// meanwhile, unless the thread holds the worker's lock (whose guard sends
/// them once it is dropped).
pub struct StackGuard {
    guard: ManuallyDrop<MutexGuard<'static, ShimStack>>,
    q: Q,
}

impl StackGuard {
    /// Its queue pair.
    pub fn q(&self) -> Q {
        self.q
    }
}

impl Deref for StackGuard {
    type Target = ShimStack;
    fn deref(&self) -> &ShimStack {
        &self.guard
    }
}

impl DerefMut for StackGuard {
    fn deref_mut(&mut self) -> &mut ShimStack {
        &mut self.guard
    }
}

impl Drop for StackGuard {
    fn drop(&mut self) {
        self.guard.device.stage();
        // SAFETY: the guard is dropped once, here, and not used after.
        drop(unsafe { ManuallyDrop::take(&mut self.guard) });
        if !device::flushes_held() {
            device::flush(self.q);
        }
    }
}

/// The queue pair this thread is bound to (round robin at first use).
pub fn mine() -> Q {
    thread_local! {
        static MINE: StdCell<Q> = const { StdCell::new(Q::MAX) };
    }
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = count().max(1);
    MINE.try_with(|m| {
        let q = m.get();
        if usize::from(q) < n {
            return q;
        }
        let q = (NEXT.fetch_add(1, Relaxed) as usize % n) as Q;
        m.set(q);
        q
    })
    .unwrap_or(0)
}

/// The queue pairs starting with this thread's, each once.
pub fn mine_first() -> impl Iterator<Item = Q> {
    let n = count() as Q;
    let first = mine();
    (0..n).map(move |i| (first + i) % n.max(1))
}

/// Polls stack `q` once; teaches the other stacks what it learned of its
/// neighbours; hands out the sockets it signalled (at once, or, if the
/// caller holds the worker's lock, when that is dropped).
pub fn poll(q: Q) -> PollResult {
    let Some(mut s) = lock(q) else {
        return PollResult::default();
    };
    let t = now();
    let r = s.poll(t);
    crate::engine::stats::drove(r.rx);
    // Only a costly device's polls are skipped (`poll_unless_fresh`): the
    // others need no record.
    if let Some(cell) = cells().get(usize::from(q)).filter(|c| c.costly) {
        cell.polled_at.store(t.nanos().max(1), Relaxed);
        cell.next_at
            .store(r.next.map_or(0, |n| n.nanos().max(1)), Relaxed);
        if r.rx > 0 {
            cell.rx_at.store(t.nanos().max(1), Relaxed);
        }
    }
    if !crate::engine::keeper::on_keeper() {
        W.last_drive.store(t.nanos(), Relaxed);
    }
    let learned = s.iface.take_learned_neighbours();
    let strays = s.iface.take_handover();
    drop(s);
    hand_over(q, &strays, t);
    receive_forwarded(q, t);
    // Lanes whose threads are away, and lanes given back.
    crate::engine::lanes::sweep(t.nanos());
    let mut r = r;
    if crate::engine::migrate::pending() {
        // Connections adrift are offered again soon.
        let soon = t + crate::engine::migrate::OFFER_EVERY;
        r.next = Some(r.next.map_or(soon, |n| n.min(soon)));
    }
    if crate::engine::procs::forwarding_later() {
        // Try again soon, not at the next frame or timer.
        let soon = t + std::time::Duration::from_micros(200);
        r.next = Some(r.next.map_or(soon, |n| n.min(soon)));
    }
    if !learned.is_empty() {
        let shared: Vec<_> = learned.iter().map(|&(ip, mac)| (ip, mac.0)).collect();
        crate::engine::procs::share_neighbours(&shared);
        for other in (0..count() as Q).filter(|&o| o != q) {
            if let Some(mut s) = lock(other) {
                for &(ip, mac) in &learned {
                    s.learn_neighbour(ip, mac, t);
                }
            }
        }
    }
    // Hand out what the stack signalled (the sockets' guard does it if
    // this thread holds their lock).
    if let Some(above) = crate::engine::above() {
        above.hand_out(true);
    }
    r
}

/// Segments of another stack's connections that stack `q` took in
/// (`strays`): net_tap delivers a connection's first answer (a SYN-ACK) on
/// the queue of its hash, before it has learned the connection's queue
/// from what we sent. Each goes to the stack that has the connection, or
/// back to `q` (a reset). Called without `q`'s lock.
pub fn hand_over(q: Q, strays: &[Vec<u8>], t: accel_stack::Instant) {
    for packet in strays {
        let owner = (0..count() as Q)
            .filter(|&o| o != q)
            .find_map(|o| lock(o).filter(|s| s.iface.would_take(packet, t)));
        match owner {
            Some(mut s) => s.ingest(packet, t),
            // Another process's, maybe (see `procs`); else a reset here.
            None if crate::engine::procs::forward(
                packet,
                crate::engine::procs::global(usize::from(q)),
                usize::from(q),
            ) != crate::engine::procs::Forwarded::Nobody => {}
            // A SYN for a port whose listener went here, while others take
            // the port over: the client's retransmission finds them.
            None if crate::engine::procs::drop_unclaimed(packet) => {}
            None => {
                if let Some(mut s) = lock(q) {
                    s.ingest(packet, t);
                }
            }
        }
    }
}

/// Takes the packets other processes forwarded to stack `q` (see
/// `procs`): a stack of this process that would take one gets it; else it
/// goes on to the next process, or is reset here if it came round.
fn receive_forwarded(q: Q, t: accel_stack::Instant) {
    if crate::engine::procs::forward_fd(usize::from(q)).is_none() {
        return;
    }
    // Other processes forward rarely (strays, neighbours), and a read that
    // finds nothing is a system call per poll: a thread that polls in a
    // loop reads the socket every FORWARD_READ_NS, and a sleeper that the
    // socket woke (it sleeps on it beside the Rx interrupt) at its next
    // poll (`slept` clears the mark).
    let Some(cell) = cells().get(usize::from(q)) else {
        return;
    };
    let last = cell.forward_read.load(Relaxed);
    if last != 0 && t.nanos().saturating_sub(last) < FORWARD_READ_NS {
        return;
    }
    cell.forward_read.store(t.nanos().max(1), Relaxed);
    crate::engine::procs::retry_forwarding(|packet, from| {
        if crate::engine::procs::drop_unclaimed(packet) {
            return;
        }
        if let Some(mut s) = lock(from as Q) {
            s.ingest(packet, t);
        }
    });
    crate::engine::migrate::offer_due(t);
    thread_local! {
        /// A message's room: a packet, or a connection's image.
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let _ = BUF.try_with(|b| {
        let Ok(mut buf) = b.try_borrow_mut() else { return };
        if buf.is_empty() {
            buf.resize(FORWARD_MSG_MAX, 0);
        }
        read_forwarded(q, t, &mut buf);
    });
}

/// The longest message another process sends: a connection's image.
const FORWARD_MSG_MAX: usize = accel_stack::tcp::image::MAX_DATA + 1024;

/// Reads and handles what waits on stack `q`'s forwarding socket (at most
/// 64 messages; the next poll reads on).
fn read_forwarded(q: Q, t: accel_stack::Instant, buf: &mut [u8]) {
    use crate::engine::{migrate, procs::Message};
    let Some(cell) = cells().get(usize::from(q)) else {
        return;
    };
    for _ in 0..64 {
        let Some(msg) = crate::engine::procs::receive_forwarded(usize::from(q), buf) else {
            return;
        };
        let (origin, n) = match msg {
            Message::Packet { origin, len } => (origin, len),
            Message::Neighbour(ip, mac) => {
                for o in 0..count() as Q {
                    if let Some(mut s) = lock(o) {
                        s.learn_neighbour(ip, accel_stack::wire::EthernetAddress(mac), t);
                    }
                }
                continue;
            }
            Message::Offer { from, port } => {
                crate::engine::procs::offer_seen(port);
                migrate::on_offer(from, port);
                continue;
            }
            Message::Want { from, port } => {
                migrate::on_want(from, port, t);
                continue;
            }
            Message::Conn { len } => {
                if let Some(image) = buf.get(4..len) {
                    migrate::on_conn(q, image, t);
                }
                continue;
            }
            // For the owner only.
            Message::Park { .. } => continue,
        };
        let Some(packet) = buf.get(4..n) else { continue };
        let taker = (0..count() as Q).find_map(|o| lock(o).filter(|s| s.iface.would_take(packet, t)));
        match taker {
            Some(mut s) => s.ingest(packet, t),
            None if crate::engine::procs::forward(packet, origin, usize::from(q))
                != crate::engine::procs::Forwarded::Nobody => {}
            // A SYN for a port whose listener went here, while others take
            // the port over: the client's retransmission finds them.
            None if crate::engine::procs::drop_unclaimed(packet) => {}
            None => {
                if let Some(mut s) = lock(q) {
                    s.ingest(packet, t);
                }
            }
        }
    }
    // More may wait: the next poll reads on.
    cell.forward_read.store(0, Relaxed);
}

/// Sends what stack `q`'s sockets have to send (and runs its due timers)
/// without asking the device for frames: after a write, or a read that
/// opened the window. Receiving stays with the waits, the keeper and
/// [`poll`] (on net_tap an empty receive is a system call).
pub fn output(q: Q) {
    if let Some(mut s) = lock(q) {
        s.output(now());
    }
}

/// [`output`] after a program's read or write, under the stack's lock that
/// the read or write took (one acquisition for both), unless nobody
/// watches the devices (no thread spins or sleeps on them) and no thread
/// of the program has polled them for a keeper period: then the lock is
/// let go and every stack is polled instead (which sends too). An event
/// loop that works through many ready sockets before it waits again
/// (nginx with 50 busy connections: often more than a millisecond) thus
/// takes the frames that came meanwhile itself, between its own calls,
/// and the keeper stays parked. The keeper polling beside a busy thread
/// took a core its clients need, woke for frames the thread was about to
/// take anyway, and contended with it for the stack: preempted while it
/// held the lock, it stalled the thread's writes. nginx on net_tap, a
/// second: the keeper switched about 3,400 times (920 now: its rounds) and
/// used 9 % of a core (3 %); nginx waited 1,400 times (110), mostly for
/// the stack's lock.
/// Half a period was tried too: redis, whose loop of 50 requests takes
/// about 400 us there, then polled in mid-loop and served 4-10 % fewer.
pub fn output_or_poll(mut s: StackGuard) {
    let t = now();
    let period = u64::from(crate::startup::config().keeper_us.max(1)) * 1000;
    if t.nanos().saturating_sub(W.last_drive.load(Relaxed)) >= period
        && !W.device_watched()
        && !W.spinning.load(Relaxed)
        && !crate::engine::keeper::on_keeper()
    {
        drop(s);
        poll_all();
    } else {
        s.output(t);
    }
}

/// As [`poll`], unless the stack's device is one whose empty poll is a
/// system call (net_tap) and a poll of it began less than `FRESH_NS` ago:
/// for calls that only look whether something came (a non-blocking read
/// or accept that found nothing, `epoll_wait`, a wait's first look).
/// nginx's calls on a connection used to read the tap about ten times per
/// request, half of them finding nothing. A frame that came since is
/// taken by the next poll (a thread that sleeps on the device finds its
/// fd ready at once); the skipped poll's result is the stack's next timer
/// as the last poll said.
///
/// Nor does a thread with a lane poll it while another sleeps on the
/// device: the port's queue carries none of its connections' frames (they
/// come to its lane), and what it does carry wakes the sleeper, who takes
/// it in and hands it out. memcached -t 4's `epoll_wait`s read the port's
/// queue 0.19 times per request, finding nothing.
pub fn poll_unless_fresh(q: Q) -> PollResult {
    let watched = crate::engine::lanes::mine_index().is_some() && W.device_watched();
    poll_unless_within(q, if watched { u64::MAX } else { FRESH_NS })
}

/// As [`poll`], unless the stack's device is costly and a poll of it
/// began less than `window` ns ago (or [`cold_window`], if longer).
fn poll_unless_within(q: Q, window: u64) -> PollResult {
    if let Some(cell) = cells().get(usize::from(q)).filter(|c| c.costly) {
        let t = now().nanos();
        let window = window.max(cold_window(q, t));
        if fresh(cell.costly, cell.polled_at.load(Relaxed), t, window) {
            return cell.last_word();
        }
    }
    poll(q)
}

/// How long a poll of costly queue `q` stands at `now` for a caller that
/// only looks (a spin, a first look) while the queue is *cold* (no frame
/// came for `HOT_NS`) and another queue of the port is hot: `COLD_NS`;
/// else 0. A thread whose traffic is on one queue of several then pays a
/// system call per poll on that queue alone, as with one queue: an event
/// loop's spin over two tap queues read each in turn, and rr64 over two
/// queues made 1.2 `readv`s more a round trip and 10 % fewer round trips
/// than over one. A frame on the cold queue (a SYN) waits `COLD_NS` at
/// most, as behind a NIC's interrupt moderation; the queue is hot once it
/// comes. A sleep on the device hears every queue.
fn cold_window(q: Q, now: u64) -> u64 {
    let cells = cells();
    if cells.len() < 2 {
        return 0;
    }
    let queue = |c: &Cell| (c.costly, c.rx_at.load(Relaxed));
    cold(usize::from(q), cells.iter().map(queue), now)
}

/// [`cold_window`] over the port's queues, each (whether costly, when a
/// poll last took frames from it).
fn cold(q: usize, queues: impl Iterator<Item = (bool, u64)>, now: u64) -> u64 {
    let hot = |at: u64| at != 0 && now.saturating_sub(at) < HOT_NS;
    let (mut mine_cold, mut others_hot) = (false, false);
    for (i, (costly, at)) in queues.enumerate() {
        if i == q {
            mine_cold = costly && !hot(at);
        } else {
            others_hot |= hot(at);
        }
    }
    if mine_cold && others_hot {
        COLD_NS
    } else {
        0
    }
}

/// Whether [`poll_signalled`] polls a queue: one whose interrupt `spoke`,
/// one that is not `costly`, one never polled (`polled_at` 0), one whose
/// timer (`next_at`, 0: none) is due at `now`.
fn must_poll(costly: bool, spoke: bool, polled_at: u64, next_at: u64, now: u64) -> bool {
    !costly || spoke || polled_at == 0 || (next_at != 0 && next_at <= now)
}

/// Whether a poll that began at `polled_at` (0: never) stands at `now`
/// for a device whose empty poll is `costly`, for a caller that trusts a
/// poll `window` ns.
fn fresh(costly: bool, polled_at: u64, now: u64, window: u64) -> bool {
    costly && polled_at != 0 && now.saturating_sub(polled_at) < window
}

/// [`poll_unless_fresh`] on every stack.
pub fn poll_all_unless_fresh() -> PollResult {
    poll_each(poll_unless_fresh)
}

/// Polls every stack once; the union of what they did.
pub fn poll_all() -> PollResult {
    poll_each(poll)
}

/// [`poll_all`] for a thread that spins: a costly device at most every
/// `SPIN_PACE_NS`.
pub fn poll_all_spinning() -> PollResult {
    poll_each(|q| poll_unless_within(q, SPIN_PACE_NS))
}

fn poll_each(poll: fn(Q) -> PollResult) -> PollResult {
    let mut all = PollResult::default();
    for q in 0..count() as Q {
        merge(&mut all, poll(q));
    }
    all
}

/// Adds what one stack's poll did to `all`.
fn merge(all: &mut PollResult, r: PollResult) {
    all.rx += r.rx;
    all.progress |= r.progress;
    all.next = match (all.next, r.next) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// The costly stacks whose Rx interrupt ended a sleep on `fds` (what
/// [`arm_rx_interrupts`] gave, after the sleep), as a mask of queue
/// pairs; `None` if something else of the device's woke it too (a
/// forwarding socket, a stranded lane, a bell): see [`poll_signalled`].
pub fn signalled(fds: &[libc::pollfd]) -> Option<u64> {
    let cells = cells();
    mask_of(fds, |fd| cells.iter().position(|c| c.costly && c.rx_fd == fd))
}

/// The mask of the queues (`queue_of` an fd) whose fds in `fds` spoke;
/// `None` if an fd that is no queue's spoke.
fn mask_of(fds: &[libc::pollfd], queue_of: impl Fn(i32) -> Option<usize>) -> Option<u64> {
    let mut mask = 0u64;
    for p in fds.iter().filter(|p| p.revents != 0) {
        mask |= 1u64.checked_shl(u32::try_from(queue_of(p.fd)?).ok()?)?;
    }
    Some(mask)
}

/// After a sleep on every stack's armed Rx interrupt that a waker or the
/// caller's kernel fds ended: polls the stacks whose interrupt spoke
/// (`mask`, from [`signalled`]), those whose device is not costly (a
/// memif bell armed while frames came may stay silent) and those whose
/// timers are due. The other queues are empty (a tap queue's fd is
/// level-triggered: what comes after the sleep wakes the next), and a
/// poll of one is a `readv` that finds nothing; their timers stay due at
/// their last poll's word. A thread-per-connection server's sleeper read
/// an empty port queue 0.2 times a round trip when its own lane or waker
/// woke it, and a sleeper over two queue pairs read both when one spoke.
pub fn poll_signalled(mask: u64) -> PollResult {
    let t = now().nanos();
    let mut all = PollResult::default();
    for (q, cell) in cells().iter().enumerate() {
        let next = cell.next_at.load(Relaxed);
        let spoke = 1u64.checked_shl(q as u32).is_some_and(|b| mask & b != 0);
        let r = if must_poll(cell.costly, spoke, cell.polled_at.load(Relaxed), next, t) {
            poll(q as Q)
        } else {
            cell.last_word()
        };
        merge(&mut all, r);
    }
    all
}

/// Arms the Rx interrupt of every stack that has one; their fds (and the
/// stranded lanes', [`crate::engine::lanes::arm`]: a sleep on them lasts
/// at most [`crate::engine::lanes::sleep_cap`]). Returns whether every
/// stack will wake a sleep on them when frames come (each has an
/// interrupt, armed: a memif bell is armed only while the peer rings it);
/// if not, the sleep must be short, as without interrupts.
pub fn arm_rx_interrupts(out: &mut Vec<libc::pollfd>) -> bool {
    for q in 0..cells().len() {
        // Packets other processes forward to this stack (see `procs`); if
        // they wake the sleep, [`slept`] has the next poll read them.
        if let Some(fd) = crate::engine::procs::forward_fd(q) {
            out.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
    }
    crate::engine::lanes::arm(out);
    let mut all = true;
    for (q, cell) in cells().iter().enumerate() {
        if cell.rx_fd < 0 {
            all = false;
            continue;
        }
        if let Some(mut s) = lock(q as Q) {
            // A descriptor of the owner's (a shared tap queue) signals by
            // itself; a bell only once armed, and only while the peer
            // rings it.
            let armed = s.device.dpdk.arm_rx_interrupt().is_ok();
            all &= armed || !s.device.dpdk.has_bell();
        }
        out.push(libc::pollfd {
            fd: cell.rx_fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    all
}

/// After a sleep on `fds` (among them what [`arm_rx_interrupts`] gave):
/// a bell that woke it is emptied here, without the stack's lock (arming
/// makes no system call: a thread that sleeps often holds the lock
/// shorter, and is less often preempted while it holds it); a forwarding
/// socket that woke it is read at the next poll, not after the wait
/// between two reads of a thread that polls in a loop; so is a stranded
/// lane.
pub fn slept(fds: &[libc::pollfd]) {
    crate::engine::lanes::slept(fds);
    for cell in cells().iter().filter(|c| c.bell) {
        if fds.iter().any(|p| p.fd == cell.rx_fd && p.revents != 0) {
            accel_stack::phy::dpdk::drain_bell(cell.rx_fd);
        }
    }
    for (q, cell) in cells().iter().enumerate() {
        if let Some(fd) = crate::engine::procs::forward_fd(q) {
            if fds.iter().any(|p| p.fd == fd && p.revents != 0) {
                cell.forward_read.store(0, Relaxed);
            }
        }
    }
}

/// The stacks' counters, for the log at exit: per queue pair, the frames
/// received and sent, the segments handed to another stack, and every
/// other interface counter that is not zero (drops by reason, SYN cookies);
/// then the lanes' (`lanes`), if there are lanes, and the relay's hand-overs
/// (`relay`), if there were some.
pub struct Summary;

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (q, cell) in cells().iter().enumerate() {
            // At exit another thread may still be in a call that holds a
            // stack (memcached's workers go on while its main thread
            // exits): it is waited for, 20 ms at most, then skipped.
            let until = std::time::Instant::now() + std::time::Duration::from_millis(20);
            let s = loop {
                match cell.stack.try_lock() {
                    Ok(s) => break Some(s),
                    Err(_) if std::time::Instant::now() >= until => break None,
                    Err(_) => std::thread::yield_now(),
                }
            };
            let Some(s) = s else {
                write!(f, " q{q}: busy;")?;
                continue;
            };
            let st = s.iface.stats();
            write!(
                f,
                " q{q}: rx={} tx={} handed_over={}",
                st.rx_frames, st.tx_frames, st.tcp_handed_over
            )?;
            // The drops and defences that happened, by their counters' names.
            for (name, v) in st.fields() {
                let shown = matches!(name, "rx_frames" | "tx_frames" | "tcp_handed_over");
                if v > 0 && !shown && !name.ends_with("_bytes") {
                    write!(f, " {name}={v}")?;
                }
            }
            write!(f, ";")?;
        }
        if crate::engine::lanes::on() {
            let (taken, rx, tx, bad) = crate::engine::lanes::counters();
            write!(f, " lanes: taken={taken} lane_rx={rx} lane_tx={tx}")?;
            if bad > 0 {
                write!(f, " rx_checksum_dropped={bad}")?;
            }
            write!(f, ";")?;
        }
        let relayed = crate::engine::relay::hand_overs();
        if relayed > 0 {
            write!(f, " relay: hand_overs={relayed};")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_that_is_gone_is_not_marked_busy() {
        // No stack runs in a unit test: the lock fails as gone, and
        // nothing is left for `take_busy` (a wait that took it for busy
        // would wait for that stack's lock and try again, for ever).
        assert!(matches!(lock_or_mark_busy(0), Err(NotLocked::Gone)));
        assert_eq!(take_busy(), None);
        let _ = BUSY.try_with(|b| b.set(Some(3)));
        assert_eq!(take_busy(), Some(3));
        assert_eq!(take_busy(), None, "taking the mark clears it");
    }

    #[test]
    fn only_a_recent_poll_of_a_costly_device_stands() {
        let t = 5_000_000_000;
        // net_tap, polled 5 us ago: the look skips the device.
        assert!(fresh(true, t - 5_000, t, FRESH_NS));
        // Polled FRESH_NS ago or longer, or never: it polls.
        assert!(!fresh(true, t - FRESH_NS, t, FRESH_NS));
        assert!(!fresh(true, 0, t, FRESH_NS));
        // memif (a poll reads shared memory): it always polls.
        assert!(!fresh(false, t - 1_000, t, FRESH_NS));
        // A clock read before the poll's own (another thread's) stands.
        assert!(fresh(true, t + 1_000, t, FRESH_NS));
        // A spinner's window is shorter: 5 us old is stale for it.
        assert!(!fresh(true, t - 5_000, t, SPIN_PACE_NS));
        assert!(fresh(true, t - 1_000, t, SPIN_PACE_NS));
    }

    #[test]
    fn a_cold_tap_queue_waits_while_another_is_hot() {
        let t = 5_000_000_000;
        let hot = t - 10_000;
        let cold_since = t - HOT_NS;
        // Queue 1 cold (its last frame HOT_NS ago), queue 0 hot: 1 waits.
        let two = [(true, hot), (true, cold_since)];
        assert_eq!(cold(1, two.into_iter(), t), COLD_NS);
        assert_eq!(cold(0, two.into_iter(), t), 0);
        // Never a frame on it counts as cold too.
        assert_eq!(cold(1, [(true, hot), (true, 0)].into_iter(), t), COLD_NS);
        // All cold (a quiet port, the first frame after quiet): each is
        // polled at the caller's pace.
        assert_eq!(cold(1, [(true, 0), (true, cold_since)].into_iter(), t), 0);
        // Both hot.
        assert_eq!(cold(1, [(true, hot), (true, hot)].into_iter(), t), 0);
        // memif (no system call to poll): never held back.
        assert_eq!(cold(1, [(false, hot), (false, 0)].into_iter(), t), 0);
        // One queue: nothing else can be hot.
        assert_eq!(cold(0, [(true, 0)].into_iter(), t), 0);
    }

    #[test]
    fn a_sleeper_polls_the_queues_that_spoke_and_the_due_ones() {
        let fd = |fd: i32, revents: i16| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents,
        };
        let queue_of = |fd: i32| (10..14).contains(&fd).then(|| (fd - 10) as usize);
        // Queues 1 and 3 spoke.
        let fds = [fd(10, 0), fd(11, 1), fd(12, 0), fd(13, 1)];
        assert_eq!(mask_of(&fds, queue_of), Some(0b1010));
        // Nothing spoke (the waker ended the sleep).
        assert_eq!(mask_of(&fds[..1], queue_of), Some(0));
        // Another fd of the device's spoke (a stranded lane): poll all.
        assert_eq!(mask_of(&[fd(10, 1), fd(20, 1)], queue_of), None);
        // A queue past the mask's width: poll all.
        assert_eq!(mask_of(&[fd(99, 1)], |_| Some(64)), None);
        let t = 5_000_000_000;
        // A tap queue that did not speak, with its timer ahead: skipped.
        assert!(!must_poll(true, false, t - 1_000, t + 1_000, t));
        assert!(!must_poll(true, false, t - 1_000, 0, t));
        // Its timer due, or it spoke, or never polled, or memif: polled.
        assert!(must_poll(true, false, t - 1_000, t, t));
        assert!(must_poll(true, true, t - 1_000, 0, t));
        assert!(must_poll(true, false, 0, 0, t));
        assert!(must_poll(false, false, t - 1_000, 0, t));
    }
}
