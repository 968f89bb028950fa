//! Channels between coroutines, workers and threads.
//!
//! - [`rendezvous`]: `send` returns only once a receiver has taken the value
//!   (libwire's `wire_channel`); at most one value is in flight.
//! - [`bounded`]`(n)`: up to `n` values wait in the channel; `send` waits
//!   only while it is full.
//!
//! Both are multi-producer, multi-consumer and FIFO. A send interrupted
//! before its value was taken gives the value back ([`SendError::Wait`]);
//! one interrupted after it was taken succeeds, so a value is never lost
//! nor delivered twice. Dropping every receiver fails pending and future
//! sends with [`SendError::Closed`] (value returned); dropping every sender
//! lets receivers drain what is queued and then get [`RecvError::Closed`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use crate::wait::{wait_until, Wait, WaitError};

struct State<T> {
    queue: VecDeque<T>,
    /// 0 means rendezvous.
    cap: usize,
    sent: u64,
    taken: u64,
    recv_wakers: Vec<Waker>,
    send_wakers: Vec<Waker>,
    senders: usize,
    receivers: usize,
}

struct Chan<T> {
    state: Mutex<State<T>>,
}

fn wake(ws: Vec<Waker>) {
    for w in ws {
        w.wake();
    }
}

/// The sending half; clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half; clone it for more consumers.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

/// Why a send failed; the value comes back.
#[derive(PartialEq, Eq)]
pub enum SendError<T> {
    /// Every receiver is gone.
    Closed(T),
    /// `try_send` found no room.
    Full(T),
    /// The wait ended (timeout, signal, cancellation) before the value was taken.
    Wait(WaitError, T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(v) | SendError::Full(v) | SendError::Wait(_, v) => v,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Wait(e, _) => write!(f, "Wait({e:?}, ..)"),
        }
    }
}

/// Why a receive returned no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Every sender is gone and the channel is empty.
    Closed,
    /// `try_recv` found nothing.
    Empty,
    /// The wait ended (timeout, signal, cancellation).
    Wait(WaitError),
}

/// A channel whose `send` waits until the value is received.
pub fn rendezvous<T>() -> (Sender<T>, Receiver<T>) {
    with_cap(0)
}

/// A channel holding up to `cap` values (at least 1).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    with_cap(cap.max(1))
}

fn with_cap<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(cap.clamp(1, 1024)),
            cap,
            sent: 0,
            taken: 0,
            recv_wakers: Vec::new(),
            send_wakers: Vec::new(),
            senders: 1,
            receivers: 1,
        }),
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

impl<T> Sender<T> {
    /// Sends, waiting as long as it takes (interruptible).
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_with(value, Wait::forever())
    }

    /// Sends without waiting for room (a rendezvous channel accepts the value
    /// only if nothing is in flight, and then does not wait for the receiver).
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        let mut s = self.chan.state.lock();
        if s.receivers == 0 {
            return Err(SendError::Closed(value));
        }
        if s.queue.len() >= s.cap.max(1) {
            return Err(SendError::Full(value));
        }
        s.queue.push_back(value);
        s.sent += 1;
        let ws = std::mem::take(&mut s.recv_wakers);
        drop(s);
        wake(ws);
        Ok(())
    }

    /// Sends under the given wait policy.
    pub fn send_with(&self, value: T, w: Wait) -> Result<(), SendError<T>> {
        let mut item = Some(value);
        let mut ticket: Option<u64> = None;
        let r = wait_until(w, |cx| {
            let mut s = self.chan.state.lock();
            if let Some(t) = ticket {
                if s.taken >= t {
                    return Poll::Ready(Ok(()));
                }
                if s.receivers == 0 {
                    return Poll::Ready(Err(()));
                }
                s.send_wakers.push(cx.waker().clone());
                return Poll::Pending;
            }
            if s.receivers == 0 {
                return Poll::Ready(Err(()));
            }
            if s.queue.len() < s.cap.max(1) {
                s.queue.push_back(item.take().expect("sent once"));
                s.sent += 1;
                let ws = std::mem::take(&mut s.recv_wakers);
                let rendezvous = s.cap == 0;
                if rendezvous {
                    ticket = Some(s.sent);
                    s.send_wakers.push(cx.waker().clone());
                }
                drop(s);
                wake(ws);
                return if rendezvous {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(()))
                };
            }
            s.send_wakers.push(cx.waker().clone());
            Poll::Pending
        });
        let failed = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(())) => None,
            Err(e) => Some(e),
        };
        let value = match item {
            Some(v) => v,
            None => {
                // In flight on a rendezvous channel: take it back unless a
                // receiver got there first (then the send succeeded).
                let mut s = self.chan.state.lock();
                if s.taken >= ticket.expect("pushed") {
                    return Ok(());
                }
                s.sent -= 1;
                s.queue.pop_back().expect("our value is the one in flight")
            }
        };
        Err(match failed {
            Some(e) => SendError::Wait(e, value),
            None => SendError::Closed(value),
        })
    }
}

impl<T> Receiver<T> {
    /// Receives, waiting as long as it takes (interruptible).
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_with(Wait::forever())
    }

    /// Receives only if a value is waiting.
    pub fn try_recv(&self) -> Result<T, RecvError> {
        let mut s = self.chan.state.lock();
        match s.queue.pop_front() {
            Some(v) => {
                s.taken += 1;
                let ws = std::mem::take(&mut s.send_wakers);
                drop(s);
                wake(ws);
                Ok(v)
            }
            None if s.senders == 0 => Err(RecvError::Closed),
            None => Err(RecvError::Empty),
        }
    }

    /// Receives under the given wait policy.
    pub fn recv_with(&self, w: Wait) -> Result<T, RecvError> {
        let r = wait_until(w, |cx| match self.try_recv() {
            Err(RecvError::Empty) => {
                let mut s = self.chan.state.lock();
                if s.queue.is_empty() && s.senders > 0 {
                    s.recv_wakers.push(cx.waker().clone());
                    Poll::Pending
                } else {
                    drop(s);
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
            other => Poll::Ready(other),
        });
        r.unwrap_or_else(|e| Err(RecvError::Wait(e)))
    }

    /// Whether a value is waiting (for wait lists).
    pub fn is_ready(&self) -> bool {
        let s = self.chan.state.lock();
        !s.queue.is_empty() || s.senders == 0
    }

    /// Registers `waker` to be woken when a value arrives.
    pub(crate) fn register(&self, waker: &Waker) {
        self.chan.state.lock().recv_wakers.push(waker.clone());
    }

    /// Values waiting.
    pub fn len(&self) -> usize {
        self.chan.state.lock().queue.len()
    }

    /// Whether no value waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.state.lock().senders += 1;
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.state.lock().receivers += 1;
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.chan.state.lock();
        s.senders -= 1;
        let ws = if s.senders == 0 {
            std::mem::take(&mut s.recv_wakers)
        } else {
            Vec::new()
        };
        drop(s);
        wake(ws);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = self.chan.state.lock();
        s.receivers -= 1;
        let ws = if s.receivers == 0 {
            std::mem::take(&mut s.send_wakers)
        } else {
            Vec::new()
        };
        drop(s);
        wake(ws);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receiver")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, spawn, yield_now, Signal};
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    #[test]
    fn rendezvous_send_waits_for_the_receiver() {
        block_on(|| {
            let (tx, rx) = rendezvous::<u32>();
            let sent = Rc::new(Cell::new(false));
            let s2 = sent.clone();
            let h = spawn("tx", move || {
                tx.send(7).unwrap();
                s2.set(true);
            });
            for _ in 0..5 {
                yield_now();
            }
            assert!(!sent.get(), "send returned before anyone received");
            assert_eq!(rx.recv(), Ok(7));
            h.join().unwrap();
            assert!(sent.get());
        });
    }

    #[test]
    fn bounded_buffers_then_blocks() {
        block_on(|| {
            let (tx, rx) = bounded::<u32>(2);
            tx.send(1).unwrap();
            tx.send(2).unwrap();
            assert!(matches!(tx.try_send(3), Err(SendError::Full(3))));
            let r = tx.send_with(3, Wait::timeout(Some(Duration::from_millis(1))));
            assert_eq!(r, Err(SendError::Wait(WaitError::TimedOut, 3)));
            assert_eq!(rx.recv(), Ok(1));
            tx.send(3).unwrap();
            assert_eq!((rx.recv(), rx.recv()), (Ok(2), Ok(3)));
        });
    }

    #[test]
    fn closing_either_side() {
        block_on(|| {
            let (tx, rx) = bounded::<u32>(4);
            tx.send(1).unwrap();
            drop(tx);
            assert_eq!(rx.recv(), Ok(1));
            assert_eq!(rx.recv(), Err(RecvError::Closed));
            let (tx, rx) = rendezvous::<u32>();
            drop(rx);
            assert_eq!(tx.send(5), Err(SendError::Closed(5)));
        });
    }

    #[test]
    fn interrupted_rendezvous_send_returns_the_value() {
        block_on(|| {
            let (tx, rx) = rendezvous::<String>();
            let sig = Signal::new();
            let s2 = sig.clone();
            let h = spawn("tx", move || {
                let _sub = s2.subscribe().unwrap();
                tx.send("hello".to_owned())
            });
            yield_now();
            sig.fire();
            let r = h.join().unwrap();
            assert_eq!(
                r,
                Err(SendError::Wait(WaitError::Interrupted, "hello".to_owned()))
            );
            assert_eq!(rx.try_recv(), Err(RecvError::Closed));
        });
    }

    #[test]
    fn interrupted_recv() {
        block_on(|| {
            let (_tx, rx) = rendezvous::<u8>();
            let sig = Signal::new();
            let s2 = sig.clone();
            let h = spawn("rx", move || {
                let _sub = s2.subscribe().unwrap();
                rx.recv()
            });
            yield_now();
            sig.fire();
            assert_eq!(h.join().unwrap(), Err(RecvError::Wait(WaitError::Interrupted)));
        });
    }

    #[test]
    fn many_producers_one_consumer_lose_nothing() {
        block_on(|| {
            let (tx, rx) = bounded::<u64>(3);
            let hs: Vec<_> = (0..10u64)
                .map(|p| {
                    let tx = tx.clone();
                    spawn("p", move || (0..100).for_each(|i| tx.send(p * 1000 + i).unwrap()))
                })
                .collect();
            drop(tx);
            let mut got: Vec<u64> = std::iter::from_fn(|| rx.recv().ok()).collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            got.sort();
            let want: Vec<u64> = (0..10)
                .flat_map(|p| (0..100).map(move |i| p * 1000 + i))
                .collect();
            assert_eq!(got, want);
        });
    }

    #[test]
    fn threads_and_coroutines_share_a_channel() {
        let (tx, rx) = rendezvous::<u32>();
        let t = std::thread::spawn(move || (0..100).map(|_| rx.recv().unwrap()).sum::<u32>());
        block_on(move || (0..100).for_each(|i| tx.send(i).unwrap()));
        assert_eq!(t.join().unwrap(), 4950);
    }
}
