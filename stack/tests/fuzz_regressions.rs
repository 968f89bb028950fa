//! Replays the inputs the fuzz targets found crashes with (and the seed
//! corpora) through the very bodies the targets run (`stack/fuzz/src`,
//! included here), so that every crash ever found stays a test of
//! `cargo test`, without the fuzzing toolchain.
//!
//! Inputs live in `stack/fuzz/regressions/<target>/`, one file per
//! finding, named after what it found; the corpora in
//! `stack/fuzz/seeds/<target>/`, when present.

#[path = "../fuzz/src/bytes.rs"]
mod bytes;
#[path = "../fuzz/src/iface.rs"]
mod iface;
#[path = "../fuzz/src/image.rs"]
mod image;
#[path = "../fuzz/src/net.rs"]
mod net;
#[path = "../fuzz/src/tcp.rs"]
mod tcp;
#[path = "../fuzz/src/wire.rs"]
mod wire;

use std::path::Path;

/// Runs `body` on every file under `stack/fuzz/<dir>/<target>`; returns
/// how many there were.
fn replay(dir: &str, target: &str, body: fn(&[u8])) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&path) else {
        return 0;
    };
    let mut files: Vec<_> = entries.map(|e| e.expect("a directory entry").path()).collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).expect("a saved input");
        eprintln!("{}", f.display());
        body(&data);
    }
    files.len()
}

macro_rules! target {
    ($name:ident, $body:path) => {
        #[test]
        fn $name() {
            let found = replay("regressions", stringify!($name), $body);
            let seeds = replay("seeds", stringify!($name), $body);
            eprintln!(
                "{}: {found} regression inputs, {seeds} corpus inputs",
                stringify!($name)
            );
        }
    };
}

target!(wire_ethernet, wire::ethernet);
target!(wire_arp, wire::arp);
target!(wire_ipv4, wire::ipv4);
target!(wire_icmpv4, wire::icmpv4);
target!(wire_tcp, wire::tcp);
target!(wire_udp, wire::udp);
target!(tcp_input, tcp::run);
target!(iface_input, iface::run);
target!(conn_image, image::conn_image);

/// The regression inputs are there (a path typo would replay nothing).
#[test]
fn the_regression_inputs_are_found() {
    assert!(replay("regressions", "tcp_input", |_| {}) > 0);
}
