//! DPDK linked into a shared object works: `dlopen` the `cdylib_probe`
//! example (built by `cargo test` next to this test binary), start its EAL
//! with two virtual devices, and count the ports its drivers created. This
//! is how `libaccel.so` carries DPDK: statically, drivers whole-archive,
//! its symbols hidden inside the object.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// `target/<profile>/examples/libcdylib_probe.so`, next to `deps/` where
/// this test binary lives.
fn probe_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    profile_dir.join("examples").join("libcdylib_probe.so")
}

#[test]
fn a_cdylib_links_dpdk_and_starts_its_eal() {
    let path = probe_path();
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p accel-dpdk-sys` without target filters, \
         which builds the examples",
        path.display()
    );
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; the object's constructors only
    // register DPDK drivers in its own, hidden copy of DPDK.
    let lib = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if lib.is_null() {
        // SAFETY: dlerror returns a NUL-terminated message after a failure.
        let why = unsafe { CStr::from_ptr(libc::dlerror()) };
        panic!("dlopen {}: {}", path.display(), why.to_string_lossy());
    }
    // SAFETY: `lib` is a live handle and the name is NUL-terminated.
    let sym = unsafe { libc::dlsym(lib, c"accel_dpdk_probe".as_ptr()) };
    assert!(!sym.is_null(), "accel_dpdk_probe is not exported");
    type Probe = unsafe extern "C" fn(libc::c_int, *mut *mut libc::c_char) -> libc::c_int;
    // SAFETY: the symbol is the example's `accel_dpdk_probe`, of this type.
    let probe: Probe = unsafe { std::mem::transmute::<*mut libc::c_void, Probe>(sym) };

    let prefix = format!("accel-cdylib-{}", std::process::id());
    let args = [
        "cdylib_probe",
        "--file-prefix",
        &prefix,
        "--no-huge",
        "-m",
        "64",
        "--no-shconf",
        "--no-pci",
        "--log-level",
        "*:error",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_ring0",
    ];
    let args: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut argv: Vec<*mut libc::c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    // The EAL pins the calling thread: run it on a thread of its own.
    let argv_addr = argv.as_mut_ptr() as usize;
    let argc = args.len() as libc::c_int;
    let ports = std::thread::spawn(move || {
        // SAFETY: `argv` (kept alive by the outer frame, which joins this
        // thread) holds `argc` valid strings and a NULL; the probe's EAL is
        // started once.
        unsafe { probe(argc, argv_addr as *mut *mut libc::c_char) }
    })
    .join()
    .expect("the probe thread");
    for dir in ["/var/run/dpdk", "/run/dpdk"] {
        let _ = std::fs::remove_dir_all(format!("{dir}/{prefix}"));
    }
    assert_eq!(ports, 2, "ports found (negative: -rte_errno)");
}
