//! Builds the bindings to the system's DPDK and decides how it is linked.
//!
//! 1. `pkg-config libdpdk` gives the compiler flags (include paths,
//!    `-include rte_config.h`, the `-march` DPDK was built for) and the
//!    library directory.
//! 2. bindgen turns `src/shim.h` (which includes the DPDK headers) into
//!    Rust, keeping only the allow-listed functions, types and constants.
//! 3. `cc` compiles `src/shim.c`: out-of-line copies of DPDK's `static
//!    inline` functions.
//! 4. DPDK is linked *statically*: each driver we ship whole-archive (a
//!    driver registers itself from a constructor that nothing references,
//!    so without `--whole-archive` the linker would drop it), then the core
//!    libraries in dependency order, then the system libraries they need,
//!    dynamically. The archives are not bundled into the rlib
//!    (`-bundle`): the final link of whatever depends on this crate (a test
//!    binary, `libaccel.so`) reads them from the library directory, which is
//!    why the same lines work for executables and cdylibs (Debian builds
//!    the archives position-independent).

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Drivers linked whole-archive, in link order (a driver before the
/// libraries it uses). The virtual devices used on machines without a
/// DPDK NIC come first, then the common physical and virtual-machine NICs,
/// then the buses and the mempool handler they all need.
const DRIVERS: &[&str] = &[
    "net_tap",
    "net_memif",
    "net_af_packet",
    "net_af_xdp",
    "net_ring",
    "net_null",
    "net_ixgbe",
    "net_i40e",
    "net_ice",
    "net_virtio",
    "net_vmxnet3",
    "net_ena",
];

/// Drivers of the `mlx5` feature, whole-archive, before [`BUSES`].
const MLX5_DRIVERS: &[&str] = &["net_mlx5", "common_mlx5", "bus_auxiliary"];

/// Buses and the default mempool handler, whole-archive, after the drivers
/// that register on them.
const BUSES: &[&str] = &["bus_pci", "bus_vdev", "mempool_ring"];

/// Core libraries, in link order: each before every library it uses. They
/// are linked as ordinary archives: only the members something references
/// are kept. Found by linking: these are exactly what the drivers above
/// and our own calls reference.
const CORE: &[&str] = &[
    "common_iavf",
    "gso",
    "security",
    "cryptodev",
    "hash",
    "rcu",
    "timer",
    "ethdev",
    "net",
    "mbuf",
    "mempool",
    "ring",
    "pci",
    "eal",
    "kvargs",
    "telemetry",
];

/// System libraries the archives above call, linked dynamically: libxdp
/// and libbpf (net_af_xdp; they bring libelf and zlib), libnuma (EAL),
/// libbsd (`strlcpy`, which glibc 2.36 lacks), libm.
const SYSTEM: &[&str] = &["xdp", "bpf", "numa", "bsd", "m"];

/// System libraries of the `mlx5` feature (rdma-core), linked dynamically.
const MLX5_SYSTEM: &[&str] = &["mlx5", "ibverbs"];

fn main() {
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");

    let cflags = pkg_config(&["--cflags", "libdpdk"]);
    let libdir = pkg_config(&["--variable=libdir", "libdpdk"]);
    let libdir = libdir.trim();
    let cflags: Vec<String> = cflags.split_whitespace().map(str::to_owned).collect();

    bindings(&cflags);
    shim(&cflags);
    link(libdir);
}

/// Runs `pkg-config args...` and returns its output, or stops the build
/// saying what to install.
fn pkg_config(args: &[&str]) -> String {
    let output = Command::new("pkg-config")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("accel-dpdk-sys: cannot run pkg-config ({e}); install pkg-config and dpdk-dev")
        });
    if !output.status.success() {
        panic!(
            "accel-dpdk-sys: `pkg-config {}` failed: {}\n\
             install DPDK's development files (Debian: dpdk-dev libdpdk-dev), \
             or point PKG_CONFIG_PATH at a DPDK install",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).expect("pkg-config printed UTF-8")
}

/// Generates `$OUT_DIR/bindings.rs` from `src/shim.h`.
fn bindings(cflags: &[String]) {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let builder = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(cflags)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .parse_callbacks(Box::new(FlagTypes))
        // Macros such as RTE_ETH_RX_OFFLOAD_TCP_CKSUM expand to
        // RTE_BIT64(n), which only clang itself can evaluate.
        .clang_macro_fallback()
        .clang_macro_fallback_build_dir(&out)
        .use_core()
        .generate_comments(false)
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        // Packed structs that transitively contain a #[repr(align)] type,
        // which Rust rejects; we never look inside them.
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        // The out-of-line copies of the inline functions (src/shim.h).
        .allowlist_function("accel_.*")
        // EAL.
        .allowlist_function("rte_eal_init")
        .allowlist_function("rte_eal_cleanup")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_openlog_stream")
        .allowlist_function("rte_log_cur_msg_loglevel")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_lcore_count")
        .allowlist_function("rte_dev_probe")
        .allowlist_function("rte_dev_remove")
        .allowlist_function("rte_vdev_init")
        .allowlist_function("rte_vdev_uninit")
        // Memory pools and mbufs.
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_pktmbuf_pool_create_by_ops")
        .allowlist_function("rte_mempool_avail_count")
        .allowlist_function("rte_mempool_in_use_count")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_mempool_lookup")
        .allowlist_function("rte_eal_process_type")
        .allowlist_function("rte_eth_dev_conf_get")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_mempool")
        // Ports.
        .allowlist_function("rte_eth_dev_count_avail")
        .allowlist_function("rte_eth_dev_is_valid_port")
        .allowlist_function("rte_eth_dev_configure")
        .allowlist_function("rte_eth_dev_info_get")
        .allowlist_function("rte_eth_dev_socket_id")
        .allowlist_function("rte_eth_dev_start")
        .allowlist_function("rte_eth_dev_stop")
        .allowlist_function("rte_eth_dev_close")
        .allowlist_function("rte_eth_dev_get_port_by_name")
        .allowlist_function("rte_eth_dev_get_name_by_port")
        .allowlist_function("rte_eth_dev_adjust_nb_rx_tx_desc")
        .allowlist_function("rte_eth_macaddr_get")
        .allowlist_function("rte_eth_dev_set_mtu")
        .allowlist_function("rte_eth_dev_get_mtu")
        .allowlist_function("rte_eth_promiscuous_enable")
        .allowlist_function("rte_eth_promiscuous_disable")
        .allowlist_function("rte_eth_promiscuous_get")
        .allowlist_function("rte_eth_link_get_nowait")
        .allowlist_function("rte_eth_rx_queue_setup")
        .allowlist_function("rte_eth_tx_queue_setup")
        .allowlist_function("rte_eth_stats_get")
        .allowlist_function("rte_eth_stats_reset")
        .allowlist_function("rte_eth_xstats_get")
        .allowlist_function("rte_eth_xstats_get_names")
        .allowlist_function("rte_eth_xstats_get_id_by_name")
        .allowlist_function("rte_eth_xstats_get_by_id")
        .allowlist_function("rte_eth_dev_rx_intr_ctl_q_get_fd")
        .allowlist_function("rte_eth_dev_rx_intr_enable")
        .allowlist_function("rte_eth_dev_rx_intr_disable")
        .allowlist_function("rte_eth_dev_rss_reta_update")
        .allowlist_function("rte_eth_dev_rss_reta_query")
        .allowlist_function("rte_eth_dev_rss_hash_conf_get")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_rxconf")
        .allowlist_type("rte_eth_txconf")
        .allowlist_type("rte_eth_link")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_xstat")
        .allowlist_type("rte_eth_xstat_name")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("rte_eth_rss_reta_entry64")
        .allowlist_type("rte_eth_rss_conf")
        // Constants: offload flags, RSS hash types, modes, sizes.
        .allowlist_var("RTE_ETH_RX_OFFLOAD_.*")
        .allowlist_var("RTE_ETH_TX_OFFLOAD_.*")
        .allowlist_var("RTE_ETH_RSS_(IP|TCP|UDP|IPV4|NONFRAG_IPV4_TCP|NONFRAG_IPV4_UDP)")
        .allowlist_var("RTE_ETH_MQ_.*")
        .allowlist_var("RTE_ETH_RETA_GROUP_SIZE")
        .allowlist_var("RTE_ETH_LINK_.*")
        .allowlist_var("RTE_ETH_SPEED_NUM_.*")
        .allowlist_var("RTE_MBUF_F_.*")
        .allowlist_var("RTE_MBUF_DEFAULT_.*")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MEMPOOL_CACHE_MAX_SIZE")
        .allowlist_var("RTE_ETH_NAME_MAX_LEN")
        .allowlist_var("RTE_ETH_XSTATS_NAME_SIZE")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_MAX_LCORE")
        .allowlist_var("RTE_ETHER_.*_LEN")
        .allowlist_var("RTE_ETHER_MTU")
        .allowlist_var("RTE_LOG_(EMERG|ALERT|CRIT|ERR|WARNING|NOTICE|INFO|DEBUG)")
        .allowlist_var("RTE_MEMPOOL_NAMESIZE")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY");
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("accel-dpdk-sys: bindgen failed on the DPDK headers: {e}"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

/// Gives DPDK's 64-bit flag constants (offloads, RSS hash types, mbuf
/// flags) the type `u64` they have in C, whatever their value; bindgen
/// would pick `u32` for the small ones.
#[derive(Debug)]
struct FlagTypes;

impl bindgen::callbacks::ParseCallbacks for FlagTypes {
    fn int_macro(&self, name: &str, _value: i64) -> Option<bindgen::callbacks::IntKind> {
        let flags = [
            "RTE_ETH_RX_OFFLOAD_",
            "RTE_ETH_TX_OFFLOAD_",
            "RTE_ETH_RSS_",
            "RTE_MBUF_F_",
        ];
        flags
            .iter()
            .any(|prefix| name.starts_with(prefix))
            .then_some(bindgen::callbacks::IntKind::U64)
    }
}

/// Compiles `src/shim.c` into a static library this crate links.
fn shim(cflags: &[String]) {
    let mut build = cc::Build::new();
    build
        .file("src/shim.c")
        .define("_GNU_SOURCE", None)
        .warnings(true)
        .extra_warnings(true);
    // pkg-config's flags are compiler flags for gcc as well: -I, -include
    // rte_config.h, -march.
    for flag in cflags {
        build.flag(flag);
    }
    build.compile("accel_dpdk_shim");
}

/// Emits the link lines: drivers whole-archive, core libraries, system
/// libraries.
fn link(libdir: &str) {
    println!("cargo:rustc-link-search=native={libdir}");
    let mlx5 = env::var_os("CARGO_FEATURE_MLX5").is_some();
    let mut whole: Vec<&str> = DRIVERS.to_vec();
    if mlx5 {
        whole.extend_from_slice(MLX5_DRIVERS);
    }
    whole.extend_from_slice(BUSES);
    for lib in whole {
        println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=rte_{lib}");
    }
    for lib in CORE {
        println!("cargo:rustc-link-lib=static:-bundle=rte_{lib}");
    }
    if mlx5 {
        for lib in MLX5_SYSTEM {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
    for lib in SYSTEM {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    // For dependents' build scripts (DEP_DPDK_LIBDIR).
    println!("cargo:libdir={libdir}");
}
