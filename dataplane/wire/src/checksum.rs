//! The Internet checksum (RFC 1071) and the IPv4 / IPv6 pseudo-headers (RFC 793 §3.1,
//! RFC 8200 §8.1) that TCP, UDP and ICMPv6 checksums cover.
//!
//! The parser never verifies checksums: on the hot path it would cost a pass over every
//! payload byte, and the terminator that accepts a packet verifies them anyway. These
//! functions are for emitting (tests, the pcap-fixture generator) and for the views'
//! `verify_checksum`. Every `*_checksum_*` function treats the message's own checksum
//! field as zero, so it can be called on a buffer whose field holds anything.

use crate::protocol;

/// The addresses an upper-layer checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    /// IPv4 source and destination (big-endian `u32`).
    V4 {
        /// Source address.
        src: u32,
        /// Destination address.
        dst: u32,
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: u128,
        /// Destination address.
        dst: u128,
    },
}

impl Pseudo {
    /// From `u128` addresses as in [`crate::Frame`]: both IPv4-mapped → `V4`, else `V6`.
    pub fn from_addrs(src: u128, dst: u128) -> Pseudo {
        if crate::is_ipv4_mapped(src) && crate::is_ipv4_mapped(dst) {
            // Truncation keeps the low 32 bits, which is the IPv4 address.
            Pseudo::V4 {
                src: src as u32,
                dst: dst as u32,
            }
        } else {
            Pseudo::V6 { src, dst }
        }
    }

    /// Ones'-complement partial sum of this pseudo-header for `proto` and `len` bytes.
    pub fn sum(&self, proto: u8, len: u32) -> u32 {
        match *self {
            Pseudo::V4 { src, dst } => pseudo_v4(src, dst, proto, len),
            Pseudo::V6 { src, dst } => pseudo_v6(src, dst, proto, len),
        }
    }
}

/// Fold a 32-bit partial sum to 16 bits.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Ones'-complement partial sum of `data` (an odd final byte is padded with zero).
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        if let &[a, b] = w {
            acc += u64::from(u16::from_be_bytes([a, b]));
        }
    }
    if let &[last] = words.remainder() {
        acc += u64::from(last) << 8;
    }
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    let acc = acc as u32;
    u32::from(fold(acc))
}

/// Add two partial sums.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    u32::from(fold(a.wrapping_add(b & 0xffff).wrapping_add(b >> 16)))
}

/// Partial sum of `data` with the 16-bit field at even offset `field` taken as zero.
pub fn sum_without(data: &[u8], field: usize) -> u32 {
    let (head, tail) = data.split_at(field.min(data.len()));
    combine(sum(head), sum(tail.get(2..).unwrap_or(&[])))
}

/// Partial sum of the IPv4 pseudo-header (src, dst, zero, protocol, length).
pub fn pseudo_v4(src: u32, dst: u32, proto: u8, len: u32) -> u32 {
    let mut s = sum(&src.to_be_bytes());
    s = combine(s, sum(&dst.to_be_bytes()));
    s = combine(s, u32::from(proto));
    combine(s, len)
}

/// Partial sum of the IPv6 pseudo-header (src, dst, upper-layer length, next header).
pub fn pseudo_v6(src: u128, dst: u128, proto: u8, len: u32) -> u32 {
    let mut s = sum(&src.to_be_bytes());
    s = combine(s, sum(&dst.to_be_bytes()));
    s = combine(s, len);
    combine(s, u32::from(proto))
}

/// The checksum to store: complement of the folded sum.
#[inline]
pub fn finish(partial: u32) -> u16 {
    !fold(partial)
}

fn upper(pseudo: Pseudo, proto: u8, msg: &[u8], field: usize) -> u16 {
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    finish(combine(pseudo.sum(proto, len), sum_without(msg, field)))
}

/// TCP checksum of `segment` (header + payload) under `pseudo`.
pub fn tcp_checksum(pseudo: Pseudo, segment: &[u8]) -> u16 {
    upper(pseudo, protocol::TCP, segment, 16)
}

/// UDP checksum of `datagram`; a computed 0 is sent as 0xffff (RFC 768, RFC 8200 §8.1).
pub fn udp_checksum(pseudo: Pseudo, datagram: &[u8]) -> u16 {
    match upper(pseudo, protocol::UDP, datagram, 6) {
        0 => 0xffff,
        c => c,
    }
}

/// ICMPv6 checksum of `message` (RFC 4443 §2.3).
pub fn icmpv6_checksum(src: u128, dst: u128, message: &[u8]) -> u16 {
    upper(Pseudo::V6 { src, dst }, protocol::ICMPV6, message, 2)
}

/// TCP checksum over the IPv6 pseudo-header.
pub fn tcp_checksum_v6(src: u128, dst: u128, segment: &[u8]) -> u16 {
    tcp_checksum(Pseudo::V6 { src, dst }, segment)
}

/// TCP checksum over the IPv4 pseudo-header.
pub fn tcp_checksum_v4(src: u32, dst: u32, segment: &[u8]) -> u16 {
    tcp_checksum(Pseudo::V4 { src, dst }, segment)
}

/// UDP checksum over the IPv6 pseudo-header.
pub fn udp_checksum_v6(src: u128, dst: u128, datagram: &[u8]) -> u16 {
    udp_checksum(Pseudo::V6 { src, dst }, datagram)
}

/// UDP checksum over the IPv4 pseudo-header.
pub fn udp_checksum_v4(src: u32, dst: u32, datagram: &[u8]) -> u16 {
    udp_checksum(Pseudo::V4 { src, dst }, datagram)
}

/// IPv4 header checksum of `header` (IHL × 4 bytes), its checksum field taken as zero.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    finish(sum_without(header, 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn sum_without_skips_field() {
        let a = [1, 2, 0xff, 0xff, 5, 6];
        let b = [1, 2, 0, 0, 5, 6];
        assert_eq!(sum_without(&a, 2), sum(&b));
    }

    #[test]
    fn ipv4_header_known_value() {
        // Wikipedia's IPv4 header checksum example: checksum 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&h), 0xb861);
    }

    #[test]
    fn from_addrs_picks_family() {
        let v4 = crate::ipv4_mapped(0x0a00_0001);
        assert_eq!(
            Pseudo::from_addrs(v4, v4),
            Pseudo::V4 {
                src: 0x0a00_0001,
                dst: 0x0a00_0001
            }
        );
        assert!(matches!(Pseudo::from_addrs(1, v4), Pseudo::V6 { .. }));
    }
}
