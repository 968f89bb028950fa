//! A program that exits with its connections open (issue 13, part 5):
//! its peer must see what it sees of a process on the kernel's TCP, which
//! closes a dying process's sockets: every byte written, then the end of
//! the stream; a reset where data was left unread.
//!
//! `tests/programs/exit_close.c` connects from the tested side to
//! `tests/programs/exit_peer.py` in the clients' namespace and exits with
//! `exit(0)`, without `close`; first on the kernel (a veth), then
//! accelerated over `--tap`. Port 17201.

use accel_tests::net::{repo, root_or_skip, wait_until, Leg, Place, Proc, TapNet};
use accel_tests::{command, output, python, Scratch};
use std::time::Duration;

const PORT: &str = "17201";

/// Runs the program at `place` against the peer in `net`'s clients
/// namespace in `mode`; what the peer printed last.
fn peer_saw(dir: &std::path::Path, net: &TapNet, place: &Place, exe: &str, mode: &[&str]) -> String {
    let py = python().to_str().unwrap().to_owned();
    let script = repo("tests/programs/exit_peer.py");
    let mut args = vec![py.as_str(), "-u", script.to_str().unwrap(), PORT];
    args.extend_from_slice(mode);
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
    prog.finish(Duration::from_secs(60));
    assert!(prog.stdout().contains("exiting"), "{}", prog.report());
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
        let place = net.place(leg);
        // Three megabytes written just before exit: all arrive, then FIN.
        let saw = peer_saw(&dir, &net, &place, &exe, &["send", &n]);
        assert_eq!(saw, format!("got {n} eof"), "{}", leg.name());
        // Data left unread at exit: a reset.
        let saw = peer_saw(&dir, &net, &place, &exe, &["unread"]);
        assert_eq!(saw, "reset", "{}", leg.name());
        net.clear();
    }
}
