//! The one-pass frame summary the classifier reads.
//!
//! `parse_frame` walks Ethernet → up to two VLAN tags → IPv6 (with its extension-header
//! chain) or IPv4 or ARP → TCP / UDP / ICMPv6 and returns a [`Frame`]: plain `Copy` data
//! with the addresses as `u128` (IPv4 as IPv4-mapped IPv6, `::ffff:a.b.c.d`), so that the
//! classifier and every table behind it handle both families with one code path.
//! Every header rule that makes a frame *malformed* (DESIGN.md, "Headers" and
//! "Fragments") is decided here and nowhere else; every other oddity (an unknown next
//! header, a non-IP EtherType, a short ICMPv6 quote) is data for the classifier.
//!
//! Rejected: returning borrowed header views for every layer. The classifier needs a few
//! fields of each layer once; a flat copy keeps its code free of lifetimes and the parser
//! free of a second walk.

/// IPv4-mapped IPv6 prefix `::ffff:0:0/96` in which IPv4 addresses are carried.
pub const IPV4_MAPPED: u128 = 0xffff_0000_0000;

/// Map an IPv4 address (as a big-endian `u32`) into `::ffff:a.b.c.d`.
#[inline]
pub const fn ipv4_mapped(addr: u32) -> u128 {
    IPV4_MAPPED | addr as u128
}

/// True when `addr` is an IPv4-mapped address.
#[inline]
pub const fn is_ipv4_mapped(addr: u128) -> bool {
    addr >> 32 == 0xffff
}

/// Which rule of the header grammar a frame broke. The classifier's verdict is the single
/// reason `malformed`; this finer cause is for logs, tests and the fuzzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Malformed {
    /// Ethernet header shorter than 14 bytes
    #[error("Ethernet header truncated")]
    EthernetTruncated,
    /// VLAN tag truncated
    #[error("VLAN tag truncated")]
    VlanTruncated,
    /// more than two VLAN tags
    #[error("more than two VLAN tags")]
    TooManyVlanTags,
    /// IPv6 fixed header truncated
    #[error("IPv6 header truncated")]
    Ipv6Truncated,
    /// IPv6 version field is not 6
    #[error("IPv6 version field is not 6")]
    Ipv6Version,
    /// IPv6 payload length runs beyond the frame
    #[error("IPv6 payload length beyond the frame")]
    Ipv6PayloadLength,
    /// an extension header runs beyond the payload
    #[error("IPv6 extension header truncated")]
    ExtHeaderTruncated,
    /// more than eight extension headers
    #[error("more than eight IPv6 extension headers")]
    TooManyExtHeaders,
    /// Hop-by-Hop options header not directly after the fixed header
    #[error("Hop-by-Hop options header not first")]
    HopByHopNotFirst,
    /// fragment with M = 1 whose fragment length is not a multiple of 8
    #[error("fragment length not a multiple of 8")]
    FragmentLength,
    /// fragment offset + length beyond 65535
    #[error("fragment offset + length beyond 65535")]
    FragmentOverflow,
    /// first fragment that does not hold the whole transport header
    #[error("first fragment without the full transport header")]
    FirstFragmentTruncated,
    /// IPv4 header truncated
    #[error("IPv4 header truncated")]
    Ipv4Truncated,
    /// IPv4 version field is not 4
    #[error("IPv4 version field is not 4")]
    Ipv4Version,
    /// IPv4 IHL below 5
    #[error("IPv4 IHL below 5")]
    Ipv4Ihl,
    /// IPv4 total length beyond the frame or shorter than the header
    #[error("IPv4 total length inconsistent with the frame")]
    Ipv4TotalLength,
    /// TCP header truncated
    #[error("TCP header truncated")]
    TcpTruncated,
    /// TCP data offset below 5 or beyond the segment
    #[error("TCP data offset below 5 or beyond the segment")]
    TcpDataOffset,
    /// TCP option runs beyond the options area or has a length below 2
    #[error("TCP option malformed")]
    TcpOption,
    /// SYN together with RST or FIN
    #[error("TCP SYN with RST or FIN")]
    TcpFlags,
    /// UDP header truncated
    #[error("UDP header truncated")]
    UdpTruncated,
    /// UDP length disagrees with the IP payload length
    #[error("UDP length disagrees with the IP payload")]
    UdpLength,
    /// ICMPv6 header truncated (or an NDP message shorter than its fixed part)
    #[error("ICMPv6 message truncated")]
    Icmpv6Truncated,
    /// ARP packet truncated
    #[error("ARP packet truncated")]
    ArpTruncated,
}

/// A parsed frame: what the classifier and the flow tracker need, copied out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Number of 802.1Q / 802.1ad tags (0..=2).
    pub vlan_tags: u8,
    /// The network layer.
    pub net: Net,
}

/// The network layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// IPv6 or IPv4 (see [`Ip::version`]).
    Ip(Ip),
    /// A well-formed ARP packet; `target` is the IPv4 target protocol address (mapped)
    /// when it is Ethernet/IPv4 ARP.
    Arp {
        /// 1 = request, 2 = reply, other values as received.
        op: u16,
        /// Target protocol address, IPv4-mapped, when HTYPE = 1 and PTYPE = 0x0800.
        target: Option<u128>,
    },
    /// Any other EtherType (after VLAN tags).
    Other {
        /// The EtherType.
        ethertype: u16,
    },
}

/// IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4 (addresses are IPv4-mapped).
    V4,
    /// IPv6.
    V6,
}

/// The IP layer, with addresses as `u128` (IPv4-mapped for IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip {
    /// 4 or 6.
    pub version: IpVersion,
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// Hop limit / TTL.
    pub hop_limit: u8,
    /// Fragmentation (an IPv6 atomic fragment, offset 0 and M = 0, is `Whole`).
    pub fragment: Fragment,
    /// The transport layer as far as it is present.
    pub transport: Transport,
    /// Number of IPv6 extension headers walked (0 for IPv4).
    pub ext_headers: u8,
}

/// Fragmentation state of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment (or an atomic fragment).
    Whole,
    /// Offset 0 with more fragments: the transport header is present and parsed.
    First,
    /// Offset > 0: no transport header; `transport` is [`Transport::Unparsed`].
    Later,
}

/// The transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP.
    Tcp(Tcp),
    /// UDP.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMPv6.
    Icmpv6(Icmpv6),
    /// A non-first fragment: the transport header is elsewhere. `proto` is the next header.
    Unparsed {
        /// Upper-layer protocol number.
        proto: u8,
    },
    /// A protocol weir does not parse (IPv6 next header or IPv4 protocol number),
    /// including IPv6 "No Next Header" (59) and ICMPv4 (1).
    Other {
        /// Protocol number.
        proto: u8,
    },
}

/// TCP control bits as in the header's low byte.
pub mod tcp_flags {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
}

/// The TCP fields the classifier and tracker read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Control bits (see [`tcp_flags`]); only the low 8 bits of the flags field.
    pub flags: u8,
    /// Payload bytes after the TCP header (0 for a first fragment: unknown).
    pub payload_len: u16,
}

impl Tcp {
    /// SYN set; ACK, RST and FIN clear (DESIGN.md "Clean SYN").
    #[inline]
    pub fn is_clean_syn(&self) -> bool {
        use tcp_flags::*;
        self.flags & (SYN | ACK | RST | FIN) == SYN
    }
}

/// ICMPv6 messages, by what the classifier does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6 {
    /// Error messages: types 1 (destination unreachable), 2 (packet too big),
    /// 3 (time exceeded), 4 (parameter problem).
    Error {
        /// ICMPv6 type.
        ty: u8,
        /// Where the quoted invoking packet starts in the buffer that was parsed; read it
        /// with [`quote_of`] when it matters (the quote is kept out of [`Frame`] so that
        /// the common case, TCP and UDP, stays small).
        quote_at: u16,
    },
    /// Echo request (128).
    EchoRequest,
    /// Echo reply (129).
    EchoReply,
    /// NDP: 133 router solicitation, 134 router advertisement, 135 neighbor
    /// solicitation, 136 neighbor advertisement, 137 redirect.
    Ndp {
        /// ICMPv6 type.
        ty: u8,
    },
    /// Any other type.
    Other {
        /// ICMPv6 type.
        ty: u8,
    },
}

/// The packet quoted in an ICMPv6 error (RFC 4443 §2.4: "as much of the invoking packet
/// as possible"). A short quote is not malformed; it just proves less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Quoted source (for a packet weir's terminators sent: a service address).
    pub src: u128,
    /// Quoted destination.
    pub dst: u128,
    /// Upper-layer protocol after walking the quoted extension headers that fit.
    pub proto: u8,
    /// (source port, destination port) when `proto` is TCP and the four port bytes
    /// are quoted.
    pub tcp_ports: Option<(u16, u16)>,
}

/// The packet an ICMPv6 error quotes, read from `buffer` (the bytes that were parsed) at
/// `quote_at`; `None` when the quote does not hold a whole IPv6 fixed header.
pub fn quote_of(buffer: &[u8], quote_at: u16) -> Option<Quote> {
    crate::parse::parse_quote(buffer.get(usize::from(quote_at)..)?)
}

/// Source and destination of a frame whose Ethernet (with VLAN tags) and fixed IPv6 or IPv4
/// header are readable, whatever comes after. Used to recognise outbound frames before the
/// full parse (DESIGN.md "Outbound and host in replay").
pub fn peek_addresses(frame: &[u8]) -> Option<(IpVersion, u128, u128)> {
    crate::parse::peek_addresses(frame)
}

/// Parse a whole frame; `Err` names the broken rule. Inlined: the common case is a
/// straight-line read into the caller's frame (see `parse.rs`).
#[inline(always)]
pub fn parse_frame(frame: &[u8]) -> Result<Frame, Malformed> {
    crate::parse::parse_frame(frame)
}

/// The common case only — untagged Ethernet, IPv6 without extension headers, TCP or UDP,
/// nothing malformed — as its IP layer; `None` for everything else, which
/// [`parse_frame`] decides. Whenever it answers, `parse_frame` gives the same `Ip`
/// (a property test holds them equal): callers on the packet path take this first and
/// skip building a whole `Frame`.
#[inline(always)]
pub fn parse_common(frame: &[u8]) -> Option<Ip> {
    crate::parse::fast_ip(frame)
}

/// Parse a network packet whose link header (not Ethernet) named EtherType `ty`: the
/// same rules as [`parse_frame`] from the network layer on; `vlan_tags` is 0.
pub fn parse_network(ty: u16, packet: &[u8]) -> Result<Frame, Malformed> {
    crate::parse::parse_network(ty, packet)
}

/// Parse a frame that a capture cut short (its snap length): `buffer` is the captured
/// bytes followed by zeros up to the frame's length on the wire, `captured` how many of
/// them are real, `network` the EtherType and offset of the network packet for a capture
/// without Ethernet headers. `None` when the cut removed a header byte the walk had to
/// read (the frame cannot be classified: `truncated`); otherwise what [`parse_frame`]
/// (or [`parse_network`]) gives for the whole frame, whose payload the walk never reads.
pub fn parse_cut(
    buffer: &[u8],
    captured: usize,
    network: Option<(u16, usize)>,
) -> Option<Result<Frame, Malformed>> {
    crate::parse::parse_cut(buffer, captured, network)
}

/// [`peek_addresses`] for a network packet of EtherType `ty`.
pub fn peek_network(ty: u16, packet: &[u8]) -> Option<(IpVersion, u128, u128)> {
    crate::parse::peek_network(ty, packet)
}
