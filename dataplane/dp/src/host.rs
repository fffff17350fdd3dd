//! The dataplane's host path: weir answers ARP and IPv6 Neighbor Solicitation for its own
//! addresses, so that routers and hosts on the link deliver service traffic to weir's MAC.
//!
//! What: [`HostResponder::answer`] turns one received frame into at most one reply frame —
//! a Neighbor Advertisement (RFC 4861 §7.2.4) for an NS whose target is a service address
//! or weir's link-local address, an ARP reply (RFC 826) for a request whose target is an
//! IPv4 service address — and otherwise says why not ([`NoAnswer`]), so the caller counts
//! it. It is the only place weir speaks L2: the terminators run smoltcp with
//! `Medium::Ip` and never see a link header.
//!
//! Why this shape: answering is a pure function of (frame, MAC, prefixes) that writes into
//! a caller's buffer — no allocation, no state, no panic on any input, testable without a
//! port. Every address in a service prefix is answered (a /64 has no list to keep), which
//! is what makes the prefix routable on a plain L2 segment. The reply keeps the request's
//! VLAN tags, so one responder serves every VLAN a port sees. Parsing reuses
//! [`weir_wire::parse_frame`] so a frame the classifier calls malformed is malformed here
//! too; the views of `weir_wire` then read the fields the summary does not carry, and its
//! `Repr::emit` writes the reply with its checksum.
//!
//! Choices, with the RFC text they answer to:
//! - An NS is checked as RFC 4861 §7.1.1 asks: hop limit 255, code 0, valid checksum,
//!   target not multicast, every option of non-zero length, and no source link-layer
//!   option when the source is unspecified. Its source must not be multicast either.
//! - "The Target Address of the advertisement is copied from the Target Address of the
//!   solicitation" and the NA is sent from an address assigned to the interface: weir
//!   uses the target itself, so a service address answers for itself.
//! - The reply goes to the solicitation's source IP; its link-layer destination is the
//!   NS's source link-layer address option when present (it is the address the sender
//!   asked to be reached at), else the Ethernet source.
//! - Flags Solicited + Override, never Router: weir is not a router for these neighbours.
//! - Duplicate address detection (NS from `::`, ARP probe from 0.0.0.0) is *not* answered
//!   ([`NoAnswer::Dad`]). RFC 4861 §7.2.4 would have a node defend its address with a
//!   multicast NA; weir leaves that to the operator, who should not be autoconfiguring
//!   hosts inside a service prefix, and counts the probes instead.
//! - An ARP reply is padded to the 60-byte Ethernet minimum: not every port pads short
//!   frames for us (some DPDK PMDs, raw sockets).
//!
//! Rejected: smoltcp's `Medium::Ethernet` interface for the host path. It answers only for
//! addresses configured one by one (not a whole /64), holds a neighbour cache weir does not
//! need for replies, and would put L2 into the terminators. Also rejected: walking IPv6
//! extension headers before an NS ([`NoAnswer::Unsupported`]) — neighbour discovery never
//! needs them and Linux never sends them there.

use weir_ssa::ServicePrefixes;
use weir_wire::frame::{Icmpv6, Ip, IpVersion, Net, Transport};
use weir_wire::{arp, ethernet, icmpv6, ipv4_mapped, ipv6, protocol, Malformed};

/// Shortest Ethernet frame without FCS (IEEE 802.3 minimum of 64 bytes less the 4-byte FCS).
pub const MIN_FRAME_LEN: usize = 60;

/// Longest reply [`HostResponder::answer`] writes: two VLAN tags + IPv6 + NA with one option.
pub const MAX_REPLY_LEN: usize = ethernet::HEADER_LEN + 2 * ethernet::TAG_LEN + 40 + 32;

/// Length of an NA with a target link-layer address option.
const NA_LEN: usize = 32;

/// `fe80::/64`.
const LINK_LOCAL_PREFIX: u128 = 0xfe80 << 112;

/// Why a frame got no reply. Small and `Copy` so the caller can count each cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NoAnswer {
    /// the frame breaks a header rule (the parser's cause)
    #[error("malformed frame: {0}")]
    Malformed(#[from] Malformed),
    /// neither an ARP request nor an IPv6 Neighbor Solicitation (including ARP replies,
    /// non-Ethernet/IPv4 ARP and gratuitous ARP announcing the target as the sender's own)
    #[error("not an ARP request or neighbor solicitation")]
    NotARequest,
    /// a request for an address that is neither a service address nor weir's link-local
    #[error("request for an address weir does not own")]
    NotForUs,
    /// duplicate address detection: NS from `::` or an ARP probe from 0.0.0.0
    #[error("duplicate address detection probe (not answered)")]
    Dad,
    /// NS hop limit other than 255: it crossed a router (RFC 4861 §7.1.1)
    #[error("neighbor solicitation with hop limit {hop_limit}, not 255")]
    HopLimit {
        /// The hop limit received.
        hop_limit: u8,
    },
    /// the ICMPv6 checksum does not match
    #[error("neighbor solicitation with a bad ICMPv6 checksum")]
    Checksum,
    /// NS failing another RFC 4861 §7.1.1 rule: code not 0, multicast target, multicast
    /// source, an option of length 0 or running past the message, or a source link-layer
    /// option with an unspecified source
    #[error("invalid neighbor solicitation (RFC 4861 section 7.1.1)")]
    InvalidSolicitation,
    /// the address to reply to is a multicast or broadcast MAC
    #[error("request from a multicast link-layer address")]
    MulticastSender,
    /// an NS behind IPv6 extension headers (not walked on the host path)
    #[error("neighbor solicitation behind IPv6 extension headers (not handled)")]
    Unsupported,
    /// the reply does not fit the caller's buffer
    #[error("reply needs {need} bytes, buffer has {have}")]
    OutTooSmall {
        /// Bytes the reply needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
}

/// Answers ARP and Neighbor Solicitation for weir's addresses.
#[derive(Debug, Clone)]
pub struct HostResponder {
    mac: [u8; 6],
    link_local: u128,
}

/// `fe80::/64` + the modified EUI-64 of `mac` (RFC 4291 appendix A).
fn link_local(mac: [u8; 6]) -> u128 {
    let [a, b, c, d, e, f] = mac;
    let iid = u64::from_be_bytes([a ^ 0x02, b, c, 0xff, 0xfe, d, e, f]);
    LINK_LOCAL_PREFIX | u128::from(iid)
}

#[inline]
fn is_multicast_mac(mac: [u8; 6]) -> bool {
    mac[0] & 1 != 0
}

#[inline]
fn is_multicast_v6(addr: u128) -> bool {
    addr >> 120 == 0xff
}

/// The source link-layer address option of NS `options`; `Err` when an option has length
/// 0 or runs past the message (RFC 4861 §7.1.1: "All included options have a length that
/// is greater than zero").
fn source_lladdr(mut options: &[u8]) -> Result<Option<[u8; 6]>, NoAnswer> {
    let mut found = None;
    // Bounded: every step consumes at least 8 bytes.
    while !options.is_empty() {
        let Some((&[ty, len], _)) = options.split_first_chunk::<2>() else {
            return Err(NoAnswer::InvalidSolicitation);
        };
        let n = usize::from(len) * 8;
        let opt = options
            .get(..n)
            .filter(|_| n > 0)
            .ok_or(NoAnswer::InvalidSolicitation)?;
        if ty == icmpv6::OPT_SOURCE_LLADDR && len == 1 && found.is_none() {
            if let Some(mac) = opt.get(2..8).and_then(|m| <[u8; 6]>::try_from(m).ok()) {
                found = Some(mac);
            }
        }
        options = options.get(n..).unwrap_or(&[]);
    }
    Ok(found)
}

impl HostResponder {
    /// `mac`: weir's link address. weir answers NDP/ARP for every address of the service
    /// prefixes passed to [`HostResponder::answer`] (the policy in force: a policy change
    /// reaches the host path at once) and for its own IPv6 link-local address fe80::/64 +
    /// EUI-64 of `mac`.
    pub fn new(mac: [u8; 6]) -> HostResponder {
        HostResponder {
            mac,
            link_local: link_local(mac),
        }
    }

    /// weir's link address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// weir's IPv6 link-local address (fe80::/64 + modified EUI-64 of the MAC).
    pub fn link_local(&self) -> u128 {
        self.link_local
    }

    /// Does weir answer NS for `target`?
    #[inline]
    fn owns_v6(&self, target: u128, prefixes: &ServicePrefixes, also: Option<u128>) -> bool {
        target == self.link_local
            || Some(target) == also
            || (!weir_wire::is_ipv4_mapped(target) && prefixes.contains(target))
    }

    /// The reply to `frame` written into `out` (≥ [`MAX_REPLY_LEN`] = 94 bytes always
    /// suffices), its length; otherwise why there is nothing to answer. `prefixes`: the
    /// service prefixes of the policy in force.
    pub fn answer(
        &self,
        frame: &[u8],
        prefixes: &ServicePrefixes,
        out: &mut [u8],
    ) -> Result<usize, NoAnswer> {
        self.answer_also(frame, prefixes, None, out)
    }

    /// [`HostResponder::answer`], also answering NS for `also` (a cluster host's handover
    /// address, which is not a service address).
    pub fn answer_also(
        &self,
        frame: &[u8],
        prefixes: &ServicePrefixes,
        also: Option<u128>,
        out: &mut [u8],
    ) -> Result<usize, NoAnswer> {
        let parsed = weir_wire::parse_frame(frame)?;
        let link_len = ethernet::HEADER_LEN + usize::from(parsed.vlan_tags) * ethernet::TAG_LEN;
        // `parse_frame` walked these bytes, so the split cannot fail; `Malformed` if it did.
        let (link, rest) = frame
            .split_at_checked(link_len)
            .ok_or(Malformed::EthernetTruncated)?;
        match parsed.net {
            Net::Arp { op, target } => {
                if op != arp::OP_REQUEST || target.is_none() {
                    return Err(NoAnswer::NotARequest);
                }
                self.answer_arp(link, rest, prefixes, out)
            }
            Net::Ip(Ip {
                version: IpVersion::V6,
                transport:
                    Transport::Icmpv6(Icmpv6::Ndp {
                        ty: icmpv6::msg_type::NEIGHBOR_SOLICIT,
                        ..
                    }),
                ext_headers,
                ..
            }) => {
                if ext_headers != 0 {
                    return Err(NoAnswer::Unsupported);
                }
                self.answer_ns(link, rest, prefixes, also, out)
            }
            _ => Err(NoAnswer::NotARequest),
        }
    }

    /// A Neighbor Advertisement for the NS in `packet` (the IPv6 packet after `link`).
    fn answer_ns(
        &self,
        link: &[u8],
        packet: &[u8],
        prefixes: &ServicePrefixes,
        also: Option<u128>,
        out: &mut [u8],
    ) -> Result<usize, NoAnswer> {
        let ip = ipv6::Packet::new_checked(packet)?;
        if ip.next_header() != protocol::ICMPV6 {
            return Err(NoAnswer::Unsupported);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let ns = icmpv6::Packet::new_checked(ip.payload())?;
        if ip.hop_limit() != 255 {
            return Err(NoAnswer::HopLimit {
                hop_limit: ip.hop_limit(),
            });
        }
        if !ns.verify_checksum(src, dst) {
            return Err(NoAnswer::Checksum);
        }
        let target = ns.target_addr();
        let slla = source_lladdr(ns.ndp_options())?;
        if ns.msg_code() != 0
            || is_multicast_v6(target)
            || is_multicast_v6(src)
            || (src == 0 && slla.is_some())
        {
            return Err(NoAnswer::InvalidSolicitation);
        }
        if !self.owns_v6(target, prefixes, also) {
            return Err(NoAnswer::NotForUs);
        }
        if src == 0 {
            return Err(NoAnswer::Dad);
        }
        let to_mac = slla.unwrap_or(ethernet::Packet::new_unchecked(link).src_addr());
        if is_multicast_mac(to_mac) {
            return Err(NoAnswer::MulticastSender);
        }

        let need = link.len() + ipv6::HEADER_LEN + NA_LEN;
        let out = self.reply_link(link, to_mac, need, out)?;
        let (ip_out, icmp_out) = out[link.len()..].split_at_mut(ipv6::HEADER_LEN);
        let na = icmpv6::Repr::NeighborAdvert {
            flags: icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE,
            target,
            target_lladdr: Some(self.mac),
        };
        ipv6::Repr {
            hop_limit: 255,
            ..ipv6::Repr::new(target, src, protocol::ICMPV6, NA_LEN as u16)
        }
        .emit(ip_out);
        // `buffer_len()` is NA_LEN, the length `reply_link` checked.
        na.emit(icmp_out, target, src);
        Ok(need)
    }

    /// An ARP reply for the Ethernet / IPv4 request in `packet`.
    fn answer_arp(
        &self,
        link: &[u8],
        packet: &[u8],
        prefixes: &ServicePrefixes,
        out: &mut [u8],
    ) -> Result<usize, NoAnswer> {
        let req = arp::Repr::parse(&arp::Packet::new_checked(packet)?)?;
        if !prefixes.contains(ipv4_mapped(req.tpa)) {
            return Err(NoAnswer::NotForUs);
        }
        if req.spa == 0 {
            return Err(NoAnswer::Dad); // RFC 5227 probe
        }
        if req.spa == req.tpa {
            return Err(NoAnswer::NotARequest); // gratuitous ARP: an announcement
        }
        if is_multicast_mac(req.sha) {
            return Err(NoAnswer::MulticastSender);
        }
        let len = link.len() + arp::ETH_IPV4_LEN;
        let need = len.max(MIN_FRAME_LEN);
        let out = self.reply_link(link, req.sha, need, out)?;
        let reply = arp::Repr {
            op: arp::OP_REPLY,
            sha: self.mac,
            spa: req.tpa,
            tha: req.sha,
            tpa: req.spa,
        };
        reply.emit(&mut out[link.len()..]);
        out[len..].fill(0);
        Ok(need)
    }

    /// Check that `need` bytes fit, copy the request's link header (VLAN tags and inner
    /// EtherType included) with the addresses swapped; the first `need` bytes of `out`.
    fn reply_link<'o>(
        &self,
        link: &[u8],
        to: [u8; 6],
        need: usize,
        out: &'o mut [u8],
    ) -> Result<&'o mut [u8], NoAnswer> {
        let have = out.len();
        let out = out
            .get_mut(..need)
            .ok_or(NoAnswer::OutTooSmall { need, have })?;
        out[..link.len()].copy_from_slice(link);
        let mut eth = ethernet::Packet::new_unchecked(&mut *out);
        eth.set_dst_addr(to);
        eth.set_src_addr(self.mac);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weir_wire::ethernet::ethertype;

    const MAC: [u8; 6] = [0x02, 0x77, 0x65, 0x69, 0x72, 0x01];
    const PEER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const PEER: u128 = 0x2001_0db8_0000_0001_0000_0000_0000_0001;
    const SERVICE: u128 = 0x2001_0db8_0005_0000_0000_0000_0000_0042;
    const OTHER: u128 = 0x2001_0db8_0006_0000_0000_0000_0000_0042;
    const V4_SERVICE: u32 = 0xc000_0207; // 192.0.2.7
    const V4_PEER: u32 = 0xc633_6401; // 198.51.100.1

    fn responder() -> HostResponder {
        HostResponder::new(MAC)
    }

    fn prefixes() -> ServicePrefixes {
        ServicePrefixes::parse("2:2001:db8:5::/64 1:192.0.2.0/24").unwrap()
    }

    /// The solicited-node multicast address of `target` (RFC 4291 §2.7.1).
    fn solicited_node(target: u128) -> u128 {
        0xff02_0000_0000_0000_0000_0001_ff00_0000 | (target & 0xff_ffff)
    }

    /// Ethernet header with `tags` (outer first; QinQ TPID for the outer of two).
    fn link(dst: [u8; 6], src: [u8; 6], tags: &[u16], ethertype: u16) -> Vec<u8> {
        let first = match tags.len() {
            0 => ethertype,
            1 => ethertype::VLAN,
            _ => ethertype::QINQ,
        };
        let mut f = vec![0u8; 14 + 4 * tags.len()];
        ethernet::Repr {
            src,
            dst,
            ethertype: first,
        }
        .emit(&mut f);
        for (i, &vid) in tags.iter().enumerate() {
            let next = if i + 1 == tags.len() {
                ethertype
            } else {
                ethertype::VLAN
            };
            ethernet::VlanRepr::new(vid, next).emit(&mut f[14 + 4 * i..]);
        }
        f
    }

    struct Ns {
        src: u128,
        dst: u128,
        target: u128,
        slla: Option<[u8; 6]>,
        hop_limit: u8,
        tags: Vec<u16>,
    }

    impl Ns {
        fn to(target: u128) -> Ns {
            Ns {
                src: PEER,
                dst: solicited_node(target),
                target,
                slla: Some(PEER_MAC),
                hop_limit: 255,
                tags: vec![],
            }
        }

        fn frame(&self) -> Vec<u8> {
            let msg = icmpv6::Repr::NeighborSolicit {
                target: self.target,
                source_lladdr: self.slla,
            };
            let mut f = link(
                [0x33, 0x33, 0xff, 0, 0, 0x42],
                PEER_MAC,
                &self.tags,
                ethertype::IPV6,
            );
            let at = f.len();
            f.resize(at + 40 + msg.buffer_len(), 0);
            ipv6::Repr {
                hop_limit: self.hop_limit,
                ..ipv6::Repr::new(
                    self.src,
                    self.dst,
                    protocol::ICMPV6,
                    msg.buffer_len() as u16,
                )
            }
            .emit(&mut f[at..]);
            msg.emit(&mut f[at + 40..], self.src, self.dst);
            f
        }
    }

    fn arp_request(sha: [u8; 6], spa: u32, tpa: u32, tags: &[u16]) -> Vec<u8> {
        let mut f = link([0xff; 6], sha, tags, ethertype::ARP);
        let at = f.len();
        f.resize(at + 28, 0);
        arp::Repr::request(sha, spa, tpa).emit(&mut f[at..]);
        f
    }

    fn answer(frame: &[u8]) -> Result<Vec<u8>, NoAnswer> {
        let mut out = [0u8; 128];
        let n = responder().answer(frame, &prefixes(), &mut out)?;
        Ok(out[..n].to_vec())
    }

    /// Check an NA reply against what RFC 4861 asks and return it parsed.
    fn check_na(reply: &[u8], tags: usize, to_mac: [u8; 6], to: u128, target: u128) {
        let parsed = weir_wire::parse_frame(reply).expect("the reply parses");
        assert_eq!(usize::from(parsed.vlan_tags), tags);
        let eth = ethernet::Packet::new_checked(reply).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (to_mac, MAC));
        let ip = ipv6::Repr::parse(&ipv6::Packet::new_checked(&reply[14 + 4 * tags..]).unwrap())
            .unwrap();
        assert_eq!((ip.src, ip.dst, ip.hop_limit), (target, to, 255));
        assert_eq!((ip.next_header, ip.payload_len), (protocol::ICMPV6, 32));
        let msg = icmpv6::Packet::new_checked(&reply[14 + 4 * tags + 40..]).unwrap();
        assert!(msg.verify_checksum(ip.src, ip.dst), "checksum");
        assert_eq!(
            icmpv6::Repr::parse(&msg),
            Some(icmpv6::Repr::NeighborAdvert {
                flags: icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE,
                target,
                target_lladdr: Some(MAC),
            })
        );
    }

    #[test]
    fn link_local_is_modified_eui64() {
        // 02:77:65:69:72:01 → fe80::77:65ff:fe69:7201 (universal/local bit flipped).
        let want: std::net::Ipv6Addr = "fe80::77:65ff:fe69:7201".parse().unwrap();
        assert_eq!(responder().link_local(), u128::from(want));
        assert_eq!(responder().mac(), MAC);
    }

    #[test]
    fn neighbor_solicitation_for_a_service_address() {
        let reply = answer(&Ns::to(SERVICE).frame()).unwrap();
        assert_eq!(reply.len(), 14 + 40 + 32);
        check_na(&reply, 0, PEER_MAC, PEER, SERVICE);
    }

    #[test]
    fn neighbor_solicitation_for_the_link_local_address() {
        let ll = responder().link_local();
        let reply = answer(&Ns::to(ll).frame()).unwrap();
        check_na(&reply, 0, PEER_MAC, PEER, ll);
    }

    #[test]
    fn unicast_solicitation_without_option_goes_to_the_ethernet_source() {
        // Neighbour unreachability detection: unicast to the target, no source option.
        let ns = Ns {
            dst: SERVICE,
            slla: None,
            ..Ns::to(SERVICE)
        };
        check_na(&answer(&ns.frame()).unwrap(), 0, PEER_MAC, PEER, SERVICE);
    }

    #[test]
    fn source_option_beats_the_ethernet_source() {
        let other = [0x02, 0, 0, 0, 0, 0x99];
        let ns = Ns {
            slla: Some(other),
            ..Ns::to(SERVICE)
        };
        check_na(&answer(&ns.frame()).unwrap(), 0, other, PEER, SERVICE);
    }

    #[test]
    fn vlan_tags_are_kept() {
        for tags in [vec![100], vec![200, 300]] {
            let ns = Ns {
                tags: tags.clone(),
                ..Ns::to(SERVICE)
            };
            let frame = ns.frame();
            let reply = answer(&frame).unwrap();
            check_na(&reply, tags.len(), PEER_MAC, PEER, SERVICE);
            assert_eq!(
                reply[12..14 + 4 * tags.len()],
                frame[12..14 + 4 * tags.len()]
            );

            let arp = arp_request(PEER_MAC, V4_PEER, V4_SERVICE, &tags);
            let reply = answer(&arp).unwrap();
            assert_eq!(reply[12..14 + 4 * tags.len()], arp[12..14 + 4 * tags.len()]);
            assert_eq!(
                weir_wire::parse_frame(&reply).unwrap().net,
                Net::Arp {
                    op: arp::OP_REPLY,
                    target: Some(ipv4_mapped(V4_PEER))
                }
            );
        }
    }

    #[test]
    fn solicitations_not_answered() {
        let cases = [
            (Ns::to(OTHER), NoAnswer::NotForUs),
            (
                Ns {
                    src: 0,
                    slla: None,
                    ..Ns::to(SERVICE)
                },
                NoAnswer::Dad,
            ),
            (
                Ns {
                    src: 0,
                    slla: None,
                    ..Ns::to(OTHER)
                },
                NoAnswer::NotForUs,
            ),
            (
                Ns {
                    src: 0,
                    ..Ns::to(SERVICE)
                },
                NoAnswer::InvalidSolicitation,
            ),
            (
                Ns {
                    hop_limit: 254,
                    ..Ns::to(SERVICE)
                },
                NoAnswer::HopLimit { hop_limit: 254 },
            ),
            (
                Ns::to(solicited_node(SERVICE)),
                NoAnswer::InvalidSolicitation,
            ),
            (
                Ns {
                    src: solicited_node(PEER),
                    ..Ns::to(SERVICE)
                },
                NoAnswer::InvalidSolicitation,
            ),
            (
                Ns {
                    slla: Some([0x33, 0x33, 0, 0, 0, 1]),
                    ..Ns::to(SERVICE)
                },
                NoAnswer::MulticastSender,
            ),
            // An IPv4-mapped target is not ours even when the prefixes hold its IPv4 address.
            (Ns::to(ipv4_mapped(V4_SERVICE)), NoAnswer::NotForUs),
        ];
        for (ns, want) in cases {
            assert_eq!(answer(&ns.frame()), Err(want), "target {:x}", ns.target);
        }
    }

    #[test]
    fn bad_checksum_code_and_options() {
        let good = Ns::to(SERVICE).frame();
        let mut f = good.clone();
        f[14 + 40 + 2] ^= 1;
        assert_eq!(answer(&f), Err(NoAnswer::Checksum));

        // Code 1 with a fixed checksum.
        let mut f = good.clone();
        f[14 + 40 + 1] = 1;
        icmpv6::Packet::new_unchecked(&mut f[54..]).fill_checksum(PEER, solicited_node(SERVICE));
        assert_eq!(answer(&f), Err(NoAnswer::InvalidSolicitation));

        // An option of length 0.
        let mut f = good.clone();
        f[14 + 40 + 24 + 1] = 0;
        icmpv6::Packet::new_unchecked(&mut f[54..]).fill_checksum(PEER, solicited_node(SERVICE));
        assert_eq!(answer(&f), Err(NoAnswer::InvalidSolicitation));

        // An option running past the message.
        let mut f = good;
        f[14 + 40 + 24 + 1] = 2;
        icmpv6::Packet::new_unchecked(&mut f[54..]).fill_checksum(PEER, solicited_node(SERVICE));
        assert_eq!(answer(&f), Err(NoAnswer::InvalidSolicitation));
    }

    #[test]
    fn other_frames_are_not_requests() {
        let na = {
            let mut f = Ns::to(SERVICE).frame();
            f[54] = icmpv6::msg_type::NEIGHBOR_ADVERT;
            icmpv6::Packet::new_unchecked(&mut f[54..])
                .fill_checksum(PEER, solicited_node(SERVICE));
            f
        };
        assert_eq!(answer(&na), Err(NoAnswer::NotARequest));
        let mut arp_reply = arp_request(PEER_MAC, V4_PEER, V4_SERVICE, &[]);
        arp_reply[21] = 2;
        assert_eq!(answer(&arp_reply), Err(NoAnswer::NotARequest));
        let mut other = link([0xff; 6], PEER_MAC, &[], 0x88cc);
        other.extend_from_slice(&[0; 46]);
        assert_eq!(answer(&other), Err(NoAnswer::NotARequest));
        assert_eq!(
            answer(&[0u8; 10]),
            Err(NoAnswer::Malformed(Malformed::EthernetTruncated))
        );
        let ns = Ns::to(SERVICE).frame();
        assert_eq!(
            answer(&ns[..ns.len() - 1]),
            Err(NoAnswer::Malformed(Malformed::Ipv6PayloadLength))
        );
    }

    #[test]
    fn solicitation_behind_an_extension_header_is_unsupported() {
        let ns = Ns::to(SERVICE).frame();
        let mut f = ns[..54].to_vec();
        f[14 + 6] = protocol::HOP_BY_HOP;
        f[14 + 5] += 8; // payload length
        f.extend_from_slice(&[protocol::ICMPV6, 0, 1, 4, 0, 0, 0, 0]); // PadN
        f.extend_from_slice(&ns[54..]);
        assert_eq!(answer(&f), Err(NoAnswer::Unsupported));
    }

    #[test]
    fn arp_request_for_a_service_address() {
        let req = arp_request(PEER_MAC, V4_PEER, V4_SERVICE, &[]);
        let reply = answer(&req).unwrap();
        assert_eq!(reply.len(), MIN_FRAME_LEN);
        let eth = ethernet::Packet::new_checked(&reply[..]).unwrap();
        assert_eq!(
            (eth.dst_addr(), eth.src_addr(), eth.ethertype()),
            (PEER_MAC, MAC, ethertype::ARP)
        );
        let arp = arp::Repr::parse(&arp::Packet::new_checked(&reply[14..]).unwrap()).unwrap();
        assert_eq!(
            arp,
            arp::Repr {
                op: arp::OP_REPLY,
                sha: MAC,
                spa: V4_SERVICE,
                tha: PEER_MAC,
                tpa: V4_PEER,
            }
        );
        assert!(reply[42..].iter().all(|&b| b == 0), "zero padding");
    }

    #[test]
    fn arp_not_answered() {
        let cases = [
            (
                arp_request(PEER_MAC, V4_PEER, 0xc000_0307, &[]),
                NoAnswer::NotForUs,
            ),
            (arp_request(PEER_MAC, 0, V4_SERVICE, &[]), NoAnswer::Dad),
            (
                arp_request(PEER_MAC, V4_SERVICE, V4_SERVICE, &[]),
                NoAnswer::NotARequest,
            ),
            (
                arp_request([0xff; 6], V4_PEER, V4_SERVICE, &[]),
                NoAnswer::MulticastSender,
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(answer(&frame), Err(want));
        }
        // IPv6-only prefixes answer no ARP.
        let v6_only = ServicePrefixes::parse("2:2001:db8:5::/64").unwrap();
        let mut out = [0u8; 128];
        assert_eq!(
            responder().answer(
                &arp_request(PEER_MAC, V4_PEER, V4_SERVICE, &[]),
                &v6_only,
                &mut out
            ),
            Err(NoAnswer::NotForUs)
        );
        // The prefixes passed in decide: a new policy's prefix is answered at once, the
        // old one no longer.
        let moved = ServicePrefixes::parse("2:2001:db8:6::/64").unwrap();
        let ns_old = Ns::to(SERVICE).frame();
        let ns_new = Ns::to(OTHER).frame();
        assert_eq!(
            responder().answer(&ns_old, &moved, &mut out),
            Err(NoAnswer::NotForUs)
        );
        assert!(responder().answer(&ns_new, &moved, &mut out).is_ok());
    }

    #[test]
    fn short_output_buffer_is_an_answer_not_a_panic() {
        let r = responder();
        let ns = Ns {
            tags: vec![1, 2],
            ..Ns::to(SERVICE)
        }
        .frame();
        let mut out = [0u8; MAX_REPLY_LEN];
        assert_eq!(r.answer(&ns, &prefixes(), &mut out), Ok(MAX_REPLY_LEN));
        assert_eq!(
            r.answer(&ns, &prefixes(), &mut out[..MAX_REPLY_LEN - 1]),
            Err(NoAnswer::OutTooSmall {
                need: MAX_REPLY_LEN,
                have: MAX_REPLY_LEN - 1
            })
        );
    }

    /// Valid requests of every kind the responder answers.
    fn requests() -> Vec<Vec<u8>> {
        vec![
            Ns::to(SERVICE).frame(),
            Ns {
                tags: vec![7, 8],
                slla: None,
                ..Ns::to(responder().link_local())
            }
            .frame(),
            arp_request(PEER_MAC, V4_PEER, V4_SERVICE, &[]),
            arp_request(PEER_MAC, V4_PEER, V4_SERVICE, &[9]),
        ]
    }

    /// What every answer must satisfy: a reply that parses, from weir's MAC, within `out`.
    fn check_any(frame: &[u8], out_len: usize) {
        let mut out = vec![0u8; out_len];
        if let Ok(n) = responder().answer(frame, &prefixes(), &mut out) {
            assert!(n <= out_len);
            let reply = &out[..n];
            let parsed = weir_wire::parse_frame(reply).expect("a reply parses");
            assert_eq!(reply[6..12], MAC);
            assert!(matches!(
                parsed.net,
                Net::Arp {
                    op: arp::OP_REPLY,
                    ..
                } | Net::Ip(Ip {
                    transport: Transport::Icmpv6(Icmpv6::Ndp {
                        ty: icmpv6::msg_type::NEIGHBOR_ADVERT,
                        ..
                    }),
                    ..
                })
            ));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..200),
                                       out_len in 0usize..140) {
            check_any(&frame, out_len);
        }

        #[test]
        fn mutated_requests_never_panic(which in 0usize..4,
                                        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
                                        cut in any::<usize>(),
                                        out_len in 0usize..140) {
            let mut frame = requests()[which].clone();
            for (at, x) in flips {
                let i = at % frame.len();
                frame[i] ^= x;
            }
            let keep = frame.len() - cut % 8;
            frame.truncate(keep);
            check_any(&frame, out_len);
        }

        #[test]
        fn every_service_address_is_answered(low in any::<u64>(), tags in proptest::collection::vec(0u16..4096, 0..3)) {
            let target = (SERVICE & !u128::from(u64::MAX)) | u128::from(low);
            let ns = Ns { tags: tags.clone(), ..Ns::to(target) };
            let reply = answer(&ns.frame()).unwrap();
            check_na(&reply, tags.len(), PEER_MAC, PEER, target);
        }
    }

    /// Wireshark's reading of request / reply pairs: no expert warnings or errors, no
    /// malformed flag, the NA decoded with S and O set, target and link-layer option right,
    /// checksums good, and the ARP reply addressed back to the requester.
    #[test]
    fn tshark_decodes_the_replies() {
        let ok = std::process::Command::new("tshark")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "tshark (Wireshark) must be installed in CI"
            );
            eprintln!("note: tshark not found; skipping the Wireshark check");
            return;
        }
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        let dir = std::env::temp_dir().join(format!("weir-l2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("host-path.pcap");
        let mut frames = Vec::new();
        for req in requests() {
            let reply = answer(&req).unwrap();
            frames.push(req);
            frames.push(reply);
        }
        {
            let file = std::fs::File::create(&path).unwrap();
            let mut w = PcapWriter::new(file).unwrap();
            for (i, f) in frames.iter().enumerate() {
                let ts = std::time::Duration::from_millis(i as u64);
                w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                    .unwrap();
            }
        }
        let fields = [
            "frame.number",
            "_ws.expert.severity",
            "_ws.malformed",
            "_ws.expert.message",
            "icmpv6.type",
            "icmpv6.checksum.status",
            "icmpv6.nd.na.flag.s",
            "icmpv6.nd.na.flag.o",
            "icmpv6.nd.na.flag.r",
            "icmpv6.nd.na.target_address",
            "icmpv6.opt.linkaddr",
            "ipv6.hlim",
            "arp.opcode",
            "arp.src.hw_mac",
            "arp.src.proto_ipv4",
            "arp.dst.hw_mac",
            "arp.dst.proto_ipv4",
        ];
        let mut cmd = std::process::Command::new("tshark");
        cmd.arg("-r")
            .arg(&path)
            .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("tshark runs");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        eprintln!("{text}");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .collect();
        assert_eq!(rows.len(), frames.len(), "{text}");
        let col = |row: &[&str], name: &str| {
            let i = fields.iter().position(|f| *f == name).unwrap();
            row.get(i).copied().unwrap_or("").to_string()
        };
        for row in &rows {
            for sev in col(row, "_ws.expert.severity")
                .split(',')
                .filter(|s| !s.is_empty())
            {
                let sev = u64::from_str_radix(sev.trim_start_matches("0x"), 16)
                    .or_else(|_| sev.parse())
                    .unwrap_or(u64::MAX);
                assert!(
                    sev < 0x0060_0000,
                    "frame {}: expert {}",
                    col(row, "frame.number"),
                    col(row, "_ws.expert.message")
                );
            }
            assert_eq!(col(row, "_ws.malformed"), "", "{row:?}");
        }
        let mac = "02:77:65:69:72:01";
        let service: std::net::Ipv6Addr = SERVICE.into();
        let ll: std::net::Ipv6Addr = responder().link_local().into();
        for (i, target) in [(1, service), (3, ll)] {
            let na = &rows[i];
            assert_eq!(col(na, "icmpv6.type"), "136", "{na:?}");
            assert_eq!(col(na, "icmpv6.checksum.status"), "1", "{na:?}");
            assert_eq!(col(na, "icmpv6.nd.na.flag.s"), "1", "{na:?}");
            assert_eq!(col(na, "icmpv6.nd.na.flag.o"), "1", "{na:?}");
            assert_eq!(col(na, "icmpv6.nd.na.flag.r"), "0", "{na:?}");
            assert_eq!(col(na, "icmpv6.nd.na.target_address"), target.to_string());
            assert_eq!(col(na, "icmpv6.opt.linkaddr"), mac, "{na:?}");
            assert_eq!(col(na, "ipv6.hlim"), "255", "{na:?}");
            assert_eq!(col(&rows[i - 1], "icmpv6.checksum.status"), "1");
        }
        for i in [5, 7] {
            let reply = &rows[i];
            assert_eq!(col(reply, "arp.opcode"), "2", "{reply:?}");
            assert_eq!(col(reply, "arp.src.hw_mac"), mac);
            assert_eq!(col(reply, "arp.src.proto_ipv4"), "192.0.2.7");
            assert_eq!(col(reply, "arp.dst.hw_mac"), "52:54:00:12:34:56");
            assert_eq!(col(reply, "arp.dst.proto_ipv4"), "198.51.100.1");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
