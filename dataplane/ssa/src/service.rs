//! [`ServicePrefixes`]: which service prefix, if any, a destination address belongs to.
//!
//! Built from an [`Apl`]: positive items are the service prefixes, numbered in the order
//! written (that number is the `prefix_idx` of [`crate::SliceMap`]); negated items carve
//! holes. For an address, the longest item that contains it decides, positive or negated,
//! which is the RFC 3123 reading ("!" excludes) made unambiguous for nested items.
//!
//! The lookup is a linear scan over at most [`MAX_APL_ITEMS`] entries sorted longest first,
//! each a precomputed (network, mask) pair, so the first hit is the longest match. Deployments
//! have one or two prefixes; a scan of two entries is a handful of instructions and beats any
//! trie. Rejected: a radix trie (pointer chasing, allocation per node, no gain at this size)
//! and an unbounded list (the per-packet cost must have a ceiling).

use crate::{Apl, Prefix, SsaError};

/// Most APL items (positive and negated) a [`ServicePrefixes`] accepts.
pub const MAX_APL_ITEMS: usize = 64;

/// Marks a negated entry in [`Entry::index`].
const NEGATED: u16 = u16::MAX;

/// One APL item ready for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    addr: u128,
    mask: u128,
    /// Service prefix index, or [`NEGATED`].
    index: u16,
}

/// The service prefixes of an APL with longest-match lookup; at most [`MAX_APL_ITEMS`] items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrefixes {
    /// Positive prefixes in APL order.
    prefixes: Vec<Prefix>,
    /// All items, longest first.
    entries: Box<[Entry]>,
    has_ipv4: bool,
}

impl ServicePrefixes {
    /// Builds the lookup; errors on more than [`MAX_APL_ITEMS`] items, no positive item, or a
    /// prefix listed twice.
    pub fn new(apl: &Apl) -> Result<ServicePrefixes, SsaError> {
        if apl.items.len() > MAX_APL_ITEMS {
            return Err(SsaError::TooManyItems {
                count: apl.items.len(),
                max: MAX_APL_ITEMS,
            });
        }
        let mut prefixes = Vec::new();
        let mut entries = Vec::with_capacity(apl.items.len());
        for (i, item) in apl.items.iter().enumerate() {
            if apl.items[..i]
                .iter()
                .any(|earlier| earlier.prefix == item.prefix)
            {
                return Err(SsaError::DuplicatePrefix {
                    prefix: item.prefix,
                });
            }
            let index = if item.negated {
                NEGATED
            } else {
                prefixes.push(item.prefix);
                // At most 64 items, so the index fits; NEGATED (65535) is never reached.
                u16::try_from(prefixes.len() - 1).unwrap_or(NEGATED)
            };
            entries.push(Entry {
                addr: item.prefix.addr,
                mask: Prefix::mask(item.prefix.len),
                index,
            });
        }
        if prefixes.is_empty() {
            return Err(SsaError::NoServicePrefix);
        }
        // Stable sort, longest first: the first entry that matches is the longest match.
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.mask.count_ones()));
        let has_ipv4 = prefixes.iter().any(|p| p.overlaps(&Prefix::IPV4_MAPPED));
        Ok(ServicePrefixes {
            prefixes,
            entries: entries.into_boxed_slice(),
            has_ipv4,
        })
    }

    /// Parses APL text and builds the lookup (config convenience).
    pub fn parse(apl: &str) -> Result<ServicePrefixes, SsaError> {
        ServicePrefixes::new(&Apl::parse(apl)?)
    }

    /// The index of the service prefix that holds `addr`, or `None` (outside every positive
    /// item, or the longest matching item is negated).
    #[inline(always)]
    pub fn lookup(&self, addr: u128) -> Option<usize> {
        // One prefix is the common deployment: inline and no loop.
        if let [entry] = &*self.entries {
            return (addr & entry.mask == entry.addr && entry.index != NEGATED)
                .then_some(usize::from(entry.index));
        }
        self.lookup_longest(addr)
    }

    /// [`ServicePrefixes::lookup`] over several items: the first (longest) that holds `addr`.
    #[inline(never)]
    fn lookup_longest(&self, addr: u128) -> Option<usize> {
        for entry in self.entries.iter() {
            if addr & entry.mask == entry.addr {
                return if entry.index == NEGATED {
                    None
                } else {
                    Some(usize::from(entry.index))
                };
            }
        }
        None
    }

    /// Whether `addr` is a service address.
    #[inline(always)]
    pub fn contains(&self, addr: u128) -> bool {
        self.lookup(addr).is_some()
    }

    /// The service prefixes (positive items) in APL order; `lookup` returns indices into this.
    pub fn prefixes(&self) -> &[Prefix] {
        &self.prefixes
    }

    /// Whether any service prefix reaches into the IPv4-mapped space `::ffff:0:0/96`, i.e.
    /// whether IPv4 packets can be service traffic at all.
    #[inline]
    pub fn has_ipv4(&self) -> bool {
        self.has_ipv4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv4_mapped;

    fn sp(text: &str) -> ServicePrefixes {
        ServicePrefixes::parse(text).unwrap()
    }

    fn a(text: &str) -> u128 {
        u128::from(text.parse::<std::net::Ipv6Addr>().unwrap())
    }

    #[test]
    fn single_prefix() {
        let s = sp("2:2001:db8:5::/64");
        assert_eq!(s.lookup(a("2001:db8:5::1")), Some(0));
        assert_eq!(s.lookup(a("2001:db8:5:0:ffff:ffff:ffff:ffff")), Some(0));
        assert_eq!(s.lookup(a("2001:db8:5:1::")), None);
        assert!(!s.has_ipv4());
        assert_eq!(s.prefixes(), &["2001:db8:5::/64".parse().unwrap()]);
    }

    #[test]
    fn indices_follow_positive_items_and_longest_match_decides() {
        let s = sp("2:2001:db8::/32 !2:2001:db8:1::/48 1:192.0.2.0/24 2:2001:db8:1:1::/64 !1:192.0.2.128/25");
        assert_eq!(s.prefixes().len(), 3);
        assert_eq!(s.lookup(a("2001:db8:2::1")), Some(0));
        assert_eq!(
            s.lookup(a("2001:db8:1::1")),
            None,
            "negated /48 beats the /32"
        );
        assert_eq!(
            s.lookup(a("2001:db8:1:1::1")),
            Some(2),
            "positive /64 beats the negated /48"
        );
        assert_eq!(s.lookup(ipv4_mapped(0xc000_0201)), Some(1));
        assert_eq!(s.lookup(ipv4_mapped(0xc000_0281)), None);
        assert_eq!(s.lookup(0xc000_0201), None);
        assert!(s.has_ipv4());
        assert!(s.contains(a("2001:db8:ffff::")) && !s.contains(a("2001:db9::")));
    }

    #[test]
    fn has_ipv4_for_covering_ipv6_prefix() {
        assert!(sp("2:::/0").has_ipv4());
        assert!(sp("2:::/0").contains(ipv4_mapped(0x0a00_0001)));
        assert!(!sp("2:2000::/3").has_ipv4());
    }

    #[test]
    fn errors() {
        assert_eq!(
            ServicePrefixes::new(&Apl::parse("!2:2001:db8::/32").unwrap()),
            Err(SsaError::NoServicePrefix)
        );
        let dup = ServicePrefixes::parse("2:2001:db8::/32 !2:2001:db8::1/32")
            .unwrap_err()
            .to_string();
        assert!(
            dup.contains("2001:db8::/32 appears more than once"),
            "{dup}"
        );
        let many = (0..65)
            .map(|i| format!("2:2001:db8:{i:x}::/48"))
            .collect::<Vec<_>>()
            .join(" ");
        let e = ServicePrefixes::parse(&many).unwrap_err().to_string();
        assert!(e.contains("65 APL items, at most 64"), "{e}");
        let ok = (0..64)
            .map(|i| format!("2:2001:db8:{i:x}::/48"))
            .collect::<Vec<_>>()
            .join(" ");
        let s = ServicePrefixes::parse(&ok).unwrap();
        assert_eq!(s.lookup(a("2001:db8:3f::9")), Some(63));
    }
}
