//! The network side of the end-to-end tests: namespaces, veth pairs,
//! programs started in them (plain or under `scripts/accel`), clients run
//! from inside a namespace, bounded waits, and the figures a test prints.
//!
//! Everything a test sets up is undone by a guard when dropped, also when
//! the test panics: a [`Netns`] runs `scripts/testnet down`, which kills
//! what still runs inside and removes its interfaces; a [`Proc`] kills its
//! whole process group (every program starts under `timeout -k 5 LIMIT`,
//! which leads its own group, so even a test killed with SIGKILL leaves
//! nothing running past the limit). The pattern is the one of
//! `stack/tests/interop/netns.rs`, with the namespaces made by
//! `scripts/testnet` so the user's command is tested too.
//!
//! Addresses are those of `scripts/accel`: 198.18.0.1 (kernel peer) and
//! 198.18.0.2 (the stack) for `--tap`, 198.18.1.1 and 198.18.1.2 for
//! `--memif`; all of 198.18.0.0/15, and only inside namespaces the test
//! made. Namespace names are at most 11 characters, so the tap interface
//! `acc-NAME` of each test is unique within 15.
//!
//! The *kernel form*: with `ACCEL_E2E=kernel` in the environment the
//! accelerated legs run the same programs under `scripts/accel` but placed
//! in a namespace with a veth at the stack's address, as if the shim were
//! a pass-through. That is how the tests were debugged while libaccel.so
//! accelerated nothing (give it such a library with `ACCEL_LIB`: a library
//! that accelerates would put its tap beside the veth); without it, they
//! need the real acceleration.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{command, libaccel};

/// Whether the test runs as root; if not, reports `test` as skipped (see
/// [`skip`]).
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(
            test,
            "not root; it creates network namespaces and tap devices \
             (run `sudo -E cargo test -p accel-tests`)",
        );
    }
    root
}

/// Reports that `test` did not run, and why. libtest has no "skipped"
/// outcome (such a test passes), so besides the `SKIPPED` line (which
/// libtest shows only with `--nocapture`) the line is appended to the file
/// `$ACCEL_TEST_SKIPS` names, if set: `scripts/test` counts those and
/// fails on any, so a skip is never counted as a pass.
pub fn skip(test: &str, why: &str) {
    skip_to(
        std::env::var_os("ACCEL_TEST_SKIPS").as_deref().map(Path::new),
        test,
        why,
    );
}

/// [`skip`], recording in `record` if given.
fn skip_to(record: Option<&Path>, test: &str, why: &str) {
    let line = format!("SKIPPED {test}: {why}");
    println!("{line}");
    if let Some(path) = record {
        use std::io::Write;
        let file = fs::OpenOptions::new().create(true).append(true).open(path);
        if let Err(e) = file.and_then(|mut f| writeln!(f, "{line}")) {
            // Not being able to say so must not turn the skip into a pass.
            panic!("{line}; and recording it in {} failed: {e}", path.display());
        }
    }
}

/// Whether `ACCEL_E2E=kernel` asks for the kernel form (see the module).
pub fn kernel_form() -> bool {
    std::env::var("ACCEL_E2E").is_ok_and(|v| v == "kernel")
}

/// The library `scripts/accel` preloads: `$ACCEL_LIB` of the test's own
/// environment if set (e.g. a release build, for figures worth quoting),
/// else the one built with the tests.
pub fn accel_lib() -> PathBuf {
    std::env::var_os("ACCEL_LIB").map_or_else(|| libaccel().to_path_buf(), PathBuf::from)
}

/// A path in the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A short name unique to this test process: `tag` (at most 4
/// characters) and the pid.
pub fn unique(tag: &str) -> String {
    assert!(tag.len() <= 4, "tag {tag:?} is longer than 4 characters");
    format!("{tag}{}", std::process::id())
}

/// Runs `program args...`, panicking with its output unless it succeeds.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace made by `scripts/testnet up`, removed (with all it
/// holds) by `scripts/testnet down` when dropped.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` (after removing a leftover of that name).
    pub fn new(name: &str) -> Netns {
        let testnet = repo("scripts/testnet");
        let testnet = testnet.to_str().expect("a UTF-8 path");
        run(testnet, &["down", name]);
        run(testnet, &["up", name]);
        Netns {
            name: name.to_owned(),
        }
    }

    /// Runs `args` inside, panicking unless it succeeds.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `f` on a thread that has entered the namespace, and returns
    /// its result (the calling thread stays where it is).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns takes an fd we own for the duration of the
                // call; it moves only this thread into the namespace.
                let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = command(repo("scripts/testnet"))
            .args(["down", &self.name])
            .stdin(Stdio::null())
            .status();
    }
}

/// Joins namespaces `a` and `b` with a veth pair, `a_ip` (CIDR) on `a`'s
/// end and `b_ip` on `b`'s, both up. The pair goes with either namespace.
pub fn veth(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str) {
    // Created straight into the namespaces: no name in the root namespace
    // that a parallel test could clash with.
    run(
        "ip",
        &[
            "link", "add", "va", "netns", &a.name, "type", "veth", "peer", "name", "vb", "netns", &b.name,
        ],
    );
    a.run(&["ip", "addr", "add", a_ip, "dev", "va"]);
    b.run(&["ip", "addr", "add", b_ip, "dev", "vb"]);
    a.run(&["ip", "link", "set", "va", "up"]);
    b.run(&["ip", "link", "set", "vb", "up"]);
}

/// Where a program runs and how.
#[derive(Clone, Debug)]
pub struct Place {
    /// The namespace to run in; `None`: the root namespace.
    pub ns: Option<String>,
    /// `scripts/accel` options (`--tap NS`, `--memif server PATH`, ...);
    /// `None`: the program runs plain, without the library.
    pub accel: Option<Vec<String>>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl Place {
    /// Plain, in namespace `ns`.
    pub fn kernel(ns: &Netns) -> Place {
        Place {
            ns: Some(ns.name.clone()),
            accel: None,
            env: Vec::new(),
        }
    }

    /// Under `scripts/accel opts`, in namespace `ns` or the root one.
    pub fn accel(ns: Option<&Netns>, opts: &[&str]) -> Place {
        Place {
            ns: ns.map(|n| n.name.clone()),
            accel: Some(opts.iter().map(|s| s.to_string()).collect()),
            env: Vec::new(),
        }
    }

    /// With `name=value` in the environment as well.
    pub fn with_env(mut self, name: &str, value: &str) -> Place {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Whether the library is preloaded.
    pub fn accelerated(&self) -> bool {
        self.accel.is_some()
    }
}

/// A running program, its output going to files; its process group is
/// killed when dropped.
pub struct Proc {
    /// What the test calls it.
    pub name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    out: PathBuf,
    err: PathBuf,
    log: PathBuf,
}

impl Proc {
    /// Starts `args` at `place` under `timeout -k 5 <limit>`; standard
    /// output and error go to `<dir>/<name>.out` and `.err`, the shim's log
    /// (at info level, unless `place` says otherwise) to `.accel.log`.
    pub fn spawn(dir: &Path, name: &str, place: &Place, limit: Duration, args: &[&str]) -> Proc {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let log = dir.join(format!("{name}.accel.log"));
        let secs = limit.as_secs().max(1).to_string();
        let mut cmd = match &place.ns {
            Some(ns) => {
                let mut c = command("ip");
                c.args(["netns", "exec", ns, "timeout"]);
                c
            }
            None => command("timeout"),
        };
        cmd.args(["-k", "5", &secs]);
        if let Some(opts) = &place.accel {
            cmd.arg(repo("scripts/accel")).args(opts).arg("--");
            // A program killed with connections open leaves its flight
            // record beside its output, not in /tmp (a test may say where).
            cmd.env("ACCEL_LIB", accel_lib())
                .env("ACCEL_LOG", "info")
                .env("ACCEL_LOG_FILE", &log)
                .env("ACCEL_FLIGHT_DIR", dir);
        }
        for (k, v) in &place.env {
            cmd.env(k, v);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create stdout file"))
            .stderr(File::create(&err).expect("create stderr file"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            status: None,
            out,
            err,
            log,
        }
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    self.child = None;
                }
                Ok(None) => return false,
                Err(e) => panic!("wait for {}: {e}", self.name),
            }
        }
        true
    }

    /// Waits up to `limit` for it to exit; its status, or `None` if it
    /// still runs.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while !self.exited() {
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.status
    }

    /// Waits up to `limit` for it to exit and panics, with its output,
    /// unless it did so successfully.
    pub fn finish(&mut self, limit: Duration) {
        match self.wait(limit) {
            Some(s) if s.success() => {}
            Some(_) => panic!("{} failed: {}", self.name, self.report()),
            None => panic!("{} did not finish within {limit:?}: {}", self.name, self.report()),
        }
    }

    /// Like [`finish`](Self::finish), adding `server`'s report to the
    /// failure (a client that failed or hung says little on its own); the
    /// server exiting meanwhile fails it at once.
    pub fn finish_against(&mut self, limit: Duration, server: &mut Proc) {
        let end = Instant::now() + limit;
        let mut server_died = false;
        while !self.exited() && Instant::now() < end {
            if server.exited() {
                server_died = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.status;
        if server_died || !status.is_some_and(|s| s.success()) {
            let what = if server_died {
                "lost its server (which exited)"
            } else if status.is_some() {
                "failed"
            } else {
                "did not finish in time"
            };
            panic!(
                "{} {what}: {}\n=== the server: {}",
                self.name,
                self.report(),
                server.report()
            );
        }
    }

    /// Sends `sig` to the program (the child of its `timeout`, which then
    /// exits as the program does: signalling the whole group would also
    /// make `timeout` send it a second one), and waits up to `limit` for it
    /// to exit; its status, `None` if it runs on.
    pub fn stop(&mut self, sig: libc::c_int, limit: Duration) -> Option<ExitStatus> {
        if let Some(child) = &self.child {
            let path = format!("/proc/{0}/task/{0}/children", child.id());
            let kids = fs::read_to_string(&path).unwrap_or_default();
            for pid in kids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill(2) takes plain integers and touches no memory
                // of ours; `pid` is a child of our own child.
                unsafe { libc::kill(pid, sig) };
            }
        }
        self.wait(limit)
    }

    /// What it printed on standard output so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What it printed on standard error so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The shim's log so far (empty when it ran plain).
    pub fn accel_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A description for failure messages: status and all output.
    pub fn report(&self) -> String {
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "{} ({})\n--- stdout (last 40 lines)\n{}\n--- stderr\n{}\n--- accel log\n{}",
            self.name,
            self.status.map_or("still running".to_owned(), |s| s.to_string()),
            tail(self.stdout()),
            tail(self.stderr()),
            tail(self.accel_log())
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `timeout` leads its own process group holding the program
            // (and its children: nginx's worker). `ip netns exec` execs it.
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

/// Waits, from inside `ns`, until `addr` accepts a TCP connection, for at
/// most `limit`; panics with the server's report if it exits or the time
/// runs out.
pub fn wait_for_port(ns: &Netns, addr: SocketAddr, server: &mut Proc, limit: Duration) {
    let end = Instant::now() + limit;
    loop {
        if ns.enter(|| TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()) {
            return;
        }
        assert!(
            !server.exited(),
            "{} exited before serving {addr}: {}",
            server.name,
            server.report()
        );
        assert!(
            Instant::now() < end,
            "{addr} not served within {limit:?} (from namespace {}; if the server runs under \
             scripts/accel --tap, did libaccel.so move the tap into the namespace? ACCEL_E2E=kernel \
             runs the kernel form): {}",
            ns.name,
            server.report()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Prints one figure a test measured, in a form easy to grep and quote:
/// `measured: <test> <what> <value> <unit>`.
pub fn measured(test: &str, what: &str, value: f64, unit: &str) {
    println!("measured: {test} {what} {value:.1} {unit}");
}

/// The usual legs of a `--tap` test: the kernel baseline, then the
/// accelerated run, each with its own server placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// Plain server in a namespace joined to the clients' by a veth.
    Kernel,
    /// The server under `scripts/accel --tap CLIENTS` (in the kernel form:
    /// under `scripts/accel` in the veth namespace).
    Accel,
}

impl Leg {
    /// Its name in figures.
    pub fn name(self) -> &'static str {
        match self {
            Leg::Kernel => "kernel",
            Leg::Accel => "accel",
        }
    }
}

/// A `--tap` test's network: the clients' namespace (which the tap's
/// kernel side joins) and, for a kernel leg, the server's namespace.
pub struct TapNet {
    /// Where the kernel clients run; the peer address is 198.18.0.1 here.
    pub clients: Netns,
    server_ns: Option<Netns>,
    /// Where an accelerated server runs: a namespace with nothing but its
    /// loopback, so that whatever the shim leaves in the kernel (the
    /// wildcard listener's kernel half, a fallback) can reach nothing
    /// outside the test's namespaces, and clashes with no port of the host.
    host: Option<Netns>,
    tag: String,
    /// The prefix length of the link (24 unless [`TapNet::with_prefix`]).
    prefix: u8,
}

impl TapNet {
    /// The clients' namespace for test `tag` (at most 4 characters).
    pub fn new(tag: &str) -> TapNet {
        TapNet::with_prefix(tag, 24)
    }

    /// As [`TapNet::new`], with the link a /`prefix` instead of a /24
    /// (both ends keep their addresses): a test that needs many on-link
    /// addresses (a flood from spoofed ones) takes a /16.
    pub fn with_prefix(tag: &str, prefix: u8) -> TapNet {
        let tag = unique(tag);
        TapNet {
            clients: Netns::new(&tag),
            server_ns: None,
            host: None,
            tag,
            prefix,
        }
    }

    /// The name of the clients' end of the link: the accelerated server's
    /// tap, or the kernel server's veth.
    pub fn client_iface(&self, leg: Leg) -> String {
        match leg {
            Leg::Accel if !kernel_form() => format!("acc-{}", self.clients.name).chars().take(15).collect(),
            _ => "va".to_owned(),
        }
    }

    /// The address the server is reached at from the clients.
    pub fn server_ip(&self) -> &'static str {
        "198.18.0.2"
    }

    /// Where the server of `leg` runs. A kernel placement makes a server
    /// namespace with a veth (198.18.0.2 there, 198.18.0.1 in the clients');
    /// it is removed by the next call to `place` (and on drop), so that an
    /// accelerated run's tap can take 198.18.0.1 afterwards. An accelerated
    /// placement is `scripts/accel --tap CLIENTS` in the host namespace
    /// (see the field): the tap is made there and moved to the clients'.
    pub fn place(&mut self, leg: Leg) -> Place {
        self.server_ns = None;
        let veth_ns = |this: &mut TapNet| {
            let ns = Netns::new(&format!("{}s", this.tag));
            let p = this.prefix;
            veth(
                &this.clients,
                &format!("198.18.0.1/{p}"),
                &ns,
                &format!("198.18.0.2/{p}"),
            );
            this.server_ns.insert(ns).name.clone()
        };
        match leg {
            Leg::Kernel => {
                let ns = veth_ns(self);
                Place {
                    ns: Some(ns),
                    accel: None,
                    env: Vec::new(),
                }
            }
            Leg::Accel => {
                let mut opts = vec!["--tap".to_owned(), self.clients.name.clone()];
                let mut env = Vec::new();
                if self.prefix != 24 {
                    opts.extend(["--ip".to_owned(), format!("198.18.0.2/{}", self.prefix)]);
                    env.push(("ACCEL_TAP_PEER".to_owned(), format!("198.18.0.1/{}", self.prefix)));
                }
                let ns = if kernel_form() {
                    veth_ns(self)
                } else {
                    let tag = self.tag.clone();
                    self.host
                        .get_or_insert_with(|| Netns::new(&format!("{tag}h")))
                        .name
                        .clone()
                };
                let ns = Some(ns);
                Place {
                    ns,
                    accel: Some(opts),
                    env,
                }
            }
        }
    }

    /// Drops the server namespace, if any, and waits (up to 10 s) until
    /// an accelerated server's tap has left the clients' namespace, so the
    /// next leg's veth is the only interface at 198.18.0.1. The server must
    /// be gone (dropped) already.
    pub fn clear(&mut self) {
        self.server_ns = None;
        let tap: String = format!("acc-{}", self.clients.name).chars().take(15).collect();
        let gone = wait_until(Duration::from_secs(10), || {
            !command("ip")
                .args(["-n", &self.clients.name, "link", "show", &tap])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(
            gone,
            "tap {tap} still in namespace {} 10 s after its server ended",
            self.clients.name
        );
    }
}

/// A `--memif` test's network: two accelerated processes over the memif
/// socket `sock`, the server at 198.18.1.1, both in one namespace of their
/// own. In the kernel form they run in two namespaces joined by a veth
/// with those addresses instead.
pub struct MemifNet {
    /// The memif control socket.
    pub sock: PathBuf,
    /// Kernel form: the server's and the client's namespaces.
    ns: Option<(Netns, Netns)>,
    /// Otherwise: the one namespace both run in (memif's socket is an
    /// abstract one, per network namespace), with nothing but loopback,
    /// so that anything the shim leaves in the kernel reaches nothing.
    host: Option<Netns>,
}

impl MemifNet {
    /// The network of test `tag` (at most 4 characters), socket in `dir`.
    pub fn new(tag: &str, dir: &Path) -> MemifNet {
        let ns = kernel_form().then(|| {
            let tag = unique(tag);
            let s = Netns::new(&format!("{tag}m"));
            let c = Netns::new(&format!("{tag}n"));
            veth(&s, "198.18.1.1/24", &c, "198.18.1.2/24");
            (s, c)
        });
        let host = (!kernel_form()).then(|| Netns::new(&format!("{}h", unique(tag))));
        MemifNet {
            sock: dir.join("memif.sock"),
            ns,
            host,
        }
    }

    /// The server's address.
    pub fn server_ip(&self) -> &'static str {
        "198.18.1.1"
    }

    /// The server's placement.
    pub fn server(&self) -> Place {
        let sock = self.sock.to_str().expect("a UTF-8 path");
        Place::accel(
            self.ns.as_ref().map(|n| &n.0).or(self.host.as_ref()),
            &["--memif", "server", sock],
        )
    }

    /// The client's placement.
    pub fn client(&self) -> Place {
        let sock = self.sock.to_str().expect("a UTF-8 path");
        Place::accel(
            self.ns.as_ref().map(|n| &n.1).or(self.host.as_ref()),
            &["--memif", "client", sock],
        )
    }
}

/// Waits up to `limit` until `ready()` holds, checking every 50 ms; false
/// if it never did.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_recorded_line_by_line() {
        let path = std::env::temp_dir().join(unique("skip"));
        skip_to(Some(&path), "one", "why");
        skip_to(Some(&path), "two", "because");
        skip_to(None, "three", "not recorded");
        let text = fs::read_to_string(&path).unwrap();
        let _ = fs::remove_file(&path);
        assert_eq!(text, "SKIPPED one: why\nSKIPPED two: because\n");
    }
}
