//! The new-flow rate meter: one token bucket per source prefix, in bounded memory.
//!
//! DESIGN.md "Rate bucket": capacity `new_flows_per_sec`, refilled continuously at
//! `new_flows_per_sec` per second, starting full; only step-10 packets take tokens.
//!
//! Tokens are kept in fixed point as *token-nanoseconds* (one token = 10^9 units), so a
//! refill is `elapsed_ns * rate` in integers: exact, deterministic, no floats. A full
//! refill takes one second, so `elapsed_ns` is clamped to 10^9 before multiplying and the
//! product stays below 2^64 for any rate up to 10^9 per second.
//!
//! The table is set-associative: a power-of-two number of sets of [`WAYS`] buckets. A new
//! prefix takes an empty way, else a way whose bucket has refilled to full (a full bucket
//! is indistinguishable from a new one, so dropping it loses nothing: the meter stays
//! exact while fewer prefixes are active than the table holds), else the least recently
//! used way, which is counted as an eviction (the evicted prefix starts full again later,
//! so under eviction the meter errs towards admitting).
//!
//! Rejected: a count-min sketch (never exact, and its error grows with the attack it is
//! meant to measure); an unbounded map.

/// Buckets per set.
pub const WAYS: usize = 4;

const NS_PER_S: u64 = 1_000_000_000;

/// One set of [`WAYS`] buckets, laid out together (one bounds check per packet, and the
/// ways' fields side by side).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Set {
    prefix: [u128; WAYS],
    /// Token-nanoseconds.
    tokens: [u64; WAYS],
    last_ns: [u64; WAYS],
    /// New flows (admitted, limited) per way since the last [`RateMeter::top_sources`].
    activity: [(u32, u32); WAYS],
    /// In-use flags, bit `w` for way `w` (kept apart so a zero prefix is a valid key).
    used: u8,
}

const ALL_USED: u8 = (1 << WAYS) - 1;

impl Set {
    const EMPTY: Set = Set {
        prefix: [0; WAYS],
        tokens: [0; WAYS],
        last_ns: [0; WAYS],
        activity: [(0, 0); WAYS],
        used: 0,
    };
}

/// Event counters of the meter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateCounters {
    /// Active buckets evicted to make room (the meter was not exact for them).
    pub evicted: u64,
}

/// Per-source-prefix token buckets.
#[derive(Debug)]
pub struct RateMeter {
    sets: Box<[Set]>,
    prefix_len: u8,
    set_mask: usize,
    prefix_mask: u128,
    rate: u64,
    capacity_units: u64,
    seed: u64,
    counters: RateCounters,
}

/// New-flow attempts of one source prefix over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceActivity {
    /// The source prefix (its address, host bits zero).
    pub prefix: u128,
    /// Its length.
    pub len: u8,
    /// New flows admitted (assumed-good).
    pub admitted: u32,
    /// New flows refused (`rate`).
    pub limited: u32,
}

impl RateMeter {
    /// A meter for `source_prefix_len`-bit prefixes allowing `per_sec` new flows per second
    /// each, with room for at least `buckets` prefixes.
    pub fn new(source_prefix_len: u8, per_sec: u32, buckets: usize, seed: u64) -> RateMeter {
        let sets = (buckets / WAYS).max(1).next_power_of_two();
        let rate = u64::from(per_sec);
        RateMeter {
            sets: crate::table::huge_table(sets, Set::EMPTY),
            prefix_len: source_prefix_len,
            set_mask: sets - 1,
            prefix_mask: prefix_mask(source_prefix_len),
            rate,
            capacity_units: rate * NS_PER_S,
            seed,
            counters: RateCounters::default(),
        }
    }

    /// Number of buckets.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Event counters.
    pub fn counters(&self) -> RateCounters {
        self.counters
    }

    /// The prefix `src` is metered under.
    #[inline]
    pub fn prefix_of(&self, src: u128) -> u128 {
        src & self.prefix_mask
    }

    /// Take one token for `src`'s prefix at `now_ns`; false when the bucket is empty.
    #[inline]
    pub fn take(&mut self, src: u128, now_ns: u64) -> bool {
        let prefix = src & self.prefix_mask;
        let h = ((prefix as u64) ^ ((prefix >> 64) as u64).rotate_left(32) ^ self.seed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let idx = (h >> 32) as usize & self.set_mask;
        let (rate, capacity) = (self.rate, self.capacity_units);
        let refilled = |tokens: u64, last_ns: u64| {
            let elapsed = now_ns.saturating_sub(last_ns).min(NS_PER_S);
            tokens.saturating_add(elapsed * rate).min(capacity)
        };
        let Some(set) = self.sets.get_mut(idx) else {
            return true; // (never: the mask keeps idx below the number of sets)
        };
        for w in 0..WAYS {
            if set.used & (1 << w) != 0 && set.prefix[w] == prefix {
                let tokens = refilled(set.tokens[w], set.last_ns[w]);
                let ok = tokens >= NS_PER_S;
                set.tokens[w] = if ok { tokens - NS_PER_S } else { tokens };
                set.last_ns[w] = set.last_ns[w].max(now_ns);
                note(&mut set.activity[w], ok);
                return ok;
            }
        }
        // A new prefix: the first empty way, else the first refilled to full, else the
        // least recently used (an eviction).
        let victim = if set.used != ALL_USED {
            (!set.used).trailing_zeros() as usize % WAYS
        } else {
            let mut victim = 0;
            let mut victim_rank = (u8::MAX, u64::MAX);
            for w in 0..WAYS {
                let rank = if refilled(set.tokens[w], set.last_ns[w]) == capacity {
                    (1, 0)
                } else {
                    (2, set.last_ns[w])
                };
                if rank < victim_rank {
                    victim = w;
                    victim_rank = rank;
                }
            }
            if victim_rank.0 == 2 {
                self.counters.evicted += 1;
            }
            victim
        };
        let ok = capacity >= NS_PER_S;
        set.used |= 1 << victim;
        set.prefix[victim] = prefix;
        set.tokens[victim] = if ok { capacity - NS_PER_S } else { 0 };
        set.last_ns[victim] = now_ns;
        set.activity[victim] = if ok { (1, 0) } else { (0, 1) };
        ok
    }

    /// The `n` prefixes with the most new-flow attempts since the last call, most limited
    /// first. Resets the activity. Walks the whole table, so it belongs off the packet path
    /// (a few times per second at most).
    pub fn top_sources(&mut self, n: usize) -> Vec<SourceActivity> {
        let mut v: Vec<SourceActivity> = Vec::new();
        for set in self.sets.iter_mut() {
            for (w, a) in set.activity.iter_mut().enumerate() {
                if *a != (0, 0) && set.used & (1 << w) != 0 {
                    v.push(SourceActivity {
                        prefix: set.prefix[w],
                        len: self.prefix_len,
                        admitted: a.0,
                        limited: a.1,
                    });
                }
                *a = (0, 0);
            }
        }
        v.sort_by(|x, y| {
            (y.limited, y.admitted)
                .cmp(&(x.limited, x.admitted))
                .then(x.prefix.cmp(&y.prefix))
        });
        v.truncate(n);
        v
    }

    /// The metered prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The rate (new flows per second per prefix).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Change the limits at run time. A new rate keeps every bucket (tokens are capped at
    /// the new capacity); a new prefix length starts every bucket afresh (full), since the
    /// old buckets count different prefixes.
    pub fn set_limits(&mut self, source_prefix_len: u8, per_sec: u32) {
        if source_prefix_len != self.prefix_len {
            for set in self.sets.iter_mut() {
                set.used = 0;
                set.activity = [(0, 0); WAYS];
            }
            self.prefix_len = source_prefix_len;
            self.prefix_mask = prefix_mask(source_prefix_len);
        }
        self.rate = u64::from(per_sec);
        self.capacity_units = self.rate * NS_PER_S;
        for set in self.sets.iter_mut() {
            for t in &mut set.tokens {
                *t = (*t).min(self.capacity_units);
            }
        }
    }
}

/// Count one new flow, admitted or limited, in a way's activity.
#[inline(always)]
fn note(a: &mut (u32, u32), admitted: bool) {
    if admitted {
        a.0 = a.0.saturating_add(1);
    } else {
        a.1 = a.1.saturating_add(1);
    }
}

/// Mask keeping the first `len` bits of a 128-bit address.
#[inline]
pub fn prefix_mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u128 = 0x2001_0db8_0000_0001_0000_0000_0000_0001;

    #[test]
    fn bucket_starts_full_and_refills_continuously() {
        let mut m = RateMeter::new(64, 10, 64, 0);
        let t0 = 5 * NS_PER_S;
        for _ in 0..10 {
            assert!(m.take(A, t0));
        }
        assert!(!m.take(A, t0));
        // Another host of the same /64 shares the bucket.
        assert!(!m.take(A + 1, t0));
        // 100 ms later one token is back (10/s).
        assert!(!m.take(A, t0 + 99_999_999));
        assert!(m.take(A, t0 + 100_000_000));
        assert!(!m.take(A, t0 + 100_000_000));
        // A different /64 has its own bucket.
        assert!(m.take(A + (1 << 64), t0));
    }

    /// One set: a new prefix takes an empty way; with the set full, a bucket refilled to
    /// full goes first (no eviction: it was as good as new), else the least recently used
    /// (an eviction, and the evicted prefix comes back full).
    #[test]
    fn a_full_set_gives_up_a_refilled_bucket_before_the_least_recently_used() {
        const MS: u64 = 1_000_000;
        let mut m = RateMeter::new(64, 1, WAYS, 7);
        let p = |i: u128| (0x2001_0db8_0000_0000 + i) << 64;
        for i in 0..WAYS as u64 {
            assert!(m.take(p(u128::from(i)), i * MS), "prefix {i} starts full");
        }
        assert_eq!(m.counters().evicted, 0);
        // 0.5 s on, no bucket is full again: the new prefix evicts prefix 0 (used at 0 ms).
        assert!(m.take(p(10), 500 * MS));
        assert_eq!(m.counters().evicted, 1);
        // Prefix 1 is still metered: half a token, refused (and now used at 500 ms).
        assert!(!m.take(p(1), 500 * MS + 1));
        // Prefix 0 is back, full, in place of prefix 2 (used at 2 ms).
        assert!(m.take(p(0), 501 * MS));
        assert_eq!(m.counters().evicted, 2);
        assert!(!m.take(p(1), 502 * MS), "prefix 1 kept its bucket");
        // 3 s on every bucket is full: new prefixes take those, no eviction.
        assert!(m.take(p(20), 3_000 * MS));
        assert!(m.take(p(21), 3_000 * MS));
        assert_eq!(m.counters().evicted, 2);
        // Prefix 20 is metered (empty now), so it was not the one given up for 21.
        assert!(!m.take(p(20), 3_000 * MS + 1));
    }

    #[test]
    fn zero_rate_admits_nothing() {
        let mut m = RateMeter::new(64, 0, 64, 0);
        assert!(!m.take(A, 0));
        assert!(!m.take(A, 10 * NS_PER_S));
    }

    #[test]
    fn exact_while_fewer_prefixes_than_buckets() {
        // Many one-shot prefixes through a small table, one busy prefix throughout:
        // the busy prefix's bucket must never be reset (it is never full).
        let mut m = RateMeter::new(64, 5, 8, 1);
        let busy = A;
        let mut admitted = 0;
        for i in 0..1000u64 {
            let now = i * 1_000_000; // 1 ms apart, 1 s total
            if m.take(busy, now) {
                admitted += 1;
            }
            // one-shot prefixes whose buckets are full again after 1 s: not evicting busy
            let _ = m.take(((i as u128) + 100) << 64, now);
        }
        // 5 at start + 5 per second refill over ~1 s.
        assert!((9..=11).contains(&admitted), "{admitted}");
    }

    #[test]
    fn top_sources_rank_by_limited_and_reset() {
        let mut m = RateMeter::new(64, 2, 64, 0);
        for _ in 0..5 {
            m.take(A, 0);
        }
        m.take(A + (1 << 64), 0);
        let top = m.top_sources(10);
        assert_eq!(
            top[0],
            SourceActivity {
                prefix: A & prefix_mask(64),
                len: 64,
                admitted: 2,
                limited: 3
            }
        );
        assert_eq!(top[1].admitted, 1);
        assert!(m.top_sources(10).is_empty());
    }

    #[test]
    fn limits_change_live() {
        let mut m = RateMeter::new(64, 10, 64, 0);
        for _ in 0..10 {
            assert!(m.take(A, 0));
        }
        m.set_limits(64, 2);
        assert!(!m.take(A, 0));
        // 0.5 s later: one token at 2/s.
        assert!(m.take(A, 500_000_000));
        // A new prefix length: buckets start afresh.
        m.set_limits(48, 2);
        assert!(m.take(A, 500_000_000));
    }

    #[test]
    fn prefix_mask_edges() {
        assert_eq!(prefix_mask(0), 0);
        assert_eq!(prefix_mask(128), u128::MAX);
        assert_eq!(prefix_mask(64), u128::MAX << 64);
    }
}
