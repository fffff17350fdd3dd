//! weir's pcap fixtures: a deterministic generator of captures and of the verdict every
//! frame must get (DESIGN.md, "Classification — the order is the spec").
//!
//! Each fixture is built as a script: the generator decides what a frame *is* (a client's
//! clean SYN to a conforming address, the terminator's SYN-ACK, an ACK that completes the
//! handshake, a spoofed ACK, a broken header...) and writes the label that DESIGN.md's
//! rules give that intent. Labels never come from running the classifier; the golden test
//! in `weir-dp` then checks the classifier against them. The only state the generator
//! models is the one DESIGN.md defines with numbers (token buckets, block expiry, time
//! windows), computed from the timestamps it writes and asserted to stay clear of
//! boundaries, so that a label never depends on a rounding choice.
//!
//! Determinism: a fixed-seed SplitMix64 ([`Rng`]), fixed timestamps from
//! 2026-01-01T00:00:00Z ([`BASE_NS`]), no clock, no hash-map iteration. The bytes of every
//! file are a pure function of this crate's source, which `tests/regenerate.rs` enforces.
//!
//! Files per fixture `NAME`: `NAME.pcap` (classic pcap, Ethernet, nanosecond timestamps),
//! `NAME.verdicts` (`INDEX LABEL [odd] # note`, one line per frame) and, when the fixture
//! needs one, `NAME.toml` (the weir config it is replayed under).
//!
//! For benchmarks, [`bench_mix`] and [`bench_flood`] generate realistic mixes and SYN floods
//! of any size, and [`write_pcap`] writes them.

use std::io;
use std::path::{Path, PathBuf};

use weir_ssa::{PickContext, Prefix, Rule};

mod bench;
mod fixtures;
pub mod packet;

pub use bench::{bench_established, bench_flood, bench_mix, bench_mix_labelled};
pub use fixtures::all;

/// 2026-01-01T00:00:00Z in Unix nanoseconds: the first timestamp of every fixture.
pub const BASE_NS: u64 = 1_767_225_600 * NS_PER_S;
/// Nanoseconds per second.
pub const NS_PER_S: u64 = 1_000_000_000;
/// Nanoseconds per millisecond.
pub const NS_PER_MS: u64 = 1_000_000;

/// The built-in default service prefix, `2001:db8:5::/64`.
pub const SERVICE_PREFIX: Prefix = Prefix {
    addr: 0x2001_0db8_0005_0000_0000_0000_0000_0000,
    len: 64,
};

/// The verdict a frame must get in replay: the label of `Disposition::label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// From a service address: tracker input, not classified.
    Outbound,
    /// NDP or ARP: the host path.
    Host,
    /// An established flow (or an ICMPv6 error quoting one).
    KnownGood,
    /// A new flow within its source's rate.
    AssumedGood,
    /// Headers truncated or inconsistent.
    Malformed,
    /// Impossible source.
    Martian,
    /// Destination outside every service prefix.
    NotService,
    /// ICMPv6 error not quoting an established flow.
    IcmpUnmatched,
    /// The SSA rule fails.
    SsaViolation,
    /// Source inside a blocked prefix.
    Blocked,
    /// An IPv6 fragment.
    Fragment,
    /// TCP that is not a clean SYN, for no established flow.
    NoFlow,
    /// New flow with the source's bucket empty.
    Rate,
    /// Anything else.
    UnsupportedProtocol,
}

impl Label {
    /// The label as written in `.verdicts` files.
    pub const fn name(self) -> &'static str {
        match self {
            Label::Outbound => "outbound",
            Label::Host => "host",
            Label::KnownGood => "known-good",
            Label::AssumedGood => "assumed-good",
            Label::Malformed => "malformed",
            Label::Martian => "martian",
            Label::NotService => "not-service",
            Label::IcmpUnmatched => "icmp-unmatched",
            Label::SsaViolation => "ssa-violation",
            Label::Blocked => "blocked",
            Label::Fragment => "fragment",
            Label::NoFlow => "no-flow",
            Label::Rate => "rate",
            Label::UnsupportedProtocol => "unsupported-protocol",
        }
    }
}

/// One captured frame and the verdict it must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Capture timestamp, Unix nanoseconds.
    pub ts_ns: u64,
    /// The Ethernet frame.
    pub data: Vec<u8>,
    /// Expected verdict.
    pub label: Label,
    /// Deliberately abnormal for Wireshark although not labelled malformed.
    pub odd: bool,
    /// What the frame is.
    pub note: String,
}

/// A fixture: its frames (in capture order) and the config it is replayed under.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// File stem.
    pub name: &'static str,
    /// One line saying what the fixture shows.
    pub summary: &'static str,
    /// TOML config text, or `None` for the built-in default.
    pub config: Option<String>,
    /// Frames in capture order (timestamps never decrease).
    pub frames: Vec<Frame>,
}

impl Fixture {
    /// The `.pcap` file's bytes.
    pub fn pcap(&self) -> Vec<u8> {
        pcap_bytes(self.frames.iter().map(|f| (f.ts_ns, f.data.as_slice())))
    }

    /// The `.verdicts` file's text.
    pub fn verdicts(&self) -> String {
        let mut out = format!(
            "# {}.pcap: {}\n# Generated by weir-fixtures (cargo run -p weir-fixtures); do not edit.\n\
             # INDEX LABEL [odd] # note\n",
            self.name, self.summary
        );
        for (i, f) in self.frames.iter().enumerate() {
            let odd = if f.odd { " odd" } else { "" };
            out.push_str(&format!("{i} {}{odd} # {}\n", f.label.name(), f.note));
        }
        out
    }

    /// Write `NAME.pcap`, `NAME.verdicts` and (if any) `NAME.toml` into `dir`; returns the
    /// paths written.
    pub fn write(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut put = |ext: &str, bytes: &[u8]| -> io::Result<()> {
            let p = dir.join(format!("{}.{ext}", self.name));
            std::fs::write(&p, bytes)?;
            written.push(p);
            Ok(())
        };
        put("pcap", &self.pcap())?;
        put("verdicts", self.verdicts().as_bytes())?;
        if let Some(c) = &self.config {
            put("toml", c.as_bytes())?;
        }
        Ok(written)
    }
}

/// Write every fixture into `dir` (created if missing); returns the paths written.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for f in all() {
        out.extend(f.write(dir)?);
    }
    Ok(out)
}

/// Classic pcap bytes (little-endian, nanosecond timestamps, Ethernet link type).
pub fn pcap_bytes<'a>(frames: impl IntoIterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    const MAGIC_NS: u32 = 0xa1b2_3c4d;
    const SNAPLEN: u32 = 65535;
    const LINKTYPE_ETHERNET: u32 = 1;
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC_NS.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&SNAPLEN.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (ts, data) in frames {
        let secs = u32::try_from(ts / NS_PER_S).expect("timestamp before 2106");
        let len = u32::try_from(data.len()).expect("frame below 4 GiB");
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&((ts % NS_PER_S) as u32).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Write `(timestamp ns, frame)` pairs as a classic pcap file.
pub fn write_pcap(path: &Path, frames: &[(u64, Vec<u8>)]) -> io::Result<()> {
    std::fs::write(
        path,
        pcap_bytes(frames.iter().map(|(t, d)| (*t, d.as_slice()))),
    )
}

/// SplitMix64: small, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub const fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0; the tiny modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// An ephemeral port (49152..=65535).
    pub fn port(&mut self) -> u16 {
        self.range(49152, 65535) as u16
    }

    /// A client source in 2001:db8:c000::/36 with a random /64 and interface id.
    pub fn client(&mut self) -> u128 {
        let net = 0x2001_0db8_c000_0000u64 | (self.next_u64() & 0x0fff_ffff);
        (u128::from(net) << 64) | u128::from(self.next_u64() | 1)
    }

    /// A random interface id inside the /64 of `addr`.
    pub fn host_in_64(&mut self, addr: u128) -> u128 {
        (addr & !u128::from(u64::MAX)) | u128::from(self.next_u64() | 1)
    }
}

/// A destination in `prefix` that `rule` accepts for `src` at `now_s` (the client's pick).
pub fn conforming(rule: &Rule, prefix: &Prefix, src: u128, now_s: u64, entropy: u64) -> u128 {
    let ctx = PickContext {
        now_unix_s: now_s,
        object_key: None,
        entropy,
    };
    let dst = rule
        .pick(prefix, src, &ctx)
        .expect("the fixture's rule can pick for its prefix");
    assert!(rule.check(src, dst, now_s), "pick then check passes");
    dst
}

/// A destination inside `prefix` that `rule` rejects for `src` at `now_s`: the conforming
/// one with its lowest bit flipped (every rule weir has binds the low bits).
pub fn non_conforming(rule: &Rule, prefix: &Prefix, src: u128, now_s: u64, entropy: u64) -> u128 {
    let dst = conforming(rule, prefix, src, now_s, entropy) ^ 1;
    assert!(prefix.contains(dst) && !rule.check(src, dst, now_s));
    dst
}

/// Unix seconds of a nanosecond timestamp.
pub const fn secs(ts_ns: u64) -> u64 {
    ts_ns / NS_PER_S
}

/// Render an IPv6 address for notes.
pub fn v6(addr: u128) -> String {
    std::net::Ipv6Addr::from(addr).to_string()
}

/// Render an IPv4 address for notes.
pub fn v4(addr: u32) -> String {
    std::net::Ipv4Addr::from(addr).to_string()
}
