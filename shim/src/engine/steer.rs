//! The lanes' steering program: which queue of the TAP interface the
//! kernel hands each frame to (`TUNSETSTEERINGEBPF`).
//!
//! Without it the interface picks the queue the flow's last frame from us
//! was written on, else one by the flow's hash: a SYN then lands on a lane
//! as often as not, and wakes that lane's thread before the accepting one
//! (200 new connections took 32-58 ms against 17-26 without lanes). With
//! it, a TCP segment whose connection is routed to a lane goes to that
//! lane's queue, and every other frame to a port's queue, where the
//! sleeper is: with one queue pair queue 0; with several, a TCP segment
//! over IPv4 goes to the queue a NIC would give it by RSS with the
//! symmetric key ([`accel_stack::iface::rss`], redirection table `0..n`),
//! so that `connect` can pick source ports answered on the caller's queue
//! as on such a NIC, and every other frame to queue 0.
//!
//! The program (classic packet loads, so it needs no BTF) reads the
//! segment's source address and ports, looks the connection up in a hash
//! map (connection → lane) and the lane in an array (lane → queue index).
//! The queue indices are the interface's: the port's queues are `0..n`
//! (attached first, in order), and a lane attached gets the next; a lane
//! detached gives its index to the last one, as the kernel does
//! (`__tun_detach`), which [`Steering`] mirrors. If the kernel refuses
//! anything here, the lanes run without (on the interface's own choice),
//! and the start says so.
//!
//! The RSS hash in eBPF: under the symmetric key (0x6d5a repeated, a
//! period of 16 bits) the key's window for input bit `i` is that for bit
//! `i mod 16`, so the Toeplitz hash of the addresses and ports is the hash
//! of their 16-bit words XORed together ([`fold`]), and that, being
//! linear, the XOR of the hashes of that fold's set bits (`unit_hashes`):
//! sixteen conditional XORs of constants.
#![allow(unsafe_code)]

use crate::sys;
use core::net::SocketAddrV4;

/// `TUNSETSTEERINGEBPF`: `_IOR('T', 224, int)`.
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `BPF_PSEUDO_MAP_FD`: a 64-bit immediate that names a map by its fd.
const PSEUDO_MAP_FD: u8 = 1;
/// Connections routed at most.
const FLOWS_MAX: u32 = 65_536;

/// Loads the steering program for `lanes` lanes beside the port's queues
/// (the interface's first queues: `ports[i]` is the queue index of the
/// process's queue pair `i`) and sets it on the interface of queue
/// descriptor `queue_fd` (attached); its maps' fds (connection → lane,
/// lane → queue index).
pub fn load(queue_fd: i32, lanes: u16, ports: &[u32]) -> Result<(i32, i32), String> {
    let flows = map_create(BPF_MAP_TYPE_HASH, 8, 4, FLOWS_MAX)?;
    let queues = match map_create(BPF_MAP_TYPE_ARRAY, 4, 4, u32::from(lanes.max(1))) {
        Ok(fd) => fd,
        Err(e) => {
            sys::close(flows);
            return Err(e);
        }
    };
    let close = |e: String| {
        sys::close(flows);
        sys::close(queues);
        e
    };
    let prog = match prog_load(&program(flows, queues, ports)) {
        Ok(fd) => fd,
        Err(e) => return Err(close(e)),
    };
    let set = set_program(queue_fd, prog);
    // The interface holds the program now (or refused it).
    sys::close(prog);
    set.map_err(|e| close(format!("TUNSETSTEERINGEBPF: errno {e}")))?;
    Ok((flows, queues))
}

/// Loads program `prog` (a socket filter); its fd. The verifier's log is
/// asked for only if it refuses the program (a log too small for what it
/// writes fails the load: `ENOSPC`), and its end goes into the error.
fn prog_load(prog: &[Insn]) -> Result<i32, String> {
    let try_load = |log: &mut [u8]| {
        let license = c"GPL";
        let mut a = Vec::with_capacity(48);
        a.extend_from_slice(&BPF_PROG_TYPE_SOCKET_FILTER.to_ne_bytes());
        a.extend_from_slice(&(prog.len() as u32).to_ne_bytes());
        a.extend_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
        a.extend_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        a.extend_from_slice(&u32::from(!log.is_empty()).to_ne_bytes()); // log_level
        a.extend_from_slice(&(log.len() as u32).to_ne_bytes());
        a.extend_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
        bpf(BPF_PROG_LOAD, &a)
    };
    try_load(&mut []).or_else(|_| {
        let mut log = vec![0u8; 1 << 16];
        try_load(&mut log).map_err(|e| {
            let text =
                String::from_utf8_lossy(log.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
            let tail: Vec<&str> = text.trim().lines().rev().take(4).collect();
            format!(
                "BPF_PROG_LOAD: errno {e}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("; ")
            )
        })
    })
}

/// Sets the steering program of the interface of queue descriptor
/// `queue_fd` to program `prog` (-1: none).
fn set_program(queue_fd: i32, prog: i32) -> Result<(), i32> {
    let mut prog_fd: libc::c_int = prog;
    sys::keep_errno(|| {
        // SAFETY: TUNSETSTEERINGEBPF reads one int, the program's fd.
        let r = unsafe {
            libc::syscall(
                libc::SYS_ioctl,
                queue_fd,
                TUNSETSTEERINGEBPF,
                &mut prog_fd as *mut libc::c_int,
            )
        };
        if r < 0 {
            Err(sys::errno())
        } else {
            Ok(())
        }
    })
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LD_ABS_B: u8 = 0x30;
const LD_ABS_H: u8 = 0x28;
const LD_ABS_W: u8 = 0x20;
const LD_IND_H: u8 = 0x48;
const LD_IMM_DW: u8 = 0x18;
const LDX_MEM_W: u8 = 0x61;
const XOR64_X: u8 = 0xaf;
const RSH64_K: u8 = 0x77;
const XOR32_K: u8 = 0xa4;
const MOD32_K: u8 = 0x94;
const STX_MEM_W: u8 = 0x63;
const STX_MEM_H: u8 = 0x6b;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x57;
const LSH64_K: u8 = 0x67;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JA: u8 = 0x05;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
/// `BPF_FUNC_map_lookup_elem`.
const MAP_LOOKUP: i32 = 1;

/// The program, for the maps `flows` (key: the segment's source address,
/// source port and destination port, in host order as the packet loads
/// give them; value: a lane) and `queues` (lane → queue index), on an
/// interface whose queue `ports[i]` is the port's queue pair `i`. A TCP
/// segment over IPv4 of no routed connection goes to the queue pair that
/// its RSS hash names (see the module docs), every other frame to queue
/// pair 0's (a load past the frame's end ends the program there, too).
fn program(flows: i32, queues: i32, ports: &[u32]) -> Vec<Insn> {
    let mut p = vec![
        insn(MOV64_X, 6, 1, 0, 0),                    // r6 = ctx (the packet loads use it)
        insn(LD_ABS_H, 0, 0, 0, 12),                  // r0 = EtherType
        insn(JNE_K, 0, 0, FIRST, 0x0800),             // not IPv4
        insn(LD_ABS_B, 0, 0, 0, 23),                  // r0 = protocol
        insn(JNE_K, 0, 0, FIRST, 6),                  // not TCP
        insn(LD_ABS_W, 0, 0, 0, 26),                  // r0 = source address
        insn(STX_MEM_W, 10, 0, -8, 0),                // key[0..4]
        insn(MOV64_X, 9, 0, 0, 0),                    // r9: the fold (its low 16 bits)
        insn(RSH64_K, 0, 0, 0, 16),                   //
        insn(XOR64_X, 9, 0, 0, 0),                    // r9 ^= address >> 16
        insn(LD_ABS_W, 0, 0, 0, 30),                  // r0 = destination address
        insn(XOR64_X, 9, 0, 0, 0),                    //
        insn(RSH64_K, 0, 0, 0, 16),                   //
        insn(XOR64_X, 9, 0, 0, 0),                    //
        insn(LD_ABS_B, 0, 0, 0, 14),                  // r0 = version, IHL
        insn(AND64_K, 0, 0, 0, 0x0f),                 //
        insn(LSH64_K, 0, 0, 0, 2),                    // the IPv4 header's length
        insn(MOV64_X, 7, 0, 0, 0),                    // r7 = it
        insn(LD_IND_H, 0, 7, 0, 14),                  // r0 = source port
        insn(STX_MEM_H, 10, 0, -4, 0),                // key[4..6]
        insn(XOR64_X, 9, 0, 0, 0),                    //
        insn(LD_IND_H, 0, 7, 0, 16),                  // r0 = destination port
        insn(STX_MEM_H, 10, 0, -2, 0),                // key[6..8]
        insn(XOR64_X, 9, 0, 0, 0),                    //
        insn(AND64_K, 9, 0, 0, 0xffff),               // r9 = the fold
        insn(LD_IMM_DW, 1, PSEUDO_MAP_FD, 0, flows),  // r1 = flows
        insn(0, 0, 0, 0, 0),                          //
        insn(MOV64_X, 2, 10, 0, 0),                   // r2 = &key
        insn(ADD64_K, 2, 0, 0, -8),                   //
        insn(CALL, 0, 0, 0, MAP_LOOKUP),              // r0 = &lane or null
        insn(JEQ_K, 0, 0, SPREAD, 0),                 // not routed
        insn(LDX_MEM_W, 1, 0, 0, 0),                  // r1 = lane
        insn(STX_MEM_W, 10, 1, -12, 0),               // key2 = lane
        insn(LD_IMM_DW, 1, PSEUDO_MAP_FD, 0, queues), // r1 = queues
        insn(0, 0, 0, 0, 0),                          //
        insn(MOV64_X, 2, 10, 0, 0),                   // r2 = &key2
        insn(ADD64_K, 2, 0, 0, -12),                  //
        insn(CALL, 0, 0, 0, MAP_LOOKUP),              // r0 = &queue or null
        insn(JEQ_K, 0, 0, FIRST, 0),                  //
        insn(LDX_MEM_W, 0, 0, 0, 0),                  // r0 = the lane's queue
        insn(EXIT, 0, 0, 0, 0),                       //
    ];
    // SPREAD: r0 = the queue pair of the fold's hash (the redirection
    // table's entry: the hash modulo their number)...
    let spread = p.len();
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    if ports.len() > 1 {
        for (bit, h) in unit_hashes().iter().enumerate() {
            p.push(insn(MOV64_X, 1, 9, 0, 0));
            p.push(insn(AND64_K, 1, 0, 0, 1 << bit));
            p.push(insn(JEQ_K, 1, 0, 1, 0));
            p.push(insn(XOR32_K, 0, 0, 0, *h as i32));
        }
        p.push(insn(MOD32_K, 0, 0, 0, ports.len() as i32));
    }
    p.push(insn(JA, 0, 0, 1, 0));
    // FIRST: queue pair 0.
    let first = p.len();
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    // ...and the queue pair's index on the interface.
    for (pair, &index) in ports.iter().enumerate() {
        p.push(insn(JNE_K, 0, 0, 2, pair as i32));
        p.push(insn(MOV64_K, 0, 0, 0, index as i32));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    // The placeholders become the jumps' offsets.
    for (pc, i) in p.iter_mut().enumerate() {
        let to = match i.off {
            FIRST if matches!(i.code, JEQ_K | JNE_K) => first,
            SPREAD if matches!(i.code, JEQ_K | JNE_K) => spread,
            _ => continue,
        };
        i.off = (to as i64 - pc as i64 - 1) as i16;
    }
    p
}

/// Jump placeholders in [`program`]: to the queue index of queue pair 0,
/// and to the part that picks a queue pair by the hash.
const FIRST: i16 = i16::MAX;
const SPREAD: i16 = i16::MAX - 1;

/// The RSS hash (symmetric key) of each 16-bit fold with one bit set,
/// bit 0 first.
fn unit_hashes() -> [u32; 16] {
    let key = accel_stack::iface::rss::SYMMETRIC_KEY;
    core::array::from_fn(|bit| accel_stack::iface::rss::toeplitz(&key, &(1u16 << bit).to_be_bytes()))
}

/// The 16-bit words of a flow's addresses and ports XORed together: the
/// symmetric key's Toeplitz hash of a flow is that of this fold.
pub fn fold(a: SocketAddrV4, b: SocketAddrV4) -> u16 {
    let (x, y) = (u32::from(*a.ip()), u32::from(*b.ip()));
    (x ^ (x >> 16) ^ y ^ (y >> 16)) as u16 ^ a.port() ^ b.port()
}

/// `bpf(cmd, attr)`, raw, with `attr` zero-padded to 128 bytes.
fn bpf(cmd: libc::c_long, attr: &[u8]) -> Result<i32, i32> {
    let mut buf = [0u8; 128];
    let n = attr.len().min(buf.len());
    buf.get_mut(..n)
        .unwrap_or_default()
        .copy_from_slice(attr.get(..n).unwrap_or_default());
    sys::keep_errno(|| {
        // SAFETY: `buf` is a live `union bpf_attr` of 128 bytes; the
        // pointers it holds (keys, values, instructions, log) point to live
        // buffers of the caller's for the call's length.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, buf.as_mut_ptr(), buf.len()) };
        if r < 0 {
            Err(sys::errno())
        } else {
            Ok(r as i32)
        }
    })
}

fn map_create(kind: u32, key: u32, value: u32, max: u32) -> Result<i32, String> {
    let mut a = Vec::with_capacity(20);
    for v in [kind, key, value, max, 0] {
        a.extend_from_slice(&v.to_ne_bytes());
    }
    let fd = bpf(BPF_MAP_CREATE, &a).map_err(|e| format!("BPF_MAP_CREATE: errno {e}"))?;
    let _ = crate::fdtable::FDS.install(fd, crate::fdtable::State::Internal, 0);
    Ok(fd)
}

fn map_update(map: i32, key: &[u8], value: &[u8]) -> Result<(), i32> {
    let mut a = Vec::with_capacity(32);
    a.extend_from_slice(&(map as u32).to_ne_bytes());
    a.extend_from_slice(&0u32.to_ne_bytes());
    a.extend_from_slice(&(key.as_ptr() as u64).to_ne_bytes());
    a.extend_from_slice(&(value.as_ptr() as u64).to_ne_bytes());
    a.extend_from_slice(&0u64.to_ne_bytes()); // BPF_ANY
    bpf(BPF_MAP_UPDATE_ELEM, &a).map(|_| ())
}

fn map_delete(map: i32, key: &[u8]) {
    let mut a = Vec::with_capacity(16);
    a.extend_from_slice(&(map as u32).to_ne_bytes());
    a.extend_from_slice(&0u32.to_ne_bytes());
    a.extend_from_slice(&(key.as_ptr() as u64).to_ne_bytes());
    let _ = bpf(BPF_MAP_DELETE_ELEM, &a);
}

/// The flows map's key of connection `local`-`remote`: what the program
/// reads from a segment the peer sends (its address and port, then ours).
fn flow_key(local: SocketAddrV4, remote: SocketAddrV4) -> [u8; 8] {
    let mut k = [0u8; 8];
    let (ip, sport, dport) = (u32::from(*remote.ip()), remote.port(), local.port());
    k[..4].copy_from_slice(&ip.to_ne_bytes());
    k[4..6].copy_from_slice(&sport.to_ne_bytes());
    k[6..].copy_from_slice(&dport.to_ne_bytes());
    k
}

/// The steering of one TAP interface (see the module docs).
pub struct Steering {
    flows: i32,
    queues: i32,
    /// The lanes attached, by queue index less `ports` (the port's queues
    /// come first).
    order: Vec<u16>,
    ports: u16,
}

impl Steering {
    /// Loads the program for `lanes` lanes beside the port's queues (queue
    /// pair `i` is the interface's queue `ports[i]`) and sets it on the
    /// interface of queue descriptor `queue_fd`.
    pub fn install(queue_fd: i32, lanes: u16, ports: &[u32]) -> Result<Steering, String> {
        let (flows, queues) = load(queue_fd, lanes, ports)?;
        Ok(Steering::with_maps(flows, queues, lanes, ports.len() as u16))
    }

    /// The steering of a program that another process loaded and set on
    /// the interface ([`load`]: the port's owner, which can then take it
    /// off whatever this process does), by its maps' descriptors.
    pub fn with_maps(flows: i32, queues: i32, lanes: u16, ports: u16) -> Steering {
        Steering {
            flows,
            queues,
            order: Vec::with_capacity(usize::from(lanes)),
            ports,
        }
    }

    /// Removes the steering program of the interface of queue descriptor
    /// `queue_fd`, if it has one: the interface picks queues by itself
    /// again (the port's owner, when another process shares the port with
    /// one that has lanes, or when that one leaves).
    pub fn remove(queue_fd: i32) -> Result<(), i32> {
        set_program(queue_fd, -1)
    }

    /// Lane `lane` was attached: it has the next queue index.
    pub fn attached(&mut self, lane: u16) {
        self.order.push(lane);
        self.set_queue(lane, u32::from(self.ports) + self.order.len() as u32 - 1);
    }

    /// Lane `lane` was detached: the last lane takes its queue index.
    pub fn detached(&mut self, lane: u16) {
        let Some(pos) = self.order.iter().position(|&l| l == lane) else {
            return;
        };
        self.order.swap_remove(pos);
        self.set_queue(lane, 0);
        if let Some(&moved) = self.order.get(pos) {
            self.set_queue(moved, u32::from(self.ports) + pos as u32);
        }
    }

    /// The lane that takes lane `lane`'s queue index when `lane` is
    /// detached (the last attached), if another.
    pub fn successor(&self, lane: u16) -> Option<u16> {
        let last = *self.order.last()?;
        (last != lane && self.order.contains(&lane)).then_some(last)
    }

    fn set_queue(&self, lane: u16, queue: u32) {
        let _ = map_update(self.queues, &u32::from(lane).to_ne_bytes(), &queue.to_ne_bytes());
    }

    /// Connection `local`-`remote` is routed to lane `lane`.
    pub fn route(&self, local: SocketAddrV4, remote: SocketAddrV4, lane: u16) {
        let _ = map_update(
            self.flows,
            &flow_key(local, remote),
            &u32::from(lane).to_ne_bytes(),
        );
    }

    /// Connection `local`-`remote` is routed nowhere (closed, or its lane
    /// given back).
    pub fn unroute(&self, local: SocketAddrV4, remote: SocketAddrV4) {
        map_delete(self.flows, &flow_key(local, remote));
    }

    /// In the child of `fork`: the maps are the parent's.
    pub fn forget(&self) {
        sys::close(self.flows);
        sys::close(self.queues);
        let _ = crate::fdtable::FDS.clear(self.flows);
        let _ = crate::fdtable::FDS.clear(self.queues);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_jumps_land_on_instructions_and_it_ends_in_exits() {
        for ports in [1, 2, 4] {
            let p = program(3, 4, &(0..ports).collect::<Vec<u32>>());
            assert_eq!(std::mem::size_of::<Insn>(), 8);
            // The second halves of the 64-bit loads are no instructions.
            let halves: Vec<usize> = (0..p.len())
                .filter(|&pc| pc > 0 && p[pc - 1].code == LD_IMM_DW)
                .collect();
            for (pc, i) in p.iter().enumerate() {
                if matches!(i.code, JEQ_K | JNE_K | JA) {
                    let to = pc as i64 + 1 + i64::from(i.off);
                    assert!(
                        to > pc as i64 && (to as usize) < p.len(),
                        "insn {pc} jumps to {to}"
                    );
                    assert!(!halves.contains(&(to as usize)), "insn {pc} jumps into a load");
                }
            }
            assert_eq!(p.last().map(|i| i.code), Some(EXIT));
            let maps: Vec<i32> = p.iter().filter(|i| i.code == LD_IMM_DW).map(|i| i.imm).collect();
            assert_eq!(maps, [3, 4]);
            assert!(p
                .iter()
                .filter(|i| i.code == LD_IMM_DW)
                .all(|i| i.regs >> 4 == PSEUDO_MAP_FD));
        }
    }

    /// A small deterministic generator of test flows.
    fn flows(n: usize) -> Vec<(SocketAddrV4, SocketAddrV4)> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let (a, b) = (next(), next());
                (
                    SocketAddrV4::new((a as u32).into(), (a >> 32) as u16),
                    SocketAddrV4::new((b as u32).into(), (b >> 32) as u16),
                )
            })
            .collect()
    }

    #[test]
    fn the_folds_hash_is_the_flows_rss_hash() {
        use accel_stack::iface::rss::{hash_v4, toeplitz, SYMMETRIC_KEY};
        let units = unit_hashes();
        for (local, remote) in flows(2000) {
            let f = fold(remote, local);
            assert_eq!(f, fold(local, remote));
            let whole = hash_v4(&SYMMETRIC_KEY, remote, local);
            assert_eq!(toeplitz(&SYMMETRIC_KEY, &f.to_be_bytes()), whole);
            // What the program computes: the units' XOR over the set bits.
            let bits = (0..16).filter(|b| f & (1 << b) != 0).fold(0, |h, b| h ^ units[b]);
            assert_eq!(bits, whole, "{remote} -> {local}");
        }
    }

    /// A TCP segment over IPv4 from `src` to `dst` (headers only), after
    /// 14 bytes that a test run strips (it takes the first Ethernet header
    /// off a socket filter's packet, where the interface leaves it on).
    fn test_frame(src: SocketAddrV4, dst: SocketAddrV4, ether_type: u16, ihl: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f.extend(crate::engine::lanes::test_segment(src, dst, ether_type, ihl));
        f
    }

    /// Runs program `fd` once on `frame` (`BPF_PROG_TEST_RUN`): its result.
    fn run(fd: i32, frame: &[u8]) -> u32 {
        let mut a = Vec::with_capacity(40);
        a.extend_from_slice(&(fd as u32).to_ne_bytes());
        a.extend_from_slice(&0u32.to_ne_bytes()); // retval
        a.extend_from_slice(&(frame.len() as u32).to_ne_bytes());
        a.extend_from_slice(&0u32.to_ne_bytes()); // data_size_out
        a.extend_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
        a.extend_from_slice(&0u64.to_ne_bytes()); // data_out
        a.extend_from_slice(&1u32.to_ne_bytes()); // repeat
        let mut buf = [0u8; 128];
        buf[..a.len()].copy_from_slice(&a);
        // SAFETY: `buf` is a live `union bpf_attr`; `frame` outlives the
        // call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, 10, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(r, 0, "BPF_PROG_TEST_RUN: errno {}", sys::errno());
        u32::from_ne_bytes(buf[4..8].try_into().unwrap_or_default())
    }

    #[test]
    fn the_program_sends_routed_flows_to_lanes_and_the_rest_by_rss() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading eBPF needs root");
            return;
        }
        for ports in [1u16, 2, 4] {
            let flows_map = map_create(BPF_MAP_TYPE_HASH, 8, 4, 64).expect("flows map");
            let queues_map = map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 8).expect("queues map");
            // As the port's owner lines a holder's queue pairs up: the last
            // first ([`crate::engine::owner`]).
            let index: Vec<u32> = (0..u32::from(ports))
                .map(|i| (i + 1) % u32::from(ports))
                .collect();
            let fd = prog_load(&program(flows_map, queues_map, &index)).expect("the program loads");
            let mut st = Steering::with_maps(flows_map, queues_map, 8, ports);
            let rss = accel_stack::iface::rss::Steering {
                key: accel_stack::iface::rss::SYMMETRIC_KEY.to_vec(),
                reta: (0..ports).collect(),
                queue: 0,
            };
            let all = flows(300);
            let mut seen = vec![0; usize::from(ports)];
            for &(local, remote) in &all {
                for ihl in [5, 7] {
                    let q = run(fd, &test_frame(remote, local, 0x0800, ihl));
                    let pair = rss.queue_of(local, remote);
                    assert_eq!(q, index[usize::from(pair)], "{remote} -> {local}, {ports} ports");
                    seen[usize::from(pair)] += 1;
                }
                assert_eq!(
                    run(fd, &test_frame(remote, local, 0x0806, 5)),
                    index[0],
                    "not IPv4"
                );
            }
            assert!(
                seen.iter().all(|&n| n > 2 * 300 / usize::from(ports) / 2),
                "{seen:?}"
            );
            // Lanes 5 then 2 attached: queue indices ports and ports + 1.
            st.attached(5);
            st.attached(2);
            let (l0, r0) = all[0];
            let (l1, r1) = all[1];
            st.route(l0, r0, 5);
            st.route(l1, r1, 2);
            assert_eq!(run(fd, &test_frame(r0, l0, 0x0800, 5)), u32::from(ports));
            assert_eq!(run(fd, &test_frame(r1, l1, 0x0800, 5)), u32::from(ports) + 1);
            st.detached(5);
            assert_eq!(
                run(fd, &test_frame(r1, l1, 0x0800, 5)),
                u32::from(ports),
                "lane 2 took 5's index"
            );
            st.unroute(l1, r1);
            assert_eq!(
                run(fd, &test_frame(r1, l1, 0x0800, 5)),
                index[usize::from(rss.queue_of(l1, r1))]
            );
            sys::close(fd);
            st.forget();
        }
    }

    #[test]
    fn a_flow_key_is_the_peers_address_and_port_then_ours() {
        let local = SocketAddrV4::new([198, 18, 0, 2].into(), 17300);
        let remote = SocketAddrV4::new([198, 18, 0, 1].into(), 40000);
        let k = flow_key(local, remote);
        assert_eq!(k[..4], 0xc612_0001u32.to_ne_bytes());
        assert_eq!(k[4..6], 40000u16.to_ne_bytes());
        assert_eq!(k[6..], 17300u16.to_ne_bytes());
    }

    #[test]
    fn a_detached_lanes_index_goes_to_the_last() {
        // Without maps (fds -1): only the order is checked.
        let mut s = Steering {
            flows: -1,
            queues: -1,
            order: Vec::new(),
            ports: 1,
        };
        for l in [4, 7, 9, 2] {
            s.attached(l);
        }
        assert_eq!(s.successor(7), Some(2));
        assert_eq!(s.successor(2), None, "the last moves nowhere");
        assert_eq!(s.successor(5), None, "not attached");
        s.detached(7);
        assert_eq!(s.order, [4, 2, 9], "the last (2) took index 2");
        s.detached(9);
        assert_eq!(s.order, [4, 2]);
        s.detached(5);
        assert_eq!(s.order, [4, 2]);
    }
}
