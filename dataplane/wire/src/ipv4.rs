//! The IPv4 header (RFC 791).
//!
//! weir classifies IPv4 only far enough to reject it cleanly (`not-service` unless an IPv4
//! prefix is configured), so the view reads the fixed fields and leaves options opaque.
//! `check_len` applies DESIGN.md "Headers": IHL ≥ 5 (`Ipv4Ihl`) and a total length that
//! covers the header and stays within the frame (`Ipv4TotalLength`); bytes after the
//! total length are link padding. The version is checked by the caller, between the
//! truncation and IHL checks, because that is the order the rules are stated in.

use crate::bytes;
use crate::checksum;
use crate::Malformed;

/// Field offsets.
pub mod field {
    use core::ops::Range;
    /// Version (4 bits) and IHL (4 bits).
    pub const VER_IHL: usize = 0;
    /// DSCP (6 bits) and ECN (2 bits).
    pub const DSCP_ECN: usize = 1;
    /// Total length.
    pub const LENGTH: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (3 bits) and fragment offset (13 bits).
    pub const FLG_OFF: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC_ADDR: Range<usize> = 12..16;
    /// Destination address.
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap a buffer and check its lengths.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Malformed> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Ipv4Truncated` below 20 bytes, `Ipv4Ihl` for IHL < 5, `Ipv4TotalLength` when the
    /// total length is beyond the buffer or shorter than the header.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        let total = usize::from(self.total_len());
        if len < HEADER_LEN {
            Err(Malformed::Ipv4Truncated)
        } else if self.header_len() < HEADER_LEN {
            Err(Malformed::Ipv4Ihl)
        } else if total > len || total < self.header_len() {
            Err(Malformed::Ipv4TotalLength)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 for IPv4).
    #[inline]
    pub fn version(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) & 0xf) * 4
    }

    /// DSCP and ECN byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::DSCP_ECN)
    }

    /// Total length.
    #[inline]
    pub fn total_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::IDENT.start)
    }

    fn flg_off(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flg_off() & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flg_off() & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units (13 bits).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.flg_off() & 0x1fff
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TTL)
    }

    /// Protocol.
    #[inline]
    pub fn protocol(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Header checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address (big-endian `u32`).
    #[inline]
    pub fn src_addr(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// Destination address (big-endian `u32`).
    #[inline]
    pub fn dst_addr(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// Does the stored header checksum match the header?
    pub fn verify_checksum(&self) -> bool {
        let header = self.buffer.as_ref().get(..self.header_len()).unwrap_or(&[]);
        checksum::ipv4_header_checksum(header) == self.checksum()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload: from the end of the header to the total length (padding excluded).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        data.get(self.header_len()..usize::from(self.total_len()))
            .unwrap_or(&[])
    }

    /// The options (bytes 20 to IHL × 4).
    #[inline]
    pub fn options(&self) -> &'a [u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set version and header length (bytes, a multiple of 4).
    #[inline]
    pub fn set_version_header_len(&mut self, version: u8, header_len: usize) {
        let ihl = ((header_len / 4) & 0xf) as u8;
        bytes::put_u8(self.buffer.as_mut(), field::VER_IHL, (version << 4) | ihl);
    }

    /// Set the DSCP / ECN byte.
    #[inline]
    pub fn set_tos(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::DSCP_ECN, value);
    }

    /// Set the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Set the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::IDENT.start, value);
    }

    /// Set DF, MF and the fragment offset (8-byte units).
    #[inline]
    pub fn set_flags_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = offset & 0x1fff;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        bytes::put_u16(self.buffer.as_mut(), field::FLG_OFF.start, v);
    }

    /// Set the time to live.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::TTL, value);
    }

    /// Set the protocol.
    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::PROTOCOL, value);
    }

    /// Set the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Set the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::SRC_ADDR.start, value);
    }

    /// Set the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::DST_ADDR.start, value);
    }

    /// Compute and store the header checksum.
    pub fn fill_checksum(&mut self) {
        let len = self.header_len();
        let sum = checksum::ipv4_header_checksum(self.buffer.as_ref().get(..len).unwrap_or(&[]));
        self.set_checksum(sum);
    }
}

/// An owned IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address (big-endian `u32`).
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Protocol.
    pub protocol: u8,
    /// Payload length (total length − 20).
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// DSCP / ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// More Fragments.
    pub more_frags: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
}

impl Repr {
    /// A header with TTL 64, DF set, ident 0, not a fragment.
    pub const fn new(src: u32, dst: u32, protocol: u8, payload_len: u16) -> Repr {
        Repr {
            src,
            dst,
            protocol,
            payload_len,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Read a checked view (options are skipped, `payload_len` counts from the IHL end).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Malformed> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Malformed::Ipv4Version);
        }
        Ok(Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            // check_len established total ≥ header_len ≥ 20.
            payload_len: packet.total_len() - packet.header_len() as u16,
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// 20.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header with its checksum into the first 20 bytes of `buf`; panics if
    /// shorter.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Packet::new_unchecked(bytes::emit_buf(buf, HEADER_LEN, "ipv4::Repr"));
        p.set_version_header_len(4, HEADER_LEN);
        p.set_tos(self.tos);
        p.set_total_len(self.payload_len.saturating_add(HEADER_LEN as u16));
        p.set_ident(self.ident);
        p.set_flags_offset(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 26] = [
        0x45, 0x00, 0x00, 0x18, // v4, IHL 5, total 24
        0x12, 0x34, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0x00, 0x00, // TTL 64, UDP, checksum (filled below)
        0xc0, 0x00, 0x02, 0x01, // 192.0.2.1
        0xc6, 0x33, 0x64, 0x02, // 198.51.100.2
        0xaa, 0xbb, 0xcc, 0xdd, // payload
        0x00, 0x00,             // padding
    ];

    fn golden() -> [u8; 26] {
        let mut b = PACKET_BYTES;
        let c = checksum::ipv4_header_checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn deconstruct() {
        let b = golden();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag() && !p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src_addr(), 0xc000_0201);
        assert_eq!(p.dst_addr(), 0xc633_6402);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(p.options(), &[] as &[u8]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 26];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version_header_len(4, 20);
        p.set_tos(0);
        p.set_total_len(24);
        p.set_ident(0x1234);
        p.set_flags_offset(true, false, 0);
        p.set_ttl(64);
        p.set_protocol(17);
        p.set_src_addr(0xc000_0201);
        p.set_dst_addr(0xc633_6402);
        p.fill_checksum();
        buf[20..24].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, golden());
    }

    #[test]
    fn repr_round_trip() {
        let b = golden();
        let repr = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                ident: 0x1234,
                ..Repr::new(0xc000_0201, 0xc633_6402, 17, 4)
            }
        );
        let mut out = [0u8; 20];
        repr.emit(&mut out);
        assert_eq!(out[..], b[..20]);
    }

    #[test]
    fn length_rules() {
        let b = golden();
        assert_eq!(
            Packet::new_checked(&b[..19]).err(),
            Some(Malformed::Ipv4Truncated)
        );
        assert_eq!(
            Packet::new_checked(&b[..23]).err(),
            Some(Malformed::Ipv4TotalLength)
        );
        let mut c = b;
        c[0] = 0x44;
        assert_eq!(Packet::new_checked(&c[..]).err(), Some(Malformed::Ipv4Ihl));
        let mut c = b;
        c[0] = 0x47;
        assert_eq!(
            Packet::new_checked(&c[..]).err(),
            Some(Malformed::Ipv4TotalLength)
        );
    }
}
