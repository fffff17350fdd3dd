//! Large generated traffic for benchmarks: the fixture scripts, scaled.
//!
//! [`bench_mix`] is the realistic mix of `mix.pcap` at any size (HTTP connections from
//! distinct client /64s started every ~100 µs, with non-conforming SYNs, UDP and no-flow
//! ACKs sprinkled in); [`bench_flood`] is `syn-flood.pcap` at any size. Both are
//! deterministic, and both keep every label of the small fixtures valid under the built-in
//! default config: each source /64 opens one flow, so no bucket ever runs dry, and flows
//! end within seconds of capture time, so the flow table stays far below 1M entries.

use crate::fixtures::{flood_script, mix_script, Script};
use crate::packet::{dns_query, tcp_frame, udp_frame, Addr, Link};
use crate::{conforming, non_conforming, Frame, Label, Rng, BASE_NS, SERVICE_PREFIX};
use weir_ssa::Rule;
use weir_wire::{tcp, tcp_flags};

const US: u64 = 1_000;

/// (timestamp ns, frame) in capture order.
pub type Frames = Vec<(u64, Vec<u8>)>;

/// A realistic mix of about `packets` frames (exactly `packets`, cut at the end), as
/// (timestamp ns, frame) in capture order.
pub fn bench_mix(packets: usize) -> Vec<(u64, Vec<u8>)> {
    bench_mix_labelled(packets)
        .into_iter()
        .map(|f| (f.ts_ns, f.data))
        .collect()
}

/// [`bench_mix`] with each frame's expected label (valid for the frames kept: a connection
/// cut at the end only loses its later frames).
pub fn bench_mix_labelled(packets: usize) -> Vec<Frame> {
    // About 9 frames per connection; one extra frame per 20 connection frames. Generate
    // more when the estimate falls short.
    let mut conns = packets / 9 + 1;
    loop {
        let frames = mix_of(conns, packets);
        if frames.len() >= packets {
            return frames;
        }
        conns += conns / 4 + 1;
    }
}

fn mix_of(conns: usize, packets: usize) -> Vec<Frame> {
    let mut rng = Rng::new(0xbe7c_0001);
    let mut s: Script = mix_script(&mut rng, conns, BASE_NS, 100 * US);
    let span = (conns as u64) * 100 * US;
    let rule = Rule::default();
    let extras = packets / 20 + 1;
    for i in 0..extras {
        let t = BASE_NS + rng.below(span.max(1));
        let src = rng.client();
        let sport = rng.port();
        let (frame, label, note) = match i % 3 {
            0 => {
                let dst = non_conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
                (
                    tcp_frame(
                        &Link::INBOUND,
                        Addr::V6(src),
                        Addr::V6(dst),
                        &tcp::Repr::syn(sport, 80, rng.next_u64() as u32, 1440),
                    ),
                    Label::SsaViolation,
                    "non-conforming SYN",
                )
            }
            1 => {
                let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
                (
                    udp_frame(
                        &Link::INBOUND,
                        Addr::V6(src),
                        Addr::V6(dst),
                        sport,
                        53,
                        &dns_query(i as u16, "www.example.net"),
                    ),
                    Label::AssumedGood,
                    "UDP DNS query",
                )
            }
            _ => {
                let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
                (
                    tcp_frame(
                        &Link::INBOUND,
                        Addr::V6(src),
                        Addr::V6(dst),
                        &tcp::Repr::new(
                            sport,
                            80,
                            rng.next_u64() as u32,
                            rng.next_u64() as u32,
                            tcp_flags::ACK,
                        ),
                    ),
                    Label::NoFlow,
                    "ACK with no flow",
                )
            }
        };
        s.push(t, frame, label, note);
    }
    let mut frames = s.finish();
    frames.truncate(packets);
    frames
}

/// A SYN flood of `packets` spoofed SYNs from distinct random /64s, one every ~1 µs, all to
/// non-conforming addresses of the service prefix (ssa-violation): the attack SSA exists
/// to make cheap.
pub fn bench_flood(packets: usize) -> Vec<(u64, Vec<u8>)> {
    let mut rng = Rng::new(0xbe7c_f100);
    flood_script(&mut rng, packets, BASE_NS, US, 0)
        .finish()
        .into_iter()
        .map(|f| (f.ts_ns, f.data))
        .collect()
}

/// The flow-table occupancy benchmark: `flows` established HTTP flows from distinct
/// clients, as their handshakes (`warm`: SYN, the service's SYN-ACK, the client's ACK,
/// every 1 µs), and `packets` data frames (a 100-byte request each) on flows drawn
/// uniformly at random from them (`data`, 1 µs apart after the handshakes). Replayed
/// after `warm`, every data frame is known-good and looks its flow up in a table holding
/// `flows` entries.
pub fn bench_established(flows: usize, packets: usize) -> (Frames, Frames) {
    let mut rng = Rng::new(0xbe7c_e570 ^ flows as u64);
    let rule = Rule::default();
    let request = [b'x'; 100];
    let mut warm = Vec::with_capacity(3 * flows);
    let mut conns = Vec::with_capacity(flows);
    let mut t = BASE_NS;
    for _ in 0..flows {
        let (src, sport) = (rng.client(), rng.port());
        let dst = conforming(&rule, &SERVICE_PREFIX, src, 0, 0);
        let (c, sv) = (Addr::V6(src), Addr::V6(dst));
        let (isn, sisn) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let syn = tcp::Repr::syn(sport, 80, isn, 1440);
        let synack = tcp::Repr {
            mss: Some(1440),
            ..tcp::Repr::new(
                80,
                sport,
                sisn,
                isn.wrapping_add(1),
                tcp_flags::SYN | tcp_flags::ACK,
            )
        };
        let ack = tcp::Repr::new(
            sport,
            80,
            isn.wrapping_add(1),
            sisn.wrapping_add(1),
            tcp_flags::ACK,
        );
        warm.push((t, tcp_frame(&Link::INBOUND, c, sv, &syn)));
        warm.push((t + 300, tcp_frame(&Link::OUTBOUND, sv, c, &synack)));
        warm.push((t + 600, tcp_frame(&Link::INBOUND, c, sv, &ack)));
        conns.push((c, sv, sport, isn.wrapping_add(1), sisn.wrapping_add(1)));
        t += US;
    }
    let mut data = Vec::with_capacity(packets);
    for _ in 0..packets {
        let Some(&(c, sv, sport, seq, ack)) = conns.get(rng.below(flows.max(1) as u64) as usize)
        else {
            break;
        };
        let repr = tcp::Repr {
            payload: &request,
            ..tcp::Repr::new(sport, 80, seq, ack, tcp_flags::ACK | tcp_flags::PSH)
        };
        data.push((t, tcp_frame(&Link::INBOUND, c, sv, &repr)));
        t += US;
    }
    (warm, data)
}
