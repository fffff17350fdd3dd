//! Rule-by-rule tests of `parse_frame` / `peek_addresses` and property tests.

use super::*;
use crate::checksum::Pseudo;
use crate::ethernet::VlanRepr;
use crate::ipv6ext::{FragmentRepr, OptionsRepr, RoutingRepr};
use proptest::prelude::*;

const SRC: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0001;
const DST: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0002;
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// An extension header for the builder.
#[derive(Debug, Clone, Copy)]
enum Ext {
    HopByHop,
    DstOpts,
    Routing,
    Frag { offset: u16, more: bool },
}

impl Ext {
    fn number(self) -> u8 {
        match self {
            Ext::HopByHop => protocol::HOP_BY_HOP,
            Ext::DstOpts => protocol::DST_OPTS,
            Ext::Routing => protocol::ROUTING,
            Ext::Frag { .. } => protocol::FRAGMENT,
        }
    }

    fn emit(self, next_header: u8, out: &mut Vec<u8>) {
        let at = out.len();
        match self {
            Ext::HopByHop | Ext::DstOpts => {
                let r = OptionsRepr {
                    next_header,
                    options: &[],
                };
                out.resize(at + r.buffer_len(), 0);
                r.emit(&mut out[at..]);
            }
            Ext::Routing => {
                let segs = [DST];
                let r = RoutingRepr::SegmentRouting {
                    next_header,
                    segments_left: 0,
                    flags: 0,
                    tag: 0,
                    segments: &segs,
                };
                out.resize(at + r.buffer_len(), 0);
                r.emit(&mut out[at..]);
            }
            Ext::Frag { offset, more } => {
                let r = FragmentRepr {
                    next_header,
                    offset,
                    more,
                    ident: 7,
                };
                out.resize(at + 8, 0);
                r.emit(&mut out[at..]);
            }
        }
    }
}

/// Ethernet + `tags` VLAN tags + `ethertype`, then `body`.
fn link_frame(tags: usize, ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 14 + 4 * tags];
    let first = match tags {
        0 => ethertype,
        1 => ethernet::ethertype::VLAN,
        _ => ethernet::ethertype::QINQ,
    };
    ethernet::Repr {
        src: MAC_A,
        dst: MAC_B,
        ethertype: first,
    }
    .emit(&mut out);
    for i in 0..tags {
        let ty = if i + 1 == tags {
            ethertype
        } else {
            ethernet::ethertype::VLAN
        };
        VlanRepr::new(100 + i as u16, ty).emit(&mut out[14 + 4 * i..]);
    }
    out.extend_from_slice(body);
    out
}

/// IPv6 packet with `exts` then `l4` (upper-layer protocol `proto`).
fn ipv6_packet(src: u128, dst: u128, exts: &[Ext], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |n| n.number());
        e.emit(next, &mut payload);
    }
    payload.extend_from_slice(l4);
    let first = exts.first().map_or(proto, |e| e.number());
    let mut out = vec![0u8; 40];
    ipv6::Repr::new(src, dst, first, payload.len() as u16).emit(&mut out);
    out.extend_from_slice(&payload);
    out
}

fn ipv6_frame(tags: usize, exts: &[Ext], proto: u8, l4: &[u8]) -> Vec<u8> {
    link_frame(
        tags,
        ethernet::ethertype::IPV6,
        &ipv6_packet(SRC, DST, exts, proto, l4),
    )
}

fn tcp_bytes(repr: &tcp::Repr<'_>, pseudo: Pseudo) -> Vec<u8> {
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out, pseudo);
    out
}

fn udp_bytes(repr: &udp::Repr<'_>, pseudo: Pseudo) -> Vec<u8> {
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out, pseudo);
    out
}

fn icmp_bytes(repr: &icmpv6::Repr<'_>) -> Vec<u8> {
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out, SRC, DST);
    out
}

fn v6() -> Pseudo {
    Pseudo::V6 { src: SRC, dst: DST }
}

fn syn() -> Vec<u8> {
    tcp_bytes(&tcp::Repr::syn(40000, 443, 1000, 1440), v6())
}

fn ipv4_frame(proto: u8, l4: &[u8], more: bool, offset: u16) -> Vec<u8> {
    let mut ip = vec![0u8; 20];
    ipv4::Repr {
        more_frags: more,
        frag_offset: offset,
        ..ipv4::Repr::new(0xc000_0201, 0xc633_6402, proto, l4.len() as u16)
    }
    .emit(&mut ip);
    ip.extend_from_slice(l4);
    link_frame(0, ethernet::ethertype::IPV4, &ip)
}

fn ip_layer(frame: &[u8]) -> Ip {
    match parse_frame(frame) {
        Ok(Frame {
            net: Net::Ip(ip), ..
        }) => ip,
        other => panic!("not IP: {other:?}"),
    }
}

fn err(frame: &[u8]) -> Malformed {
    parse_frame(frame).expect_err("expected malformed")
}

// ---- the good paths ----

#[test]
fn tcp_syn_over_ipv6() {
    let f = ipv6_frame(0, &[], protocol::TCP, &syn());
    let ip = ip_layer(&f);
    assert_eq!(
        (ip.version, ip.src, ip.dst, ip.hop_limit),
        (IpVersion::V6, SRC, DST, 64)
    );
    assert_eq!(ip.fragment, Fragment::Whole);
    assert_eq!(ip.ext_headers, 0);
    let Transport::Tcp(t) = ip.transport else {
        panic!()
    };
    assert_eq!(
        (t.src_port, t.dst_port, t.seq, t.ack),
        (40000, 443, 1000, 0)
    );
    assert!(t.is_clean_syn());
    assert_eq!(t.payload_len, 0);
    assert_eq!(peek_addresses(&f), Some((IpVersion::V6, SRC, DST)));
}

#[test]
fn qinq_udp_with_padding() {
    let udp = udp_bytes(
        &udp::Repr {
            src_port: 5353,
            dst_port: 53,
            payload: b"q",
        },
        v6(),
    );
    let mut f = ipv6_frame(2, &[], protocol::UDP, &udp);
    f.extend_from_slice(&[0; 6]); // Ethernet padding after the payload length
    let frame = parse_frame(&f).unwrap();
    assert_eq!(frame.vlan_tags, 2);
    let Net::Ip(ip) = frame.net else { panic!() };
    assert_eq!(
        ip.transport,
        Transport::Udp {
            src_port: 5353,
            dst_port: 53
        }
    );
    assert_eq!(peek_addresses(&f), Some((IpVersion::V6, SRC, DST)));
}

#[test]
fn ext_header_chain() {
    let exts = [Ext::HopByHop, Ext::DstOpts, Ext::Routing, Ext::DstOpts];
    let ip = ip_layer(&ipv6_frame(1, &exts, protocol::TCP, &syn()));
    assert_eq!(ip.ext_headers, 4);
    assert!(matches!(ip.transport, Transport::Tcp(_)));
    let eight = [Ext::DstOpts; 8];
    assert_eq!(ip_of(&eight).ext_headers, 8);
}

fn ip_of(exts: &[Ext]) -> Ip {
    ip_layer(&ipv6_frame(0, exts, protocol::TCP, &syn()))
}

#[test]
fn unknown_next_headers_are_other() {
    for proto in [protocol::NO_NEXT_HEADER, protocol::ESP, protocol::AH, 253] {
        let ip = ip_layer(&ipv6_frame(0, &[Ext::DstOpts], proto, &[0; 8]));
        assert_eq!(ip.transport, Transport::Other { proto });
    }
    let ip = ip_layer(&ipv4_frame(
        protocol::ICMP,
        &[8, 0, 0, 0, 0, 0, 0, 0],
        false,
        0,
    ));
    assert_eq!(ip.transport, Transport::Other { proto: 1 });
    let ip4 = ipv4_frame(protocol::ICMPV6, &[128, 0, 0, 0, 0, 0, 0, 0], false, 0);
    assert_eq!(ip_layer(&ip4).transport, Transport::Other { proto: 58 });
}

#[test]
fn other_ethertype() {
    let f = link_frame(1, 0x88cc, &[1, 2, 3]);
    assert_eq!(
        parse_frame(&f),
        Ok(Frame {
            vlan_tags: 1,
            net: Net::Other { ethertype: 0x88cc }
        })
    );
    assert_eq!(peek_addresses(&f), None);
}

#[test]
fn atomic_fragment_is_whole() {
    let ip = ip_of(&[Ext::Frag {
        offset: 0,
        more: false,
    }]);
    assert_eq!(ip.fragment, Fragment::Whole);
    assert_eq!(ip.ext_headers, 1);
    let Transport::Tcp(t) = ip.transport else {
        panic!()
    };
    assert_eq!(t.dst_port, 443);
}

#[test]
fn first_fragment() {
    // 24 bytes of TCP header + 16 bytes of data = 40, a multiple of 8.
    let seg = tcp_bytes(
        &tcp::Repr {
            mss: Some(1220),
            payload: &[0xab; 16],
            ..tcp::Repr::new(1, 2, 3, 4, tcp_flags::ACK)
        },
        v6(),
    );
    assert_eq!(seg.len(), 40);
    let ip = ip_layer(&ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 0,
            more: true,
        }],
        protocol::TCP,
        &seg,
    ));
    assert_eq!(ip.fragment, Fragment::First);
    let Transport::Tcp(t) = ip.transport else {
        panic!()
    };
    assert_eq!((t.src_port, t.dst_port, t.payload_len), (1, 2, 0));
    // UDP length is for the whole datagram: not checked in a first fragment.
    let mut udp = udp_bytes(
        &udp::Repr {
            src_port: 9,
            dst_port: 10,
            payload: &[0; 8],
        },
        v6(),
    );
    udp[4..6].copy_from_slice(&3000u16.to_be_bytes());
    let ip = ip_layer(&ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 0,
            more: true,
        }],
        protocol::UDP,
        &udp,
    ));
    assert_eq!(
        ip.transport,
        Transport::Udp {
            src_port: 9,
            dst_port: 10
        }
    );
}

#[test]
fn later_fragment() {
    let exts = [
        Ext::Frag {
            offset: 100,
            more: true,
        },
        Ext::DstOpts,
    ];
    let ip = ip_layer(&ipv6_frame(0, &exts, protocol::TCP, &[0u8; 16]));
    assert_eq!(ip.fragment, Fragment::Later);
    // The destination options header after it is not walked.
    assert_eq!(
        ip.transport,
        Transport::Unparsed {
            proto: protocol::DST_OPTS
        }
    );
    assert_eq!(ip.ext_headers, 1);
    // Last fragment (M = 0): any length.
    let ip = ip_of_l4(
        &[Ext::Frag {
            offset: 3,
            more: false,
        }],
        &[0u8; 5],
    );
    assert_eq!(ip.fragment, Fragment::Later);
    assert_eq!(
        ip.transport,
        Transport::Unparsed {
            proto: protocol::TCP
        }
    );
}

fn ip_of_l4(exts: &[Ext], l4: &[u8]) -> Ip {
    ip_layer(&ipv6_frame(0, exts, protocol::TCP, l4))
}

#[test]
fn ipv4_fragments() {
    let seg = tcp_bytes(
        &tcp::Repr::new(1, 2, 3, 4, tcp_flags::ACK),
        Pseudo::V4 { src: 0, dst: 0 },
    );
    let ip4 = ip_layer(&ipv4_frame(protocol::TCP, &seg, false, 0));
    assert_eq!(
        (ip4.version, ip4.fragment, ip4.ext_headers),
        (IpVersion::V4, Fragment::Whole, 0)
    );
    assert_eq!(ip4.src, ipv4_mapped(0xc000_0201));
    assert_eq!(
        ip_layer(&ipv4_frame(protocol::TCP, &seg, true, 0)).fragment,
        Fragment::First
    );
    let later = ip_layer(&ipv4_frame(protocol::UDP, &[0; 3], false, 10));
    assert_eq!(later.fragment, Fragment::Later);
    assert_eq!(
        later.transport,
        Transport::Unparsed {
            proto: protocol::UDP
        }
    );
    assert_eq!(
        err(&ipv4_frame(protocol::UDP, &[0; 16], true, 8191)),
        Malformed::FragmentOverflow
    );
    assert_eq!(
        err(&ipv4_frame(protocol::TCP, &seg[..12], true, 0)),
        Malformed::FirstFragmentTruncated
    );
    let f = ipv4_frame(protocol::TCP, &seg, false, 0);
    assert_eq!(
        peek_addresses(&f),
        Some((
            IpVersion::V4,
            ipv4_mapped(0xc000_0201),
            ipv4_mapped(0xc633_6402)
        ))
    );
}

/// A TCP segment to quote: `exts` then TCP from `SRC`:443 to `DST`:40000.
fn quoted(exts: &[Ext]) -> Vec<u8> {
    let seg = tcp_bytes(&tcp::Repr::new(443, 40000, 1, 2, tcp_flags::ACK), v6());
    ipv6_packet(DST, SRC, exts, protocol::TCP, &seg)
}

fn icmp_frame(repr: &icmpv6::Repr<'_>) -> Vec<u8> {
    ipv6_frame(0, &[], protocol::ICMPV6, &icmp_bytes(repr))
}

fn icmp(frame: &[u8]) -> Icmpv6 {
    match ip_layer(frame).transport {
        Transport::Icmpv6(i) => i,
        t => panic!("not ICMPv6: {t:?}"),
    }
}

/// An ICMPv6 error's type and the quote read back with `quote_of`.
fn error_quote(frame: &[u8]) -> (u8, Option<Quote>) {
    match icmp(frame) {
        Icmpv6::Error { ty, quote_at } => (ty, crate::quote_of(frame, quote_at)),
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn packet_too_big_quotes_tcp() {
    let q = quoted(&[]);
    let want = Quote {
        src: DST,
        dst: SRC,
        proto: protocol::TCP,
        tcp_ports: Some((443, 40000)),
    };
    let got = error_quote(&icmp_frame(&icmpv6::Repr::packet_too_big(1280, &q)));
    assert_eq!(got, (2, Some(want)));
    // Only the four port bytes of TCP quoted: still full ports.
    let got = error_quote(&icmp_frame(&icmpv6::Repr::packet_too_big(1280, &q[..44])));
    assert_eq!(got, (2, Some(want)));
    // Three bytes: no ports.
    let got = error_quote(&icmp_frame(&icmpv6::Repr::packet_too_big(1280, &q[..43])));
    assert_eq!(
        got,
        (
            2,
            Some(Quote {
                tcp_ports: None,
                ..want
            })
        )
    );
    // Short quote: None, not malformed.
    let got = error_quote(&icmp_frame(&icmpv6::Repr::packet_too_big(1280, &q[..39])));
    assert_eq!(got, (2, None));
    // Empty quote.
    let got = error_quote(&icmp_frame(&icmpv6::Repr::packet_too_big(1280, &[])));
    assert_eq!(got, (2, None));
}

#[test]
fn quote_walks_ext_headers_leniently() {
    let q = quoted(&[Ext::HopByHop, Ext::Routing]);
    let (_, quote) = error_quote(&icmp_frame(&icmpv6::Repr::Error {
        ty: 1,
        code: 4,
        param: 0,
        quote: &q,
    }));
    let quote = quote.unwrap();
    assert_eq!(
        (quote.proto, quote.tcp_ports),
        (protocol::TCP, Some((443, 40000)))
    );
    // Cut inside the routing header: proto is the routing header's number.
    let (_, quote) = error_quote(&icmp_frame(&icmpv6::Repr::Error {
        ty: 3,
        code: 0,
        param: 0,
        quote: &q[..60],
    }));
    let quote = quote.unwrap();
    assert_eq!((quote.proto, quote.tcp_ports), (protocol::ROUTING, None));
    // A quoted later fragment has no ports.
    let q = quoted(&[Ext::Frag {
        offset: 1,
        more: false,
    }]);
    let (_, quote) = error_quote(&icmp_frame(&icmpv6::Repr::packet_too_big(1280, &q)));
    let quote = quote.unwrap();
    assert_eq!((quote.proto, quote.tcp_ports), (protocol::TCP, None));
    // Not version 6.
    let mut q = quoted(&[]);
    q[0] = 0x40;
    let got = error_quote(&icmp_frame(&icmpv6::Repr::packet_too_big(1280, &q)));
    assert_eq!(got, (2, None));
}

#[test]
fn ndp_and_echo() {
    let target = DST;
    let ns = icmpv6::Repr::NeighborSolicit {
        target,
        source_lladdr: Some(MAC_A),
    };
    assert_eq!(icmp(&icmp_frame(&ns)), Icmpv6::Ndp { ty: 135 });
    let na = icmpv6::Repr::NeighborAdvert {
        flags: 0x60,
        target,
        target_lladdr: None,
    };
    assert_eq!(icmp(&icmp_frame(&na)), Icmpv6::Ndp { ty: 136 });
    let rs = icmpv6::Repr::RouterSolicit {
        source_lladdr: None,
    };
    assert_eq!(icmp(&icmp_frame(&rs)), Icmpv6::Ndp { ty: 133 });
    let echo = icmpv6::Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: b"x",
    };
    assert_eq!(icmp(&icmp_frame(&echo)), Icmpv6::EchoRequest);
    let reply = icmpv6::Repr::EchoReply {
        ident: 1,
        seq_no: 1,
        data: b"",
    };
    assert_eq!(icmp(&icmp_frame(&reply)), Icmpv6::EchoReply);
    let other = ipv6_frame(0, &[], protocol::ICMPV6, &[143, 0, 0, 0]);
    assert_eq!(icmp(&other), Icmpv6::Other { ty: 143 });
    let ra = ipv6_frame(0, &[], protocol::ICMPV6, &[134; 16]);
    assert_eq!(icmp(&ra), Icmpv6::Ndp { ty: 134 });
    let redirect = ipv6_frame(0, &[], protocol::ICMPV6, &[137; 40]);
    assert!(matches!(icmp(&redirect), Icmpv6::Ndp { ty: 137 }));
}

#[test]
fn arp_request() {
    let mut a = [0u8; 28];
    arp::Repr::request(MAC_A, 0xc000_0201, 0xc000_0202).emit(&mut a);
    let f = link_frame(1, ethernet::ethertype::ARP, &a);
    assert_eq!(
        parse_frame(&f),
        Ok(Frame {
            vlan_tags: 1,
            net: Net::Arp {
                op: 1,
                target: Some(ipv4_mapped(0xc000_0202))
            }
        })
    );
    assert_eq!(peek_addresses(&f), None);
    // Not Ethernet/IPv4: op only.
    let mut b = a;
    b[0..2].copy_from_slice(&6u16.to_be_bytes());
    let f = link_frame(0, ethernet::ethertype::ARP, &b[..8]);
    assert_eq!(
        parse_frame(&f).unwrap().net,
        Net::Arp {
            op: 1,
            target: None
        }
    );
}

// ---- one test per Malformed variant ----

#[test]
fn malformed_ethernet_and_vlan() {
    assert_eq!(err(&[0u8; 13]), Malformed::EthernetTruncated);
    let f = link_frame(1, ethernet::ethertype::IPV6, &[]);
    assert_eq!(err(&f[..17]), Malformed::VlanTruncated);
    let mut f = link_frame(2, ethernet::ethertype::VLAN, &[0, 1, 0x86, 0xdd]);
    assert_eq!(err(&f), Malformed::TooManyVlanTags);
    f.truncate(22);
    assert_eq!(err(&f), Malformed::TooManyVlanTags);
}

#[test]
fn malformed_ipv6() {
    let f = ipv6_frame(0, &[], protocol::TCP, &syn());
    assert_eq!(err(&f[..14 + 39]), Malformed::Ipv6Truncated);
    let mut g = f.clone();
    g[14] = 0x40;
    assert_eq!(err(&g), Malformed::Ipv6Version);
    assert_eq!(err(&f[..f.len() - 1]), Malformed::Ipv6PayloadLength);
}

#[test]
fn malformed_ext_headers() {
    // Payload length 4: the 8-byte destination options header runs past it.
    let mut f = ipv6_frame(0, &[Ext::DstOpts], protocol::TCP, &[]);
    f[18..20].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(err(&f), Malformed::ExtHeaderTruncated);
    // Payload length 1: the length byte itself is missing.
    f[18..20].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(err(&f), Malformed::ExtHeaderTruncated);
    // Shrink payload length so the header runs past it (bytes remain in the frame).
    let mut g = ipv6_frame(0, &[Ext::Routing], protocol::TCP, &syn());
    g[18..20].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(err(&g), Malformed::ExtHeaderTruncated);
    let f = ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 0,
            more: false,
        }],
        protocol::TCP,
        &[],
    );
    assert_eq!(err(&f[..f.len() - 1]), Malformed::Ipv6PayloadLength);
    let mut g = ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 0,
            more: false,
        }],
        protocol::TCP,
        &[],
    );
    g[18..20].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(err(&g), Malformed::ExtHeaderTruncated);
    assert_eq!(
        err(&ipv6_frame(0, &[Ext::DstOpts; 9], protocol::TCP, &syn())),
        Malformed::TooManyExtHeaders
    );
    assert_eq!(
        err(&ipv6_frame(
            0,
            &[Ext::DstOpts, Ext::HopByHop],
            protocol::TCP,
            &syn()
        )),
        Malformed::HopByHopNotFirst
    );
}

#[test]
fn malformed_fragments() {
    let f = ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 0,
            more: true,
        }],
        protocol::TCP,
        &[0; 20],
    );
    assert_eq!(err(&f), Malformed::FragmentLength);
    let f = ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 8191,
            more: false,
        }],
        protocol::TCP,
        &[0; 8],
    );
    assert_eq!(err(&f), Malformed::FragmentOverflow);
    let f = ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 8190,
            more: false,
        }],
        protocol::TCP,
        &[0; 8],
    );
    assert_eq!(ip_layer(&f).fragment, Fragment::Later);
    // First fragment with 16 bytes of TCP; and with data offset beyond what is present.
    let f = ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 0,
            more: true,
        }],
        protocol::TCP,
        &syn()[..16],
    );
    assert_eq!(err(&f), Malformed::FirstFragmentTruncated);
    let f = ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 0,
            more: true,
        }],
        protocol::TCP,
        &syn()[..24],
    );
    assert_eq!(err(&f), Malformed::FirstFragmentTruncated);
    let f = ipv6_frame(
        0,
        &[Ext::Frag {
            offset: 0,
            more: true,
        }],
        protocol::ICMPV6,
        &[135, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(err(&f), Malformed::FirstFragmentTruncated);
}

#[test]
fn malformed_ipv4() {
    let f = ipv4_frame(
        protocol::UDP,
        &udp_bytes(
            &udp::Repr {
                src_port: 1,
                dst_port: 2,
                payload: &[],
            },
            Pseudo::V4 { src: 0, dst: 0 },
        ),
        false,
        0,
    );
    assert_eq!(err(&f[..14 + 19]), Malformed::Ipv4Truncated);
    let mut g = f.clone();
    g[14] = 0x65;
    assert_eq!(err(&g), Malformed::Ipv4Version);
    let mut g = f.clone();
    g[14] = 0x44;
    assert_eq!(err(&g), Malformed::Ipv4Ihl);
    assert_eq!(err(&f[..f.len() - 1]), Malformed::Ipv4TotalLength);
    let mut g = f.clone();
    g[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(err(&g), Malformed::Ipv4TotalLength);
}

#[test]
fn malformed_tcp() {
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::TCP, &syn()[..19])),
        Malformed::TcpTruncated
    );
    let mut s = syn();
    s[12] = 0x40;
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::TCP, &s)),
        Malformed::TcpDataOffset
    );
    let s = syn();
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::TCP, &s[..39])),
        Malformed::TcpDataOffset
    );
    let mut s = syn();
    s[20..24].copy_from_slice(&[9, 1, 1, 1]); // kind 9 with length 1, below 2
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::TCP, &s)),
        Malformed::TcpOption
    );
    let mut s = syn();
    s[36..40].copy_from_slice(&[1, 1, 1, 3]); // kind 3 with no length byte
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::TCP, &s)),
        Malformed::TcpOption
    );
    let mut s = syn();
    s[36..40].copy_from_slice(&[1, 1, 3, 3]); // window scale running past the area
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::TCP, &s)),
        Malformed::TcpOption
    );
    for bad in [
        tcp_flags::SYN | tcp_flags::RST,
        tcp_flags::SYN | tcp_flags::FIN,
    ] {
        let s = tcp_bytes(&tcp::Repr::new(1, 2, 3, 0, bad), v6());
        assert_eq!(
            err(&ipv6_frame(0, &[], protocol::TCP, &s)),
            Malformed::TcpFlags
        );
    }
}

#[test]
fn malformed_udp() {
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::UDP, &[0; 7])),
        Malformed::UdpTruncated
    );
    let mut u = udp_bytes(
        &udp::Repr {
            src_port: 1,
            dst_port: 2,
            payload: b"abc",
        },
        v6(),
    );
    u[4..6].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::UDP, &u)),
        Malformed::UdpLength
    );
    u[4..6].copy_from_slice(&12u16.to_be_bytes());
    assert_eq!(
        err(&ipv6_frame(0, &[], protocol::UDP, &u)),
        Malformed::UdpLength
    );
}

#[test]
fn malformed_icmpv6() {
    for bytes in [
        &[128u8, 0, 0][..],
        &[1, 0, 0, 0, 0, 0, 0],
        &[128, 0, 0, 0],
        &[129; 7],
        &[133; 7],
        &[134; 15],
        &[135; 23],
        &[136; 23],
        &[137; 39],
    ] {
        assert_eq!(
            err(&ipv6_frame(0, &[], protocol::ICMPV6, bytes)),
            Malformed::Icmpv6Truncated,
            "{bytes:?}"
        );
    }
}

#[test]
fn malformed_arp() {
    assert_eq!(
        err(&link_frame(0, ethernet::ethertype::ARP, &[0; 7])),
        Malformed::ArpTruncated
    );
    let mut a = [0u8; 28];
    arp::Repr::request(MAC_A, 1, 2).emit(&mut a);
    assert_eq!(
        err(&link_frame(0, ethernet::ethertype::ARP, &a[..27])),
        Malformed::ArpTruncated
    );
}

#[test]
fn peek_needs_only_the_fixed_header() {
    let f = ipv6_frame(0, &[], protocol::TCP, &syn());
    assert_eq!(peek_addresses(&f[..54]), Some((IpVersion::V6, SRC, DST)));
    assert_eq!(peek_addresses(&f[..53]), None);
    let mut g = f.clone();
    g[14] = 0x40;
    assert_eq!(peek_addresses(&g), None);
    let f = ipv6_frame(2, &[], protocol::TCP, &syn());
    assert_eq!(peek_addresses(&f[..62]), Some((IpVersion::V6, SRC, DST)));
    let f = link_frame(2, ethernet::ethertype::VLAN, &[0, 1, 0x86, 0xdd]);
    assert_eq!(peek_addresses(&f), None);
}

// ---- properties ----

fn valid_frames() -> Vec<Vec<u8>> {
    let q = quoted(&[Ext::HopByHop]);
    vec![
        ipv6_frame(0, &[], protocol::TCP, &syn()),
        ipv6_frame(
            2,
            &[
                Ext::HopByHop,
                Ext::Routing,
                Ext::Frag {
                    offset: 0,
                    more: true,
                },
            ],
            protocol::TCP,
            &syn(),
        ),
        ipv6_frame(
            1,
            &[Ext::Frag {
                offset: 9,
                more: true,
            }],
            protocol::UDP,
            &[0; 16],
        ),
        icmp_frame(&icmpv6::Repr::packet_too_big(1280, &q)),
        icmp_frame(&icmpv6::Repr::NeighborSolicit {
            target: DST,
            source_lladdr: Some(MAC_A),
        }),
        ipv4_frame(
            protocol::UDP,
            &udp_bytes(
                &udp::Repr {
                    src_port: 1,
                    dst_port: 2,
                    payload: b"xy",
                },
                Pseudo::V4 { src: 0, dst: 0 },
            ),
            false,
            0,
        ),
    ]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_frame(&bytes);
        let _ = peek_addresses(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_frames(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let mut f = valid_frames().swap_remove(which);
        prop_assert!(parse_frame(&f).is_ok());
        for (at, v) in edits {
            let n = f.len();
            f[at % n] = v;
        }
        let keep = cut % (f.len() + 1);
        let _ = parse_frame(&f);
        let _ = peek_addresses(&f);
        let _ = parse_frame(&f[..keep]);
        let _ = peek_addresses(&f[..keep]);
    }

    #[test]
    fn emit_then_parse_round_trips(
        src in any::<u128>(),
        dst in any::<u128>(),
        tags in 0usize..=2,
        exts in proptest::collection::vec(prop_oneof![Just(Ext::DstOpts), Just(Ext::Routing), Just(Ext::Frag { offset: 0, more: false })], 0..=3),
        hbh in any::<bool>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        flags in any::<u8>(),
        kind in 0u8..3,
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        mss in proptest::option::of(any::<u16>()),
        ts in proptest::option::of((any::<u32>(), any::<u32>())),
        ident in any::<u16>(),
    ) {
        let mut chain = Vec::new();
        if hbh && exts.len() < 3 {
            chain.push(Ext::HopByHop);
        }
        chain.extend_from_slice(&exts);
        let flags = if flags & tcp_flags::SYN != 0 { flags & !(tcp_flags::RST | tcp_flags::FIN) } else { flags };
        let pseudo = Pseudo::V6 { src, dst };
        let (proto, l4, want) = match kind {
            0 => {
                let r = tcp::Repr { mss, timestamps: ts, payload: &payload, ..tcp::Repr::new(sport, dport, seq, ack, flags) };
                let want = Transport::Tcp(Tcp { src_port: sport, dst_port: dport, seq, ack, flags, payload_len: payload.len() as u16 });
                (protocol::TCP, tcp_bytes(&r, pseudo), want)
            }
            1 => {
                let r = udp::Repr { src_port: sport, dst_port: dport, payload: &payload };
                (protocol::UDP, udp_bytes(&r, pseudo), Transport::Udp { src_port: sport, dst_port: dport })
            }
            _ => {
                let r = icmpv6::Repr::EchoRequest { ident, seq_no: sport, data: &payload };
                let mut b = vec![0u8; r.buffer_len()];
                r.emit(&mut b, src, dst);
                (protocol::ICMPV6, b, Transport::Icmpv6(Icmpv6::EchoRequest))
            }
        };
        let f = link_frame(tags, ethernet::ethertype::IPV6, &ipv6_packet(src, dst, &chain, proto, &l4));
        let frame = parse_frame(&f).unwrap();
        prop_assert_eq!(frame.vlan_tags as usize, tags);
        prop_assert_eq!(frame.net, Net::Ip(Ip {
            version: IpVersion::V6,
            src,
            dst,
            hop_limit: 64,
            fragment: Fragment::Whole,
            transport: want,
            ext_headers: chain.len() as u8,
        }));
        prop_assert_eq!(peek_addresses(&f), Some((IpVersion::V6, src, dst)));
    }

    /// A frame a capture cut at any point parses, padded to its wire length, either as
    /// `truncated` or exactly as the whole frame does, and the answer does not depend on
    /// what the padding holds: the walk reads no byte past the cut without saying so.
    #[test]
    fn a_cut_frame_parses_as_the_whole_or_is_truncated(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        cut in any::<usize>(),
    ) {
        let mut f = valid_frames().swap_remove(which);
        for (at, v) in edits {
            let n = f.len();
            f[at % n] = v;
        }
        let keep = cut % (f.len() + 1);
        let padded = |fill: u8| {
            let mut b = f[..keep].to_vec();
            b.resize(f.len(), fill);
            b
        };
        let (zeros, ones) = (padded(0), padded(0xff));
        let got = parse_cut(&zeros, keep, None);
        prop_assert_eq!(got, parse_cut(&ones, keep, None));
        if let Some(parsed) = got {
            prop_assert_eq!(parsed, parse_frame(&f));
        }
        prop_assert_eq!(parse_cut(&f, f.len(), None), Some(parse_frame(&f)));
    }

    /// The fast path gives exactly the general walk's answer whenever it answers, over
    /// arbitrary bytes and over common-case frames (TCP with and without options, UDP)
    /// with arbitrary edits and cuts; and `parse_frame` always equals the general walk.
    #[test]
    fn fast_path_equals_the_general_walk(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
        arbitrary in proptest::collection::vec(any::<u8>(), 0..120),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let options = [2u8, 4, 0x05, 0xb4, 1, 1, 4, 2]; // MSS, NOP, NOP, SACK-permitted
        let mut with_opts = syn();
        with_opts[12] = 7 << 4;
        with_opts.splice(20..20, options);
        let mut data = tcp_bytes(&tcp::Repr::syn(40000, 443, 1000, 1440), v6());
        data[13] = tcp_flags::ACK | tcp_flags::PSH;
        data.extend_from_slice(&payload);
        let mut udp = vec![0u8; 8 + payload.len()];
        let udp_len = udp.len() as u16;
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[8..].copy_from_slice(&payload);
        let bases = [
            ipv6_frame(0, &[], protocol::TCP, &syn()),
            ipv6_frame(0, &[], protocol::TCP, &with_opts),
            ipv6_frame(0, &[], protocol::TCP, &data),
            ipv6_frame(0, &[], protocol::UDP, &udp),
        ];
        let mut f = bases[which].clone();
        prop_assert!(fast_frame(&f).is_some(), "a common-case frame takes the fast path");
        prop_assert_eq!(Ok(fast_frame(&f).unwrap()), general_frame(&f));
        for (at, v) in edits {
            let n = f.len();
            f[at % n] = v;
        }
        let keep = cut % (f.len() + 1);
        for frame in [&f[..], &f[..keep], &arbitrary[..]] {
            if let Some(fast) = fast_frame(frame) {
                prop_assert_eq!(Ok(fast), general_frame(frame));
            }
            prop_assert_eq!(parse_frame(frame), general_frame(frame));
        }
    }
}

#[test]
fn a_cut_frame_is_truncated_only_when_the_cut_reaches_its_headers() {
    let mut data = tcp_bytes(&tcp::Repr::syn(40000, 443, 1000, 1440), v6());
    data[13] = tcp_flags::ACK | tcp_flags::PSH;
    data.extend_from_slice(&[7u8; 200]);
    let f = ipv6_frame(0, &[], protocol::TCP, &data);
    let header_end = ethernet::HEADER_LEN + ipv6::HEADER_LEN + usize::from(data[12] >> 4) * 4;
    assert!(
        header_end > ethernet::HEADER_LEN + ipv6::HEADER_LEN + 20,
        "TCP options"
    );
    let cut = |keep: usize| {
        let mut b = f[..keep].to_vec();
        b.resize(f.len(), 0);
        parse_cut(&b, keep, None)
    };
    assert_eq!(
        cut(96),
        Some(parse_frame(&f)),
        "a 96-byte snap keeps the headers"
    );
    assert_eq!(cut(header_end), Some(parse_frame(&f)));
    assert_eq!(cut(header_end - 1), None, "the last option byte is cut");
    // Cut right after Ethernet: zeros would read as IPv6 version 0, which is not the frame's
    // fault.
    assert_eq!(cut(ethernet::HEADER_LEN), None);
    // A raw-IP capture: the network packet from offset 0.
    let ip = &f[ethernet::HEADER_LEN..];
    let mut b = ip[..60].to_vec();
    b.resize(ip.len(), 0);
    assert_eq!(
        parse_cut(&b, 60, Some((ethernet::ethertype::IPV6, 0))),
        None,
        "60 bytes of IPv6 + TCP with options"
    );
    b[..ip.len().min(90)].copy_from_slice(&ip[..90]);
    assert_eq!(
        parse_cut(&b, 90, Some((ethernet::ethertype::IPV6, 0))),
        Some(parse_network(ethernet::ethertype::IPV6, ip))
    );
}
