//! The lanes' steering program: which queue of the TAP interface the
//! kernel hands each frame to (`TUNSETSTEERINGEBPF`).
//!
//! Without it the interface picks the queue the flow's last frame from us
//! was written on, else one by the flow's hash: a SYN then lands on a lane
//! as often as not, and wakes that lane's thread before the accepting one
//! (200 new connections took 32-58 ms against 17-26 without lanes). With
//! it, a TCP segment whose connection is routed to a lane goes to that
//! lane's queue, and every other frame to queue 0, the port's, where the
//! sleeper is.
//!
//! The program (classic packet loads, so it needs no BTF) reads the
//! segment's source address and ports, looks the connection up in a hash
//! map (connection → lane) and the lane in an array (lane → queue index).
//! The queue indices are the interface's: the port's queue is 0, and a
//! lane attached gets the next; a lane detached gives its index to the
//! last one, as the kernel does (`__tun_detach`), which [`Steering`]
//! mirrors. If the kernel refuses anything here, the lanes run without
//! (on the interface's own choice), and the start says so.
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

/// Loads the steering program for `lanes` lanes and sets it on the
/// interface of queue descriptor `queue_fd` (attached); its maps' fds
/// (connection → lane, lane → queue index).
pub fn load(queue_fd: i32, lanes: u16) -> Result<(i32, i32), String> {
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
    let prog = program(flows, queues);
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut a = Vec::with_capacity(48);
    a.extend_from_slice(&BPF_PROG_TYPE_SOCKET_FILTER.to_ne_bytes());
    a.extend_from_slice(&(prog.len() as u32).to_ne_bytes());
    a.extend_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    a.extend_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    a.extend_from_slice(&1u32.to_ne_bytes()); // log_level
    a.extend_from_slice(&(log.len() as u32).to_ne_bytes());
    a.extend_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    let fd = bpf(BPF_PROG_LOAD, &a).map_err(|e| {
        let text = String::from_utf8_lossy(log.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
        close(format!("BPF_PROG_LOAD: errno {e}: {}", text.trim()))
    })?;
    let set = set_program(queue_fd, fd);
    // The interface holds the program now (or refused it).
    sys::close(fd);
    set.map_err(|e| close(format!("TUNSETSTEERINGEBPF: errno {e}")))?;
    Ok((flows, queues))
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
const STX_MEM_W: u8 = 0x63;
const STX_MEM_H: u8 = 0x6b;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x57;
const LSH64_K: u8 = 0x67;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
/// `BPF_FUNC_map_lookup_elem`.
const MAP_LOOKUP: i32 = 1;

/// The program, for the maps `flows` (key: the segment's source address,
/// source port and destination port, in host order as the packet loads
/// give them; value: a lane) and `queues` (lane → queue index). Every
/// frame that is not a routed connection's goes to queue 0 (a load past
/// the frame's end ends the program with 0, too).
fn program(flows: i32, queues: i32) -> [Insn; 33] {
    const OUT: i16 = 31;
    [
        insn(MOV64_X, 6, 1, 0, 0),                    // 0: r6 = ctx (the packet loads use it)
        insn(LD_ABS_H, 0, 0, 0, 12),                  // 1: r0 = EtherType
        insn(JNE_K, 0, 0, OUT - 3, 0x0800),           // 2: not IPv4
        insn(LD_ABS_B, 0, 0, 0, 23),                  // 3: r0 = protocol
        insn(JNE_K, 0, 0, OUT - 5, 6),                // 4: not TCP
        insn(LD_ABS_W, 0, 0, 0, 26),                  // 5: r0 = source address
        insn(STX_MEM_W, 10, 0, -8, 0),                // 6: key[0..4]
        insn(LD_ABS_B, 0, 0, 0, 14),                  // 7: r0 = version, IHL
        insn(AND64_K, 0, 0, 0, 0x0f),                 // 8
        insn(LSH64_K, 0, 0, 0, 2),                    // 9: the IPv4 header's length
        insn(MOV64_X, 7, 0, 0, 0),                    // 10: r7 = it
        insn(LD_IND_H, 0, 7, 0, 14),                  // 11: r0 = source port
        insn(STX_MEM_H, 10, 0, -4, 0),                // 12: key[4..6]
        insn(LD_IND_H, 0, 7, 0, 16),                  // 13: r0 = destination port
        insn(STX_MEM_H, 10, 0, -2, 0),                // 14: key[6..8]
        insn(LD_IMM_DW, 1, PSEUDO_MAP_FD, 0, flows),  // 15: r1 = flows
        insn(0, 0, 0, 0, 0),                          // 16
        insn(MOV64_X, 2, 10, 0, 0),                   // 17: r2 = &key
        insn(ADD64_K, 2, 0, 0, -8),                   // 18
        insn(CALL, 0, 0, 0, MAP_LOOKUP),              // 19: r0 = &lane or null
        insn(JEQ_K, 0, 0, OUT - 21, 0),               // 20: not routed
        insn(LDX_MEM_W, 1, 0, 0, 0),                  // 21: r1 = lane
        insn(STX_MEM_W, 10, 1, -12, 0),               // 22: key2 = lane
        insn(LD_IMM_DW, 1, PSEUDO_MAP_FD, 0, queues), // 23: r1 = queues
        insn(0, 0, 0, 0, 0),                          // 24
        insn(MOV64_X, 2, 10, 0, 0),                   // 25: r2 = &key2
        insn(ADD64_K, 2, 0, 0, -12),                  // 26
        insn(CALL, 0, 0, 0, MAP_LOOKUP),              // 27: r0 = &queue or null
        insn(JEQ_K, 0, 0, OUT - 29, 0),               // 28
        insn(LDX_MEM_W, 0, 0, 0, 0),                  // 29: r0 = the lane's queue
        insn(EXIT, 0, 0, 0, 0),                       // 30
        insn(MOV64_K, 0, 0, 0, 0),                    // 31 (OUT): queue 0
        insn(EXIT, 0, 0, 0, 0),                       // 32
    ]
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
    /// The lanes attached, by queue index less one (index 0 is the port's
    /// queue).
    order: Vec<u16>,
}

impl Steering {
    /// Loads the program for `lanes` lanes and sets it on the interface
    /// of queue descriptor `queue_fd`.
    pub fn install(queue_fd: i32, lanes: u16) -> Result<Steering, String> {
        let (flows, queues) = load(queue_fd, lanes)?;
        Ok(Steering::with_maps(flows, queues, lanes))
    }

    /// The steering of a program that another process loaded and set on
    /// the interface ([`load`]: the port's owner, which can then take it
    /// off whatever this process does), by its maps' descriptors.
    pub fn with_maps(flows: i32, queues: i32, lanes: u16) -> Steering {
        Steering {
            flows,
            queues,
            order: Vec::with_capacity(usize::from(lanes)),
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
        self.set_queue(lane, self.order.len() as u32);
    }

    /// Lane `lane` was detached: the last lane takes its queue index.
    pub fn detached(&mut self, lane: u16) {
        let Some(pos) = self.order.iter().position(|&l| l == lane) else {
            return;
        };
        self.order.swap_remove(pos);
        self.set_queue(lane, 0);
        if let Some(&moved) = self.order.get(pos) {
            self.set_queue(moved, pos as u32 + 1);
        }
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
    fn the_programs_jumps_land_on_its_exits() {
        let p = program(3, 4);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        for (pc, i) in p.iter().enumerate() {
            if matches!(i.code, JEQ_K | JNE_K) {
                let target = pc as i64 + 1 + i64::from(i.off);
                assert_eq!(target, 31, "insn {pc} jumps to {target}");
            }
        }
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
        assert_eq!((p[15].regs >> 4, p[15].imm), (PSEUDO_MAP_FD, 3));
        assert_eq!((p[23].regs >> 4, p[23].imm), (PSEUDO_MAP_FD, 4));
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
        };
        for l in [4, 7, 9, 2] {
            s.attached(l);
        }
        s.detached(7);
        assert_eq!(s.order, [4, 2, 9], "the last (2) took index 2");
        s.detached(9);
        assert_eq!(s.order, [4, 2]);
        s.detached(5);
        assert_eq!(s.order, [4, 2]);
    }
}
