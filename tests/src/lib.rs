//! accel-tests: end-to-end tests that run real programs (redis, nginx,
//! memcached, wrk, python, curl) under `LD_PRELOAD=libaccel.so` against real
//! clients.
//!
//! This library holds what the tests share: finding `libaccel.so`, running
//! a program with and without it, scratch directories, and ([`net`]) the
//! network namespaces, veth pairs and `scripts/accel` placements of the
//! tests that talk over the accelerated interface. Test traffic stays on
//! 127.0.0.1 or inside namespaces the tests make (198.18.0.0/15).
//!
//! Where the library comes from: `accel-tests` has `accel-shim` as a
//! dev-dependency, so building the tests builds the shim's `cdylib` in the
//! same cargo invocation, fresh, into `target/<profile>/deps/libaccel.so`,
//! the directory of the test binaries themselves. (Cargo copies a
//! dependency's cdylib up to `target/<profile>/` only when the shim is built
//! on its own, with `cargo build -p accel-shim`; that copy may be stale, so
//! it is only the second choice.) The tests never link the shim's rlib: it
//! would interpose the test binary's own libc calls.

pub mod clients;
pub mod net;
pub mod shared_port;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The path of `libaccel.so` built with these tests.
pub fn libaccel() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let deps = exe.parent().expect("the test binary's directory");
        let candidates = [deps.join("libaccel.so"), deps.join("../libaccel.so")];
        candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
            panic!("libaccel.so is in none of {candidates:?}: is accel-shim still a dev-dependency of accel-tests?")
        })
    })
}

/// The real Python 3 interpreter (not a wrapper script such as pyenv's), so
/// that exactly one program runs under the library.
pub fn python() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .env_remove("LD_PRELOAD")
            .output()
            .expect("python3 is installed (scripts/install-deps)");
        assert!(
            out.status.success(),
            "python3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).expect("a UTF-8 path").trim())
    })
}

/// A command with no `LD_PRELOAD` and no `ACCEL_*` variable inherited.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("LD_PRELOAD");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ACCEL_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// `cmd` with `libaccel.so` preloaded.
pub fn preloaded(cmd: &mut Command) -> &mut Command {
    cmd.env("LD_PRELOAD", libaccel())
}

/// Runs `cmd` to completion with no input, capturing its output.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs the command `make` builds once without the library and once with
/// it, checks both succeed with the same standard output and nothing on
/// standard error, and returns that output.
pub fn same_with_and_without(mut make: impl FnMut() -> Command) -> String {
    let plain = output(&mut make());
    let accel = output(preloaded(&mut make()));
    let show = |o: &Output| {
        format!(
            "{}\nstdout:\n{}\nstderr:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(plain.status.success(), "without the library: {}", show(&plain));
    assert!(accel.status.success(), "with the library: {}", show(&accel));
    assert_eq!(
        String::from_utf8_lossy(&accel.stdout),
        String::from_utf8_lossy(&plain.stdout),
        "output differs under LD_PRELOAD; with: {}",
        show(&accel)
    );
    assert_eq!(
        String::from_utf8_lossy(&accel.stderr),
        String::from_utf8_lossy(&plain.stderr)
    );
    String::from_utf8(plain.stdout).expect("UTF-8 output")
}

/// A fresh scratch directory, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new empty directory named after `name` and this process.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("accel-tests-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `conf` as `dir`/nginx.conf and returns the command line that runs
/// that nginx in the foreground with `dir` as its prefix (its error log
/// there too).
pub fn nginx_command(dir: &Path, conf: &str) -> Vec<String> {
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let d = dir.display();
    [
        "nginx".to_owned(),
        "-p".to_owned(),
        d.to_string(),
        "-e".to_owned(),
        format!("{d}/error.log"),
        "-c".to_owned(),
        path.display().to_string(),
    ]
    .into()
}

/// Deterministic pseudo-random bytes (xorshift), for test files.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
