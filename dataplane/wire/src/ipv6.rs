//! The IPv6 fixed header (RFC 8200 §3).
//!
//! Addresses are `u128` (network order read as a big-endian integer), the representation
//! every weir table uses, so no conversion happens between parsing and classification.
//! `check_len` applies both length rules of DESIGN.md "Headers": the 40-byte fixed header
//! (`Ipv6Truncated`) and a payload length within the frame (`Ipv6PayloadLength`); bytes
//! after the payload length are link padding and [`Packet::payload`] leaves them out.

use crate::bytes;
use crate::Malformed;

/// Field offsets of the fixed header.
pub mod field {
    use core::ops::Range;
    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    /// Payload length.
    pub const LENGTH: Range<usize> = 4..6;
    /// Next header.
    pub const NXT_HDR: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC_ADDR: Range<usize> = 8..24;
    /// Destination address.
    pub const DST_ADDR: Range<usize> = 24..40;
    /// Start of the payload.
    pub const PAYLOAD: usize = 40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of an IPv6 packet.
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

    /// `Ipv6Truncated` below 40 bytes; `Ipv6PayloadLength` when the payload length runs
    /// beyond the buffer. The version is not checked here.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(Malformed::Ipv6Truncated)
        } else if usize::from(self.payload_len()) > len - HEADER_LEN {
            Err(Malformed::Ipv6PayloadLength)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (6 for IPv6).
    #[inline]
    pub fn version(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), 0) >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (bytes::u32_at(self.buffer.as_ref(), 0) >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), 0) & 0x000f_ffff
    }

    /// Payload length.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::NXT_HDR)
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> u128 {
        bytes::u128_at(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> u128 {
        bytes::u128_at(self.buffer.as_ref(), field::DST_ADDR.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, `payload_len` bytes after the fixed header (padding excluded); empty
    /// if the view fails `check_len`.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let end = field::PAYLOAD + usize::from(self.payload_len());
        self.buffer.as_ref().get(field::PAYLOAD..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set version, traffic class and flow label.
    #[inline]
    pub fn set_ver_tc_flow(&mut self, version: u8, traffic_class: u8, flow_label: u32) {
        let v = (u32::from(version & 0xf) << 28)
            | (u32::from(traffic_class) << 20)
            | (flow_label & 0x000f_ffff);
        bytes::put_u32(self.buffer.as_mut(), 0, v);
    }

    /// Set the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Set the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::NXT_HDR, value);
    }

    /// Set the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::HOP_LIMIT, value);
    }

    /// Set the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: u128) {
        bytes::put_u128(self.buffer.as_mut(), field::SRC_ADDR.start, value);
    }

    /// Set the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: u128) {
        bytes::put_u128(self.buffer.as_mut(), field::DST_ADDR.start, value);
    }

    /// Everything after the fixed header, mutable (padding included).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..)
            .unwrap_or(&mut [])
    }
}

/// An owned IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// Next header (first extension header or upper-layer protocol).
    pub next_header: u8,
    /// Payload length: extension headers + upper-layer message.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// A header with hop limit 64, traffic class 0 and flow label 0.
    pub const fn new(src: u128, dst: u128, next_header: u8, payload_len: u16) -> Repr {
        Repr {
            src,
            dst,
            next_header,
            payload_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
    }

    /// Read a view (length and version checked).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Malformed> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Malformed::Ipv6Version);
        }
        Ok(Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// 40.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the fixed header into the first 40 bytes of `buf`; panics if shorter.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Packet::new_unchecked(bytes::emit_buf(buf, HEADER_LEN, "ipv6::Repr"));
        p.set_ver_tc_flow(6, self.traffic_class, self.flow_label);
        p.set_payload_len(self.payload_len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKET_BYTES: [u8; 46] = [
        0x60, 0x12, 0x34, 0x56, // version 6, tc 0x01, flow 0x23456
        0x00, 0x04, // payload length 4
        0x11, 0x40, // UDP, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // 2001:db8::2
        0xde, 0xad, 0xbe, 0xef, // payload
        0x00, 0x00, // padding
    ];
    const SRC: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0001;
    const DST: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0002;

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x01);
        assert_eq!(p.flow_label(), 0x23456);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), SRC);
        assert_eq!(p.dst_addr(), DST);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 46];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_ver_tc_flow(6, 0x01, 0x23456);
        p.set_payload_len(4);
        p.set_next_header(17);
        p.set_hop_limit(64);
        p.set_src_addr(SRC);
        p.set_dst_addr(DST);
        p.payload_mut()[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf, PACKET_BYTES);
    }

    #[test]
    fn repr_round_trip() {
        let repr = Repr::parse(&Packet::new_checked(&PACKET_BYTES[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                traffic_class: 1,
                flow_label: 0x23456,
                ..Repr::new(SRC, DST, 17, 4)
            }
        );
        let mut buf = [0u8; 40];
        repr.emit(&mut buf);
        assert_eq!(buf[..], PACKET_BYTES[..40]);
    }

    #[test]
    fn length_rules() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..39]).err(),
            Some(Malformed::Ipv6Truncated)
        );
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..43]).err(),
            Some(Malformed::Ipv6PayloadLength)
        );
        assert!(Packet::new_checked(&PACKET_BYTES[..44]).is_ok());
    }
}
