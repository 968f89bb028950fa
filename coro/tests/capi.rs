//! Compiles `tests/c/capi_test.c` against `include/accel_coro.h` and the
//! static library cargo built, runs it, and requires every check to pass.

use std::path::PathBuf;
use std::process::Command;

/// `.../target/<profile>/deps`, where this test binary lives.
fn deps_dir() -> PathBuf {
    std::env::current_exe().unwrap().parent().unwrap().to_path_buf()
}

/// The static library cargo built for this test run: the newest
/// `libaccel_coro-*.a` beside us (test builds use their own hash, and cargo
/// does not copy it up to `target/<profile>/`).
fn static_lib() -> PathBuf {
    std::fs::read_dir(deps_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libaccel_coro-") && n.ends_with(".a")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .expect("cargo builds libaccel_coro-*.a (crate-type staticlib) with the tests")
}

#[test]
fn c_program_uses_every_part_of_the_api() {
    let dir = deps_dir();
    let lib = static_lib();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("capi_test");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args([
            "-std=c11",
            "-D_GNU_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O1",
            "-o",
        ])
        .arg(&out)
        .arg(src.join("tests/c/capi_test.c"))
        .arg("-I")
        .arg(src.join("include"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm"])
        .status()
        .expect("a C compiler (cc) is installed");
    assert!(status.success(), "the C test program did not compile");
    let run = Command::new(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "C test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let n: u32 = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n >= 25, "only {n} checks ran");
}
