//! Handover between weir hosts: IPv6-in-IPv6 (RFC 2473) encapsulation towards a slice
//! run's predecessor, and the checks a predecessor makes before it accepts such a frame.
//!
//! What: when slice run R moves from host A to host B, B terminates new connections of R
//! itself and sends every other packet of R that its flow table does not know to A, inside
//! an outer IPv6 header from B's handover address to A's ([`encapsulate`]). A accepts an
//! encapsulated frame only when it is addressed to A's handover address and comes from a
//! cluster member ([`decapsulate`]); the inner packet is then classified as if it had
//! arrived directly ([`inner_frame`] gives it an Ethernet header in place, so the
//! classifier reads it unchanged). Every other encapsulated frame is refused with a
//! [`Refusal`] that names why, so it can be counted under its own reason.
//!
//! The functions are pure: no allocation, no panic, no state; they read and write only the
//! slices they are given. The dataplane's rx core calls them on the packet path.
//!
//! Decisions:
//! - The inner packet travels bit for bit: its hop limit is not decremented. B does not
//!   route the packet onward; it hands it to the other half of the same service endpoint,
//!   and the terminator on A must see exactly what the client sent.
//! - The outer header copies the inner traffic class and flow label (RFC 6438's advice
//!   for tunnels: routers that hash on the flow label keep one flow on one path) and
//!   carries no extension headers (no Tunnel Encapsulation Limit option: weir never nests
//!   tunnels, and [`decapsulate`] refuses a nested one).
//! - Padding after the inner packet's payload length (short Ethernet frames are padded to
//!   60 bytes) is not carried.
//! - An outer packet larger than the path MTU is refused ([`EncapError::TooBig`]), a
//!   counted drop: weir does not fragment, and sends no Packet Too Big for a client's
//!   packet it relays (the client did nothing wrong; the operator sizes the links, see
//!   README "Running a cluster": MTU between hosts ≥ client MTU + 40, or a terminator MSS
//!   that leaves room).
//! - An encapsulated frame with outer extension headers, an IPv4 inner packet (next
//!   header 4), or a nested tunnel is refused: weir's own encapsulation makes none of them,
//!   and each would be a way past the member check.
//!
//! Rejected: GRE or GUE (a second header to parse and another protocol for operators'
//! filters, for no gain between hosts that all speak IPv6), and a kernel `ip6tnl` device
//! (the frames would leave the kernel-bypass path, and the member check would be the
//! kernel's, invisible to weir's counters).

/// Length of an Ethernet header without VLAN tags.
pub const ETHERNET_LEN: usize = 14;
/// Length of the fixed IPv6 header.
pub const IPV6_LEN: usize = 40;
/// Bytes an encapsulation adds to an IPv6 packet (the outer header).
pub const ENCAP_OVERHEAD: usize = IPV6_LEN;
/// IPv6 next header for an encapsulated IPv6 packet (RFC 2473).
pub const NEXT_HEADER_IPV6: u8 = 41;
/// IPv6 next header for an encapsulated IPv4 packet.
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Most cluster members a [`Members`] list holds.
pub const MAX_MEMBERS: usize = 64;

/// Counter (a `DpStats` event) of packets sent to a predecessor, encapsulated.
pub const COUNTER_FORWARDED: &str = "handover-forwarded";
/// Counter of encapsulated frames accepted and classified as their inner packet.
pub const COUNTER_DECAPSULATED: &str = "handover-decapsulated";
/// Counter of packets not forwarded because the tunnel packet would exceed the MTU.
pub const COUNTER_TOO_BIG: &str = "handover-too-big";
/// Refused encapsulated frames are counted under [`Refusal::name`] (`tunnel-not-member`,
/// …); their sum is reported as this counter too.
pub const COUNTER_REFUSED: &str = "handover-refused";

const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Most VLAN tags read (as the classifier: a third one is malformed there).
const MAX_VLAN_TAGS: usize = 2;
/// Most outer extension headers walked looking for an encapsulated packet.
const MAX_EXTENSION_HEADERS: usize = 8;

/// The cluster members' handover addresses: a sorted, fixed-size list (no allocation, a
/// binary search per lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Members {
    addrs: [u128; MAX_MEMBERS],
    len: usize,
}

/// Why a member list cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    /// More than [`MAX_MEMBERS`] addresses.
    #[error("at most {MAX_MEMBERS} members, got {0}")]
    TooMany(usize),
    /// An address listed twice.
    #[error("member {0:#x} is listed twice")]
    Duplicate(u128),
}

impl Default for Members {
    fn default() -> Self {
        Members {
            addrs: [0; MAX_MEMBERS],
            len: 0,
        }
    }
}

impl Members {
    /// A list of `addrs` (any order); duplicates and more than [`MAX_MEMBERS`] are errors.
    pub fn new(addrs: &[u128]) -> Result<Members, MembersError> {
        if addrs.len() > MAX_MEMBERS {
            return Err(MembersError::TooMany(addrs.len()));
        }
        let mut m = Members::default();
        for (slot, &a) in m.addrs.iter_mut().zip(addrs) {
            *slot = a;
        }
        m.len = addrs.len();
        let list = &mut m.addrs[..m.len];
        list.sort_unstable();
        if let Some(w) = list.windows(2).find(|w| w[0] == w[1]) {
            return Err(MembersError::Duplicate(w[0]));
        }
        Ok(m)
    }

    /// Whether `addr` is a member's handover address.
    #[inline]
    pub fn contains(&self, addr: u128) -> bool {
        self.as_slice().binary_search(&addr).is_ok()
    }

    /// The addresses, sorted.
    pub fn as_slice(&self) -> &[u128] {
        self.addrs.get(..self.len).unwrap_or(&[])
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How to build the outer headers of an encapsulated frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    /// Ethernet source (this port's MAC).
    pub src_mac: [u8; 6],
    /// Ethernet destination (the next hop's MAC).
    pub dst_mac: [u8; 6],
    /// Outer source: this host's handover address.
    pub outer_src: u128,
    /// Outer destination: the predecessor's handover address.
    pub outer_dst: u128,
    /// Outer hop limit.
    pub hop_limit: u8,
    /// Largest IPv6 packet the path carries (the link MTU): outer header + inner packet.
    pub mtu: u16,
}

/// Why a packet was not encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The inner bytes are not an IPv6 packet (version, length or payload length).
    #[error("the inner packet is not a whole IPv6 packet")]
    NotIpv6,
    /// With the outer header the packet exceeds the MTU: a counted drop.
    #[error("{len}-byte tunnel packet exceeds the {mtu}-byte MTU")]
    TooBig {
        /// Outer IPv6 packet length.
        len: usize,
        /// The MTU.
        mtu: u16,
    },
    /// The caller's buffer cannot hold the frame.
    #[error("the frame needs {need} bytes, the buffer has {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// The length of the IPv6 packet at the start of `ip` (fixed header + payload length),
/// without trailing padding; `None` when it is not a whole IPv6 packet.
fn ipv6_packet_len(ip: &[u8]) -> Option<usize> {
    let first = *ip.first()?;
    if first >> 4 != 6 {
        return None;
    }
    let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    // A payload length of 0 with a non-empty rest would be a jumbogram (RFC 2675): not
    // carried (an empty payload is a valid, if useless, packet).
    let len = IPV6_LEN + plen;
    (len <= ip.len()).then_some(len)
}

/// Encapsulate the IPv6 packet `inner` (a received frame minus its Ethernet header) for
/// the predecessor: writes Ethernet + outer IPv6 + `inner` into `out` and returns the
/// frame's length. `out` is left unchanged on error.
pub fn encapsulate(e: &Encap, inner: &[u8], out: &mut [u8]) -> Result<usize, EncapError> {
    let inner_len = ipv6_packet_len(inner).ok_or(EncapError::NotIpv6)?;
    let inner = inner.get(..inner_len).ok_or(EncapError::NotIpv6)?;
    let outer_len = IPV6_LEN + inner_len;
    let payload_len = u16::try_from(inner_len).map_err(|_| EncapError::TooBig {
        len: outer_len,
        mtu: e.mtu,
    })?;
    if outer_len > usize::from(e.mtu) {
        return Err(EncapError::TooBig {
            len: outer_len,
            mtu: e.mtu,
        });
    }
    let need = ETHERNET_LEN + outer_len;
    let have = out.len();
    let frame = out
        .get_mut(..need)
        .ok_or(EncapError::BufferTooSmall { need, have })?;
    let (eth, rest) = frame.split_at_mut(ETHERNET_LEN);
    let (outer, payload) = rest.split_at_mut(IPV6_LEN);
    eth[0..6].copy_from_slice(&e.dst_mac);
    eth[6..12].copy_from_slice(&e.src_mac);
    eth[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    // Version 6; traffic class and flow label copied from the inner header (RFC 6438).
    outer[0] = 0x60 | (inner[0] & 0x0f);
    outer[1..4].copy_from_slice(&inner[1..4]);
    outer[4..6].copy_from_slice(&payload_len.to_be_bytes());
    outer[6] = NEXT_HEADER_IPV6;
    outer[7] = e.hop_limit;
    outer[8..24].copy_from_slice(&e.outer_src.to_be_bytes());
    outer[24..40].copy_from_slice(&e.outer_dst.to_be_bytes());
    payload.copy_from_slice(inner);
    Ok(need)
}

/// Why an encapsulated frame was refused; each is counted under its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Addressed to something other than this host's handover address.
    #[error("tunnel-not-ours")]
    NotOurs,
    /// The outer source is not a cluster member.
    #[error("tunnel-not-member")]
    NotMember,
    /// Outer headers truncated or inconsistent.
    #[error("tunnel-malformed")]
    Malformed,
    /// Outer extension headers, an IPv4 inner packet, or a nested tunnel: weir sends none.
    #[error("tunnel-unsupported")]
    Unsupported,
}

impl Refusal {
    /// Every refusal, in counter order.
    pub const ALL: [Refusal; 4] = [
        Refusal::NotOurs,
        Refusal::NotMember,
        Refusal::Malformed,
        Refusal::Unsupported,
    ];

    /// The counter name (`tunnel-not-member`, …).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotOurs => "tunnel-not-ours",
            Refusal::NotMember => "tunnel-not-member",
            Refusal::Malformed => "tunnel-malformed",
            Refusal::Unsupported => "tunnel-unsupported",
        }
    }
}

/// Where an accepted inner packet lies in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    /// Offset of the inner IPv6 header.
    pub offset: usize,
    /// Length of the inner IPv6 packet (header + payload, no padding).
    pub len: usize,
}

/// What a received frame is, as far as handover goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// Not an encapsulated frame: classify it as usual.
    NotTunnel,
    /// An encapsulated frame from a member to this host: classify the inner packet.
    Inner(Inner),
    /// An encapsulated frame that is refused.
    Refused(Refusal),
}

/// Is `frame` an encapsulated frame, and may this host (handover address `ours`) accept
/// it? Accepted only when the outer destination is `ours`, the outer source is in
/// `members`, the outer header is followed directly by a whole IPv6 packet, and that
/// packet is not itself a tunnel.
pub fn decapsulate(frame: &[u8], ours: u128, members: &Members) -> Tunnel {
    let Some(ip_at) = ipv6_offset(frame) else {
        return Tunnel::NotTunnel;
    };
    let Some(ip) = frame.get(ip_at..) else {
        return Tunnel::NotTunnel;
    };
    if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
        // Not readable as IPv6: the classifier calls it malformed.
        return Tunnel::NotTunnel;
    }
    match tunnel_header(ip) {
        Chain::NotTunnel => return Tunnel::NotTunnel,
        Chain::Direct => {}
        Chain::Unsupported => return Tunnel::Refused(Refusal::Unsupported),
        Chain::Malformed => return Tunnel::Refused(Refusal::Malformed),
    }
    let src = addr(&ip[8..24]);
    let dst = addr(&ip[24..40]);
    if dst != ours {
        return Tunnel::Refused(Refusal::NotOurs);
    }
    if !members.contains(src) {
        return Tunnel::Refused(Refusal::NotMember);
    }
    if ip[6] == NEXT_HEADER_IPV4 {
        return Tunnel::Refused(Refusal::Unsupported);
    }
    let Some(outer_len) = ipv6_packet_len(ip) else {
        return Tunnel::Refused(Refusal::Malformed);
    };
    let Some(inner) = ip.get(IPV6_LEN..outer_len) else {
        return Tunnel::Refused(Refusal::Malformed);
    };
    let Some(inner_len) = ipv6_packet_len(inner) else {
        return Tunnel::Refused(Refusal::Malformed);
    };
    if inner_len != inner.len() {
        // Bytes after the inner packet inside the outer payload: not what weir sends.
        return Tunnel::Refused(Refusal::Malformed);
    }
    if inner[6] == NEXT_HEADER_IPV6 || inner[6] == NEXT_HEADER_IPV4 {
        return Tunnel::Refused(Refusal::Unsupported);
    }
    Tunnel::Inner(Inner {
        offset: ip_at + IPV6_LEN,
        len: inner_len,
    })
}

/// Make the accepted inner packet a frame the classifier reads as if it had arrived
/// directly: writes an Ethernet header (the outer frame's MACs, EtherType IPv6) into the
/// 14 bytes before the inner packet — the end of the outer IPv6 header, no longer needed —
/// and returns the frame. `None` if `inner` does not lie in `frame` with room before it.
pub fn inner_frame(frame: &mut [u8], inner: Inner) -> Option<&[u8]> {
    let start = inner.offset.checked_sub(ETHERNET_LEN)?;
    let end = inner.offset.checked_add(inner.len)?;
    if start < ETHERNET_LEN || end > frame.len() {
        return None;
    }
    let mut macs = [0u8; 12];
    macs.copy_from_slice(frame.get(..12)?);
    let eth = frame.get_mut(start..inner.offset)?;
    eth[..12].copy_from_slice(&macs);
    eth[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    frame.get(start..end)
}

/// The offset of the IPv6 header after the Ethernet header and up to two VLAN tags;
/// `None` when the frame does not carry IPv6.
fn ipv6_offset(frame: &[u8]) -> Option<usize> {
    let mut at = 12;
    for _ in 0..=MAX_VLAN_TAGS {
        let ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match ethertype {
            ETHERTYPE_IPV6 => return Some(at + 2),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ => at += 4,
            _ => return None,
        }
    }
    None
}

/// What the outer header chain says.
enum Chain {
    /// No encapsulated packet in it.
    NotTunnel,
    /// The fixed header's next header is 41 or 4.
    Direct,
    /// An encapsulated packet behind extension headers.
    Unsupported,
    /// The chain is cut short.
    Malformed,
}

fn tunnel_header(ip: &[u8]) -> Chain {
    let mut next = ip[6];
    if next == NEXT_HEADER_IPV6 || next == NEXT_HEADER_IPV4 {
        return Chain::Direct;
    }
    let mut at = IPV6_LEN;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            // Hop-by-Hop, Routing, Destination Options: (hdr ext len + 1) × 8 bytes.
            0 | 43 | 60 => match ip.get(at + 1) {
                Some(&l) => (usize::from(l) + 1) * 8,
                None => return Chain::Malformed,
            },
            // Fragment: 8 bytes.
            44 => 8,
            NEXT_HEADER_IPV6 | NEXT_HEADER_IPV4 => return Chain::Unsupported,
            _ => return Chain::NotTunnel,
        };
        match ip.get(at) {
            Some(&n) => next = n,
            None => return Chain::Malformed,
        }
        at += len;
    }
    if next == NEXT_HEADER_IPV6 || next == NEXT_HEADER_IPV4 {
        Chain::Unsupported
    } else {
        Chain::NotTunnel
    }
}

fn addr(b: &[u8]) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    u128::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_wire::{parse_frame, Net, Transport};

    const A: u128 = 0x2001_0db8_0077_0000_0000_0000_0000_0001;
    const B: u128 = 0x2001_0db8_0077_0000_0000_0000_0000_0002;
    const STRANGER: u128 = 0x2001_0db8_0bad_0000_0000_0000_0000_0001;
    const CLIENT: u128 = 0x2001_0db8_00c0_0001_0000_0000_0000_0100;
    const SVC: u128 = 0x2001_0db8_0005_0000_0000_0000_0000_0042;

    /// The inner packet: IPv6 + TCP ACK, client → service, traffic class 0x12, flow label
    /// 0x34567, hop limit 63.
    static INNER: [u8; 60] = [
        0x61, 0x23, 0x45, 0x67, 0x00, 0x14, 0x06, 0x3f, // ver/tc/fl, plen 20, TCP, hl 63
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0xc0, 0x00, 0x01, // src 2001:db8:c0:1::100
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x05, 0x00, 0x00, // dst 2001:db8:5::42
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, //
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x02, // sport 40000, dport 80, seq 2
        0x00, 0x00, 0x01, 0xf5, 0x50, 0x10, 0xff, 0xff, // ack 501, doff 5, ACK, win
        0x00, 0x00, 0x00, 0x00, // csum, urg
    ];

    /// [`INNER`] encapsulated by B for A, MACs 02:..:0b → 02:..:0a, hop limit 64.
    static GOLDEN: [u8; 114] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x86, 0xdd, 0x61,
        0x23, 0x45, 0x67, 0x00, 0x3c, 0x29, 0x40, // ver/tc/fl copied, plen 60, 41, 64
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x77, 0x00, 0x00, // src 2001:db8:77::2 (B)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x77, 0x00, 0x00, // dst 2001:db8:77::1 (A)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x61, 0x23, 0x45, 0x67, 0x00, 0x14, 0x06, 0x3f, // the inner packet, unchanged
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0xc0, 0x00, 0x01, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x05, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, //
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x02, //
        0x00, 0x00, 0x01, 0xf5, 0x50, 0x10, 0xff, 0xff, //
        0x00, 0x00, 0x00, 0x00,
    ];

    fn encap(from: u128, to: u128) -> Encap {
        Encap {
            src_mac: [2, 0, 0, 0, 0, 0x0b],
            dst_mac: [2, 0, 0, 0, 0, 0x0a],
            outer_src: from,
            outer_dst: to,
            hop_limit: 64,
            mtu: 1500,
        }
    }

    fn members() -> Members {
        Members::new(&[B, A]).unwrap()
    }

    #[test]
    fn encapsulate_emits_the_golden_bytes() {
        let mut out = [0xeeu8; 200];
        let n = encapsulate(&encap(B, A), &INNER, &mut out).unwrap();
        assert_eq!(&out[..n], &GOLDEN[..]);
        assert!(
            out[n..].iter().all(|&b| b == 0xee),
            "nothing written past the frame"
        );
        // The inner packet's Ethernet padding is not carried.
        let mut padded = INNER.to_vec();
        padded.extend_from_slice(&[0; 6]);
        let n = encapsulate(&encap(B, A), &padded, &mut out).unwrap();
        assert_eq!(&out[..n], &GOLDEN[..]);
    }

    #[test]
    fn encapsulate_refuses_what_does_not_fit() {
        let mut out = [0u8; 200];
        let mut small = encap(B, A);
        small.mtu = 99;
        assert_eq!(
            encapsulate(&small, &INNER, &mut out),
            Err(EncapError::TooBig { len: 100, mtu: 99 })
        );
        small.mtu = 100;
        assert!(encapsulate(&small, &INNER, &mut out).is_ok());
        let mut short = [0u8; 113];
        assert_eq!(
            encapsulate(&encap(B, A), &INNER, &mut short),
            Err(EncapError::BufferTooSmall {
                need: 114,
                have: 113
            })
        );
        assert!(short.iter().all(|&b| b == 0), "unchanged on error");
        for bad in [&INNER[..39], &INNER[..59], &[0x40; 60][..], &[][..]] {
            assert_eq!(
                encapsulate(&encap(B, A), bad, &mut out),
                Err(EncapError::NotIpv6)
            );
        }
        // A 65,535-byte payload cannot get another 40 bytes of header.
        let mut huge = vec![0u8; 40 + 65_535];
        huge[0] = 0x60;
        huge[4..6].copy_from_slice(&65_535u16.to_be_bytes());
        let mut big = encap(B, A);
        big.mtu = u16::MAX;
        let mut out = vec![0u8; 70_000];
        assert!(matches!(
            encapsulate(&big, &huge, &mut out),
            Err(EncapError::TooBig { .. })
        ));
    }

    #[test]
    fn a_members_frame_to_us_is_decapsulated_and_classifiable() {
        let mut frame = GOLDEN;
        let Tunnel::Inner(inner) = decapsulate(&frame, A, &members()) else {
            panic!("accepted expected");
        };
        assert_eq!(
            inner,
            Inner {
                offset: 54,
                len: 60
            }
        );
        assert_eq!(&frame[inner.offset..inner.offset + inner.len], &INNER[..]);
        let f = inner_frame(&mut frame, inner).unwrap();
        assert_eq!(f.len(), 74);
        let parsed = parse_frame(f).unwrap();
        let Net::Ip(ip) = parsed.net else {
            panic!("IPv6 expected")
        };
        assert_eq!((ip.src, ip.dst), (CLIENT, SVC));
        assert!(matches!(ip.transport, Transport::Tcp(t) if t.dst_port == 80 && t.ack == 501));
    }

    #[test]
    fn every_other_encapsulated_frame_is_refused_with_its_reason() {
        let m = members();
        // From a stranger (a forged frame).
        let mut out = [0u8; 200];
        let n = encapsulate(&encap(STRANGER, A), &INNER, &mut out).unwrap();
        assert_eq!(
            decapsulate(&out[..n], A, &m),
            Tunnel::Refused(Refusal::NotMember)
        );
        // To another host's handover address, or to a service address.
        assert_eq!(
            decapsulate(&GOLDEN, B, &m),
            Tunnel::Refused(Refusal::NotOurs)
        );
        let n = encapsulate(&encap(B, SVC), &INNER, &mut out).unwrap();
        assert_eq!(
            decapsulate(&out[..n], A, &m),
            Tunnel::Refused(Refusal::NotOurs)
        );
        // No members at all: nothing is accepted.
        assert_eq!(
            decapsulate(&GOLDEN, A, &Members::default()),
            Tunnel::Refused(Refusal::NotMember)
        );
        // Truncated outer payload, extra bytes inside it, a broken inner header.
        assert_eq!(
            decapsulate(&GOLDEN[..100], A, &m),
            Tunnel::Refused(Refusal::Malformed)
        );
        let mut extra = GOLDEN.to_vec();
        extra.extend_from_slice(&[0; 4]);
        extra[18..20].copy_from_slice(&64u16.to_be_bytes());
        assert_eq!(
            decapsulate(&extra, A, &m),
            Tunnel::Refused(Refusal::Malformed)
        );
        let mut v4 = GOLDEN;
        v4[54] = 0x45;
        assert_eq!(decapsulate(&v4, A, &m), Tunnel::Refused(Refusal::Malformed));
        // IPv4 inside, a tunnel inside the tunnel, a tunnel behind an extension header.
        let mut ipv4_in = GOLDEN;
        ipv4_in[20] = NEXT_HEADER_IPV4;
        assert_eq!(
            decapsulate(&ipv4_in, A, &m),
            Tunnel::Refused(Refusal::Unsupported)
        );
        let mut nested = GOLDEN;
        nested[60] = NEXT_HEADER_IPV6;
        assert_eq!(
            decapsulate(&nested, A, &m),
            Tunnel::Refused(Refusal::Unsupported)
        );
        let mut dest_opts = GOLDEN[..54].to_vec();
        dest_opts[20] = 60;
        dest_opts.extend_from_slice(&[NEXT_HEADER_IPV6, 0, 1, 4, 0, 0, 0, 0]);
        dest_opts.extend_from_slice(&INNER);
        dest_opts[18..20].copy_from_slice(&68u16.to_be_bytes());
        assert_eq!(
            decapsulate(&dest_opts, A, &m),
            Tunnel::Refused(Refusal::Unsupported)
        );
        dest_opts.truncate(55);
        assert_eq!(
            decapsulate(&dest_opts, A, &m),
            Tunnel::Refused(Refusal::Malformed)
        );
    }

    #[test]
    fn plain_frames_are_not_tunnels() {
        let m = members();
        let mut plain = GOLDEN[..14].to_vec();
        plain.extend_from_slice(&INNER);
        assert_eq!(decapsulate(&plain, A, &m), Tunnel::NotTunnel);
        // ARP, IPv4, short frames, a non-IPv6 version under the IPv6 EtherType.
        let mut arp = plain.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(decapsulate(&arp, A, &m), Tunnel::NotTunnel);
        for n in 0..54 {
            assert_eq!(decapsulate(&GOLDEN[..n], A, &m), Tunnel::NotTunnel, "{n}");
        }
        let mut v4 = GOLDEN;
        v4[14] = 0x45;
        assert_eq!(decapsulate(&v4, A, &m), Tunnel::NotTunnel);
        // A TCP packet behind a Destination Options header.
        let mut opts = GOLDEN[..54].to_vec();
        opts[20] = 60;
        opts.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(decapsulate(&opts, A, &m), Tunnel::NotTunnel);
    }

    #[test]
    fn vlan_tagged_tunnels_are_read() {
        let mut tagged = GOLDEN[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&GOLDEN[12..]);
        let Tunnel::Inner(inner) = decapsulate(&tagged, A, &members()) else {
            panic!("accepted expected");
        };
        assert_eq!(inner.offset, 58);
        let f = inner_frame(&mut tagged, inner).unwrap();
        assert_eq!(&f[14..], &INNER[..]);
        assert_eq!(&f[..12], &GOLDEN[..12]);
    }

    #[test]
    fn inner_frame_refuses_offsets_outside_the_frame() {
        let mut frame = GOLDEN;
        assert!(inner_frame(
            &mut frame,
            Inner {
                offset: 20,
                len: 10
            }
        )
        .is_none());
        assert!(inner_frame(
            &mut frame,
            Inner {
                offset: 54,
                len: 61
            }
        )
        .is_none());
        assert!(inner_frame(&mut frame, Inner { offset: 0, len: 1 }).is_none());
        assert!(inner_frame(
            &mut frame,
            Inner {
                offset: usize::MAX,
                len: 2
            }
        )
        .is_none());
    }

    #[test]
    fn members_are_bounded_and_unique() {
        let many: Vec<u128> = (0..65).collect();
        assert_eq!(Members::new(&many), Err(MembersError::TooMany(65)));
        assert_eq!(Members::new(&[A, B, A]), Err(MembersError::Duplicate(A)));
        let m = Members::new(&many[..64]).unwrap();
        assert_eq!(m.len(), 64);
        assert!(m.contains(63) && !m.contains(64));
        assert!(Members::default().is_empty());
    }

    #[test]
    fn refusal_names_are_distinct() {
        let names: std::collections::BTreeSet<&str> =
            Refusal::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Refusal::ALL.len());
        for r in Refusal::ALL {
            assert_eq!(r.to_string(), r.name());
        }
    }

    proptest::proptest! {
        /// Whatever B encapsulates for A, A gets back bit for bit; a stranger's never.
        #[test]
        fn round_trip(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1400), tc in 0u8..=255, hl in 1u8..=255) {
            let mut inner = INNER[..40].to_vec();
            inner[0] = 0x60 | (tc >> 4);
            inner[1] = (tc << 4) | (inner[1] & 0x0f);
            inner[4..6].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
            inner[6] = 17;
            inner.extend_from_slice(&payload);
            let mut out = vec![0u8; 1600];
            let mut e = encap(B, A);
            e.hop_limit = hl;
            let n = encapsulate(&e, &inner, &mut out).unwrap();
            let Tunnel::Inner(got) = decapsulate(&out[..n], A, &members()) else {
                panic!("refused");
            };
            proptest::prop_assert_eq!(&out[got.offset..got.offset + got.len], &inner[..]);
            let n = encapsulate(&encap(STRANGER, A), &inner, &mut out).unwrap();
            proptest::prop_assert_eq!(decapsulate(&out[..n], A, &members()), Tunnel::Refused(Refusal::NotMember));
        }

        /// Arbitrary bytes never panic, and an accepted inner packet lies in the frame.
        #[test]
        fn arbitrary_frames(frame in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Tunnel::Inner(i) = decapsulate(&frame, A, &members()) {
                proptest::prop_assert!(i.offset + i.len <= frame.len());
                let mut f = frame.clone();
                proptest::prop_assert!(inner_frame(&mut f, i).is_some());
            }
        }
    }
}
