//! Configuration from `ACCEL_*` environment variables.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `ACCEL_DPDK_ARGS` | DPDK EAL arguments, space-separated | none |
//! | `ACCEL_IP` | the accelerated interface's address, CIDR (`198.18.0.2/24`) | none: nothing is accelerated |
//! | `ACCEL_GW` | IPv4 gateway | none |
//! | `ACCEL_MAC` | the interface's MAC (`02:00:00:00:00:01`) | the device's own |
//! | `ACCEL_SPIN_US` | how long a waiting thread polls the device before sleeping, µs | 50 |
//! | `ACCEL_KEEPER_US` | a worker nobody drove for this long is driven by the keeper thread, µs | 1000 |
//! | `ACCEL_TX_STINT_US` | on net_tap: how long a thread sends frames the others staged before it hands them to the relay thread (`engine::relay`), µs; 0: the relay sends them all | 200 |
//! | `ACCEL_QUEUES` | queue pairs of the port, one stack each, 1 to 64; `auto`: one per CPU (at most 4) on net_tap for a program with several threads as its stack starts, else 1 | `auto` |
//! | `ACCEL_LANES` | on net_tap with one queue pair: queues of the TAP interface for the waiting threads of a program with several, one each (`engine::lanes`), 0 to 200 | 64 |
//! | `ACCEL_LOSS` | drop this share of the frames received and sent, like a lossy link (tests, soak) | 0 |
//! | `ACCEL_STATS_FILE` | write the engine's counters there every second, one JSON object per line | none |
//! | `ACCEL_LOG` | `error`, `warn`, `info` or `debug` | `warn` |
//! | `ACCEL_LOG_FILE` | append the log to this file instead of stderr | stderr |
//! | `ACCEL_FALLBACK` | when the stack cannot start: `kernel` (run on kernel sockets) or `fail` (exit) | `kernel` |
//! | `ACCEL_PROCS` | `single` (this process owns the port), `multi` (a port owner process shares it; see `procs`), `auto` (`multi` where huge pages are ready) | `single` |
//! | `ACCEL_PORT_QUEUES` | queue pairs the port owner opens the port with (`multi`), 1 to 64 (net_tap: at most 4) | 4 |
//!
//! Parsing is pure ([`Config::parse`] takes a lookup function) and never
//! allocates: text values are kept in fixed buffers, so the start-up can
//! read its configuration before anything else is set up. An empty variable
//! counts as unset. A bad value is reported once, through the caller's
//! `report` function, with the variable, the value, what was expected and
//! the default used instead; the default is then used.

use crate::logging::Level;
use std::fmt;
use std::net::Ipv4Addr;

/// A text value kept in a fixed buffer (environment values are bytes, not
/// necessarily UTF-8).
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    /// The empty text.
    pub const fn empty() -> Self {
        Text { buf: [0; N], len: 0 }
    }

    /// `bytes`, or `None` if they do not fit (one byte is kept for a NUL).
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut text = Self::empty();
        text.buf
            .get_mut(..bytes.len())
            .filter(|_| bytes.len() < N)?
            .copy_from_slice(bytes);
        text.len = bytes.len();
        Some(text)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// The bytes followed by a NUL, for a C call.
    pub fn as_bytes_with_nul(&self) -> &[u8] {
        self.buf.get(..self.len + 1).unwrap_or_default()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.as_bytes().utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl<const N: usize> PartialEq for Text<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// An IPv4 address and prefix length: `198.18.0.2/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The interface's own address.
    pub addr: Ipv4Addr,
    /// The network's prefix length, 0 to 32.
    pub prefix_len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// What to do when the stack cannot start (`ACCEL_FALLBACK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Run on kernel sockets, after one line saying why.
    Kernel,
    /// Exit with that line.
    Fail,
}

/// Who owns the port (`ACCEL_PROCS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Procs {
    /// This process opens the port (DPDK without huge pages); a second
    /// process cannot use it.
    Single,
    /// A port owner process opens it; this process attaches as a DPDK
    /// secondary and takes queue pairs of its own (huge pages needed).
    Multi,
    /// `Multi` where huge pages are ready, else `Single`.
    Auto,
}

/// The shim's configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// `ACCEL_DPDK_ARGS`: the DPDK EAL arguments, space-separated.
    pub dpdk_args: Text<1024>,
    /// `ACCEL_IP`: the accelerated interface's address; `None`: the stack
    /// never starts and every socket stays in the kernel.
    pub ip: Option<Cidr>,
    /// `ACCEL_GW`: the default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// `ACCEL_MAC`: the interface's MAC; `None`: the device's own.
    pub mac: Option<[u8; 6]>,
    /// `ACCEL_SPIN_US`: microseconds a waiting thread polls the device.
    pub spin_us: u32,
    /// `ACCEL_KEEPER_US`: microseconds after which the keeper drives an
    /// undriven worker.
    pub keeper_us: u32,
    /// `ACCEL_TX_STINT_US`: microseconds a program thread sends the frames
    /// others staged before it hands them to the relay thread
    /// (`engine::device`, `engine::relay`).
    pub tx_stint_us: u32,
    /// `ACCEL_QUEUES`: queue pairs (and stacks) to open the port with; 0
    /// (unset, or `auto`): one per CPU on net_tap for a program with
    /// threads as its stack starts, else one (`worker::queues_wanted`).
    pub queues: u16,
    /// `ACCEL_LANES`: on net_tap, queues of the TAP interface opened for
    /// the program's waiting threads, one each (`engine::lanes`); 0: none.
    /// 64 unless set.
    pub lanes: u16,
    /// `ACCEL_LOSS`: frames dropped per million received and per million
    /// sent (a lossy link, for tests and the soak).
    pub loss_ppm: u32,
    /// `ACCEL_STATS_FILE`: where the keeper appends the counters every
    /// second; empty: nowhere.
    pub stats_file: Text<4096>,
    /// `ACCEL_LOG`: the most verbose level logged.
    pub log_level: Level,
    /// `ACCEL_LOG_FILE`: the log's file; empty: stderr.
    pub log_file: Text<4096>,
    /// `ACCEL_FALLBACK`.
    pub fallback: Fallback,
    /// `ACCEL_TAP_NETNS`: the network namespace the kernel side of a
    /// net_tap port is moved into once DPDK has made it; empty: left where
    /// DPDK made it.
    pub tap_netns: Text<256>,
    /// `ACCEL_TAP_PEER`: the kernel side's address there; `None`: the
    /// first host address of `ACCEL_IP`'s network.
    pub tap_peer: Option<Cidr>,
    /// `ACCEL_PROCS`: who owns the port.
    pub procs: Procs,
    /// `ACCEL_PORT_QUEUES`: the queue pairs a port owner opens.
    pub port_queues: u16,
    /// `ACCEL_OWNER=1`: this process is a port owner started by the
    /// library (see `owner`), not a program.
    pub owner: bool,
    /// `ACCEL_FLIGHT_SLOTS`: connections the flight recorder keeps at
    /// once; 0: off.
    pub flight_slots: u32,
    /// `ACCEL_FLIGHT_DIR`: where a dead process's flight record goes;
    /// empty: `/tmp`.
    /// Read at load, like every variable here: a program may clear its
    /// environment before the stack starts (nginx's workers keep only
    /// `TZ` and what its `env` directives name).
    pub flight_dir: Text<200>,
}

/// One bad value, as passed to the `report` function of [`Config::parse`].
#[derive(Clone, Copy, Debug)]
pub struct BadValue<'a> {
    /// The variable, e.g. `ACCEL_SPIN_US`.
    pub var: &'static str,
    /// Its value as found.
    pub value: &'a [u8],
    /// What a good value looks like.
    pub expected: &'static str,
    /// The default used instead, as text.
    pub default: &'static str,
}

impl fmt::Display for BadValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = Text::<256>::new(self.value.get(..200).unwrap_or(self.value)).unwrap_or(Text::empty());
        write!(
            f,
            "{}={:?}: expected {}; using {}",
            self.var, value, self.expected, self.default
        )
    }
}

impl Config {
    /// The configuration with every variable unset.
    pub const DEFAULT: Config = Config {
        dpdk_args: Text::empty(),
        ip: None,
        gateway: None,
        mac: None,
        spin_us: 50,
        keeper_us: 1000,
        tx_stint_us: 200,
        queues: 0,
        lanes: 64,
        loss_ppm: 0,
        stats_file: Text::empty(),
        log_level: Level::Warn,
        log_file: Text::empty(),
        fallback: Fallback::Kernel,
        tap_netns: Text::empty(),
        tap_peer: None,
        procs: Procs::Single,
        port_queues: 4,
        owner: false,
        flight_slots: 4096,
        flight_dir: Text::empty(),
    };

    /// Reads the configuration through `lookup` (a variable's value, or
    /// `None` if unset), calling `report` once for each bad value.
    pub fn parse<'e>(lookup: impl Fn(&str) -> Option<&'e [u8]>, report: impl FnMut(BadValue<'_>)) -> Config {
        let mut env = Reader { lookup, report };
        let mut c = Config::DEFAULT;
        if let Some(v) = env.read("ACCEL_LOG", "error, warn, info or debug", "warn", parse_level) {
            c.log_level = v;
        }
        if let Some(v) = env.read(
            "ACCEL_LOG_FILE",
            "a path shorter than 4096 bytes",
            "stderr",
            Text::new,
        ) {
            c.log_file = v;
        }
        let expected = "arguments shorter than 1024 bytes";
        if let Some(v) = env.read("ACCEL_DPDK_ARGS", expected, "none", Text::new) {
            c.dpdk_args = v;
        }
        let expected = "an IPv4 address and prefix length, like 198.18.0.2/24";
        c.ip = env.read("ACCEL_IP", expected, "none", parse_cidr);
        c.gateway = env.read("ACCEL_GW", "an IPv4 address, like 198.18.0.1", "none", parse_ipv4);
        let expected = "a unicast MAC address, like 02:00:00:00:00:01";
        c.mac = env.read("ACCEL_MAC", expected, "the device's", parse_mac);
        if let Some(v) = env.read("ACCEL_SPIN_US", "a whole number of microseconds", "50", parse_u32) {
            c.spin_us = v;
        }
        let expected = "a whole number of microseconds above 0";
        if let Some(v) = env.read("ACCEL_KEEPER_US", expected, "1000", |v| {
            parse_u32(v).filter(|&us| us > 0)
        }) {
            c.keeper_us = v;
        }
        let expected = "a whole number of microseconds";
        if let Some(v) = env.read("ACCEL_TX_STINT_US", expected, "200", parse_u32) {
            c.tx_stint_us = v;
        }
        let expected = "a number of queue pairs from 1 to 64, or auto";
        if let Some(v) = env.read("ACCEL_QUEUES", expected, "auto", |v| {
            if v.eq_ignore_ascii_case(b"auto") {
                return Some(0);
            }
            parse_u32(v).filter(|&n| (1..=64).contains(&n))
        }) {
            c.queues = v as u16;
        }
        let expected = "a number of lanes from 0 to 200";
        if let Some(v) = env.read("ACCEL_LANES", expected, "64", |v| {
            parse_u32(v).filter(|&n| n <= 200)
        }) {
            c.lanes = v as u16;
        }
        let expected = "a share of frames from 0 to 0.5, like 0.01";
        if let Some(v) = env.read("ACCEL_LOSS", expected, "0", parse_share_ppm) {
            c.loss_ppm = v;
        }
        if let Some(v) = env.read(
            "ACCEL_STATS_FILE",
            "a path shorter than 4096 bytes",
            "none",
            Text::new,
        ) {
            c.stats_file = v;
        }
        if let Some(v) = env.read("ACCEL_FALLBACK", "kernel or fail", "kernel", parse_fallback) {
            c.fallback = v;
        }
        let expected = "a network namespace name shorter than 256 bytes";
        if let Some(v) = env.read("ACCEL_TAP_NETNS", expected, "none", Text::new) {
            c.tap_netns = v;
        }
        let expected = "an IPv4 address and prefix length, like 198.18.0.1/24";
        c.tap_peer = env.read(
            "ACCEL_TAP_PEER",
            expected,
            "the network's first address",
            parse_cidr,
        );
        if let Some(v) = env.read("ACCEL_PROCS", "single, multi or auto", "single", parse_procs) {
            c.procs = v;
        }
        let expected = "a number of queue pairs from 1 to 64";
        if let Some(v) = env.read("ACCEL_PORT_QUEUES", expected, "4", |v| {
            parse_u32(v).filter(|&n| (1..=64).contains(&n))
        }) {
            c.port_queues = v as u16;
        }
        c.owner = env.read("ACCEL_OWNER", "1", "not an owner", |v| {
            (v == b"1").then_some(true)
        }) == Some(true);
        let expected = "a number of connections from 0 to 1048576";
        if let Some(v) = env.read("ACCEL_FLIGHT_SLOTS", expected, "4096", |v| {
            parse_u32(v).filter(|&n| n <= 1 << 20)
        }) {
            c.flight_slots = v;
        }
        let expected = "a directory path shorter than 200 bytes";
        if let Some(v) = env.read("ACCEL_FLIGHT_DIR", expected, "/tmp", Text::new) {
            c.flight_dir = v;
        }
        c
    }
}

/// The lookup and report functions of one [`Config::parse`].
struct Reader<L, R> {
    lookup: L,
    report: R,
}

impl<'e, L: Fn(&str) -> Option<&'e [u8]>, R: FnMut(BadValue<'_>)> Reader<L, R> {
    /// The parsed value of `var`; `None` if unset, empty or bad (reported).
    fn read<T>(
        &mut self,
        var: &'static str,
        expected: &'static str,
        default: &'static str,
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let value = (self.lookup)(var).filter(|v| !v.is_empty())?;
        let parsed = parse(value);
        if parsed.is_none() {
            (self.report)(BadValue {
                var,
                value,
                expected,
                default,
            });
        }
        parsed
    }
}

/// `error`, `warn`, `info`, `debug` (any case).
pub fn parse_level(v: &[u8]) -> Option<Level> {
    [Level::Error, Level::Warn, Level::Info, Level::Debug]
        .into_iter()
        .find(|l| v.eq_ignore_ascii_case(l.name().as_bytes()))
}

/// `kernel` or `fail` (any case).
pub fn parse_fallback(v: &[u8]) -> Option<Fallback> {
    if v.eq_ignore_ascii_case(b"kernel") {
        Some(Fallback::Kernel)
    } else if v.eq_ignore_ascii_case(b"fail") {
        Some(Fallback::Fail)
    } else {
        None
    }
}

/// `single`, `multi` or `auto` (any case).
pub fn parse_procs(v: &[u8]) -> Option<Procs> {
    [
        ("single", Procs::Single),
        ("multi", Procs::Multi),
        ("auto", Procs::Auto),
    ]
    .into_iter()
    .find(|(name, _)| v.eq_ignore_ascii_case(name.as_bytes()))
    .map(|(_, p)| p)
}

/// A share from 0 to 0.5 written as a decimal fraction (`0`, `0.01`,
/// `.25`), in parts per million.
pub fn parse_share_ppm(v: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(v).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 6 || (whole.is_empty() && frac.is_empty()) {
        return None;
    }
    let whole: u32 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let frac_ppm: u32 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(6 - frac.len() as u32)
    };
    let ppm = whole.checked_mul(1_000_000)?.checked_add(frac_ppm)?;
    (ppm <= 500_000).then_some(ppm)
}

/// A decimal number that fits in a `u32`: digits only.
pub fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A dotted-quad IPv4 address.
pub fn parse_ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `a.b.c.d/len` with `len` from 0 to 32.
pub fn parse_cidr(v: &[u8]) -> Option<Cidr> {
    let slash = v.iter().position(|&b| b == b'/')?;
    let addr = parse_ipv4(v.get(..slash)?)?;
    let len = parse_u32(v.get(slash + 1..)?)?;
    let prefix_len = u8::try_from(len).ok().filter(|&l| l <= 32)?;
    Some(Cidr { addr, prefix_len })
}

/// Six two-digit hex bytes separated by `:`; the group bit must be clear
/// (an interface's own address is unicast).
pub fn parse_mac(v: &[u8]) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = v.split(|&b| b == b':');
    for byte in &mut mac {
        let part = parts.next().filter(|p| p.len() == 2)?;
        *byte = u8::from_str_radix(std::str::from_utf8(part).ok()?, 16).ok()?;
    }
    let unicast = mac[0] & 1 == 0;
    (parts.next().is_none() && unicast).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `vars` and returns the configuration and the reports, as text.
    fn parse(vars: &[(&str, &str)]) -> (Config, Vec<String>) {
        let mut reports = Vec::new();
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_bytes());
        let config = Config::parse(lookup, |bad| reports.push(bad.to_string()));
        (config, reports)
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let (config, reports) = parse(&[]);
        assert_eq!(config, Config::DEFAULT);
        assert!(reports.is_empty());
        assert_eq!(config.spin_us, 50);
        assert_eq!(config.keeper_us, 1000);
        assert_eq!(config.lanes, 64);
        assert_eq!(config.log_level, Level::Warn);
        assert_eq!(config.fallback, Fallback::Kernel);
        assert!(config.ip.is_none() && config.log_file.is_empty());
        assert_eq!((config.flight_slots, config.flight_dir.is_empty()), (4096, true));
    }

    #[test]
    fn every_variable_is_read() {
        let (config, reports) = parse(&[
            ("ACCEL_DPDK_ARGS", "--no-huge --in-memory --vdev=net_tap0"),
            ("ACCEL_IP", "198.18.0.2/24"),
            ("ACCEL_GW", "198.18.0.1"),
            ("ACCEL_MAC", "02:00:00:AB:cd:01"),
            ("ACCEL_SPIN_US", "0"),
            ("ACCEL_KEEPER_US", "250"),
            ("ACCEL_TX_STINT_US", "0"),
            ("ACCEL_QUEUES", "3"),
            ("ACCEL_LANES", "32"),
            ("ACCEL_LOSS", "0.01"),
            ("ACCEL_STATS_FILE", "/tmp/accel.stats"),
            ("ACCEL_LOG", "DEBUG"),
            ("ACCEL_LOG_FILE", "/tmp/accel.log"),
            ("ACCEL_FALLBACK", "fail"),
            ("ACCEL_TAP_NETNS", "accel-t1"),
            ("ACCEL_TAP_PEER", "198.18.0.1/24"),
            ("ACCEL_PROCS", "Multi"),
            ("ACCEL_PORT_QUEUES", "4"),
            ("ACCEL_FLIGHT_SLOTS", "0"),
            ("ACCEL_FLIGHT_DIR", "/var/tmp/flights"),
        ]);
        assert!(reports.is_empty(), "{reports:?}");
        assert_eq!(config.flight_slots, 0);
        assert_eq!(config.flight_dir.as_bytes(), b"/var/tmp/flights");
        assert_eq!(
            (config.procs, config.port_queues, config.owner),
            (Procs::Multi, 4, false)
        );
        assert_eq!(config.tap_netns.as_bytes(), b"accel-t1");
        assert_eq!(
            config.tap_peer.map(|c| c.to_string()),
            Some("198.18.0.1/24".into())
        );
        assert_eq!(
            config.dpdk_args.as_bytes(),
            b"--no-huge --in-memory --vdev=net_tap0"
        );
        assert_eq!(
            config.ip,
            Some(Cidr {
                addr: Ipv4Addr::new(198, 18, 0, 2),
                prefix_len: 24
            })
        );
        assert_eq!(config.gateway, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(config.mac, Some([2, 0, 0, 0xab, 0xcd, 1]));
        assert_eq!((config.spin_us, config.keeper_us, config.queues), (0, 250, 3));
        assert_eq!(config.tx_stint_us, 0);
        assert_eq!(config.lanes, 32);
        assert_eq!(config.loss_ppm, 10_000);
        assert_eq!(config.stats_file.as_bytes(), b"/tmp/accel.stats");
        assert_eq!(config.log_level, Level::Debug);
        assert_eq!(config.log_file.as_bytes_with_nul(), b"/tmp/accel.log\0");
        assert_eq!(config.fallback, Fallback::Fail);
    }

    #[test]
    fn bad_values_are_reported_once_each_and_defaulted() {
        let (config, reports) = parse(&[
            ("ACCEL_IP", "198.18.0.2"),
            ("ACCEL_GW", "198.18.0.256"),
            ("ACCEL_MAC", "01:00:5e:00:00:01"),
            ("ACCEL_SPIN_US", "-5"),
            ("ACCEL_KEEPER_US", "0"),
            ("ACCEL_TX_STINT_US", "-1"),
            ("ACCEL_QUEUES", "65"),
            ("ACCEL_LANES", "201"),
            ("ACCEL_LOSS", "0.6"),
            ("ACCEL_LOG", "verbose"),
            ("ACCEL_FALLBACK", "panic"),
            ("ACCEL_PROCS", "many"),
            ("ACCEL_PORT_QUEUES", "0"),
            ("ACCEL_FLIGHT_SLOTS", "2000000"),
            ("ACCEL_FLIGHT_DIR", &"d".repeat(200)),
        ]);
        assert_eq!(config, Config::DEFAULT);
        assert_eq!(reports.len(), 15, "{reports:?}");
        assert!(reports
            .iter()
            .any(|r| r == "ACCEL_PROCS=\"many\": expected single, multi or auto; using single"));
        assert_eq!(
            reports[0],
            "ACCEL_LOG=\"verbose\": expected error, warn, info or debug; using warn"
        );
        assert!(reports
            .iter()
            .any(|r| r.starts_with("ACCEL_IP=\"198.18.0.2\": expected an IPv4 address and prefix")));
        assert!(reports
            .iter()
            .any(|r| r.starts_with("ACCEL_MAC=") && r.contains("unicast")));
        assert!(reports
            .iter()
            .any(|r| r == "ACCEL_SPIN_US=\"-5\": expected a whole number of microseconds; using 50"));
        assert!(reports.iter().any(|r| r
            == "ACCEL_QUEUES=\"65\": expected a number of queue pairs from 1 to 64, or auto; using auto"));
        let (auto, none) = parse(&[("ACCEL_QUEUES", "Auto")]);
        assert_eq!((auto.queues, none.len()), (0, 0));
        assert!(reports
            .iter()
            .any(|r| r.starts_with("ACCEL_FALLBACK=\"panic\"") && r.ends_with("using kernel")));
    }

    #[test]
    fn empty_counts_as_unset() {
        let (config, reports) = parse(&[("ACCEL_IP", ""), ("ACCEL_LOG", "")]);
        assert_eq!(config, Config::DEFAULT);
        assert!(reports.is_empty());
    }

    #[test]
    fn too_long_text_is_reported() {
        let long = "a".repeat(5000);
        let (config, reports) = parse(&[("ACCEL_LOG_FILE", &long)]);
        assert!(config.log_file.is_empty());
        assert_eq!(reports.len(), 1);
        assert!(reports[0].starts_with("ACCEL_LOG_FILE=\"aaaa"));
        assert!(reports[0].ends_with("using stderr"));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"+1"), None);
        assert_eq!(parse_u32(b" 1"), None);
        assert_eq!(parse_u32(b""), None);
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr(b"10.0.0.1/32").map(|c| c.prefix_len), Some(32));
        assert_eq!(parse_cidr(b"10.0.0.1/0").map(|c| c.prefix_len), Some(0));
        assert_eq!(parse_cidr(b"10.0.0.1/33"), None);
        assert_eq!(parse_cidr(b"10.0.0.1/"), None);
        assert_eq!(parse_cidr(b"10.0.0/8"), None);
        assert_eq!(parse_cidr(b"/8"), None);
        assert_eq!(
            parse_cidr(b"10.0.0.1/24").map(|c| c.to_string()).as_deref(),
            Some("10.0.0.1/24")
        );
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac(b"02:00:00:00:00:01"), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(parse_mac(b"02:00:00:00:00"), None);
        assert_eq!(parse_mac(b"02:00:00:00:00:01:02"), None);
        assert_eq!(parse_mac(b"02-00-00-00-00-01"), None);
        assert_eq!(parse_mac(b"2:00:00:00:00:01"), None);
        assert_eq!(
            parse_mac(b"ff:ff:ff:ff:ff:ff"),
            None,
            "broadcast is not an interface address"
        );
    }

    #[test]
    fn non_utf8_values_are_reported_readably() {
        let value: &[u8] = b"\xffinfo";
        let mut reports = Vec::new();
        let config = Config::parse(
            |name| (name == "ACCEL_LOG").then_some(value),
            |bad| reports.push(bad.to_string()),
        );
        assert_eq!(config.log_level, Level::Warn);
        assert_eq!(
            reports,
            ["ACCEL_LOG=\"\u{fffd}info\": expected error, warn, info or debug; using warn"]
        );
    }

    #[test]
    fn shares_in_parts_per_million() {
        assert_eq!(parse_share_ppm(b"0"), Some(0));
        assert_eq!(parse_share_ppm(b"0.01"), Some(10_000));
        assert_eq!(parse_share_ppm(b".25"), Some(250_000));
        assert_eq!(parse_share_ppm(b"0.000001"), Some(1));
        assert_eq!(parse_share_ppm(b"0.5"), Some(500_000));
        assert_eq!(parse_share_ppm(b"0.5000001"), None, "seven decimals");
        assert_eq!(parse_share_ppm(b"0.51"), None, "past half");
        assert_eq!(parse_share_ppm(b"1"), None);
        assert_eq!(parse_share_ppm(b"."), None);
        assert_eq!(parse_share_ppm(b"1e-2"), None);
        assert_eq!(parse_share_ppm(b"-0.1"), None);
        assert_eq!(parse_share_ppm(b""), None);
    }
}
