//! Moving the kernel side of a net_tap port into a network namespace
//! (`ACCEL_TAP_NETNS`), so that test and demo traffic never leaves
//! namespaces the user made for it.
//!
//! DPDK's tap driver creates the kernel interface (`iface=NAME` in the
//! vdev arguments) in the process's own namespace when the port is made.
//! Right after that, [`move_tap`] runs `ip` three times: move the
//! interface into the namespace, give it its address, set it up. `ip` is
//! started with the real `posix_spawnp` (not the shim's) and a minimal
//! environment, and waited for by pid, so the program's own children and
//! `SIGCHLD` handling are not disturbed beyond one short-lived child.

use crate::config::Cidr;
use crate::interpose::real;
use std::ffi::CString;

/// The kernel interface named by `iface=` in a net_tap vdev string
/// (`net_tap0,iface=acc-t1`), if any.
pub fn tap_iface(vdev: &str) -> Option<&str> {
    if !vdev.starts_with("net_tap") {
        return None;
    }
    vdev.split(',').find_map(|kv| kv.strip_prefix("iface="))
}

/// Moves `iface` into namespace `ns` and gives it `peer`; the error says
/// which step failed and how.
pub fn move_tap(iface: &str, ns: &str, peer: Cidr) -> Result<(), String> {
    let addr = peer.to_string();
    if let Err(e) = run(&["ip", "link", "set", "dev", iface, "netns", ns]) {
        let there = format!("/sys/class/net/{iface}");
        if run(&["ip", "netns", "exec", ns, "test", "-e", &there]).is_ok() {
            return Err(format!(
                "{e}: namespace {ns} has an interface {iface} already: another process holds this port \
                 (processes that share a port all need ACCEL_PROCS=multi or auto, as scripts/accel --tap \
                 sets, and huge pages)"
            ));
        }
        return Err(e);
    }
    run(&["ip", "-n", ns, "addr", "add", &addr, "dev", iface])?;
    run(&["ip", "-n", ns, "link", "set", "dev", iface, "up"])?;
    Ok(())
}

/// Runs one command to completion; `Err` unless it exits with 0.
fn run(argv: &[&str]) -> Result<(), String> {
    let what = argv.join(" ");
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(*a).map_err(|_| format!("`{what}`: an argument holds a NUL byte")))
        .collect::<Result<_, _>>()?;
    let mut ptrs: Vec<*mut libc::c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    ptrs.push(std::ptr::null_mut());
    let env = [
        c"PATH=/usr/sbin:/usr/bin:/sbin:/bin".as_ptr().cast_mut(),
        std::ptr::null_mut(),
    ];
    let spawn = real::posix_spawnp
        .get()
        .ok_or_else(|| format!("`{what}`: the C library has no posix_spawnp"))?;
    let mut pid: libc::pid_t = 0;
    let file = ptrs.first().copied().unwrap_or(std::ptr::null_mut());
    // SAFETY: `file`, `ptrs` and `env` are NUL-terminated strings in
    // NULL-terminated arrays that outlive the call; null actions and
    // attributes are allowed.
    let rc = unsafe {
        spawn(
            &mut pid,
            file,
            std::ptr::null(),
            std::ptr::null(),
            ptrs.as_ptr(),
            env.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "`{what}` could not start: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; `status` is writable.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // The program's SIGCHLD handler reaped it first: assume success;
            // a failed step shows in the next one or at the first packet.
            Some(libc::ECHILD) => return Ok(()),
            _ => return Err(format!("`{what}`: waitpid: {e}")),
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("`{what}` failed (wait status {status:#x})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tap_interface_is_read_from_the_vdev() {
        assert_eq!(tap_iface("net_tap0,iface=acc-t1"), Some("acc-t1"));
        assert_eq!(tap_iface("net_tap3,mac=fixed,iface=x"), Some("x"));
        assert_eq!(tap_iface("net_tap0"), None);
        assert_eq!(tap_iface("net_memif0,role=server"), None);
    }

    #[test]
    fn a_failing_command_is_reported() {
        let e = run(&["false"]).unwrap_err();
        assert!(e.contains("`false` failed"), "{e}");
        assert!(run(&["true"]).is_ok());
        assert!(run(&["/nonexistent/accel-no-such-program"]).is_err());
    }
}
