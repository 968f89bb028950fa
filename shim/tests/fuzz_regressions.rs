//! Replays the inputs the shim's fuzz targets crashed on (and their seed
//! corpora) through the bodies the targets run (`shim/fuzz/src`, included
//! here), so every crash found stays a test of `cargo test`.
//!
//! Inputs live in `shim/fuzz/regressions/<target>/` and
//! `shim/fuzz/seeds/<target>/`.

#[path = "../fuzz/src/args.rs"]
mod args;
#[path = "../../stack/fuzz/src/bytes.rs"]
mod bytes;

use std::path::Path;

/// Runs `body` on every file under `shim/fuzz/<dir>/<target>`; returns how
/// many there were.
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
        eprintln!("{}", f.display());
        body(&std::fs::read(f).expect("a saved input"));
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
                "{}: {found} regression inputs, {seeds} seeds",
                stringify!($name)
            );
        }
    };
}

target!(shim_sockaddr, args::sockaddr);
target!(shim_sockopt, args::sockopt);
target!(shim_iovec, args::iovec);
target!(shim_epoll, args::epoll);

/// Every body runs on a few fixed inputs too (the empty one, all-zero and
/// all-ones bytes), whether or not seeds are checked in.
#[test]
fn fixed_inputs() {
    for data in [&[][..], &[0; 64][..], &[0xff; 64][..]] {
        args::sockaddr(data);
        args::sockopt(data);
        args::iovec(data);
        args::epoll(data);
    }
}
