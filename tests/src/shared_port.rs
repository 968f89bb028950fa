//! What the tests of many accelerated processes on one port (issue 12,
//! `tests/procs.rs` on net_tap and `tests/procs_memif.rs` on net_memif)
//! share: the nginx whose answers name their worker, the redis beside it,
//! and reading which processes attached to the port from the shim's log.

use crate::bytes;
use crate::net::Proc;
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
