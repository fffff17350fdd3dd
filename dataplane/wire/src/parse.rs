//! `parse_frame` and `peek_addresses`: the one-pass walk that decides `malformed`.
//!
//! Built on the header views; each rule of DESIGN.md "Headers" / "Fragments" appears once,
//! in the order the brief states them, so the first broken rule is the one reported. The
//! only loops are the VLAN walk (≤ 2 tags), the extension-header walk (≤ 8 headers) and
//! the TCP options walk (≤ 40 bytes). Checksums are not verified: that would cost a pass
//! over every payload byte on the hot path, and the terminator that accepts a packet
//! verifies them anyway.
//!
//! A first fragment's transport header must be complete: any truncation of it (TCP < 20
//! bytes or data offset beyond what is present, UDP < 8, ICMPv6 shorter than its type's
//! fixed part) is `FirstFragmentTruncated` rather than the transport's own truncation
//! cause. A data offset below 5 stays `TcpDataOffset`; that is not a truncation.

use crate::ethernet::{self, ethertype};
use crate::frame::{
    ipv4_mapped, tcp_flags, Fragment, Frame, Icmpv6, Ip, IpVersion, Malformed, Net, Quote, Tcp,
    Transport,
};
use crate::ipv6ext::{self, ExtHeader, FragmentHeader};
use crate::{arp, bytes, icmpv6, ipv4, ipv6, protocol, tcp, udp};

/// Most VLAN tags a frame may carry.
const MAX_VLAN_TAGS: u8 = 2;
/// Most IPv6 extension headers walked.
const MAX_EXT_HEADERS: u8 = 8;
/// Largest reassembled IP payload.
const MAX_REASSEMBLED: usize = 65535;

/// How far a walk has read into its buffer. The walk over a frame that a capture cut short
/// ([`parse_cut`]) must know whether it read a byte past the cut; every other walk passes
/// [`Unbounded`], for which the calls compile to nothing.
pub(crate) trait Reach {
    /// The walk is about to read up to `len` bytes from the start of `part` (a part of
    /// the buffer).
    fn read(&mut self, part: &[u8], len: usize);
}

/// The ordinary walk: nothing to track.
pub(crate) struct Unbounded;

impl Reach for Unbounded {
    #[inline(always)]
    fn read(&mut self, _: &[u8], _: usize) {}
}

/// The end of the furthest read, counted from `base` (the buffer's first byte).
struct Reached {
    base: usize,
    end: usize,
}

impl Reach for Reached {
    #[inline]
    fn read(&mut self, part: &[u8], len: usize) {
        let end = (part.as_ptr() as usize)
            .wrapping_sub(self.base)
            .saturating_add(len.min(part.len()));
        self.end = self.end.max(end);
    }
}

/// Ethernet and VLAN tags: (tags, inner EtherType, what follows).
#[inline(always)]
fn link<'a, R: Reach>(frame: &'a [u8], r: &mut R) -> Result<(u8, u16, &'a [u8]), Malformed> {
    r.read(frame, ethernet::HEADER_LEN);
    let eth = ethernet::Packet::new_checked(frame)?;
    let mut ty = eth.ethertype();
    let mut rest = eth.payload();
    let mut tags = 0u8;
    while ty == ethertype::VLAN || ty == ethertype::QINQ {
        if tags == MAX_VLAN_TAGS {
            return Err(Malformed::TooManyVlanTags);
        }
        r.read(rest, ethernet::TAG_LEN);
        let tag = ethernet::VlanTag::new_checked(rest)?;
        ty = tag.ethertype();
        rest = tag.payload();
        tags += 1;
    }
    Ok((tags, ty, rest))
}

/// The link layer of a frame: Ethernet and up to two VLAN tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLayer<'a> {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// VLAN tags walked (0..=2).
    pub vlan_tags: u8,
    /// The EtherType after the tags.
    pub ethertype: u16,
    /// What follows (the network packet).
    pub payload: &'a [u8],
}

/// Split a frame into its link layer and the packet it carries (the same walk as
/// `parse_frame`'s first step: a third VLAN tag is `TooManyVlanTags`).
pub fn link_layer(frame: &[u8]) -> Result<LinkLayer<'_>, Malformed> {
    let eth = ethernet::Packet::new_checked(frame)?;
    let (dst, src) = (eth.dst_addr(), eth.src_addr());
    let (vlan_tags, ethertype, payload) = link(frame, &mut Unbounded)?;
    Ok(LinkLayer {
        dst,
        src,
        vlan_tags,
        ethertype,
        payload,
    })
}

pub(crate) fn peek_addresses(frame: &[u8]) -> Option<(IpVersion, u128, u128)> {
    let (_, ty, rest) = link(frame, &mut Unbounded).ok()?;
    peek_network(ty, rest)
}

pub(crate) fn peek_network(ty: u16, rest: &[u8]) -> Option<(IpVersion, u128, u128)> {
    match ty {
        ethertype::IPV6 if rest.len() >= ipv6::HEADER_LEN => {
            let ip = ipv6::Packet::new_unchecked(rest);
            (ip.version() == 6).then(|| (IpVersion::V6, ip.src_addr(), ip.dst_addr()))
        }
        ethertype::IPV4 if rest.len() >= ipv4::HEADER_LEN => {
            let ip = ipv4::Packet::new_unchecked(rest);
            (ip.version() == 4).then(|| {
                (
                    IpVersion::V4,
                    ipv4_mapped(ip.src_addr()),
                    ipv4_mapped(ip.dst_addr()),
                )
            })
        }
        _ => None,
    }
}

#[inline(always)]
pub(crate) fn parse_frame(frame: &[u8]) -> Result<Frame, Malformed> {
    match fast_ip(frame) {
        Some(ip) => Ok(Frame {
            vlan_tags: 0,
            net: Net::Ip(ip),
        }),
        None => general_frame(frame),
    }
}

#[cfg(test)]
fn fast_frame(frame: &[u8]) -> Option<Frame> {
    fast_ip(frame).map(|ip| Frame {
        vlan_tags: 0,
        net: Net::Ip(ip),
    })
}

/// The straight-line parse of the common case: untagged Ethernet, IPv6 without extension
/// headers, TCP or UDP, nothing malformed. It reads every field at a fixed offset after one
/// length check and returns exactly the `Frame` the general walk would; anything else
/// (a VLAN tag, an extension header, IPv4, ICMPv6, ARP, any rule broken) is `None`, and
/// the general walk decides it, so a malformed frame is always reported by the one place
/// that names the broken rule. A proptest holds the two equal over arbitrary and mutated
/// frames (`tests.rs`).
#[inline(always)]
pub(crate) fn fast_ip(frame: &[u8]) -> Option<Ip> {
    const ETH: usize = ethernet::HEADER_LEN;
    const IP: usize = ETH + ipv6::HEADER_LEN;
    // Ethernet + IPv6 + the 8 bytes every UDP header and TCP header start with.
    let head: &[u8; IP + 8] = frame.get(..IP + 8)?.try_into().ok()?;
    if u16::from_be_bytes([head[12], head[13]]) != ethertype::IPV6 || head[ETH] >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([head[ETH + 4], head[ETH + 5]]));
    let seg = frame.get(IP..IP + payload_len)?;
    let next = head[ETH + 6];
    let transport = match next {
        protocol::TCP => {
            let fixed: &[u8; tcp::HEADER_LEN] = seg.get(..tcp::HEADER_LEN)?.try_into().ok()?;
            let header_len = usize::from(fixed[12] >> 4) * 4;
            if header_len < tcp::HEADER_LEN || header_len > seg.len() {
                return None;
            }
            if header_len > tcp::HEADER_LEN {
                tcp::check_options(seg.get(tcp::HEADER_LEN..header_len)?).ok()?;
            }
            let flags = fixed[13];
            if flags & tcp_flags::SYN != 0 && flags & (tcp_flags::RST | tcp_flags::FIN) != 0 {
                return None;
            }
            Transport::Tcp(Tcp {
                src_port: u16::from_be_bytes([fixed[0], fixed[1]]),
                dst_port: u16::from_be_bytes([fixed[2], fixed[3]]),
                seq: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
                ack: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
                flags,
                payload_len: u16::try_from(seg.len() - header_len).unwrap_or(u16::MAX),
            })
        }
        protocol::UDP => {
            let fixed: &[u8; udp::HEADER_LEN] = seg.get(..udp::HEADER_LEN)?.try_into().ok()?;
            if usize::from(u16::from_be_bytes([fixed[4], fixed[5]])) != seg.len() {
                return None;
            }
            Transport::Udp {
                src_port: u16::from_be_bytes([fixed[0], fixed[1]]),
                dst_port: u16::from_be_bytes([fixed[2], fixed[3]]),
            }
        }
        _ => return None,
    };
    let addr = |at: usize| -> u128 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&head[at..at + 16]);
        u128::from_be_bytes(a)
    };
    Some(Ip {
        version: IpVersion::V6,
        src: addr(ETH + 8),
        dst: addr(ETH + 24),
        hop_limit: head[ETH + 7],
        fragment: Fragment::Whole,
        transport,
        ext_headers: 0,
    })
}

/// The general walk: every header of every kind, every rule, the first broken one named.
#[inline(never)]
fn general_frame(frame: &[u8]) -> Result<Frame, Malformed> {
    walk_frame(frame, &mut Unbounded)
}

#[inline(always)]
fn walk_frame<R: Reach>(frame: &[u8], r: &mut R) -> Result<Frame, Malformed> {
    let (vlan_tags, ty, rest) = link(frame, r)?;
    Ok(Frame {
        vlan_tags,
        net: parse_net(ty, rest, frame.as_ptr() as usize, r)?,
    })
}

/// The network layer alone: what a capture without an Ethernet header (raw IP, Linux
/// cooked, BSD loopback) carries, with the EtherType its link header named.
pub(crate) fn parse_network(ty: u16, packet: &[u8]) -> Result<Frame, Malformed> {
    Ok(Frame {
        vlan_tags: 0,
        net: parse_net(ty, packet, packet.as_ptr() as usize, &mut Unbounded)?,
    })
}

/// The parse of a frame that a capture cut short (snap length): `buffer` holds the
/// captured bytes followed by zeros up to the frame's length on the wire, so that every
/// length rule sees the lengths the packet really had; `captured` is how many bytes are
/// real. `network`: for a capture without Ethernet headers, the EtherType and the
/// offset of the network packet. `None` when the walk had to read a header byte the cut
/// removed (the frame cannot be classified); otherwise exactly what the walk over the
/// whole frame would give, since the walk reads no byte it has not marked as read.
#[cold]
#[inline(never)]
pub(crate) fn parse_cut(
    buffer: &[u8],
    captured: usize,
    network: Option<(u16, usize)>,
) -> Option<Result<Frame, Malformed>> {
    let mut r = Reached {
        base: buffer.as_ptr() as usize,
        end: 0,
    };
    let parsed = match network {
        None => walk_frame(buffer, &mut r),
        Some((ty, at)) => {
            let packet = buffer.get(at..).unwrap_or(&[]);
            r.read(buffer, at);
            parse_net(ty, packet, packet.as_ptr() as usize, &mut r)
                .map(|net| Frame { vlan_tags: 0, net })
        }
    };
    (r.end <= captured).then_some(parsed)
}

#[inline(always)]
/// `base`: the address of the buffer's first byte, from which the ICMPv6 quote's offset is
/// counted (`Icmpv6::Error::quote_at`).
fn parse_net<R: Reach>(ty: u16, rest: &[u8], base: usize, r: &mut R) -> Result<Net, Malformed> {
    Ok(match ty {
        ethertype::IPV6 => Net::Ip(parse_ipv6(rest, base, r)?),
        ethertype::IPV4 => Net::Ip(parse_ipv4(rest, r)?),
        ethertype::ARP => parse_arp(rest, r)?,
        ethertype => Net::Other { ethertype },
    })
}

#[inline(always)]
fn parse_ipv6<R: Reach>(bytes: &[u8], base: usize, r: &mut R) -> Result<Ip, Malformed> {
    r.read(bytes, ipv6::HEADER_LEN);
    if bytes.len() < ipv6::HEADER_LEN {
        return Err(Malformed::Ipv6Truncated);
    }
    let ip = ipv6::Packet::new_unchecked(bytes);
    if ip.version() != 6 {
        return Err(Malformed::Ipv6Version);
    }
    ip.check_len()?;
    let mut out = Ip {
        version: IpVersion::V6,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        hop_limit: ip.hop_limit(),
        fragment: Fragment::Whole,
        transport: Transport::Other { proto: 0 },
        ext_headers: 0,
    };
    let mut next = ip.next_header();
    let mut rest = ip.payload();
    // `is_walked` is one bit test, where a `match` on the four header numbers is a compare
    // tree that every packet, most of them without extension headers, would pay for.
    while ipv6ext::is_walked(next) {
        count_ext(&mut out.ext_headers, next)?;
        match next {
            protocol::FRAGMENT => {
                r.read(rest, ipv6ext::FRAGMENT_LEN);
                let h = FragmentHeader::new_checked(rest)?;
                next = h.next_header();
                rest = h.payload();
                let (offset, more) = (h.frag_offset(), h.more_frags());
                if offset == 0 && !more {
                    continue; // atomic fragment (RFC 6946): a whole packet
                }
                if more && rest.len() & 7 != 0 {
                    return Err(Malformed::FragmentLength);
                }
                if usize::from(offset) * 8 + rest.len() > MAX_REASSEMBLED {
                    return Err(Malformed::FragmentOverflow);
                }
                if offset > 0 {
                    out.fragment = Fragment::Later;
                    out.transport = Transport::Unparsed { proto: next };
                    return Ok(out);
                }
                out.fragment = Fragment::First;
            }
            // Hop-by-Hop, Routing or Destination Options: the rest of `is_walked`.
            _ => {
                r.read(rest, 2);
                r.read(rest, ExtHeader::new_unchecked(rest).header_len());
                let h = ExtHeader::new_checked(rest)?;
                next = h.next_header();
                rest = h.payload();
            }
        }
    }
    out.transport = transport(next, rest, out.fragment == Fragment::First, base, r)?;
    Ok(out)
}

/// Count one more extension header, enforcing the depth and Hop-by-Hop-first rules.
#[inline(always)]
fn count_ext(count: &mut u8, next: u8) -> Result<(), Malformed> {
    if *count == MAX_EXT_HEADERS {
        return Err(Malformed::TooManyExtHeaders);
    }
    if next == protocol::HOP_BY_HOP && *count != 0 {
        return Err(Malformed::HopByHopNotFirst);
    }
    *count += 1;
    Ok(())
}

#[inline(always)]
fn parse_ipv4<R: Reach>(bytes: &[u8], r: &mut R) -> Result<Ip, Malformed> {
    r.read(bytes, ipv4::HEADER_LEN);
    if bytes.len() < ipv4::HEADER_LEN {
        return Err(Malformed::Ipv4Truncated);
    }
    let ip = ipv4::Packet::new_unchecked(bytes);
    r.read(bytes, ip.header_len());
    if ip.version() != 4 {
        return Err(Malformed::Ipv4Version);
    }
    ip.check_len()?;
    let payload = ip.payload();
    let (offset, more) = (ip.frag_offset(), ip.more_frags());
    let proto = ip.protocol();
    let fragment = if offset == 0 && !more {
        Fragment::Whole
    } else if usize::from(offset) * 8 + payload.len() > MAX_REASSEMBLED {
        return Err(Malformed::FragmentOverflow);
    } else if offset > 0 {
        Fragment::Later
    } else {
        Fragment::First
    };
    let transport = if fragment == Fragment::Later {
        Transport::Unparsed { proto }
    } else {
        transport(proto, payload, fragment == Fragment::First, 0, r)?
    };
    Ok(Ip {
        version: IpVersion::V4,
        src: ipv4_mapped(ip.src_addr()),
        dst: ipv4_mapped(ip.dst_addr()),
        hop_limit: ip.ttl(),
        fragment,
        transport,
        ext_headers: 0,
    })
}

#[inline(always)]
/// `base` as for `parse_net`; 0 for IPv4 (no ICMPv6 there).
fn transport<R: Reach>(
    proto: u8,
    seg: &[u8],
    first: bool,
    base: usize,
    r: &mut R,
) -> Result<Transport, Malformed> {
    let truncated = |cause| {
        if first {
            Malformed::FirstFragmentTruncated
        } else {
            cause
        }
    };
    match proto {
        protocol::TCP => {
            r.read(seg, tcp::HEADER_LEN);
            if seg.len() < tcp::HEADER_LEN {
                return Err(truncated(Malformed::TcpTruncated));
            }
            let p = tcp::Packet::new_unchecked(seg);
            let header_len = p.header_len();
            r.read(seg, header_len);
            if header_len < tcp::HEADER_LEN {
                return Err(Malformed::TcpDataOffset);
            }
            if header_len > seg.len() {
                return Err(truncated(Malformed::TcpDataOffset));
            }
            tcp::check_options(p.options())?;
            let flags = p.flags();
            if flags & tcp_flags::SYN != 0 && flags & (tcp_flags::RST | tcp_flags::FIN) != 0 {
                return Err(Malformed::TcpFlags);
            }
            let payload_len = if first {
                0
            } else {
                u16::try_from(seg.len() - header_len).unwrap_or(u16::MAX)
            };
            Ok(Transport::Tcp(Tcp {
                src_port: p.src_port(),
                dst_port: p.dst_port(),
                seq: p.seq_number(),
                ack: p.ack_number(),
                flags,
                payload_len,
            }))
        }
        protocol::UDP => {
            r.read(seg, udp::HEADER_LEN);
            let p = udp::Packet::new_checked(seg).map_err(truncated)?;
            if !first && usize::from(p.len()) != seg.len() {
                return Err(Malformed::UdpLength);
            }
            Ok(Transport::Udp {
                src_port: p.src_port(),
                dst_port: p.dst_port(),
            })
        }
        protocol::ICMPV6 if base != 0 => Ok(Transport::Icmpv6(
            parse_icmpv6(seg, base, r).map_err(truncated)?,
        )),
        proto => Ok(Transport::Other { proto }),
    }
}

/// Out of line and marked cold: ICMPv6 is a small share of traffic next to TCP and UDP,
/// and inlined, its quote walk costs the TCP path registers and puts ICMPv6 first in the
/// protocol dispatch.
#[cold]
#[inline(never)]
fn parse_icmpv6<R: Reach>(seg: &[u8], base: usize, r: &mut R) -> Result<Icmpv6, Malformed> {
    r.read(seg, icmpv6::HEADER_LEN);
    r.read(
        seg,
        icmpv6::min_len(icmpv6::Packet::new_unchecked(seg).msg_type()),
    );
    let p = icmpv6::Packet::new_checked(seg)?;
    let ty = p.msg_type();
    Ok(match ty {
        1..=4 => {
            let body = p.body();
            // The classifier reads the quoted IPv6 header and the TCP ports after it.
            r.read(body, ipv6::HEADER_LEN + 4);
            // The quote's place in the buffer, for `quote_of` (a frame is far below 64 KiB).
            let at = (body.as_ptr() as usize).wrapping_sub(base);
            Icmpv6::Error {
                ty,
                quote_at: u16::try_from(at).unwrap_or(u16::MAX),
            }
        }
        icmpv6::msg_type::ECHO_REQUEST => Icmpv6::EchoRequest,
        icmpv6::msg_type::ECHO_REPLY => Icmpv6::EchoReply,
        icmpv6::msg_type::ROUTER_SOLICIT
        | icmpv6::msg_type::ROUTER_ADVERT
        | icmpv6::msg_type::NEIGHBOR_SOLICIT
        | icmpv6::msg_type::NEIGHBOR_ADVERT
        | icmpv6::msg_type::REDIRECT => Icmpv6::Ndp { ty },
        ty => Icmpv6::Other { ty },
    })
}

/// The quoted invoking packet: lenient, never malformed. The quote is usually cut short,
/// so its payload length is not checked and the walk stops at the first header that does
/// not fit, reporting that header's number as the protocol.
pub(crate) fn parse_quote(q: &[u8]) -> Option<Quote> {
    if q.len() < ipv6::HEADER_LEN {
        return None;
    }
    let ip = ipv6::Packet::new_unchecked(q);
    if ip.version() != 6 {
        return None;
    }
    let mut next = ip.next_header();
    let mut rest = q.get(ipv6::HEADER_LEN..).unwrap_or(&[]);
    let mut ports = true;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            protocol::HOP_BY_HOP | protocol::ROUTING | protocol::DST_OPTS => {
                let Ok(h) = ExtHeader::new_checked(rest) else {
                    break;
                };
                next = h.next_header();
                rest = h.payload();
            }
            protocol::FRAGMENT => {
                let Ok(h) = FragmentHeader::new_checked(rest) else {
                    break;
                };
                next = h.next_header();
                rest = h.payload();
                if h.frag_offset() > 0 {
                    ports = false;
                    break;
                }
            }
            _ => break,
        }
    }
    let tcp_ports = (ports && next == protocol::TCP && rest.len() >= 4)
        .then(|| (bytes::u16_at(rest, 0), bytes::u16_at(rest, 2)));
    Some(Quote {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        proto: next,
        tcp_ports,
    })
}

#[inline(always)]
fn parse_arp<R: Reach>(bytes: &[u8], r: &mut R) -> Result<Net, Malformed> {
    r.read(bytes, arp::ETH_IPV4_LEN);
    let p = arp::Packet::new_checked(bytes)?;
    let target = if p.is_eth_ipv4() {
        p.check_eth_ipv4()?;
        Some(ipv4_mapped(p.target_protocol_addr()))
    } else {
        None
    };
    Ok(Net::Arp {
        op: p.operation(),
        target,
    })
}

#[cfg(test)]
mod tests;
