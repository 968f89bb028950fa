//! A program that exits with its connections open (issue 13, part 5):
//! its peer must see what it sees of a process on the kernel's TCP, which
//! closes a dying process's sockets: every byte written, then the end of
//! the stream; a reset where data was left unread.
//!
//! `tests/programs/exit_close.c` connects from the tested side to
//! `tests/programs/exit_peer.py` in the clients' namespace and exits with
//! `exit(0)`, without `close`; first on the kernel (a veth), then
//! accelerated over `--tap`.
//!
//! A program that dies (`tests/programs/crash.c`: SIGKILL, SIGSEGV,
//! SIGABRT, `_exit`) with a connection open: its peer must learn within a
//! second. The kernel closes the dead process's socket (the peer reads the
//! end of the stream); accelerated, the shim's reaper resets it (the peer
//! sees a reset), after writing out the flight recorder: the file names
//! the connection and holds its handshake and the byte it received, and a
//! program that exits normally leaves none. Port 17201.

use accel_tests::net::{repo, root_or_skip, wait_until, Leg, Place, Proc, TapNet};
use accel_tests::{command, output, python, Scratch};
use std::time::Duration;

const PORT: &str = "17201";

/// Runs the program at `place` against the peer in `net`'s clients
/// namespace in `mode`; what the peer printed last.
fn peer_saw(dir: &std::path::Path, net: &TapNet, place: &Place, exe: &str, mode: &[&str]) -> String {
    peer_saw_as(dir, net, place, exe, mode, mode, true)
}

/// [`peer_saw`] with the peer in `peer_mode`, the program in `mode`,
/// which must succeed if `success`.
fn peer_saw_as(
    dir: &std::path::Path,
    net: &TapNet,
    place: &Place,
    exe: &str,
    mode: &[&str],
    peer_mode: &[&str],
    success: bool,
) -> String {
    let py = python().to_str().unwrap().to_owned();
    let script = repo("tests/programs/exit_peer.py");
    let mut args = vec![py.as_str(), "-u", script.to_str().unwrap(), PORT];
    args.extend_from_slice(peer_mode);
    let tag = mode.join("-");
    let mut peer = Proc::spawn(
        dir,
        &format!("peer-{tag}"),
        &Place::kernel(&net.clients),
        Duration::from_secs(60),
        &args,
    );
    assert!(
        wait_until(Duration::from_secs(10), || peer.stdout().contains("listening")),
        "the peer did not listen: {}",
        peer.report()
    );
    let mut args = vec![exe, PORT];
    args.extend_from_slice(mode);
    let mut prog = Proc::spawn(dir, &format!("prog-{tag}"), place, Duration::from_secs(60), &args);
    if success {
        prog.finish(Duration::from_secs(60));
        assert!(prog.stdout().contains("exiting"), "{}", prog.report());
    } else {
        let status = prog.wait(Duration::from_secs(60));
        assert!(status.is_some_and(|s| !s.success()), "{}", prog.report());
        assert!(prog.stdout().contains("connected"), "{}", prog.report());
    }
    peer.finish(Duration::from_secs(40));
    let saw = peer.stdout().lines().last().unwrap_or_default().to_owned();
    println!(
        "exit {}: {mode:?}: the peer saw {saw:?}",
        if place.accelerated() { "accel" } else { "kernel" }
    );
    saw
}

#[test]
fn a_program_that_exits_with_connections_open_is_seen_as_on_the_kernel() {
    if !root_or_skip("a_program_that_exits_with_connections_open_is_seen_as_on_the_kernel") {
        return;
    }
    let scratch = Scratch::new("exit");
    let exe = scratch.join("exit_close");
    let built = output(
        command("cc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(repo("tests/programs/exit_close.c")),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let exe = exe.to_str().unwrap().to_owned();
    let mut net = TapNet::new("ex");
    let n = (3 << 20).to_string();
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let flights = dir.join("flight");
        std::fs::create_dir_all(&flights).unwrap();
        let place = net
            .place(leg)
            .with_env("ACCEL_FLIGHT_DIR", flights.to_str().unwrap());
        // Three megabytes written just before exit: all arrive, then FIN.
        let saw = peer_saw(&dir, &net, &place, &exe, &["send", &n]);
        assert_eq!(saw, format!("got {n} eof"), "{}", leg.name());
        // Data left unread at exit: a reset.
        let saw = peer_saw(&dir, &net, &place, &exe, &["unread"]);
        assert_eq!(saw, "reset", "{}", leg.name());
        assert!(
            flight_records(&flights).is_empty(),
            "a normal exit writes no flight record"
        );
        net.clear();
    }
}

/// The flight records in `dir`, oldest first: (file name, text).
fn flight_records(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut files: Vec<(std::time::SystemTime, String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let at = e.metadata().ok()?.modified().ok()?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            name.starts_with("accel-flight-").then_some((at, name, text))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, n, t)| (n, t)).collect()
}

#[test]
fn the_peers_of_a_program_that_dies_learn_it_within_a_second() {
    if !root_or_skip("the_peers_of_a_program_that_dies_learn_it_within_a_second") {
        return;
    }
    let scratch = Scratch::new("crash");
    let exe = scratch.join("crash");
    let built = output(
        command("cc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(repo("tests/programs/crash.c")),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let exe = exe.to_str().unwrap().to_owned();
    let mut net = TapNet::new("cr");
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let flights = dir.join("flight");
        std::fs::create_dir_all(&flights).unwrap();
        let place = net
            .place(leg)
            .with_env("ACCEL_FLIGHT_DIR", flights.to_str().unwrap());
        for (k, how) in ["kill", "segv", "abort", "_exit"].into_iter().enumerate() {
            let saw = peer_saw_as(&dir, &net, &place, &exe, &[how], &["wait"], false);
            let (end, ms) = saw.split_once(' ').unwrap_or(("?", "0"));
            let ms: u64 = ms.parse().unwrap_or(u64::MAX);
            accel_tests::net::measured("crash", &format!("{}_{how}_ms", leg.name()), ms as f64, "ms");
            // The program dies 100 ms after the byte; the peer must know
            // within a second more.
            assert!(ms < 1100, "{} {how}: the peer saw {saw:?}", leg.name());
            let want = if leg == Leg::Kernel { "eof" } else { "reset" };
            assert_eq!(end, want, "{} {how}: the peer saw {saw:?}", leg.name());
            let records = flight_records(&flights);
            if leg == Leg::Accel {
                assert_eq!(records.len(), k + 1, "{how}: one flight record per death");
                let text = records.last().map(|(_, t)| t.as_str()).unwrap_or_default();
                println!("crash {how}: flight record:\n{text}");
                assert!(
                    text.contains(&format!(" - 198.18.0.1:{PORT} (open)")),
                    "{how}: {text}"
                );
                assert!(
                    text.contains("out [S....]") && text.contains("in  [S...A]"),
                    "{how}: {text}"
                );
                assert!(text.contains("len=1 "), "{how}: the peer's byte: {text}");
            } else {
                assert!(records.is_empty(), "the kernel leg has no recorder");
            }
            // The tap goes once the reaper is done (within 10 s).
            net.clear();
            let _ = net.place(leg);
        }
        net.clear();
    }
}
