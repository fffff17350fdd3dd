//! IPv6 extension headers weir walks (RFC 8200 §4): Hop-by-Hop Options (0), Routing (43),
//! Destination Options (60) — all "next header, length in 8-octet units not counting the
//! first 8" — and Fragment (44, always 8 bytes).
//!
//! One view, [`ExtHeader`], covers the three length-prefixed kinds because the walk needs
//! only their next header and length; the routing fields are extra getters on it.
//! [`FragmentHeader`] is separate because its second byte is reserved, not a length.
//! Emitting: [`OptionsRepr`] pads its options to a multiple of 8 with Pad1 / PadN,
//! [`RoutingRepr`] emits a Segment Routing Header (type 4, RFC 8754) or any other type
//! from raw type-specific bytes, [`FragmentRepr`] the fragment header.

use crate::bytes;
use crate::protocol;
use crate::Malformed;

/// Field offsets.
pub mod field {
    /// Next header (all kinds).
    pub const NXT_HDR: usize = 0;
    /// Header extension length in 8-octet units, first 8 not counted (0, 43, 60).
    pub const LENGTH: usize = 1;
    /// Routing: routing type.
    pub const ROUTING_TYPE: usize = 2;
    /// Routing: segments left.
    pub const SEG_LEFT: usize = 3;
    /// Fragment: offset (13 bits), reserved (2), M (1).
    pub const FR_OFFSET: core::ops::Range<usize> = 2..4;
    /// Fragment: identification.
    pub const FR_IDENT: core::ops::Range<usize> = 4..8;
}

/// Length of a fragment header.
pub const FRAGMENT_LEN: usize = 8;

/// Is `next_header` one of the extension headers weir walks (0, 43, 60, 44)?
#[inline]
pub const fn is_walked(next_header: u8) -> bool {
    matches!(
        next_header,
        protocol::HOP_BY_HOP | protocol::ROUTING | protocol::DST_OPTS | protocol::FRAGMENT
    )
}

/// A view of a Hop-by-Hop, Routing or Destination Options header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wrap a buffer without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ExtHeader<T> {
        ExtHeader { buffer }
    }

    /// Wrap a buffer and check that the whole header fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<ExtHeader<T>, Malformed> {
        let h = ExtHeader::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// `ExtHeaderTruncated` when the length byte is missing or the header runs past the
    /// buffer.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < 2 || len < self.header_len() {
            Err(Malformed::ExtHeaderTruncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::NXT_HDR)
    }

    /// Raw header extension length.
    #[inline]
    pub fn hdr_ext_len(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Header length in bytes: (hdr_ext_len + 1) × 8.
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(self.hdr_ext_len()) + 1) * 8
    }

    /// Routing header only: the routing type.
    #[inline]
    pub fn routing_type(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::ROUTING_TYPE)
    }

    /// Routing header only: segments left.
    #[inline]
    pub fn segments_left(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::SEG_LEFT)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> ExtHeader<&'a T> {
    /// The header's body after the next-header and length bytes (options, or the routing
    /// type onwards).
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.buffer
            .as_ref()
            .get(2..self.header_len())
            .unwrap_or(&[])
    }

    /// What follows the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ExtHeader<T> {
    /// Set the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::NXT_HDR, value);
    }

    /// Set the raw header extension length.
    #[inline]
    pub fn set_hdr_ext_len(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::LENGTH, value);
    }
}

/// A view of a Fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    /// Wrap a buffer without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> FragmentHeader<T> {
        FragmentHeader { buffer }
    }

    /// Wrap a buffer and check that the 8 bytes fit.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<FragmentHeader<T>, Malformed> {
        let h = FragmentHeader::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// `ExtHeaderTruncated` below 8 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < FRAGMENT_LEN {
            Err(Malformed::ExtHeaderTruncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::NXT_HDR)
    }

    /// Fragment offset in 8-byte units (13 bits).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::FR_OFFSET.start) >> 3
    }

    /// The M (more fragments) flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FR_OFFSET.start) & 1 != 0
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::FR_IDENT.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> FragmentHeader<&'a T> {
    /// What follows the fragment header (the fragment's data).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.buffer.as_ref().get(FRAGMENT_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    /// Set the next header (and clear the reserved byte).
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::NXT_HDR, value);
        bytes::put_u8(self.buffer.as_mut(), field::LENGTH, 0);
    }

    /// Set offset (8-byte units) and M flag.
    #[inline]
    pub fn set_offset_more(&mut self, offset: u16, more: bool) {
        let v = (offset << 3) | u16::from(more);
        bytes::put_u16(self.buffer.as_mut(), field::FR_OFFSET.start, v);
    }

    /// Set the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::FR_IDENT.start, value);
    }
}

/// Round `n` up to a multiple of 8.
const fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Write the raw length byte for a header of `len` bytes (a multiple of 8, ≤ 2048).
fn ext_len_byte(len: usize, what: &str) -> u8 {
    match u8::try_from(len / 8 - 1) {
        Ok(b) => b,
        Err(_) => panic!("{what}: header of {len} bytes exceeds 2048"),
    }
}

/// An owned Hop-by-Hop or Destination Options header: raw TLV options, padded on emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionsRepr<'a> {
    /// Next header.
    pub next_header: u8,
    /// Options as TLVs (RFC 8200 §4.2), without the trailing padding.
    pub options: &'a [u8],
}

impl<'a> OptionsRepr<'a> {
    /// Read a checked view; `options` is the whole options area, padding included.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        header: &ExtHeader<&'a T>,
    ) -> Result<OptionsRepr<'a>, Malformed> {
        header.check_len()?;
        Ok(OptionsRepr {
            next_header: header.next_header(),
            options: header.data(),
        })
    }

    /// 2 + options, rounded up to 8.
    pub const fn buffer_len(&self) -> usize {
        pad8(2 + self.options.len())
    }

    /// Write the header, padding with Pad1 (one byte) or PadN; panics if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        let buf = bytes::emit_buf(buf, len, "ipv6ext::OptionsRepr");
        buf.fill(0);
        buf[0] = self.next_header;
        buf[1] = ext_len_byte(len, "ipv6ext::OptionsRepr");
        let end = 2 + self.options.len();
        buf[2..end].copy_from_slice(self.options);
        let pad = len - end;
        if pad >= 2 {
            // PadN: type 1, length pad - 2, zeros (already zero).
            buf[end] = 1;
            buf[end + 1] = (pad - 2) as u8;
        }
        // pad == 1: Pad1 is a single zero byte, already written.
    }
}

/// An owned Routing header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingRepr<'a> {
    /// Segment Routing Header (type 4, RFC 8754) without TLVs.
    SegmentRouting {
        /// Next header.
        next_header: u8,
        /// Segments left.
        segments_left: u8,
        /// Flags.
        flags: u8,
        /// Tag.
        tag: u16,
        /// Segment list, as on the wire (`segments[0]` is the last segment).
        segments: &'a [u128],
    },
    /// Any routing type, from the bytes after segments left (padded with zeros to 8).
    Generic {
        /// Next header.
        next_header: u8,
        /// Routing type.
        routing_type: u8,
        /// Segments left.
        segments_left: u8,
        /// Type-specific data after the first 4 bytes.
        data: &'a [u8],
    },
}

impl<'a> RoutingRepr<'a> {
    /// Read a checked view as `Generic` (the walk needs nothing type-specific).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        header: &ExtHeader<&'a T>,
    ) -> Result<RoutingRepr<'a>, Malformed> {
        header.check_len()?;
        Ok(RoutingRepr::Generic {
            next_header: header.next_header(),
            routing_type: header.routing_type(),
            segments_left: header.segments_left(),
            data: header.data().get(2..).unwrap_or(&[]),
        })
    }

    /// Emitted length.
    pub const fn buffer_len(&self) -> usize {
        match self {
            RoutingRepr::SegmentRouting { segments, .. } => 8 + 16 * segments.len(),
            RoutingRepr::Generic { data, .. } => pad8(4 + data.len()),
        }
    }

    /// Write the header; panics if `buf` is shorter than `buffer_len()` or the header
    /// would exceed 2048 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        let buf = bytes::emit_buf(buf, len, "ipv6ext::RoutingRepr");
        buf.fill(0);
        buf[1] = ext_len_byte(len, "ipv6ext::RoutingRepr");
        match *self {
            RoutingRepr::SegmentRouting {
                next_header,
                segments_left,
                flags,
                tag,
                segments,
            } => {
                buf[0] = next_header;
                buf[2] = 4;
                buf[3] = segments_left;
                buf[4] = segments.len().saturating_sub(1) as u8; // last entry
                buf[5] = flags;
                buf[6..8].copy_from_slice(&tag.to_be_bytes());
                for (chunk, seg) in buf[8..].chunks_exact_mut(16).zip(segments) {
                    chunk.copy_from_slice(&seg.to_be_bytes());
                }
            }
            RoutingRepr::Generic {
                next_header,
                routing_type,
                segments_left,
                data,
            } => {
                buf[0] = next_header;
                buf[2] = routing_type;
                buf[3] = segments_left;
                buf[4..4 + data.len()].copy_from_slice(data);
            }
        }
    }
}

/// An owned Fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentRepr {
    /// Next header.
    pub next_header: u8,
    /// Offset in 8-byte units (13 bits).
    pub offset: u16,
    /// M flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

impl FragmentRepr {
    /// Read a checked view.
    pub fn parse<T: AsRef<[u8]>>(header: &FragmentHeader<T>) -> Result<FragmentRepr, Malformed> {
        header.check_len()?;
        Ok(FragmentRepr {
            next_header: header.next_header(),
            offset: header.frag_offset(),
            more: header.more_frags(),
            ident: header.ident(),
        })
    }

    /// 8.
    pub const fn buffer_len(&self) -> usize {
        FRAGMENT_LEN
    }

    /// Write the header; panics if `buf` is shorter than 8 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut h = FragmentHeader::new_unchecked(bytes::emit_buf(
            buf,
            FRAGMENT_LEN,
            "ipv6ext::FragmentRepr",
        ));
        h.set_next_header(self.next_header);
        h.set_offset_more(self.offset & 0x1fff, self.more);
        h.set_ident(self.ident);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hop-by-Hop (router alert, PadN) → Routing type 4 with one segment → Fragment → TCP.
    static PACKET_BYTES: [u8; 48] = [
        // Hop-by-Hop: next 43, len 0, router alert (5, 2, 0, 0), PadN(0)
        0x2b, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00,
        // Routing: next 44, len 2, type 4, seg left 0, last entry 0, flags 0, tag 0x0001
        0x2c, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0x09, // Fragment: next 6, offset 3, M 1, ident 0xcafebabe
        0x06, 0x00, 0x00, 0x19, 0xca, 0xfe, 0xba, 0xbe, // fragment data
        1, 2, 3, 4, 5, 6, 7, 8,
    ];

    #[test]
    fn deconstruct() {
        let hbh = ExtHeader::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(hbh.next_header(), protocol::ROUTING);
        assert_eq!(hbh.header_len(), 8);
        assert_eq!(hbh.data(), &[5, 2, 0, 0, 1, 0]);
        let rt = ExtHeader::new_checked(hbh.payload()).unwrap();
        assert_eq!(rt.next_header(), protocol::FRAGMENT);
        assert_eq!(rt.header_len(), 24);
        assert_eq!((rt.routing_type(), rt.segments_left()), (4, 0));
        let fr = FragmentHeader::new_checked(rt.payload()).unwrap();
        assert_eq!(fr.next_header(), protocol::TCP);
        assert_eq!(fr.frag_offset(), 3);
        assert!(fr.more_frags());
        assert_eq!(fr.ident(), 0xcafe_babe);
        assert_eq!(fr.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 48];
        let mut hbh = ExtHeader::new_unchecked(&mut buf[..8]);
        hbh.set_next_header(protocol::ROUTING);
        hbh.set_hdr_ext_len(0);
        buf[2..8].copy_from_slice(&[5, 2, 0, 0, 1, 0]);
        let mut rt = ExtHeader::new_unchecked(&mut buf[8..32]);
        rt.set_next_header(protocol::FRAGMENT);
        rt.set_hdr_ext_len(2);
        buf[10..16].copy_from_slice(&[4, 0, 0, 0, 0, 1]);
        buf[16..32].copy_from_slice(&PACKET_BYTES[16..32]);
        let mut fr = FragmentHeader::new_unchecked(&mut buf[32..40]);
        fr.set_next_header(protocol::TCP);
        fr.set_offset_more(3, true);
        fr.set_ident(0xcafe_babe);
        buf[40..].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(buf, PACKET_BYTES);
    }

    #[test]
    fn repr_emit() {
        let mut buf = [0u8; 40];
        let hbh = OptionsRepr {
            next_header: protocol::ROUTING,
            options: &[5, 2, 0, 0],
        };
        assert_eq!(hbh.buffer_len(), 8);
        hbh.emit(&mut buf[..8]);
        let segs = [0x2001_0db8_0000_0000_0000_0000_0000_0009u128];
        let rt = RoutingRepr::SegmentRouting {
            next_header: protocol::FRAGMENT,
            segments_left: 0,
            flags: 0,
            tag: 1,
            segments: &segs,
        };
        assert_eq!(rt.buffer_len(), 24);
        rt.emit(&mut buf[8..32]);
        let fr = FragmentRepr {
            next_header: protocol::TCP,
            offset: 3,
            more: true,
            ident: 0xcafe_babe,
        };
        fr.emit(&mut buf[32..]);
        assert_eq!(buf[..], PACKET_BYTES[..40]);
    }

    #[test]
    fn repr_parse() {
        let hbh = ExtHeader::new_checked(&PACKET_BYTES[..]).unwrap();
        let o = OptionsRepr::parse(&hbh).unwrap();
        assert_eq!(o.next_header, protocol::ROUTING);
        assert_eq!(o.options, &[5, 2, 0, 0, 1, 0]);
        let rt = ExtHeader::new_checked(hbh.payload()).unwrap();
        let r = RoutingRepr::parse(&rt).unwrap();
        let mut buf = [0u8; 24];
        r.emit(&mut buf);
        assert_eq!(buf[..], PACKET_BYTES[8..32]);
        let fr = FragmentRepr::parse(&FragmentHeader::new_checked(rt.payload()).unwrap()).unwrap();
        assert_eq!(
            fr,
            FragmentRepr {
                next_header: 6,
                offset: 3,
                more: true,
                ident: 0xcafe_babe
            }
        );
    }

    #[test]
    fn padding() {
        // 5 bytes of options: 2 + 5 = 7, one Pad1.
        let mut buf = [0xffu8; 8];
        OptionsRepr {
            next_header: 59,
            options: &[0x1e, 3, 1, 2, 3],
        }
        .emit(&mut buf);
        assert_eq!(buf, [59, 0, 0x1e, 3, 1, 2, 3, 0]);
        // no options: 6 bytes of PadN.
        let mut buf = [0xffu8; 8];
        OptionsRepr {
            next_header: 59,
            options: &[],
        }
        .emit(&mut buf);
        assert_eq!(buf, [59, 0, 1, 4, 0, 0, 0, 0]);
        // 6 bytes of options: exactly 8.
        let o = OptionsRepr {
            next_header: 59,
            options: &[1, 4, 0, 0, 0, 0],
        };
        assert_eq!(o.buffer_len(), 8);
        // 7 bytes: 16 with PadN(7).
        let o = OptionsRepr {
            next_header: 59,
            options: &[0x1e, 5, 1, 2, 3, 4, 5],
        };
        assert_eq!(o.buffer_len(), 16);
        let mut buf = [0xffu8; 16];
        o.emit(&mut buf);
        assert_eq!(buf[9..], [1, 5, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            ExtHeader::new_checked(&PACKET_BYTES[..1]).err(),
            Some(Malformed::ExtHeaderTruncated)
        );
        assert_eq!(
            ExtHeader::new_checked(&PACKET_BYTES[8..31]).err(),
            Some(Malformed::ExtHeaderTruncated)
        );
        assert_eq!(
            FragmentHeader::new_checked(&PACKET_BYTES[32..39]).err(),
            Some(Malformed::ExtHeaderTruncated)
        );
    }
}
