//! One epoll set holding an accelerated socket, a pipe, an eventfd and a
//! loopback kernel socket (`tests/programs/epoll_mixed.c`, which knows
//! what the kernel reports in each phase and exits 1 on any difference).
//! It runs on the kernel (in a namespace on a veth to the peer's) and
//! under `scripts/accel --tap PEER`; both must pass and print the same.
//! The peer namespace runs the echo service of `tests/programs/peer.py`.

use accel_tests::net::{repo, root_or_skip, wait_until, Leg, Place, Proc, TapNet};
use accel_tests::{command, output, python, Scratch};
use std::time::Duration;

#[test]
fn one_epoll_set_over_accelerated_and_kernel_fds_reports_what_the_kernel_does() {
    if !root_or_skip("one_epoll_set_over_accelerated_and_kernel_fds_reports_what_the_kernel_does") {
        return;
    }
    let scratch = Scratch::new("epoll-mixed");
    let exe = scratch.join("epoll_mixed");
    let built = output(
        command("cc")
            .args(["-O1", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(repo("tests/programs/epoll_mixed.c")),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut net = TapNet::new("em");
    let python = python().to_str().unwrap().to_owned();
    let script = repo("tests/programs/peer.py");
    let mut peer = Proc::spawn(
        scratch.path(),
        "peer",
        &Place::kernel(&net.clients),
        Duration::from_secs(300),
        &[&python, "-u", script.to_str().unwrap()],
    );
    assert!(
        wait_until(Duration::from_secs(20), || peer.stdout().contains("peer ready")),
        "the peer services did not start: {}",
        peer.report()
    );
    let mut outputs = Vec::new();
    for leg in [Leg::Kernel, Leg::Accel] {
        let place = net.place(leg);
        let mut run = Proc::spawn(
            scratch.path(),
            leg.name(),
            &place,
            Duration::from_secs(60),
            &[exe.to_str().unwrap()],
        );
        run.finish(Duration::from_secs(70));
        println!("epoll_mixed {}:\n{}", leg.name(), run.stdout());
        assert!(
            run.stdout().ends_with("all phases as the kernel\n"),
            "{}",
            run.report()
        );
        outputs.push(run.stdout());
        drop(run);
        net.clear();
    }
    assert_eq!(
        outputs[0], outputs[1],
        "the shim's events differ from the kernel's"
    );
    assert!(!peer.exited(), "{}", peer.report());
}
