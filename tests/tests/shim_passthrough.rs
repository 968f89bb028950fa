//! `libaccel.so` with nothing accelerated: real programs (python, curl, cat,
//! sha256sum, a fortified C program) must behave exactly as without it.
//! Every run is compared with a run without the library. Traffic stays on
//! 127.0.0.1.

use accel_tests::{bytes, command, libaccel, output, preloaded, python, same_with_and_without, Scratch};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "../../shim/src/interpose/script.rs"]
#[allow(dead_code)]
mod script;

/// The programs these tests run.
fn program(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs").join(name)
}

/// The intercepted names, read from the shim's table as `build.rs` reads it.
fn table_names() -> Vec<String> {
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shim/src/interpose/table.rs");
    script::names(&std::fs::read_to_string(table).expect("the shim's table"))
}

/// The per-function counts of the `calls by function:` line of a debug log.
fn calls_by_function(log: &str) -> BTreeMap<String, u64> {
    let line = log
        .lines()
        .find(|l| l.contains("exit: calls by function:"))
        .unwrap_or_else(|| panic!("no counts in:\n{log}"));
    let counts = line.split("calls by function:").nth(1).unwrap_or_default();
    counts
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

/// Runs `make()` under the library with `ACCEL_LOG=debug` into a log file
/// and returns the per-function counts at exit (from the log file, or from
/// stderr if the program closed the log's fd on the way).
fn counts_under_the_library(scratch: &Scratch, mut make: impl FnMut() -> Command) -> BTreeMap<String, u64> {
    let log = scratch.join("accel.log");
    let _ = std::fs::remove_file(&log);
    let out = output(
        preloaded(&mut make())
            .env("ACCEL_LOG", "debug")
            .env("ACCEL_LOG_FILE", &log),
    );
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&log).expect("the log file") + &String::from_utf8_lossy(&out.stderr);
    calls_by_function(&text)
}

#[test]
fn exports_are_exactly_the_table() {
    let out = output(Command::new("nm").args(["-D", "--defined-only"]).arg(libaccel()));
    assert!(out.status.success(), "{out:?}");
    let mut exported: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    exported.sort();
    let mut names = table_names();
    // Outside the table: a port owner started by the library runs from
    // there (shim/src/interpose/script.rs, EXTRA).
    names.push("__libc_start_main".to_owned());
    names.sort();
    assert_eq!(
        exported, names,
        "libaccel.so must export the table's names and nothing else"
    );
    assert!(names.len() >= 60, "{} names", names.len());
}

#[test]
fn file_calls_behave_the_same() {
    let scratch = Scratch::new("files");
    let file = scratch.join("data");
    std::fs::write(&file, bytes(3 << 20, 7)).unwrap();
    let cat = same_with_and_without(|| {
        let mut c = command("sh");
        c.arg("-c")
            .arg(format!("cat {0} | wc -c; sha256sum < {0}", file.display()));
        c
    });
    assert!(cat.starts_with(&format!("{}\n", 3 << 20)), "{cat}");
    let sum = same_with_and_without(|| {
        let mut c = command("sha256sum");
        c.arg(&file);
        c
    });
    assert!(
        cat.contains(sum.split_whitespace().next().unwrap()),
        "{cat} vs {sum}"
    );
}

#[test]
fn python_sockets_epoll_poll_select_and_files_behave_the_same() {
    let scratch = Scratch::new("python");
    let run = || {
        let dir = scratch.join("run");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let mut c = command(python());
        c.arg(program("sockets.py")).arg(dir);
        c
    };
    let out = same_with_and_without(run);
    for line in [
        "tcp echo 1048576 True",
        "connect to a closed port ECONNREFUSED",
        "bind to a port in use EADDRINUSE",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(out.ends_with("done\n"), "{out}");
    // The calls really went through the library.
    let counts = counts_under_the_library(&scratch, run);
    for name in [
        "socket",
        "socketpair",
        "bind",
        "listen",
        "connect",
        "shutdown",
        "getsockopt",
        "setsockopt",
        "recv",
        "send",
        "recvfrom",
        "sendto",
        "recvmsg",
        "sendmsg",
        "epoll_create1",
        "epoll_ctl",
        "epoll_wait",
        "poll",
        "select",
        "ioctl",
        "fork",
        "close",
        "read",
        "write",
    ] {
        assert!(
            counts.get(name).copied().unwrap_or(0) > 0,
            "{name} was not intercepted: {counts:?}"
        );
    }
    assert!(counts.keys().any(|k| k.starts_with("sendfile")), "{counts:?}");
    assert!(counts.keys().any(|k| k.starts_with("accept")), "{counts:?}");
}

#[test]
fn fortified_and_variadic_c_calls_behave_the_same() {
    let scratch = Scratch::new("fortified");
    let exe = scratch.join("fortified");
    let built = output(
        command("cc")
            .args(["-O2", "-D_FORTIFY_SOURCE=2", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(program("fortified.c")),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = || {
        let dir = scratch.join("run");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let mut c = command(&exe);
        c.arg(dir);
        c
    };
    let out = same_with_and_without(run);
    for line in [
        "read 9 9 fortified",
        "recvfrom 5 dgram self",
        "open mode 751",
        "close bad fd -1 EBADF",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let counts = counts_under_the_library(&scratch, run);
    for name in [
        "__read_chk",
        "__recv_chk",
        "__recvfrom_chk",
        "__poll_chk",
        "__fdelt_chk",
        "open",
        "openat",
        "fcntl",
        "ioctl",
        "dup3",
        "close_range",
        "epoll_pwait2",
        "epoll_pwait",
        "pread",
        "pwrite",
        "fsync",
        "fstat",
    ] {
        assert!(
            counts.get(name).copied().unwrap_or(0) > 0,
            "{name} was not intercepted: {counts:?}"
        );
    }
}

#[test]
fn a_child_program_keeps_ld_preload() {
    // Each child prints its LD_PRELOAD: after fork + execve with an
    // environment without it, through subprocess with env={} (vfork or
    // posix_spawn + execve), and with the program's own empty LD_PRELOAD,
    // which is respected.
    let script = r#"
import os, subprocess, sys
show = [sys.executable, "-c", "import os; print(os.environ.get('LD_PRELOAD'))"]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.dup2(w, 1)
    os.execve(sys.executable, show, {"ONLY": "this"})
os.close(w)
print("fork+execve:", os.read(r, 4096).decode().strip())
os.waitpid(pid, 0)
print("subprocess env={}:", subprocess.run(show, env={}, capture_output=True, text=True).stdout.strip())
print("own choice:", repr(subprocess.run(show, env={"LD_PRELOAD": ""}, capture_output=True, text=True).stdout.strip()))
"#;
    let run = |preload: bool| {
        let mut c = command(python());
        c.args(["-c", script]);
        if preload {
            preloaded(&mut c);
        }
        let out = output(&mut c);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let lib = libaccel().display().to_string();
    assert_eq!(
        run(false),
        "fork+execve: None\nsubprocess env={}: None\nown choice: ''\n"
    );
    assert_eq!(
        run(true),
        format!("fork+execve: {lib}\nsubprocess env={{}}: {lib}\nown choice: ''\n")
    );
}

/// A python HTTP server on 127.0.0.1, killed when dropped.
struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path, preload: bool) -> HttpServer {
        let mut c = command(python());
        c.args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir);
        if preload {
            preloaded(&mut c);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        HttpServer {
            port: port.unwrap_or_else(|| panic!("no port in {line:?}")),
            child,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn curl_fetches_from_an_http_server_both_under_the_library() {
    let scratch = Scratch::new("http");
    let site = scratch.join("site");
    std::fs::create_dir(&site).unwrap();
    let files = [("empty", 0), ("small", 1024), ("big", 4 << 20)];
    for (name, len) in files {
        std::fs::write(site.join(name), bytes(len, len as u64 + 1)).unwrap();
    }
    for preload in [false, true] {
        let server = HttpServer::start(&site, preload);
        for (name, len) in files {
            let got = scratch.join(&format!("got-{name}-{preload}"));
            let mut c = command("curl");
            c.args(["-sS", "--fail", "--noproxy", "*", "-o"])
                .arg(&got)
                .arg(format!("http://127.0.0.1:{}/{name}", server.port));
            if preload {
                preloaded(&mut c);
            }
            let out = output(&mut c);
            assert!(out.status.success(), "curl {name} (preload {preload}): {out:?}");
            assert_eq!(
                std::fs::read(&got).unwrap(),
                bytes(len, len as u64 + 1),
                "{name} (preload {preload})"
            );
        }
    }
}

#[test]
fn the_log_file_gets_a_start_line_and_the_counters_at_exit() {
    let scratch = Scratch::new("log");
    let log = scratch.join("accel.log");
    let file = scratch.join("data");
    std::fs::write(&file, b"some data\n").unwrap();
    let out = output(
        preloaded(&mut command("cat"))
            .arg(&file)
            .env("ACCEL_LOG", "info")
            .env("ACCEL_LOG_FILE", &log),
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"some data\n");
    assert!(
        out.stderr.is_empty(),
        "the log went to the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("info: started: ") && lines[0].contains("calls interposed"),
        "{text}"
    );
    assert!(lines[1].contains("info: exit: calls: intercepted="), "{text}");
    let intercepted: u64 = lines[1]
        .split("intercepted=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(intercepted >= 3, "cat opens, reads and writes: {text}");
    assert!(lines[1].contains("ours=0 reentrant=0"), "{text}");
    // The log file is appended to, by every process.
    let out = output(
        preloaded(&mut command("true"))
            .env("ACCEL_LOG", "info")
            .env("ACCEL_LOG_FILE", &log),
    );
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);
}

#[test]
fn a_bad_value_is_one_clear_line_and_changes_nothing_else() {
    let out = output(
        preloaded(&mut command("echo"))
            .arg("hi")
            .env("ACCEL_SPIN_US", "soon")
            .env("ACCEL_FALLBACK", ""),
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hi\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.ends_with("warn: ACCEL_SPIN_US=\"soon\": expected a whole number of microseconds; using 50\n"),
        "{stderr}"
    );
    // The default level says nothing else.
    let out = output(preloaded(&mut command("echo")).arg("hi"));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_program_closing_every_fd_keeps_the_shims_log_file() {
    // Daemons close every fd they did not open: the shim's log file among
    // them. The shim keeps its own fds open (`close_range` closes around
    // them, `close` answers EBADF), so the log stays in its file and the
    // program's next file gets a number of its own, not the log's.
    let scratch = Scratch::new("closelog");
    let log = scratch.join("accel.log");
    let other = scratch.join("other");
    let script = format!(
        "import os\nos.closerange(3, 65536)\nfd = os.open({:?}, os.O_CREAT | os.O_WRONLY, 0o644)\nos.write(fd, b'mine')\n",
        other.to_str().unwrap()
    );
    let out = output(
        preloaded(&mut command(python()))
            .args(["-c", &script])
            .env("ACCEL_LOG", "info")
            .env("ACCEL_LOG_FILE", &log),
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("exit: calls:"), "{stderr}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        b"mine",
        "the program's file got only its own bytes"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().next().is_some_and(|l| l.contains("info: started:")),
        "{text}"
    );
    assert!(
        text.contains("info: exit: calls:"),
        "the exit line went to the log file: {text}"
    );
}

#[test]
fn calls_made_before_the_shim_started_go_straight_to_libc() {
    // Another preloaded library's constructor calls socket() and close();
    // in one of the two orders it runs before the shim's constructor.
    let scratch = Scratch::new("early");
    let early = scratch.join("early.so");
    let built = output(
        command("cc")
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
            .arg(&early)
            .arg(program("early.c")),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut early_calls = 0;
    for order in [[libaccel(), early.as_path()], [early.as_path(), libaccel()]] {
        let preload = format!("{} {}", order[0].display(), order[1].display());
        let out = output(
            command("/bin/true")
                .env("LD_PRELOAD", &preload)
                .env("ACCEL_LOG", "info"),
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "LD_PRELOAD={preload}: {stderr}");
        let exit = stderr
            .lines()
            .find(|l| l.contains("exit: calls:"))
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!(
            exit.contains("intercepted=2 ") && exit.contains("reentrant=0"),
            "{exit}"
        );
        let n = exit
            .split("early=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap();
        early_calls += n.parse::<u32>().unwrap();
    }
    // socket() is asked about only once start-up is done; close() finds an
    // empty fd table either way.
    assert_eq!(early_calls, 1, "one order runs the other constructor first");
}
