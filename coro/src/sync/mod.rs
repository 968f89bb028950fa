//! Coroutine synchronisation: a [`WaitQueue`] (wake-one, wake-all), channels
//! ([`channel::rendezvous`], where the sender waits until its value is
//! taken, like libwire's `wire_channel`, and [`channel::bounded`]), and a
//! [`Lock`] that costs one compare-and-swap uncontended and hands over in
//! FIFO order when contended.
//!
//! All of them work between coroutines of one worker, across workers, and
//! with plain threads, because they wait through [`crate::wait_until`]. Their
//! internal `parking_lot` mutexes are held only for a few instructions and
//! never across a suspension.

pub mod channel;
mod lock;
mod waitqueue;

pub use channel::{bounded, rendezvous, Receiver, RecvError, SendError, Sender};
pub use lock::{Lock, LockGuard};
pub use waitqueue::WaitQueue;
