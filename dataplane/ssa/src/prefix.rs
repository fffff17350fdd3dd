//! [`Prefix`]: an address prefix in one 128-bit space.
//!
//! IPv6 addresses are big-endian `u128`s. IPv4 is carried IPv4-mapped (`::ffff:a.b.c.d`,
//! RFC 4291 section 2.5.5.2), so `192.0.2.0/24` is stored as the mapped prefix of length
//! 96 + 24 = 120. One representation means one `contains`, one lookup table and one slice
//! arithmetic for both families; text input and output still use the natural IPv4 form.
//!
//! Rejected: an enum `V4(Ipv4Net) | V6(Ipv6Net)` (every hot-path operation would branch on the
//! family, and the rules' bit positions would need two meanings), and `std::net::IpAddr` on
//! the packet path (a tagged enum again). `Prefix::new` masks host bits instead of refusing
//! them, because an operator writing `2001:db8::1/64` for "the /64 of this host" is common and
//! the masked meaning is unambiguous; `Display` always shows the masked form.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::SsaError;

/// `::ffff:0:0`, the IPv4-mapped block (RFC 4291 section 2.5.5.2).
const IPV4_MAPPED_BASE: u128 = 0xffff_0000_0000;

/// The IPv4-mapped IPv6 address `::ffff:a.b.c.d` of an IPv4 address given as a big-endian `u32`.
#[inline]
pub const fn ipv4_mapped(addr: u32) -> u128 {
    IPV4_MAPPED_BASE | addr as u128
}

/// An address prefix: `addr` with host bits zero, `len` in 0..=128 (IPv4 prefixes are mapped,
/// so their `len` is 96 + the IPv4 length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// Network address, host bits zero.
    pub addr: u128,
    /// Prefix length in the 128-bit space.
    pub len: u8,
}

impl Prefix {
    /// `::ffff:0:0/96`, the whole IPv4-mapped space.
    pub const IPV4_MAPPED: Prefix = Prefix {
        addr: IPV4_MAPPED_BASE,
        len: 96,
    };

    /// A prefix of `addr` (host bits are masked off); `len` above 128 is an error.
    pub fn new(addr: u128, len: u8) -> Result<Prefix, SsaError> {
        if len > 128 {
            return Err(SsaError::PrefixLen { len });
        }
        Ok(Prefix {
            addr: addr & Self::mask(len),
            len,
        })
    }

    /// An IPv4 prefix (`addr` big-endian, `len` 0..=32), stored IPv4-mapped.
    pub fn from_ipv4(addr: u32, len: u8) -> Result<Prefix, SsaError> {
        if len > 32 {
            return Err(SsaError::Ipv4PrefixLen { len });
        }
        Prefix::new(ipv4_mapped(addr), 96 + len)
    }

    /// The netmask of a prefix length: `len` leading one bits (`len` ≥ 128 gives all ones).
    #[inline]
    pub const fn mask(len: u8) -> u128 {
        if len == 0 {
            0
        } else if len >= 128 {
            u128::MAX
        } else {
            u128::MAX << (128 - len as u32)
        }
    }

    /// The bits after the prefix (the complement of the netmask).
    #[inline]
    pub const fn host_mask(&self) -> u128 {
        !Self::mask(self.len)
    }

    /// Whether `addr` lies inside this prefix.
    #[inline]
    pub const fn contains(&self, addr: u128) -> bool {
        addr & Self::mask(self.len) == self.addr
    }

    /// Whether `other` lies entirely inside this prefix.
    #[inline]
    pub const fn covers(&self, other: &Prefix) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// Whether this is an IPv4 prefix: inside `::ffff:0:0/96` with `len` ≥ 96.
    #[inline]
    pub const fn is_ipv4(&self) -> bool {
        Self::IPV4_MAPPED.covers(self)
    }

    /// Whether the two prefixes share any address (one covers the other).
    #[inline]
    pub const fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }
}

impl fmt::Display for Prefix {
    /// `2001:db8::/32`, or `192.0.2.0/24` for IPv4-mapped prefixes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ipv4() {
            // Truncation intended: the mapped block's low 32 bits are the IPv4 address.
            #[allow(clippy::cast_possible_truncation)]
            let v4 = Ipv4Addr::from(self.addr as u32);
            write!(f, "{}/{}", v4, self.len - 96)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.addr), self.len)
        }
    }
}

impl FromStr for Prefix {
    type Err = SsaError;

    /// Parses `2001:db8::/32` or `192.0.2.0/24` (stored mapped). Host bits are masked off.
    fn from_str(text: &str) -> Result<Prefix, SsaError> {
        let bad = |reason| SsaError::BadPrefix {
            text: text.to_owned(),
            reason,
        };
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| bad("missing '/' before the prefix length"))?;
        let len = parse_decimal(len).ok_or_else(|| bad("prefix length is not a decimal number"))?;
        if let Ok(v6) = addr.parse::<Ipv6Addr>() {
            let len = u8::try_from(len)
                .ok()
                .filter(|&l| l <= 128)
                .ok_or_else(|| bad("IPv6 prefix length is above 128"))?;
            Prefix::new(u128::from(v6), len)
        } else if let Ok(v4) = addr.parse::<Ipv4Addr>() {
            let len = u8::try_from(len)
                .ok()
                .filter(|&l| l <= 32)
                .ok_or_else(|| bad("IPv4 prefix length is above 32"))?;
            Prefix::from_ipv4(u32::from(v4), len)
        } else {
            Err(bad("not an IPv4 or IPv6 address"))
        }
    }
}

/// A decimal number of 1 to 3 ASCII digits (no sign, no spaces) that fits a `u8`.
/// A prefix length as written: ASCII digits only (no sign, no spaces), at most 9 of them,
/// so that `640` is a number that is out of range, not "not a number".
pub(crate) fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Prefix, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        text.parse().unwrap()
    }

    #[test]
    fn mask_edges() {
        assert_eq!(Prefix::mask(0), 0);
        assert_eq!(Prefix::mask(1), 1 << 127);
        assert_eq!(Prefix::mask(64), 0xffff_ffff_ffff_ffff_0000_0000_0000_0000);
        assert_eq!(Prefix::mask(128), u128::MAX);
        assert_eq!(Prefix::mask(200), u128::MAX);
    }

    #[test]
    fn new_masks_host_bits_and_rejects_long_len() {
        assert_eq!(
            Prefix::new(u128::MAX, 8).unwrap(),
            Prefix {
                addr: 0xff << 120,
                len: 8
            }
        );
        assert_eq!(Prefix::new(0, 129), Err(SsaError::PrefixLen { len: 129 }));
        assert_eq!(Prefix::new(5, 0).unwrap(), Prefix { addr: 0, len: 0 });
        assert_eq!(
            Prefix::from_ipv4(0, 33),
            Err(SsaError::Ipv4PrefixLen { len: 33 })
        );
    }

    #[test]
    fn contains_edges() {
        let all = Prefix::new(0, 0).unwrap();
        assert!(all.contains(0) && all.contains(u128::MAX));
        let host = Prefix::new(42, 128).unwrap();
        assert!(host.contains(42) && !host.contains(43));
        let doc = p("2001:db8::/32");
        assert!(doc.contains(0x2001_0db8_ffff_0000_0000_0000_0000_0001));
        assert!(!doc.contains(0x2001_0db9_0000_0000_0000_0000_0000_0000));
    }

    #[test]
    fn ipv4_is_mapped() {
        let v4 = p("192.0.2.0/24");
        assert_eq!(
            v4,
            Prefix {
                addr: 0xffff_c000_0200,
                len: 120
            }
        );
        assert!(v4.is_ipv4());
        assert!(v4.contains(ipv4_mapped(0xc000_02fe)));
        assert!(
            !v4.contains(0xc000_02fe),
            "an unmapped u128 is not the IPv4 address"
        );
        assert_eq!(v4.to_string(), "192.0.2.0/24");
        assert_eq!(p("0.0.0.0/0"), Prefix::IPV4_MAPPED);
        assert_eq!(Prefix::IPV4_MAPPED.to_string(), "0.0.0.0/0");
        // The mapped form written as IPv6 is the same prefix, shown the natural way.
        assert_eq!(p("::ffff:192.0.2.0/120"), v4);
        assert!(!p("::/0").is_ipv4());
        assert!(!p("::ffff:0:0/95").is_ipv4());
    }

    #[test]
    fn parse_and_display_round_trip() {
        for text in [
            "2001:db8::/32",
            "2001:db8:5::/64",
            "::/0",
            "::1/128",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "255.255.255.255/32",
        ] {
            assert_eq!(p(text).to_string(), text);
        }
        assert_eq!(p("2001:db8::1/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn parse_errors_name_the_text() {
        for (text, reason) in [
            ("2001:db8::", "missing '/'"),
            ("2001:db8::/129", "above 128"),
            ("10.0.0.0/33", "above 32"),
            ("10.0.0.0/+8", "decimal"),
            ("10.0.0/8", "not an IPv4 or IPv6"),
            ("2001:db8::/", "decimal"),
        ] {
            let msg = text.parse::<Prefix>().unwrap_err().to_string();
            assert!(msg.contains(text) && msg.contains(reason), "{text}: {msg}");
        }
    }

    #[test]
    fn covers_and_overlaps() {
        let a = p("2001:db8::/32");
        let b = p("2001:db8:5::/48");
        assert!(a.covers(&b) && !b.covers(&a) && a.overlaps(&b) && b.overlaps(&a));
        assert!(!b.overlaps(&p("2001:db8:6::/48")));
    }
}
