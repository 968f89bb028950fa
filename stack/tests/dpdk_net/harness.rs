//! What the DPDK scenarios share: child processes re-executing the test
//! binary in one role each (their output in files, killed and their DPDK
//! runtime files removed when dropped), the namespaces and links the
//! parent creates, the namespace a child sees, EAL arguments, pinning, and
//! running the driver until the kernel-side programs exit.

use std::fs::File;
use std::net::Ipv4Addr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant as Clock};

use accel_stack::iface::{IfaceConfig, Interface};
use accel_stack::phy::dpdk::Eal;
use accel_stack::wire::EthernetAddress;
use accel_stack::Instant;

use super::apps::Pattern;
use super::driver::{allowed_cpus, pin_to, Driver};
use super::netns::{run, sha256_of_bytes, sha256_of_file, Netns, Proc, ScratchDir, Topo};

/// Set in a child to the role it plays.
pub const CHILD: &str = "ACCEL_DPDK_NET_CHILD";

/// An environment variable as a number, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A required environment variable of a child.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// The EAL arguments of a child: accel's defaults, quieter, with the
/// child's own file prefix.
pub fn eal_args(vdev: &str) -> Vec<String> {
    let mut args = Eal::default_args(&[vdev]);
    let prefix =
        std::env::var("ACCEL_DPDK_PREFIX").unwrap_or_else(|_| format!("accel-dn-{}", std::process::id()));
    args.extend(["--log-level=*:warning".into(), "--file-prefix".into(), prefix]);
    args
}

/// The interface configuration: `ip`/24 with `mac`, a per-process secret.
pub fn iface_config(ip: Ipv4Addr, mac: EthernetAddress) -> IfaceConfig {
    let mut cfg = IfaceConfig::new(mac, ip, 24);
    let o = ip.octets();
    let pid = std::process::id().to_le_bytes();
    cfg.secret = [
        o[2], o[3], pid[0], pid[1], pid[2], pid[3], 9, 8, 7, 6, 5, 4, 3, 2, 0xa5, 0x5a,
    ];
    cfg
}

/// Pins this thread to the CPU named by `ACCEL_PIN`, if set.
pub fn pin_from_env() {
    if let Ok(cpu) = std::env::var("ACCEL_PIN") {
        pin_to(cpu.parse().expect("ACCEL_PIN is a CPU number"));
    }
}

/// The first two CPUs this thread may use (the same one twice on one CPU).
pub fn two_cpus() -> (usize, usize) {
    let cpus = allowed_cpus();
    (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]))
}

/// A child process running one role, its output in files.
pub struct Kid {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    out: PathBuf,
    err: PathBuf,
    prefix: String,
}

impl Kid {
    /// Starts this binary as role `role` with `env`.
    pub fn spawn(role: &str, env: &[(&str, &str)]) -> Kid {
        let pid = std::process::id();
        let prefix = format!("accel-dn-{pid}-{role}");
        let out = std::env::temp_dir().join(format!("{prefix}.out"));
        let err = std::env::temp_dir().join(format!("{prefix}.err"));
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(CHILD, role)
            .env("ACCEL_DPDK_PREFIX", &prefix)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {role}: {e}"));
        Kid {
            name: role.to_owned(),
            child: Some(child),
            status: None,
            out,
            err,
            prefix,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn report(&self) -> String {
        format!(
            "{} ({:?})\n--- stdout\n{}\n--- stderr\n{}",
            self.name,
            self.status,
            self.stdout(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            if let Some(status) = child.try_wait().unwrap() {
                self.status = Some(status);
                self.child = None;
            }
        }
        self.child.is_none()
    }

    /// Waits until its output contains `needle`; panics if it exits first
    /// or `limit` passes.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) {
        let end = Clock::now() + limit;
        while !self.stdout().contains(needle) {
            assert!(!self.exited(), "{} exited early: {}", self.name, self.report());
            assert!(
                Clock::now() < end,
                "no {needle:?} from {} within {limit:?}: {}",
                self.name,
                self.report()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for it to exit (killing it after `limit`) and returns its
    /// output, panicking with it unless the role succeeded.
    pub fn finish(&mut self, limit: Duration) -> String {
        let end = Clock::now() + limit;
        while !self.exited() && Clock::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.status = child.wait().ok();
            panic!(
                "{} still running after {limit:?}, killed: {}",
                self.name,
                self.report()
            );
        }
        let stdout = self.stdout();
        assert!(
            self.status.is_some_and(|s| s.success()) && stdout.contains("1 passed"),
            "{} failed: {}",
            self.name,
            self.report()
        );
        print!("{stdout}");
        stdout
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in ["/var/run/dpdk", "/run/dpdk"] {
            let _ = std::fs::remove_dir_all(format!("{dir}/{}", self.prefix));
        }
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
    }
}

/// A namespace the parent creates (deleted when dropped).
pub fn namespace(label: &str) -> Netns {
    let name = format!("accel-dn-{label}-{}", std::process::id());
    let _ = Command::new("ip")
        .args(["netns", "del", &name])
        .stderr(Stdio::null())
        .status();
    run("ip", &["netns", "add", &name]);
    Netns { name }
}

/// A network interface of the root namespace, deleted when dropped.
pub struct Link(pub String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// The namespace programs run in, seen from a child: the parent owns the
/// namespace, so the child never deletes it (not even when it panics).
pub struct ChildTopo(Option<Topo>);

impl ChildTopo {
    pub fn new(x: u8, iface: &str) -> ChildTopo {
        let path = std::env::temp_dir().join(format!("accel-dn-{x}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        ChildTopo(Some(Topo {
            ns: Netns {
                name: env("ACCEL_TEST_NETNS"),
            },
            tap: iface.to_owned(),
            kernel_ip: Ipv4Addr::new(198, 18, x, 1),
            stack_ip: Ipv4Addr::new(198, 18, x, 2),
            dir: ScratchDir { path },
        }))
    }
}

impl std::ops::Deref for ChildTopo {
    type Target = Topo;

    fn deref(&self) -> &Topo {
        self.0.as_ref().expect("a topology")
    }
}

impl Drop for ChildTopo {
    fn drop(&mut self) {
        if let Some(Topo { ns, dir, .. }) = self.0.take() {
            std::mem::forget(ns);
            drop(dir);
        }
    }
}

/// Turns off the transmit checksum, TSO and GSO offloads of `dev` (the
/// legacy `SIOCETHTOOL` commands, as `ethtool -K DEV tx off tso off gso
/// off` would): DPDK 22.11's af_packet port ignores `TP_STATUS_CSUMNOTREADY`
/// and truncates GSO frames, so a veth peer must send finished frames.
pub const OFFLOADS_OFF: &str = r#"
import array, fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for cmd in (0x17, 0x1f, 0x24):  # ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO
    value = array.array('B', struct.pack('II', cmd, 0))
    ifr = struct.pack('16sP', sys.argv[1].encode(), value.buffer_info()[0])
    fcntl.ioctl(s.fileno(), 0x8946, ifr)  # SIOCETHTOOL
"#;

/// Runs the driver with `step` until every program in `procs` has exited.
pub fn run_until_exit(
    drv: &mut Driver,
    what: &str,
    limit: Duration,
    procs: &mut [&mut Proc],
    mut step: impl FnMut(&mut Interface, Instant) -> bool,
) {
    let mut checked = Clock::now();
    let result = drv.run(what, limit, |iface, now| {
        let worked = step(iface, now);
        if checked.elapsed() >= Duration::from_millis(2) {
            checked = Clock::now();
            if procs.iter_mut().all(|p| p.exited()) {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(worked)
    });
    if let Err(e) = result {
        let reports: Vec<String> = procs.iter().map(|p| p.report()).collect();
        panic!("{e}\n{}", reports.join("\n"));
    }
}

/// Checks that `path` holds exactly the first `len` bytes of the pattern.
pub fn check_body(path: &std::path::Path, len: usize) {
    let got = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    assert_eq!(got, len as u64, "size of {}", path.display());
    let want = sha256_of_bytes(&Pattern::new().bytes(len));
    assert_eq!(sha256_of_file(path), want, "sha256 of {}", path.display());
}
