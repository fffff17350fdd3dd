//! weir's wire formats: zero-copy, panic-free views of the headers weir classifies, owned
//! representations that emit them, and [`parse_frame`], the one-pass summary the
//! classifier reads.
//!
//! Layout follows smoltcp's `wire` modules: each header module has a view
//! `Packet<T: AsRef<[u8]>>` (field ranges in `mod field`, `#[inline]` getters, setters where
//! `T: AsMut<[u8]>`) and an owned `Repr` with `parse` / `buffer_len` / `emit`. Unlike
//! smoltcp, `check_len` returns the [`Malformed`] cause the classifier reports, so the
//! parser can use `?` and every length rule lives in one place. Every getter reads through
//! `slice::get`, so even an unchecked view cannot panic on a read; after `check_len`
//! succeeds the bounds checks are known to pass and the optimiser drops most of them.
//!
//! `emit` (used by tests and the fixture generator, never on received data) panics when the
//! buffer is shorter than `buffer_len()`, as in smoltcp.
#![deny(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
mod parse;
pub mod tcp;
pub mod udp;

pub use checksum::Pseudo;
pub use frame::{
    ipv4_mapped, is_ipv4_mapped, parse_common, parse_cut, parse_frame, parse_network,
    peek_addresses, peek_network, quote_of, tcp_flags, Fragment, Frame, Icmpv6, Ip, IpVersion,
    Malformed, Net, Quote, Tcp, Transport,
};
pub use parse::{link_layer, LinkLayer};

/// IP protocol numbers (IPv4 protocol / IPv6 next header) weir names.
pub mod protocol {
    /// IPv6 Hop-by-Hop Options header.
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 Routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload.
    pub const ESP: u8 = 50;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header.
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 Destination Options header.
    pub const DST_OPTS: u8 = 60;
}

/// Big-endian reads and writes that never panic: out-of-range reads give 0, out-of-range
/// writes do nothing. Views call them only at offsets `check_len` established.
pub(crate) mod bytes {
    #[inline(always)]
    pub fn u8_at(data: &[u8], at: usize) -> u8 {
        data.get(at).copied().unwrap_or(0)
    }

    #[inline(always)]
    pub fn u16_at(data: &[u8], at: usize) -> u16 {
        match data.get(at..at.saturating_add(2)) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    }

    #[inline(always)]
    pub fn u32_at(data: &[u8], at: usize) -> u32 {
        match data.get(at..at.saturating_add(4)) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
            _ => 0,
        }
    }

    #[inline(always)]
    pub fn u128_at(data: &[u8], at: usize) -> u128 {
        match data
            .get(at..at.saturating_add(16))
            .map(<[u8; 16]>::try_from)
        {
            Some(Ok(b)) => u128::from_be_bytes(b),
            _ => 0,
        }
    }

    #[inline(always)]
    pub fn mac_at(data: &[u8], at: usize) -> [u8; 6] {
        match data.get(at..at.saturating_add(6)).map(<[u8; 6]>::try_from) {
            Some(Ok(b)) => b,
            _ => [0; 6],
        }
    }

    #[inline(always)]
    pub fn put(data: &mut [u8], at: usize, value: &[u8]) {
        if let Some(dst) = data.get_mut(at..at.saturating_add(value.len())) {
            dst.copy_from_slice(value);
        }
    }

    #[inline(always)]
    pub fn put_u8(data: &mut [u8], at: usize, value: u8) {
        if let Some(b) = data.get_mut(at) {
            *b = value;
        }
    }

    #[inline(always)]
    pub fn put_u16(data: &mut [u8], at: usize, value: u16) {
        put(data, at, &value.to_be_bytes());
    }

    #[inline(always)]
    pub fn put_u32(data: &mut [u8], at: usize, value: u32) {
        put(data, at, &value.to_be_bytes());
    }

    #[inline(always)]
    pub fn put_u128(data: &mut [u8], at: usize, value: u128) {
        put(data, at, &value.to_be_bytes());
    }

    /// The buffer `emit` writes into, checked once with a message a person can act on.
    #[inline]
    pub fn emit_buf<'a>(buf: &'a mut [u8], len: usize, what: &str) -> &'a mut [u8] {
        let have = buf.len();
        match buf.get_mut(..len) {
            Some(b) => b,
            None => panic!("{what}::emit needs {len} bytes, buffer has {have}"),
        }
    }
}
