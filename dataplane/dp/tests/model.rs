//! The classifier against a small reference model written plainly from DESIGN.md's list.
//!
//! proptest generates sequences of abstract events (a client's SYN, the server's SYN-ACK,
//! the completing ACK with a right or wrong number, data, FIN and RST in both directions,
//! UDP, echo, NDP, martian and out-of-prefix sources and destinations, truncated frames,
//! fragments, Packet Too Big quoting known and unknown flows, blocked sources, time
//! passing). Each event is built into real frame bytes with `weir-wire`'s emitters and fed
//! to the classifier; the model decides the same event from the event itself — no
//! parsing, unbounded `HashMap`s, the rules in DESIGN.md's words — and the two must agree
//! on every packet, including the worker of every queued packet.

use std::collections::HashMap;

use proptest::prelude::*;
use weir_dp::replay::REPLAY_SEED;
use weir_dp::{Classifier, Limits, Policy, Vantage};
use weir_model::config::Config;
use weir_model::Disposition;
use weir_wire::checksum::Pseudo;
use weir_wire::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use weir_wire::{ethernet, icmpv6, ipv6, ipv6ext, tcp, udp};

const T0: u64 = 1_767_225_600_000_000_000;
const SERVICE: u128 = 0x2001_0db8_0005_0000_0000_0000_0000_0000;
const RATE: u64 = 3;

/// Clients 0..4 in their own /64s; client 4 shares client 0's /64; client 3's /64 is
/// blocked until T0 + 20 s.
fn client(i: usize) -> u128 {
    let net: u128 = match i {
        4 => 0x2001_0db8_c000_0000,
        i => 0x2001_0db8_c000_0000 + i as u128,
    };
    (net << 64) | (0x100 + i as u128)
}

/// DESIGN.md's src-mix, written out here so the model does not share code with the
/// classifier: MurmurHash3's 64-bit finalizer of the source's high 64 bits.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ceb9fe1a85ec53);
    k ^ (k >> 33)
}

fn conforming(src: u128) -> u128 {
    SERVICE | u128::from(fmix64((src >> 64) as u64))
}

fn config() -> Config {
    Config::from_toml(
        "model",
        &format!(
            "[limits]\nnew_flows_per_sec = {RATE}\nflow_table_capacity = 4096\n\
             [[block]]\nprefix = \"2001:db8:c000:3::/64\"\nuntil = {}\n",
            T0 / 1_000_000_000 + 20
        ),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Ev {
    Syn {
        c: usize,
        p: u16,
        conform: bool,
    },
    SynAck {
        c: usize,
        p: u16,
        seq: u32,
    },
    Ack {
        c: usize,
        p: u16,
        right: bool,
        fin: bool,
    },
    Data {
        c: usize,
        p: u16,
    },
    Rst {
        c: usize,
        p: u16,
        inbound: bool,
    },
    Fin {
        c: usize,
        p: u16,
        inbound: bool,
    },
    Udp {
        c: usize,
        conform: bool,
    },
    Echo {
        c: usize,
        conform: bool,
    },
    Ns,
    Martian {
        kind: u8,
    },
    NotService {
        c: usize,
    },
    Truncated {
        c: usize,
        cut: u8,
    },
    Frag {
        c: usize,
        later: bool,
    },
    Ptb {
        c: usize,
        p: u16,
        full: bool,
    },
    Advance {
        ms: u32,
    },
}

fn ev() -> impl Strategy<Value = Ev> {
    let c = 0usize..5;
    let p = 0u16..3;
    prop_oneof![
        3 => (c.clone(), p.clone(), prop::bool::weighted(0.8)).prop_map(|(c, p, conform)| Ev::Syn { c, p, conform }),
        3 => (c.clone(), p.clone(), any::<u32>()).prop_map(|(c, p, seq)| Ev::SynAck { c, p, seq }),
        3 => (c.clone(), p.clone(), prop::bool::weighted(0.8), prop::bool::weighted(0.1)).prop_map(|(c, p, right, fin)| Ev::Ack { c, p, right, fin }),
        3 => (c.clone(), p.clone()).prop_map(|(c, p)| Ev::Data { c, p }),
        1 => (c.clone(), p.clone(), any::<bool>()).prop_map(|(c, p, inbound)| Ev::Rst { c, p, inbound }),
        1 => (c.clone(), p.clone(), any::<bool>()).prop_map(|(c, p, inbound)| Ev::Fin { c, p, inbound }),
        1 => (c.clone(), any::<bool>()).prop_map(|(c, conform)| Ev::Udp { c, conform }),
        1 => (c.clone(), any::<bool>()).prop_map(|(c, conform)| Ev::Echo { c, conform }),
        1 => Just(Ev::Ns),
        1 => (0u8..4).prop_map(|kind| Ev::Martian { kind }),
        1 => c.clone().prop_map(|c| Ev::NotService { c }),
        1 => (c.clone(), 1u8..60).prop_map(|(c, cut)| Ev::Truncated { c, cut }),
        1 => (c.clone(), any::<bool>()).prop_map(|(c, later)| Ev::Frag { c, later }),
        1 => (c.clone(), p.clone(), any::<bool>()).prop_map(|(c, p, full)| Ev::Ptb { c, p, full }),
        2 => (0u32..8000).prop_map(|ms| Ev::Advance { ms }),
    ]
}

// ---- frame building (weir-wire emitters) ----

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let e = ethernet::Repr {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
        ethertype,
    };
    let mut f = vec![0; e.buffer_len() + payload.len()];
    e.emit(&mut f);
    f[e.buffer_len()..].copy_from_slice(payload);
    f
}

fn ip6(src: u128, dst: u128, nh: u8, payload: &[u8]) -> Vec<u8> {
    let ip = ipv6::Repr::new(src, dst, nh, payload.len() as u16);
    let mut p = vec![0; ip.buffer_len() + payload.len()];
    ip.emit(&mut p);
    p[ip.buffer_len()..].copy_from_slice(payload);
    eth(0x86dd, &p)
}

fn tcp_bytes(
    src: u128,
    dst: u128,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> Vec<u8> {
    let t = tcp::Repr::new(sport, dport, seq, ack, flags);
    let mut b = vec![0; t.buffer_len()];
    t.emit(&mut b, Pseudo::V6 { src, dst });
    b
}

fn tcp6(src: u128, dst: u128, sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    ip6(
        src,
        dst,
        6,
        &tcp_bytes(src, dst, sport, dport, seq, ack, flags),
    )
}

fn udp_bytes(src: u128, dst: u128) -> Vec<u8> {
    let u = udp::Repr {
        src_port: 5353,
        dst_port: 53,
        payload: b"weir-model-data!",
    };
    let mut b = vec![0; u.buffer_len()];
    u.emit(&mut b, Pseudo::V6 { src, dst });
    b
}

fn icmp6(src: u128, dst: u128, r: &icmpv6::Repr<'_>) -> Vec<u8> {
    let mut b = vec![0; r.buffer_len()];
    r.emit(&mut b, src, dst);
    ip6(src, dst, 58, &b)
}

fn cport(p: u16) -> u16 {
    40000 + p
}

// ---- the model ----

#[derive(Debug, Clone, Copy)]
struct Flow {
    established: bool,
    expect_ack: u32,
    fin_client: bool,
    fin_server: bool,
    deadline: u64,
}

#[derive(Default)]
struct Model {
    /// (client, client port) → flow (service address and port are fixed per client).
    flows: HashMap<(u128, u16), Flow>,
    /// source /64 → (token-nanoseconds, last update)
    buckets: HashMap<u128, (u128, u64)>,
}

const S: u64 = 1_000_000_000;

impl Model {
    fn live(&self, k: (u128, u16), now: u64) -> Option<Flow> {
        self.flows.get(&k).copied().filter(|f| f.deadline > now)
    }

    fn worker(dst: u128) -> u16 {
        // 2^14 slices by destination bits [64, 78), two workers in contiguous halves.
        let slice = (dst >> 50) & 0x3fff;
        (slice * 2 / 16384) as u16
    }

    fn take(&mut self, src: u128, now: u64) -> bool {
        let cap = u128::from(RATE) * u128::from(S);
        let b = self.buckets.entry(src >> 64).or_insert((cap, now));
        let elapsed = u128::from(now.saturating_sub(b.1));
        b.0 = (b.0 + elapsed * u128::from(RATE)).min(cap);
        b.1 = b.1.max(now);
        if b.0 >= u128::from(S) {
            b.0 -= u128::from(S);
            true
        } else {
            false
        }
    }

    fn out_tcp(&mut self, c: u128, p: u16, flags: u8, seq: u32, now: u64) {
        let k = (c, cport(p));
        if flags & RST != 0 {
            self.flows.remove(&k);
            return;
        }
        if flags & (SYN | ACK) == SYN | ACK {
            match self.live(k, now) {
                // A new connection on a closing flow's addresses and ports starts over.
                Some(f) if f.established && !(f.fin_client || f.fin_server) => {}
                _ => {
                    self.flows.insert(
                        k,
                        Flow {
                            established: false,
                            expect_ack: seq.wrapping_add(1),
                            fin_client: false,
                            fin_server: false,
                            deadline: now + 5 * S,
                        },
                    );
                }
            }
            return;
        }
        if let Some(mut f) = self.live(k, now).filter(|f| f.established) {
            if flags & FIN != 0 {
                fin(&mut f, false, now);
            } else if !(f.fin_client && f.fin_server) {
                f.deadline = now + 300 * S;
            }
            self.flows.insert(k, f);
        }
    }

    /// Steps 8–10 for an inbound TCP segment that passed steps 1–7.
    fn in_tcp(&mut self, c: u128, dst: u128, p: u16, flags: u8, ack: u32, now: u64) -> String {
        let k = (c, cport(p));
        if let Some(mut f) = self.live(k, now) {
            if f.established {
                if flags & RST != 0 {
                    self.flows.remove(&k);
                } else {
                    if flags & FIN != 0 {
                        fin(&mut f, true, now);
                    } else if !(f.fin_client && f.fin_server) {
                        f.deadline = now + 300 * S;
                    }
                    self.flows.insert(k, f);
                }
                return "known-good".into();
            }
            if flags & (ACK | SYN | RST) == ACK && ack == f.expect_ack {
                f.established = true;
                f.deadline = now + 300 * S;
                if flags & FIN != 0 {
                    fin(&mut f, true, now);
                }
                self.flows.insert(k, f);
                return "known-good".into();
            }
        }
        if flags & (SYN | ACK | RST | FIN) != SYN {
            return "no-flow".into();
        }
        self.new_flow(c, dst, now)
    }

    fn new_flow(&mut self, src: u128, _dst: u128, now: u64) -> String {
        if self.take(src, now) {
            "assumed-good".into()
        } else {
            "rate".into()
        }
    }
}

fn fin(f: &mut Flow, client: bool, now: u64) {
    let before = f.fin_client && f.fin_server;
    if client {
        f.fin_client = true;
    } else {
        f.fin_server = true;
    }
    if f.fin_client && f.fin_server {
        if !before {
            f.deadline = now + 2 * S;
        }
    } else {
        f.deadline = now + 300 * S;
    }
}

fn blocked(c: u128, now: u64) -> bool {
    c >> 64 == 0x2001_0db8_c000_0003 && now < T0 + 20 * S
}

/// Steps 5–6 for a client's packet to `dst`; None = passes.
fn addr_steps(src: u128, dst: u128, now: u64) -> Option<String> {
    if dst as u64 != fmix64((src >> 64) as u64) {
        return Some("ssa-violation".into());
    }
    if blocked(src, now) {
        return Some("blocked".into());
    }
    None
}

/// One event: its frame, and the model's label and worker (for queued classes).
fn step(
    m: &mut Model,
    e: &Ev,
    now: &mut u64,
    seqs: &mut HashMap<(usize, u16), u32>,
) -> Option<(Vec<u8>, String, Option<u16>)> {
    let t = *now;
    let out = match *e {
        Ev::Advance { ms } => {
            *now += u64::from(ms) * 1_000_000;
            return None;
        }
        Ev::Syn { c, p, conform } => {
            let src = client(c);
            let dst = if conform {
                conforming(src)
            } else {
                conforming(src) ^ 1
            };
            let f = tcp6(src, dst, cport(p), 80, 1000, 0, SYN);
            let l = addr_steps(src, dst, t).unwrap_or_else(|| m.in_tcp(src, dst, p, SYN, 0, t));
            (f, l, dst)
        }
        Ev::SynAck { c, p, seq } => {
            let src = client(c);
            let svc = conforming(src);
            seqs.insert((c, p), seq);
            m.out_tcp(src, p, SYN | ACK, seq, t);
            return Some((
                tcp6(svc, src, 80, cport(p), seq, 1001, SYN | ACK),
                "outbound".into(),
                None,
            ));
        }
        Ev::Ack {
            c,
            p,
            right,
            fin: with_fin,
        } => {
            let src = client(c);
            let dst = conforming(src);
            let s = seqs.get(&(c, p)).copied().unwrap_or(7);
            let ack = if right {
                s.wrapping_add(1)
            } else {
                s.wrapping_add(2)
            };
            let flags = if with_fin { ACK | FIN } else { ACK };
            let f = tcp6(src, dst, cport(p), 80, 1001, ack, flags);
            let l = addr_steps(src, dst, t).unwrap_or_else(|| m.in_tcp(src, dst, p, flags, ack, t));
            (f, l, dst)
        }
        Ev::Data { c, p } => {
            let src = client(c);
            let dst = conforming(src);
            let f = tcp6(src, dst, cport(p), 80, 1001, 5, ACK | PSH);
            let l =
                addr_steps(src, dst, t).unwrap_or_else(|| m.in_tcp(src, dst, p, ACK | PSH, 5, t));
            (f, l, dst)
        }
        Ev::Rst { c, p, inbound } | Ev::Fin { c, p, inbound } => {
            let flags = if matches!(e, Ev::Rst { .. }) {
                RST | ACK
            } else {
                FIN | ACK
            };
            let src = client(c);
            let svc = conforming(src);
            if !inbound {
                m.out_tcp(src, p, flags, 9, t);
                return Some((
                    tcp6(svc, src, 80, cport(p), 9, 1001, flags),
                    "outbound".into(),
                    None,
                ));
            }
            let f = tcp6(src, svc, cport(p), 80, 1001, 9, flags);
            let l = addr_steps(src, svc, t).unwrap_or_else(|| m.in_tcp(src, svc, p, flags, 9, t));
            (f, l, svc)
        }
        Ev::Udp { c, conform } | Ev::Echo { c, conform } => {
            let src = client(c);
            let dst = if conform {
                conforming(src)
            } else {
                conforming(src) ^ 0xff
            };
            let f = if matches!(e, Ev::Udp { .. }) {
                ip6(src, dst, 17, &udp_bytes(src, dst))
            } else {
                icmp6(
                    src,
                    dst,
                    &icmpv6::Repr::EchoRequest {
                        ident: 1,
                        seq_no: 2,
                        data: b"ping",
                    },
                )
            };
            let l = addr_steps(src, dst, t).unwrap_or_else(|| m.new_flow(src, dst, t));
            (f, l, dst)
        }
        Ev::Ns => {
            let src = 0xfe80_0000_0000_0000_0000_0000_0000_0001;
            let target = conforming(client(0));
            let dst = 0xff02_0000_0000_0000_0000_0001_ff00_0000 | (target & 0xff_ffff);
            let f = icmp6(
                src,
                dst,
                &icmpv6::Repr::NeighborSolicit {
                    target,
                    source_lladdr: Some([2, 0, 0, 0, 0, 1]),
                },
            );
            return Some((f, "host".into(), None));
        }
        Ev::Martian { kind } => {
            let src = [0u128, 1, 0xff02 << 112 | 1, 0xfe80 << 112 | 5][usize::from(kind % 4)];
            let dst = conforming(client(0));
            return Some((tcp6(src, dst, 1, 80, 1, 0, SYN), "martian".into(), None));
        }
        Ev::NotService { c } => {
            let src = client(c);
            let dst = 0x2001_0db8_0006_0000_0000_0000_0000_0000 | (src >> 64);
            return Some((tcp6(src, dst, 1, 80, 1, 0, SYN), "not-service".into(), None));
        }
        Ev::Truncated { c, cut } => {
            let src = client(c);
            let mut f = tcp6(src, conforming(src), 1, 80, 1, 0, SYN);
            // Cut into the IPv6 payload (TCP header) so the payload length exceeds the frame.
            let keep = f.len() - 1 - usize::from(cut) % 20;
            f.truncate(keep);
            return Some((f, "malformed".into(), None));
        }
        Ev::Frag { c, later } => {
            let src = client(c);
            let dst = conforming(src);
            let udp = udp_bytes(src, dst);
            let fr = ipv6ext::FragmentRepr {
                next_header: 17,
                offset: if later { 2 } else { 0 },
                more: !later,
                ident: 77,
            };
            let body: &[u8] = if later { &udp[8..16] } else { &udp[..16] };
            let mut p = vec![0; fr.buffer_len() + body.len()];
            fr.emit(&mut p);
            p[fr.buffer_len()..].copy_from_slice(body);
            let f = ip6(src, dst, 44, &p);
            let l = addr_steps(src, dst, t).unwrap_or_else(|| "fragment".into());
            (f, l, dst)
        }
        Ev::Ptb { c, p, full } => {
            let src = client(c);
            let svc = conforming(src);
            // The quote: a packet the server sent to the client.
            let inner = tcp6(svc, src, 80, cport(p), 1, 1, ACK);
            let quote = &inner[14..if full { inner.len() } else { 14 + 40 + 2 }];
            let router = 0x2001_0db8_ffff_0000_0000_0000_0000_0001;
            let f = icmp6(router, svc, &icmpv6::Repr::packet_too_big(1280, quote));
            let est = full && m.live((src, cport(p)), t).is_some_and(|f| f.established);
            let l = if est { "known-good" } else { "icmp-unmatched" };
            let w = if est { Some(Model::worker(svc)) } else { None };
            return Some((f, l.into(), w));
        }
    };
    let (f, l, dst) = out;
    let queued = matches!(
        l.as_str(),
        "known-good" | "assumed-good" | "fragment" | "no-flow" | "rate"
    );
    Some((f, l, queued.then(|| Model::worker(dst))))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn classifier_agrees_with_the_model(events in prop::collection::vec(ev(), 1..120)) {
        let cfg = config();
        let mut clf = Classifier::new(Policy::from_config(&cfg).unwrap(), Limits::from_config(&cfg), Vantage::Replay, REPLAY_SEED);
        let mut m = Model::default();
        let mut now = T0;
        let mut seqs = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            let Some((frame, label, worker)) = step(&mut m, e, &mut now, &mut seqs) else { continue };
            let d = clf.classify(&frame, now);
            prop_assert_eq!(d.label(), label.as_str(), "event {} {:?}", i, e);
            if let (Some(w), Disposition::Classified { worker: got, .. }) = (worker, d) {
                prop_assert_eq!(got, w, "worker of event {} {:?}", i, e);
            }
        }
    }
}
