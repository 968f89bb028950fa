//! The kernel's side of an interop test: a network namespace of its own
//! holding the kernel end of a TAP interface, the programs the test runs in
//! it, and a scratch directory, each removed by a guard when dropped (also
//! when the test panics).
//!
//! [`Topo::new`] creates namespace `accel-io-<label>-<pid>`, opens TAP
//! `aio<X>-<pid>` (the stack's end stays with the test), moves the
//! interface into the namespace and gives it 198.18.X.1/24 there, the
//! stack being 198.18.X.2: traffic never leaves the namespace, and only
//! addresses of 198.18.0.0/15 are used. [`Topo::spawn`] runs a program in
//! the namespace under `timeout`, its output going to files in the scratch
//! directory; a [`Proc`] kills its whole process group when dropped.
//! [`preflight`] makes a test fail, with a message saying what to do, when
//! it is not root or a tool it needs is missing.

use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant as Clock};

use accel_stack::phy::tap::TapDevice;

/// Fails the test, saying why, unless it runs as root with `/dev/net/tun`
/// and every program in `tools` on the `PATH`.
pub fn preflight(tools: &[&str]) {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid: Option<u32> = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|s| s.parse().ok());
    assert_eq!(
        euid,
        Some(0),
        "the interop tests must run as root: they create network namespaces and TAP interfaces \
         (e.g. `sudo -E cargo test -p accel-stack --test interop`)"
    );
    assert!(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: this kernel or container offers no TAP devices"
    );
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_in_path(t).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "required tools missing from PATH: {missing:?}; run scripts/install-deps (as root) to install them"
    );
}

/// The executable `tool` on the `PATH`, if there is one.
pub fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Runs `program args...` on the host (not in a namespace), panicking with
/// its output if it cannot start or fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed ({}): {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The SHA-256 of `data` in hex, from coreutils' `sha256sum`.
pub fn sha256_of_bytes(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("feed sha256sum");
    let output = child.wait_with_output().expect("sha256sum output");
    assert!(output.status.success(), "sha256sum failed: {output:?}");
    first_word(&output.stdout)
}

/// The SHA-256 of the file at `path` in hex.
pub fn sha256_of_file(path: &Path) -> String {
    let out = run("sha256sum", &[path.to_str().expect("utf-8 path")]);
    first_word(&out.stdout)
}

fn first_word(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let word = text.split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(word.len(), 64, "not a sha256 digest: {text:?}");
    word
}

/// A scratch directory, removed when dropped unless the test is failing
/// or `ACCEL_INTEROP_KEEP` is set (then it is kept, and its path printed,
/// for the post-mortem).
pub struct ScratchDir {
    /// Where it is.
    pub path: PathBuf,
}

impl ScratchDir {
    fn create(label: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(format!("accel-interop-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        ScratchDir { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("ACCEL_INTEROP_KEEP").is_some() {
            eprintln!("interop: kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A network namespace, deleted when dropped.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    fn create(name: String) -> Netns {
        // A namespace left over by a killed run of the same pid would clash.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &name]);
        Netns { name }
    }

    /// Runs `args` in the namespace, panicking if it fails.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `args` in the namespace and returns its output, success or not.
    pub fn try_run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// One test's network: the namespace, its addresses, the TAP's name and a
/// scratch directory.
pub struct Topo {
    /// The namespace holding the kernel's end.
    pub ns: Netns,
    /// The TAP interface's name.
    pub tap: String,
    /// The kernel's address, 198.18.X.1.
    pub kernel_ip: Ipv4Addr,
    /// The stack's address, 198.18.X.2.
    pub stack_ip: Ipv4Addr,
    /// Files of this test (program output, captures).
    pub dir: ScratchDir,
}

impl Topo {
    /// Sets up network 198.18.`x`.0/24 for test `label` and returns it with
    /// the stack's end of the TAP. Drop the device before the `Topo`.
    pub fn new(x: u8, label: &str) -> (Topo, TapDevice) {
        let pid = std::process::id();
        let dir = ScratchDir::create(label);
        let ns = Netns::create(format!("accel-io-{label}-{pid}"));
        let tap = format!("aio{x}-{}", pid % 100_000);
        let device = TapDevice::open(&tap).unwrap_or_else(|e| panic!("open TAP {tap}: {e}"));
        assert_eq!(device.name(), tap);
        run("ip", &["link", "set", "dev", &tap, "netns", &ns.name]);
        let kernel_ip = Ipv4Addr::new(198, 18, x, 1);
        let stack_ip = Ipv4Addr::new(198, 18, x, 2);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns.run(&["ip", "addr", "add", &format!("{kernel_ip}/24"), "dev", &tap]);
        ns.run(&["ip", "link", "set", &tap, "up"]);
        let topo = Topo {
            ns,
            tap,
            kernel_ip,
            stack_ip,
            dir,
        };
        (topo, device)
    }

    /// A path in the scratch directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }

    /// Starts `args` in the namespace under `timeout <limit>`; its standard
    /// output and error go to `<name>.out` and `<name>.err`.
    pub fn spawn(&self, name: &str, limit: Duration, args: &[&str]) -> Proc {
        self.spawn_on(None, name, limit, args)
    }

    /// Like [`spawn`](Self::spawn), on CPU `cpu` only if given.
    pub fn spawn_on(&self, cpu: Option<usize>, name: &str, limit: Duration, args: &[&str]) -> Proc {
        let out = self.file(&format!("{name}.out"));
        let err = self.file(&format!("{name}.err"));
        let secs = limit.as_secs().max(1).to_string();
        let cpu = cpu.map(|c| c.to_string());
        let pin: Vec<&str> = match &cpu {
            Some(c) => vec!["taskset", "-c", c],
            None => Vec::new(),
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name, "timeout", "-k", "5", &secs])
            .args(pin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create stdout file"))
            .stderr(File::create(&err).expect("create stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            status: None,
            out,
            err,
            started: Clock::now(),
            elapsed: Duration::ZERO,
        }
    }
}

/// A program running in a test namespace.
pub struct Proc {
    /// What the test calls it.
    pub name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    out: PathBuf,
    err: PathBuf,
    started: Clock,
    /// How long it ran, once it exited.
    pub elapsed: Duration,
}

impl Proc {
    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let Some(child) = &mut self.child else {
            return true;
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                self.elapsed = self.started.elapsed();
                self.child = None;
                true
            }
            Ok(None) => false,
            Err(e) => panic!("wait for {}: {e}", self.name),
        }
    }

    /// Its exit status (it must have exited).
    pub fn status(&self) -> ExitStatus {
        self.status
            .unwrap_or_else(|| panic!("{} has not exited", self.name))
    }

    /// What it printed on standard output so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What it printed on standard error so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// A description for failure messages.
    pub fn report(&self) -> String {
        format!(
            "{} ({}; ran {:?})\n--- stdout\n{}--- stderr\n{}",
            self.name,
            self.status.map_or("still running".to_owned(), |s| s.to_string()),
            self.elapsed,
            self.stdout(),
            self.stderr()
        )
    }

    /// Panics, with its output, unless it exited successfully.
    pub fn expect_success(&self) {
        assert!(self.status().success(), "{} failed: {}", self.name, self.report());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` became `timeout`, which leads its own process
            // group with the program in it: end the group, then the leader
            // (in case it had not yet made the group).
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) takes plain integers and touches no memory
                // of ours; -pid names only the group our own child leads.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The calling thread pinned to one CPU; its former affinity comes back
/// when this is dropped (the test harness reuses its threads).
pub struct Pinned {
    tid: String,
    mask: String,
    /// The CPU.
    pub cpu: usize,
}

impl Pinned {
    /// Pins the calling thread (with `taskset`) to the first CPU it may run
    /// on and returns the second, for the program at the other end; `None`
    /// when it may run on fewer than two (of the first 64).
    pub fn split() -> Option<(Pinned, usize)> {
        // "/proc/thread-self" links to "<pid>/task/<tid>".
        let link = fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
        let tid = link
            .file_name()
            .and_then(|t| t.to_str())
            .expect("a thread id")
            .to_owned();
        let out = run("taskset", &["-p", &tid]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "pid 123's current affinity mask: ff" (words split by commas
        // beyond 32 CPUs).
        let mask = text.rsplit(':').next().unwrap_or_default().trim().to_owned();
        let hex: String = mask.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let low = &hex[hex.len().saturating_sub(16)..];
        let bits = u64::from_str_radix(low, 16)
            .unwrap_or_else(|e| panic!("cannot read the affinity mask from {text:?}: {e}"));
        let first = bits.trailing_zeros() as usize;
        let rest = bits & !(1u64.checked_shl(first as u32).unwrap_or(0));
        if bits == 0 || rest == 0 {
            return None;
        }
        let second = rest.trailing_zeros() as usize;
        run("taskset", &["-p", "-c", &first.to_string(), &tid]);
        Some((
            Pinned {
                tid,
                mask,
                cpu: first,
            },
            second,
        ))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = Command::new("taskset")
            .args(["-p", &self.mask, &self.tid])
            .stdout(Stdio::null())
            .status();
    }
}
