//! ARP (RFC 826) for Ethernet / IPv4.
//!
//! weir answers nothing over IPv4 but hands ARP to the host path, which needs the
//! operation and the target protocol address. The fixed offsets of the view are those of
//! Ethernet / IPv4 ARP (HLEN 6, PLEN 4); other hardware or protocol types are reported
//! with their operation only, so `check_len` requires just the 8-byte fixed part and the
//! 28-byte rule for Ethernet / IPv4 is [`Packet::check_eth_ipv4`].

use crate::bytes;
use crate::ethernet::Address;
use crate::Malformed;

/// Field offsets (the address fields are those of Ethernet / IPv4 ARP).
pub mod field {
    use core::ops::Range;
    /// Hardware type.
    pub const HTYPE: Range<usize> = 0..2;
    /// Protocol type.
    pub const PTYPE: Range<usize> = 2..4;
    /// Hardware address length.
    pub const HLEN: usize = 4;
    /// Protocol address length.
    pub const PLEN: usize = 5;
    /// Operation.
    pub const OPER: Range<usize> = 6..8;
    /// Sender hardware address.
    pub const SHA: Range<usize> = 8..14;
    /// Sender protocol address.
    pub const SPA: Range<usize> = 14..18;
    /// Target hardware address.
    pub const THA: Range<usize> = 18..24;
    /// Target protocol address.
    pub const TPA: Range<usize> = 24..28;
}

/// Length of the fixed part.
pub const FIXED_LEN: usize = 8;
/// Length of an Ethernet / IPv4 ARP packet.
pub const ETH_IPV4_LEN: usize = 28;

/// Operation: request.
pub const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub const OP_REPLY: u16 = 2;

/// A view of an ARP packet.
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

    /// Wrap a buffer and check the fixed part.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Malformed> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `ArpTruncated` below 8 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < FIXED_LEN {
            Err(Malformed::ArpTruncated)
        } else {
            Ok(())
        }
    }

    /// Is this Ethernet / IPv4 ARP (HTYPE 1, PTYPE 0x0800, HLEN 6, PLEN 4)?
    #[inline]
    pub fn is_eth_ipv4(&self) -> bool {
        self.hardware_type() == 1
            && self.protocol_type() == crate::ethernet::ethertype::IPV4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }

    /// For Ethernet / IPv4 ARP, `ArpTruncated` below 28 bytes.
    #[inline]
    pub fn check_eth_ipv4(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < ETH_IPV4_LEN {
            Err(Malformed::ArpTruncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type.
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::HTYPE.start)
    }

    /// Protocol type.
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::PTYPE.start)
    }

    /// Hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::HLEN)
    }

    /// Protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::PLEN)
    }

    /// Operation.
    #[inline]
    pub fn operation(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::OPER.start)
    }

    /// Sender hardware address (Ethernet / IPv4 layout).
    #[inline]
    pub fn source_hardware_addr(&self) -> Address {
        bytes::mac_at(self.buffer.as_ref(), field::SHA.start)
    }

    /// Sender protocol address (Ethernet / IPv4 layout).
    #[inline]
    pub fn source_protocol_addr(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::SPA.start)
    }

    /// Target hardware address (Ethernet / IPv4 layout).
    #[inline]
    pub fn target_hardware_addr(&self) -> Address {
        bytes::mac_at(self.buffer.as_ref(), field::THA.start)
    }

    /// Target protocol address (Ethernet / IPv4 layout).
    #[inline]
    pub fn target_protocol_addr(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::TPA.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set hardware type, protocol type and their lengths.
    #[inline]
    pub fn set_types(&mut self, htype: u16, ptype: u16, hlen: u8, plen: u8) {
        let b = self.buffer.as_mut();
        bytes::put_u16(b, field::HTYPE.start, htype);
        bytes::put_u16(b, field::PTYPE.start, ptype);
        bytes::put_u8(b, field::HLEN, hlen);
        bytes::put_u8(b, field::PLEN, plen);
    }

    /// Set the operation.
    #[inline]
    pub fn set_operation(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::OPER.start, value);
    }

    /// Set the sender hardware address.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, value: Address) {
        bytes::put(self.buffer.as_mut(), field::SHA.start, &value);
    }

    /// Set the sender protocol address.
    #[inline]
    pub fn set_source_protocol_addr(&mut self, value: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::SPA.start, value);
    }

    /// Set the target hardware address.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, value: Address) {
        bytes::put(self.buffer.as_mut(), field::THA.start, &value);
    }

    /// Set the target protocol address.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, value: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::TPA.start, value);
    }
}

/// An owned Ethernet / IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Operation (1 request, 2 reply).
    pub op: u16,
    /// Sender hardware address.
    pub sha: Address,
    /// Sender protocol address.
    pub spa: u32,
    /// Target hardware address.
    pub tha: Address,
    /// Target protocol address.
    pub tpa: u32,
}

impl Repr {
    /// A request from (`sha`, `spa`) for `tpa`.
    pub const fn request(sha: Address, spa: u32, tpa: u32) -> Repr {
        Repr {
            op: OP_REQUEST,
            sha,
            spa,
            tha: [0; 6],
            tpa,
        }
    }

    /// Read a view; `ArpTruncated` unless it is a complete Ethernet / IPv4 packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Malformed> {
        packet.check_len()?;
        packet.check_eth_ipv4()?;
        if !packet.is_eth_ipv4() {
            return Err(Malformed::ArpTruncated);
        }
        Ok(Repr {
            op: packet.operation(),
            sha: packet.source_hardware_addr(),
            spa: packet.source_protocol_addr(),
            tha: packet.target_hardware_addr(),
            tpa: packet.target_protocol_addr(),
        })
    }

    /// 28.
    pub const fn buffer_len(&self) -> usize {
        ETH_IPV4_LEN
    }

    /// Write the packet into the first 28 bytes of `buf`; panics if shorter.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Packet::new_unchecked(bytes::emit_buf(buf, ETH_IPV4_LEN, "arp::Repr"));
        p.set_types(1, crate::ethernet::ethertype::IPV4, 6, 4);
        p.set_operation(self.op);
        p.set_source_hardware_addr(self.sha);
        p.set_source_protocol_addr(self.spa);
        p.set_target_hardware_addr(self.tha);
        p.set_target_protocol_addr(self.tpa);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet/IPv4 request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x01, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x02, // target
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert!(p.is_eth_ipv4());
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!(p.source_hardware_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p.source_protocol_addr(), 0xc000_0201);
        assert_eq!(p.target_hardware_addr(), [0; 6]);
        assert_eq!(p.target_protocol_addr(), 0xc000_0202);
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 28];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_types(1, 0x0800, 6, 4);
        p.set_operation(1);
        p.set_source_hardware_addr([2, 0, 0, 0, 0, 1]);
        p.set_source_protocol_addr(0xc000_0201);
        p.set_target_hardware_addr([0; 6]);
        p.set_target_protocol_addr(0xc000_0202);
        assert_eq!(buf, PACKET_BYTES);
    }

    #[test]
    fn repr_round_trip() {
        let repr = Repr::parse(&Packet::new_checked(&PACKET_BYTES[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr::request([2, 0, 0, 0, 0, 1], 0xc000_0201, 0xc000_0202)
        );
        let mut out = [0u8; 28];
        repr.emit(&mut out);
        assert_eq!(out, PACKET_BYTES);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..7]).err(),
            Some(Malformed::ArpTruncated)
        );
        let p = Packet::new_checked(&PACKET_BYTES[..27]).unwrap();
        assert_eq!(p.check_eth_ipv4(), Err(Malformed::ArpTruncated));
    }
}
