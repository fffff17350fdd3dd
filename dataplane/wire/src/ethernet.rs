//! Ethernet II headers and 802.1Q / 802.1ad VLAN tags.
//!
//! A tag is its own view ([`VlanTag`]) rather than an optional part of the Ethernet view:
//! the parser walks tags one at a time (at most two, DESIGN.md "Headers"), and an emitter
//! composes a QinQ frame as Ethernet(0x88a8) + tag(0x8100) + tag(inner EtherType).

use crate::bytes;
use crate::Malformed;

/// EtherType values weir names.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
}

/// A MAC address.
pub type Address = [u8; 6];

/// Field offsets of the Ethernet header and of a VLAN tag.
pub mod field {
    use core::ops::Range;
    /// Destination MAC.
    pub const DST: Range<usize> = 0..6;
    /// Source MAC.
    pub const SRC: Range<usize> = 6..12;
    /// EtherType (or TPID of the first tag).
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Start of the payload.
    pub const PAYLOAD: usize = 14;
    /// VLAN tag: priority, DEI, VLAN id.
    pub const TAG_TCI: Range<usize> = 0..2;
    /// VLAN tag: the EtherType that follows.
    pub const TAG_ETHERTYPE: Range<usize> = 2..4;
    /// Start of what follows a tag.
    pub const TAG_PAYLOAD: usize = 4;
}

/// Length of the Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of a VLAN tag.
pub const TAG_LEN: usize = field::TAG_PAYLOAD;

/// A view of an Ethernet II frame.
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

    /// `EthernetTruncated` when shorter than 14 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Malformed::EthernetTruncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    #[inline]
    pub fn dst_addr(&self) -> Address {
        bytes::mac_at(self.buffer.as_ref(), field::DST.start)
    }

    /// Source MAC.
    #[inline]
    pub fn src_addr(&self) -> Address {
        bytes::mac_at(self.buffer.as_ref(), field::SRC.start)
    }

    /// EtherType (or TPID of the first VLAN tag).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ETHERTYPE.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the destination MAC.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Address) {
        bytes::put(self.buffer.as_mut(), field::DST.start, &addr);
    }

    /// Set the source MAC.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Address) {
        bytes::put(self.buffer.as_mut(), field::SRC.start, &addr);
    }

    /// Set the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::ETHERTYPE.start, value);
    }

    /// Everything after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..)
            .unwrap_or(&mut [])
    }
}

/// A view of one 802.1Q / 802.1ad tag (the 4 bytes after a 0x8100 / 0x88a8 TPID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wrap a buffer without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> VlanTag<T> {
        VlanTag { buffer }
    }

    /// Wrap a buffer and check that the tag fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<VlanTag<T>, Malformed> {
        let t = VlanTag::new_unchecked(buffer);
        t.check_len()?;
        Ok(t)
    }

    /// `VlanTruncated` when shorter than 4 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < TAG_LEN {
            Err(Malformed::VlanTruncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Tag control information (PCP, DEI, VID).
    #[inline]
    pub fn tci(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::TAG_TCI.start)
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType after the tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::TAG_ETHERTYPE.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VlanTag<&'a T> {
    /// Everything after the 4-byte tag.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.buffer
            .as_ref()
            .get(field::TAG_PAYLOAD..)
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Set the tag control information.
    #[inline]
    pub fn set_tci(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::TAG_TCI.start, value);
    }

    /// Set the EtherType after the tag.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::TAG_ETHERTYPE.start, value);
    }
}

/// An owned Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source MAC.
    pub src: Address,
    /// Destination MAC.
    pub dst: Address,
    /// EtherType (0x8100 / 0x88a8 when a tag follows).
    pub ethertype: u16,
}

impl Repr {
    /// Read a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Malformed> {
        packet.check_len()?;
        Ok(Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            ethertype: packet.ethertype(),
        })
    }

    /// 14.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header into the first 14 bytes of `buf`; panics if `buf` is shorter.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Packet::new_unchecked(bytes::emit_buf(buf, HEADER_LEN, "ethernet::Repr"));
        p.set_dst_addr(self.dst);
        p.set_src_addr(self.src);
        p.set_ethertype(self.ethertype);
    }
}

/// An owned VLAN tag (the TPID is the EtherType before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRepr {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id (12 bits).
    pub vid: u16,
    /// EtherType after the tag.
    pub ethertype: u16,
}

impl VlanRepr {
    /// A tag with priority 0 and DEI clear.
    pub const fn new(vid: u16, ethertype: u16) -> VlanRepr {
        VlanRepr {
            pcp: 0,
            dei: false,
            vid,
            ethertype,
        }
    }

    /// Read a checked view.
    pub fn parse<T: AsRef<[u8]>>(tag: &VlanTag<T>) -> Result<VlanRepr, Malformed> {
        tag.check_len()?;
        Ok(VlanRepr {
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
            ethertype: tag.ethertype(),
        })
    }

    /// 4.
    pub const fn buffer_len(&self) -> usize {
        TAG_LEN
    }

    /// Write the tag into the first 4 bytes of `buf`; panics if `buf` is shorter.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut t = VlanTag::new_unchecked(bytes::emit_buf(buf, TAG_LEN, "ethernet::VlanRepr"));
        let tci =
            (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0xfff);
        t.set_tci(tci);
        t.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKET_BYTES: [u8; 22] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src
        0x81, 0x00, // VLAN
        0xa0, 0x64, // pcp 5, vid 100
        0x86, 0xdd, // IPv6
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.dst_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p.src_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(p.ethertype(), ethertype::VLAN);
        let t = VlanTag::new_checked(p.payload()).unwrap();
        assert_eq!((t.pcp(), t.dei(), t.vid()), (5, false, 100));
        assert_eq!(t.ethertype(), ethertype::IPV6);
        assert_eq!(t.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 22];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_dst_addr([2, 0, 0, 0, 0, 1]);
        p.set_src_addr([2, 0, 0, 0, 0, 2]);
        p.set_ethertype(ethertype::VLAN);
        let mut t = VlanTag::new_unchecked(p.payload_mut());
        t.set_tci(0xa064);
        t.set_ethertype(ethertype::IPV6);
        buf[18..].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, PACKET_BYTES);
    }

    #[test]
    fn repr_round_trip() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        let eth = Repr::parse(&p).unwrap();
        let tag = VlanRepr::parse(&VlanTag::new_checked(p.payload()).unwrap()).unwrap();
        assert_eq!(
            tag,
            VlanRepr {
                pcp: 5,
                dei: false,
                vid: 100,
                ethertype: ethertype::IPV6
            }
        );
        let mut buf = [0u8; 18];
        eth.emit(&mut buf);
        tag.emit(&mut buf[14..]);
        assert_eq!(buf[..], PACKET_BYTES[..18]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..13]).err(),
            Some(Malformed::EthernetTruncated)
        );
        assert_eq!(
            VlanTag::new_checked(&PACKET_BYTES[14..17]).err(),
            Some(Malformed::VlanTruncated)
        );
    }
}
