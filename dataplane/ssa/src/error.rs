//! [`SsaError`]: everything that can be wrong with an SSA configuration (prefixes, rules,
//! slices). APL text has its own error, [`crate::AplError`], because it must point at an item.
//!
//! One enum for the crate rather than one per module: callers (config loading, weirctl)
//! report these the same way, and the variants already say which part was wrong.

use crate::Prefix;

/// A configuration value that SSA cannot use; the message names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsaError {
    /// APL text that does not parse.
    #[error(transparent)]
    Apl(#[from] crate::AplError),
    /// Prefix length beyond the 128-bit address space.
    #[error("prefix length {len} is out of range (0..=128)")]
    PrefixLen {
        /// The offending length.
        len: u8,
    },
    /// IPv4 prefix length beyond 32.
    #[error("IPv4 prefix length {len} is out of range (0..=32)")]
    Ipv4PrefixLen {
        /// The offending length.
        len: u8,
    },
    /// Prefix text that does not parse.
    #[error("bad prefix `{text}`: {reason}")]
    BadPrefix {
        /// The text as given.
        text: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// More APL items than the lookup is built for.
    #[error("{count} APL items, at most {max} are supported")]
    TooManyItems {
        /// Items given.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// An APL with only negated items serves nothing.
    #[error("the APL has no positive item: there is no service prefix")]
    NoServicePrefix,
    /// The same prefix twice (possibly once negated): the longest-match decision would be ambiguous.
    #[error("prefix {prefix} appears more than once in the APL")]
    DuplicatePrefix {
        /// The repeated prefix.
        prefix: Prefix,
    },
    /// Slice bits above the table bound.
    #[error("slice_bits {bits} is too large (at most {max})")]
    SliceBits {
        /// Requested bits.
        bits: u8,
        /// The bound.
        max: u8,
    },
    /// A slice map needs at least one prefix.
    #[error("no service prefix to slice")]
    NoPrefixes,
    /// More prefixes than the slice table is built for.
    #[error("{count} service prefixes, the slice table supports at most {max}")]
    TooManyPrefixes {
        /// Prefixes given.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// Zero workers.
    #[error("workers must be at least 1")]
    NoWorkers,
    /// Slice range outside the table or reversed.
    #[error("slice range {first}..={last} is invalid: there are {slices} slices (0..={max_slice})", max_slice = .slices.saturating_sub(1))]
    SliceRange {
        /// First slice of the range.
        first: u32,
        /// Last slice of the range (inclusive).
        last: u32,
        /// Number of slices in the table.
        slices: usize,
    },
    /// Worker index beyond the worker count.
    #[error("worker {worker} does not exist (workers are 0..{workers})")]
    Worker {
        /// Requested worker.
        worker: u16,
        /// Worker count.
        workers: u16,
    },
    /// `src-bits` ranges that leave the address or are empty.
    #[error("src-bits: src_start {src_start}, dst_start {dst_start}, len {len} is invalid (need len >= 1 and start + len <= 128 for both)")]
    SrcBits {
        /// Source start bit.
        src_start: u8,
        /// Destination start bit.
        dst_start: u8,
        /// Number of bits.
        len: u8,
    },
    /// Source prefix length beyond 128.
    #[error("src_prefix_len {len} is out of range (0..=128)")]
    SrcPrefixLen {
        /// The offending length.
        len: u8,
    },
    /// `src-mix` source prefix length outside 1..=64.
    #[error("src-mix: src_prefix_len {len} is out of range (1..=64: the rule mixes the source's high 64 bits)")]
    SrcMixLen {
        /// The offending length.
        len: u8,
    },
    /// `time-hop` with a zero period.
    #[error("time-hop: period_s must be at least 1 (got 0)")]
    ZeroPeriod,
    /// `time-hop` skew beyond the bound (each window costs a hash per rejected packet).
    #[error("time-hop: skew {skew} is too large (at most {max})")]
    Skew {
        /// Requested skew.
        skew: u32,
        /// The bound.
        max: u32,
    },
}
