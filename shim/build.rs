//! Writes the linker version script of `libaccel.so` from the interpose
//! table, and passes it to the linker of the cdylib only.
//!
//! The names come from the table's source text (`src/interpose/table.rs`);
//! the crate's unit tests check they are exactly the names the
//! `interpose!` macro exports, so the two cannot drift apart.

use std::{env, fs, path::PathBuf};

#[path = "src/interpose/script.rs"]
#[allow(dead_code)]
mod script;

fn main() {
    let table = "src/interpose/table.rs";
    println!("cargo:rerun-if-changed={table}");
    println!("cargo:rerun-if-changed=src/interpose/script.rs");
    let source = fs::read_to_string(table).unwrap_or_else(|e| panic!("reading {table}: {e}"));
    let names = script::names(&source);
    assert!(!names.is_empty(), "{table} lists no intercepted call");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let path = out.join("libaccel.map");
    fs::write(&path, script::render(&names)).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        path.display()
    );
    // rustc's own version script exports every `#[no_mangle]` function of
    // the crates linked in (accel-coro's C API among them): symbols from
    // the crates' archives are not exported, only this crate's table.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
}
