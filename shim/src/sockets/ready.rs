//! How epoll learns which accelerated sockets changed, without looking at
//! every member on every wait: each watched socket's stack socket carries
//! a waker of the shim's, which, when the stack fires it (data, room, a
//! connection to accept, an error, the end), puts the socket's handle on
//! one process-wide list. `epoll_wait` takes that list and queues the
//! socket's members in every set that watches it ([`Watch::woken`]), so a
//! wait costs what is ready, not what is registered.
//!
//! The list keeps the order in which the wakers fired, which is the order
//! in which the stack processed the frames that readied the sockets: the
//! sets' ready queues are FIFO by that order, as the kernel's ready lists
//! are (programs serve clients in it; redis's blocking commands depend on
//! it). The list also carries [`KERNEL`]-tagged entries: the kernel half of
//! an epoll set (its kernel members) was seen ready at that point, so that
//! its events take their place among the stack's (see `epoll::gather`).
//!
//! The table also holds who waits: the wakers of the threads blocked on a
//! socket (a read, an accept, a connect, a send with no room, a `poll`) or
//! on an epoll set (`epoll_wait`). Whoever drives the stack hands each
//! fired socket to its sets and wakes those threads, and no others
//! (`epoll::distribute`); a thread re-registers each time it is about to
//! sleep, so a list holds each waiting thread once.
//!
//! Guarantees: every readiness event the stack signals after a socket was
//! last examined reaches each set watching it at its next wait, in the
//! order signalled; a waker fires once, so [`Watch::arm`] is called each
//! time a member is examined.
//! The list is a `parking_lot` mutex held for a push or a swap, never
//! across a yield; the wakers run inside the stack's poll, under the
//! worker's lock.

use crate::engine::stacks;
use crate::engine::worker::ShimStack;
use accel_stack::iface::TcpHandle;
use libc::c_int;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::task::{Wake, Waker};

use crate::sockets::sock::{Kind, Slab, Sock};

/// Sockets whose wakers fired, by handle, in firing order (duplicates
/// possible), and [`KERNEL`]-tagged epoll set handles.
static WOKEN: Mutex<Vec<u32>> = parking_lot::const_mutex(Vec::new());

/// [`WOKEN`] may hold something: every poll of the stack looks, and most
/// find nothing (a spinning thread polls thousands of times a second).
static ANY_WOKEN: AtomicBool = AtomicBool::new(false);

/// Whether a stack signalled a socket that is not yet handed out
/// (`epoll::distribute` would find something).
pub fn pending() -> bool {
    ANY_WOKEN.load(Acquire)
}

/// In the child of `fork`: no stack signals anything here, and the list
/// may have been locked by a parent's thread that is not here (a waker
/// fired by a poll in another thread at the fork): it is never looked at.
pub fn after_fork() {
    ANY_WOKEN.store(false, Release);
}

/// Pushes `entry` on [`WOKEN`].
fn push_woken(entry: u32) {
    WOKEN.lock().push(entry);
    ANY_WOKEN.store(true, Release);
}

/// The tag of a woken-list entry that names an epoll set whose kernel half
/// was seen ready (set handles, like socket handles, stay below 2³¹).
pub const KERNEL: u32 = 1 << 31;

/// Notes that the kernel half of epoll set `set` was seen ready now: its
/// kernel events are ordered after every stack event noted before.
fn kernel_half_ready(set: u32) {
    push_woken(set | KERNEL);
}

/// The waker of socket handle `.0`.
struct SockWaker(u32);

impl Wake for SockWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        push_woken(self.0);
    }
}

/// Per socket handle: its waker (made once) and the members watching it,
/// as (epoll set handle, fd).
#[derive(Debug, Default)]
pub struct Watch {
    wakers: Vec<Option<Waker>>,
    watchers: Vec<Vec<(u32, c_int)>>,
    /// The buffer that trades places with the list (see [`Watch::take_woken`]).
    spare: Vec<u32>,
    /// The epoll sets whose kernel halves the keeper watches, as (epoll
    /// fd, set handle), and by set handle whether it is listed.
    kernel_halves: Vec<(c_int, u32)>,
    kernel_listed: Vec<bool>,
    /// Threads blocked on a socket (by socket handle) and on an epoll set
    /// (by set handle): their wakers, each once, taken when woken.
    sock_waiters: Vec<Vec<Waker>>,
    set_waiters: Vec<Vec<Waker>>,
}

/// Adds `waker` to `lists[i]` unless it is there already.
fn add_waiter(lists: &mut Vec<Vec<Waker>>, i: u32, waker: &Waker) {
    let i = i as usize;
    if lists.len() <= i {
        lists.resize_with(i + 1, Vec::new);
    }
    if let Some(l) = lists.get_mut(i) {
        if !l.iter().any(|w| w.will_wake(waker)) {
            l.push(waker.clone());
        }
    }
}

/// Moves the wakers of `lists[i]` to `out`.
fn take_waiters(lists: &mut [Vec<Waker>], i: u32, out: &mut Vec<Waker>) {
    if let Some(l) = lists.get_mut(i as usize) {
        out.append(l);
    }
}

impl Watch {
    /// An empty table.
    pub const fn new() -> Watch {
        Watch {
            wakers: Vec::new(),
            watchers: Vec::new(),
            spare: Vec::new(),
            kernel_halves: Vec::new(),
            kernel_listed: Vec::new(),
            sock_waiters: Vec::new(),
            set_waiters: Vec::new(),
        }
    }

    /// A thread waits for socket `sock` (woken by [`Watch::wake_sock`]).
    pub fn wait_sock(&mut self, sock: u32, waker: &Waker) {
        add_waiter(&mut self.sock_waiters, sock, waker);
    }

    /// A thread waits for epoll set `set` (woken by [`Watch::wake_set`]).
    pub fn wait_set(&mut self, set: u32, waker: &Waker) {
        add_waiter(&mut self.set_waiters, set, waker);
    }

    /// The thread of `waker` no longer waits for socket `sock`.
    pub fn unwait_sock(&mut self, sock: u32, waker: &Waker) {
        if let Some(l) = self.sock_waiters.get_mut(sock as usize) {
            l.retain(|w| !w.will_wake(waker));
        }
    }

    /// The thread of `waker` no longer waits for set `set`.
    pub fn unwait_set(&mut self, set: u32, waker: &Waker) {
        if let Some(l) = self.set_waiters.get_mut(set as usize) {
            l.retain(|w| !w.will_wake(waker));
        }
    }

    /// The threads waiting for socket `sock`, to be woken (into `out`).
    pub fn wake_sock(&mut self, sock: u32, out: &mut Vec<Waker>) {
        take_waiters(&mut self.sock_waiters, sock, out);
    }

    /// The threads waiting for epoll set `set`, to be woken (into `out`).
    pub fn wake_set(&mut self, set: u32, out: &mut Vec<Waker>) {
        take_waiters(&mut self.set_waiters, set, out);
    }

    /// The keeper watches epoll fd `epfd`, the kernel half of set `set`,
    /// until it is seen ready (its kernel members have an event).
    pub fn watch_kernel(&mut self, epfd: c_int, set: u32) {
        let i = set as usize;
        if self.kernel_listed.len() <= i {
            self.kernel_listed.resize(i + 1, false);
        }
        if let Some(listed) = self.kernel_listed.get_mut(i) {
            if !*listed {
                *listed = true;
                self.kernel_halves.push((epfd, set));
            }
        }
    }

    /// Set `set`'s kernel half is no longer watched (it was seen ready, or
    /// the set is gone).
    pub fn unwatch_kernel(&mut self, set: u32) {
        if let Some(listed) = self.kernel_listed.get_mut(set as usize) {
            if std::mem::take(listed) {
                self.kernel_halves.retain(|&(_, s)| s != set);
            }
        }
    }

    /// The kernel halves to watch, as (epoll fd, set handle).
    pub fn kernel_halves(&self) -> &[(c_int, u32)] {
        &self.kernel_halves
    }

    /// Set `set`'s kernel half was seen ready: its events are ordered here
    /// among the stack's, and it is not watched again until the set's
    /// next wait.
    pub fn kernel_half_seen(&mut self, set: u32) {
        self.unwatch_kernel(set);
        kernel_half_ready(set);
    }

    /// Set `set` watches socket `sock` as its member `fd`.
    pub fn add(&mut self, sock: u32, set: u32, fd: c_int) {
        let i = sock as usize;
        if self.watchers.len() <= i {
            self.watchers.resize_with(i + 1, Vec::new);
        }
        if let Some(w) = self.watchers.get_mut(i) {
            if !w.contains(&(set, fd)) {
                w.push((set, fd));
            }
        }
    }

    /// Set `set` no longer watches `sock` as `fd`.
    pub fn remove(&mut self, sock: u32, set: u32, fd: c_int) {
        if let Some(w) = self.watchers.get_mut(sock as usize) {
            w.retain(|&e| e != (set, fd));
        }
    }

    /// Socket `sock` is gone: who watched it (the entries are cleared, and
    /// its waker forgotten, so a socket reusing the handle starts afresh).
    pub fn forget(&mut self, sock: u32) -> Vec<(u32, c_int)> {
        if let Some(w) = self.wakers.get_mut(sock as usize) {
            *w = None;
        }
        self.watchers
            .get_mut(sock as usize)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Who watches `sock`.
    pub fn watchers(&self, sock: u32) -> &[(u32, c_int)] {
        self.watchers.get(sock as usize).map_or(&[], Vec::as_slice)
    }

    /// Takes the sockets whose wakers fired since the last call, in firing
    /// order.
    pub fn woken(out: &mut Vec<u32>) {
        if !ANY_WOKEN.swap(false, Acquire) {
            return;
        }
        let mut list = WOKEN.lock();
        if out.is_empty() {
            std::mem::swap(out, &mut *list);
        } else {
            out.append(&mut list);
        }
    }

    /// As [`Watch::woken`], into this table's spare buffer, which the list
    /// gets in exchange: the two buffers trade places, so taking the list
    /// allocates nothing once both have grown. Give it back with
    /// [`Watch::put_back`].
    pub fn take_woken(&mut self) -> Vec<u32> {
        let mut out = std::mem::take(&mut self.spare);
        out.clear();
        Self::woken(&mut out);
        out
    }

    /// Returns the buffer [`Watch::take_woken`] gave.
    pub fn put_back(&mut self, mut buf: Vec<u32>) {
        buf.clear();
        self.spare = buf;
    }

    /// Socket `sock`'s waker, made at its first use.
    fn waker(&mut self, sock: u32) -> Option<&Waker> {
        let i = sock as usize;
        if self.wakers.len() <= i {
            self.wakers.resize_with(i + 1, || None);
        }
        let slot = self.wakers.get_mut(i)?;
        Some(slot.get_or_insert_with(|| Waker::from(Arc::new(SockWaker(sock)))))
    }

    /// Arms socket `sock`'s wakers on its stacks (again: they fire once).
    /// With the worker's lock held (it takes the stacks' locks).
    pub fn arm(&mut self, socks: &Slab<Sock>, sock: u32) {
        let Some(s) = socks.get(sock) else { return };
        if let Kind::Tcp(q, h) = s.kind {
            if let Some(mut stack) = stacks::lock(q) {
                self.arm_conn(sock, &mut stack, h);
            }
            return;
        }
        let Some(waker) = self.waker(sock) else { return };
        match &s.kind {
            Kind::Listener { tcp: Some(hs), .. } => {
                for (q, h) in hs.iter().enumerate() {
                    if let Some(mut stack) = stacks::lock(q as stacks::Q) {
                        let _ = stack.iface.tcp.register_recv_waker(*h, waker);
                    }
                }
            }
            Kind::Udp(hs) => {
                for (q, h) in hs.iter().enumerate() {
                    if let Some(mut stack) = stacks::lock(q as stacks::Q) {
                        if let Some(u) = stack.iface.udp_mut(*h) {
                            u.register_recv_waker(waker);
                            u.register_send_waker(waker);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Arms the wakers of socket `sock`, connection `h` of `stack`, which
    /// the caller holds locked: a read that found nothing arms them under
    /// the lock it read with, so nothing can come in between
    /// (`block::WaitOn::Conn`).
    pub fn arm_conn(&mut self, sock: u32, stack: &mut ShimStack, h: TcpHandle) {
        if let Some(waker) = self.waker(sock) {
            let _ = stack.iface.tcp.register_recv_waker(h, waker);
            let _ = stack.iface.tcp.register_send_waker(h, waker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests that take the process-wide list run one at a time.
    static SERIAL: Mutex<()> = parking_lot::const_mutex(());

    #[test]
    fn watchers_are_kept_per_socket_and_forgotten_with_it() {
        let mut w = Watch::new();
        w.add(3, 1, 10);
        w.add(3, 2, 10);
        w.add(3, 1, 10);
        w.add(0, 1, 11);
        assert_eq!(w.watchers(3), &[(1, 10), (2, 10)]);
        w.remove(3, 2, 10);
        assert_eq!(w.watchers(3), &[(1, 10)]);
        assert_eq!(w.forget(3), vec![(1, 10)]);
        assert!(w.watchers(3).is_empty());
        assert_eq!(w.watchers(0), &[(1, 11)]);
        assert!(w.watchers(99).is_empty());
    }

    #[test]
    fn waiters_are_woken_once_each_and_only_for_their_socket_or_set() {
        let mut w = Watch::new();
        let a = Waker::from(Arc::new(SockWaker(1)));
        let b = Waker::from(Arc::new(SockWaker(2)));
        w.wait_sock(5, &a);
        w.wait_sock(5, &a);
        w.wait_sock(5, &b);
        w.wait_sock(6, &b);
        w.wait_set(5, &b);
        let mut out = Vec::new();
        w.wake_sock(5, &mut out);
        assert_eq!(out.len(), 2, "a once, b once");
        assert!(out[0].will_wake(&a) && out[1].will_wake(&b));
        out.clear();
        w.wake_sock(5, &mut out);
        assert!(out.is_empty(), "taken when woken");
        w.wake_sock(7, &mut out);
        w.wake_set(9, &mut out);
        assert!(out.is_empty());
        w.wake_set(5, &mut out);
        w.wake_sock(6, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_fired_waker_reports_its_socket() {
        let _one = SERIAL.lock();
        let waker = Waker::from(Arc::new(SockWaker(4242)));
        waker.wake_by_ref();
        let copy = waker.clone();
        copy.wake();
        let mut out = Vec::new();
        Watch::woken(&mut out);
        // Other tests' wakers may share the list; ours came twice.
        assert_eq!(out.iter().filter(|&&s| s == 4242).count(), 2);
        // Through the table's spare buffer, which is handed back empty.
        let mut w = Watch::new();
        waker.wake_by_ref();
        let got = w.take_woken();
        assert!(got.contains(&4242));
        w.put_back(got);
        assert!(w.spare.is_empty() && w.spare.capacity() > 0);
    }

    #[test]
    fn the_list_keeps_firing_order() {
        let _one = SERIAL.lock();
        let wakers: Vec<Waker> = (0..3)
            .map(|i| Waker::from(Arc::new(SockWaker(7000 + i))))
            .collect();
        for i in [2, 0, 1, 0] {
            wakers[i].wake_by_ref();
        }
        kernel_half_ready(77);
        let mut out = Vec::new();
        Watch::woken(&mut out);
        let ours: Vec<u32> = out
            .into_iter()
            .filter(|&s| (7000..7003).contains(&s) || s == 77 | KERNEL)
            .collect();
        assert_eq!(ours, vec![7002, 7000, 7001, 7000, 77 | KERNEL]);
    }
}
