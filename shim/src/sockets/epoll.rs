//! epoll over any mix of accelerated and kernel fds, with the kernel's
//! semantics.
//!
//! The program's epoll fd stays a real kernel epoll fd holding its kernel
//! members. Accelerated members live in an [`EpollSet`] of the shim's,
//! found through the epoll fd's table entry (`State::Epoll`, made at the
//! first accelerated `EPOLL_CTL_ADD`). A member is `(fd, generation)`: when
//! the fd is closed and its number reused, the generation differs and the
//! member is dropped, as the kernel drops a closed file.
//!
//! - Level-triggered: reported while ready.
//! - `EPOLLET`: reported when the socket's readiness tick has moved since
//!   the last report (new data, new room, a state change) and it is ready.
//! - `EPOLLONESHOT`: disabled after one report until `EPOLL_CTL_MOD`.
//! - `EPOLLRDHUP`, `EPOLLHUP`, `EPOLLERR` as Linux's `tcp_poll` computes
//!   them; `EPOLLHUP`/`EPOLLERR` are reported whether asked for or not.
//! - `EPOLLEXCLUSIVE` is accepted on `ADD` (refused on `MOD`, as the
//!   kernel does); with one worker per process it wakes the one waiter.
//! - A wildcard listener is a member on both sides: the shim reports the
//!   stack's connections, the kernel its own.
//! - A socket still `Pending` is a kernel member (its placeholder); if it
//!   moves to the stack, its registrations move with it
//!   ([`moved_to_shim`]).
//!
//! `epoll_wait` polls the stack, collects ready members, adds the kernel's
//! ready events with a zero-timeout `epoll_wait`, and if nothing is ready
//! drives the worker and sleeps with the epoll fd among the fds it sleeps
//! on (its looks while it waits ask the kernel only now and then, or when
//! the epoll fd woke it: [`KernelLooks`]). It looks only at members that
//! may be ready (a set's ready queue, as the kernel's ready list): those
//! the stack's wakers reported ([`crate::sockets::ready`]), those just
//! added or modified, and level-triggered ones that were ready when last
//! reported (they go to the back, so more
//! ready members than `maxevents` take turns). UDP members are looked at
//! on every wait (their room for sending changes without an event). A wait
//! costs O(ready members), not O(members).
//!
//! Order: events are reported in the order in which their members became
//! ready, as the kernel's ready list does: the ready queue is FIFO by the
//! order in which the stack's wakers fired (which is the order of the
//! frames that readied them). The kernel members' events come as one block
//! in the kernel's own order, placed where the kernel half was first seen
//! ready: by the keeper thread, which watches the epoll fds while the
//! program computes ([`crate::sockets::ready::Watch::kernel_half_seen`]), or by a waiting
//! thread woken by the epoll fd; unseen, they come after the stack's. So
//! stack events are ordered exactly among themselves, kernel events among
//! themselves, and the two by when the shim could see them (to within the
//! keeper's period, `ACCEL_KEEPER_US`); two kernel events on either side of
//! a stack event that nobody watched in between come together.

use crate::engine::wait::KernelLooks;
use crate::fdtable::{Entry, State, FDS};
use crate::interpose::real;
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::sockets::block::{block, WaitEnd, WaitOn};
use crate::sockets::ready;
use crate::sockets::sock::{Kind, Sock};
use crate::sockets::socket::{self, activate, fail, ok, Answer};
use crate::sockets::table::Core;
use crate::sys;
use accel_stack::iface::hash::{DemuxHash, KeyedHash};
use libc::{c_int, epoll_event};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// One accelerated member of an epoll set: the fd it was added as and the
/// socket object behind it (a registration lives as long as the socket,
/// whichever of its fds stay open, as the kernel's lives with the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    fd: c_int,
    sock: u32,
    id: u64,
    events: u32,
    data: u64,
    /// The readiness tick last reported (edge-triggered).
    tick: Option<u64>,
    /// `EPOLLONESHOT` fired: silent until `MOD`.
    disabled: bool,
    /// In the set's ready queue: the tag of its entry there.
    queued: Option<u64>,
}

/// A member's key: the fd it was added as and its socket object.
type Key = (c_int, u32);

/// The key that stands, in a ready queue, for the set's kernel members.
const KERNEL_HALF: Key = (-1, u32::MAX);

/// The members, hashed as the stack hashes its lookup tables (SipHash
/// cost a busy client 4 %; these keys are the shim's own numbers, so the
/// fixed key buys no less than a secret one would).
type Members = HashMap<Key, Member, DemuxHash>;

/// The shim's half of one epoll set.
#[derive(Debug)]
pub struct EpollSet {
    members: Members,
    /// Members that may be ready, each at most once (see the module docs),
    /// with the tag their member holds in `queued`. An entry whose tag is
    /// not its member's is skipped: its member went (`EPOLL_CTL_DEL`, the
    /// socket closed), and a member made since under the same key (the fd
    /// number and the socket slot both reused, as a client that reconnects
    /// does) has its own entry or none. Without the tag both entries were
    /// its, and one wait reported it twice. [`KERNEL_HALF`] marks where the
    /// kernel's events go.
    ready: VecDeque<(Key, u64)>,
    /// The last tag given.
    tags: u64,
    /// [`KERNEL_HALF`] is in `ready`.
    kernel_queued: bool,
}

impl Default for EpollSet {
    /// Empty. Cheap: a set is taken out of its slot (leaving a default one)
    /// on every wait and every `epoll_ctl`, so the hasher is made once.
    fn default() -> EpollSet {
        static HASH: std::sync::OnceLock<DemuxHash> = std::sync::OnceLock::new();
        let hash = *HASH.get_or_init(|| DemuxHash::from_key(&KeyedHash::new([0x65; 16])));
        EpollSet {
            members: HashMap::with_hasher(hash),
            ready: VecDeque::new(),
            tags: 0,
            kernel_queued: false,
        }
    }
}

const ALWAYS: u32 = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
const ET: u32 = libc::EPOLLET as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
const EXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

/// What a scan asks about the members' sockets.
trait Sockets {
    /// Whether socket object `sock` still is the one with `id`.
    fn alive(&mut self, sock: u32, id: u64) -> bool;
    /// Its readiness as epoll bits and tick, if it is on the stack.
    fn ready(&mut self, sock: u32) -> Option<(u32, u64)>;
    /// Arms its wakers, so that its next change queues it again.
    fn arm(&mut self, sock: u32);
    /// Whether it can change without a wake (it is then looked at on every
    /// wait).
    fn volatile(&mut self, sock: u32) -> bool;
}

impl Sockets for Core {
    fn alive(&mut self, sock: u32, id: u64) -> bool {
        self.socks.get(sock).is_some_and(|s| s.id == id)
    }

    fn ready(&mut self, sock: u32) -> Option<(u32, u64)> {
        socket::readiness_of(self, sock)
    }

    fn arm(&mut self, sock: u32) {
        let Core { socks, watch, .. } = self;
        watch.arm(socks, sock);
    }

    fn volatile(&mut self, sock: u32) -> bool {
        self.socks
            .get(sock)
            .is_some_and(|s| matches!(s.kind, Kind::Udp(..)))
    }
}

impl EpollSet {
    /// Adds (or replaces) a member; queued to be looked at if it is
    /// `ready` now (as the kernel's `ep_insert` and `ep_modify` put a ready
    /// item on the ready list), else it keeps its place in the queue, if it
    /// had one, and waits for its socket's next wake.
    fn put(&mut self, m: Member, ready: bool) {
        let key = (m.fd, m.sock);
        let was = self.members.get(&key).and_then(|o| o.queued);
        let queued = match was {
            None if ready => Some(self.push(key)),
            was => was,
        };
        self.members.insert(key, Member { queued, ..m });
    }

    /// Puts `key` at the back of the ready queue; its tag.
    fn push(&mut self, key: Key) -> u64 {
        self.tags += 1;
        self.ready.push_back((key, self.tags));
        self.tags
    }

    /// Queues the kernel's events at this point (the kernel half was seen
    /// ready).
    fn queue_kernel(&mut self) {
        if !self.kernel_queued {
            self.kernel_queued = true;
            self.push(KERNEL_HALF);
        }
    }

    /// Queues member `key` to be looked at (it may be ready).
    fn queue(&mut self, key: Key) {
        if self.members.get(&key).is_some_and(|m| m.queued.is_none()) {
            let tag = self.push(key);
            if let Some(m) = self.members.get_mut(&key) {
                m.queued = Some(tag);
            }
        }
    }

    /// Collects up to `out.len()` ready events from the queued members, in
    /// queue order; where [`KERNEL_HALF`] is queued, `kernel` writes the
    /// kernel's events into the rest of `out` and returns how many. Returns
    /// the count, and whether `kernel` was asked.
    fn collect(
        &mut self,
        socks: &mut impl Sockets,
        out: &mut [epoll_event],
        kernel: &mut impl FnMut(&mut [epoll_event]) -> usize,
    ) -> (usize, bool) {
        let mut got = 0;
        let mut asked = false;
        // Each queued member once: the ones re-queued go after these.
        for _ in 0..self.ready.len() {
            if got >= out.len() {
                break;
            }
            let Some((key, tag)) = self.ready.pop_front() else {
                break;
            };
            if key == KERNEL_HALF {
                self.kernel_queued = false;
                asked = true;
                let k = kernel(out.get_mut(got..).unwrap_or_default());
                got += k;
                if k > 0 {
                    // Level-triggered kernel members go to the back too.
                    self.queue_kernel();
                }
                continue;
            }
            let Some(m) = self.members.get_mut(&key) else {
                continue; // removed since it was queued
            };
            if m.queued != Some(tag) {
                continue; // queued for a member that went: not this one's
            }
            m.queued = None;
            if !socks.alive(m.sock, m.id) {
                // Its socket went (the last fd closed) without the
                // clean-up seeing this set: the member goes.
                self.members.remove(&key);
                continue;
            }
            if m.disabled {
                continue;
            }
            // First arm, then look: a change after the look wakes it.
            socks.arm(m.sock);
            let requeue = socks.volatile(m.sock);
            let hit = socks
                .ready(m.sock)
                .map(|(mask, tick)| (mask & (m.events | ALWAYS), tick));
            let reported = match hit {
                Some((hit, tick)) if hit != 0 && !(m.events & ET != 0 && m.tick == Some(tick)) => {
                    if m.events & ET != 0 {
                        m.tick = Some(tick);
                    }
                    if m.events & ONESHOT != 0 {
                        m.disabled = true;
                    }
                    if let Some(slot) = out.get_mut(got) {
                        *slot = epoll_event {
                            events: hit,
                            u64: m.data,
                        };
                        got += 1;
                    }
                    true
                }
                _ => false,
            };
            // Level-triggered and ready: reported again next time while it
            // stays so (the kernel puts it back on its ready list too).
            let level = reported && m.events & (ET | ONESHOT) == 0;
            if (level || requeue) && !m.disabled {
                self.tags += 1;
                m.queued = Some(self.tags);
                self.ready.push_back((key, self.tags));
            }
        }
        (got, asked)
    }
}

/// Queues, in every set watching them, the members of the sockets whose
/// wakers fired, in the order they fired (a socket woken twice keeps its
/// first place, as a kernel ready-list entry does), and the kernel halves
/// seen ready where they were seen; and wakes the threads waiting for those
/// sockets and sets, and no others (after the lock is dropped: they go to
/// `core.to_wake`). Runs after every poll of the stack ([`Core::drive`]).
pub fn distribute(core: &mut Core) {
    let woken = core.watch.take_woken();
    let Core {
        watch,
        epolls,
        to_wake,
        ..
    } = &mut *core;
    for &sock in &woken {
        if sock & ready::KERNEL != 0 {
            let set = sock & !ready::KERNEL;
            if let Some(s) = epolls.get_mut(set) {
                s.queue_kernel();
            }
            watch.wake_set(set, to_wake);
            continue;
        }
        for i in 0..watch.watchers(sock).len() {
            let Some(&(set, fd)) = watch.watchers(sock).get(i) else {
                break;
            };
            if let Some(s) = epolls.get_mut(set) {
                s.queue((fd, sock));
            }
            watch.wake_set(set, to_wake);
        }
        watch.wake_sock(sock, to_wake);
    }
    watch.put_back(woken);
}

/// A new shim set for epoll fd `epfd`, its kernel half watched by the
/// keeper; `None` if the fd table refused it.
fn new_set(core: &mut Core, epfd: c_int) -> Option<u32> {
    let h = core.epolls.insert(EpollSet::default());
    if FDS.install(epfd, State::Epoll, h).is_err() {
        core.epolls.remove(h);
        return None;
    }
    core.watch.watch_kernel(epfd, h);
    Some(h)
}

/// Socket `sock` is gone: its members leave every set that held them.
pub fn forget_socket(core: &mut Core, sock: u32) {
    // Threads blocked on it look again (and find it gone).
    core.watch.wake_sock(sock, &mut core.to_wake);
    for (set, fd) in core.watch.forget(sock) {
        if let Some(s) = core.epolls.get_mut(set) {
            s.members.remove(&(fd, sock));
        }
    }
}

/// Epoll set `h` is gone (its fd closed): its members stop watching.
pub fn forget_set(core: &mut Core, h: u32) {
    core.watch.unwatch_kernel(h);
    core.watch.wake_set(h, &mut core.to_wake);
    if let Some(set) = core.epolls.remove(h) {
        for (fd, sock) in set.members.into_keys() {
            core.watch.remove(sock, h, fd);
        }
    }
}

/// The epoll set of `epfd`, made if need be; `Err` if `epfd` is not an
/// epoll fd the kernel knows (its errno), checked with a harmless
/// `EPOLL_CTL_MOD` of the placeholder `fd`, which the kernel refuses with
/// `ENOENT` for a real epoll fd that does not hold it.
fn set_of(core: &mut Core, epfd: c_int, fd: c_int, ev: *mut epoll_event) -> Result<(u32, bool), Errno> {
    let Some(ctl) = real::epoll_ctl.get() else {
        return Err(Errno(libc::ENOSYS));
    };
    // The probe carries the caller's event (so a kernel half already
    // registered keeps it) without EPOLLEXCLUSIVE, which MOD refuses.
    let mut probe = if ev.is_null() {
        epoll_event { events: 0, u64: 0 }
    } else {
        // SAFETY: non-null; valid by the caller's contract.
        unsafe { ev.read_unaligned() }
    };
    probe.events &= !EXCLUSIVE;
    // SAFETY: `probe` is a live epoll_event.
    let r = unsafe { ctl(epfd, libc::EPOLL_CTL_MOD, fd, &raw mut probe) };
    let in_kernel = match r {
        0 => true,
        _ if sys::errno() == libc::ENOENT => false,
        _ => return Err(Errno(sys::errno())),
    };
    let e = FDS.get(epfd);
    if e.state() == State::Epoll && core.epolls.get(e.handle()).is_some() {
        return Ok((e.handle(), in_kernel));
    }
    let h = new_set(core, epfd).ok_or(Errno(libc::EINVAL))?;
    Ok((h, in_kernel))
}

/// `epoll_ctl(2)` for a member fd that is not a plain kernel fd.
///
/// # Safety
///
/// `ev` is null or valid.
pub unsafe fn ctl(epfd: c_int, op: c_int, fd: c_int, entry: Entry, ev: *mut epoll_event) -> Answer<c_int> {
    if !matches!(
        op,
        libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD | libc::EPOLL_CTL_DEL
    ) {
        return fail(libc::EINVAL);
    }
    let mut core = crate::sockets::table::lock();
    // A deferred listener becomes a stack listener when it is watched.
    let entry = activate(&mut core, fd, entry);
    match entry.state() {
        State::Pending => return pending_ctl(&mut core, epfd, op, fd, entry, ev),
        State::Tcp | State::Udp => {}
        _ => return Dispatch::NotOurs,
    }
    // SAFETY: the caller's contract.
    let want = match unsafe { ctl_event(op, epfd, fd, ev) } {
        Ok(want) => want,
        Err(e) => return Dispatch::Done(Err(e)),
    };
    let kernel_side = crate::sockets::close::kernel_side(&core, entry);
    // A set the shim holds is a live epoll fd (its close would have
    // dropped it); only a socket with a kernel half needs the kernel asked.
    let known = FDS.get(epfd);
    let (h, in_kernel) =
        if !kernel_side && known.state() == State::Epoll && core.epolls.get(known.handle()).is_some() {
            (known.handle(), false)
        } else {
            match set_of(&mut core, epfd, fd, ev) {
                Ok(x) => x,
                Err(e) => return Dispatch::Done(Err(e)),
            }
        };
    let Some(id) = core.socks.get(entry.handle()).map(|s| s.id) else {
        return fail(libc::EBADF);
    };
    let mut set = match core.epolls.get_mut(h) {
        Some(set) => std::mem::take(set),
        None => return fail(libc::EBADF),
    };
    let key = (fd, entry.handle());
    // A member left by a closed socket whose handle this one reuses is not
    // this one's.
    if set.members.get(&key).is_some_and(|m| m.id != id) {
        set.members.remove(&key);
    }
    let existing = set.members.get(&key).map(|m| m.events);
    // Armed, then looked at: a change after the look queues it.
    let ready_now = op != libc::EPOLL_CTL_DEL && {
        let sock = entry.handle();
        core.arm(sock);
        core.volatile(sock)
            || core
                .ready(sock)
                .is_some_and(|(mask, _)| mask & (want.events | ALWAYS) != 0)
    };
    let member = Member {
        fd,
        sock: entry.handle(),
        id,
        events: want.events,
        data: want.u64,
        tick: None,
        disabled: false,
        queued: None,
    };
    let r = match (op, existing) {
        (libc::EPOLL_CTL_ADD, Some(_)) => Err(Errno(libc::EEXIST)),
        (libc::EPOLL_CTL_ADD, None) => {
            set.put(member, ready_now);
            core.watch.add(entry.handle(), h, fd);
            Ok(0)
        }
        // An exclusive registration cannot be modified (the kernel's rule).
        (libc::EPOLL_CTL_MOD, Some(ev)) if ev & EXCLUSIVE != 0 => Err(Errno(libc::EINVAL)),
        (libc::EPOLL_CTL_MOD, Some(_)) => {
            set.put(member, ready_now);
            Ok(0)
        }
        (libc::EPOLL_CTL_DEL, Some(_)) => {
            set.members.remove(&key);
            core.watch.remove(entry.handle(), h, fd);
            Ok(0)
        }
        _ => Err(Errno(libc::ENOENT)),
    };
    if let Some(slot) = core.epolls.get_mut(h) {
        *slot = set;
    }
    if r.is_ok() && ready_now {
        // A thread blocked in epoll_wait on the set sees it now.
        let c = &mut *core;
        c.watch.wake_set(h, &mut c.to_wake);
    }
    if r.is_ok() && kernel_side {
        // The kernel half of a wildcard listener follows.
        if let Some(kctl) = real::epoll_ctl.get() {
            let kop = match (op, in_kernel) {
                (libc::EPOLL_CTL_DEL, true) => Some(libc::EPOLL_CTL_DEL),
                (libc::EPOLL_CTL_DEL, false) => None,
                (_, true) => Some(libc::EPOLL_CTL_MOD),
                (_, false) => Some(libc::EPOLL_CTL_ADD),
            };
            let mut kev = epoll_event {
                events: want.events & !EXCLUSIVE,
                u64: want.u64,
            };
            if let Some(kop) = kop {
                // SAFETY: `kev` is a live epoll_event.
                unsafe { kctl(epfd, kop, fd, &raw mut kev) };
            }
        }
    }
    Dispatch::Done(r)
}

/// The event an `epoll_ctl` of an accelerated member asks for, checked as
/// the kernel checks it: `EFAULT` without one (unless `DEL`), `EINVAL` for
/// the set itself as a member or `EPOLLEXCLUSIVE` on `MOD`. (A `DEL` asks
/// for nothing: its event is all zeros.)
///
/// # Safety
///
/// `ev` is null or valid for reading.
pub unsafe fn ctl_event(
    op: c_int,
    epfd: c_int,
    fd: c_int,
    ev: *const epoll_event,
) -> Result<epoll_event, Errno> {
    if op != libc::EPOLL_CTL_DEL && ev.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    if epfd == fd {
        return Err(Errno(libc::EINVAL));
    }
    let want = if ev.is_null() {
        epoll_event { events: 0, u64: 0 }
    } else {
        // SAFETY: non-null; valid by the caller's contract.
        unsafe { ev.read_unaligned() }
    };
    if op == libc::EPOLL_CTL_MOD && want.events & EXCLUSIVE != 0 {
        return Err(Errno(libc::EINVAL));
    }
    Ok(want)
}

/// `epoll_ctl` of a pending socket: the kernel holds it (its placeholder),
/// and the registration is remembered in case it moves to the stack.
fn pending_ctl(
    core: &mut Core,
    epfd: c_int,
    op: c_int,
    fd: c_int,
    entry: Entry,
    ev: *mut epoll_event,
) -> Answer<c_int> {
    let Some(kctl) = real::epoll_ctl.get() else {
        return Dispatch::NotOurs;
    };
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { kctl(epfd, op, fd, ev) };
    if r < 0 {
        return fail(sys::errno());
    }
    let want = if ev.is_null() {
        None
    } else {
        // SAFETY: non-null, and the kernel accepted it.
        Some(unsafe { ev.read_unaligned() })
    };
    if let Ok(Sock {
        kind: Kind::Pending { epolls, .. },
        ..
    }) = socket::sock_mut(core, entry)
    {
        epolls.retain(|(e, _, _)| *e != epfd);
        if let (Some(w), true) = (want, op != libc::EPOLL_CTL_DEL) {
            epolls.push((epfd, w.events, w.u64));
        }
    }
    ok(0)
}

/// A pending socket moved to the stack: its kernel registrations move to
/// the shim's sets.
pub fn moved_to_shim(core: &mut Core, fd: c_int, entry: Entry, regs: &[(c_int, u32, u64)]) {
    for &(epfd, events, data) in regs {
        if let Some(kctl) = real::epoll_ctl.get() {
            // SAFETY: DEL ignores the event pointer.
            unsafe { kctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        }
        let e = FDS.get(epfd);
        let h = if e.state() == State::Epoll && core.epolls.get(e.handle()).is_some() {
            e.handle()
        } else {
            let Some(h) = new_set(core, epfd) else {
                continue;
            };
            h
        };
        let Some(id) = core.socks.get(entry.handle()).map(|s| s.id) else {
            continue;
        };
        let sock = entry.handle();
        core.arm(sock);
        let ready_now = core.volatile(sock)
            || core
                .ready(sock)
                .is_some_and(|(mask, _)| mask & (events | ALWAYS) != 0);
        if let Some(set) = core.epolls.get_mut(h) {
            set.put(
                Member {
                    fd,
                    sock: entry.handle(),
                    id,
                    events,
                    data,
                    tick: None,
                    disabled: false,
                    queued: None,
                },
                ready_now,
            );
            core.watch.add(entry.handle(), h, fd);
            if ready_now {
                core.watch.wake_set(h, &mut core.to_wake);
            }
        }
    }
}

/// Collects ready events of the set `h` into `out`, the kernel's among
/// them where its half was seen ready, else after them (see the module
/// docs on order); `looks` says whether to ask the kernel when its half
/// was not seen ready.
fn gather(
    core: &mut Core,
    h: u32,
    epfd: c_int,
    out: &mut [epoll_event],
    looks: &mut KernelLooks,
) -> Result<usize, Errno> {
    distribute(core);
    // The set is taken out while its members' readiness is read from the
    // rest of the core, then put back in its slot.
    let Some(slot) = core.epolls.get_mut(h) else {
        return Err(Errno(libc::EBADF));
    };
    let mut set = std::mem::take(slot);
    let mut failed = None;
    // What the kernel said, if asked: whether anything was ready.
    let mut answer: Option<bool> = None;
    let mut kernel = |rest: &mut [epoll_event]| -> usize {
        let Some(kwait) = real::epoll_wait.get() else {
            return 0;
        };
        if rest.is_empty() {
            return 0;
        }
        // SAFETY: `rest` is a live, writable array of its length.
        let k = unsafe { kwait(epfd, rest.as_mut_ptr(), rest.len() as c_int, 0) };
        if k < 0 {
            failed = Some(sys::errno());
            answer = Some(true);
            return 0;
        }
        answer = Some(answer.unwrap_or(false) || k > 0);
        k as usize
    };
    let (mut n, asked) = set.collect(core, out, &mut kernel);
    if !asked && looks.due() {
        let k = kernel(out.get_mut(n..).unwrap_or_default());
        n += k;
        if k > 0 {
            // Reported after the stack's events: next time too, as the
            // kernel re-queues its level-triggered members.
            set.queue_kernel();
        }
    }
    if let Some(ready) = answer {
        looks.answered(ready);
    }
    // The keeper watches the kernel half again, for the next events.
    core.watch.watch_kernel(epfd, h);
    if let Some(slot) = core.epolls.get_mut(h) {
        *slot = set;
    }
    match failed {
        Some(e) if n == 0 && e != libc::EINTR => Err(Errno(e)),
        _ => Ok(n),
    }
}

/// `epoll_wait`/`epoll_pwait`/`epoll_pwait2` on an epoll fd with
/// accelerated members.
///
/// # Safety
///
/// `events` is valid for `maxevents` entries; `sigmask` null or valid.
pub unsafe fn wait(
    epfd: c_int,
    entry: Entry,
    events: *mut epoll_event,
    maxevents: c_int,
    timeout: Option<Duration>,
    sigmask: *const libc::sigset_t,
) -> Answer<c_int> {
    if entry.state() != State::Epoll {
        return Dispatch::NotOurs;
    }
    // SAFETY: the caller's contract.
    let out = match unsafe { wait_events(events, maxevents) } {
        Ok(out) => out,
        Err(e) => return Dispatch::Done(Err(e)),
    };
    let h = entry.handle();
    // The call's first look asks the kernel; its wait's looks now and then.
    let mut looks = KernelLooks::default();
    {
        // The devices polled without the worker's lock (a poll that just
        // happened on net_tap stands: see `poll_unless_fresh`).
        crate::engine::stacks::poll_all_unless_fresh();
        let mut core = crate::sockets::table::lock();
        distribute(&mut core);
        match gather(&mut core, h, epfd, out, &mut looks) {
            Ok(0) => {}
            r => return Dispatch::Done(r.map(|n| n as c_int)),
        }
    }
    if timeout.is_some_and(|t| t.is_zero()) {
        return ok(0);
    }
    let dl = socket::deadline(timeout);
    let mut extra = [libc::pollfd {
        fd: epfd,
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut f = |core: &mut Core| match gather(core, h, epfd, out, &mut looks) {
        Ok(0) => None,
        r => Some(r),
    };
    // SAFETY: the caller's contract: null or a valid mask.
    let mask = unsafe { sigmask.as_ref() };
    match block(dl, &[WaitOn::Set(h)], &mut extra, mask, &mut f) {
        Ok(r) => Dispatch::Done(r.map(|n| n as c_int)),
        Err(WaitEnd::TimedOut) => ok(0),
        Err(WaitEnd::Interrupted { .. }) => fail(libc::EINTR),
    }
}

/// The program's event array of an `epoll_wait`, checked as the kernel
/// checks it: `EINVAL` unless `0 < maxevents <= INT_MAX / sizeof(struct
/// epoll_event)`, then `EFAULT` for a null array.
///
/// # Safety
///
/// `events` is null or valid for writing `maxevents` entries.
pub unsafe fn wait_events<'a>(
    events: *mut epoll_event,
    maxevents: c_int,
) -> Result<&'a mut [epoll_event], Errno> {
    if maxevents <= 0 || maxevents as usize > (i32::MAX as usize) / size_of::<epoll_event>() {
        return Err(Errno(libc::EINVAL));
    }
    if events.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(events, maxevents as usize) })
}

/// An epoll timeout in milliseconds as a duration (`None`: forever).
pub fn ms(timeout: c_int) -> Option<Duration> {
    (timeout >= 0).then(|| Duration::from_millis(timeout as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sockets 0.. with a readiness each; `dead` ones are gone; counts the
    /// readiness lookups and armings.
    #[derive(Default)]
    struct Fake {
        ready: Vec<(u32, u64)>,
        dead: Vec<u32>,
        udp: Vec<u32>,
        looks: usize,
        armed: Vec<u32>,
    }

    impl Sockets for Fake {
        fn alive(&mut self, sock: u32, id: u64) -> bool {
            !self.dead.contains(&sock) && id == u64::from(sock) + 100
        }
        fn ready(&mut self, sock: u32) -> Option<(u32, u64)> {
            self.looks += 1;
            self.ready.get(sock as usize).copied()
        }
        fn arm(&mut self, sock: u32) {
            self.armed.push(sock);
        }
        fn volatile(&mut self, sock: u32) -> bool {
            self.udp.contains(&sock)
        }
    }

    fn member(sock: u32, events: u32) -> Member {
        Member {
            fd: 10 + sock as c_int,
            sock,
            id: u64::from(sock) + 100,
            events,
            data: u64::from(sock),
            tick: None,
            disabled: false,
            queued: None,
        }
    }

    fn set_of(members: impl IntoIterator<Item = Member>) -> EpollSet {
        let mut set = EpollSet::default();
        members.into_iter().for_each(|m| set.put(m, true));
        set
    }

    /// Collects with no kernel events.
    fn collect(set: &mut EpollSet, socks: &mut Fake, out: &mut [epoll_event]) -> usize {
        set.collect(socks, out, &mut |_| 0).0
    }

    /// A wake of socket `sock` (its member's key).
    fn wake(set: &mut EpollSet, sock: u32) {
        set.queue((10 + sock as c_int, sock));
    }

    const IN: u32 = libc::EPOLLIN as u32;
    const OUT: u32 = libc::EPOLLOUT as u32;

    #[test]
    fn a_member_deleted_while_queued_and_added_again_is_reported_once() {
        let mut set = set_of([member(0, IN)]);
        let mut socks = Fake {
            ready: vec![(IN, 1)],
            ..Fake::default()
        };
        // EPOLL_CTL_DEL as ctl does it: the member goes, its queue entry stays.
        set.members.remove(&(10, 0));
        // The same fd number and socket slot come back, registered again.
        set.put(
            Member {
                data: 77,
                ..member(0, IN)
            },
            true,
        );
        let mut out = [epoll_event { events: 0, u64: 0 }; 8];
        let n = collect(&mut set, &mut socks, &mut out);
        let datas: Vec<u64> = out[..n].iter().map(|e| e.u64).collect();
        assert_eq!(datas, vec![77], "one event per fd per wait, as the kernel's");
    }

    #[test]
    fn level_edge_and_oneshot() {
        let mut set = set_of([member(0, IN), member(1, IN | ET), member(2, IN | ONESHOT)]);
        let mut socks = Fake {
            ready: vec![(IN | OUT, 1); 3],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 8];
        assert_eq!(
            collect(&mut set, &mut socks, &mut out),
            3,
            "all three the first time"
        );
        assert!(
            out.iter().take(3).all(|e| { e.events } == IN),
            "only what was asked"
        );
        assert_eq!(socks.armed, vec![0, 1, 2], "each armed when looked at");
        assert_eq!(
            collect(&mut set, &mut socks, &mut out),
            1,
            "level only: the edge saw no event, oneshot fired"
        );
        assert_eq!({ out[0].u64 }, 0);
        socks.ready = vec![(IN, 2); 3];
        (0..3).for_each(|s| wake(&mut set, s));
        assert_eq!(
            collect(&mut set, &mut socks, &mut out),
            2,
            "the edge fires again on a new tick"
        );
        // Socket 0's last fd closed: its member goes.
        socks.dead.push(0);
        (0..3).for_each(|s| wake(&mut set, s));
        assert_eq!(
            collect(&mut set, &mut socks, &mut out),
            0,
            "1 saw this tick, 2 is disabled"
        );
        assert_eq!(set.members.len(), 2);
    }

    #[test]
    fn a_reused_socket_slot_is_not_the_member() {
        let mut set = set_of([member(0, IN)]);
        let mut socks = Fake {
            ready: vec![(IN, 1)],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 2];
        assert_eq!(collect(&mut set, &mut socks, &mut out), 1);
        // The slot now holds another socket (another id).
        if let Some(m) = set.members.get_mut(&(10, 0)) {
            m.id += 1;
        }
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        assert!(set.members.is_empty());
    }

    #[test]
    fn hangup_is_always_reported_and_ready_members_take_turns() {
        let mut set = set_of((0..3).map(|s| member(s, OUT)));
        let hup = libc::EPOLLHUP as u32;
        let mut socks = Fake {
            ready: vec![(hup | IN, 1); 3],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 1];
        let mut seen = Vec::new();
        for _ in 0..3 {
            assert_eq!(collect(&mut set, &mut socks, &mut out), 1);
            assert_eq!({ out[0].events }, hup);
            seen.push(out[0].u64);
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2], "each in turn");
    }

    #[test]
    fn a_wait_looks_only_at_what_may_be_ready() {
        let n = 1000u32;
        let mut set = set_of((0..n).map(|s| member(s, IN)));
        let mut socks = Fake {
            ready: vec![(OUT, 1); n as usize],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 16];
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        assert_eq!(socks.looks, 1000, "new members are looked at once");
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        assert_eq!(socks.looks, 1000, "then not, until woken");
        socks.ready[700] = (IN | OUT, 2);
        wake(&mut set, 700);
        wake(&mut set, 700);
        assert_eq!(collect(&mut set, &mut socks, &mut out), 1);
        assert_eq!({ out[0].u64 }, 700);
        assert_eq!(socks.looks, 1001, "one wake, one look, however often woken");
        // Still readable (level-triggered): reported again, alone.
        assert_eq!(collect(&mut set, &mut socks, &mut out), 1);
        assert_eq!(socks.looks, 1002);
        socks.ready[700] = (OUT, 3);
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        assert_eq!(socks.looks, 1003, "not ready any more: off the queue");
    }

    #[test]
    fn udp_members_are_looked_at_on_every_wait() {
        let mut set = set_of([member(0, OUT)]);
        let mut socks = Fake {
            ready: vec![(IN, 1)],
            udp: vec![0],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        // Room to send came back, with no wake.
        socks.ready[0] = (IN | OUT, 1);
        assert_eq!(collect(&mut set, &mut socks, &mut out), 1);
        assert_eq!(socks.looks, 3);
    }

    #[test]
    fn keys_spread_over_the_buckets() {
        use std::hash::BuildHasher;
        let b = *EpollSet::default().members.hasher();
        // hashbrown indexes by the low bits: consecutive fds and handles,
        // as the shim's are, must not pile up there.
        let low: std::collections::HashSet<u64> = (0..1024)
            .map(|i| b.hash_one((i as c_int, i as u32)) & 1023)
            .collect();
        // A random function fills about 1024 * (1 - 1/e) = 647.
        assert!(low.len() > 600, "{} of 1024 buckets", low.len());
        assert_ne!(b.hash_one((5, 6u32)), b.hash_one((6, 5u32)));
    }

    #[test]
    fn a_modified_member_is_reported_once() {
        let mut set = set_of([member(0, IN)]);
        set.put(member(0, IN | OUT), true);
        let mut socks = Fake {
            ready: vec![(IN | OUT, 1)],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(collect(&mut set, &mut socks, &mut out), 1);
        assert_eq!({ out[0].events }, IN | OUT);
    }

    #[test]
    fn a_more_than_maxevents_backlog_is_served_in_order() {
        let mut set = set_of((0..5).map(|s| member(s, IN | ET)));
        let mut socks = Fake {
            ready: vec![(IN, 1); 5],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 2];
        let mut seen = Vec::new();
        for _ in 0..3 {
            let n = collect(&mut set, &mut socks, &mut out);
            seen.extend(out.iter().take(n).map(|e| e.u64));
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4], "each edge once, none lost");
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
    }

    #[test]
    fn events_come_in_the_order_their_sockets_became_ready() {
        let mut set = set_of((0..4).map(|s| member(s, IN | ET)));
        let mut socks = Fake {
            ready: vec![(OUT, 1); 4],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 8];
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        // Readied 3, 1, 2 (and 3 again): reported 3, 1, 2, whatever the
        // handles' order.
        for s in [3, 1, 2, 3] {
            socks.ready[s as usize] = (IN, 2);
            wake(&mut set, s);
        }
        assert_eq!(collect(&mut set, &mut socks, &mut out), 3);
        let order: Vec<u64> = out.iter().take(3).map(|e| e.u64).collect();
        assert_eq!(order, vec![3, 1, 2]);
    }

    #[test]
    fn the_kernels_events_go_where_its_half_was_seen_ready() {
        let mut set = set_of((0..3).map(|s| member(s, IN | ET)));
        let mut socks = Fake {
            ready: vec![(OUT, 1); 3],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 8];
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0);
        socks.ready = vec![(IN, 2); 3];
        wake(&mut set, 2);
        set.queue_kernel();
        wake(&mut set, 0);
        set.queue_kernel(); // once in the queue
        let mut kernel = |rest: &mut [epoll_event]| {
            rest[0] = epoll_event { events: IN, u64: 100 };
            rest[1] = epoll_event { events: IN, u64: 101 };
            2
        };
        let (n, asked) = set.collect(&mut socks, &mut out, &mut kernel);
        assert!(asked);
        let order: Vec<u64> = out.iter().take(n).map(|e| e.u64).collect();
        assert_eq!(order, vec![2, 100, 101, 0]);
        // The kernel's events may be level-triggered: asked again, after
        // what came since.
        wake(&mut set, 1);
        let mut none = |_: &mut [epoll_event]| 0;
        let (n, asked) = set.collect(&mut socks, &mut out, &mut none);
        assert_eq!((n, asked, { out[0].u64 }), (1, true, 1));
        // Had none: not asked again until seen (the caller asks after the
        // stack's events).
        socks.ready = vec![(IN, 3); 3];
        wake(&mut set, 1);
        let (n, asked) = set.collect(&mut socks, &mut out, &mut kernel);
        assert_eq!((n, asked), (1, false));
        // Seen but no room left: it keeps its place for the next wait.
        socks.ready = vec![(IN, 4); 3];
        wake(&mut set, 1);
        set.queue_kernel();
        wake(&mut set, 2);
        let mut one = [epoll_event { events: 0, u64: 0 }; 1];
        let (n, asked) = set.collect(&mut socks, &mut one, &mut kernel);
        assert_eq!((n, asked, { one[0].u64 }), (1, false, 1));
        let mut two = [epoll_event { events: 0, u64: 0 }; 3];
        let (n, asked) = set.collect(&mut socks, &mut two, &mut kernel);
        assert!(asked);
        let order: Vec<u64> = two.iter().take(n).map(|e| e.u64).collect();
        assert_eq!(order, vec![100, 101, 2]);
    }

    #[test]
    fn a_member_added_not_ready_waits_for_its_wake() {
        let mut set = EpollSet::default();
        for s in 0..3 {
            set.put(member(s, IN), false);
        }
        let mut socks = Fake {
            ready: vec![(IN, 1); 3],
            ..Fake::default()
        };
        let mut out = [epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(collect(&mut set, &mut socks, &mut out), 0, "nothing queued");
        assert_eq!(socks.looks, 0);
        wake(&mut set, 2);
        wake(&mut set, 0);
        assert_eq!(collect(&mut set, &mut socks, &mut out), 2);
        assert_eq!([{ out[0].u64 }, { out[1].u64 }], [2, 0]);
    }
}
