//! The differential harness (issue 5, part 6): the socket calls of
//! `tests/programs/diff.c` (its table of cases: every interposed call's
//! success and error paths, and the epoll edge cases) run once on the
//! kernel and once under the shim, and the two outputs (result and errno of
//! each call, values read back) must be identical line for line.
//!
//! The kernel run is made twice and must agree with itself: a case that
//! depends on timing fails the test as such, not as a shim mismatch.
//!
//! Both runs see the same addresses. A peer namespace holds 198.18.0.1 with
//! the kernel services of `tests/programs/peer.py`. Kernel run: the harness
//! runs plain in a second namespace, 198.18.0.2 on a veth to the peer's.
//! Shim run: that namespace is gone (with its veth), and the harness runs
//! under `scripts/accel --tap PEER` in a namespace holding only a loopback
//! (not the root one, so that nothing the shim leaves in the kernel can
//! leave the test's namespaces): the stack is 198.18.0.2 and the tap's
//! kernel side, moved into the peer namespace, 198.18.0.1.
//! In the kernel form (`ACCEL_E2E=kernel`) the second run is the harness
//! under `scripts/accel` in a veth namespace again, which checks that the
//! cases themselves do not depend on timing.
//!
//! A mismatch fails the test with a unified diff of the two outputs and the
//! names of the cases that differ; `diff BASE CASE...` reruns single cases.

use accel_tests::net::{
    kernel_form, measured, repo, root_or_skip, unique, veth, wait_until, Netns, Place, Proc,
};
use accel_tests::{command, output, python, Scratch};
use std::collections::BTreeSet;
use std::time::Duration;

const BASE_PORT: &str = "21000";
const LIMIT: Duration = Duration::from_secs(240);

/// The case names of the `case NAME step K:` lines of `out`.
fn cases(out: &str) -> BTreeSet<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("case ")?.split_whitespace().next())
        .collect()
}

/// The case of one output line, if it is a case's line.
fn case_of(l: &str) -> Option<&str> {
    l.strip_prefix("case ")?.split_whitespace().next()
}

/// The number of cases of the closing `done: N cases` line.
fn done(out: &str, run: &Proc) -> usize {
    out.lines()
        .find_map(|l| l.strip_prefix("done: ")?.strip_suffix(" cases")?.parse().ok())
        .unwrap_or_else(|| panic!("the harness did not finish: {}", run.report()))
}

#[test]
fn the_shim_answers_every_socket_call_as_the_kernel_does() {
    if !root_or_skip("the_shim_answers_every_socket_call_as_the_kernel_does") {
        return;
    }
    let test = "differential";
    let scratch = Scratch::new("differential");
    let dir = scratch.path();
    let exe = scratch.join("diff");
    let built = output(
        command("cc")
            .args([
                "-O2",
                "-D_FORTIFY_SOURCE=2",
                "-D_FILE_OFFSET_BITS=64",
                "-Wall",
                "-Werror",
                "-o",
            ])
            .arg(&exe)
            .arg(repo("tests/programs/diff.c")),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let exe = exe.to_str().unwrap();

    let peer = Netns::new(&unique("df"));
    let python = python().to_str().unwrap().to_owned();
    let script = repo("tests/programs/peer.py");
    let mut services = Proc::spawn(
        dir,
        "peer",
        &Place::kernel(&peer),
        Duration::from_secs(900),
        &[&python, "-u", script.to_str().unwrap()],
    );
    assert!(
        wait_until(Duration::from_secs(20), || services
            .stdout()
            .contains("peer ready")),
        "the peer services did not start: {}",
        services.report()
    );

    // The kernel run, twice (each in a fresh namespace): the two must
    // agree, or a case depends on timing and the comparison below would
    // mean nothing.
    let kernel_run = |name: &str, tag: &str| {
        let ns = Netns::new(&unique(tag));
        veth(&peer, "198.18.0.1/24", &ns, "198.18.0.2/24");
        let mut run = Proc::spawn(dir, name, &Place::kernel(&ns), LIMIT, &[exe, BASE_PORT]);
        run.finish(LIMIT + Duration::from_secs(10));
        run.stdout()
    };
    let kernel_out = kernel_run("kernel", "dk");
    let again = kernel_run("kernel-again", "dl");
    if again != kernel_out {
        let udiff = output(
            command("diff")
                .args(["-u", "--label", "kernel", "--label", "kernel-again"])
                .arg(scratch.join("kernel.out"))
                .arg(scratch.join("kernel-again.out")),
        );
        panic!(
            "two kernel runs differ: a case depends on timing:\n{}",
            String::from_utf8_lossy(&udiff.stdout)
        );
    }
    let n_kernel = cases(&kernel_out).len();

    // The shim run.
    // In a namespace with nothing but loopback: what the shim leaves in the
    // kernel reaches nothing outside the test (kernel form: a veth again).
    let host = Netns::new(&unique("dh"));
    if kernel_form() {
        veth(&peer, "198.18.0.1/24", &host, "198.18.0.2/24");
    }
    let place = Place::accel(Some(&host), &["--tap", &peer.name]);
    let mut run = Proc::spawn(dir, "shim", &place, LIMIT, &[exe, BASE_PORT]);
    let status = run.wait(LIMIT + Duration::from_secs(10));
    let shim_out = run.stdout();
    assert!(
        !services.exited(),
        "the peer services died: {}",
        services.report()
    );

    let kernel_done = done(&kernel_out, &run);
    assert!(kernel_done >= 60, "{kernel_done} cases");
    assert_eq!(n_kernel, kernel_done, "every case printed something");
    let steps = kernel_out.lines().filter(|l| l.starts_with("case ")).count();
    measured(test, "cases", kernel_done as f64, "cases");
    measured(test, "steps", steps as f64, "lines");

    let k: Vec<&str> = kernel_out.lines().collect();
    let s: Vec<&str> = shim_out.lines().collect();
    let differing: BTreeSet<&str> = {
        let mut d = BTreeSet::new();
        for i in 0..k.len().max(s.len()) {
            let (a, b) = (k.get(i).copied(), s.get(i).copied());
            if a != b {
                d.extend(a.and_then(case_of));
                d.extend(b.and_then(case_of));
                if a.and_then(case_of).is_none() && b.and_then(case_of).is_none() {
                    d.insert("(end of output)");
                }
            }
        }
        d
    };
    measured(test, "differing_cases", differing.len() as f64, "cases");
    if !differing.is_empty() {
        let kf = scratch.join("kernel.out");
        let sf = scratch.join("shim.out");
        let udiff = output(
            command("diff")
                .args(["-u", "--label", "kernel", "--label", "shim"])
                .arg(&kf)
                .arg(&sf),
        );
        panic!(
            "{} of {kernel_done} cases differ under the shim ({}):\n{}\n\nshim run: {:?}\n{}",
            differing.len(),
            differing.iter().copied().collect::<Vec<_>>().join(" "),
            String::from_utf8_lossy(&udiff.stdout),
            status,
            run.report()
        );
    }
    assert!(status.is_some_and(|s| s.success()), "{}", run.report());
}
