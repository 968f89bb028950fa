//! The flight recorder's memory and its dump: each stack records its
//! connections' last events (`accel_stack::tcp::flight`) into slots of one
//! shared anonymous mapping made here before the reaper is cloned, so that
//! the reaper, which outlives a process that crashed, aborted or was
//! killed (SIGKILL included), can write the records out
//! (`<dir>/accel-flight-<pid>.txt`, text, one block per connection) before
//! it resets the connections.
//!
//! `ACCEL_FLIGHT_SLOTS` sets how many connections are recorded at once
//! (default 4096, about 4 MB of address space, touched as used; 0 turns
//! the recorder off); `ACCEL_FLIGHT_DIR` where the file goes (default
//! `/tmp`). A normal exit writes nothing. Only ports with a reaper (net_tap)
//! write a record; the recording itself runs on every port.
//!
//! The dump runs in the reaper: raw system calls and stack buffers only
//! (see `reaper`).

use crate::logging::log;
use accel_stack::tcp::flight::FlightSlot;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

/// The mapping's slots, for the dump.
static SLOTS: AtomicPtr<FlightSlot> = AtomicPtr::new(std::ptr::null_mut());
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The file's directory (its bytes, then NULs), set at start; the reaper
/// reads it without allocating or locking.
static DIR: std::sync::OnceLock<[u8; 200]> = std::sync::OnceLock::new();

/// Maps the recorder's memory and splits it among `stacks` stacks (none
/// when off or when the mapping fails, which is logged).
pub fn arenas(stacks: usize) -> Vec<&'static mut [FlightSlot]> {
    let cfg = crate::startup::config();
    let total = cfg.flight_slots as usize;
    if total == 0 || stacks == 0 || !SLOTS.load(Acquire).is_null() {
        return Vec::new();
    }
    let mut d = [0u8; 200];
    let dir = match cfg.flight_dir.as_bytes() {
        b"" => b"/tmp",
        dir => dir,
    };
    for (to, from) in d.iter_mut().zip(dir) {
        *to = *from;
    }
    let _ = DIR.set(d);
    let len = total * size_of::<FlightSlot>();
    // SAFETY: a fresh anonymous shared mapping; no pointer of ours is
    // involved. Shared, so a clone of the process (the reaper) sees it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        log!(warn, "flight recorder off: cannot map {len} bytes");
        return Vec::new();
    }
    let base = p.cast::<FlightSlot>();
    SLOTS.store(base, Release);
    COUNT.store(total, Release);
    // SAFETY: the mapping holds `total` zeroed slots (zero is a valid
    // FlightSlot: every field an integer), lives as long as the process,
    // and is handed out here once, in disjoint parts.
    let all: &'static mut [FlightSlot] = unsafe { std::slice::from_raw_parts_mut(base, total) };
    let per = total / stacks;
    let mut rest = all;
    let mut out = Vec::with_capacity(stacks);
    for _ in 0..stacks {
        let (mine, others) = rest.split_at_mut(per.min(rest.len()));
        out.push(mine);
        rest = others;
    }
    log!(
        debug,
        "flight recorder: {total} connections' last events, written out if the process dies"
    );
    out
}

/// In the reaper, once process `pid` died: writes every record to
/// `<dir>/accel-flight-<pid>.txt`. Raw system calls and stack buffers only.
pub fn dump(pid: i32) {
    let base = SLOTS.load(Acquire);
    let count = COUNT.load(Acquire);
    if base.is_null() || count == 0 {
        return;
    }
    // SAFETY: the mapping made in `arenas`, of `count` slots; its writer
    // (the process) is dead, so nothing changes under this read.
    let slots = unsafe { std::slice::from_raw_parts(base, count) };
    if slots.iter().all(|s| s.used == 0) {
        return;
    }
    let mut path = [0u8; 256];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        // The last byte stays NUL.
        for (to, from) in path.iter_mut().take(255).skip(at).zip(b) {
            *to = *from;
            at += 1;
        }
    };
    let dir = DIR.get().map_or(&[][..], |d| {
        let n = d.iter().position(|&b| b == 0).unwrap_or(d.len());
        d.get(..n).unwrap_or_default()
    });
    put(if dir.is_empty() { b"/tmp" } else { dir });
    put(b"/accel-flight-");
    let mut digits = [0u8; 20];
    put(decimal(pid.max(0) as u64, &mut digits));
    put(b".txt");
    // SAFETY: `path` is NUL-terminated (zeroed past `at`).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600,
        )
    } as i32;
    if fd < 0 {
        return;
    }
    let mut write = |b: &[u8]| {
        let mut rest = b;
        while !rest.is_empty() {
            // SAFETY: a live buffer of its length.
            let w = unsafe { libc::syscall(libc::SYS_write, fd, rest.as_ptr(), rest.len()) };
            if w <= 0 {
                return;
            }
            rest = rest.get(w as usize..).unwrap_or_default();
        }
    };
    write(b"accel flight recorder: process ");
    write(decimal(pid.max(0) as u64, &mut digits));
    write(b" died without closing its connections; each connection's last events, oldest first\n");
    write(b"(times: seconds.microseconds of the stack's clock; flags [SFRPA])\n");
    for s in slots.iter().filter(|s| s.used == 1) {
        s.write_text(&mut write);
    }
    for s in slots.iter().filter(|s| s.used == 2) {
        s.write_text(&mut write);
    }
    // SAFETY: closing the file opened above.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// `v` in decimal, in `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        start -= 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_writes_digits_without_allocating() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(4_194_304, &mut b), b"4194304");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
    }
}
