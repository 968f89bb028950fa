//! What the tests of many accelerated processes on one port (issue 12,
//! `tests/procs.rs` on net_tap and `tests/procs_memif.rs` on net_memif)
//! share: the nginx whose answers name their worker, the redis beside it,
//! and reading which processes attached to the port from the shim's log.

use crate::bytes;
use crate::net::Proc;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// nginx's port.
pub const NGINX_PORT: u16 = 18093;
/// redis's port.
pub const REDIS_PORT: u16 = 16403;
/// The length of the file nginx serves, `/1k`.
pub const BODY_LEN: usize = 1024;

/// The bytes of `/1k`.
pub fn body() -> Vec<u8> {
    bytes(BODY_LEN, 7)
}

/// Writes nginx.conf (`workers`: `2`, `auto`) for `/1k` in `dir/www`,
/// whose answers carry the worker's pid (`X-Pid`), and returns its
/// command line.
pub fn nginx(dir: &Path, workers: &str) -> Vec<String> {
    let d = dir.display();
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("1k"), body()).unwrap();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes {workers};\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  default_type application/octet-stream;\n\
         keepalive_requests 1000000;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{ listen {NGINX_PORT}; root {d}/www; add_header X-Pid $pid always; }}\n}}\n"
    );
    crate::nginx_command(dir, &conf)
}

/// Writes redis.conf for a redis on [`REDIS_PORT`] that keeps nothing on
/// disk, and returns its path.
pub fn redis_conf(dir: &Path) -> PathBuf {
    let path = dir.join("redis.conf");
    std::fs::write(
        &path,
        format!(
            "port {REDIS_PORT}\nbind 0.0.0.0\nprotected-mode no\ndaemonize no\nsave \"\"\nappendonly no\n\
             dir {}\nlogfile \"\"\ndatabases 1\n",
            dir.display()
        ),
    )
    .unwrap();
    path
}

/// The processes of `server` that attached to the shared port, by the
/// shim's log (`port shared (ACCEL_PROCS)`), sorted.
pub fn attached_workers(server: &Proc) -> Vec<u32> {
    let log = server.accel_log();
    let mut pids: Vec<u32> = log
        .lines()
        .filter(|l| l.contains("port shared (ACCEL_PROCS)"))
        .filter_map(|l| l.strip_prefix("accel[")?.split(']').next()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// CPU time (user + system, in clock ticks) of `pid`, 0 if it is gone.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // After the name: state ppid pgrp session tty tpgid flags minflt
    // cminflt majflt cmajflt utime stime (utime is the 12th number, the
    // state being no number).
    f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
}

/// Every process whose command line starts with `prefix`.
pub fn pids_named(prefix: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.starts_with(prefix.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// What looping HTTP clients saw: requests answered per pid; each failed
/// connection with the pid that had answered it (if any) and why; and
/// requests retried on a new connection because the server closed an
/// idle keep-alive connection under them (nothing of the answer came, on
/// a connection that had served: what every HTTP client retries).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered, per worker pid.
    pub served: BTreeMap<u32, usize>,
    /// Failed connections: the pid that had answered on it, and why.
    pub failed: Vec<(Option<u32>, String)>,
    /// Requests retried after an idle keep-alive close.
    pub retried: usize,
}

impl Outcome {
    /// What `tests/programs/http_load.py` printed (`served PID N`,
    /// `failed PID WHY`, `retried N` lines).
    pub fn parse(out: &str) -> Outcome {
        let mut seen = Outcome::default();
        for line in out.lines() {
            let mut w = line.splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("served"), Some(pid), Some(n)) => {
                    if let (Ok(pid), Ok(n)) = (pid.parse(), n.parse()) {
                        seen.served.insert(pid, n);
                    }
                }
                (Some("failed"), Some(pid), why) => {
                    seen.failed.push((pid.parse().ok(), why.unwrap_or("").to_owned()));
                }
                (Some("retried"), Some(n), None) => seen.retried = n.parse().unwrap_or(0),
                _ => {}
            }
        }
        seen
    }

    /// Requests answered.
    pub fn total(&self) -> usize {
        self.served.values().sum()
    }

    /// The failed connections counted by whose they were, with a worker
    /// `victim` killed: `victim`, `SURVIVOR: why`, `pid P: why` (any other
    /// worker), or `before any answer`.
    pub fn failures_by_worker(&self, victim: u32, survivor: u32) -> BTreeMap<String, usize> {
        let mut failures = BTreeMap::new();
        for (p, e) in &self.failed {
            let who = match p {
                Some(p) if *p == victim => "victim".to_owned(),
                Some(p) if *p == survivor => format!("SURVIVOR: {e}"),
                Some(p) => format!("pid {p}: {e}"),
                None => "before any answer".to_owned(),
            };
            *failures.entry(who).or_insert(0) += 1;
        }
        failures
    }
}
