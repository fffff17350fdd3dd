#!/usr/bin/python3
"""Large replay workloads for weir's speed bars, written as raw pcap bytes (fast).

(The workloads the speed goals are stated on, as the product side wrote them in
shared/bench/gen_bench.py; kept here so that scripts/bench-instructions.sh runs on a
fresh clone.)

  gen_bench.py mix   OUT.pcap N   # handshakes then data on established flows, new SYNs, some violations
  gen_bench.py flood OUT.pcap N   # 95% spoofed non-conforming SYNs from random sources, 5% good data

Default config semantics: service 2001:db8:5::/64, rule src-mix with src_prefix_len 64:
dst[64,128) == fmix64(src[0,64)). fmix64 is written out below (and checked against
DESIGN.md's example) so that this file can be copied on its own; it matches fmix.py.
Conforming traffic conforms under src-mix; the mix's violations and the flood's spoofed
SYNs are random destinations in the prefix, checked to fail src-mix.
"""
import random
import struct
import sys

SVC_HI = 0x20010db800050000
M64 = (1 << 64) - 1


def fmix64(k):   # MurmurHash3's 64-bit finalizer (DESIGN.md, src-mix)
    k ^= k >> 33
    k = (k * 0xff51afd7ed558ccd) & M64
    k ^= k >> 33
    k = (k * 0xc4ceb9fe1a85ec53) & M64
    k ^= k >> 33
    return k


assert fmix64(0x20010db800ff0000) == 0xf41cbf9ba4280420   # DESIGN.md's example

MAC_C = bytes.fromhex("020000000001")
MAC_S = bytes.fromhex("020000000002")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def tcp6(src, dst, sport, dport, flags, seq, ack, payload=b""):
    s, d = src.to_bytes(16, "big"), dst.to_bytes(16, "big")
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    seg = hdr + payload
    pseudo = s + d + struct.pack("!I3xB", len(seg), 6)
    c = csum(pseudo + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    ip = struct.pack("!IHBB", 6 << 28, len(seg), 6, 64) + s + d
    return MAC_S + MAC_C + b"\x86\xdd" + ip + seg


def outb(frame):   # swap MACs for a frame the terminator sends
    return MAC_C + MAC_S + frame[12:]


def client(rng):
    while True:
        hi = (0x2a00 + rng.randrange(0x200)) << 48 | rng.getrandbits(48)
        if hi != SVC_HI:
            return hi << 64 | rng.getrandbits(64)


def conf(src):
    """The conforming destination under the default rule (src-mix, /64)."""
    return SVC_HI << 64 | fmix64(src >> 64)


def nonconf(src, rng):
    """A random destination in the service prefix that fails src-mix."""
    while True:
        d = SVC_HI << 64 | rng.getrandbits(64)
        if d != conf(src):
            return d


def write(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000_000_000
        for fr in frames:
            t += 1   # 1 us apart
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(fr), len(fr)))
            f.write(fr)


def mix(n, rng):
    frames = []
    flows = []
    nflows = 20000
    for _ in range(nflows):   # handshakes: 3 frames each
        s = client(rng)
        d = conf(s)
        sp, ci, si = rng.randrange(1024, 65535), rng.getrandbits(32), rng.getrandbits(32)
        frames.append(tcp6(s, d, sp, 80, 0x02, ci, 0))
        frames.append(outb(tcp6(d, s, 80, sp, 0x12, si, ci + 1 & 0xffffffff)))
        frames.append(tcp6(s, d, sp, 80, 0x10, ci + 1 & 0xffffffff, si + 1 & 0xffffffff))
        flows.append((s, d, sp, ci + 1, si + 1))
    payload = b"GET /object HTTP/1.1\r\nHost: svc\r\n\r\n"
    while len(frames) < n:
        r = rng.random()
        if r < 0.70:
            s, d, sp, cs, ss = flows[rng.randrange(nflows)]
            frames.append(tcp6(s, d, sp, 80, 0x18, cs & 0xffffffff, ss & 0xffffffff, payload))
        elif r < 0.90:
            s = client(rng)
            frames.append(tcp6(s, conf(s), rng.randrange(1024, 65535), 80, 0x02, rng.getrandbits(32), 0))
        else:
            s = client(rng)
            frames.append(tcp6(s, nonconf(s, rng), rng.randrange(1024, 65535), 80,
                               0x02, rng.getrandbits(32), 0))
    return frames[:n]


def flood(n, rng):
    frames = []
    good = []
    for _ in range(1000):
        s = client(rng)
        d = conf(s)
        sp, ci, si = rng.randrange(1024, 65535), rng.getrandbits(32), rng.getrandbits(32)
        frames.append(tcp6(s, d, sp, 80, 0x02, ci, 0))
        frames.append(outb(tcp6(d, s, 80, sp, 0x12, si, ci + 1 & 0xffffffff)))
        frames.append(tcp6(s, d, sp, 80, 0x10, ci + 1 & 0xffffffff, si + 1 & 0xffffffff))
        good.append((s, d, sp, ci + 1, si + 1))
    while len(frames) < n:
        if rng.random() < 0.05:
            s, d, sp, cs, ss = good[rng.randrange(len(good))]
            frames.append(tcp6(s, d, sp, 80, 0x18, cs & 0xffffffff, ss & 0xffffffff, b"x" * 32))
        else:
            s = rng.getrandbits(128) | (0x2 << 124)   # spoofed: about 1% are martians
            frames.append(tcp6(s, nonconf(s, rng), rng.randrange(1024, 65535), 80,
                               0x02, rng.getrandbits(32), 0))
    return frames[:n]


if __name__ == "__main__":
    kind, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(11)
    write(out, mix(n, rng) if kind == "mix" else flood(n, rng))
