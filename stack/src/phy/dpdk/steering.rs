//! RSS on a port with several receive queues: the port hashes with the
//! symmetric Toeplitz key ([`crate::iface::rss::SYMMETRIC_KEY`]) where the
//! NIC takes a 40-byte key, and its redirection table sends hash `h` to
//! queue `h % queues` (table entry `i` names queue `i % queues`). What the
//! port then does is read back from it, so that the stacks can predict
//! which queue a flow arrives on ([`crate::iface::rss::Steering`]).
//!
//! Guarantees: [`read`] returns the key and table the port reports, or
//! `None` when it cannot tell (no RSS, a driver without the calls, a key
//! of another length): the stacks then do not steer, and a reply that
//! arrives on another queue is handed to its stack as before.
#![allow(unsafe_code)]

use accel_dpdk_sys as sys;

use crate::iface::rss::SYMMETRIC_KEY;

/// Virtual devices whose receive queue is not the port's RSS hash of the
/// flow, whatever they report: net_tap's kernel side follows the queue a
/// flow last left on, memif's queue i is its peer's i, net_ring's queues
/// are rings; af_packet and af_xdp sit on a kernel interface's own queues.
const NOT_HASHED: &[&[u8]] = &[
    b"net_tap",
    b"net_memif",
    b"net_ring",
    b"net_af_packet",
    b"net_af_xdp",
    b"net_null",
];

/// Whether the port's driver spreads flows by the RSS hash it reports.
pub(crate) fn hashes(info: &sys::rte_eth_dev_info) -> bool {
    if info.driver_name.is_null() {
        return false;
    }
    // SAFETY: the driver's name is a static NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(info.driver_name) }.to_bytes();
    !NOT_HASHED.contains(&name)
}

/// The key length the symmetric key has, and most NICs take.
const KEY_LEN: u16 = SYMMETRIC_KEY.len() as u16;

/// A copy of the symmetric key for `rte_eth_conf` (which wants a mutable
/// pointer and keeps it until the port is configured), if the port takes a
/// key of its length.
pub(crate) fn key_for(info: &sys::rte_eth_dev_info) -> Option<Box<[u8; 40]>> {
    (info.hash_key_size == KEY_LEN as u8).then(|| Box::new(SYMMETRIC_KEY))
}

/// Programs the redirection table of started port `id` (`reta_size`
/// entries) to send hash `h` to queue `h % queues`; best effort (some
/// drivers refuse: then the table stays the driver's, and [`read`] reports
/// it).
pub(crate) fn program(id: u16, reta_size: u16, queues: u16) {
    let mut groups = table(reta_size);
    for (i, g) in groups.iter_mut().enumerate() {
        g.mask = u64::MAX;
        for (j, e) in g.reta.iter_mut().enumerate() {
            *e = ((i * GROUP + j) % usize::from(queues.max(1))) as u16;
        }
    }
    // SAFETY: the port is valid and started; `groups` holds `reta_size`
    // entries.
    let _ = unsafe { sys::rte_eth_dev_rss_reta_update(id, groups.as_mut_ptr(), reta_size) };
}

/// The key and redirection table port `id` hashes with (`reta_size`
/// entries), if it tells both.
pub(crate) fn read(id: u16, reta_size: u16, queues: u16) -> Option<(Vec<u8>, Vec<u16>)> {
    if reta_size == 0 {
        return None;
    }
    let mut key = [0u8; 64];
    let mut conf = sys::rte_eth_rss_conf {
        rss_key: key.as_mut_ptr(),
        rss_key_len: KEY_LEN as u8,
        rss_hf: 0,
    };
    // SAFETY: the port is valid; `conf` points at a 64-byte buffer.
    let rc = unsafe { sys::rte_eth_dev_rss_hash_conf_get(id, &mut conf) };
    if rc != 0 || conf.rss_hf == 0 || conf.rss_key_len as u16 != KEY_LEN {
        return None;
    }
    let mut groups = table(reta_size);
    for g in &mut groups {
        g.mask = u64::MAX;
    }
    // SAFETY: as above; `groups` holds `reta_size` entries.
    let rc = unsafe { sys::rte_eth_dev_rss_reta_query(id, groups.as_mut_ptr(), reta_size) };
    if rc != 0 {
        return None;
    }
    let reta: Vec<u16> = groups
        .iter()
        .flat_map(|g| g.reta.iter().copied())
        .take(usize::from(reta_size))
        .collect();
    // A table naming a queue the port does not have is not one to trust.
    if reta.iter().any(|&q| q >= queues) {
        return None;
    }
    Some((key.get(..usize::from(KEY_LEN))?.to_vec(), reta))
}

/// Entries per group of the redirection table.
const GROUP: usize = sys::RTE_ETH_RETA_GROUP_SIZE as usize;

/// Room for a redirection table of `size` entries.
fn table(size: u16) -> Vec<sys::rte_eth_rss_reta_entry64> {
    let groups = usize::from(size).div_ceil(GROUP);
    (0..groups)
        .map(|_| sys::rte_eth_rss_reta_entry64 {
            mask: 0,
            reta: [0; GROUP],
        })
        .collect()
}
