//! Connections that outlive their process's listener on a shared port
//! (`ACCEL_PROCS=multi`), as they outlive one worker's close of the one
//! listening socket all the workers share on the kernel.
//!
//! nginx's reload is the case: the master starts new workers and tells the
//! old ones to quit; an old worker closes its listeners at once, before the
//! new workers have attached. What its stack took and the program never
//! accepted (a request waiting in the accept queue, a handshake under
//! way) would be reset with our per-process listener. Instead, a process
//! attached to a shared port closes a listener *keeping* those connections
//! adrift ([`close_listener`]): they live on in its stack (acknowledging,
//! completing their handshakes) while it tells the other processes, every
//! [`OFFER_EVERY`], that it has connections adrift on that port
//! ([`offer_due`]). A process whose stack listens there answers
//! ([`on_offer`]); the first answer gets the connections' images
//! ([`on_want`]: each is forgotten here once sent), and that process makes
//! them again under its listener, queued for `accept` ([`on_conn`]). Their
//! next segments, which the device may still bring here, go round the
//! processes to it like any stray. A process exiting leaves those still
//! adrift with the port owner, which offers them likewise
//! ([`park_all`], [`crate::engine::parked`]); the stack resets those
//! nobody takes within `accel_stack::iface::ADRIFT_MAX`.
//!
//! Messages travel over the forwarding sockets (see [`crate::engine::procs`]).
//! A single process, or one that owns its port alone, closes a listener
//! as the kernel closes a listening socket: its connections are reset.

use crate::engine::stacks::{self, Q};
use crate::engine::{procs, worker::ShimStack};
use crate::logging::log;
use accel_stack::iface::TcpHandle;
use accel_stack::Instant;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::Duration;

/// How often a process with connections adrift offers them.
pub const OFFER_EVERY: Duration = Duration::from_millis(10);

/// Whether connections may be adrift here.
static PENDING: AtomicBool = AtomicBool::new(false);
/// When they were last offered (ns of the stack's clock; 0: never).
static OFFERED_AT: AtomicU64 = AtomicU64::new(0);

/// Closes listener `h` of stack `s`: keeping the connections nobody
/// accepted adrift if other processes share the port, else resetting them.
pub fn close_listener(s: &mut ShimStack, h: TcpHandle, t: Instant) {
    if !procs::attached() {
        let _ = s.iface.tcp.close(h, t);
        return;
    }
    if let Ok(n @ 1..) = s.iface.tcp.close_keeping(h, t) {
        log!(
            debug,
            "listener closed: {n} connections nobody accepted kept for another process"
        );
        OFFERED_AT.store(0, Relaxed);
        PENDING.store(true, Release);
    }
}

/// Whether connections may be adrift here (a poll should come back within
/// [`OFFER_EVERY`]).
pub fn pending() -> bool {
    PENDING.load(Relaxed)
}

/// Offers the ports with connections adrift to the other processes, if
/// [`OFFER_EVERY`] has passed since the last offer. Called with no stack
/// locked.
pub fn offer_due(t: Instant) {
    if !PENDING.load(Acquire) {
        return;
    }
    let last = OFFERED_AT.load(Relaxed);
    let every = OFFER_EVERY.as_nanos() as u64;
    if last != 0 && t.nanos().saturating_sub(last) < every {
        return;
    }
    if OFFERED_AT
        .compare_exchange(last, t.nanos().max(1), Relaxed, Relaxed)
        .is_err()
    {
        return;
    }
    let mut ports = Vec::new();
    for q in 0..stacks::count() as Q {
        if let Some(mut s) = stacks::lock(q) {
            ports.extend(s.iface.tcp.adrift_ports());
        }
    }
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        PENDING.store(false, Relaxed);
        return;
    }
    for port in ports {
        procs::offer(port);
    }
}

/// Another process (queue `from`) has connections adrift on `port`: if a
/// stack here listens there, ask for them.
pub fn on_offer(from: u16, port: u16) {
    let listening =
        (0..stacks::count() as Q).find(|&q| stacks::lock(q).is_some_and(|s| s.iface.tcp.listens_on(port)));
    if let Some(q) = listening {
        procs::want(port, from, usize::from(q));
    }
}

/// The process of queue `to` listens on `port`: send it the connections
/// adrift there.
pub fn on_want(to: u16, port: u16, t: Instant) {
    let mut moved = 0;
    for q in 0..stacks::count() as Q {
        if let Some(mut s) = stacks::lock(q) {
            moved += s
                .iface
                .tcp
                .export_adrift(port, t, |image| procs::send_conn(to, usize::from(q), image));
        }
    }
    if moved > 0 {
        procs::handed_away(port);
        log!(
            info,
            "{moved} connections nobody accepted on port {port} handed to the process of queue {to}"
        );
    }
}

/// At exit: leaves the connections still adrift with the port owner, which
/// offers them to the processes of the port until one that listens takes
/// them ([`crate::engine::parked`]): an nginx reload's new workers may be
/// waiting for this process's queue pairs to attach at all. Those the
/// owner cannot take stay, and are reset with the rest.
pub fn park_all(t: Instant) {
    if !procs::attached() || !PENDING.load(Acquire) {
        return;
    }
    let mut parked = 0;
    for q in 0..stacks::count() as Q {
        if let Some(mut s) = stacks::lock(q) {
            for port in s.iface.tcp.adrift_ports() {
                let n = s
                    .iface
                    .tcp
                    .export_adrift(port, t, |image| procs::park(port, image));
                if n > 0 {
                    // Segments for them that come here meanwhile go round
                    // the other processes and end in the last one: it
                    // must drop them too, not reset them. An offer notes
                    // the port there (a process that listens asks for
                    // the connections, and gets none from here).
                    procs::handed_away(port);
                    procs::offer(port);
                }
                parked += n;
            }
        }
    }
    if parked > 0 {
        log!(
            info,
            "exit: {parked} connections nobody accepted left with the port owner for the next process that listens"
        );
    }
}

/// Another process sent stack `q` a connection's image: it joins the
/// listener here. Refused (the listener has gone, or its backlog is full),
/// the connection is lost: the peer's next segment finds no process that
/// has it and is reset.
pub fn on_conn(q: Q, image: &[u8], t: Instant) {
    let Some(mut s) = stacks::lock(q) else { return };
    if let Err(e) = s.iface.tcp_import(image, t) {
        log!(
            warn,
            "a connection another process handed over was refused ({e}); its peer will be reset"
        );
    }
}
