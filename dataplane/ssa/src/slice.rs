//! [`SliceMap`]: service prefixes cut into slices, and which worker owns each slice.
//!
//! A service prefix of length L is cut into 2^k slices by destination bits [L, L+k), k =
//! `slice_bits` (default [`DEFAULT_SLICE_BITS`] = 14: a /64 becomes 16384 /78 slices, the
//! seed's example). A prefix too long for k bits gets k clamped to 128 − L (a /120 with
//! k = 14 has 256 slices of /128; a /128 is one slice). Global slice ids number prefix 0's
//! slices first, then prefix 1's, and so on, so one flat `Vec<u16>` holds the slice → worker
//! table, allocated once. Bounds: k ≤ [`MAX_SLICE_BITS`] (16) and at most
//! [`MAX_SLICE_PREFIXES`] prefixes, so the table never exceeds 64 × 65536 entries (8 MiB).
//!
//! The default assignment gives worker w the slices [w·n/W, (w+1)·n/W) of each prefix (n
//! slices, W workers, integer division): contiguous blocks of equal length (±1), so each
//! worker's share of a prefix aggregates into few routes. Even blocks only balance load
//! when the rule spreads clients over slices — see `Rule::spread_warning`. Moving slices later ([`SliceMap::assign`]) only changes where *new* flows go; the
//! flow table remembers the worker of established ones.
//!
//! Rejected: a per-prefix `Vec` (one more indirection per packet), consistent hashing
//! (slices already are the indirection, and they are routable prefixes), k above 16 (a table
//! of millions of entries buys no balance the seed's 16384 does not already give).

use std::ops::Range;

use crate::{Prefix, SsaError};

/// Default slice bits per prefix (a /64 becomes 16384 /78 slices).
pub const DEFAULT_SLICE_BITS: u8 = 14;
/// Most slice bits per prefix.
pub const MAX_SLICE_BITS: u8 = 16;
/// Most prefixes a slice map accepts (as many as an APL may hold).
pub const MAX_SLICE_PREFIXES: usize = crate::MAX_APL_ITEMS;

/// One prefix's part of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sliced {
    prefix: Prefix,
    /// Slice bits after clamping to 128 − len.
    bits: u8,
    /// Global id of this prefix's first slice.
    base: u32,
}

impl Sliced {
    fn count(&self) -> u32 {
        1 << self.bits
    }
}

/// Slice → worker table over a list of service prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceMap {
    prefixes: Vec<Sliced>,
    table: Vec<u16>,
    workers: u16,
}

impl SliceMap {
    /// Cuts each prefix into 2^min(slice_bits, 128 − len) slices and assigns them to `workers`
    /// in contiguous blocks.
    pub fn new(prefixes: &[Prefix], slice_bits: u8, workers: u16) -> Result<SliceMap, SsaError> {
        if slice_bits > MAX_SLICE_BITS {
            return Err(SsaError::SliceBits {
                bits: slice_bits,
                max: MAX_SLICE_BITS,
            });
        }
        if workers == 0 {
            return Err(SsaError::NoWorkers);
        }
        if prefixes.is_empty() {
            return Err(SsaError::NoPrefixes);
        }
        if prefixes.len() > MAX_SLICE_PREFIXES {
            return Err(SsaError::TooManyPrefixes {
                count: prefixes.len(),
                max: MAX_SLICE_PREFIXES,
            });
        }
        let mut sliced = Vec::with_capacity(prefixes.len());
        let mut base = 0u32;
        for prefix in prefixes {
            let prefix = Prefix::new(prefix.addr, prefix.len)?;
            let bits = slice_bits.min(128 - prefix.len);
            let entry = Sliced { prefix, bits, base };
            base += entry.count();
            sliced.push(entry);
        }
        let mut table = Vec::with_capacity(base as usize);
        for entry in &sliced {
            // DESIGN.md: worker w gets slices [w·n/W, (w+1)·n/W) of each prefix (n slices,
            // W workers, integer division): runs that differ in length by at most one.
            let n = u64::from(entry.count());
            let w_count = u64::from(workers);
            for w in 0..workers {
                let (lo, hi) = (u64::from(w) * n / w_count, (u64::from(w) + 1) * n / w_count);
                table.extend(std::iter::repeat_n(w, (hi - lo) as usize));
            }
        }
        Ok(SliceMap {
            prefixes: sliced,
            table,
            workers,
        })
    }

    /// The global slice of `dst` within service prefix `prefix_idx` (as returned by
    /// `ServicePrefixes::lookup`). Total: an unknown `prefix_idx` gives slice 0.
    #[inline]
    pub fn slice_of(&self, prefix_idx: usize, dst: u128) -> u32 {
        let Some(entry) = self.prefixes.get(prefix_idx) else {
            return 0;
        };
        if entry.bits == 0 {
            return entry.base;
        }
        // bits ≥ 1 implies len ≤ 127, so both shifts are in range. The result is below 2^16.
        #[allow(clippy::cast_possible_truncation)]
        let local = ((dst << entry.prefix.len) >> (128 - u32::from(entry.bits))) as u32;
        entry.base + local
    }

    /// The worker that owns `slice` (new flows go there). Total: an unknown slice gives worker 0.
    #[inline]
    pub fn worker_of(&self, slice: u32) -> u16 {
        self.table.get(slice as usize).copied().unwrap_or(0)
    }

    /// Gives slices `first..=last` to `worker`.
    pub fn assign(&mut self, first: u32, last: u32, worker: u16) -> Result<(), SsaError> {
        if first > last || last as usize >= self.table.len() {
            return Err(SsaError::SliceRange {
                first,
                last,
                slices: self.table.len(),
            });
        }
        if worker >= self.workers {
            return Err(SsaError::Worker {
                worker,
                workers: self.workers,
            });
        }
        self.table[first as usize..=last as usize].fill(worker);
        Ok(())
    }

    /// The slice as a route: the prefix's address with the slice number in bits [L, L+k).
    pub fn slice_prefix(&self, slice: u32) -> Option<Prefix> {
        let entry = self
            .prefixes
            .iter()
            .find(|e| (e.base..e.base + e.count()).contains(&slice))?;
        let local = u128::from(slice - entry.base);
        let len = entry.prefix.len + entry.bits;
        let addr = if entry.bits == 0 {
            entry.prefix.addr
        } else {
            entry.prefix.addr | (local << (128 - u32::from(len)))
        };
        Some(Prefix { addr, len })
    }

    /// The global slice ids of service prefix `prefix_idx`.
    pub fn slices_of_prefix(&self, prefix_idx: usize) -> Option<Range<u32>> {
        self.prefixes
            .get(prefix_idx)
            .map(|e| e.base..e.base + e.count())
    }

    /// Slice bits actually used for `prefix_idx` (after clamping to 128 − L).
    pub fn slice_bits_of(&self, prefix_idx: usize) -> Option<u8> {
        self.prefixes.get(prefix_idx).map(|e| e.bits)
    }

    /// The slice → worker table, indexed by global slice id.
    pub fn table(&self) -> &[u16] {
        &self.table
    }

    /// Number of slices over all prefixes.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Always false: a map has at least one prefix, so at least one slice.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Number of workers.
    pub fn workers(&self) -> u16 {
        self.workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        text.parse().unwrap()
    }

    fn a(text: &str) -> u128 {
        u128::from(text.parse::<std::net::Ipv6Addr>().unwrap())
    }

    #[test]
    fn seed_example_64_into_16384_slices_of_78() {
        let map = SliceMap::new(&[p("2001:db8:5::/64")], DEFAULT_SLICE_BITS, 2).unwrap();
        assert_eq!(map.len(), 16384);
        assert_eq!(map.workers(), 2);
        assert_eq!(map.slice_of(0, a("2001:db8:5::")), 0);
        assert_eq!(map.slice_of(0, a("2001:db8:5:0:0004::")), 1);
        assert_eq!(
            map.slice_of(0, a("2001:db8:5:0:ffff:ffff:ffff:ffff")),
            16383
        );
        assert_eq!(map.slice_prefix(1), Some(p("2001:db8:5:0:4::/78")));
        assert_eq!(map.slice_prefix(16383), Some(p("2001:db8:5:0:fffc::/78")));
        assert_eq!(map.slice_prefix(16384), None);
        // Contiguous halves.
        assert_eq!(map.worker_of(0), 0);
        assert_eq!(map.worker_of(8191), 0);
        assert_eq!(map.worker_of(8192), 1);
        assert_eq!(map.worker_of(16383), 1);
        assert_eq!(map.worker_of(16384), 0, "out of range is total");
        assert_eq!(map.slice_of(7, 0), 0, "unknown prefix is total");
    }

    #[test]
    fn several_prefixes_and_clamping() {
        let prefixes = [
            p("2001:db8::/48"),
            p("192.0.2.0/24"),
            p("2001:db8:ffff::1/128"),
        ];
        let map = SliceMap::new(&prefixes, 4, 3).unwrap();
        assert_eq!(map.slice_bits_of(1), Some(4));
        assert_eq!(map.slice_bits_of(2), Some(0));
        assert_eq!(map.slices_of_prefix(0), Some(0..16));
        assert_eq!(map.slices_of_prefix(1), Some(16..32));
        assert_eq!(map.slices_of_prefix(2), Some(32..33));
        assert_eq!(map.len(), 33);
        assert_eq!(map.slice_of(1, crate::ipv4_mapped(0xc000_02f0)), 16 + 15);
        assert_eq!(map.slice_prefix(31), Some(p("192.0.2.240/28")));
        assert_eq!(map.slice_of(2, a("2001:db8:ffff::1")), 32);
        assert_eq!(map.slice_prefix(32), Some(p("2001:db8:ffff::1/128")));
        let clamped = SliceMap::new(&[p("10.0.0.0/30")], 16, 1).unwrap();
        assert_eq!(clamped.len(), 4);
        assert_eq!(clamped.slice_prefix(3), Some(p("10.0.0.3/32")));
        // 16 slices over 3 workers: [0, 5), [5, 10), [10, 16) — DESIGN.md's w·n/W.
        let workers: Vec<u16> = map.table()[..16].to_vec();
        assert_eq!(workers, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn assign_and_errors() {
        let mut map = SliceMap::new(&[p("2001:db8::/64")], 2, 2).unwrap();
        assert_eq!(map.table(), [0, 0, 1, 1]);
        map.assign(1, 2, 1).unwrap();
        assert_eq!(map.table(), [0, 1, 1, 1]);
        assert_eq!(
            map.assign(2, 1, 0),
            Err(SsaError::SliceRange {
                first: 2,
                last: 1,
                slices: 4
            })
        );
        let msg = map.assign(0, 4, 0).unwrap_err().to_string();
        assert!(msg.contains("0..=4") && msg.contains("4 slices"), "{msg}");
        assert_eq!(
            map.assign(0, 0, 2),
            Err(SsaError::Worker {
                worker: 2,
                workers: 2
            })
        );
        assert_eq!(
            SliceMap::new(&[p("::/0")], 17, 1),
            Err(SsaError::SliceBits { bits: 17, max: 16 })
        );
        assert_eq!(SliceMap::new(&[p("::/0")], 1, 0), Err(SsaError::NoWorkers));
        assert_eq!(SliceMap::new(&[], 1, 1), Err(SsaError::NoPrefixes));
        let many: Vec<Prefix> = (0..65).map(|i| Prefix::new(i << 64, 64).unwrap()).collect();
        assert!(matches!(
            SliceMap::new(&many, 0, 1),
            Err(SsaError::TooManyPrefixes { count: 65, .. })
        ));
    }

    #[test]
    fn largest_table() {
        let prefixes: Vec<Prefix> = (0..64).map(|i| Prefix::new(i << 64, 64).unwrap()).collect();
        let map = SliceMap::new(&prefixes, 16, 1000).unwrap();
        assert_eq!(map.len(), 64 << 16);
        assert_eq!(
            map.slice_of(63, (63 << 64) | u128::from(u64::MAX)),
            (64 << 16) - 1
        );
        assert_eq!(map.worker_of((64 << 16) - 1), 999);
    }

    #[test]
    fn more_workers_than_slices() {
        // 2 slices, 5 workers: w·2/5 gives workers 2 and 4 a slice each, the rest none.
        let map = SliceMap::new(&[p("2001:db8::/64")], 1, 5).unwrap();
        assert_eq!(map.table(), [2, 4]);
        // The default table: equal runs.
        let map = SliceMap::new(&[p("2001:db8::/64")], 14, 4).unwrap();
        for w in 0..4u16 {
            let first = map.table().iter().position(|&x| x == w).unwrap();
            assert_eq!(first, usize::from(w) * 4096);
            assert_eq!(map.table().iter().filter(|&&x| x == w).count(), 4096);
        }
    }
}
