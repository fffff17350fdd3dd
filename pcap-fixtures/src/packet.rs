//! Frame builders: Ethernet (with VLAN tags), IPv6 (with extension-header chains), IPv4,
//! TCP, UDP, ICMPv6, ARP, plus the small application payloads (HTTP/1.1, DNS) the mixes
//! carry, and [`Conversation`], which keeps the sequence numbers of one TCP connection.
//!
//! Every header is written by `weir-wire`'s `Repr::emit` (so checksums are right by
//! construction and the generator exercises the emitters); only deliberately broken
//! frames (see `fixtures::malformed`) are patched byte by byte after emitting a correct
//! one. Rejected: a second, local set of header writers, which would drift from the
//! parser's idea of the formats.

use weir_wire::checksum::Pseudo;
use weir_wire::ethernet::{self, ethertype, VlanRepr};
use weir_wire::ipv6ext::{FragmentRepr, OptionsRepr, RoutingRepr};
use weir_wire::{arp, icmpv6, ipv4, ipv6, protocol, tcp, tcp_flags, udp};

/// A MAC address.
pub type Mac = [u8; 6];

/// The upstream router's MAC: source of every inbound frame (locally administered).
pub const ROUTER_MAC: Mac = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
/// weir's own MAC: source of every outbound frame.
pub const WEIR_MAC: Mac = [0x02, 0x77, 0x65, 0x69, 0x72, 0x01];

/// An IP address of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// IPv6.
    V6(u128),
    /// IPv4 (big-endian `u32`).
    V4(u32),
}

impl Addr {
    /// The pseudo-header of a segment from `self` to `dst`; panics on mixed families.
    pub fn pseudo(self, dst: Addr) -> Pseudo {
        match (self, dst) {
            (Addr::V6(src), Addr::V6(dst)) => Pseudo::V6 { src, dst },
            (Addr::V4(src), Addr::V4(dst)) => Pseudo::V4 { src, dst },
            _ => panic!("mixed address families: {self:?} → {dst:?}"),
        }
    }

    /// The IPv6 address; panics for IPv4.
    pub fn v6(self) -> u128 {
        match self {
            Addr::V6(a) => a,
            Addr::V4(a) => panic!("{a:#x} is not IPv6"),
        }
    }
}

/// One VLAN tag: its TPID (0x8100 or 0x88a8) and VLAN id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// The EtherType announcing this tag.
    pub tpid: u16,
    /// VLAN id.
    pub vid: u16,
}

/// Link-layer framing: MACs and VLAN tags, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Source MAC.
    pub src: Mac,
    /// Destination MAC.
    pub dst: Mac,
    /// VLAN tags, outermost first.
    pub tags: &'static [Tag],
}

impl Link {
    /// Router → weir, untagged.
    pub const INBOUND: Link = Link {
        src: ROUTER_MAC,
        dst: WEIR_MAC,
        tags: &[],
    };
    /// weir → router, untagged.
    pub const OUTBOUND: Link = Link {
        src: WEIR_MAC,
        dst: ROUTER_MAC,
        tags: &[],
    };

    /// The same link in the other direction.
    pub const fn reverse(self) -> Link {
        Link {
            src: self.dst,
            dst: self.src,
            tags: self.tags,
        }
    }

    /// The same link with other tags.
    pub const fn tagged(self, tags: &'static [Tag]) -> Link {
        Link {
            src: self.src,
            dst: self.dst,
            tags,
        }
    }
}

/// An Ethernet frame (with the link's VLAN tags) carrying `payload` as `ty`.
pub fn ether(link: &Link, ty: u16, payload: &[u8]) -> Vec<u8> {
    let head = ethernet::HEADER_LEN + ethernet::TAG_LEN * link.tags.len();
    let mut buf = vec![0u8; head + payload.len()];
    let first = link.tags.first().map_or(ty, |t| t.tpid);
    ethernet::Repr {
        src: link.src,
        dst: link.dst,
        ethertype: first,
    }
    .emit(&mut buf);
    let mut at = ethernet::HEADER_LEN;
    for (i, tag) in link.tags.iter().enumerate() {
        let next = link.tags.get(i + 1).map_or(ty, |t| t.tpid);
        VlanRepr::new(tag.vid, next).emit(&mut buf[at..]);
        at += ethernet::TAG_LEN;
    }
    buf[at..].copy_from_slice(payload);
    buf
}

/// An IPv6 extension header in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-Hop options with only padding.
    HopByHop,
    /// Destination options with only padding.
    DstOpts,
    /// Segment Routing Header (routing type 4), segments left 0, the final destination as
    /// its only segment.
    SegmentRouting,
    /// Fragment header.
    Fragment {
        /// Offset in 8-byte units.
        offset: u16,
        /// M flag.
        more: bool,
        /// Identification.
        ident: u32,
    },
}

impl Ext {
    /// The next-header number announcing this header.
    pub const fn number(self) -> u8 {
        match self {
            Ext::HopByHop => protocol::HOP_BY_HOP,
            Ext::DstOpts => protocol::DST_OPTS,
            Ext::SegmentRouting => protocol::ROUTING,
            Ext::Fragment { .. } => protocol::FRAGMENT,
        }
    }

    fn emit(self, next_header: u8, final_dst: u128) -> Vec<u8> {
        match self {
            Ext::HopByHop | Ext::DstOpts => {
                let r = OptionsRepr {
                    next_header,
                    options: &[],
                };
                let mut b = vec![0; r.buffer_len()];
                r.emit(&mut b);
                b
            }
            Ext::SegmentRouting => {
                let segments = [final_dst];
                let r = RoutingRepr::SegmentRouting {
                    next_header,
                    segments_left: 0,
                    flags: 0,
                    tag: 0,
                    segments: &segments,
                };
                let mut b = vec![0; r.buffer_len()];
                r.emit(&mut b);
                b
            }
            Ext::Fragment {
                offset,
                more,
                ident,
            } => {
                let r = FragmentRepr {
                    next_header,
                    offset,
                    more,
                    ident,
                };
                let mut b = vec![0; r.buffer_len()];
                r.emit(&mut b);
                b
            }
        }
    }
}

/// An IPv6 packet: fixed header, the extension headers `exts` in order, then `upper`
/// (whose protocol is `proto`).
pub fn ipv6_packet(
    src: u128,
    dst: u128,
    hop_limit: u8,
    exts: &[Ext],
    proto: u8,
    upper: &[u8],
) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |n| n.number());
        chain.extend_from_slice(&e.emit(next, dst));
    }
    chain.extend_from_slice(upper);
    let first = exts.first().map_or(proto, |e| e.number());
    let len = u16::try_from(chain.len()).expect("IPv6 payload fits 65535 bytes");
    let repr = ipv6::Repr {
        hop_limit,
        ..ipv6::Repr::new(src, dst, first, len)
    };
    let mut buf = vec![0u8; ipv6::HEADER_LEN + chain.len()];
    repr.emit(&mut buf);
    buf[ipv6::HEADER_LEN..].copy_from_slice(&chain);
    buf
}

/// An IPv4 packet (TTL 64, DF set unless it is a fragment) carrying `upper`.
pub fn ipv4_packet(src: u32, dst: u32, proto: u8, ident: u16, upper: &[u8]) -> Vec<u8> {
    ipv4_fragment(src, dst, proto, ident, 0, false, upper)
}

/// An IPv4 packet or fragment.
pub fn ipv4_fragment(
    src: u32,
    dst: u32,
    proto: u8,
    ident: u16,
    frag_offset: u16,
    more_frags: bool,
    upper: &[u8],
) -> Vec<u8> {
    let len = u16::try_from(upper.len()).expect("IPv4 payload fits");
    let repr = ipv4::Repr {
        ident,
        dont_frag: frag_offset == 0 && !more_frags,
        more_frags,
        frag_offset,
        ..ipv4::Repr::new(src, dst, proto, len)
    };
    let mut buf = vec![0u8; ipv4::HEADER_LEN + upper.len()];
    repr.emit(&mut buf);
    buf[ipv4::HEADER_LEN..].copy_from_slice(upper);
    buf
}

/// A TCP segment from `src` to `dst` with a correct checksum.
pub fn tcp_segment(src: Addr, dst: Addr, repr: &tcp::Repr<'_>) -> Vec<u8> {
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b, src.pseudo(dst));
    b
}

/// A UDP datagram with a correct checksum.
pub fn udp_datagram(src: Addr, dst: Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let r = udp::Repr {
        src_port: sport,
        dst_port: dport,
        payload,
    };
    let mut b = vec![0; r.buffer_len()];
    r.emit(&mut b, src.pseudo(dst));
    b
}

/// An ICMPv6 message with a correct checksum.
pub fn icmpv6_message(src: u128, dst: u128, repr: &icmpv6::Repr<'_>) -> Vec<u8> {
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b, src, dst);
    b
}

/// An Ethernet frame carrying an IP packet of either family (no extension headers).
pub fn ip_frame(link: &Link, src: Addr, dst: Addr, proto: u8, upper: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (Addr::V6(s), Addr::V6(d)) => ether(
            link,
            ethertype::IPV6,
            &ipv6_packet(s, d, 64, &[], proto, upper),
        ),
        (Addr::V4(s), Addr::V4(d)) => {
            // A deterministic, varying identification, as a real stack would send.
            let ident = (upper.len() as u16) ^ (s as u16).rotate_left(3) ^ (d as u16);
            ether(
                link,
                ethertype::IPV4,
                &ipv4_packet(s, d, proto, ident, upper),
            )
        }
        _ => panic!("mixed address families"),
    }
}

/// A frame carrying one TCP segment.
pub fn tcp_frame(link: &Link, src: Addr, dst: Addr, repr: &tcp::Repr<'_>) -> Vec<u8> {
    ip_frame(link, src, dst, protocol::TCP, &tcp_segment(src, dst, repr))
}

/// A frame carrying one TCP segment behind IPv6 extension headers.
pub fn tcp_frame_ext(
    link: &Link,
    src: u128,
    dst: u128,
    exts: &[Ext],
    repr: &tcp::Repr<'_>,
) -> Vec<u8> {
    let seg = tcp_segment(Addr::V6(src), Addr::V6(dst), repr);
    ether(
        link,
        ethertype::IPV6,
        &ipv6_packet(src, dst, 64, exts, protocol::TCP, &seg),
    )
}

/// A frame carrying one UDP datagram.
pub fn udp_frame(
    link: &Link,
    src: Addr,
    dst: Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    ip_frame(
        link,
        src,
        dst,
        protocol::UDP,
        &udp_datagram(src, dst, sport, dport, payload),
    )
}

/// A frame carrying one ICMPv6 message with the given hop limit.
pub fn icmpv6_frame(
    link: &Link,
    src: u128,
    dst: u128,
    hop_limit: u8,
    repr: &icmpv6::Repr<'_>,
) -> Vec<u8> {
    ether(
        link,
        ethertype::IPV6,
        &ipv6_packet(
            src,
            dst,
            hop_limit,
            &[],
            protocol::ICMPV6,
            &icmpv6_message(src, dst, repr),
        ),
    )
}

/// An Ethernet/IPv4 ARP frame.
pub fn arp_frame(link: &Link, repr: &arp::Repr) -> Vec<u8> {
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b);
    ether(link, ethertype::ARP, &b)
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1).
pub const fn solicited_node(addr: u128) -> u128 {
    0xff02_0000_0000_0000_0000_0001_ff00_0000 | (addr & 0xff_ffff)
}

/// The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7).
pub const fn multicast_mac(addr: u128) -> Mac {
    let b = addr.to_be_bytes();
    [0x33, 0x33, b[12], b[13], b[14], b[15]]
}

/// A modified-EUI-64 link-local address for a MAC (RFC 4291 appendix A).
pub const fn link_local(mac: Mac) -> u128 {
    let iid = u64::from_be_bytes([
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    (0xfe80u128 << 112) | iid as u128
}

/// An HTTP/1.1 GET request for `path`.
pub fn http_get(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: svc.example.net\r\nUser-Agent: weir-fixtures/1\r\n\
         Accept: */*\r\n\r\n"
    )
    .into_bytes()
}

/// An HTTP/1.1 200 response with a `body_len`-byte text body.
pub fn http_ok(body_len: usize) -> Vec<u8> {
    let line = b"weir fixture object body, deterministic bytes.\n";
    let body: Vec<u8> = line.iter().copied().cycle().take(body_len).collect();
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body_len}\r\n\
         Server: weir-terminator\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A DNS query (recursion desired) for `name` of type AAAA.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 28, 0, 1]);
    q
}

/// One TCP connection between a client and a service address: keeps both sides'
/// sequence numbers so that each call emits the next segment of a consistent exchange.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// Client address.
    pub client: Addr,
    /// Service address.
    pub server: Addr,
    /// Client port.
    pub cport: u16,
    /// Service port.
    pub sport: u16,
    /// Next sequence number the client sends.
    pub cseq: u32,
    /// Next sequence number the service sends.
    pub sseq: u32,
    /// Framing of client → service frames (service → client uses its reverse).
    pub link: Link,
    /// IPv6 extension headers on client frames.
    pub exts: &'static [Ext],
}

impl Conversation {
    /// A conversation over an untagged link with the given initial sequence numbers.
    pub fn new(client: Addr, server: Addr, cport: u16, sport: u16, isn: (u32, u32)) -> Self {
        Conversation {
            client,
            server,
            cport,
            sport,
            cseq: isn.0,
            sseq: isn.1,
            link: Link::INBOUND,
            exts: &[],
        }
    }

    fn client_frame(&self, repr: &tcp::Repr<'_>) -> Vec<u8> {
        if self.exts.is_empty() {
            tcp_frame(&self.link, self.client, self.server, repr)
        } else {
            tcp_frame_ext(
                &self.link,
                self.client.v6(),
                self.server.v6(),
                self.exts,
                repr,
            )
        }
    }

    /// The client's clean SYN (MSS, SACK-permitted, timestamps, window scale).
    pub fn syn(&mut self) -> Vec<u8> {
        let mss = if matches!(self.client, Addr::V6(_)) {
            1440
        } else {
            1460
        };
        let r = tcp::Repr {
            window: 64800,
            ..tcp::Repr::syn(self.cport, self.sport, self.cseq, mss)
        };
        self.cseq = self.cseq.wrapping_add(1);
        self.client_frame(&r)
    }

    /// The service's SYN-ACK.
    pub fn syn_ack(&mut self) -> Vec<u8> {
        let r = tcp::Repr {
            mss: Some(1440),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((7, 1)),
            window: 64260,
            ..tcp::Repr::new(
                self.sport,
                self.cport,
                self.sseq,
                self.cseq,
                tcp_flags::SYN | tcp_flags::ACK,
            )
        };
        self.sseq = self.sseq.wrapping_add(1);
        tcp_frame(&self.link.reverse(), self.server, self.client, &r)
    }

    /// A client segment with `flags` (ACK is added) and `payload`.
    pub fn client(&mut self, flags: u8, payload: &[u8]) -> Vec<u8> {
        let r = tcp::Repr {
            payload,
            window: 507,
            ..tcp::Repr::new(
                self.cport,
                self.sport,
                self.cseq,
                self.sseq,
                flags | tcp_flags::ACK,
            )
        };
        self.cseq = advance(self.cseq, flags, payload.len());
        self.client_frame(&r)
    }

    /// A service segment with `flags` (ACK is added) and `payload`.
    pub fn server(&mut self, flags: u8, payload: &[u8]) -> Vec<u8> {
        let r = tcp::Repr {
            payload,
            window: 502,
            ..tcp::Repr::new(
                self.sport,
                self.cport,
                self.sseq,
                self.cseq,
                flags | tcp_flags::ACK,
            )
        };
        self.sseq = advance(self.sseq, flags, payload.len());
        tcp_frame(&self.link.reverse(), self.server, self.client, &r)
    }
}

fn advance(seq: u32, flags: u8, len: usize) -> u32 {
    let fin = u32::from(flags & tcp_flags::FIN != 0);
    seq.wrapping_add(len as u32).wrapping_add(fin)
}
