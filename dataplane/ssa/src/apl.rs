//! The APL (address prefix list) presentation format of RFC 3123: the text a service publishes
//! in DNS and an operator writes in `[service] apl = "..."`.
//!
//! RFC 3123, section 5 (Zone File Syntax):
//!
//! ```text
//!    The textual representation of an APL RR in a DNS zone file is as
//!    follows:
//!
//!    <owner>   IN   <TTL>   APL   {[!]afi:address/prefix}*
//!
//!    The data consists of zero or more strings of the address family
//!    indicator <afi>, immediately followed by a colon ":", an address,
//!    immediately followed by the "/" character, immediately followed by a
//!    decimal numeric value for the prefix length.  Any such string may be
//!    preceded by a "!" character.  The strings are separated by
//!    whitespace.  The <afi> is the decimal numeric value of that
//!    particular address family.
//! ```
//!
//! and section 4.1 / 4.2: afi 1 is IPv4 with prefix lengths 0 to 32, afi 2 is IPv6 with
//! prefix lengths 0 to 128.
//!
//! Decisions beyond the RFC, each because a service configuration is not a zone file:
//! - An empty list is an error ([`AplError::Empty`]); the RFC allows zero items, but a service
//!   with no prefix is certainly a mistake.
//! - Host bits are masked, as [`Prefix::new`] does (RFC 3123 only says trailing zero octets
//!   carry no information); `Display` prints the masked form.
//! - An IPv6 literal inside `::ffff:0:0/96` with length ≥ 96 under afi 2 is accepted and, being
//!   the same addresses, printed back as afi 1: the list round-trips as a set of prefixes, not
//!   byte for byte.
//!
//! Rejected: a full zone-file parser (owner, TTL, class, `\#` generic RDATA). weir consumes the
//! RDATA text only; the wire format is the DNS resolver's job.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::prefix::parse_decimal;
use crate::Prefix;

/// RFC 3123 address family 1 (IANA: IP version 4).
pub const AFI_IPV4: u16 = 1;
/// RFC 3123 address family 2 (IANA: IP version 6).
pub const AFI_IPV6: u16 = 2;

/// One APL item: `[!]afi:address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AplItem {
    /// The item had a leading `!` (the prefix is excluded).
    pub negated: bool,
    /// The prefix (IPv4 items are stored IPv4-mapped).
    pub prefix: Prefix,
}

/// An address prefix list in RFC 3123 presentation format; at least one item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Apl {
    /// Items in the order written.
    pub items: Vec<AplItem>,
}

/// Why an APL text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AplError {
    /// The text holds no item.
    #[error("APL is empty: a service needs at least one `afi:address/prefix` item")]
    Empty,
    /// One item is wrong; `index` counts from 0 in the order written.
    #[error("APL item {index} `{item}`: {reason}")]
    Item {
        /// Position of the item (0-based).
        index: usize,
        /// The item's text.
        item: String,
        /// What is wrong with it.
        reason: AplItemError,
    },
}

/// What is wrong with one APL item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AplItemError {
    /// No `:` after the address family.
    #[error("missing ':' after the address family (expected `[!]afi:address/prefix`)")]
    MissingColon,
    /// The address family is not 1 or 2.
    #[error("unknown address family `{0}` (1 = IPv4, 2 = IPv6)")]
    UnknownAfi(String),
    /// No `/` before the prefix length.
    #[error("missing '/' before the prefix length")]
    MissingSlash,
    /// The prefix length is not a decimal number.
    #[error("prefix length `{0}` is not a decimal number")]
    BadPrefixLen(String),
    /// The address does not parse for any family.
    #[error("bad address `{0}`")]
    BadAddress(String),
    /// The address is of the other family than the afi says.
    #[error("address `{address}` is {actual}, but afi {afi} means {expected}")]
    FamilyMismatch {
        /// The afi given.
        afi: u16,
        /// The address text.
        address: String,
        /// The family the address is.
        actual: &'static str,
        /// The family the afi names.
        expected: &'static str,
    },
    /// The prefix length exceeds the family's maximum.
    #[error("prefix length {len} is out of range for {family} (0..={max})")]
    PrefixLenOutOfRange {
        /// The length given.
        len: u32,
        /// The family.
        family: &'static str,
        /// The family's maximum.
        max: u8,
    },
}

impl AplItem {
    /// Parses one `[!]afi:address/prefix` item.
    pub fn parse(text: &str) -> Result<AplItem, AplItemError> {
        let (negated, rest) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (afi_text, rest) = rest.split_once(':').ok_or(AplItemError::MissingColon)?;
        let afi = match afi_text {
            "1" => AFI_IPV4,
            "2" => AFI_IPV6,
            other => return Err(AplItemError::UnknownAfi(other.to_owned())),
        };
        let (address, len_text) = rest.rsplit_once('/').ok_or(AplItemError::MissingSlash)?;
        let len_given = parse_decimal(len_text)
            .ok_or_else(|| AplItemError::BadPrefixLen(len_text.to_owned()))?;
        // Lengths beyond 255 are out of range for either family (checked below).
        let len = u8::try_from(len_given).unwrap_or(u8::MAX);
        let out_of_range = |family, max| AplItemError::PrefixLenOutOfRange {
            len: len_given,
            family,
            max,
        };
        let mismatch = |actual, expected| AplItemError::FamilyMismatch {
            afi,
            address: address.to_owned(),
            actual,
            expected,
        };
        let prefix = if afi == AFI_IPV4 {
            let Ok(v4) = address.parse::<Ipv4Addr>() else {
                return Err(if address.parse::<Ipv6Addr>().is_ok() {
                    mismatch("IPv6", "IPv4")
                } else {
                    AplItemError::BadAddress(address.to_owned())
                });
            };
            if len_given > 32 {
                return Err(out_of_range("IPv4", 32));
            }
            Prefix::from_ipv4(u32::from(v4), len)
        } else {
            let Ok(v6) = address.parse::<Ipv6Addr>() else {
                return Err(if address.parse::<Ipv4Addr>().is_ok() {
                    mismatch("IPv4", "IPv6")
                } else {
                    AplItemError::BadAddress(address.to_owned())
                });
            };
            if len_given > 128 {
                return Err(out_of_range("IPv6", 128));
            }
            Prefix::new(u128::from(v6), len)
        };
        // Lengths were checked above, so construction cannot fail; keep the error path total.
        let prefix = prefix.map_err(|_| out_of_range("IPv6", 128))?;
        Ok(AplItem { negated, prefix })
    }

    /// The RFC 3123 address family of the prefix: 1 for IPv4(-mapped), 2 otherwise.
    pub fn afi(&self) -> u16 {
        if self.prefix.is_ipv4() {
            AFI_IPV4
        } else {
            AFI_IPV6
        }
    }
}

impl fmt::Display for AplItem {
    /// `[!]afi:address/prefix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bang = if self.negated { "!" } else { "" };
        write!(f, "{bang}{}:{}", self.afi(), self.prefix)
    }
}

impl Apl {
    /// Parses whitespace-separated `[!]afi:address/prefix` items (RFC 3123 section 5).
    pub fn parse(text: &str) -> Result<Apl, AplError> {
        let items = text
            .split_whitespace()
            .enumerate()
            .map(|(index, item)| {
                AplItem::parse(item).map_err(|reason| AplError::Item {
                    index,
                    item: item.to_owned(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if items.is_empty() {
            return Err(AplError::Empty);
        }
        Ok(Apl { items })
    }

    /// The positive (not negated) prefixes, in order: the service prefixes.
    pub fn positive(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.items
            .iter()
            .filter(|item| !item.negated)
            .map(|item| item.prefix)
    }
}

impl FromStr for Apl {
    type Err = AplError;

    fn from_str(text: &str) -> Result<Apl, AplError> {
        Apl::parse(text)
    }
}

impl fmt::Display for Apl {
    /// Items separated by one space; parses back to an equal `Apl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Apl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Apl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Apl, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Apl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3123_examples_parse() {
        // Section 9 of RFC 3123.
        let apl = Apl::parse("1:192.168.32.0/21 !1:192.168.38.0/28").unwrap();
        assert_eq!(apl.items.len(), 2);
        assert!(!apl.items[0].negated && apl.items[1].negated);
        assert_eq!(apl.items[0].prefix, "192.168.32.0/21".parse().unwrap());
        assert_eq!(apl.to_string(), "1:192.168.32.0/21 !1:192.168.38.0/28");

        let apl = Apl::parse("1:224.0.0.0/4 2:FF00:0:0:0:0:0:0:0/8").unwrap();
        assert_eq!(apl.to_string(), "1:224.0.0.0/4 2:ff00::/8");
        assert_eq!(
            Apl::parse("1:192.168.42.0/26 1:192.168.42.64/26 1:192.168.42.128/25")
                .unwrap()
                .items
                .len(),
            3
        );
    }

    #[test]
    fn config_default_and_whitespace() {
        let apl: Apl = "  2:2001:db8:5::/64\t\n!2:2001:db8:5:0:8000::/65 "
            .parse()
            .unwrap();
        assert_eq!(
            apl.to_string(),
            "2:2001:db8:5::/64 !2:2001:db8:5:0:8000::/65"
        );
        assert_eq!(
            apl.positive().collect::<Vec<_>>(),
            vec!["2001:db8:5::/64".parse::<Prefix>().unwrap()]
        );
    }

    #[test]
    fn round_trip() {
        for text in [
            "2:::/0",
            "1:0.0.0.0/0",
            "2:2001:db8::/32 1:10.0.0.0/8 !2:2001:db8:1::/48",
            "2:::1/128",
        ] {
            let apl = Apl::parse(text).unwrap();
            assert_eq!(apl.to_string(), text);
            assert_eq!(Apl::parse(&apl.to_string()).unwrap(), apl);
        }
        // Mapped IPv6 under afi 2 is the same prefix, printed as afi 1.
        assert_eq!(
            Apl::parse("2:::ffff:10.0.0.0/104").unwrap().to_string(),
            "1:10.0.0.0/8"
        );
    }

    fn err(text: &str) -> AplError {
        Apl::parse(text).unwrap_err()
    }

    #[test]
    fn empty() {
        assert_eq!(err(""), AplError::Empty);
        assert_eq!(err("  \n "), AplError::Empty);
        assert!(err("").to_string().contains("empty"));
    }

    #[test]
    fn errors_say_which_item_and_why() {
        let cases: &[(&str, usize, &str, AplItemError, &str)] = &[
            (
                "2:2001:db8::/32 3:10.0.0.0/8",
                1,
                "3:10.0.0.0/8",
                AplItemError::UnknownAfi("3".into()),
                "unknown address family `3`",
            ),
            (
                "1:10.0.0.0/8 2:2001:db8::",
                1,
                "2:2001:db8::",
                AplItemError::MissingSlash,
                "missing '/'",
            ),
            (
                "2001:db8::/32",
                0,
                "2001:db8::/32",
                AplItemError::UnknownAfi("2001".into()),
                "unknown address family",
            ),
            (
                "1.2.3.4/8",
                0,
                "1.2.3.4/8",
                AplItemError::MissingColon,
                "missing ':'",
            ),
            (
                "1:10.0.0.0/33",
                0,
                "1:10.0.0.0/33",
                AplItemError::PrefixLenOutOfRange {
                    len: 33,
                    family: "IPv4",
                    max: 32,
                },
                "out of range for IPv4 (0..=32)",
            ),
            (
                "2:::/129",
                0,
                "2:::/129",
                AplItemError::PrefixLenOutOfRange {
                    len: 129,
                    family: "IPv6",
                    max: 128,
                },
                "out of range for IPv6",
            ),
            (
                "2:::/999",
                0,
                "2:::/999",
                AplItemError::PrefixLenOutOfRange {
                    len: 999,
                    family: "IPv6",
                    max: 128,
                },
                "prefix length 999 is out of range for IPv6 (0..=128)",
            ),
            (
                "2:::/x",
                0,
                "2:::/x",
                AplItemError::BadPrefixLen("x".into()),
                "`x`",
            ),
            (
                "2:zz::/16",
                0,
                "2:zz::/16",
                AplItemError::BadAddress("zz::".into()),
                "bad address `zz::`",
            ),
        ];
        for (text, index, item, reason, words) in cases {
            let e = err(text);
            assert_eq!(
                e,
                AplError::Item {
                    index: *index,
                    item: (*item).into(),
                    reason: reason.clone()
                },
                "{text}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("item {index} `{item}`")) && msg.contains(words),
                "{msg}"
            );
        }
    }

    #[test]
    fn family_mismatch() {
        let msg = err("1:2001:db8::/32").to_string();
        assert!(msg.contains("is IPv6, but afi 1 means IPv4"), "{msg}");
        let msg = err("2:1:10.0.0.0/8").to_string();
        assert!(msg.contains("bad address"), "{msg}");
        let msg = err("2:10.0.0.0/8").to_string();
        assert!(
            msg.contains("`10.0.0.0` is IPv4, but afi 2 means IPv6"),
            "{msg}"
        );
    }
}
