//! Errors that carry the errno the Linux kernel would report, so the shim
//! can hand them to the program unchanged and native users can match on
//! them.

use core::fmt;

/// An errno value (positive, as in `errno.h`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $val:expr, $text:expr;)*) => {
        impl Errno {
            $(#[doc = $text] pub const $name: Errno = Errno($val);)*

            /// The symbolic name (`"EAGAIN"`), or `None` for others.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $val => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            fn text(self) -> &'static str {
                match self.0 {
                    $(v if v == $val => $text,)*
                    _ => "unknown error",
                }
            }
        }
    };
}

errnos! {
    EAGAIN = libc::EAGAIN, "resource temporarily unavailable (would block)";
    EINVAL = libc::EINVAL, "invalid argument";
    EBADF = libc::EBADF, "bad socket";
    EISCONN = libc::EISCONN, "already connected";
    ENOTCONN = libc::ENOTCONN, "not connected";
    EALREADY = libc::EALREADY, "operation already in progress";
    EINPROGRESS = libc::EINPROGRESS, "operation in progress";
    ECONNREFUSED = libc::ECONNREFUSED, "connection refused";
    ECONNRESET = libc::ECONNRESET, "connection reset by peer";
    ECONNABORTED = libc::ECONNABORTED, "connection aborted";
    ETIMEDOUT = libc::ETIMEDOUT, "connection timed out";
    EPIPE = libc::EPIPE, "broken pipe";
    EADDRINUSE = libc::EADDRINUSE, "address in use";
    EADDRNOTAVAIL = libc::EADDRNOTAVAIL, "address not available";
    EHOSTUNREACH = libc::EHOSTUNREACH, "no route to host";
    ENETUNREACH = libc::ENETUNREACH, "network unreachable";
    EMSGSIZE = libc::EMSGSIZE, "message too long";
    ENOBUFS = libc::ENOBUFS, "no buffer space available";
    EOPNOTSUPP = libc::EOPNOTSUPP, "operation not supported";
    EDESTADDRREQ = libc::EDESTADDRREQ, "destination address required";
    EAFNOSUPPORT = libc::EAFNOSUPPORT, "address family not supported";
    ENOPROTOOPT = libc::ENOPROTOOPT, "protocol not available";
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.text(), self)
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// Result of a socket operation.
pub type Result<T> = core::result::Result<T, Errno>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_io_errors() {
        assert_eq!(format!("{:?}", Errno::EAGAIN), "EAGAIN");
        assert_eq!(Errno::ECONNREFUSED.name(), Some("ECONNREFUSED"));
        assert_eq!(
            std::io::Error::from(Errno::EPIPE).raw_os_error(),
            Some(libc::EPIPE)
        );
        assert_eq!(format!("{:?}", Errno(4242)), "Errno(4242)");
    }
}
