//! One configured and started DPDK port, shared by the handles on its
//! queue pairs: set-up, control-path calls (link, counters, xstats) and
//! shutdown.
//!
//! [`Port::open`] either returns a started port or leaves nothing behind:
//! a failure before a queue was set up leaves the port unused (it may be
//! opened again); a later one closes the port, so that no ring still holds
//! an mbuf; either way the mempool is then freed. A started port is
//! stopped and closed when the `Port` is dropped. Control-path calls are serialised by a lock,
//! since DPDK's are not thread-safe; the data path (bursts) takes no lock.
//!
//! In DPDK's multi-process model one process (the primary, the port's
//! owner) opens the port and its mempool, and others (secondaries) use
//! queue pairs of it: [`Port::attach`] takes a port that the primary
//! started, with the primary's mempool found by name, and leaves the port
//! and the pool alone when dropped (they are the owner's).
#![allow(unsafe_code)]

use std::ffi::{c_int, CString};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use accel_dpdk_sys as sys;

use super::bell::Bell;
use super::eal::{self, DpdkError, Eal};
use super::link_watch::LinkWatch;
use super::offload::{self, Offloads};
use super::steering;
use super::{c_text, claims, mark_closed, mark_open, pool_name, DpdkConfig, MAX_BURST};
use crate::wire::EthernetAddress;

/// The link of a port, as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// Whether the link is up.
    pub up: bool,
    /// Speed in Mb/s (0 when unknown or down).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
    /// Speed negotiated automatically.
    pub autoneg: bool,
}

/// A port's own counters over all its queues (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames dropped by the hardware because the receive ring was full.
    pub imissed: u64,
    /// Erroneous received frames.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// A started port; see the module documentation.
pub(crate) struct Port {
    /// Keeps the EAL up while the port exists.
    eal: Eal,
    pub id: u16,
    pub name: String,
    pub pool: NonNull<sys::rte_mempool>,
    /// The mempool's name (how a secondary process finds it).
    pub pool_name: String,
    pub pool_size: u32,
    /// Whether this process configured and started the port (and so stops
    /// and closes it), rather than attached to it.
    owner: bool,
    pub mtu: u16,
    pub mac: EthernetAddress,
    pub offloads: Offloads,
    pub rss: bool,
    /// The RSS key and redirection table the port hashes received flows
    /// with, where it does so and tells them (see `steering`).
    pub steering: Option<(Vec<u8>, Vec<u16>)>,
    pub rx_interrupts: bool,
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// Whether each queue pair has a handle.
    claimed: Vec<AtomicBool>,
    /// Serialises control-path calls.
    control: Mutex<()>,
    /// In a secondary process on a net_memif port: the watch that keeps
    /// the driver's memory regions right (see [`LinkWatch`]).
    pub watch: Option<LinkWatch>,
    /// The bells of a memif link between two accel stacks, once a handle
    /// asked for them (`DpdkDevice::ring_bells`).
    pub bell: OnceLock<Bell>,
}

// SAFETY: the mempool pointer refers to DPDK shared memory that is valid on
// every thread (mempool operations are thread-safe with the ring handler);
// the port's control-path calls are serialised by `control`, and each
// queue's data path is used only by the one handle that claimed it.
unsafe impl Send for Port {}

// SAFETY: as for Send; `&Port` offers only control-path calls (under the
// lock), atomic claims and plain reads.
unsafe impl Sync for Port {}

/// A mempool being set up with a port: on drop (a failed open), the port
/// is closed if any queue was set up with the pool (so no ring still holds
/// its mbufs), then the pool is freed. Disarmed once the port is started.
struct PoolGuard {
    pool: Option<NonNull<sys::rte_mempool>>,
    /// The port whose queues use the pool.
    port: Option<u16>,
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        if let Some(id) = self.port {
            // SAFETY: the port failed to start; closing releases its queues
            // and the mbufs they hold. Nothing else uses it.
            unsafe {
                sys::rte_eth_dev_stop(id);
                sys::rte_eth_dev_close(id);
            }
        }
        if let Some(pool) = self.pool {
            // SAFETY: the pool is ours and no queue refers to it any more.
            // Should an mbuf still be out, the pool is left (never freed
            // under it); the EAL's clean-up reclaims the memory.
            unsafe {
                if sys::rte_mempool_in_use_count(pool.as_ptr()) == 0 {
                    sys::rte_mempool_free(pool.as_ptr());
                }
            }
        }
    }
}

/// Clears the port's "open" mark on drop unless kept.
struct OpenMark(Option<u16>);

impl Drop for OpenMark {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            mark_closed(id);
        }
    }
}

impl Port {
    /// Configures and starts `port`; see [`super::DpdkDevice::open`].
    pub fn open(eal: &Eal, port: &str, config: &DpdkConfig) -> Result<Port, DpdkError> {
        let id = resolve(port)?;
        if !mark_open(id) {
            return Err(DpdkError::new("DpdkDevice::open", libc::EBUSY)
                .with(format_args!("port {port} is already open in this process")));
        }
        let mut open_mark = OpenMark(Some(id));
        let info = dev_info(id)?;
        let name = port_name(id);
        let at = |e: DpdkError| e.with(format_args!("port {name} ({id})"));
        let (rxq, txq) = (config.rx_queues, config.tx_queues);
        if rxq == 0 || txq == 0 || rxq > info.max_rx_queues || txq > info.max_tx_queues {
            return Err(at(DpdkError::new("rte_eth_dev_configure", libc::EINVAL).with(
                format_args!(
                    "{rxq} rx and {txq} tx queues asked; the port has 1..={} and 1..={}",
                    info.max_rx_queues, info.max_tx_queues
                ),
            )));
        }
        if config.mtu < info.min_mtu || config.mtu > info.max_mtu {
            return Err(at(DpdkError::new("rte_eth_dev_configure", libc::EINVAL).with(
                format_args!(
                    "MTU {} is outside the port's {}..={}",
                    config.mtu, info.min_mtu, info.max_mtu
                ),
            )));
        }

        let mut conf = sys::rte_eth_conf::default();
        conf.rxmode.mtu = u32::from(config.mtu);
        if config.checksum_offload {
            conf.rxmode.offloads = offload::wanted_rx() & info.rx_offload_capa;
            conf.txmode.offloads = offload::wanted_tx() & info.tx_offload_capa;
        }
        let rss_hf =
            (sys::RTE_ETH_RSS_IP | sys::RTE_ETH_RSS_TCP | sys::RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
        let rss = rxq > 1 && rss_hf != 0;
        // The symmetric key, where the NIC hashes by it (see `steering`);
        // it must live until the port is configured.
        let steered = rss && steering::hashes(&info);
        let mut key = if steered { steering::key_for(&info) } else { None };
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut().map_or(ptr::null_mut(), |k| k.as_mut_ptr());
            conf.rx_adv_conf.rss_conf.rss_key_len = key.as_ref().map_or(0, |k| k.len() as u8);
        }

        let mut pool = PoolGuard {
            pool: None,
            port: None,
        };
        let mut pool_size = 0;
        let mut rx_interrupts = config.rx_interrupts;
        conf.intr_conf.set_rxq(u32::from(rx_interrupts));
        eal::log_mark();
        let mut started = start(id, &info, &conf, config, &mut pool, &mut pool_size);
        let out_of_memory = pool.pool.is_none();
        if let (Err(first), true, false) = (&started, rx_interrupts, out_of_memory) {
            // Some drivers cannot start with Rx interrupts: try without.
            let first = first.clone();
            rx_interrupts = false;
            conf.intr_conf.set_rxq(0);
            eal::log_mark();
            started = start(id, &info, &conf, config, &mut pool, &mut pool_size)
                .map_err(|e| e.with(format_args!("(with Rx interrupts: {first})")));
        }
        started.map_err(at)?;
        drop(key);
        let steering = if steered {
            steering::program(id, info.reta_size, rxq);
            steering::read(id, info.reta_size, rxq)
        } else {
            None
        };
        let Some(pool_ptr) = pool.pool else {
            return Err(at(DpdkError::new("rte_pktmbuf_pool_create", libc::ENOMEM)));
        };
        if rx_interrupts {
            // Started with them, but some drivers (net_ring) have no
            // descriptor to give: then the port has none.
            // SAFETY: the port is started with at least one receive queue.
            rx_interrupts = unsafe { sys::rte_eth_dev_rx_intr_ctl_q_get_fd(id, 0) } >= 0;
        }

        // From here on the port is started: dropping `port` stops and
        // closes it (and frees the pool).
        pool.pool = None;
        pool.port = None;
        open_mark.0 = None;
        let mut port = Port {
            eal: eal.clone(),
            id,
            name: name.clone(),
            pool: pool_ptr,
            // SAFETY: the pool is alive; its name is a NUL-terminated array.
            pool_name: c_text(unsafe { &(*pool_ptr.as_ptr()).name }),
            pool_size,
            owner: true,
            mtu: config.mtu,
            mac: EthernetAddress([0; 6]),
            offloads: Offloads::from_flags(conf.rxmode.offloads, conf.txmode.offloads),
            rss,
            steering,
            rx_interrupts,
            rx_queues: rxq,
            tx_queues: txq,
            claimed: claims(rxq.min(txq)),
            control: Mutex::new(()),
            watch: None,
            bell: OnceLock::new(),
        };
        if config.promiscuous {
            // SAFETY: the port is valid and started.
            let rc = unsafe { sys::rte_eth_promiscuous_enable(id) };
            if rc != 0 {
                return Err(at(DpdkError::new("rte_eth_promiscuous_enable", rc)));
            }
        }
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: the port is valid; `mac` is writable.
        let rc = unsafe { sys::rte_eth_macaddr_get(id, &mut mac) };
        if rc != 0 {
            return Err(at(DpdkError::new("rte_eth_macaddr_get", rc)));
        }
        port.mac = EthernetAddress(mac.addr_bytes);
        let mut mtu = 0u16;
        // SAFETY: the port is valid; `mtu` is writable.
        if unsafe { sys::rte_eth_dev_get_mtu(id, &mut mtu) } == 0 && mtu != 0 {
            port.mtu = mtu;
        }
        Ok(port)
    }

    /// Attaches to `port` as the primary process (its owner) configured and
    /// started it, in a secondary process: the queues, offloads and MTU are
    /// the owner's; transmitted frames come from the owner's mempool
    /// `pool`. No Rx interrupts (their descriptors are the owner's). On
    /// net_memif, the link is watched as the port is polled (see
    /// [`LinkWatch`]).
    /// Fails with `ENODEV` if there is no such port or it is not started,
    /// `ENOENT` if there is no such pool, `EBUSY` if already attached here.
    pub fn attach(eal: &Eal, port: &str, pool: &str) -> Result<Port, DpdkError> {
        let id = resolve(port)?;
        if !mark_open(id) {
            return Err(DpdkError::new("DpdkDevice::attach", libc::EBUSY)
                .with(format_args!("port {port} is already open in this process")));
        }
        let mut open_mark = OpenMark(Some(id));
        let name = port_name(id);
        let at = |e: DpdkError| e.with(format_args!("port {name} ({id})"));
        let info = dev_info(id).map_err(at)?;
        let (rxq, txq) = (info.nb_rx_queues, info.nb_tx_queues);
        if rxq == 0 || txq == 0 {
            return Err(at(DpdkError::new("DpdkDevice::attach", libc::ENODEV)
                .with("the port has no queues: its owner has not started it")));
        }
        let mut conf = sys::rte_eth_conf::default();
        // SAFETY: the port is valid; `conf` is writable.
        let rc = unsafe { sys::rte_eth_dev_conf_get(id, &mut conf) };
        if rc != 0 {
            return Err(at(DpdkError::new("rte_eth_dev_conf_get", rc)));
        }
        let c_pool = CString::new(pool).map_err(|_| {
            DpdkError::new("rte_mempool_lookup", libc::EINVAL).with("a pool name with a NUL byte")
        })?;
        // SAFETY: `c_pool` is NUL-terminated; the lookup only reads.
        let pool_ptr =
            NonNull::new(unsafe { sys::rte_mempool_lookup(c_pool.as_ptr()) }).ok_or_else(|| {
                DpdkError::new("rte_mempool_lookup", libc::ENOENT)
                    .with(format_args!("no mempool {pool:?} in the primary process"))
            })?;
        // SAFETY: the pool is alive (the owner keeps it while the port is).
        let pool_size = unsafe { (*pool_ptr.as_ptr()).size };
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: the port is valid; `mac` is writable.
        let rc = unsafe { sys::rte_eth_macaddr_get(id, &mut mac) };
        if rc != 0 {
            return Err(at(DpdkError::new("rte_eth_macaddr_get", rc)));
        }
        let mut mtu = 0u16;
        // SAFETY: the port is valid; `mtu` is writable.
        if unsafe { sys::rte_eth_dev_get_mtu(id, &mut mtu) } != 0 || mtu == 0 {
            mtu = 1500;
        }
        let memif = if info.driver_name.is_null() {
            false
        } else {
            // SAFETY: the driver's name is a static NUL-terminated string.
            unsafe { std::ffi::CStr::from_ptr(info.driver_name) }.to_bytes() == b"net_memif"
        };
        let watch = memif.then(LinkWatch::new);
        if let Some(w) = &watch {
            // Maps the regions now if the link is up.
            w.check(id, 0);
        }
        open_mark.0 = None;
        Ok(Port {
            eal: eal.clone(),
            id,
            name,
            pool: pool_ptr,
            pool_name: pool.to_owned(),
            pool_size,
            owner: false,
            mtu,
            mac: EthernetAddress(mac.addr_bytes),
            offloads: Offloads::from_flags(conf.rxmode.offloads, conf.txmode.offloads),
            rss: conf.rxmode.mq_mode == sys::RTE_ETH_MQ_RX_RSS,
            steering: if conf.rxmode.mq_mode == sys::RTE_ETH_MQ_RX_RSS && steering::hashes(&info) {
                steering::read(id, info.reta_size, rxq)
            } else {
                None
            },
            rx_interrupts: false,
            rx_queues: rxq,
            tx_queues: txq,
            claimed: claims(rxq.min(txq)),
            control: Mutex::new(()),
            watch,
            bell: OnceLock::new(),
        })
    }

    /// Claims queue pair `queue` for one handle.
    pub fn claim(&self, queue: u16) -> Result<(), DpdkError> {
        let Some(flag) = self.claimed.get(usize::from(queue)) else {
            return Err(
                DpdkError::new("DpdkDevice::queue_pair", libc::EINVAL).with(format_args!(
                    "port {} has {} queue pairs; {queue} asked",
                    self.name,
                    self.claimed.len()
                )),
            );
        };
        if flag.swap(true, Ordering::AcqRel) {
            return Err(
                DpdkError::new("DpdkDevice::queue_pair", libc::EBUSY).with(format_args!(
                    "queue pair {queue} of port {} has a handle",
                    self.name
                )),
            );
        }
        Ok(())
    }

    /// Releases queue pair `queue`.
    pub fn release(&self, queue: u16) {
        if let Some(flag) = self.claimed.get(usize::from(queue)) {
            flag.store(false, Ordering::Release);
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The name of the handler that holds the pool's free mbufs.
    pub fn pool_ops(&self) -> String {
        // SAFETY: the pool is alive while the port is; DPDK returns the
        // NUL-terminated name of a registered handler.
        let name = unsafe { std::ffi::CStr::from_ptr(sys::accel_rte_mempool_ops_name(self.pool.as_ptr())) };
        name.to_string_lossy().into_owned()
    }

    /// Free mbufs in the pool.
    pub fn pool_available(&self) -> u32 {
        // SAFETY: the pool is alive while the port is.
        unsafe { sys::rte_mempool_avail_count(self.pool.as_ptr()) }
    }

    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        let _guard = self.lock();
        let mut link = sys::rte_eth_link::default();
        // SAFETY: the port is valid; `link` is writable.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) };
        if rc != 0 {
            return Err(DpdkError::new("rte_eth_link_get_nowait", rc));
        }
        Ok(LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() != 0,
            autoneg: link.link_autoneg() != 0,
        })
    }

    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let _guard = self.lock();
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: the port is valid; `s` is writable.
        let rc = unsafe { sys::rte_eth_stats_get(self.id, &mut s) };
        if rc != 0 {
            return Err(DpdkError::new("rte_eth_stats_get", rc));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        let _guard = self.lock();
        // The count can change between calls (queues set up): retry.
        for _ in 0..4 {
            // SAFETY: the port is valid; NULL/0 asks for the count.
            let n = unsafe { sys::rte_eth_xstats_get_names(self.id, ptr::null_mut(), 0) };
            if n < 0 {
                return Err(DpdkError::new("rte_eth_xstats_get_names", n));
            }
            let len = n as usize;
            let mut names = vec![sys::rte_eth_xstat_name::default(); len];
            let mut values = vec![sys::rte_eth_xstat::default(); len];
            // SAFETY: both arrays hold `n` writable entries.
            let got_names = unsafe { sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32) };
            // SAFETY: as above.
            let got = unsafe { sys::rte_eth_xstats_get(self.id, values.as_mut_ptr(), n as u32) };
            if got_names < 0 || got < 0 {
                return Err(DpdkError::new("rte_eth_xstats_get", got.min(got_names)));
            }
            if got_names as usize > len || got as usize > len {
                continue;
            }
            let stats = values[..got as usize]
                .iter()
                .filter_map(|v| {
                    let name = names.get(v.id as usize)?;
                    Some((c_text(&name.name), v.value))
                })
                .collect();
            return Ok(stats);
        }
        Err(DpdkError::new("rte_eth_xstats_get", libc::EAGAIN).with("the statistics kept changing"))
    }

    pub fn xstat(&self, name: &str) -> Result<Option<u64>, DpdkError> {
        let Ok(cname) = CString::new(name) else {
            return Ok(None);
        };
        let _guard = self.lock();
        let mut id = 0u64;
        // SAFETY: the port is valid; `cname` is NUL-terminated, `id` writable.
        let rc = unsafe { sys::rte_eth_xstats_get_id_by_name(self.id, cname.as_ptr(), &mut id) };
        if rc != 0 {
            return Ok(None);
        }
        let mut value = 0u64;
        // SAFETY: one id in, one writable value out.
        let rc = unsafe { sys::rte_eth_xstats_get_by_id(self.id, &id, &mut value, 1) };
        if rc != 1 {
            return Err(DpdkError::new(
                "rte_eth_xstats_get_by_id",
                if rc < 0 { rc } else { libc::EIO },
            ));
        }
        Ok(Some(value))
    }
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if !self.owner {
            // The port and its pool are the primary process's.
            mark_closed(self.id);
            return;
        }
        // SAFETY: no handle is left (each holds an Arc of the port), so no
        // queue is in use; stop and close release the rings and the mbufs
        // in them. Errors here cannot be acted on.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
        // SAFETY: the pool is ours; see the condition for freeing it.
        let in_use = unsafe { sys::rte_mempool_in_use_count(self.pool.as_ptr()) };
        if in_use == 0 {
            // SAFETY: no mbuf of the pool is in use and no queue refers to
            // it any more.
            unsafe { sys::rte_mempool_free(self.pool.as_ptr()) };
        } else {
            // The user still holds mbufs: they must stay valid.
            self.eal.keep_memory();
        }
        mark_closed(self.id);
    }
}

/// The port id of `port`: a number, or a port name.
fn resolve(port: &str) -> Result<u16, DpdkError> {
    if let Ok(id) = port.parse::<u16>() {
        // SAFETY: any id may be asked about.
        if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 1 {
            return Ok(id);
        }
    } else if let Some(id) = eal::port_by_name(port) {
        return Ok(id);
    }
    Err(
        DpdkError::new("DpdkDevice::open", libc::ENODEV).with(format_args!(
            "no Ethernet port {port:?} (is its --vdev among the EAL arguments, and its driver linked?)"
        )),
    )
}

/// The port's name.
fn port_name(id: u16) -> String {
    let mut buf = [0 as std::ffi::c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: the buffer holds RTE_ETH_NAME_MAX_LEN bytes, as required.
    let rc = unsafe { sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
    if rc != 0 {
        return id.to_string();
    }
    c_text(&buf)
}

/// The port's capabilities.
fn dev_info(id: u16) -> Result<sys::rte_eth_dev_info, DpdkError> {
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: the port is valid; `info` is writable.
    let rc = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
    if rc != 0 {
        return Err(DpdkError::new("rte_eth_dev_info_get", rc).with_log());
    }
    Ok(info)
}

/// Mbufs the pool needs: every descriptor filled, a burst in flight per
/// queue, the per-lcore caches, and the stack's own.
fn pool_mbufs(config: &DpdkConfig, rx_desc: u16, tx_desc: u16, cache: u32, lcores: u32) -> u32 {
    let rings =
        u32::from(config.rx_queues) * u32::from(rx_desc) + u32::from(config.tx_queues) * u32::from(tx_desc);
    let bursts = (u32::from(config.rx_queues) + u32::from(config.tx_queues)) * MAX_BURST as u32;
    let total = rings + bursts + cache * lcores + config.extra_mbufs;
    // A power of two minus one is what the ring handler stores best.
    (total + 1).next_power_of_two() - 1
}

/// Configures `id`, sets its queues up (creating the mempool on the first
/// pass) and starts it.
fn start(
    id: u16,
    info: &sys::rte_eth_dev_info,
    conf: &sys::rte_eth_conf,
    config: &DpdkConfig,
    pool: &mut PoolGuard,
    pool_size: &mut u32,
) -> Result<(), DpdkError> {
    let (rxq, txq) = (config.rx_queues, config.tx_queues);
    // SAFETY: the port is valid and stopped; `conf` is a full configuration.
    let rc = unsafe { sys::rte_eth_dev_configure(id, rxq, txq, conf) };
    if rc != 0 {
        return Err(DpdkError::new("rte_eth_dev_configure", rc).with_log());
    }
    let (mut rx_desc, mut tx_desc) = (config.rx_desc, config.tx_desc);
    // SAFETY: the port is configured; both are writable.
    let rc = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc) };
    if rc != 0 {
        return Err(DpdkError::new("rte_eth_dev_adjust_nb_rx_tx_desc", rc).with_log());
    }
    // SAFETY: the port is valid.
    let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
    let socket: c_int = if socket < 0 { sys::SOCKET_ID_ANY } else { socket };
    let pool_ptr = match pool.pool {
        Some(p) => p,
        None => {
            let cache = 256;
            // SAFETY: reads the EAL's configuration (lcores in use).
            let lcores = unsafe { sys::rte_lcore_count() };
            let n = pool_mbufs(config, rx_desc, tx_desc, cache, lcores);
            // Room for the largest frame (MTU + Ethernet header, VLAN tag
            // and CRC), so a received frame is always one segment.
            let frame = u32::from(config.mtu) + 14 + 4 + 4;
            let room = (sys::RTE_PKTMBUF_HEADROOM + frame.max(2048)).min(u32::from(u16::MAX)) as u16;
            let name = pool_name();
            // With several queue pairs, threads that DPDK does not know
            // (no lcore, so no mempool cache) take and return mbufs of
            // this pool at once, and they can be preempted. The default
            // ring makes every producer wait for the one before it to
            // finish: one preempted mid-put stalls the others for up to a
            // scheduler slice (measured: a 4-queue tap at 400 round
            // trips/s instead of 60,000, for seconds, with each request
            // waiting ~12 ms). The relaxed-tail-sync ring lets the others
            // go on (where the driver that has it is missing: the default).
            // One queue pair keeps the default ring: its users are the
            // thread that holds the stack and one that sends, and it has
            // not shown the stall.
            let mut p = std::ptr::null_mut();
            if rxq > 1 {
                // SAFETY: as below; the ops name is NUL-terminated.
                p = unsafe {
                    sys::rte_pktmbuf_pool_create_by_ops(
                        name.as_ptr(),
                        n,
                        cache,
                        0,
                        room,
                        socket,
                        c"ring_mt_rts".as_ptr(),
                    )
                };
            }
            if p.is_null() {
                // SAFETY: `name` is NUL-terminated; the sizes are in range.
                p = unsafe { sys::rte_pktmbuf_pool_create(name.as_ptr(), n, cache, 0, room, socket) };
            }
            let p = NonNull::new(p).ok_or_else(|| {
                DpdkError::last("rte_pktmbuf_pool_create")
                    .with(format_args!("{n} mbufs of {room} bytes"))
                    .with_log()
            })?;
            pool.pool = Some(p);
            *pool_size = n;
            p
        }
    };
    for q in 0..rxq {
        let mut rxconf = info.default_rxconf;
        rxconf.offloads = conf.rxmode.offloads;
        // SAFETY: the port is configured with `rxq` queues; the pool is
        // alive for as long as the port (closed before it is freed).
        let rc =
            unsafe { sys::rte_eth_rx_queue_setup(id, q, rx_desc, socket as u32, &rxconf, pool_ptr.as_ptr()) };
        pool.port = Some(id);
        if rc != 0 {
            return Err(DpdkError::new("rte_eth_rx_queue_setup", rc)
                .with(format_args!("queue {q}"))
                .with_log());
        }
    }
    for q in 0..txq {
        let mut txconf = info.default_txconf;
        txconf.offloads = conf.txmode.offloads;
        // SAFETY: the port is configured with `txq` queues.
        let rc = unsafe { sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket as u32, &txconf) };
        if rc != 0 {
            return Err(DpdkError::new("rte_eth_tx_queue_setup", rc)
                .with(format_args!("queue {q}"))
                .with_log());
        }
    }
    // SAFETY: the port is configured and its queues set up.
    let rc = unsafe { sys::rte_eth_dev_start(id) };
    if rc != 0 {
        return Err(DpdkError::new("rte_eth_dev_start", rc).with_log());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_covers_rings_bursts_caches_and_the_stack() {
        let config = DpdkConfig::default();
        let n = pool_mbufs(&config, 1024, 1024, 256, 2);
        let need = 2048 + 2 * MAX_BURST as u32 + 512 + 4096;
        assert!(n >= need, "{n} < {need}");
        assert!((n + 1).is_power_of_two());
        assert!(n < 2 * need);
    }

    #[test]
    fn a_default_link_is_down() {
        let link = sys::rte_eth_link::default();
        assert_eq!(link.link_status(), 0);
    }
}
