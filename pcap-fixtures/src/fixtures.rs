//! One function per fixture: the script of what each frame is, and the label DESIGN.md's
//! rules give it.
//!
//! Scripts are written per conversation (each with its own timeline) and merged by a
//! stable sort on the timestamp, so interleaving never changes a label: conversations use
//! distinct 5-tuples and distinct source /64s, and the only shared state (a rate bucket, a
//! block's expiry, a time window) is computed here from the timestamps, with margins
//! asserted.

use weir_ssa::{Prefix, Rule};
use weir_wire::ethernet::ethertype;
use weir_wire::{arp, checksum, icmpv6, protocol, tcp, tcp_flags};

use crate::packet::{
    arp_frame, dns_query, ether, http_get, http_ok, icmpv6_frame, icmpv6_message, ip_frame,
    ipv4_packet, ipv6_packet, link_local, multicast_mac, solicited_node, tcp_frame, tcp_frame_ext,
    tcp_segment, udp_datagram, udp_frame, Addr, Conversation, Ext, Link, Tag, ROUTER_MAC, WEIR_MAC,
};
use crate::{
    conforming, non_conforming, secs, v6, Fixture, Frame, Label, Rng, BASE_NS, NS_PER_MS, NS_PER_S,
    SERVICE_PREFIX,
};

const US: u64 = 1_000;
const MS: u64 = NS_PER_MS;
const S: u64 = NS_PER_S;
const BASE_S: u64 = BASE_NS / NS_PER_S;

/// An address outside the default service prefix (the next /64).
const OTHER_SERVICE: u128 = 0x2001_0db8_0005_0001_0000_0000_0000_0080;
/// A router on the path (global source of ICMPv6 errors).
const ROUTER_V6: u128 = 0x2001_0db8_ffff_0000_0000_0000_0000_0001;

/// Every fixture, in file-name order.
pub fn all() -> Vec<Fixture> {
    let mut v = vec![
        mix(),
        ssa_violation(),
        syn_flood(),
        rate(),
        ipv4(),
        ipv4_default(),
        malformed(),
        fragments(),
        vlan(),
        ext_headers(),
        icmp(),
        ndp_arp(),
        blocked(),
        time_hop(),
        keyed_hash(),
        spread(),
        spread_src_bits(),
    ];
    v.sort_by_key(|f| f.name);
    v
}

/// Frames under construction; [`Script::finish`] puts them in timestamp order.
#[derive(Debug, Default)]
pub(crate) struct Script {
    frames: Vec<Frame>,
}

impl Script {
    pub(crate) fn push(
        &mut self,
        ts_ns: u64,
        data: Vec<u8>,
        label: Label,
        note: impl Into<String>,
    ) {
        self.frames.push(Frame {
            ts_ns,
            data,
            label,
            odd: false,
            note: note.into(),
        });
    }

    pub(crate) fn odd(&mut self, ts_ns: u64, data: Vec<u8>, label: Label, note: impl Into<String>) {
        self.push(ts_ns, data, label, note);
        if let Some(f) = self.frames.last_mut() {
            f.odd = true;
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Frame> {
        self.frames.sort_by_key(|f| f.ts_ns); // stable: equal times keep script order
        self.frames
    }
}

/// Wireshark reports every RST as an expert warning ("Connection reset").
const RST_NOTE: &str = "; odd: Wireshark warns on every RST";
/// Wireshark verifies the TCP checksum of a quote cut short as if it were whole.
const QUOTE_NOTE: &str = "; odd: Wireshark checks the cut quote's TCP checksum";

/// How an HTTP exchange ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// FIN from the client, FIN-ACK from the service, last ACK.
    Fin,
    /// The client resets after the response; a late client ACK then has no flow.
    ClientRst,
    /// The service resets after the response; the client's ACK then has no flow.
    ServerRst,
}

/// A whole HTTP/1.1 exchange starting at `t0` with round-trip time `rtt` (as seen at weir:
/// the service answers at once, the client one RTT later). `syn_label` is the verdict of
/// the client's SYN (assumed-good unless the test is about the bucket). Returns the time
/// of the last frame.
pub(crate) fn http_exchange(
    s: &mut Script,
    c: &mut Conversation,
    t0: u64,
    rtt: u64,
    ending: Ending,
    syn_label: Label,
    tag: &str,
) -> u64 {
    use tcp_flags::{FIN, PSH, RST};
    let body = 200 + (c.cport as usize % 900);
    let mut t = t0;
    s.push(t, c.syn(), syn_label, format!("{tag}: client SYN"));
    t += 60 * US;
    s.push(
        t,
        c.syn_ack(),
        Label::Outbound,
        format!("{tag}: service SYN-ACK (half-open)"),
    );
    t += rtt;
    s.push(
        t,
        c.client(0, &[]),
        Label::KnownGood,
        format!("{tag}: client ACK of the SYN-ACK (establishes the flow)"),
    );
    t += 40 * US;
    let path = format!("/objects/{}", c.cport);
    s.push(
        t,
        c.client(PSH, &http_get(&path)),
        Label::KnownGood,
        format!("{tag}: HTTP GET {path}"),
    );
    t += 300 * US;
    s.push(
        t,
        c.server(PSH, &http_ok(body)),
        Label::Outbound,
        format!("{tag}: HTTP/1.1 200 with a {body}-byte body"),
    );
    t += rtt;
    s.push(
        t,
        c.client(0, &[]),
        Label::KnownGood,
        format!("{tag}: client ACK of the response"),
    );
    match ending {
        Ending::Fin => {
            t += 5 * MS;
            s.push(
                t,
                c.client(FIN, &[]),
                Label::KnownGood,
                format!("{tag}: client FIN"),
            );
            t += 80 * US;
            s.push(
                t,
                c.server(FIN, &[]),
                Label::Outbound,
                format!("{tag}: service FIN-ACK"),
            );
            t += rtt;
            s.push(
                t,
                c.client(0, &[]),
                Label::KnownGood,
                format!("{tag}: client's last ACK (within the 2 s FIN linger)"),
            );
        }
        Ending::ClientRst => {
            t += 3 * MS;
            s.odd(
                t,
                c.client(RST, &[]),
                Label::KnownGood,
                format!(
                    "{tag}: client RST on an established flow (known-good, flow removed){RST_NOTE}"
                ),
            );
            t += 20 * MS;
            s.push(
                t,
                c.client(0, &[]),
                Label::NoFlow,
                format!("{tag}: late client ACK after its RST: the flow is gone"),
            );
        }
        Ending::ServerRst => {
            t += 2 * MS;
            s.odd(
                t,
                c.server(RST, &[]),
                Label::Outbound,
                format!("{tag}: service RST (removes the flow){RST_NOTE}"),
            );
            t += rtt;
            s.push(
                t,
                c.client(0, &[]),
                Label::NoFlow,
                format!("{tag}: client ACK after the service's RST: no flow"),
            );
        }
    }
    t
}

fn default_rule() -> Rule {
    Rule::default()
}

fn isn(rng: &mut Rng) -> (u32, u32) {
    (rng.next_u64() as u32, rng.next_u64() as u32)
}

fn syn_frame(src: u128, dst: u128, sport: u16, seq: u32) -> Vec<u8> {
    tcp_frame(
        &Link::INBOUND,
        Addr::V6(src),
        Addr::V6(dst),
        &tcp::Repr::syn(sport, 80, seq, 1440),
    )
}

fn ack_frame(src: u128, dst: u128, sport: u16, seq: u32, ack: u32) -> Vec<u8> {
    tcp_frame(
        &Link::INBOUND,
        Addr::V6(src),
        Addr::V6(dst),
        &tcp::Repr::new(sport, 80, seq, ack, tcp_flags::ACK),
    )
}

fn echo_request(src: u128, dst: u128, ident: u16, seq_no: u16) -> Vec<u8> {
    icmpv6_frame(
        &Link::INBOUND,
        src,
        dst,
        64,
        &icmpv6::Repr::EchoRequest {
            ident,
            seq_no,
            data: b"weir-fixtures ping payload 0123456789",
        },
    )
}

fn echo_reply(src: u128, dst: u128, ident: u16, seq_no: u16, link: &Link) -> Vec<u8> {
    icmpv6_frame(
        link,
        src,
        dst,
        64,
        &icmpv6::Repr::EchoReply {
            ident,
            seq_no,
            data: b"weir-fixtures ping payload 0123456789",
        },
    )
}

fn dns_frame(src: Addr, dst: Addr, sport: u16, id: u16) -> Vec<u8> {
    udp_frame(
        &Link::INBOUND,
        src,
        dst,
        sport,
        53,
        &dns_query(id, "www.example.net"),
    )
}

// ---------------------------------------------------------------------------------------
// 1. mix

/// The realistic mix: ~40 HTTP connections interleaved, plus the odd ones out.
pub(crate) fn mix_script(rng: &mut Rng, conns: usize, t_start: u64, spacing: u64) -> Script {
    let rule = default_rule();
    let mut s = Script::default();
    let mut t = t_start;
    for i in 0..conns {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, secs(t), rng.next_u64());
        let mut c = Conversation::new(Addr::V6(src), Addr::V6(dst), rng.port(), 80, isn(rng));
        let ending = match i % 13 {
            5 => Ending::ClientRst,
            11 => Ending::ServerRst,
            _ => Ending::Fin,
        };
        let rtt = rng.range(2, 40) * MS + rng.below(1000) * US;
        let tag = format!("conn {i} [{}]:{}", v6(src), c.cport);
        http_exchange(&mut s, &mut c, t, rtt, ending, Label::AssumedGood, &tag);
        t += spacing / 2 + rng.below(spacing);
    }
    s
}

fn mix() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0x006d_6978);
    let mut s = mix_script(&mut rng, 40, BASE_NS, 100 * MS);
    let t_end = BASE_NS + 4 * S;
    let at = |rng: &mut Rng| BASE_NS + 50 * MS + rng.below(t_end - BASE_NS - 100 * MS);
    for i in 0..4 {
        let src = rng.client();
        let dst = non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            at(&mut rng),
            syn_frame(src, dst, rng.port(), rng.next_u64() as u32),
            Label::SsaViolation,
            format!(
                "SYN {i} from {} to {} (low 64 bits are not fmix64 of the source's /64)",
                v6(src),
                v6(dst)
            ),
        );
    }
    for i in 0..2 {
        let src = rng.client();
        s.push(
            at(&mut rng),
            syn_frame(src, OTHER_SERVICE + i, rng.port(), rng.next_u64() as u32),
            Label::NotService,
            format!("SYN to {} outside 2001:db8:5::/64", v6(OTHER_SERVICE + i)),
        );
    }
    for i in 0..3 {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            at(&mut rng),
            dns_frame(Addr::V6(src), Addr::V6(dst), rng.port(), 0x1000 + i),
            Label::AssumedGood,
            format!("UDP DNS query {i} to a conforming address (takes a token)"),
        );
    }
    for i in 0..2u16 {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        let t = at(&mut rng);
        s.push(
            t,
            echo_request(src, dst, 0x77 + i, 1),
            Label::AssumedGood,
            format!("ICMPv6 echo request {i} to a conforming address"),
        );
        s.push(
            t + 40 * US,
            echo_reply(dst, src, 0x77 + i, 1, &Link::OUTBOUND),
            Label::Outbound,
            format!("ICMPv6 echo reply {i} from the service"),
        );
    }
    {
        let target = conforming(&rule, &SERVICE_PREFIX, rng.client(), 0, 0);
        s.push(
            at(&mut rng),
            neighbor_solicit(target),
            Label::Host,
            format!(
                "NDP neighbor solicitation for service address {}",
                v6(target)
            ),
        );
    }
    for i in 0..5 {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            at(&mut rng),
            ack_frame(
                src,
                dst,
                rng.port(),
                rng.next_u64() as u32,
                rng.next_u64() as u32,
            ),
            Label::NoFlow,
            format!("ACK {i} to a conforming address with no flow (spoofed or stale)"),
        );
    }
    Fixture {
        name: "mix",
        summary: "40 interleaved HTTP/1.1 connections plus non-conforming, UDP, echo, NDP and no-flow frames",
        config: None,
        frames: s.finish(),
    }
}

/// An NS from the router's link-local address for `target`, to its solicited-node group.
fn neighbor_solicit(target: u128) -> Vec<u8> {
    let dst = solicited_node(target);
    let link = Link {
        src: ROUTER_MAC,
        dst: multicast_mac(dst),
        tags: &[],
    };
    icmpv6_frame(
        &link,
        link_local(ROUTER_MAC),
        dst,
        255,
        &icmpv6::Repr::NeighborSolicit {
            target,
            source_lladdr: Some(ROUTER_MAC),
        },
    )
}

// ---------------------------------------------------------------------------------------
// 2. ssa-violation

fn ssa_violation() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0x55a);
    let mut s = Script::default();
    let mut t = BASE_NS;
    let step = |t: &mut u64| {
        *t += 7 * MS;
        *t
    };
    for i in 0..6 {
        let src = rng.client();
        let good = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        let bad = match i % 3 {
            0 => good ^ 1,
            1 => good ^ (1 << 63),
            _ => good ^ 0x0000_0000_0000_0000_0000_ffff_0000_0000,
        };
        s.push(
            step(&mut t),
            syn_frame(src, bad, rng.port(), rng.next_u64() as u32),
            Label::SsaViolation,
            format!(
                "SYN {} → {} (inside the prefix, wrong low 64 bits)",
                v6(src),
                v6(bad)
            ),
        );
    }
    {
        let src = rng.client();
        let bad = non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            step(&mut t),
            dns_frame(Addr::V6(src), Addr::V6(bad), rng.port(), 7),
            Label::SsaViolation,
            "UDP DNS query to a non-conforming address",
        );
        s.push(
            step(&mut t),
            echo_request(src, bad, 9, 1),
            Label::SsaViolation,
            "ICMPv6 echo request to a non-conforming address (unanswered: dropped)",
        );
        s.push(
            step(&mut t),
            ack_frame(src, bad, rng.port(), 1, 1),
            Label::SsaViolation,
            "ACK to a non-conforming address (the rule is checked before the flow table)",
        );
        // The source's own /64 but another interface id: the rule binds /64s, so the
        // destination picked for one host conforms for its neighbour too.
        let neighbour = rng.host_in_64(src);
        let good = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            step(&mut t),
            syn_frame(neighbour, good, rng.port(), 5),
            Label::AssumedGood,
            "SYN from another host of the same /64 to that /64's address: conforming",
        );
    }
    for (i, dst) in [
        OTHER_SERVICE,
        0x2001_0db8_0004_ffff_ffff_ffff_ffff_fffe,
        0x2001_0db8_0006_0000_0000_0000_0000_0001,
        0x2a00_1450_4001_0800_0000_0000_0000_200e,
    ]
    .into_iter()
    .enumerate()
    {
        let src = rng.client();
        s.push(
            step(&mut t),
            syn_frame(src, dst, rng.port(), i as u32),
            Label::NotService,
            format!("SYN to {} outside every service prefix", v6(dst)),
        );
    }
    {
        let src = rng.client();
        s.push(
            step(&mut t),
            dns_frame(Addr::V6(src), Addr::V6(OTHER_SERVICE), rng.port(), 8),
            Label::NotService,
            "UDP to an address outside the prefix",
        );
    }
    for i in 0..3 {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            step(&mut t),
            syn_frame(src, dst, rng.port(), i),
            Label::AssumedGood,
            format!("SYN {i} to the conforming address, for contrast"),
        );
    }
    Fixture {
        name: "ssa-violation",
        summary: "non-conforming destinations inside the prefix and destinations outside it",
        config: None,
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 3. syn-flood

/// SYNs from `n` distinct random /64s, every `gap_ns`, a `conforming_pct`% share to the
/// conforming address (the rest non-conforming).
pub(crate) fn flood_script(
    rng: &mut Rng,
    n: usize,
    t0: u64,
    gap_ns: u64,
    conforming_pct: u64,
) -> Script {
    let rule = default_rule();
    let mut s = Script::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut t = t0;
    let mut i = 0;
    while i < n {
        let src = rng.client();
        if !seen.insert(src >> 64) {
            continue; // each spoofed /64 appears once, so each has a full bucket
        }
        let good = rng.below(100) < conforming_pct;
        let dst = if good {
            conforming(&rule, &SERVICE_PREFIX, src, 0, 0)
        } else {
            non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0)
        };
        let (label, what) = if good {
            (Label::AssumedGood, "conforming: one token of a fresh /64")
        } else {
            (Label::SsaViolation, "non-conforming")
        };
        s.push(
            t,
            syn_frame(src, dst, rng.port(), rng.next_u64() as u32),
            label,
            format!("spoofed SYN {i} from {}, {what}", v6(src)),
        );
        t += gap_ns / 2 + rng.below(gap_ns);
        i += 1;
    }
    s
}

fn syn_flood() -> Fixture {
    let mut rng = Rng::new(0xf100d);
    let mut s = flood_script(&mut rng, 440, BASE_NS, 2 * MS, 60);
    // The terminator answers some conforming SYNs; the spoofed "clients" never see the
    // SYN-ACK, so their blind ACKs guess the sequence number wrong.
    let syns: Vec<(u64, Vec<u8>)> = s
        .frames
        .iter()
        .filter(|f| f.label == Label::AssumedGood)
        .take(30)
        .map(|f| (f.ts_ns, f.data.clone()))
        .collect();
    for (k, (ts, syn)) in syns.iter().enumerate() {
        let ip = &syn[14..];
        let src = u128::from_be_bytes(ip[8..24].try_into().expect("16 bytes"));
        let dst = u128::from_be_bytes(ip[24..40].try_into().expect("16 bytes"));
        let sport = u16::from_be_bytes([ip[40], ip[41]]);
        let cseq = u32::from_be_bytes(ip[44..48].try_into().expect("4 bytes"));
        let mut c = Conversation::new(
            Addr::V6(src),
            Addr::V6(dst),
            sport,
            80,
            (cseq.wrapping_add(1), rng.next_u64() as u32),
        );
        s.push(
            ts + 50 * US,
            c.syn_ack(),
            Label::Outbound,
            format!("service SYN-ACK to flooded source {k}"),
        );
        if k % 2 == 0 {
            c.sseq = c.sseq.wrapping_add(1 + rng.below(1 << 20) as u32);
            s.push(
                ts + 3 * MS,
                c.client(0, &[]),
                Label::NoFlow,
                format!("blind ACK {k} with a guessed (wrong) acknowledgement number"),
            );
        }
    }
    Fixture {
        name: "syn-flood",
        summary: "spoofed SYNs from random /64s; nothing ever becomes known-good",
        config: None,
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 4. rate

/// DESIGN.md's token bucket, exactly: capacity `rate`, continuous refill at `rate` per
/// second, starting full; kept in token-nanoseconds so the arithmetic is exact.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: u64,
    units: u64,
    last_ns: Option<u64>,
}

impl Bucket {
    pub(crate) fn new(rate: u64) -> Bucket {
        Bucket {
            rate,
            units: rate * S,
            last_ns: None,
        }
    }

    /// Token-nanoseconds the bucket would hold at `now`, before taking.
    fn units_at(&self, now: u64) -> u64 {
        let elapsed = self.last_ns.map_or(0, |l| now - l);
        let cap = self.rate * S;
        (u128::from(self.units) + u128::from(elapsed) * u128::from(self.rate)).min(u128::from(cap))
            as u64
    }

    /// Whether the label at `now` is far from the one-token threshold (more than 1 ms of
    /// refill away), so that it cannot hinge on rounding.
    pub(crate) fn clear_at(&self, now: u64) -> bool {
        let units = self.units_at(now);
        units.abs_diff(S) > self.rate * MS || units == self.rate * S
    }

    /// Take a token at `now`; panics unless [`Bucket::clear_at`].
    pub(crate) fn take(&mut self, now: u64) -> bool {
        assert!(
            self.clear_at(now),
            "token count too close to the threshold at {now}"
        );
        self.units = self.units_at(now);
        self.last_ns = Some(now);
        if self.units >= S {
            self.units -= S;
            true
        } else {
            false
        }
    }
}

const RATE_LIMIT: u64 = 20;

fn rate() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0x4a7e);
    let mut s = Script::default();
    let greedy = 0x2001_0db8_c0a1_0001u128 << 64;
    let steady = 0x2001_0db8_c0b2_0002u128 << 64;
    let mut bucket = Bucket::new(RATE_LIMIT);
    let mut steady_bucket = Bucket::new(RATE_LIMIT);
    // Greedy /64: a burst at ~140 SYN/s for 1.2 s, a 2 s pause, another burst.
    let mut times = Vec::new();
    let mut t = BASE_NS + 10 * MS;
    for _ in 0..170 {
        times.push(t);
        t += 7 * MS + 130 * US;
    }
    t += 2 * S;
    for _ in 0..40 {
        times.push(t);
        t += 7 * MS + 130 * US;
    }
    for (i, &planned) in times.iter().enumerate() {
        // Nudge a SYN that would land within 1 ms of refill of the threshold.
        let mut t = planned;
        while !bucket.clear_at(t) {
            t += 1500 * US;
        }
        let src = rng.host_in_64(greedy);
        let dst = conforming(&rule, &SERVICE_PREFIX, src, secs(t), 0);
        let ok = bucket.take(t);
        let (label, what) = if ok {
            (Label::AssumedGood, "a token left")
        } else {
            (Label::Rate, "bucket empty")
        };
        s.push(
            t,
            syn_frame(src, dst, 40000 + i as u16, rng.next_u64() as u32),
            label,
            format!("greedy /64 SYN {i}: {what}"),
        );
    }
    // Steady /64: 10 SYN/s, always within its own bucket.
    let mut t = BASE_NS + 3 * MS;
    let end = times.last().copied().unwrap_or(BASE_NS);
    let mut i = 0u16;
    while t < end {
        let src = rng.host_in_64(steady);
        let dst = conforming(&rule, &SERVICE_PREFIX, src, secs(t), 0);
        assert!(steady_bucket.take(t));
        s.push(
            t,
            syn_frame(src, dst, 50000 + i, rng.next_u64() as u32),
            Label::AssumedGood,
            format!("steady /64 SYN {i}: 10/s, within its bucket"),
        );
        t += 100 * MS + 310 * US;
        i += 1;
    }
    Fixture {
        name: "rate",
        summary: "one /64 opening flows faster than new_flows_per_sec = 20, another within it",
        config: Some(format!(
            "# rate.pcap: a tight new-flow limit per source /64.\n\n[limits]\nsource_prefix_len = 64\nnew_flows_per_sec = {RATE_LIMIT}\n"
        )),
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 5. ipv4, ipv4-default

const V4_SERVICE: u32 = 0xc000_020a; // 192.0.2.10
const V4_DNS: u32 = 0xc000_0235; // 192.0.2.53
const V4_CLIENT: u32 = 0xc633_6417; // 198.51.100.23
const V4_CLIENT2: u32 = 0xcb00_7105; // 203.0.113.5
const V4_OUTSIDE: u32 = 0xc612_0001; // 198.18.0.1

fn ipv4_script(configured: bool) -> Script {
    let mut rng = Rng::new(0x4);
    let mut s = Script::default();
    let lab = |l: Label| if configured { l } else { Label::NotService };
    let why = if configured {
        ""
    } else {
        " (no IPv4 prefix configured: not-service)"
    };
    let mut c = Conversation::new(
        Addr::V4(V4_CLIENT),
        Addr::V4(V4_SERVICE),
        51515,
        80,
        isn(&mut rng),
    );
    // Without an IPv4 prefix, the service's frames are not from a service address either:
    // they are classified as inbound frames to an address outside every prefix.
    let mut inner = Script::default();
    http_exchange(
        &mut inner,
        &mut c,
        BASE_NS + 5 * MS,
        12 * MS,
        Ending::Fin,
        Label::AssumedGood,
        "IPv4 conn 198.51.100.23:51515",
    );
    for f in inner.finish() {
        let label = if configured {
            f.label
        } else {
            Label::NotService
        };
        s.push(f.ts_ns, f.data, label, format!("{}{why}", f.note));
    }
    let mut t = BASE_NS + 200 * MS;
    let next = |t: &mut u64| {
        *t += 11 * MS;
        *t
    };
    s.push(
        next(&mut t),
        dns_frame(Addr::V4(V4_CLIENT2), Addr::V4(V4_DNS), 40053, 0x4444),
        lab(Label::AssumedGood),
        format!("IPv4 UDP DNS query to 192.0.2.53{why}"),
    );
    s.push(
        next(&mut t),
        tcp_frame(
            &Link::INBOUND,
            Addr::V4(V4_CLIENT2),
            Addr::V4(V4_OUTSIDE),
            &tcp::Repr::syn(40100, 80, 77, 1460),
        ),
        Label::NotService,
        "IPv4 SYN to 198.18.0.1, outside every prefix",
    );
    for (src, what) in [
        (0x0001_0203u32, "0.1.2.3 (0/8)"),
        (0x7f00_0001, "127.0.0.1 (127/8)"),
        (0xa9fe_0a14, "169.254.10.20 (169.254/16)"),
        (0xe000_0005, "224.0.0.5 (224/4)"),
        (0xf000_0001, "240.0.0.1 (240/4)"),
    ] {
        s.push(
            next(&mut t),
            tcp_frame(
                &Link::INBOUND,
                Addr::V4(src),
                Addr::V4(V4_SERVICE),
                &tcp::Repr::syn(40200, 80, src, 1460),
            ),
            Label::Martian,
            format!("IPv4 SYN from martian source {what}"),
        );
    }
    s.push(
        next(&mut t),
        ip_frame(
            &Link::INBOUND,
            Addr::V4(V4_CLIENT2),
            Addr::V4(V4_SERVICE),
            protocol::ICMP,
            &icmpv4_echo(0x21, 1),
        ),
        lab(Label::UnsupportedProtocol),
        format!("ICMPv4 echo request: not a new-flow type for weir (unanswered){why}"),
    );
    {
        let src = 0x2001_0db8_c4c4_0004_0000_0000_0000_0004u128;
        let dst = conforming(&default_rule(), &SERVICE_PREFIX, src, 0, 0);
        s.push(
            next(&mut t),
            syn_frame(src, dst, 40300, 99),
            Label::AssumedGood,
            "IPv6 SYN to the conforming address: the IPv6 prefix still applies",
        );
    }
    s
}

/// An ICMPv4 echo request with a correct checksum.
fn icmpv4_echo(ident: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"weir-fixtures ipv4 ping");
    let c = checksum::finish(checksum::sum(&m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn ipv4() -> Fixture {
    Fixture {
        name: "ipv4",
        summary:
            "IPv4 under a config with an IPv4 prefix: tracked flows, UDP, not-service, martians",
        config: Some(
            "# ipv4.pcap: the service also owns 192.0.2.0/24 (served with the `any` rule).\n\n\
             [service]\napl = \"2:2001:db8:5::/64 1:192.0.2.0/24\"\nslice_bits = 14\n"
                .into(),
        ),
        frames: ipv4_script(true).finish(),
    }
}

fn ipv4_default() -> Fixture {
    Fixture {
        name: "ipv4-default",
        summary: "the same IPv4 traffic under the built-in default (no IPv4 prefix): not-service",
        config: None,
        frames: ipv4_script(false).finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 6. malformed

fn fix_ipv4_checksum(pkt: &mut [u8]) {
    pkt[10] = 0;
    pkt[11] = 0;
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let end = ihl.clamp(20, pkt.len().min(60));
    let c = checksum::ipv4_header_checksum(&pkt[..end]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
}

fn malformed() -> Fixture {
    let rule = default_rule();
    let src = 0x2001_0db8_cbbb_0006_0000_0000_0000_0006u128;
    let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
    let (a, b) = (Addr::V6(src), Addr::V6(dst));
    let syn = tcp::Repr::syn(41000, 80, 0x1234_5678, 1440);
    let syn_seg = tcp_segment(a, b, &syn);
    let syn_pkt = ipv6_packet(src, dst, 64, &[], protocol::TCP, &syn_seg);
    let ack = tcp::Repr::new(41001, 80, 1, 1, tcp_flags::ACK);
    let ack_seg = tcp_segment(a, b, &ack);
    let v6f = |p: &[u8]| ether(&Link::INBOUND, ethertype::IPV6, p);
    let v6_tcp = |seg: &[u8]| v6f(&ipv6_packet(src, dst, 64, &[], protocol::TCP, seg));
    let v4_syn = ipv4_packet(
        V4_CLIENT,
        V4_SERVICE,
        protocol::TCP,
        0x99,
        &tcp_segment(Addr::V4(V4_CLIENT), Addr::V4(V4_SERVICE), &syn),
    );
    let v4f = |p: &[u8]| ether(&Link::INBOUND, ethertype::IPV4, p);
    let with = |p: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = p.to_vec();
        f(&mut p);
        p
    };
    let udp_dg = udp_datagram(a, b, 41002, 53, &dns_query(0x55, "www.example.net"));
    let mut cases: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    let mut add =
        |cause: &'static str, what: &'static str, frame: Vec<u8>| cases.push((cause, what, frame));

    add(
        "EthernetTruncated",
        "10-byte frame",
        v6f(&syn_pkt)[..10].to_vec(),
    );
    add(
        "VlanTruncated",
        "802.1Q TPID with a 2-byte tag",
        ether(&Link::INBOUND, ethertype::VLAN, &[0x00, 0x64]),
    );
    add(
        "TooManyVlanTags",
        "three VLAN tags (88a8, 8100, 8100) before a clean SYN",
        ether(
            &Link::INBOUND.tagged(&[
                Tag {
                    tpid: ethertype::QINQ,
                    vid: 10,
                },
                Tag {
                    tpid: ethertype::VLAN,
                    vid: 20,
                },
                Tag {
                    tpid: ethertype::VLAN,
                    vid: 30,
                },
            ]),
            ethertype::IPV6,
            &syn_pkt,
        ),
    );
    add(
        "Ipv6Truncated",
        "30 bytes of IPv6 header",
        v6f(&syn_pkt[..30]),
    );
    add(
        "Ipv6Version",
        "version 4 in an IPv6 EtherType frame",
        v6f(&with(&syn_pkt, &|p| p[0] = (p[0] & 0x0f) | 0x40)),
    );
    add(
        "Ipv6PayloadLength",
        "payload length 100 bytes beyond the frame",
        v6f(&with(&syn_pkt, &|p| {
            let l = (p.len() - 40 + 100) as u16;
            p[4..6].copy_from_slice(&l.to_be_bytes());
        })),
    );
    add(
        "ExtHeaderTruncated",
        "Hop-by-Hop header claiming 16 bytes with 8 present",
        v6f(&with(
            &ipv6_packet(
                src,
                dst,
                64,
                &[Ext::HopByHop],
                protocol::NO_NEXT_HEADER,
                &[],
            ),
            &|p| p[41] = 1,
        )),
    );
    add(
        "TooManyExtHeaders",
        "nine extension headers (Hop-by-Hop + 8 Destination Options) before a clean SYN",
        v6f(&ipv6_packet(
            src,
            dst,
            64,
            &[
                Ext::HopByHop,
                Ext::DstOpts,
                Ext::DstOpts,
                Ext::DstOpts,
                Ext::DstOpts,
                Ext::DstOpts,
                Ext::DstOpts,
                Ext::DstOpts,
                Ext::DstOpts,
            ],
            protocol::TCP,
            &syn_seg,
        )),
    );
    add(
        "HopByHopNotFirst",
        "Destination Options then Hop-by-Hop before a clean SYN",
        v6f(&ipv6_packet(
            src,
            dst,
            64,
            &[Ext::DstOpts, Ext::HopByHop],
            protocol::TCP,
            &syn_seg,
        )),
    );
    add(
        "FragmentLength",
        "first fragment (M=1) of 21 bytes, not a multiple of 8",
        v6f(&ipv6_packet(
            src,
            dst,
            64,
            &[Ext::Fragment {
                offset: 0,
                more: true,
                ident: 0xf1,
            }],
            protocol::UDP,
            &udp_dg[..21],
        )),
    );
    add(
        "FragmentOverflow",
        "fragment at offset 65520 with 24 bytes (beyond 65535)",
        v6f(&ipv6_packet(
            src,
            dst,
            64,
            &[Ext::Fragment {
                offset: 8190,
                more: false,
                ident: 0xf2,
            }],
            protocol::UDP,
            &[0x5a; 24],
        )),
    );
    add(
        "FirstFragmentTruncated",
        "first fragment holding 16 bytes of a TCP header",
        v6f(&ipv6_packet(
            src,
            dst,
            64,
            &[Ext::Fragment {
                offset: 0,
                more: true,
                ident: 0xf3,
            }],
            protocol::TCP,
            &syn_seg[..16],
        )),
    );
    add(
        "Ipv4Truncated",
        "12 bytes of IPv4 header",
        v4f(&v4_syn[..12]),
    );
    add(
        "Ipv4Version",
        "version 5 in an IPv4 EtherType frame",
        v4f(&with(&v4_syn, &|p| {
            p[0] = 0x55;
            fix_ipv4_checksum(p);
        })),
    );
    add(
        "Ipv4Ihl",
        "IHL 4 (below 5)",
        v4f(&with(&v4_syn, &|p| {
            p[0] = 0x44;
            fix_ipv4_checksum(p);
        })),
    );
    add(
        "Ipv4TotalLength",
        "total length 100 bytes beyond the frame",
        v4f(&with(&v4_syn, &|p| {
            let l = (p.len() + 100) as u16;
            p[2..4].copy_from_slice(&l.to_be_bytes());
            fix_ipv4_checksum(p);
        })),
    );
    add(
        "TcpTruncated",
        "12 bytes of TCP header",
        v6_tcp(&syn_seg[..12]),
    );
    add(
        "TcpDataOffset",
        "TCP data offset 4 (below 5)",
        v6_tcp(&with(&syn_seg, &|p| p[12] = 0x40 | (p[12] & 0x0f))),
    );
    add(
        "TcpDataOffset",
        "TCP data offset 15 (60 bytes) in a 20-byte segment",
        v6_tcp(&with(&ack_seg, &|p| p[12] = 0xf0 | (p[12] & 0x0f))),
    );
    add(
        "TcpOption",
        "SYN whose MSS option claims 40 bytes",
        v6_tcp(&with(&syn_seg, &|p| p[21] = 40)),
    );
    add(
        "TcpFlags",
        "SYN+RST",
        v6_tcp(&tcp_segment(
            a,
            b,
            &tcp::Repr::new(41003, 80, 5, 0, tcp_flags::SYN | tcp_flags::RST),
        )),
    );
    add(
        "TcpFlags",
        "SYN+FIN",
        v6_tcp(&tcp_segment(
            a,
            b,
            &tcp::Repr::new(41004, 80, 5, 0, tcp_flags::SYN | tcp_flags::FIN),
        )),
    );
    add(
        "UdpTruncated",
        "6 bytes of UDP header",
        v6f(&ipv6_packet(src, dst, 64, &[], protocol::UDP, &udp_dg[..6])),
    );
    add(
        "UdpLength",
        "UDP length 12 in a 33-byte IPv6 payload",
        v6f(&ipv6_packet(
            src,
            dst,
            64,
            &[],
            protocol::UDP,
            &with(&udp_dg, &|p| p[4..6].copy_from_slice(&12u16.to_be_bytes())),
        )),
    );
    add(
        "Icmpv6Truncated",
        "echo request of 6 bytes (needs 8)",
        v6f(&ipv6_packet(
            src,
            dst,
            64,
            &[],
            protocol::ICMPV6,
            &icmpv6_message(
                src,
                dst,
                &icmpv6::Repr::EchoRequest {
                    ident: 1,
                    seq_no: 1,
                    data: &[],
                },
            )[..6],
        )),
    );
    add(
        "Icmpv6Truncated",
        "ICMPv6 message of 2 bytes",
        v6f(&ipv6_packet(src, dst, 64, &[], protocol::ICMPV6, &[128, 0])),
    );
    {
        let target = dst;
        let ll = link_local(ROUTER_MAC);
        let sn = solicited_node(target);
        let ns = icmpv6_message(
            ll,
            sn,
            &icmpv6::Repr::NeighborSolicit {
                target,
                source_lladdr: None,
            },
        );
        add(
            "Icmpv6Truncated",
            "neighbor solicitation of 16 bytes (needs 24)",
            ether(
                &Link {
                    src: ROUTER_MAC,
                    dst: multicast_mac(sn),
                    tags: &[],
                },
                ethertype::IPV6,
                &ipv6_packet(ll, sn, 255, &[], protocol::ICMPV6, &ns[..16]),
            ),
        );
    }
    {
        let req = arp::Repr::request(ROUTER_MAC, 0xc000_0201, V4_SERVICE);
        let full = arp_frame(
            &Link {
                src: ROUTER_MAC,
                dst: [0xff; 6],
                tags: &[],
            },
            &req,
        );
        add(
            "ArpTruncated",
            "ARP request cut to 20 bytes",
            full[..14 + 20].to_vec(),
        );
    }

    let mut s = Script::default();
    let mut t = BASE_NS;
    for (cause, what, frame) in cases {
        t += 3 * MS;
        s.push(t, frame, Label::Malformed, format!("{cause}: {what}"));
    }
    // Padding after a valid payload is not malformed: the inner packet decides.
    let pad = |f: Vec<u8>, n: usize| {
        let mut f = f;
        f.resize(f.len() + n, 0);
        f
    };
    t += 3 * MS;
    s.push(
        t,
        pad(v6f(&syn_pkt), 12),
        Label::AssumedGood,
        "clean SYN followed by 12 bytes of Ethernet padding",
    );
    t += 3 * MS;
    s.push(
        t,
        pad(
            v6f(&ipv6_packet(
                src,
                dst,
                64,
                &[],
                protocol::UDP,
                &udp_datagram(a, b, 41005, 53, &dns_query(0x56, "svc.example.net")),
            )),
            6,
        ),
        Label::AssumedGood,
        "UDP DNS query followed by 6 bytes of padding (UDP length = IPv6 payload length)",
    );
    t += 3 * MS;
    s.push(
        t,
        pad(v6_tcp(&ack_seg), 8),
        Label::NoFlow,
        "ACK with no flow followed by 8 bytes of padding",
    );
    Fixture {
        name: "malformed",
        summary:
            "one frame per header rule (every weir_wire::Malformed cause), then padded valid frames",
        config: None,
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 7. fragments

fn fragments() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0xf4a6);
    let mut s = Script::default();
    let src = 0x2001_0db8_cf00_0007_0000_0000_0000_0007u128;
    let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
    let bad = non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
    let frag = |d: u128, exts: &[Ext], proto: u8, bytes: &[u8]| {
        ether(
            &Link::INBOUND,
            ethertype::IPV6,
            &ipv6_packet(src, d, 64, exts, proto, bytes),
        )
    };
    let big: Vec<u8> = (0..1200u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut t = BASE_NS;
    let next = |t: &mut u64| {
        *t += 5 * MS;
        *t
    };
    // A UDP datagram in two fragments (to the discard port).
    let dg = udp_datagram(Addr::V6(src), Addr::V6(dst), 42000, 9, &big);
    let split = 1008; // 8-byte UDP header + 1000 bytes: a multiple of 8
    s.push(
        next(&mut t),
        frag(
            dst,
            &[Ext::Fragment {
                offset: 0,
                more: true,
                ident: 0x0100_0001,
            }],
            protocol::UDP,
            &dg[..split],
        ),
        Label::Fragment,
        "first fragment of a conforming UDP datagram",
    );
    s.push(
        next(&mut t),
        frag(
            dst,
            &[Ext::Fragment {
                offset: (split / 8) as u16,
                more: false,
                ident: 0x0100_0001,
            }],
            protocol::UDP,
            &dg[split..],
        ),
        Label::Fragment,
        "last fragment of that datagram",
    );
    // The same to a non-conforming address: the address rule works on fragments.
    let dg_bad = udp_datagram(Addr::V6(src), Addr::V6(bad), 42001, 9, &big);
    s.push(
        next(&mut t),
        frag(
            bad,
            &[Ext::Fragment {
                offset: 0,
                more: true,
                ident: 0x0100_0002,
            }],
            protocol::UDP,
            &dg_bad[..split],
        ),
        Label::SsaViolation,
        "first fragment to a non-conforming address",
    );
    s.push(
        next(&mut t),
        frag(
            bad,
            &[Ext::Fragment {
                offset: (split / 8) as u16,
                more: false,
                ident: 0x0100_0002,
            }],
            protocol::UDP,
            &dg_bad[split..],
        ),
        Label::SsaViolation,
        "last fragment to a non-conforming address",
    );
    let dg_out = udp_datagram(Addr::V6(src), Addr::V6(OTHER_SERVICE), 42002, 9, &big);
    s.push(
        next(&mut t),
        frag(
            OTHER_SERVICE,
            &[Ext::Fragment {
                offset: 0,
                more: true,
                ident: 0x0100_0003,
            }],
            protocol::UDP,
            &dg_out[..split],
        ),
        Label::NotService,
        "first fragment to an address outside the prefix",
    );
    s.push(
        next(&mut t),
        frag(
            OTHER_SERVICE,
            &[Ext::Fragment {
                offset: (split / 8) as u16,
                more: false,
                ident: 0x0100_0003,
            }],
            protocol::UDP,
            &dg_out[split..],
        ),
        Label::NotService,
        "last fragment to an address outside the prefix",
    );
    // An atomic fragment carrying a clean SYN is a whole packet; the connection goes on.
    let mut c = Conversation::new(Addr::V6(src), Addr::V6(dst), 42100, 80, isn(&mut rng));
    c.exts = &[Ext::Fragment {
        offset: 0,
        more: false,
        ident: 0x0100_0004,
    }];
    s.push(
        next(&mut t),
        c.syn(),
        Label::AssumedGood,
        "atomic fragment (offset 0, M=0) carrying a clean SYN: a whole packet",
    );
    c.exts = &[];
    s.push(
        next(&mut t),
        c.syn_ack(),
        Label::Outbound,
        "service SYN-ACK",
    );
    s.push(
        next(&mut t),
        c.client(0, &[]),
        Label::KnownGood,
        "client ACK: established",
    );
    // A TCP segment of that flow in two fragments: fragments never match the flow table.
    let mut body = http_get("/large");
    body.extend((0..1300u32).map(|i| b'a' + (i % 26) as u8));
    let seg = tcp_segment(
        Addr::V6(src),
        Addr::V6(dst),
        &tcp::Repr {
            payload: &body,
            window: 507,
            ..tcp::Repr::new(c.cport, 80, c.cseq, c.sseq, tcp_flags::ACK | tcp_flags::PSH)
        },
    );
    c.cseq = c.cseq.wrapping_add(body.len() as u32);
    s.push(
        next(&mut t),
        frag(
            dst,
            &[Ext::Fragment {
                offset: 0,
                more: true,
                ident: 0x0100_0005,
            }],
            protocol::TCP,
            &seg[..1000],
        ),
        Label::Fragment,
        "first fragment of an established flow's segment (fragments never match flows)",
    );
    s.push(
        next(&mut t),
        frag(
            dst,
            &[Ext::Fragment {
                offset: 125,
                more: false,
                ident: 0x0100_0005,
            }],
            protocol::TCP,
            &seg[1000..],
        ),
        Label::Fragment,
        "last fragment of that segment",
    );
    s.push(
        next(&mut t),
        c.server(0, &[]),
        Label::Outbound,
        "service ACK of the reassembled segment",
    );
    s.push(
        next(&mut t),
        c.client(tcp_flags::FIN, &[]),
        Label::KnownGood,
        "client FIN (unfragmented): known-good",
    );
    s.push(
        next(&mut t),
        c.server(tcp_flags::FIN, &[]),
        Label::Outbound,
        "service FIN-ACK",
    );
    s.push(
        next(&mut t),
        c.client(0, &[]),
        Label::KnownGood,
        "client's last ACK",
    );
    Fixture {
        name: "fragments",
        summary:
            "IPv6 fragments: suspect `fragment`, rule still applied, atomic fragments are whole",
        config: None,
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 8. vlan

fn vlan() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0x71a2);
    let mut s = Script::default();
    const DOT1Q: &[Tag] = &[Tag {
        tpid: ethertype::VLAN,
        vid: 100,
    }];
    const QINQ: &[Tag] = &[
        Tag {
            tpid: ethertype::QINQ,
            vid: 200,
        },
        Tag {
            tpid: ethertype::VLAN,
            vid: 100,
        },
    ];
    for (k, (tags, what)) in [
        (DOT1Q, "802.1Q vid 100"),
        (QINQ, "QinQ 802.1ad vid 200 + 802.1Q vid 100"),
    ]
    .into_iter()
    .enumerate()
    {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        let mut c = Conversation::new(Addr::V6(src), Addr::V6(dst), rng.port(), 80, isn(&mut rng));
        c.link = Link::INBOUND.tagged(tags);
        http_exchange(
            &mut s,
            &mut c,
            BASE_NS + k as u64 * 300 * MS,
            15 * MS,
            Ending::Fin,
            Label::AssumedGood,
            &format!("{what} conn"),
        );
    }
    let t = BASE_NS + 700 * MS;
    {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        let frame = tcp_frame(
            &Link::INBOUND.tagged(&[
                Tag {
                    tpid: ethertype::QINQ,
                    vid: 200,
                },
                Tag {
                    tpid: ethertype::VLAN,
                    vid: 100,
                },
                Tag {
                    tpid: ethertype::VLAN,
                    vid: 7,
                },
            ]),
            Addr::V6(src),
            Addr::V6(dst),
            &tcp::Repr::syn(rng.port(), 80, 1, 1440),
        );
        s.push(
            t,
            frame,
            Label::Malformed,
            "three VLAN tags before a clean SYN",
        );
        let frame = tcp_frame(
            &Link::INBOUND.tagged(DOT1Q),
            Addr::V6(src),
            Addr::V6(non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0)),
            &tcp::Repr::syn(rng.port(), 80, 2, 1440),
        );
        s.push(
            t + 5 * MS,
            frame,
            Label::SsaViolation,
            "802.1Q-tagged SYN to a non-conforming address",
        );
        let frame = arp_frame(
            &Link {
                src: ROUTER_MAC,
                dst: [0xff; 6],
                tags: DOT1Q,
            },
            &arp::Repr::request(ROUTER_MAC, 0xc000_0201, V4_SERVICE),
        );
        s.push(t + 10 * MS, frame, Label::Host, "802.1Q-tagged ARP request");
    }
    Fixture {
        name: "vlan",
        summary: "the same conversations behind 802.1Q and QinQ tags, and a triple-tagged frame",
        config: None,
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 9. ext-headers

fn ext_headers() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0xe87);
    let mut s = Script::default();
    let mut t = BASE_NS;
    let next = |t: &mut u64| {
        *t += 4 * MS;
        *t
    };
    const EIGHT: &[Ext] = &[
        Ext::HopByHop,
        Ext::DstOpts,
        Ext::SegmentRouting,
        Ext::DstOpts,
        Ext::DstOpts,
        Ext::DstOpts,
        Ext::DstOpts,
        Ext::DstOpts,
    ];
    let chains: [(&'static [Ext], &str); 5] = [
        (&[Ext::HopByHop], "Hop-by-Hop"),
        (&[Ext::DstOpts], "Destination Options"),
        (
            &[Ext::SegmentRouting],
            "Segment Routing Header (type 4, segments left 0)",
        ),
        (
            &[
                Ext::HopByHop,
                Ext::DstOpts,
                Ext::SegmentRouting,
                Ext::DstOpts,
            ],
            "Hop-by-Hop, DstOpts, SRH, DstOpts",
        ),
        (EIGHT, "8 headers: Hop-by-Hop, DstOpts, SRH, 5 x DstOpts"),
    ];
    for (exts, what) in chains {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            next(&mut t),
            tcp_frame_ext(
                &Link::INBOUND,
                src,
                dst,
                exts,
                &tcp::Repr::syn(rng.port(), 80, rng.next_u64() as u32, 1440),
            ),
            Label::AssumedGood,
            format!("clean SYN behind {what}"),
        );
    }
    // An established flow whose client packets carry extension headers.
    {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        let mut c = Conversation::new(Addr::V6(src), Addr::V6(dst), rng.port(), 80, isn(&mut rng));
        c.exts = &[Ext::DstOpts];
        s.push(
            next(&mut t),
            c.syn(),
            Label::AssumedGood,
            "conn: SYN behind Destination Options",
        );
        s.push(
            next(&mut t),
            c.syn_ack(),
            Label::Outbound,
            "conn: service SYN-ACK",
        );
        s.push(
            next(&mut t),
            c.client(0, &[]),
            Label::KnownGood,
            "conn: ACK behind Destination Options (establishes)",
        );
        c.exts = EIGHT;
        s.push(
            next(&mut t),
            c.client(tcp_flags::PSH, &http_get("/ext")),
            Label::KnownGood,
            "conn: HTTP GET behind 8 extension headers",
        );
        s.push(
            next(&mut t),
            c.server(tcp_flags::PSH, &http_ok(321)),
            Label::Outbound,
            "conn: HTTP/1.1 200 response",
        );
        c.exts = &[Ext::HopByHop, Ext::SegmentRouting];
        s.push(
            next(&mut t),
            c.client(0, &[]),
            Label::KnownGood,
            "conn: ACK behind Hop-by-Hop and SRH",
        );
        s.odd(
            next(&mut t),
            c.client(tcp_flags::RST, &[]),
            Label::KnownGood,
            format!(
                "conn: client RST behind Hop-by-Hop and SRH (known-good, flow removed){RST_NOTE}"
            ),
        );
    }
    // Unknown next header and No Next Header: decided at step 11, after the address checks.
    let src = rng.client();
    let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
    let bad = non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
    let raw = |d: u128, exts: &[Ext], proto: u8, body: &[u8]| {
        ether(
            &Link::INBOUND,
            ethertype::IPV6,
            &ipv6_packet(src, d, 64, exts, proto, body),
        )
    };
    let exp = b"experiment 253 payload..";
    s.push(
        next(&mut t),
        raw(dst, &[], 253, exp),
        Label::UnsupportedProtocol,
        "next header 253 (experimental) to a conforming address",
    );
    s.push(
        next(&mut t),
        raw(dst, &[Ext::DstOpts], 253, exp),
        Label::UnsupportedProtocol,
        "Destination Options then next header 253 to a conforming address",
    );
    s.push(
        next(&mut t),
        raw(bad, &[], 253, exp),
        Label::SsaViolation,
        "next header 253 to a non-conforming address (rule first)",
    );
    s.push(
        next(&mut t),
        raw(OTHER_SERVICE, &[], 253, exp),
        Label::NotService,
        "next header 253 outside the prefix",
    );
    s.push(
        next(&mut t),
        raw(dst, &[], protocol::NO_NEXT_HEADER, &[]),
        Label::UnsupportedProtocol,
        "No Next Header (59)",
    );
    s.push(
        next(&mut t),
        raw(
            dst,
            &[Ext::HopByHop, Ext::DstOpts],
            protocol::NO_NEXT_HEADER,
            &[],
        ),
        Label::UnsupportedProtocol,
        "Hop-by-Hop, Destination Options, No Next Header",
    );
    Fixture {
        name: "ext-headers",
        summary: "IPv6 extension-header chains (up to 8), unknown next header and No Next Header",
        config: None,
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 10. icmp

fn icmp_error(
    outer_src: u128,
    outer_dst: u128,
    ty: u8,
    code: u8,
    param: u32,
    quote: &[u8],
) -> Vec<u8> {
    icmpv6_frame(
        &Link::INBOUND,
        outer_src,
        outer_dst,
        64,
        &icmpv6::Repr::Error {
            ty,
            code,
            param,
            quote,
        },
    )
}

fn icmp() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0x1c3);
    let mut s = Script::default();
    let mut t = BASE_NS;
    let next = |t: &mut u64| {
        *t += 6 * MS;
        *t
    };
    let src = rng.client();
    let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
    let bad = non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
    s.push(
        next(&mut t),
        echo_request(src, dst, 0x31, 1),
        Label::AssumedGood,
        "echo request to a conforming address",
    );
    s.push(
        next(&mut t),
        echo_reply(dst, src, 0x31, 1, &Link::OUTBOUND),
        Label::Outbound,
        "echo reply from the service",
    );
    s.push(
        next(&mut t),
        echo_request(src, bad, 0x32, 1),
        Label::SsaViolation,
        "echo request to a non-conforming address (unanswered: dropped)",
    );
    s.odd(
        next(&mut t),
        echo_reply(src, dst, 0x33, 7, &Link::INBOUND),
        Label::UnsupportedProtocol,
        "inbound echo reply (to no request)",
    );
    s.odd(
        next(&mut t),
        icmpv6_frame(
            &Link::INBOUND,
            src,
            dst,
            64,
            &icmpv6::Repr::Error {
                ty: 200,
                code: 0,
                param: 0,
                quote: &[],
            },
        ),
        Label::UnsupportedProtocol,
        "ICMPv6 type 200 (private experimentation)",
    );

    // An established flow whose large response meets a 1280-byte link.
    let mut c = Conversation::new(Addr::V6(src), Addr::V6(dst), 43000, 80, isn(&mut rng));
    s.push(next(&mut t), c.syn(), Label::AssumedGood, "conn A: SYN");
    s.push(
        next(&mut t),
        c.syn_ack(),
        Label::Outbound,
        "conn A: service SYN-ACK",
    );
    s.push(
        next(&mut t),
        c.client(0, &[]),
        Label::KnownGood,
        "conn A: ACK (established)",
    );
    s.push(
        next(&mut t),
        c.client(tcp_flags::PSH, &http_get("/big")),
        Label::KnownGood,
        "conn A: HTTP GET",
    );
    let response = c.server(tcp_flags::PSH, &http_ok(1300));
    let quote_of =
        |frame: &[u8], n: usize| frame[14..].iter().copied().take(n).collect::<Vec<u8>>();
    let quote = quote_of(&response, 1280 - 48);
    s.push(
        next(&mut t),
        response,
        Label::Outbound,
        "conn A: 1.4 kB response from the service",
    );
    s.odd(
        next(&mut t),
        icmp_error(ROUTER_V6, dst, 2, 0, 1280, &quote),
        Label::KnownGood,
        format!("Packet Too Big (MTU 1280) from a router, quoting conn A's response: the quote proves the flow{QUOTE_NOTE}"),
    );
    s.push(
        next(&mut t),
        icmp_error(ROUTER_V6, dst, 1, 3, 0, &quote_of(&c.server(0, &[]), 100)),
        Label::KnownGood,
        "Destination Unreachable (address) quoting 100 bytes of conn A's next segment",
    );
    let conn_a_ack = c.server(0, &[]);
    s.push(
        next(&mut t),
        icmp_error(ROUTER_V6, dst, 3, 0, 0, &quote_of(&conn_a_ack, 48)),
        Label::KnownGood,
        "Time Exceeded quoting exactly the IPv6 header and 8 TCP bytes of conn A",
    );
    // Unknown flow: same addresses, another client port.
    let mut other = Conversation::new(Addr::V6(src), Addr::V6(dst), 43999, 80, isn(&mut rng));
    s.odd(
        next(&mut t),
        icmp_error(
            ROUTER_V6,
            dst,
            2,
            0,
            1280,
            &quote_of(&other.server(tcp_flags::PSH, &http_ok(1300)), 1232),
        ),
        Label::IcmpUnmatched,
        format!(
            "Packet Too Big quoting a flow that does not exist (other client port){QUOTE_NOTE}"
        ),
    );
    s.odd(
        next(&mut t),
        icmp_error(ROUTER_V6, dst, 2, 0, 1280, &quote_of(&conn_a_ack, 42)),
        Label::IcmpUnmatched,
        "Packet Too Big quoting conn A but cut 2 bytes into TCP (no ports)",
    );
    s.push(
        next(&mut t),
        icmp_error(
            ROUTER_V6,
            dst,
            2,
            0,
            1280,
            &quote_of(
                &udp_frame(
                    &Link::OUTBOUND,
                    Addr::V6(dst),
                    Addr::V6(src),
                    53,
                    40000,
                    &dns_query(1, "www.example.net"),
                ),
                200,
            ),
        ),
        Label::IcmpUnmatched,
        "Packet Too Big quoting a UDP packet from the service (not TCP)",
    );
    s.push(
        next(&mut t),
        icmp_error(
            ROUTER_V6,
            dst,
            2,
            0,
            1280,
            &quote_of(
                &tcp_frame(
                    &Link::INBOUND,
                    Addr::V6(src),
                    Addr::V6(dst),
                    &tcp::Repr::new(43000, 80, c.cseq, c.sseq, tcp_flags::ACK),
                ),
                60,
            ),
        ),
        Label::IcmpUnmatched,
        "Packet Too Big quoting the client's own packet (quoted source is not a service address)",
    );
    s.odd(
        next(&mut t),
        icmp_error(ROUTER_V6, OTHER_SERVICE, 2, 0, 1280, &quote),
        Label::NotService,
        format!(
            "Packet Too Big to an address outside the prefix (step 3 before step 4){QUOTE_NOTE}"
        ),
    );
    // A half-open flow.
    {
        let src2 = rng.client();
        let dst2 = conforming(&rule, &SERVICE_PREFIX, src2, 0, 0);
        let mut h = Conversation::new(Addr::V6(src2), Addr::V6(dst2), 44000, 80, isn(&mut rng));
        s.push(next(&mut t), h.syn(), Label::AssumedGood, "conn B: SYN");
        let synack = h.syn_ack();
        let q = quote_of(&synack, 80);
        s.push(
            next(&mut t),
            synack,
            Label::Outbound,
            "conn B: service SYN-ACK (half-open)",
        );
        s.push(
            next(&mut t),
            icmp_error(ROUTER_V6, dst2, 1, 0, 0, &q),
            Label::IcmpUnmatched,
            "Destination Unreachable quoting conn B's SYN-ACK: half-open flows do not match",
        );
    }
    // Conn A is torn down; the same quote no longer matches.
    s.push(
        next(&mut t),
        c.client(0, &[]),
        Label::KnownGood,
        "conn A: client ACK",
    );
    s.odd(
        next(&mut t),
        c.client(tcp_flags::RST, &[]),
        Label::KnownGood,
        format!("conn A: client RST (flow removed){RST_NOTE}"),
    );
    s.odd(
        next(&mut t),
        icmp_error(ROUTER_V6, dst, 2, 0, 1280, &quote),
        Label::IcmpUnmatched,
        format!("the first Packet Too Big again, after conn A was reset{QUOTE_NOTE}"),
    );
    Fixture {
        name: "icmp",
        summary: "ICMPv6 echo, and errors classified by the packet they quote",
        config: None,
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 11. ndp-arp

fn ndp_arp() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0x4d9);
    let mut s = Script::default();
    let mut t = BASE_NS;
    let next = |t: &mut u64| {
        *t += 10 * MS;
        *t
    };
    let target = conforming(&rule, &SERVICE_PREFIX, rng.client(), 0, 0);
    let router_ll = link_local(ROUTER_MAC);
    let weir_ll = link_local(WEIR_MAC);
    s.push(
        next(&mut t),
        neighbor_solicit(target),
        Label::Host,
        "NS from the router's link-local address for a service address",
    );
    {
        let sn = solicited_node(target);
        let f = icmpv6_frame(
            &Link {
                src: ROUTER_MAC,
                dst: multicast_mac(sn),
                tags: &[],
            },
            0,
            sn,
            255,
            &icmpv6::Repr::NeighborSolicit {
                target,
                source_lladdr: None,
            },
        );
        s.push(
            next(&mut t),
            f,
            Label::Host,
            "DAD NS from the unspecified address (NDP goes to host before the martian check)",
        );
    }
    s.push(
        next(&mut t),
        icmpv6_frame(
            &Link::INBOUND,
            router_ll,
            weir_ll,
            255,
            &icmpv6::Repr::NeighborAdvert {
                flags: icmpv6::NA_ROUTER | icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE,
                target: router_ll,
                target_lladdr: Some(ROUTER_MAC),
            },
        ),
        Label::Host,
        "NA from the router",
    );
    {
        let all_nodes = 0xff02_0000_0000_0000_0000_0000_0000_0001u128;
        s.push(
            next(&mut t),
            icmpv6_frame(
                &Link {
                    src: ROUTER_MAC,
                    dst: multicast_mac(all_nodes),
                    tags: &[],
                },
                router_ll,
                all_nodes,
                255,
                &icmpv6::Repr::NeighborAdvert {
                    flags: icmpv6::NA_ROUTER | icmpv6::NA_OVERRIDE,
                    target: router_ll,
                    target_lladdr: Some(ROUTER_MAC),
                },
            ),
            Label::Host,
            "unsolicited NA to all-nodes",
        );
    }
    {
        let all_routers = 0xff02_0000_0000_0000_0000_0000_0000_0002u128;
        s.push(
            next(&mut t),
            icmpv6_frame(
                &Link {
                    src: ROUTER_MAC,
                    dst: multicast_mac(all_routers),
                    tags: &[],
                },
                router_ll,
                all_routers,
                255,
                &icmpv6::Repr::RouterSolicit {
                    source_lladdr: Some(ROUTER_MAC),
                },
            ),
            Label::Host,
            "RS to all-routers",
        );
    }
    s.push(
        next(&mut t),
        arp_frame(
            &Link {
                src: ROUTER_MAC,
                dst: [0xff; 6],
                tags: &[],
            },
            &arp::Repr::request(ROUTER_MAC, 0xc000_0201, V4_SERVICE),
        ),
        Label::Host,
        "ARP request for 192.0.2.10",
    );
    s.push(
        next(&mut t),
        arp_frame(
            &Link::INBOUND,
            &arp::Repr {
                op: arp::OP_REPLY,
                sha: ROUTER_MAC,
                spa: 0xc000_0201,
                tha: WEIR_MAC,
                tpa: V4_SERVICE,
            },
        ),
        Label::Host,
        "ARP reply from 192.0.2.1",
    );
    s.odd(
        next(&mut t),
        ether(
            &Link {
                src: ROUTER_MAC,
                dst: [0x01, 0x80, 0xc2, 0, 0, 0x0e],
                tags: &[],
            },
            0x88cc,
            &lldp(ROUTER_MAC),
        ),
        Label::UnsupportedProtocol,
        "LLDP (EtherType 0x88cc)",
    );
    s.odd(
        next(&mut t),
        ether(
            &Link::INBOUND,
            0x88b5,
            b"local experimental ethertype payload, padded....",
        ),
        Label::UnsupportedProtocol,
        "EtherType 0x88b5 (local experimental)",
    );
    Fixture {
        name: "ndp-arp",
        summary: "NDP and ARP go to the host path; other EtherTypes are unsupported",
        config: None,
        frames: s.finish(),
    }
}

/// A minimal valid LLDPDU: chassis id (MAC), port id (name), TTL, end.
fn lldp(mac: [u8; 6]) -> Vec<u8> {
    let tlv = |ty: u16, val: &[u8]| {
        let h = (ty << 9) | val.len() as u16;
        let mut v = h.to_be_bytes().to_vec();
        v.extend_from_slice(val);
        v
    };
    let mut out = Vec::new();
    let mut chassis = vec![4u8];
    chassis.extend_from_slice(&mac);
    out.extend(tlv(1, &chassis));
    out.extend(tlv(2, b"\x05eth0"));
    out.extend(tlv(3, &120u16.to_be_bytes()));
    out.extend(tlv(0, &[]));
    out
}

// ---------------------------------------------------------------------------------------
// 12. blocked

const BLOCKED: u128 = 0x2001_0db8_cbad_0000_0000_0000_0000_0000;
const EXPIRED: u128 = 0x2001_0db8_c01d_0000_0000_0000_0000_0000;
const EXPIRING: u128 = 0x2001_0db8_c0de_0000_0000_0000_0000_0000;
const EXPIRING_AFTER_S: u64 = 10;

fn blocked() -> Fixture {
    let rule = default_rule();
    let mut rng = Rng::new(0xb10c);
    let mut s = Script::default();
    let in48 = |rng: &mut Rng, p: u128| {
        p | (u128::from(rng.below(1 << 16)) << 64) | u128::from(rng.next_u64() | 1)
    };
    let mut t = BASE_NS + S;
    let next = |t: &mut u64| {
        *t += 500 * MS;
        *t
    };
    for i in 0..3 {
        let src = in48(&mut rng, BLOCKED);
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            next(&mut t),
            syn_frame(src, dst, rng.port(), i),
            Label::Blocked,
            format!("SYN from {} in blocked 2001:db8:cbad::/48", v6(src)),
        );
    }
    {
        let src = in48(&mut rng, BLOCKED);
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            next(&mut t),
            dns_frame(Addr::V6(src), Addr::V6(dst), rng.port(), 3),
            Label::Blocked,
            "UDP from the blocked /48",
        );
        s.push(
            next(&mut t),
            ack_frame(src, dst, rng.port(), 3, 4),
            Label::Blocked,
            "ACK from the blocked /48 (step 6 before step 9)",
        );
        s.push(
            next(&mut t),
            syn_frame(
                src,
                non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0),
                rng.port(),
                5,
            ),
            Label::SsaViolation,
            "SYN from the blocked /48 to a non-conforming address (step 5 before step 6)",
        );
    }
    for i in 0..2 {
        let src = in48(&mut rng, EXPIRED);
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            next(&mut t),
            syn_frame(src, dst, rng.port(), i),
            Label::AssumedGood,
            "SYN from 2001:db8:c01d::/48, whose block expired before the capture",
        );
    }
    // The expiring block: SYNs before and after its `until`, never within 0.5 s of it.
    let until_ns = BASE_NS + EXPIRING_AFTER_S * S;
    let mut t2 = BASE_NS + 2 * S + 250 * MS;
    while t2 < BASE_NS + 18 * S {
        let src = in48(&mut rng, EXPIRING);
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        assert!(t2.abs_diff(until_ns) >= 500 * MS);
        let (label, what) = if t2 < until_ns {
            (Label::Blocked, "still blocked")
        } else {
            (Label::AssumedGood, "block expired")
        };
        s.push(
            t2,
            syn_frame(src, dst, rng.port(), 1),
            label,
            format!(
                "SYN from 2001:db8:c0de::/48 at +{:.2} s: {what}",
                (t2 - BASE_NS) as f64 / 1e9
            ),
        );
        t2 += 2 * S + 170 * MS;
    }
    // Martian sources (none inside the service prefix: in replay that is `outbound`).
    let victim = conforming(&rule, &SERVICE_PREFIX, rng.client(), 0, 0);
    for (src, what, odd) in [
        (1u128, "::1 (loopback)", false),
        (0, ":: (unspecified)", false),
        (
            0xff02_0000_0000_0000_0000_0000_0000_0001,
            "ff02::1 (multicast)",
            true,
        ),
        (
            0xfe80_0000_0000_0000_0000_0000_0000_0001,
            "fe80::1 (link-local) sending a SYN, not NDP",
            false,
        ),
    ] {
        let f = syn_frame(src, victim, rng.port(), 9);
        if odd {
            s.odd(next(&mut t), f, Label::Martian, format!("SYN from {what}"));
        } else {
            s.push(next(&mut t), f, Label::Martian, format!("SYN from {what}"));
        }
    }
    {
        let src = rng.client();
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        s.push(
            next(&mut t),
            syn_frame(src, dst, rng.port(), 10),
            Label::AssumedGood,
            "SYN from an unblocked client",
        );
    }
    Fixture {
        name: "blocked",
        summary: "blocked source prefixes (permanent, expired, expiring mid-capture) and martians",
        config: Some(format!(
            "# blocked.pcap: static blocks.\n\n\
             # Blocked for good.\n[[block]]\nprefix = \"2001:db8:cbad::/48\"\n\n\
             # Expired an hour before the capture starts.\n[[block]]\nprefix = \"2001:db8:c01d::/48\"\nuntil = {}\n\n\
             # Expires {EXPIRING_AFTER_S} s into the capture.\n[[block]]\nprefix = \"2001:db8:c0de::/48\"\nuntil = {}\n",
            BASE_S - 3600,
            BASE_S + EXPIRING_AFTER_S
        )),
        frames: s.finish(),
    }
}

// ---------------------------------------------------------------------------------------
// 13. time-hop, 14. keyed-hash

const TIME_HOP_KEY: [u8; 16] = *b"weir time-hop k!";
const KEYED_KEY: [u8; 16] = *b"weir keyed-hash!";

fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn time_hop() -> Fixture {
    let rule = Rule::TimeHop {
        key: TIME_HOP_KEY,
        src_prefix_len: 64,
        period_s: 30,
        skew: 1,
    };
    let mut rng = Rng::new(0x7170);
    let mut s = Script::default();
    assert_eq!(BASE_S % 30, 0);
    // Established flow opened in window W (+55 s: 25 s into window BASE/30 + 1).
    let src = rng.client();
    let t_open = BASE_NS + 55 * S;
    let dst = conforming(&rule, &SERVICE_PREFIX, src, secs(t_open), 1);
    let mut c = Conversation::new(Addr::V6(src), Addr::V6(dst), 45000, 80, isn(&mut rng));
    s.push(
        t_open,
        c.syn(),
        Label::AssumedGood,
        "conn: SYN to the address of the current window",
    );
    s.push(
        t_open + MS,
        c.syn_ack(),
        Label::Outbound,
        "conn: service SYN-ACK",
    );
    s.push(
        t_open + 20 * MS,
        c.client(0, &[]),
        Label::KnownGood,
        "conn: ACK (established)",
    );
    s.push(
        t_open + 21 * MS,
        c.client(tcp_flags::PSH, &http_get("/stream")),
        Label::KnownGood,
        "conn: HTTP GET",
    );
    s.push(
        t_open + 30 * MS,
        c.server(tcp_flags::PSH, &http_ok(600)),
        Label::Outbound,
        "conn: response",
    );
    // +85 s: one window later (accepted by skew anyway); +125 s: three windows later.
    let t_late = BASE_NS + 125 * S;
    assert!(!rule.check(src, dst, secs(t_late)));
    s.push(
        BASE_NS + 85 * S,
        c.client(tcp_flags::PSH, &http_get("/stream?more")),
        Label::KnownGood,
        "conn: request one window later",
    );
    s.push(
        BASE_NS + 85 * S + 9 * MS,
        c.server(tcp_flags::PSH, &http_ok(400)),
        Label::Outbound,
        "conn: response",
    );
    s.push(
        t_late,
        c.client(tcp_flags::PSH, &http_get("/stream?again")),
        Label::KnownGood,
        "conn: request after its window rolled past the skew: established flows still pass",
    );
    s.push(
        t_late + 9 * MS,
        c.server(tcp_flags::PSH, &http_ok(500)),
        Label::Outbound,
        "conn: response",
    );
    s.push(
        t_late + 30 * MS,
        c.client(0, &[]),
        Label::KnownGood,
        "conn: ACK",
    );
    s.push(
        t_late + 40 * MS,
        syn_frame(src, dst, 45001, 1),
        Label::SsaViolation,
        "new SYN to the conn's old address: a new flow needs the current address",
    );
    // New SYNs at t = +135 s (window BASE/30 + 4, 15 s in), to the addresses of each window.
    let t = BASE_NS + 135 * S;
    for (back, label, what) in [
        (0u64, Label::AssumedGood, "the current window"),
        (
            1,
            Label::AssumedGood,
            "the previous window (accepted by skew 1)",
        ),
        (2, Label::SsaViolation, "two windows ago (beyond the skew)"),
        (3, Label::SsaViolation, "three windows ago"),
    ] {
        let src = rng.client();
        let d = conforming(&rule, &SERVICE_PREFIX, src, secs(t) - 30 * back, 2);
        s.push(
            t + back * 100 * MS,
            syn_frame(src, d, 46000 + back as u16, 3),
            label,
            format!("SYN to the address of {what}"),
        );
    }
    {
        let src = rng.client();
        let d = conforming(&default_rule(), &SERVICE_PREFIX, src, 0, 0);
        s.push(
            t + S,
            syn_frame(src, d, 46100, 4),
            Label::SsaViolation,
            "SYN to the src-mix address (not this rule)",
        );
    }
    Fixture {
        name: "time-hop",
        summary: "time-hop rule (period 30 s, skew 1): windows, skew, and established flows outliving them",
        config: Some(format!(
            "# time-hop.pcap: destination = SipHash(key, source /64, window), window = 30 s.\n\n\
             [ssa]\nrule = \"time-hop\"\nkey = \"{}\"\nsrc_prefix_len = 64\nperiod_s = 30\nskew = 1\n",
            hex(&TIME_HOP_KEY)
        )),
        frames: s.finish(),
    }
}

fn keyed_hash() -> Fixture {
    let rule = Rule::KeyedHash {
        key: KEYED_KEY,
        src_prefix_len: 56,
    };
    let prefix = Prefix {
        addr: 0x2001_0db8_0005_0000_0000_0000_0000_0000,
        len: 64,
    };
    let mut rng = Rng::new(0x6b68);
    let mut s = Script::default();
    let src = rng.client();
    let dst = conforming(&rule, &prefix, src, 0, 1);
    let mut c = Conversation::new(Addr::V6(src), Addr::V6(dst), 47000, 80, isn(&mut rng));
    http_exchange(
        &mut s,
        &mut c,
        BASE_NS,
        9 * MS,
        Ending::Fin,
        Label::AssumedGood,
        "conn",
    );
    let mut t = BASE_NS + 200 * MS;
    let next = |t: &mut u64| {
        *t += 7 * MS;
        *t
    };
    // Another /64 of the same /56 hashes to the same address.
    let sibling = (src ^ (0x5au128 << 64)) ^ 0x99;
    s.push(
        next(&mut t),
        syn_frame(sibling, dst, 47100, 1),
        Label::AssumedGood,
        "SYN from another /64 of the same /56: same hashed address",
    );
    let other = rng.client();
    s.push(
        next(&mut t),
        syn_frame(other, dst, 47101, 2),
        Label::SsaViolation,
        "SYN from another /56 to that address",
    );
    s.push(
        next(&mut t),
        syn_frame(other, conforming(&rule, &prefix, other, 0, 7), 47102, 3),
        Label::AssumedGood,
        "SYN from that /56 to its own hashed address",
    );
    s.push(
        next(&mut t),
        syn_frame(
            other,
            conforming(&default_rule(), &prefix, other, 0, 0),
            47103,
            4,
        ),
        Label::SsaViolation,
        "SYN to the src-mix address (not this rule)",
    );
    s.push(
        next(&mut t),
        syn_frame(other, dst ^ (1 << 40), 47104, 5),
        Label::SsaViolation,
        "SYN to the hashed address with one low bit flipped",
    );
    Fixture {
        name: "keyed-hash",
        summary: "keyed-hash rule over source /56s",
        config: Some(format!(
            "# keyed-hash.pcap: destination low 64 bits = SipHash-2-4(key, source /56).\n\n\
             [ssa]\nrule = \"keyed-hash\"\nkey = \"{}\"\nsrc_prefix_len = 56\n",
            hex(&KEYED_KEY)
        )),
        frames: s.finish(),
    }
}

/// The real-world client networks of the spread fixtures (prefix, length): DESIGN.md,
/// "Slices must spread clients".
const SPREAD_NETWORKS: [(u128, u8); 7] = [
    (0x2001_0200 << 96, 23),
    (0x2003 << 112, 19),
    (0x2400 << 112, 12),
    (0x2600 << 112, 12),
    (0x2800 << 112, 12),
    (0x2a00 << 112, 12),
    (0x2c00 << 112, 12),
];

/// Clients of the spread fixtures.
pub const SPREAD_CLIENTS: usize = 2000;

/// 2,000 clients, each from its own /64 drawn from [`SPREAD_NETWORKS`], each opening one
/// connection (a clean SYN) to the address `rule` gives it, 500 µs apart: every SYN is a new
/// flow within its bucket (assumed-good). Also returns the sources.
fn spread_script(rule: &Rule) -> (Script, Vec<u128>) {
    let mut rng = Rng::new(0x7370_7265_6164);
    let mut s = Script::default();
    let mut sources = Vec::with_capacity(SPREAD_CLIENTS);
    for i in 0..SPREAD_CLIENTS {
        let (net, len) = SPREAD_NETWORKS[i % SPREAD_NETWORKS.len()];
        let host =
            (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) & !Prefix::mask(len);
        let src = net | host | 1;
        sources.push(src);
        let dst = conforming(rule, &SERVICE_PREFIX, src, 0, i as u64);
        s.push(
            BASE_NS + i as u64 * 500 * US,
            syn_frame(src, dst, rng.port(), rng.next_u64() as u32),
            Label::AssumedGood,
            format!(
                "client {i}: SYN from {} to its {} address {}",
                v6(src),
                rule.name(),
                v6(dst)
            ),
        );
    }
    (s, sources)
}

fn spread() -> Fixture {
    let (s, _) = spread_script(&default_rule());
    Fixture {
        name: "spread",
        summary: "2,000 clients from seven real-world networks, one new flow each, under the default rule (src-mix) and 4 workers",
        config: Some(
            "# spread.pcap: the built-in default rule (src-mix) with 4 workers; every worker must get\n\
             # a fair share of the new flows (dataplane/tests/fixtures.rs).\n\n\
             [dataplane]\nworkers = 4\n"
                .into(),
        ),
        frames: s.finish(),
    }
}

fn spread_src_bits() -> Fixture {
    let rule = Rule::SrcBits {
        src_start: 0,
        dst_start: 64,
        len: 64,
    };
    let (mut s, sources) = spread_script(&rule);
    // The same clients' src-mix addresses are violations under src-bits.
    for (i, &src) in sources.iter().enumerate().take(7) {
        let dst = conforming(&default_rule(), &SERVICE_PREFIX, src, 0, 0);
        s.push(
            BASE_NS + SPREAD_CLIENTS as u64 * 500 * US + i as u64 * MS,
            syn_frame(src, dst, 40000 + i as u16, 7),
            Label::SsaViolation,
            format!("client {i}: SYN to its src-mix address (not this rule)"),
        );
    }
    Fixture {
        name: "spread-src-bits",
        summary: "the spread fixture's clients under the seed's src-bits rule: their slices cluster",
        config: Some(
            "# spread-src-bits.pcap: the seed's src-bits rule (source [0, 64) = destination [64, 128))\n\
             # with 4 workers. The slice bits [64, 78) are the client's first 14 bits, so clients\n\
             # cluster in a few slices (dataplane/tests/fixtures.rs shows one worker getting most).\n\n\
             [ssa]\nrule = \"src-bits\"\nsrc_start = 0\ndst_start = 64\nlen = 64\n\n\
             [dataplane]\nworkers = 4\n"
                .into(),
        ),
        frames: s.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_wire::parse_frame;

    #[test]
    fn malformed_frames_break_the_rule_their_note_names() {
        let f = malformed();
        for (i, fr) in f.frames.iter().enumerate() {
            let got = parse_frame(&fr.data);
            if fr.label == Label::Malformed {
                let want = fr.note.split(':').next().unwrap();
                assert_eq!(
                    format!("{:?}", got.unwrap_err()),
                    want,
                    "frame {i}: {}",
                    fr.note
                );
            } else {
                assert!(got.is_ok(), "frame {i}: {}", fr.note);
            }
        }
    }

    #[test]
    fn timestamps_never_decrease_and_start_at_base() {
        for f in all() {
            assert!(f.frames.first().unwrap().ts_ns >= BASE_NS, "{}", f.name);
            assert!(
                f.frames.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns),
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn bucket_is_exact() {
        let mut b = Bucket::new(2);
        assert!(b.take(0)); // starts full: 2 → 1
        assert!(b.take(10 * MS)); // 1.02 → 0.02
        assert!(!b.take(100 * MS)); // 0.2
        assert!(b.take(600 * MS)); // 1.2 → 0.2
        assert!(!b.clear_at(1000 * MS)); // exactly 1.0: too close to call
    }
}
