//! The blocklist: source prefixes rejected as `blocked`, longest prefix first, each with an
//! optional expiry.
//!
//! Lookup walks the distinct prefix lengths present, longest first, and probes one hash
//! map per length: cost grows with the number of distinct lengths (a handful in practice),
//! not with the number of entries, and an empty list costs one branch. The list is part of
//! the policy snapshot, rebuilt off the packet path; lookups never allocate.
//!
//! Rejected: a binary trie (a pointer chase per bit), a linear scan (cost grows with the
//! list, which is exactly what an attack makes long).

use std::collections::HashMap;

use thiserror::Error;
use weir_ssa::Prefix;

use crate::rate::prefix_mask;

/// Most entries a blocklist holds.
pub use weir_model::config::MAX_BLOCKS as MAX_ENTRIES;

/// A blocklist entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The blocked source prefix.
    pub prefix: Prefix,
    /// Unix time in nanoseconds after which the entry no longer applies; `None` = never.
    pub until_ns: Option<u64>,
}

/// Blocklist errors.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BlocklistError {
    /// Too many entries.
    #[error("blocklist holds at most {MAX_ENTRIES} entries, got {0}")]
    TooMany(usize),
}

/// A longest-prefix-match set of blocked prefixes.
#[derive(Debug, Clone, Default)]
pub struct Blocklist {
    /// Distinct lengths present, longest first.
    lens: Vec<u8>,
    /// (length, masked prefix) → expiry (u64::MAX = never).
    entries: HashMap<(u8, u128), u64>,
}

impl Blocklist {
    /// Build from entries; a prefix listed twice keeps the later expiry.
    pub fn new(blocks: &[Block]) -> Result<Blocklist, BlocklistError> {
        if blocks.len() > MAX_ENTRIES {
            return Err(BlocklistError::TooMany(blocks.len()));
        }
        let mut entries = HashMap::with_capacity(blocks.len());
        for b in blocks {
            let until = b.until_ns.unwrap_or(u64::MAX);
            let slot = entries
                .entry((b.prefix.len, b.prefix.addr & prefix_mask(b.prefix.len)))
                .or_insert(until);
            *slot = (*slot).max(until);
        }
        let mut lens: Vec<u8> = entries.keys().map(|(l, _)| *l).collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.dedup();
        Ok(Blocklist { lens, entries })
    }

    /// Number of entries (expired ones included until the list is rebuilt).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, for display.
    pub fn blocks(&self) -> Vec<Block> {
        let mut v: Vec<Block> = self
            .entries
            .iter()
            .filter_map(|(&(len, addr), &until)| {
                Some(Block {
                    prefix: Prefix::new(addr, len).ok()?,
                    until_ns: (until != u64::MAX).then_some(until),
                })
            })
            .collect();
        v.sort_by_key(|b| (b.prefix.addr, b.prefix.len));
        v
    }

    /// True when `src` is inside an unexpired blocked prefix at `now_ns`. Lengths are tried
    /// longest first, and any unexpired match blocks: an expired /64 inside a live /48
    /// still blocks via the /48.
    #[inline(always)]
    pub fn is_blocked(&self, src: u128, now_ns: u64) -> bool {
        if self.lens.is_empty() {
            return false;
        }
        self.lookup(src, now_ns)
    }

    #[inline(never)]
    fn lookup(&self, src: u128, now_ns: u64) -> bool {
        self.lens.iter().any(|&len| {
            self.entries
                .get(&(len, src & prefix_mask(len)))
                .is_some_and(|&until| now_ns < until)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_and_expiry() {
        let bl = Blocklist::new(&[
            Block {
                prefix: p("2001:db8:bad::/48"),
                until_ns: None,
            },
            Block {
                prefix: p("2001:db8:0:1::/64"),
                until_ns: Some(100),
            },
        ])
        .unwrap();
        let a: u128 = "2001:db8:bad:1::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .into();
        let b: u128 = "2001:db8:0:1::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .into();
        let c: u128 = "2001:db8:0:2::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .into();
        assert!(bl.is_blocked(a, u64::MAX - 1));
        assert!(bl.is_blocked(b, 99));
        assert!(!bl.is_blocked(b, 100));
        assert!(!bl.is_blocked(c, 0));
        assert_eq!(bl.blocks().len(), 2);
        assert!(!Blocklist::default().is_blocked(a, 0));
    }
}
