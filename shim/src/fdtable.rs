//! The fd table: what the shim knows about each file descriptor number.
//!
//! Every accelerated socket owns a real kernel fd as its placeholder, so fd
//! numbers are the kernel's and the table only follows them: one 64-bit
//! atomic [`Entry`] per fd number, in a fixed array indexed by the fd. The
//! question every intercepted call asks first, "is this fd ours?", is one
//! load and one test; an fd the shim never touched reads as [`State::Kernel`]
//! (the array is zero-initialised `.bss`, and pages never written are never
//! backed by memory).
//!
//! An entry packs a [`State`], a generation number and a handle (the index
//! of the socket object in its worker, filled in by the acceleration step).
//! The generation increases every time the entry changes hands (installed,
//! cleared because the fd was closed, replaced by `dup2`), so a holder of
//! an `(fd, generation)` pair (an epoll interest set) can tell that the fd
//! was closed and its number reused. It wraps after 2^28 changes of one fd.
//!
//! Concurrency: every change is a compare-and-swap on the one word, so the
//! lookup needs no lock and sees either the old entry or the new one.
//! Changes made by the bookkeeping hooks follow the kernel's fd numbers
//! (close, dup, dup2, dup3, `F_DUPFD`, `close_range`, `closefrom`); a
//! program racing `close` against use of the same fd in another thread gets
//! the same kind of answer as from the kernel.
//!
//! Limits: fds from [`MAX_FDS`] up (beyond Linux's default `nr_open`) are
//! always [`State::Kernel`]: they can never be accelerated.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One past the highest fd number the global table tracks (Linux's default
/// `fs.nr_open`); the table takes 8 MiB of address space, backed only where
/// written.
pub const MAX_FDS: usize = 1 << 20;

/// The process's fd table.
pub static FDS: FdTable<MAX_FDS> = FdTable::new();

/// What an fd number is to the shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// A kernel fd the shim leaves alone (every fd it never touched).
    Kernel = 0,
    /// A kernel socket whose fate `bind`/`listen`/`connect` decide: it may
    /// move to the stack (an address on the accelerated interface, or the
    /// wildcard) or stay in the kernel.
    Pending = 1,
    /// A TCP socket on the stack; the kernel fd is its placeholder.
    Tcp = 2,
    /// A UDP socket on the stack; the kernel fd is its placeholder.
    Udp = 3,
    /// A kernel epoll fd with accelerated members in a shim-side interest
    /// set.
    Epoll = 4,
    /// An accelerated socket inherited across `fork`: `close` works, every
    /// other call fails.
    Inert = 5,
    /// An fd the shim opened for itself (the log file).
    Internal = 6,
    /// An fd of the fork proxy (`proxy`, `forked`): a control channel, a
    /// connection's socketpair end, a kept placeholder. A child of `fork`
    /// closes the parent's at once.
    Proxy = 7,
    /// A TCP connection of the parent's stack inherited across `fork`, not
    /// yet attached (`forked`): the handle is the parent's socket handle.
    /// Its first use attaches it; `close` releases it.
    Inherited = 8,
    /// An inherited TCP connection attached through the parent's proxy:
    /// the fd is a kernel socketpair end (data calls go to the kernel),
    /// the handle the parent's socket (names, options and `shutdown` ask
    /// the parent).
    Proxied = 9,
}

impl State {
    fn from_bits(bits: u64) -> State {
        match bits & STATE_MASK {
            1 => State::Pending,
            2 => State::Tcp,
            3 => State::Udp,
            4 => State::Epoll,
            5 => State::Inert,
            6 => State::Internal,
            7 => State::Proxy,
            8 => State::Inherited,
            9 => State::Proxied,
            _ => State::Kernel,
        }
    }

    /// Whether a child process inherits this state as [`State::Inert`]: the
    /// socket lives in the parent's stack.
    pub fn inert_after_fork(self) -> bool {
        matches!(self, State::Tcp | State::Udp)
    }
}

const STATE_BITS: u32 = 4;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const GEN_BITS: u32 = 28;
const GEN_MASK: u64 = ((1 << GEN_BITS) - 1) << STATE_BITS;
const HANDLE_SHIFT: u32 = STATE_BITS + GEN_BITS;

/// One fd's entry: state, generation and handle in one word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry(u64);

impl Entry {
    /// A kernel fd the shim never touched.
    pub const KERNEL: Entry = Entry(0);

    /// The entry's state.
    #[inline]
    pub fn state(self) -> State {
        State::from_bits(self.0)
    }

    /// Whether the fd is a plain kernel fd: the common case, tested first.
    #[inline]
    pub fn is_kernel(self) -> bool {
        self.0 & STATE_MASK == 0
    }

    /// The generation: changes whenever the fd number changes hands.
    pub fn generation(self) -> u32 {
        ((self.0 & GEN_MASK) >> STATE_BITS) as u32
    }

    /// The handle of the shim's object behind the fd.
    pub fn handle(self) -> u32 {
        (self.0 >> HANDLE_SHIFT) as u32
    }

    fn with(self, state: State, handle: u32, generation: u32) -> Entry {
        let gen = (u64::from(generation) << STATE_BITS) & GEN_MASK;
        Entry((u64::from(handle) << HANDLE_SHIFT) | gen | state as u64)
    }

    /// An entry of `state` with `handle` at generation 0, for code that
    /// names a socket by its handle without an fd (the fork proxy).
    pub fn of(state: State, handle: u32) -> Entry {
        Entry::KERNEL.with(state, handle, 0)
    }

    /// This entry's successor in a new hand: the next generation.
    fn next(self, state: State, handle: u32) -> Entry {
        self.with(state, handle, self.generation().wrapping_add(1))
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}#{} h{}", self.state(), self.generation(), self.handle())
    }
}

/// Why an entry could not be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallError {
    /// The fd is negative or at least the table's size.
    OutOfRange,
    /// The fd already has a non-kernel entry (a missed close?).
    Busy(Entry),
}

/// A table of `N` fd entries. The process has one, [`FDS`]; tests make
/// small ones.
pub struct FdTable<const N: usize> {
    entries: [AtomicU64; N],
    /// One past the highest fd ever given a non-kernel entry: the bound of
    /// the scans (`fork`, `close_range`).
    high_water: AtomicUsize,
}

impl<const N: usize> FdTable<N> {
    /// An empty table: every fd is [`State::Kernel`].
    pub const fn new() -> Self {
        FdTable {
            entries: [const { AtomicU64::new(0) }; N],
            high_water: AtomicUsize::new(0),
        }
    }

    fn slot(&self, fd: i32) -> Option<&AtomicU64> {
        // A negative fd becomes a huge index and falls outside.
        self.entries.get(fd as u32 as usize)
    }

    /// The entry of `fd`: one load. Out-of-range fds are kernel fds.
    #[inline]
    pub fn get(&self, fd: i32) -> Entry {
        match self.slot(fd) {
            Some(slot) => Entry(slot.load(Ordering::Acquire)),
            None => Entry::KERNEL,
        }
    }

    /// Makes `fd` (now a kernel fd) `state` with `handle`, at the next
    /// generation; returns the new entry.
    pub fn install(&self, fd: i32, state: State, handle: u32) -> Result<Entry, InstallError> {
        let slot = self.slot(fd).ok_or(InstallError::OutOfRange)?;
        let mut old = Entry(slot.load(Ordering::Acquire));
        loop {
            if !old.is_kernel() {
                return Err(InstallError::Busy(old));
            }
            let new = old.next(state, handle);
            match slot.compare_exchange_weak(old.0, new.0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.high_water.fetch_max(fd as usize + 1, Ordering::AcqRel);
                    return Ok(new);
                }
                Err(now) => old = Entry(now),
            }
        }
    }

    /// Moves `fd` from exactly `expected` to `state`, keeping its generation
    /// and handle (the same socket, in another state: `Pending` → `Tcp`,
    /// `Tcp` → `Inert`). Returns the entry found if it was not `expected`.
    pub fn transition(&self, fd: i32, expected: Entry, state: State) -> Result<Entry, Entry> {
        let slot = self.slot(fd).ok_or(Entry::KERNEL)?;
        let new = expected.with(state, expected.handle(), expected.generation());
        slot.compare_exchange(expected.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| new)
            .map_err(Entry)
    }

    /// The kernel closed `fd` (or is about to): its entry becomes a kernel
    /// entry at the next generation. Returns the entry it had if that was
    /// not a kernel entry, for the caller to release what it held. A kernel
    /// entry is left as it is (no write).
    pub fn clear(&self, fd: i32) -> Option<Entry> {
        let slot = self.slot(fd)?;
        let mut old = Entry(slot.load(Ordering::Acquire));
        loop {
            if old.is_kernel() {
                return None;
            }
            let new = old.next(State::Kernel, 0);
            match slot.compare_exchange_weak(old.0, new.0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(old),
                Err(now) => old = Entry(now),
            }
        }
    }

    /// The kernel made `new_fd` a duplicate of an fd whose entry was `src`
    /// (`dup`, `dup2`, `dup3`, `F_DUPFD`): whatever `new_fd` held is
    /// cleared, and it gets `src`'s state and handle at its own next
    /// generation. Returns what `new_fd` held, as [`clear`](Self::clear).
    pub fn duplicate(&self, src: Entry, new_fd: i32) -> Option<Entry> {
        let replaced = self.clear(new_fd);
        if !src.is_kernel() {
            // The slot was just cleared; a concurrent install on the same
            // number would be a program racing dup2 against socket().
            let _ = self.install(new_fd, src.state(), src.handle());
        }
        replaced
    }

    /// The kernel closed every fd from `first` to `last` (`close_range`,
    /// `closefrom`): clears their entries, calling `released` for each
    /// non-kernel one.
    pub fn clear_range(&self, first: u32, last: u32, mut released: impl FnMut(i32, Entry)) {
        let end = (last as usize)
            .saturating_add(1)
            .min(self.high_water.load(Ordering::Acquire));
        for fd in (first as usize)..end {
            if let Some(old) = self.clear(fd as i32) {
                released(fd as i32, old);
            }
        }
    }

    /// Clears `fd`'s entry if it is the shim's own ([`State::Internal`]):
    /// the shim closes it (see `sys::close`). An entry left behind would
    /// have the program's `close` of the number, reused by its next
    /// `open`, refused (`interpose::hooks`).
    pub fn clear_internal(&self, fd: i32) {
        let Some(slot) = self.slot(fd) else { return };
        let old = Entry(slot.load(Ordering::Acquire));
        if old.state() == State::Internal {
            let new = old.next(State::Kernel, 0);
            let _ = slot.compare_exchange(old.0, new.0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The fds in `first..=last` that are the shim's own
    /// ([`State::Internal`]), lowest first, each passed to `each`.
    pub fn internal_in(&self, first: u32, last: u32, mut each: impl FnMut(u32)) {
        let end = (last as usize)
            .saturating_add(1)
            .min(self.high_water.load(Ordering::Acquire))
            .min(N);
        for fd in (first as usize)..end {
            if self.get(fd as i32).state() == State::Internal {
                each(fd as u32);
            }
        }
    }

    /// In a child process after `fork`: every accelerated socket becomes
    /// [`State::Inert`] (it lives in the parent's stack), or
    /// [`State::Inherited`] where `connection(handle)` says it is a TCP
    /// connection the child may attach (with `connection` `None`, none is:
    /// this child cannot reach its parent's proxy). Returns how many became
    /// inert and how many inherited. No allocation, no lock.
    pub fn mark_after_fork(&self, connection: Option<&dyn Fn(u32) -> bool>) -> (usize, usize) {
        let (mut inert, mut inherited) = (0, 0);
        for fd in 0..self.high_water.load(Ordering::Acquire).min(N) {
            let e = self.get(fd as i32);
            let to = match e.state() {
                State::Tcp if connection.is_some_and(|c| c(e.handle())) => State::Inherited,
                State::Inherited if connection.is_none() => State::Inert,
                s if s.inert_after_fork() => State::Inert,
                _ => continue,
            };
            if self.transition(fd as i32, e, to).is_ok() {
                if to == State::Inert {
                    inert += 1;
                } else {
                    inherited += 1;
                }
            }
        }
        (inert, inherited)
    }

    /// The fds from 0 up to the high water mark whose entries are in state
    /// `state`, each with its entry, to `f`.
    pub fn each_in(&self, state: State, mut f: impl FnMut(i32, Entry)) {
        for fd in 0..self.high_water.load(Ordering::Acquire).min(N) {
            let e = self.get(fd as i32);
            if e.state() == state {
                f(fd as i32, e);
            }
        }
    }

    /// Moves `fd` from exactly `expected` to `state` with `handle`,
    /// keeping its generation (the same fd, known otherwise).
    pub fn rehandle(&self, fd: i32, expected: Entry, state: State, handle: u32) -> Result<Entry, Entry> {
        let slot = self.slot(fd).ok_or(Entry::KERNEL)?;
        let new = expected.with(state, handle, expected.generation());
        slot.compare_exchange(expected.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| new)
            .map_err(Entry)
    }
}

impl<const N: usize> Default for FdTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_fds_are_kernel_fds() {
        let t = FdTable::<16>::new();
        for fd in [-1, 0, 3, 15, 16, i32::MAX, i32::MIN] {
            assert!(t.get(fd).is_kernel());
            assert_eq!(t.get(fd), Entry::KERNEL);
        }
    }

    #[test]
    fn entry_packs_state_generation_and_handle() {
        let e = Entry::KERNEL.with(State::Udp, u32::MAX, (1 << GEN_BITS) - 1);
        assert_eq!(
            (e.state(), e.generation(), e.handle()),
            (State::Udp, (1 << GEN_BITS) - 1, u32::MAX)
        );
        let wrapped = e.next(State::Tcp, 7);
        assert_eq!(
            (wrapped.state(), wrapped.generation(), wrapped.handle()),
            (State::Tcp, 0, 7)
        );
        assert!(!e.is_kernel() && wrapped.next(State::Kernel, 0).is_kernel());
    }

    #[test]
    fn generation_changes_when_the_number_is_reused() {
        let t = FdTable::<16>::new();
        let first = t.install(5, State::Tcp, 42).unwrap();
        assert_eq!((first.state(), first.handle()), (State::Tcp, 42));
        assert_eq!(t.get(5), first);
        // Closed: a kernel entry again, but a later generation.
        assert_eq!(t.clear(5), Some(first));
        let closed = t.get(5);
        assert!(closed.is_kernel());
        assert!(closed.generation() > first.generation());
        // Reused by another socket: a watcher holding (5, first) sees it is stale.
        let second = t.install(5, State::Udp, 43).unwrap();
        assert_ne!(second.generation(), first.generation());
        assert!(second.generation() > closed.generation());
    }

    #[test]
    fn clearing_a_kernel_fd_writes_nothing() {
        let t = FdTable::<16>::new();
        assert_eq!(t.clear(3), None);
        assert_eq!(t.get(3), Entry::KERNEL);
        assert_eq!(t.clear(99), None, "out of range");
    }

    #[test]
    fn install_refuses_a_busy_or_out_of_range_fd() {
        let t = FdTable::<16>::new();
        let e = t.install(4, State::Tcp, 1).unwrap();
        assert_eq!(t.install(4, State::Udp, 2), Err(InstallError::Busy(e)));
        assert_eq!(t.install(16, State::Udp, 2), Err(InstallError::OutOfRange));
        assert_eq!(t.install(-1, State::Udp, 2), Err(InstallError::OutOfRange));
    }

    #[test]
    fn transition_keeps_generation_and_handle() {
        let t = FdTable::<16>::new();
        let pending = t.install(6, State::Pending, 9).unwrap();
        let tcp = t.transition(6, pending, State::Tcp).unwrap();
        assert_eq!(
            (tcp.generation(), tcp.handle(), tcp.state()),
            (pending.generation(), 9, State::Tcp)
        );
        // A stale expectation fails and reports what is there.
        assert_eq!(t.transition(6, pending, State::Kernel), Err(tcp));
    }

    #[test]
    fn dup2_onto_a_known_fd_clears_it() {
        let t = FdTable::<16>::new();
        let held = t.install(7, State::Tcp, 1).unwrap();
        // dup2(kernel fd 3, 7): 7 is now a kernel fd.
        assert_eq!(t.duplicate(t.get(3), 7), Some(held));
        assert!(t.get(7).is_kernel());
        assert!(t.get(7).generation() > held.generation());
    }

    #[test]
    fn dup_of_an_accelerated_fd_shares_its_socket() {
        let t = FdTable::<16>::new();
        let src = t.install(3, State::Udp, 77).unwrap();
        assert_eq!(t.duplicate(src, 8), None);
        let copy = t.get(8);
        assert_eq!((copy.state(), copy.handle()), (State::Udp, 77));
        // The source is untouched.
        assert_eq!(t.get(3), src);
    }

    #[test]
    fn close_range_clears_what_it_covers() {
        let t = FdTable::<16>::new();
        for fd in [2, 4, 9, 12] {
            t.install(fd, State::Tcp, fd as u32).unwrap();
        }
        let mut released = Vec::new();
        t.clear_range(4, 9, |fd, e| released.push((fd, e.handle())));
        assert_eq!(released, [(4, 4), (9, 9)]);
        assert!(!t.get(2).is_kernel() && !t.get(12).is_kernel());
        // closefrom(0): everything, with `last` far beyond the table.
        t.clear_range(0, u32::MAX, |_, _| {});
        assert!((0..16).all(|fd| t.get(fd).is_kernel()));
    }

    #[test]
    fn fork_makes_accelerated_sockets_inert_and_nothing_else() {
        let t = FdTable::<16>::new();
        let tcp = t.install(3, State::Tcp, 1).unwrap();
        t.install(4, State::Udp, 2).unwrap();
        t.install(5, State::Internal, 0).unwrap();
        t.install(6, State::Epoll, 3).unwrap();
        assert_eq!(t.mark_after_fork(None), (2, 0));
        let inert = t.get(3);
        assert_eq!(
            (inert.state(), inert.generation(), inert.handle()),
            (State::Inert, tcp.generation(), 1)
        );
        assert_eq!(t.get(4).state(), State::Inert);
        assert_eq!(t.get(5).state(), State::Internal);
        assert_eq!(t.get(6).state(), State::Epoll);
        assert_eq!(t.mark_after_fork(None), (0, 0), "idempotent");
        // close still works on an inert fd.
        assert!(t.clear(3).is_some() && t.get(3).is_kernel());
    }

    #[test]
    fn fork_makes_connections_inherited_where_the_child_can_attach() {
        let t = FdTable::<16>::new();
        let conn = t.install(3, State::Tcp, 1).unwrap();
        t.install(4, State::Tcp, 2).unwrap(); // a listener
        t.install(5, State::Udp, 3).unwrap();
        let is_conn = |h: u32| h == 1;
        assert_eq!(t.mark_after_fork(Some(&is_conn)), (2, 1));
        let e = t.get(3);
        assert_eq!(
            (e.state(), e.generation(), e.handle()),
            (State::Inherited, conn.generation(), 1)
        );
        assert_eq!(t.get(4).state(), State::Inert);
        assert_eq!(t.get(5).state(), State::Inert);
        let mut seen = Vec::new();
        t.each_in(State::Inherited, |fd, e| seen.push((fd, e.handle())));
        assert_eq!(seen, [(3, 1)]);
        // Attached: the same fd, now proxied.
        let p = t.rehandle(3, e, State::Proxied, 1).unwrap();
        assert_eq!((p.state(), p.generation()), (State::Proxied, e.generation()));
        // A grandchild cannot reach the proxy: what is still inherited is inert.
        t.install(6, State::Inherited, 9).unwrap();
        assert_eq!(t.mark_after_fork(None), (1, 0));
        assert_eq!(t.get(6).state(), State::Inert);
        assert_eq!(t.get(3).state(), State::Proxied, "a kernel fd now");
    }

    #[test]
    fn concurrent_install_and_clear_never_lose_a_generation() {
        let t = FdTable::<4>::new();
        let rounds = 10_000;
        std::thread::scope(|s| {
            for h in 0..4u32 {
                let t = &t;
                s.spawn(move || {
                    for _ in 0..rounds {
                        if t.install(1, State::Tcp, h).is_ok() {
                            assert!(t.clear(1).is_some_and(|e| e.handle() == h));
                        }
                    }
                });
            }
        });
        let e = t.get(1);
        assert!(e.is_kernel());
        // Every install and every clear bumped the generation exactly once.
        assert_eq!(e.generation() % 2, 0);
        assert!(e.generation() >= 2);
    }

    #[test]
    fn the_global_table_is_zero_cost_until_used() {
        assert!(FDS.get(0).is_kernel());
        assert!(FDS.get(MAX_FDS as i32).is_kernel());
        assert_eq!(std::mem::size_of::<FdTable<MAX_FDS>>(), MAX_FDS * 8 + 8);
    }
}
