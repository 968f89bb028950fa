//! The parent's side of `fork` (issue 10, item 3): connections of this
//! process's stack that a child of `fork` inherited are served to the
//! child through a proxy thread, since only this process can drive the
//! device.
//!
//! At each fork of a process whose stack runs and holds TCP connections
//! ([`before_fork`], with the worker's lock held), the proxy makes a
//! control channel (an `AF_UNIX` `SOCK_SEQPACKET` socketpair, see
//! `forkwire`), and every connection gains a reference held by the child
//! ([`Sock::children`](crate::sockets::sock::Sock)). The child
//! ([`crate::sockets::forked`]) attaches a connection lazily, at its first use,
//! sending its copy of the connection's placeholder along (the parent
//! keeps it, so that the child's socket options are checked and kept by
//! the kernel exactly as the parent's own are, at the cost of one fd per
//! attached connection, none per connection merely inherited): the proxy
//! then makes an `AF_UNIX` stream socketpair, passes one end to the child
//! (which puts it on the connection's fd number) and pumps bytes between
//! the other end and the stack connection.
//!
//! The proxy thread, started at the first such fork, sleeps in `ppoll` on
//! an eventfd, the control channels, the socketpair ends it waits on, and
//! the port's Rx interrupts while it pumps; the stack wakes it through the
//! connections' waiter lists (a waker that writes the eventfd; see
//! `ready`). Flow control both ways: it reads the stack only when what it
//! read before went into the socketpair, and the socketpair only when what
//! it read before went into the stack (each direction holds at most
//! [`CHUNK`] bytes in the proxy). The peer's FIN becomes `shutdown(SHUT_WR)`
//! of the proxy's end (the child reads the end of the stream), the child's
//! `shutdown(SHUT_WR)` (announced by an RPC) the stack's FIN; a reset or an
//! error shuts the proxy's end and is sent to the child, which reports it
//! (`ECONNRESET`) where the kernel's TCP would: at the read that finds the
//! end, or the write that finds the end shut.
//!
//! References: a child's reference goes when the child releases the
//! connection unattached (closed it), when its attached end is closed (the
//! proxy reads the end of the stream with nothing announced), or when the
//! child dies (the control channel's end: `SIGKILL` included). The parent's
//! own `close` does not close a connection a child holds
//! (`close::dropped`); the last reference closes it as a last `close`
//! does (`close::close_last`).
//!
//! Locks: the proxy thread owns its tables; the forking thread hands new
//! children over through a queue (`NEW`, a leaf lock). The thread takes
//! the worker's and the stacks' locks like any thread, never while it
//! sleeps. It blocks every signal (the program's go to the program's
//! threads) and runs marked as inside the shim.

use crate::engine::stacks::{self, Q};
use crate::engine::worker::{self, Sleeper, Status, W};
use crate::fdtable::{Entry, State, FDS};
use crate::logging::log;
use crate::sockets::block::WaitOn;
use crate::sockets::forkwire::{self as wire, Op, Reply, Request, DATA, REQUEST_LEN};
use crate::sockets::sock::Kind;
use crate::sockets::table::Core;
use crate::sys;
use accel_stack::iface::TcpHandle;
use libc::{c_int, pollfd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::time::Duration;

/// The most bytes the proxy holds per connection and direction.
pub const CHUNK: usize = 64 * 1024;

/// A child of a fork, as the proxy knows it.
#[derive(Debug)]
struct Child {
    /// The parent's end of its control channel.
    ctl: c_int,
    /// The connections it holds and has not attached, by socket handle.
    refs: Vec<u32>,
    /// Its channel may hold a request.
    ready: bool,
}

/// Children made by forks, for the proxy thread to take.
static NEW: Mutex<Vec<Child>> = Mutex::new(Vec::new());
/// The child's end of the control channel of the fork under way (-1 none).
static CHILD_END: AtomicI32 = AtomicI32::new(-1);
/// The proxy thread's eventfd (-1 until made).
static EFD: AtomicI32 = AtomicI32::new(-1);
/// Whether the proxy thread runs.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// The proxy thread sleeps, or is about to: wakers write its eventfd.
static ASLEEP: AtomicBool = AtomicBool::new(false);

/// Wakes the proxy thread.
fn nudge() {
    let fd = EFD.load(Acquire);
    if fd >= 0 {
        let one = 1u64.to_ne_bytes();
        let _ = sys::write_all(fd, &one);
    }
}

/// Connections (by socket handle) whose stack wakers fired.
static WOKE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The waker of an attached connection: the stack fires it (through the
/// socket's waiter list, see `ready`) when the connection may move.
struct ConnWaker(u32);

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        WOKE.lock().unwrap_or_else(|e| e.into_inner()).push(self.0);
        // The eventfd only if the proxy sleeps (or is about to): it looks
        // at the list before it does (see `run`).
        if ASLEEP.load(SeqCst) {
            nudge();
        }
    }
}

/// The `fork` prepare handler's part, with the worker's lock held: if the
/// stack runs and holds connections, a control channel for the child and
/// a reference of the child's on each connection.
pub fn before_fork(core: &mut Core) {
    if worker::status() != Status::Up {
        return;
    }
    let conns: Vec<u32> = core
        .socks
        .iter()
        // Those this process holds an fd of: the child inherits those
        // (a connection closed here but held by earlier children is not).
        .filter(|(_, s)| s.refs > 0 && matches!(s.kind, Kind::Tcp(..)))
        .map(|(h, _)| h)
        .collect();
    if conns.is_empty() {
        return;
    }
    if EFD.load(Acquire) < 0 {
        match sys::eventfd() {
            Ok(fd) => {
                let _ = FDS.install(fd, State::Proxy, 0);
                EFD.store(fd, Release);
            }
            Err(e) => {
                log!(
                    warn,
                    "fork: no eventfd for the proxy (errno {e}): the child's connections stay unusable"
                );
                return;
            }
        }
    }
    let (p, c) = match wire::pair(libc::SOCK_SEQPACKET) {
        Ok(x) => x,
        Err(e) => {
            log!(
                warn,
                "fork: no control channel (errno {e}): the child's connections stay unusable"
            );
            return;
        }
    };
    let _ = FDS.install(p, State::Proxy, 0);
    for &h in &conns {
        if let Some(s) = core.socks.get_mut(h) {
            s.children += 1;
        }
    }
    NEW.lock().unwrap_or_else(|e| e.into_inner()).push(Child {
        ctl: p,
        refs: conns,
        ready: true,
    });
    CHILD_END.store(c, Release);
}

/// The `fork` parent handler's part: the child's end of the channel is the
/// child's; the proxy thread takes the new child (started if need be).
/// If the fork failed, the channel's end tells the proxy at once.
pub fn after_fork_in_parent() {
    let c = CHILD_END.swap(-1, AcqRel);
    if c < 0 {
        return;
    }
    sys::close(c);
    if !RUNNING.swap(true, AcqRel) {
        let spawned = std::thread::Builder::new().name("accel-proxy".into()).spawn(run);
        if let Err(e) = spawned {
            RUNNING.store(false, Release);
            log!(
                error,
                "fork: cannot start the proxy thread ({e}): the children's connections hang"
            );
        }
    }
    nudge();
}

/// In the child of `fork`: its end of the control channel, if the fork
/// made one (-1 if not).
pub fn take_child_end() -> c_int {
    CHILD_END.swap(-1, AcqRel)
}

/// In the child of `fork`: the parent's proxy is not here.
pub fn after_fork_in_child() {
    EFD.store(-1, Release);
    RUNNING.store(false, Release);
}

/// One attached connection.
struct Conn {
    /// The child's control channel (its identity).
    child: c_int,
    /// The socket, by handle, and its stack connection.
    handle: u32,
    q: Q,
    h: TcpHandle,
    /// The proxy's end of the socketpair.
    pair: c_int,
    /// Read from the stack, not yet written to the child (from `tc_at`).
    to_child: Vec<u8>,
    tc_at: usize,
    /// Read from the child, not yet queued on the stack (from `fc_at`).
    from_child: Vec<u8>,
    fc_at: usize,
    /// The peer's FIN was read from the stack / passed on to the child.
    stack_eof: bool,
    eof_sent: bool,
    /// The child's end of stream was read; the child announced
    /// `shutdown(SHUT_WR)` (else the end is a close); the stack's FIN was
    /// queued.
    child_eof: bool,
    shut_wanted: bool,
    stack_shut: bool,
    /// The stack connection failed (reset): nothing more moves.
    dead: bool,
    /// The child's end is closed (`POLLHUP` on ours).
    hup: bool,
    /// What the last pump found it waits for.
    want_in: bool,
    want_out: bool,
    want_stack: bool,
    /// Something may have changed: pump it.
    dirty: bool,
    /// Its waker is on the socket's waiter list (taken when it fires).
    registered: bool,
    waker: Waker,
}

impl Conn {
    fn new(child: c_int, handle: u32, q: Q, h: TcpHandle, pair: c_int) -> Conn {
        Conn {
            child,
            handle,
            q,
            h,
            pair,
            to_child: Vec::new(),
            tc_at: 0,
            from_child: Vec::new(),
            fc_at: 0,
            stack_eof: false,
            eof_sent: false,
            child_eof: false,
            shut_wanted: false,
            stack_shut: false,
            dead: false,
            hup: false,
            want_in: false,
            want_out: false,
            want_stack: false,
            dirty: true,
            registered: false,
            waker: Waker::from(Arc::new(ConnWaker(handle))),
        }
    }

    /// Whether the child is done with it: its end is closed and what it
    /// wrote is on the stack (or cannot go any more).
    fn finished(&self) -> bool {
        done(
            self.child_eof,
            self.shut_wanted,
            self.hup,
            self.fc_at >= self.from_child.len(),
            self.dead,
        )
    }

    /// The stack connection failed with `errno` (a reset): its end is
    /// shut both ways, and the child is told (it reports the errno where
    /// the kernel's TCP would, see `forked::failure`).
    fn fail(&mut self, errno: c_int) {
        if !self.dead {
            self.dead = true;
            // The notice first: the child looks for it when it sees the
            // end.
            let notice = Request::new(Op::Failed, self.handle, errno, 0, 0);
            let _ = wire::send_msg(self.child, &notice.encode(), None, libc::MSG_DONTWAIT);
            let _ = wire::shutdown(self.pair, libc::SHUT_RDWR);
        }
    }

    /// Moves what can move, without blocking; whether anything did.
    fn pump(&mut self, buf: &mut [u8]) -> bool {
        let mut progress = false;
        self.want_in = false;
        self.want_out = false;
        self.want_stack = false;
        // Stack → child.
        if !self.dead && !self.stack_eof && self.tc_at >= self.to_child.len() {
            let r = stacks::lock(self.q).map(|mut s| s.iface.tcp.recv(self.h, buf));
            match r {
                Some(Ok(0)) => {
                    self.stack_eof = true;
                    progress = true;
                }
                Some(Ok(n)) => {
                    self.to_child.clear();
                    self.to_child.extend_from_slice(buf.get(..n).unwrap_or_default());
                    self.tc_at = 0;
                    progress = true;
                }
                Some(Err(e)) if e.0 == libc::EAGAIN => self.want_stack = true,
                Some(Err(e)) => {
                    self.fail(e.0);
                    progress = true;
                }
                None => {
                    self.fail(libc::ECONNRESET);
                    progress = true;
                }
            }
        }
        if self.tc_at < self.to_child.len() {
            match wire::send_some(self.pair, self.to_child.get(self.tc_at..).unwrap_or_default()) {
                Ok(n) => {
                    self.tc_at += n;
                    progress |= n > 0;
                    if self.tc_at < self.to_child.len() {
                        self.want_out = true;
                    }
                }
                Err(libc::EAGAIN) => self.want_out = true,
                Err(_) => {
                    // The child shut its reading side: what it would have
                    // read is dropped, as the kernel drops it.
                    self.tc_at = self.to_child.len();
                }
            }
        }
        if self.stack_eof && !self.eof_sent && self.tc_at >= self.to_child.len() {
            let _ = wire::shutdown(self.pair, libc::SHUT_WR);
            self.eof_sent = true;
            progress = true;
        }
        // Child → stack.
        if !self.child_eof && self.fc_at >= self.from_child.len() {
            match wire::recv_some(self.pair, buf) {
                Ok(0) => {
                    self.child_eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.from_child.clear();
                    self.from_child
                        .extend_from_slice(buf.get(..n).unwrap_or_default());
                    self.fc_at = 0;
                    progress = true;
                }
                Err(libc::EAGAIN) => self.want_in = true,
                Err(_) => {
                    self.child_eof = true;
                    progress = true;
                }
            }
        }
        if self.fc_at < self.from_child.len() && !self.dead {
            let data = self.from_child.get(self.fc_at..).unwrap_or_default();
            let r = stacks::lock(self.q).map(|mut s| s.iface.tcp.send(self.h, data));
            match r {
                Some(Ok(n)) => {
                    self.fc_at += n;
                    progress |= n > 0;
                    if self.fc_at < self.from_child.len() {
                        self.want_stack = true;
                    }
                }
                Some(Err(e)) if e.0 == libc::EAGAIN => self.want_stack = true,
                Some(Err(e)) if e.0 != libc::EPIPE => {
                    self.fc_at = self.from_child.len();
                    self.fail(e.0);
                    progress = true;
                }
                // The connection's sending side is shut: dropped, as the
                // kernel's would fail the write.
                _ => self.fc_at = self.from_child.len(),
            }
        }
        if self.child_eof && self.shut_wanted && !self.stack_shut && self.fc_at >= self.from_child.len() {
            if let Some(mut s) = stacks::lock(self.q) {
                let _ = s.iface.tcp.shutdown(self.h, false, true);
            }
            self.stack_shut = true;
            progress = true;
        }
        progress
    }
}

/// Whether a connection is done with, given that the child's end of
/// stream was read (`eof`), a shutdown was announced (`shut`: the end of
/// stream is not a close), its end is closed (`hup`), what it wrote is on
/// the stack (`flushed`), the stack connection failed (`dead`).
fn done(eof: bool, shut: bool, hup: bool, flushed: bool, dead: bool) -> bool {
    eof && (dead || ((!shut || hup) && flushed))
}

/// The proxy thread's tables.
struct Proxy {
    children: Vec<Child>,
    conns: Vec<Conn>,
    buf: Vec<u8>,
}

/// Releases a child's reference to socket `handle`: the last reference
/// closes it.
fn release(handle: u32) {
    let mut core = crate::sockets::table::lock();
    let Some(s) = core.socks.get_mut(handle) else {
        return;
    };
    s.children = s.children.saturating_sub(1);
    if s.refs == 0 && s.children == 0 {
        crate::sockets::close::close_last(core, -1, handle);
    }
}

/// Closes one of the proxy's own fds.
fn close_own(fd: c_int) {
    FDS.clear(fd);
    sys::close(fd);
}

/// The proxy thread.
fn run() {
    let _mark = crate::interpose::skeleton::InShim::enter();
    block_signals();
    let mut p = Proxy {
        children: Vec::new(),
        conns: Vec::new(),
        buf: vec![0; CHUNK],
    };
    let mut fds: Vec<pollfd> = Vec::new();
    let mut woke: Vec<u32> = Vec::new();
    let mut sleeper = false;
    loop {
        if worker::status() != Status::Up {
            if sleeper {
                W.release_sleeper(Sleeper::Proxy);
            }
            return;
        }
        p.children
            .append(&mut NEW.lock().unwrap_or_else(|e| e.into_inner()));
        woke.append(&mut WOKE.lock().unwrap_or_else(|e| e.into_inner()));
        for c in p.conns.iter_mut().filter(|c| woke.contains(&c.handle)) {
            c.dirty = true;
            c.registered = false;
        }
        woke.clear();
        let mut progress = p.serve_children();
        progress |= p.pump_all();
        if progress {
            continue;
        }
        // About to sleep: the stack wakes us for the connections that wait
        // on it (registered first, then one more look, so nothing that
        // happens in between is missed).
        let mut fresh = false;
        {
            let mut core = None;
            for c in p
                .conns
                .iter_mut()
                .filter(|c| !c.registered && !c.dead && (c.want_stack || !c.stack_eof))
            {
                core.get_or_insert_with(crate::sockets::table::lock)
                    .register(WaitOn::Sock(c.handle), &c.waker);
                c.registered = true;
                c.dirty = true;
                fresh = true;
            }
        }
        if fresh && p.pump_all() {
            continue;
        }
        // While it pumps, the proxy sleeps on the device for every waiting
        // thread (wait's sleeper): frames for its connections wake it
        // alone, and the program's waiting threads sleep until theirs.
        // It keeps the role while it has connections (a waiting thread that
        // took it would sleep on the device and drive it for the proxy, a
        // hop more per frame).
        if p.conns.is_empty() {
            if std::mem::take(&mut sleeper) {
                W.release_sleeper(Sleeper::Proxy);
                // Whoever waits needs the keeper on the device now.
                crate::engine::keeper::nudge();
            }
        } else if !sleeper {
            sleeper = W.take_sleeper(Sleeper::Proxy);
        }
        let mut wait = Duration::from_millis(500);
        if sleeper {
            let r = stacks::poll_all();
            if let Some(n) = r.next {
                wait = wait.min(n.saturating_since(worker::now()));
            }
        }
        fds.clear();
        let efd = EFD.load(Acquire);
        fds.push(pollfd {
            fd: efd,
            events: libc::POLLIN,
            revents: 0,
        });
        for ch in &p.children {
            fds.push(pollfd {
                fd: ch.ctl,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for c in &p.conns {
            let mut events = 0;
            if c.want_in {
                events |= libc::POLLIN;
            }
            if c.want_out {
                events |= libc::POLLOUT;
            }
            fds.push(pollfd {
                fd: c.pair,
                events,
                revents: 0,
            });
        }
        let ours = fds.len();
        if sleeper && !stacks::arm_rx_interrupts(&mut fds) {
            // A device that will not wake the sleep: look again soon.
            wait = wait.min(Duration::from_millis(1));
        }
        // Spin first, as a waiting thread does (ACCEL_SPIN_US): the
        // child's answer, or the peer's next request, often comes within
        // it, and a sleep and a wake-up cost more.
        let spun = sleeper && spin(fds.get_mut(1 + p.children.len()..ours).unwrap_or_default());
        if !spun {
            ASLEEP.store(true, SeqCst);
            if WOKE.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                // SAFETY: no signal mask.
                let _ = unsafe { sys::ppoll(&mut fds, Some(wait), std::ptr::null()) };
                stacks::slept(&fds);
            }
            ASLEEP.store(false, SeqCst);
        }
        if fds.first().is_some_and(|f| f.revents != 0) {
            sys::drain(efd);
        }
        let mut at = fds.iter().skip(1);
        for (ch, f) in p.children.iter_mut().zip(at.by_ref()) {
            ch.ready |= f.revents != 0;
        }
        for (c, f) in p.conns.iter_mut().zip(at) {
            c.hup |= f.revents & libc::POLLHUP != 0;
            c.dirty |= f.revents != 0;
        }
        if sleeper && fds.iter().skip(ours).any(|f| f.revents != 0) {
            stacks::poll_all();
        }
    }
}

/// Polls the device and looks at the connections' socketpair ends
/// `pairs` (without sleeping) for up to `ACCEL_SPIN_US`; whether something
/// came (a connection's waker fired, or an end has events: their
/// `revents` are set). The control channels wait for the sleep.
fn spin(pairs: &mut [pollfd]) -> bool {
    let spin = Duration::from_micros(u64::from(crate::startup::config().spin_us));
    let t0 = worker::now();
    loop {
        stacks::poll_all();
        if !WOKE.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            return true;
        }
        // SAFETY: no signal mask.
        if unsafe { sys::ppoll(pairs, Some(Duration::ZERO), std::ptr::null()) }.is_ok_and(|n| n > 0) {
            return true;
        }
        if worker::now().saturating_since(t0) >= spin {
            return false;
        }
        std::hint::spin_loop();
    }
}

impl Proxy {
    /// Answers the children's requests and notices the ones gone; whether
    /// anything happened.
    fn serve_children(&mut self) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.children.len() {
            let Some(ctl) = self.children.get(i).filter(|c| c.ready).map(|c| c.ctl) else {
                i += 1;
                continue;
            };
            let mut msg = [0u8; REQUEST_LEN + 8];
            match wire::recv_msg(ctl, &mut msg, libc::MSG_DONTWAIT) {
                Ok((0, _)) | Err(libc::ECONNRESET | libc::EBADF | libc::ENOTSOCK) => {
                    // The child is gone: its unattached references go
                    // (its attached ends end on their own).
                    let child = self.children.swap_remove(i);
                    close_own(child.ctl);
                    for h in child.refs {
                        release(h);
                    }
                    progress = true;
                    continue;
                }
                Ok((n, fd)) => {
                    match msg.get(..n).and_then(Request::decode) {
                        Some(req) => self.answer(i, ctl, &req, fd),
                        None => log!(warn, "fork proxy: a bad message from a child ({n} bytes)"),
                    }
                    if let Some(fd) = fd {
                        // Not kept by the request (see `keep`).
                        if FDS.get(fd).state() != State::Proxy {
                            sys::close(fd);
                        }
                    }
                    progress = true;
                    // The same child again: it may have sent more.
                    continue;
                }
                Err(_) => {
                    if let Some(c) = self.children.get_mut(i) {
                        c.ready = false;
                    }
                }
            }
            i += 1;
        }
        progress
    }

    /// Answers request `req` of child `i` (control channel `ctl`), which
    /// came with `fd` (an attach: the child's copy of the placeholder).
    fn answer(&mut self, i: usize, ctl: c_int, req: &Request, fd: Option<c_int>) {
        let holds = self.children.get(i).is_some_and(|c| c.refs.contains(&req.handle));
        let attached = self
            .conns
            .iter_mut()
            .find(|c| c.child == ctl && c.handle == req.handle);
        if !holds && attached.is_none() {
            // Released already: both ends shut and the child's end
            // closed, or a stale request. A connection that ended has no
            // peer and takes no shutdown, as the kernel's.
            let e = match req.op {
                Op::Release => return,
                Op::Name | Op::Shutdown => libc::ENOTCONN,
                _ => libc::EBADF,
            };
            reply(ctl, Reply::of(Err(e)), None);
            return;
        }
        match req.op {
            Op::Attach => {
                if attached.is_some() {
                    reply(ctl, Reply::of(Err(libc::EALREADY)), None);
                    return;
                }
                if let Some(fd) = fd {
                    keep(req.handle, fd);
                }
                match self.attach(ctl, req.handle) {
                    Ok(child_end) => {
                        reply(ctl, Reply::of(Ok(0)), Some(child_end));
                        sys::close(child_end);
                        if let Some(c) = self.children.get_mut(i) {
                            c.refs.retain(|&h| h != req.handle);
                        }
                    }
                    Err(e) => reply(ctl, Reply::of(Err(e)), None),
                }
            }
            Op::Release => {
                if let Some(c) = self.children.get_mut(i) {
                    c.refs.retain(|&h| h != req.handle);
                }
                release(req.handle);
            }
            Op::Shutdown => {
                let r = shutdown(req.handle, req.a);
                if r.is_ok() && (req.a == libc::SHUT_WR || req.a == libc::SHUT_RDWR) {
                    if let Some(c) = attached {
                        c.shut_wanted = true;
                    }
                }
                reply(ctl, Reply::of(r.map(|()| 0)), None);
            }
            Op::GetOpt | Op::SetOpt | Op::Name => reply(ctl, sockcall(req), None),
            Op::Failed => reply(ctl, Reply::of(Err(libc::EINVAL)), None),
        }
    }

    /// Attaches connection `handle` for child `ctl`: the child's end of a
    /// new socketpair.
    fn attach(&mut self, ctl: c_int, handle: u32) -> Result<c_int, c_int> {
        let (q, h) = {
            let core = crate::sockets::table::lock();
            match core.socks.get(handle).map(|s| &s.kind) {
                Some(Kind::Tcp(q, h)) => (*q, *h),
                _ => return Err(libc::EBADF),
            }
        };
        let (ours, theirs) = wire::pair(libc::SOCK_STREAM)?;
        let _ = FDS.install(ours, State::Proxy, 0);
        let _ = sys::set_nonblocking(ours, true);
        self.conns.push(Conn::new(ctl, handle, q, h, ours));
        log!(debug, "fork proxy: connection {handle} attached by a child");
        Ok(theirs)
    }

    /// Pumps every attached connection once; drops the finished ones.
    fn pump_all(&mut self) -> bool {
        let mut progress = false;
        let mut touched: Vec<Q> = Vec::new();
        for c in self.conns.iter_mut().filter(|c| c.dirty) {
            if c.pump(&mut self.buf) {
                progress = true;
                if !touched.contains(&c.q) {
                    touched.push(c.q);
                }
            } else {
                c.dirty = false;
            }
        }
        for q in touched {
            // What was queued goes out; a window update too.
            stacks::poll(q);
        }
        let mut i = 0;
        while i < self.conns.len() {
            if self.conns.get(i).is_some_and(Conn::finished) {
                let c = self.conns.swap_remove(i);
                close_own(c.pair);
                release(c.handle);
                progress = true;
                continue;
            }
            i += 1;
        }
        progress
    }
}

/// Keeps `fd`, a child's copy of socket `handle`'s placeholder, as the
/// socket's kept placeholder (for the children's options), unless the
/// socket has one.
fn keep(handle: u32, fd: c_int) {
    let mut core = crate::sockets::table::lock();
    if let Some(s) = core.socks.get_mut(handle) {
        if s.kept.is_none() && FDS.install(fd, State::Proxy, 0).is_ok() {
            s.kept = Some(fd);
        }
    }
}

/// Sends `r` (and `fd`) to a child; a child that does not take it is gone
/// or broken, and finds out.
fn reply(ctl: c_int, r: Reply, fd: Option<c_int>) {
    let _ = wire::send_msg(ctl, &r.encode(), fd, libc::MSG_DONTWAIT);
}

/// A child's `shutdown(how)`: the reading side at once; the writing side
/// is checked here and done when the child's data has gone (see
/// [`Conn::pump`]).
fn shutdown(handle: u32, how: c_int) -> Result<(), c_int> {
    let rd = match how {
        libc::SHUT_RD | libc::SHUT_RDWR => true,
        libc::SHUT_WR => false,
        _ => return Err(libc::EINVAL),
    };
    let conn = {
        let core = crate::sockets::table::lock();
        match core.socks.get(handle).map(|s| &s.kind) {
            Some(Kind::Tcp(q, h)) => Some((*q, *h)),
            _ => None,
        }
    };
    let (q, h) = conn.ok_or(libc::ENOTCONN)?;
    use accel_stack::tcp::State as T;
    let mut s = stacks::lock(q).ok_or(libc::ENOTCONN)?;
    match s.iface.tcp.socket(h).map(|c| c.state()) {
        None | Some(T::Closed | T::TimeWait) => Err(libc::ENOTCONN),
        Some(_) if rd => s.iface.tcp.shutdown(h, true, false).map_err(|e| e.0),
        Some(_) => Ok(()),
    }
}

/// A child's `getsockopt`, `setsockopt`, `getsockname` or `getpeername`,
/// answered as this process answers its own (the kernel checks on the
/// kept placeholder, the stack acts).
fn sockcall(req: &Request) -> Reply {
    let handle = req.handle;
    let kept = {
        let core = crate::sockets::table::lock();
        core.socks.get(handle).and_then(|s| s.kept)
    };
    let Some(kept) = kept else {
        return Reply::of(Err(libc::EBADF));
    };
    let entry = Entry::of(State::Tcp, handle);
    let mut data = [0u8; DATA];
    let mut len = req.len.min(DATA as u32) as libc::socklen_t;
    let ptr = data.as_mut_ptr().cast::<libc::c_void>();
    use crate::interpose::skeleton::Dispatch;
    let r: Dispatch<c_int> = match req.op {
        // SAFETY: `data` has room for `len` bytes; `len` is writable.
        Op::GetOpt => unsafe { crate::sockets::io::getsockopt(entry, req.a, req.b, ptr, &mut len) },
        Op::SetOpt => {
            let v = req.data();
            // SAFETY: `v` is readable for its length.
            unsafe {
                crate::sockets::io::setsockopt(
                    entry,
                    kept,
                    req.a,
                    req.b,
                    v.as_ptr().cast(),
                    v.len() as libc::socklen_t,
                )
            }
        }
        // SAFETY: as for GetOpt (an address).
        _ => unsafe { crate::sockets::io::name(entry, req.a != 0, ptr.cast(), &mut len) },
    };
    let r = match r {
        Dispatch::Done(r) => r.map_err(|e| e.0),
        Dispatch::NotOurs => match req.op {
            // The placeholder holds the option, as for this process's own.
            Op::GetOpt => {
                let room = (len as usize).min(DATA);
                wire::getsockopt(kept, req.a, req.b, data.get_mut(..room).unwrap_or_default()).map(|n| {
                    len = n as libc::socklen_t;
                    0
                })
            }
            Op::SetOpt => wire::setsockopt(kept, req.a, req.b, req.data()).map(|()| 0),
            _ => Err(libc::EBADF),
        },
    };
    let shown = (len as usize).min(DATA);
    Reply::of(r.map(i64::from)).with_data(data.get(..shown).unwrap_or_default(), len)
}

/// The proxy thread takes no signal: the program's go to its own threads.
fn block_signals() {
    // SAFETY: a local set; pthread_sigmask changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sync in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
            libc::sigdelset(&mut set, sync);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_child_end_finishes_a_connection_once_its_data_is_gone() {
        // (eof, shut, hup, flushed, dead)
        assert!(!done(false, false, false, true, false), "still open");
        assert!(
            !done(true, false, false, false, false),
            "its last bytes are still to go"
        );
        assert!(done(true, false, false, true, false), "closed, flushed");
        // A shutdown announced: the end of stream is not a close ...
        assert!(!done(true, true, false, true, false));
        // ... until the end is closed too.
        assert!(done(true, true, true, true, false));
        // A dead connection with the child's end read to its end: done.
        assert!(done(true, true, false, false, true));
        assert!(!done(false, false, true, true, true), "its end not read yet");
    }

    #[test]
    fn a_connection_closes_when_its_last_holder_lets_go() {
        // A socket of this process held by one fd and two children.
        let h = {
            let mut core = crate::sockets::table::lock();
            let mut s = crate::sockets::sock::Sock::pending(false, false);
            s.children = 2;
            core.socks.insert(s)
        };
        let entry = Entry::of(State::Pending, h);
        let alive = || crate::sockets::table::lock().socks.get(h).is_some();
        // The parent closes its fd (PostgreSQL's postmaster, right after
        // the fork): the children still hold it.
        crate::sockets::close::dropped(-1, entry);
        assert!(alive());
        assert_eq!(
            crate::sockets::table::lock()
                .socks
                .get(h)
                .map(|s| (s.refs, s.children)),
            Some((0, 2))
        );
        release(h);
        assert!(alive(), "one child still holds it");
        release(h);
        assert!(!alive(), "the last holder let go: closed");
        // A socket whose children let go first closes at the parent's close.
        let h = {
            let mut core = crate::sockets::table::lock();
            let mut s = crate::sockets::sock::Sock::pending(false, false);
            s.children = 1;
            core.socks.insert(s)
        };
        release(h);
        assert!(
            crate::sockets::table::lock().socks.get(h).is_some(),
            "the parent's fd holds it"
        );
        crate::sockets::close::dropped(-1, Entry::of(State::Pending, h));
        assert!(crate::sockets::table::lock().socks.get(h).is_none());
    }

    #[test]
    fn the_child_end_of_a_fork_is_taken_once() {
        CHILD_END.store(42, Release);
        assert_eq!(take_child_end(), 42);
        assert_eq!(take_child_end(), -1);
    }
}
