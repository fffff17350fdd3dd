//! ICMPv6 messages (RFC 4443) and the Neighbor Discovery messages (RFC 4861) weir's host
//! path handles.
//!
//! The view reads the 4-byte common header and the type-specific fields at fixed offsets
//! (echo id / seq, the error's MTU or pointer, the NDP target); how many bytes each type
//! needs is [`min_len`], used by the parser. [`Repr`] emits the messages the fixtures
//! need: echo, the four errors with a quoted packet, RS, NS and NA with a link-layer
//! address option.

use crate::bytes;
use crate::checksum;
use crate::ethernet::Address;
use crate::Malformed;

/// Message types.
pub mod msg_type {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbor solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbor advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect.
    pub const REDIRECT: u8 = 137;
}

/// Field offsets.
pub mod field {
    use core::ops::Range;
    /// Type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Echo identifier.
    pub const ECHO_IDENT: Range<usize> = 4..6;
    /// Echo sequence number.
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// Errors: unused / MTU (type 2) / pointer (type 4); NA: flags in the first byte.
    pub const PARAM: Range<usize> = 4..8;
    /// Errors: start of the quoted packet; echo: start of the data.
    pub const BODY: usize = 8;
    /// NS / NA / redirect: target address.
    pub const TARGET: Range<usize> = 8..24;
    /// NS / NA: start of options.
    pub const NDP_OPTIONS: usize = 24;
}

/// Length of the common header.
pub const HEADER_LEN: usize = 4;

/// Bytes a message of type `ty` needs before weir reads it: 8 for errors, echo and RS,
/// 16 for RA, 24 for NS / NA, 40 for redirect, 4 for anything else.
#[inline]
pub const fn min_len(ty: u8) -> usize {
    match ty {
        1..=4 | msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY | msg_type::ROUTER_SOLICIT => 8,
        msg_type::ROUTER_ADVERT => 16,
        msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT => 24,
        msg_type::REDIRECT => 40,
        _ => HEADER_LEN,
    }
}

/// NA flag: router.
pub const NA_ROUTER: u8 = 0x80;
/// NA flag: solicited.
pub const NA_SOLICITED: u8 = 0x40;
/// NA flag: override.
pub const NA_OVERRIDE: u8 = 0x20;

/// NDP option type: source link-layer address.
pub const OPT_SOURCE_LLADDR: u8 = 1;
/// NDP option type: target link-layer address.
pub const OPT_TARGET_LLADDR: u8 = 2;

/// A view of an ICMPv6 message.
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

    /// Wrap a buffer and check the lengths.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Malformed> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Icmpv6Truncated` below 4 bytes or below [`min_len`] of the type.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < min_len(self.msg_type()) {
            Err(Malformed::Icmpv6Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TYPE)
    }

    /// Code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// The 32-bit field after the checksum (MTU for Packet Too Big, pointer for
    /// Parameter Problem, NA flags in its top byte).
    #[inline]
    pub fn param(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::PARAM.start)
    }

    /// Target address of NS / NA / redirect.
    #[inline]
    pub fn target_addr(&self) -> u128 {
        bytes::u128_at(self.buffer.as_ref(), field::TARGET.start)
    }

    /// Does the stored checksum match under the IPv6 pseudo-header?
    pub fn verify_checksum(&self, src: u128, dst: u128) -> bool {
        checksum::icmpv6_checksum(src, dst, self.buffer.as_ref()) == self.checksum()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Bytes from offset 8: the quoted packet of an error, the data of an echo.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.buffer.as_ref().get(field::BODY..).unwrap_or(&[])
    }

    /// NS / NA options (from offset 24).
    #[inline]
    pub fn ndp_options(&self) -> &'a [u8] {
        self.buffer
            .as_ref()
            .get(field::NDP_OPTIONS..)
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set type and code.
    #[inline]
    pub fn set_type_code(&mut self, ty: u8, code: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::TYPE, ty);
        bytes::put_u8(self.buffer.as_mut(), field::CODE, code);
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Set the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, value);
    }

    /// Set the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::ECHO_SEQNO.start, value);
    }

    /// Set the 32-bit field after the checksum.
    #[inline]
    pub fn set_param(&mut self, value: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::PARAM.start, value);
    }

    /// Set the NDP target address.
    #[inline]
    pub fn set_target_addr(&mut self, value: u128) {
        bytes::put_u128(self.buffer.as_mut(), field::TARGET.start, value);
    }

    /// Compute and store the checksum.
    pub fn fill_checksum(&mut self, src: u128, dst: u128) {
        let c = checksum::icmpv6_checksum(src, dst, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An owned ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Error (types 1–4) quoting the invoking packet.
    Error {
        /// Type (1 destination unreachable, 2 packet too big, 3 time exceeded,
        /// 4 parameter problem).
        ty: u8,
        /// Code.
        code: u8,
        /// MTU (type 2), pointer (type 4), 0 otherwise.
        param: u32,
        /// The quoted packet, from its IPv6 header on.
        quote: &'a [u8],
    },
    /// Router solicitation.
    RouterSolicit {
        /// Source link-layer address option.
        source_lladdr: Option<Address>,
    },
    /// Neighbor solicitation.
    NeighborSolicit {
        /// Target address.
        target: u128,
        /// Source link-layer address option.
        source_lladdr: Option<Address>,
    },
    /// Neighbor advertisement.
    NeighborAdvert {
        /// Flags ([`NA_ROUTER`], [`NA_SOLICITED`], [`NA_OVERRIDE`]).
        flags: u8,
        /// Target address.
        target: u128,
        /// Target link-layer address option.
        target_lladdr: Option<Address>,
    },
}

/// The first link-layer address option of `ty` in NDP `options`.
fn lladdr_option(mut options: &[u8], ty: u8) -> Option<Address> {
    // Bounded: every step consumes at least 8 bytes.
    while let [t, len, ..] = *options {
        let n = usize::from(len) * 8;
        if n == 0 {
            return None;
        }
        if t == ty && len == 1 {
            return Some(bytes::mac_at(options, 2));
        }
        options = options.get(n..)?;
    }
    None
}

impl<'a> Repr<'a> {
    /// Packet Too Big quoting `quote`.
    pub const fn packet_too_big(mtu: u32, quote: &'a [u8]) -> Repr<'a> {
        Repr::Error {
            ty: 2,
            code: 0,
            param: mtu,
            quote,
        }
    }

    /// Read a view; `None` for types this `Repr` does not represent, or when truncated.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Option<Repr<'a>> {
        packet.check_len().ok()?;
        Some(match packet.msg_type() {
            ty @ 1..=4 => Repr::Error {
                ty,
                code: packet.msg_code(),
                param: packet.param(),
                quote: packet.body(),
            },
            msg_type::ECHO_REQUEST => Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.body(),
            },
            msg_type::ECHO_REPLY => Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.body(),
            },
            msg_type::ROUTER_SOLICIT => Repr::RouterSolicit {
                source_lladdr: lladdr_option(packet.body(), OPT_SOURCE_LLADDR),
            },
            msg_type::NEIGHBOR_SOLICIT => Repr::NeighborSolicit {
                target: packet.target_addr(),
                source_lladdr: lladdr_option(packet.ndp_options(), OPT_SOURCE_LLADDR),
            },
            msg_type::NEIGHBOR_ADVERT => Repr::NeighborAdvert {
                flags: (packet.param() >> 24) as u8,
                target: packet.target_addr(),
                target_lladdr: lladdr_option(packet.ndp_options(), OPT_TARGET_LLADDR),
            },
            _ => return None,
        })
    }

    /// Emitted length.
    pub const fn buffer_len(&self) -> usize {
        const fn opt(a: &Option<Address>) -> usize {
            if a.is_some() {
                8
            } else {
                0
            }
        }
        match self {
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => 8 + data.len(),
            Repr::Error { quote, .. } => 8 + quote.len(),
            Repr::RouterSolicit { source_lladdr } => 8 + opt(source_lladdr),
            Repr::NeighborSolicit { source_lladdr, .. } => 24 + opt(source_lladdr),
            Repr::NeighborAdvert { target_lladdr, .. } => 24 + opt(target_lladdr),
        }
    }

    /// Write the message with its checksum (IPv6 pseudo-header `src`, `dst`); panics if
    /// `buf` is shorter than `buffer_len()`.
    pub fn emit(&self, buf: &mut [u8], src: u128, dst: u128) {
        let len = self.buffer_len();
        let buf = bytes::emit_buf(buf, len, "icmpv6::Repr");
        buf.fill(0);
        let lladdr = |buf: &mut [u8], at: usize, ty: u8, a: &Option<Address>| {
            if let Some(mac) = a {
                buf[at] = ty;
                buf[at + 1] = 1;
                buf[at + 2..at + 8].copy_from_slice(mac);
            }
        };
        let mut p = Packet::new_unchecked(&mut *buf);
        match *self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let ty = if matches!(self, Repr::EchoRequest { .. }) {
                    msg_type::ECHO_REQUEST
                } else {
                    msg_type::ECHO_REPLY
                };
                p.set_type_code(ty, 0);
                p.set_echo_ident(ident);
                p.set_echo_seq_no(seq_no);
                buf[8..].copy_from_slice(data);
            }
            Repr::Error {
                ty,
                code,
                param,
                quote,
            } => {
                p.set_type_code(ty, code);
                p.set_param(param);
                buf[8..].copy_from_slice(quote);
            }
            Repr::RouterSolicit { ref source_lladdr } => {
                p.set_type_code(msg_type::ROUTER_SOLICIT, 0);
                lladdr(buf, 8, OPT_SOURCE_LLADDR, source_lladdr);
            }
            Repr::NeighborSolicit {
                target,
                ref source_lladdr,
            } => {
                p.set_type_code(msg_type::NEIGHBOR_SOLICIT, 0);
                p.set_target_addr(target);
                lladdr(buf, 24, OPT_SOURCE_LLADDR, source_lladdr);
            }
            Repr::NeighborAdvert {
                flags,
                target,
                ref target_lladdr,
            } => {
                p.set_type_code(msg_type::NEIGHBOR_ADVERT, 0);
                p.set_param(u32::from(flags) << 24);
                p.set_target_addr(target);
                lladdr(buf, 24, OPT_TARGET_LLADDR, target_lladdr);
            }
        }
        Packet::new_unchecked(buf).fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: u128 = 0xfe80_0000_0000_0000_0000_0000_0000_0001;
    const DST: u128 = 0xff02_0000_0000_0000_0000_0001_ff00_0002;
    const TARGET: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0002;

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 32] = [
        0x87, 0x00, 0x00, 0x00, // NS, checksum (filled below)
        0x00, 0x00, 0x00, 0x00, // reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // target
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source lladdr
    ];

    fn golden() -> [u8; 32] {
        let mut b = PACKET_BYTES;
        let c = checksum::icmpv6_checksum(SRC, DST, &b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn deconstruct() {
        let b = golden();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (135, 0));
        assert_eq!(p.target_addr(), TARGET);
        assert!(p.verify_checksum(SRC, DST));
        assert_eq!(p.ndp_options(), &PACKET_BYTES[24..]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 32];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_type_code(135, 0);
        p.set_param(0);
        p.set_target_addr(TARGET);
        buf[24..].copy_from_slice(&PACKET_BYTES[24..]);
        Packet::new_unchecked(&mut buf[..]).fill_checksum(SRC, DST);
        assert_eq!(buf, golden());
    }

    #[test]
    fn repr_round_trip() {
        let b = golden();
        let repr = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr::NeighborSolicit {
                target: TARGET,
                source_lladdr: Some([2, 0, 0, 0, 0, 1])
            }
        );
        let mut out = [0u8; 32];
        repr.emit(&mut out, SRC, DST);
        assert_eq!(out, b);
    }

    #[test]
    fn every_repr_round_trips() {
        let quote = [0x60u8; 48];
        let reprs = [
            Repr::EchoRequest {
                ident: 1,
                seq_no: 2,
                data: b"ping",
            },
            Repr::EchoReply {
                ident: 1,
                seq_no: 2,
                data: b"",
            },
            Repr::packet_too_big(1280, &quote),
            Repr::Error {
                ty: 4,
                code: 1,
                param: 40,
                quote: &quote[..10],
            },
            Repr::RouterSolicit {
                source_lladdr: None,
            },
            Repr::RouterSolicit {
                source_lladdr: Some([2, 0, 0, 0, 0, 9]),
            },
            Repr::NeighborSolicit {
                target: TARGET,
                source_lladdr: None,
            },
            Repr::NeighborAdvert {
                flags: NA_SOLICITED | NA_OVERRIDE,
                target: TARGET,
                target_lladdr: Some([2, 0, 0, 0, 0, 3]),
            },
        ];
        for r in reprs {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf, SRC, DST);
            let p = Packet::new_checked(&buf[..]).unwrap();
            assert!(p.verify_checksum(SRC, DST));
            assert_eq!(Repr::parse(&p), Some(r));
        }
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..3]).err(),
            Some(Malformed::Icmpv6Truncated)
        );
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..23]).err(),
            Some(Malformed::Icmpv6Truncated)
        );
        assert_eq!(
            Packet::new_checked(&[200u8, 0, 0, 0][..]).map(|p| p.msg_type()),
            Ok(200)
        );
    }
}
