//! The files behind the bells' pages (`/dev/shm/accel-bell-ID`): opening
//! the one of a link, and removing those of links that are gone.
//!
//! A page must outlive either end of its link (an end that restarts finds
//! the other's marks), so nobody removes it as it exits, and a killed
//! process could not anyway. Instead every process that maps a page holds
//! a shared `flock` on it for as long as it does (the kernel drops the
//! lock when the process dies), and each [`open`] sweeps the directory
//! ([`sweep`]): a page that nobody holds, that nobody has opened for
//! [`STALE_AFTER`], and whose ringers are all gone (the caller's test: a
//! process from before these locks holds none, but still rings), is
//! removed under an exclusive lock. An opener that gets its shared lock
//! just after a sweep removed the file finds that the path no longer names
//! its file, and opens again: the two ends of a link always meet on one
//! page. The calls are raw system calls, as in the bell module.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long nobody must have opened a page before a sweep removes it.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// The pages' names begin with this.
pub const PREFIX: &str = "accel-bell-";

pub(super) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `openat(dir, name, flags, 0600)`: the descriptor, or the errno.
fn open_at(dir: i32, name: &CStr, flags: i32) -> Result<i32, i32> {
    // SAFETY: a NUL-terminated name; flags and mode are integers.
    let fd = unsafe { libc::syscall(libc::SYS_openat, dir, name.as_ptr(), flags, 0o600) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd as i32)
    }
}

pub(super) fn close(fd: i32) {
    // SAFETY: closing a descriptor of ours.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// `fstatat(dir, name, flags)`, or `fstat(dir)` with an empty name and
/// `AT_EMPTY_PATH`.
fn stat_at(dir: i32, name: &CStr, flags: i32) -> Option<libc::stat> {
    // SAFETY: all zeroes is a valid stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated name and a writable stat.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            dir,
            name.as_ptr(),
            &mut st as *mut libc::stat,
            flags,
        )
    };
    (rc == 0).then_some(st)
}

fn fstat(fd: i32) -> Option<libc::stat> {
    stat_at(fd, c"", libc::AT_EMPTY_PATH)
}

/// Whether `name` in `dir` is still the file open as `st`.
fn still_named(dir: i32, name: &CStr, st: &libc::stat) -> bool {
    stat_at(dir, name, libc::AT_SYMLINK_NOFOLLOW)
        .is_some_and(|now| now.st_dev == st.st_dev && now.st_ino == st.st_ino)
}

fn flock(fd: i32, how: i32) -> bool {
    // SAFETY: flock takes no pointers.
    unsafe { libc::syscall(libc::SYS_flock, fd, how) == 0 }
}

/// Opens (creating it) the page file `name` in `dir` for reading and
/// writing, with a shared lock held until the descriptor is closed, and
/// marks it opened now (its modification time).
pub fn open(dir: &str, name: &str) -> Result<i32, i32> {
    let path = CString::new(format!("{dir}/{name}")).map_err(|_| libc::EINVAL)?;
    // A sweep can remove the file between our open and our lock; it only
    // removes files nobody opened for a minute, so the next try makes a
    // new file that no sweep takes.
    for _ in 0..8 {
        let fd = open_at(
            libc::AT_FDCWD,
            &path,
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )?;
        // A sweep holds its exclusive lock for a few system calls: wait.
        while !flock(fd, libc::LOCK_SH) {
            let e = errno();
            if e != libc::EINTR {
                close(fd);
                return Err(e);
            }
        }
        if fstat(fd).is_some_and(|st| still_named(libc::AT_FDCWD, &path, &st)) {
            // SAFETY: a null path and null times: the open file's times
            // become now.
            unsafe {
                libc::syscall(
                    libc::SYS_utimensat,
                    fd,
                    std::ptr::null::<libc::c_char>(),
                    std::ptr::null::<libc::timespec>(),
                    0,
                )
            };
            return Ok(fd);
        }
        close(fd);
    }
    Err(libc::EAGAIN)
}

/// Removes the pages in `dir` other than `keep` that nobody holds, that
/// nobody opened for [`STALE_AFTER`] and for which `gone(fd)` (the page's
/// descriptor, readable) says that no process rings any more. Returns how
/// many it removed. Errors skip the page they concern.
pub fn sweep(dir: &str, keep: &str, gone: impl Fn(i32) -> bool) -> usize {
    let Ok(dir_c) = CString::new(dir) else { return 0 };
    let Ok(d) = open_at(
        libc::AT_FDCWD,
        &dir_c,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    ) else {
        return 0;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut removed = 0;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, d, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        for name in Dirents::new(buf.get(..n as usize).unwrap_or_default()) {
            if name.to_bytes().starts_with(PREFIX.as_bytes())
                && name.to_bytes() != keep.as_bytes()
                && remove_if_stale(d, name, now, &gone)
            {
                removed += 1;
            }
        }
    }
    close(d);
    removed
}

/// Removes page `name` of directory `d` if it is stale (see [`sweep`]).
fn remove_if_stale(d: i32, name: &CStr, now: Duration, gone: &impl Fn(i32) -> bool) -> bool {
    let Ok(fd) = open_at(
        d,
        name,
        libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
    ) else {
        return false;
    };
    // The exclusive lock fails while anybody holds the page; held, it
    // keeps an opener from taking the page until the file is gone.
    let stale = flock(fd, libc::LOCK_EX | libc::LOCK_NB)
        && fstat(fd).is_some_and(|st| {
            let mtime = Duration::from_secs(u64::try_from(st.st_mtime).unwrap_or(u64::MAX));
            st.st_mode & libc::S_IFMT == libc::S_IFREG
                && now.saturating_sub(mtime) >= STALE_AFTER
                && gone(fd)
                && still_named(d, name, &st)
        });
    // SAFETY: a NUL-terminated name relative to our directory descriptor.
    let removed = stale && unsafe { libc::syscall(libc::SYS_unlinkat, d, name.as_ptr(), 0) } == 0;
    close(fd);
    removed
}

/// The names in a buffer that `getdents64` filled.
struct Dirents<'a> {
    buf: &'a [u8],
}

impl<'a> Dirents<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Dirents { buf }
    }
}

impl<'a> Iterator for Dirents<'a> {
    type Item = &'a CStr;

    fn next(&mut self) -> Option<&'a CStr> {
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen;
        // u8 d_type; char d_name[]; }
        const NAME: usize = 19;
        let reclen = usize::from(u16::from_ne_bytes([*self.buf.get(16)?, *self.buf.get(17)?]));
        if reclen <= NAME || reclen > self.buf.len() {
            return None;
        }
        let (rec, rest) = self.buf.split_at(reclen);
        self.buf = rest;
        CStr::from_bytes_until_nul(rec.get(NAME..)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A directory of the test's own, so that its sweeps touch no real
    /// page.
    struct Dir(String);

    impl Dir {
        fn new(what: &str) -> Dir {
            let d = format!("/tmp/accel-bell-page-test-{}-{what}", std::process::id());
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir(&d).unwrap();
            Dir(d)
        }

        fn path(&self, name: &str) -> String {
            format!("{}/{name}", self.0)
        }

        fn exists(&self, name: &str) -> bool {
            std::path::Path::new(&self.path(name)).exists()
        }

        /// Makes page `name` as a process that died long ago left it:
        /// nobody holds it, and it was last opened two minutes ago.
        fn leave(&self, name: &str) {
            std::fs::write(self.path(name), [0u8; 64]).unwrap();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let old = libc::timespec {
                tv_sec: now.as_secs() as libc::time_t - 120,
                tv_nsec: 0,
            };
            let c = CString::new(self.path(name)).unwrap();
            // SAFETY: a NUL-terminated path and two live timespecs.
            let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [old, old].as_ptr(), 0) };
            assert_eq!(rc, 0);
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn only_pages_nobody_holds_opened_long_ago_and_gone_are_swept() {
        let dir = Dir::new("sweep");
        let [stale, held, rings, fresh, keep] = [
            "accel-bell-stale",
            "accel-bell-held",
            "accel-bell-rings",
            "accel-bell-fresh",
            "accel-bell-keep",
        ];
        for n in [stale, rings, keep, "other-file"] {
            dir.leave(n);
        }
        // An old page opened again is fresh.
        dir.leave(fresh);
        close(open(&dir.0, fresh).unwrap());
        // A page held, however old it looks.
        let held_fd = open(&dir.0, held).unwrap();
        dir.leave(held);
        let rings_ino = std::fs::metadata(dir.path(rings)).unwrap().ino();
        let gone = |fd: i32| fstat(fd).is_some_and(|st| st.st_ino != rings_ino);
        assert_eq!(sweep(&dir.0, keep, gone), 1);
        assert!(!dir.exists(stale), "nobody holds it, old, gone: removed");
        assert!(dir.exists(held), "a process holds it");
        assert!(dir.exists(rings), "a ringer lives");
        assert!(dir.exists(fresh), "opened a moment ago");
        assert!(dir.exists(keep), "the caller's own page");
        assert!(dir.exists("other-file"), "not a page");
        close(held_fd);
        assert_eq!(sweep(&dir.0, keep, gone), 1, "let go of, the held page goes too");
        assert!(!dir.exists(held));
    }

    #[test]
    fn an_open_after_a_sweep_gets_a_new_page() {
        let dir = Dir::new("reopen");
        let page = "accel-bell-reopen";
        dir.leave(page);
        assert_eq!(sweep(&dir.0, "accel-bell-x", |_| true), 1);
        let fd = open(&dir.0, page).unwrap();
        let st = fstat(fd).unwrap();
        assert!(
            dir.exists(page) && st.st_size == 0,
            "a new, empty page (the old one had 64 bytes)"
        );
        // Held, it survives sweeps however old it looks.
        dir.leave(page);
        assert_eq!(sweep(&dir.0, "accel-bell-x", |_| true), 0);
        close(fd);
    }

    #[test]
    fn dirents_are_read_from_a_getdents_buffer() {
        let mut buf = Vec::new();
        for n in ["a", "accel-bell-x"] {
            let reclen = (19 + n.len() + 1).next_multiple_of(8);
            let mut rec = vec![0u8; reclen];
            rec[16..18].copy_from_slice(&(reclen as u16).to_ne_bytes());
            rec[19..19 + n.len()].copy_from_slice(n.as_bytes());
            buf.extend(rec);
        }
        let names: Vec<_> = Dirents::new(&buf)
            .map(|c| c.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a", "accel-bell-x"]);
        assert_eq!(Dirents::new(&buf[..10]).count(), 0, "a cut record ends the list");
    }
}
