//! C socket addresses in and out: `struct sockaddr_in` read from and
//! written to the program's memory, with the kernel's length rules.
//!
//! Reading ([`read_in()`]) accepts exactly what Linux's `inet_bind` and
//! `inet_stream_connect` accept for an AF_INET socket: at least
//! `sizeof(struct sockaddr_in)` bytes, family AF_INET. Writing ([`write()`])
//! copies at most `*len` bytes and sets `*len` to the full size, so a short
//! buffer gets a truncated address, as from the kernel.

use crate::interpose::skeleton::Errno;
use core::net::{Ipv4Addr, SocketAddrV4};
use libc::{c_int, sockaddr, sockaddr_in, socklen_t};

/// What a program's address turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    /// An IPv4 address and port.
    V4(SocketAddrV4),
    /// `AF_UNSPEC` (a `connect` that dissolves an association).
    Unspec,
    /// Any other family: the kernel decides what that means.
    Other,
}

/// Reads the address a program passed (`bind`, `connect`, `sendto`).
///
/// # Safety
///
/// `addr` is valid for reading `len` bytes, or null.
pub unsafe fn read_in(addr: *const sockaddr, len: socklen_t) -> Result<Addr, Errno> {
    if addr.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    if (len as usize) < size_of::<libc::sa_family_t>() {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: at least the family field is readable (checked above).
    let family = unsafe { std::ptr::addr_of!((*addr).sa_family).read_unaligned() };
    match c_int::from(family) {
        libc::AF_INET if (len as usize) < size_of::<sockaddr_in>() => Err(Errno(libc::EINVAL)),
        libc::AF_INET => {
            // SAFETY: `len` covers a whole sockaddr_in (checked above).
            let sin = unsafe { addr.cast::<sockaddr_in>().read_unaligned() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(Addr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_UNSPEC => Ok(Addr::Unspec),
        _ => Ok(Addr::Other),
    }
}

/// A `sockaddr_in` for `a`.
pub fn to_c(a: SocketAddrV4) -> sockaddr_in {
    sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Writes `a` where the program asked (`accept`, `getsockname`,
/// `recvfrom`): nothing if `addr` is null; else at most `*len` bytes, and
/// `*len` becomes the address's full size. `EINVAL` for a negative length,
/// `EFAULT` for a null `len` with a non-null `addr`.
///
/// # Safety
///
/// `addr` is null or valid for writing `*len` bytes; `len` is null or valid.
pub unsafe fn write(a: SocketAddrV4, addr: *mut sockaddr, len: *mut socklen_t) -> Result<(), Errno> {
    if addr.is_null() {
        return Ok(());
    }
    if len.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: `len` is valid (the caller's contract; checked non-null).
    let room = unsafe { len.read_unaligned() };
    if (room as c_int) < 0 {
        return Err(Errno(libc::EINVAL));
    }
    let sin = to_c(a);
    let n = (room as usize).min(size_of::<sockaddr_in>());
    // SAFETY: `sin` is a local of the full size; `addr` holds `room >= n`
    // writable bytes; the two cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping((&raw const sin).cast::<u8>(), addr.cast::<u8>(), n);
        len.write_unaligned(size_of::<sockaddr_in>() as socklen_t);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let a = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 8080);
        let sin = to_c(a);
        // SAFETY: a live sockaddr_in and its size.
        let back = unsafe { read_in((&raw const sin).cast(), size_of::<sockaddr_in>() as socklen_t) };
        assert_eq!(back, Ok(Addr::V4(a)));
        // SAFETY: as above, but the length is short.
        let short = unsafe { read_in((&raw const sin).cast(), 8) };
        assert_eq!(short, Err(Errno(libc::EINVAL)));
        // SAFETY: null is rejected before any read.
        assert_eq!(unsafe { read_in(std::ptr::null(), 16) }, Err(Errno(libc::EFAULT)));

        let mut out = [0xffu8; 16];
        let mut len: socklen_t = 4;
        // SAFETY: `out` has room for `len` bytes.
        unsafe { write(a, out.as_mut_ptr().cast(), &mut len) }.unwrap();
        assert_eq!(len, 16, "the full size is reported");
        assert_eq!(&out[..4], &[2, 0, 0x1f, 0x90], "family and port, truncated");
        assert_eq!(out[4], 0xff, "nothing past the caller's length");
    }

    #[test]
    fn other_families_are_left_to_the_kernel() {
        // SAFETY: all-zero is a valid sockaddr_un.
        let mut un: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        un.sun_family = libc::AF_UNIX as libc::sa_family_t;
        // SAFETY: a live sockaddr_un and its size.
        let r = unsafe {
            read_in(
                (&raw const un).cast(),
                size_of::<libc::sockaddr_un>() as socklen_t,
            )
        };
        assert_eq!(r, Ok(Addr::Other));
    }
}
