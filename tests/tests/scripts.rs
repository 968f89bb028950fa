//! The user's commands themselves: `scripts/accel` sets what its help
//! says (device arguments, addresses, profile, precedence, the library)
//! and refuses what it should; `scripts/testnet` is idempotent and `down`
//! removes what was left inside. The program run under `scripts/accel` here
//! is `env`, which uses no network, so the shim never starts the stack.

use accel_tests::net::{accel_lib, repo, root_or_skip, unique, Netns};
use accel_tests::{command, output};
use std::collections::BTreeMap;
use std::process::{Command, Output};

fn accel(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command(repo("scripts/accel"));
    c.args(args).env("ACCEL_LIB", accel_lib());
    for (k, v) in env {
        c.env(k, v);
    }
    output(&mut c)
}

/// The `ACCEL_*` and `LD_PRELOAD` variables `env` printed under
/// `scripts/accel args -- env`.
fn vars(args: &[&str], env: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut full = args.to_vec();
    full.extend(["--", "env"]);
    let out = accel(&full, env);
    assert!(out.status.success(), "scripts/accel {args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("ACCEL_") || *k == "LD_PRELOAD")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

const EAL: &str = "--no-huge -m 256 --no-shconf --no-pci";

#[test]
fn accel_memif_sets_the_device_address_profile_and_library() {
    let v = vars(&["--memif", "server", "/tmp/x.sock"], &[]);
    assert_eq!(
        v["ACCEL_DPDK_ARGS"],
        format!("{EAL} --vdev=net_memif0,role=server,socket=/tmp/x.sock")
    );
    assert_eq!(v["ACCEL_IP"], "198.18.1.1/24");
    assert_eq!(v["ACCEL_SPIN_US"], "50", "balanced is the default profile");
    assert_eq!(v["LD_PRELOAD"], accel_lib().display().to_string());
    let v = vars(&["-p", "throughput", "--memif", "client", "/tmp/x.sock"], &[]);
    assert_eq!(v["ACCEL_IP"], "198.18.1.2/24");
    assert!(
        v["ACCEL_DPDK_ARGS"].ends_with("role=client,socket=/tmp/x.sock"),
        "{v:?}"
    );
    assert_eq!(v["ACCEL_SPIN_US"], "200");
    let v = vars(&["-p", "latency", "--memif", "client", "/tmp/x.sock"], &[]);
    assert_eq!(v["ACCEL_SPIN_US"], "1000");
}

#[test]
fn accel_precedence_is_options_then_environment_then_defaults() {
    let env = [
        ("ACCEL_SPIN_US", "7"),
        ("ACCEL_IP", "198.18.1.9/24"),
        ("ACCEL_LOG", "debug"),
    ];
    let v = vars(&["-p", "latency", "--memif", "client", "/s"], &env);
    assert_eq!(v["ACCEL_SPIN_US"], "7", "the environment wins over the profile");
    assert_eq!(
        v["ACCEL_IP"], "198.18.1.9/24",
        "the environment wins over the device's default"
    );
    assert_eq!(v["ACCEL_LOG"], "debug", "other variables pass through");
    let v = vars(&["--ip", "198.18.1.5/24", "--memif", "client", "/s"], &env);
    assert_eq!(v["ACCEL_IP"], "198.18.1.5/24", "--ip wins over the environment");
    // No device option: the environment's device.
    let v = vars(
        &[],
        &[
            ("ACCEL_DPDK_ARGS", "--vdev=net_ring0"),
            ("ACCEL_IP", "198.18.1.3/24"),
        ],
    );
    assert_eq!(v["ACCEL_DPDK_ARGS"], "--vdev=net_ring0");
    assert_eq!(v["ACCEL_IP"], "198.18.1.3/24");
}

#[test]
fn accel_refuses_bad_command_lines_with_a_reason() {
    for (args, says) in [
        (&["--memif", "server", "/s"][..], "no program"),
        (
            &["-p", "fast", "--memif", "server", "/s", "--", "true"],
            "unknown profile",
        ),
        (&["--memif", "both", "/s", "--", "true"], "server or client"),
        (&["--", "true"], "no device"),
        (
            &["--ip", "198.18.0.2", "--memif", "server", "/s", "--", "true"],
            "ADDR/LEN",
        ),
        (
            &["--tap", "accel-no-such-ns", "--", "true"],
            "scripts/testnet up accel-no-such-ns",
        ),
        (&["--bogus", "--", "true"], "unknown option"),
    ] {
        let out = accel(args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(err.contains(says), "{args:?}: stderr {err:?} should say {says:?}");
    }
    let help = accel(&["--help"], &[]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for word in [
        "--tap NS",
        "--memif",
        "latency",
        "throughput",
        "balanced",
        "ACCEL_LIB",
        "Precedence",
    ] {
        assert!(help.contains(word), "--help does not mention {word}: {help}");
    }
}

#[test]
fn accel_tap_names_the_interface_and_peer() {
    if !root_or_skip("accel_tap_names_the_interface_and_peer") {
        return;
    }
    // 11 characters of a unique name, then padding: the iface is cut to 15.
    let name = format!("{:x<14}", unique("sc"));
    let ns = Netns::new(&name);
    let v = vars(&["--tap", &ns.name], &[]);
    let iface: String = format!("acc-{}", ns.name).chars().take(15).collect();
    assert_eq!(
        v["ACCEL_DPDK_ARGS"],
        format!("{EAL} --vdev=net_tap0,iface={iface}")
    );
    assert_eq!(v["ACCEL_TAP_NETNS"], ns.name);
    assert_eq!(v["ACCEL_TAP_PEER"], "198.18.0.1/24");
    assert_eq!(v["ACCEL_IP"], "198.18.0.2/24");
}

#[test]
fn testnet_is_idempotent_and_down_removes_what_is_inside() {
    if !root_or_skip("testnet_is_idempotent_and_down_removes_what_is_inside") {
        return;
    }
    let testnet = repo("scripts/testnet");
    let run = |args: &[&str]| output(command(&testnet).args(args));
    let name = unique("tn");
    // Removes the namespace (and so the veth and the process) if an
    // assertion fails before `down` ran.
    let _guard = Netns { name: name.clone() };
    for _ in 0..2 {
        let out = run(&["up", &name]);
        assert!(out.status.success(), "{out:?}");
    }
    let lo = output(Command::new("ip").args(["-n", &name, "-br", "link", "show", "lo"]));
    assert!(
        String::from_utf8_lossy(&lo.stdout).contains("UP"),
        "loopback is up: {lo:?}"
    );
    // Something left inside: a veth to the root namespace and a process.
    let peer = format!("{name}v");
    let added = output(Command::new("ip").args([
        "link", "add", &peer, "type", "veth", "peer", "name", "in0", "netns", &name,
    ]));
    assert!(added.status.success(), "{added:?}");
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &name, "sleep", "60"])
        .spawn()
        .expect("start a process in the namespace");
    assert!(
        accel_tests::net::wait_until(std::time::Duration::from_secs(5), || {
            !String::from_utf8_lossy(&output(Command::new("ip").args(["netns", "pids", &name])).stdout)
                .trim()
                .is_empty()
        }),
        "the process entered the namespace"
    );
    let out = run(&["down", &name]);
    assert!(out.status.success(), "{out:?}");
    let status = sleeper.wait().expect("the process ended");
    assert!(!status.success(), "down killed the process inside ({status})");
    assert!(
        !std::path::Path::new(&format!("/run/netns/{name}")).exists(),
        "the namespace is gone"
    );
    let link = output(Command::new("ip").args(["link", "show", &peer]));
    assert!(!link.status.success(), "the veth's outer end went with it");
    let again = run(&["down", &name]);
    assert!(again.status.success(), "down is idempotent: {again:?}");
    let bad = run(&["sideways", &name]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}
