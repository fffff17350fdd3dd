//! UDP datagrams (RFC 768).
//!
//! `check_len` covers only the 8-byte header: whether the length field agrees with the IP
//! payload (`UdpLength`) depends on fragmentation — a first fragment carries the length
//! of the whole datagram — so that rule is the parser's.

use crate::bytes;
use crate::checksum::{self, Pseudo};
use crate::Malformed;

/// Field offsets.
pub mod field {
    use core::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length (header + payload).
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 6..8;
    /// Start of the payload.
    pub const PAYLOAD: usize = 8;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of a UDP datagram.
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

    /// Wrap a buffer and check that the header fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Malformed> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `UdpTruncated` below 8 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Malformed::UdpTruncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length field.
    #[inline]
    pub fn len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// True when the length field is 0.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Does the stored checksum match under `pseudo`? (0 over IPv4 means "none": true.)
    pub fn verify_checksum(&self, pseudo: Pseudo) -> bool {
        let data = self.buffer.as_ref();
        let data = data.get(..usize::from(self.len())).unwrap_or(data);
        (matches!(pseudo, Pseudo::V4 { .. }) && self.checksum() == 0)
            || checksum::udp_checksum(pseudo, data) == self.checksum()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload: after the header, up to the length field (or the buffer's end).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        data.get(HEADER_LEN..usize::from(self.len()))
            .or_else(|| data.get(HEADER_LEN..))
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }

    /// Set the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }

    /// Set the length field.
    #[inline]
    pub fn set_len(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Compute and store the checksum over the whole buffer under `pseudo`.
    pub fn fill_checksum(&mut self, pseudo: Pseudo) {
        let c = checksum::udp_checksum(pseudo, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An owned UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Read a checked view (the payload up to the length field).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>, Malformed> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: packet.payload(),
        })
    }

    /// 8 + payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Write the datagram with length and checksum under `pseudo`; panics if `buf` is
    /// shorter than `buffer_len()` or the datagram exceeds 65535 bytes.
    pub fn emit(&self, buf: &mut [u8], pseudo: Pseudo) {
        let len = self.buffer_len();
        let Ok(len16) = u16::try_from(len) else {
            panic!("udp::Repr::emit: datagram of {len} bytes exceeds 65535");
        };
        let buf = bytes::emit_buf(buf, len, "udp::Repr");
        buf[HEADER_LEN..].copy_from_slice(self.payload);
        let mut p = Packet::new_unchecked(buf);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len16);
        p.fill_checksum(pseudo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 12] = [
        0x00, 0x35, 0xd4, 0x31, // 53 → 54321
        0x00, 0x0c, 0x00, 0x00, // length 12, checksum (filled below)
        0x61, 0x62, 0x63, 0x64, // "abcd"
    ];

    fn pseudo() -> Pseudo {
        Pseudo::V4 {
            src: 0xc000_0201,
            dst: 0xc633_6402,
        }
    }

    fn golden() -> [u8; 12] {
        let mut b = PACKET_BYTES;
        let c = checksum::udp_checksum_v4(0xc000_0201, 0xc633_6402, &b);
        b[6..8].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn deconstruct() {
        let b = golden();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (53, 54321, 12));
        assert!(p.verify_checksum(pseudo()));
        assert_eq!(p.payload(), b"abcd");
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 12];
        buf[8..].copy_from_slice(b"abcd");
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(53);
        p.set_dst_port(54321);
        p.set_len(12);
        p.fill_checksum(pseudo());
        assert_eq!(buf, golden());
    }

    #[test]
    fn repr_round_trip() {
        let b = golden();
        let repr = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_port: 53,
                dst_port: 54321,
                payload: b"abcd"
            }
        );
        let mut out = [0u8; 12];
        repr.emit(&mut out, pseudo());
        assert_eq!(out, b);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..7]).err(),
            Some(Malformed::UdpTruncated)
        );
    }
}
