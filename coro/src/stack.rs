//! Coroutine stacks: mmap'd, guarded, pooled LIFO, or supplied by the caller.
//!
//! A fresh stack is `mmap`ed `PROT_NONE` and then opened up above its lowest
//! page, which stays a guard page: running off the end faults instead of
//! silently overwriting a neighbour (see [`crate::overflow`], which names the
//! coroutine that did it). Creating a guarded stack costs two system calls
//! (~13 µs here), so finished stacks go back to a per-thread pool and are
//! handed out again last-in first-out, while their pages are still hot
//! (~5 ns). Following libwire, a caller may instead supply its own memory
//! ([`UserStack`]); it must then provide the guard page itself.
//!
//! Guarantees: every [`CoroStack`] has at least [`MIN_STACK_SIZE`] usable
//! bytes, a page-multiple size, 16-byte aligned bounds, and a guard page at
//! its low end; the pool never holds more than [`POOL_MAX`] stacks per thread.

use std::cell::RefCell;
use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use corosensei::stack::{Stack, StackPointer};

/// The smallest usable size we accept (corosensei's minimum is 4 KiB; 16 KiB
/// leaves room for a formatted panic message).
pub const MIN_STACK_SIZE: usize = 16 * 1024;
/// Default usable size of a coroutine stack.
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;
/// At most this many idle stacks are kept per thread.
pub const POOL_MAX: usize = 4096;

/// The system page size (read once; it is on the spawn path).
pub fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let n = if n > 0 { n as usize } else { 4096 };
            PAGE.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// A guarded stack of our own, unmapped when dropped.
#[derive(Debug)]
pub struct MmapStack {
    /// Lowest address of the mapping (the guard page).
    low: NonNull<u8>,
    /// Total length of the mapping, guard page included.
    len: usize,
    /// Valgrind's id of the stack (see [`crate::valgrind`]).
    valgrind: usize,
}

impl MmapStack {
    /// Maps a stack with at least `size` usable bytes (rounded up to pages)
    /// plus one guard page.
    pub fn new(size: usize) -> io::Result<MmapStack> {
        let page = page_size();
        let usable = round_up(size.max(MIN_STACK_SIZE), page);
        let len = usable + page;
        // SAFETY: an anonymous private mapping with no address hint cannot
        // alias any existing Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = MmapStack {
            // SAFETY: mmap succeeded, so p is not null.
            low: unsafe { NonNull::new_unchecked(p.cast()) },
            len,
            valgrind: 0,
        };
        // SAFETY: the range lies inside the mapping we just created.
        let rc = unsafe {
            libc::mprotect(
                p.cast::<u8>().add(page).cast(),
                usable,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error()); // `stack` unmaps on drop
        }
        let mut stack = stack;
        let low = p as usize + page;
        stack.valgrind = crate::valgrind::stack_register(low, low + usable);
        Ok(stack)
    }

    /// Usable bytes (the guard page excluded).
    pub fn usable_size(&self) -> usize {
        self.len - page_size()
    }
}

impl Drop for MmapStack {
    fn drop(&mut self) {
        crate::valgrind::stack_deregister(self.valgrind);
        // SAFETY: we own this mapping; no coroutine runs on it any more
        // (corosensei only gives a stack back once its coroutine finished).
        unsafe { libc::munmap(self.low.as_ptr().cast(), self.len) };
    }
}

/// Memory supplied by the caller (libwire's rule: the user may provide all
/// memory). The caller guarantees that the lowest page of the region is a
/// guard page (`PROT_NONE`) or otherwise accepts the risk of an unguarded
/// stack.
#[derive(Debug)]
pub struct UserStack {
    low: usize,
    high: usize,
}

impl UserStack {
    /// Wraps `len` bytes at `base`.
    ///
    /// # Safety
    /// The region must be valid, writable, unused by anything else for as
    /// long as the returned value lives, and its lowest page must be a
    /// `PROT_NONE` guard page.
    pub unsafe fn new(base: *mut u8, len: usize) -> io::Result<UserStack> {
        let low = (base as usize).next_multiple_of(16);
        let high = (base as usize + len) & !15;
        if base.is_null() || high <= low || high - low < MIN_STACK_SIZE + page_size() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(UserStack { low, high })
    }
}

enum Owner {
    /// One of ours; goes back to the pool.
    Mmap(MmapStack),
    /// The caller's memory; handed back to nobody (the caller owns it).
    User,
}

/// The stack a coroutine runs on: one of ours (pooled) or the caller's.
/// Its bounds are plain fields, since corosensei reads them on every resume.
pub struct CoroStack {
    low: StackPointer,
    high: StackPointer,
    owner: Owner,
}

impl std::fmt::Debug for CoroStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoroStack")
            .field("low", &format_args!("{:#x}", self.low))
            .field("high", &format_args!("{:#x}", self.high))
            .field("user", &matches!(self.owner, Owner::User))
            .finish()
    }
}

impl From<MmapStack> for CoroStack {
    fn from(s: MmapStack) -> CoroStack {
        let low = s.low.as_ptr() as usize;
        CoroStack {
            low: NonZeroUsize::new(low).expect("mmap never returns 0"),
            high: NonZeroUsize::new(low + s.len).expect("mmap never returns 0"),
            owner: Owner::Mmap(s),
        }
    }
}

impl From<UserStack> for CoroStack {
    fn from(u: UserStack) -> CoroStack {
        CoroStack {
            low: NonZeroUsize::new(u.low).expect("checked non-null"),
            high: NonZeroUsize::new(u.high).expect("checked non-null"),
            owner: Owner::User,
        }
    }
}

impl CoroStack {
    /// `(low, high)` addresses of the guard page, for the overflow handler.
    pub fn guard_range(&self) -> (usize, usize) {
        (self.low.get(), self.low.get() + page_size())
    }

    /// Usable bytes above the guard page.
    pub fn usable_size(&self) -> usize {
        self.high.get() - self.low.get() - page_size()
    }

    /// Whether the memory is the caller's.
    pub fn is_user(&self) -> bool {
        matches!(self.owner, Owner::User)
    }
}

// SAFETY: both kinds have a guard page at the low end and at least
// MIN_STACK_SIZE usable bytes above it (checked at construction); base and
// limit are 16-byte aligned (page-aligned for ours, masked for the user's).
unsafe impl Stack for CoroStack {
    #[inline]
    fn base(&self) -> StackPointer {
        self.high
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        self.low
    }
}

thread_local! {
    static POOL: RefCell<Vec<MmapStack>> = const { RefCell::new(Vec::new()) };
}

/// The usable size a request for `size` bytes gets (page multiple, at least
/// [`MIN_STACK_SIZE`]).
pub fn rounded_size(size: usize) -> usize {
    round_up(size.max(MIN_STACK_SIZE), page_size())
}

/// Maps a fresh guarded stack of `size` usable bytes (no pool).
pub(crate) fn map(size: usize) -> io::Result<CoroStack> {
    MmapStack::new(size).map(CoroStack::from)
}

/// Takes a stack of exactly `size` usable bytes (rounded to pages) from this
/// thread's pool, or maps a new one.
pub fn take(size: usize) -> io::Result<CoroStack> {
    let want = round_up(size.max(MIN_STACK_SIZE), page_size());
    let hit = POOL.with(|p| {
        let mut p = p.borrow_mut();
        match p.last() {
            Some(s) if s.usable_size() == want => p.pop(),
            _ => p
                .iter()
                .rposition(|s| s.usable_size() == want)
                .map(|i| p.swap_remove(i)),
        }
    });
    match hit {
        Some(s) => Ok(s.into()),
        None => MmapStack::new(want).map(CoroStack::from),
    }
}

/// Returns a stack to this thread's pool (user stacks are simply dropped:
/// their memory belongs to the caller).
pub fn give_back(stack: CoroStack) {
    if let Owner::Mmap(s) = stack.owner {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX {
                p.push(s);
            }
        });
    }
}

/// How many idle stacks this thread's pool holds.
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

/// Pre-maps `n` stacks of `size` bytes into this thread's pool, so the first
/// spawns do not pay for `mmap`.
pub fn prefill(n: usize, size: usize) -> io::Result<()> {
    let want = round_up(size.max(MIN_STACK_SIZE), page_size());
    for _ in 0..n {
        let s = MmapStack::new(want)?;
        let full = POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() >= POOL_MAX {
                return true;
            }
            p.push(s);
            false
        });
        if full {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_rounded_and_guarded() {
        let s = take(10_000).unwrap();
        assert_eq!(s.usable_size(), MIN_STACK_SIZE);
        assert!(!s.is_user());
        let (lo, hi) = s.guard_range();
        assert_eq!(hi - lo, page_size());
        assert_eq!(s.limit().get(), lo);
        assert_eq!(s.base().get() - s.limit().get(), MIN_STACK_SIZE + page_size());
        assert_eq!(s.base().get() % 16, 0);
    }

    #[test]
    fn pool_is_lifo() {
        let a = take(DEFAULT_STACK_SIZE).unwrap();
        let b = take(DEFAULT_STACK_SIZE).unwrap();
        let (a_lo, b_lo) = (a.limit(), b.limit());
        let before = pooled();
        give_back(a);
        give_back(b);
        assert_eq!(pooled(), before + 2);
        assert_eq!(take(DEFAULT_STACK_SIZE).unwrap().limit(), b_lo);
        assert_eq!(take(DEFAULT_STACK_SIZE).unwrap().limit(), a_lo);
    }

    #[test]
    fn pool_matches_size() {
        give_back(take(128 * 1024).unwrap());
        let s = take(DEFAULT_STACK_SIZE).unwrap();
        assert_eq!(s.usable_size(), DEFAULT_STACK_SIZE);
    }

    #[test]
    fn user_stack_rejects_tiny_regions() {
        let mut buf = vec![0u8; 1024];
        // SAFETY: the region is valid; it is rejected before any use.
        let r = unsafe { UserStack::new(buf.as_mut_ptr(), buf.len()) };
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        // SAFETY: a null base is rejected before any use.
        let r = unsafe { UserStack::new(std::ptr::null_mut(), 1 << 20) };
        assert!(r.is_err());
    }
}
