//! SSA rules: which destination a source may use, checked per packet by the dataplane
//! ([`Rule::check`]) and computed by clients ([`Rule::pick`]).
//!
//! Bit numbering: bit 0 is the most significant bit of the 128-bit address; IPv4 addresses
//! are IPv4-mapped, so IPv4 bit b is bit 96 + b. `src_prefix_len` is in the same 128-bit space.
//!
//! | rule | check(src, dst, now) |
//! |---|---|
//! | `any`, `content` | always (the dataplane has already matched dst to a service prefix) |
//! | `src-mix` (default) | `dst as u64` == fmix64(`(src >> 64) as u64` & mask(src_prefix_len)) |
//! | `src-bits` | dst bits `[dst_start, +len)` == src bits `[src_start, +len)` |
//! | `keyed-hash` | `dst as u64` == SipHash-2-4(key, (src & mask(src_prefix_len)).to_be_bytes()) |
//! | `time-hop` | as keyed-hash over 24 bytes: the 16 source bytes, then window `now / period_s` as 8 big-endian bytes; windows `w, w-1, .., w-skew` (not below 0) are accepted |
//!
//! `check` is total: a rule built by hand with out-of-range fields (enum fields cannot be
//! private) fails closed instead of panicking — src-bits ranges beyond the address and a zero
//! period reject every packet, and `skew` is capped at [`MAX_SKEW`] so a rejected packet costs
//! at most `MAX_SKEW + 1` hashes. Constructors ([`Rule::src_bits`], [`Rule::keyed_hash`],
//! [`Rule::time_hop`]) and [`Rule::validate`] report such values as errors instead.
//!
//! Picking (client side): the result lies in the given prefix and passes `check`. Host bits the
//! rule leaves free come from `PickContext::entropy`, spread to 128 bits with SplitMix64, so a
//! client varies its address by varying entropy and a test reproduces any pick. `content`
//! instead derives every host bit from the object key: h = SipHash-2-4 under the public
//! all-zero [`CONTENT_KEY`] of the key bytes, and the host bits are the 128-bit word `h ‖ h`
//! shifted right by the prefix length — the bits just after the prefix (the slice bits) are the
//! top bits of h, so every client maps one object to one slice, hence one shard.
//!
//! Why `src-mix` is the default: the rule decides which destination a client uses, so it
//! decides the client's slice (bits just after the prefix). `src-bits` (0, 64, 64) copies
//! the source's first bits there, and clients cluster by their own prefix (all of
//! 2001::/16 in one slice of a /64 cut 14 ways). fmix64 (MurmurHash3's 64-bit finalizer)
//! is public, bijective on 64 bits (distinct source /64s get distinct destinations) and
//! avalanches, so clients spread evenly over slices for two multiplies per check.
//!
//! Rejected: carrying secrets in `Display`/`Debug` (keys are printed as `<redacted>`, these end
//! up in logs and weirctl output); a `skew` without a bound (per-packet cost must have a
//! ceiling); random numbers inside `pick` (tests and clients want determinism; the caller
//! supplies entropy).

use std::fmt;

use crate::{siphash24, Prefix, SsaError};

pub mod serde_forms;
pub use serde_forms::{key_hex, parse_key, RuleTextError};

/// Most earlier windows a `time-hop` rule may accept: each costs one SipHash per rejected packet.
pub const MAX_SKEW: u32 = 16;

/// The public key under which `content` hashes object keys: all zero. The hash only spreads
/// objects over slices; it is not meant to be secret.
pub const CONTENT_KEY: [u8; 16] = [0; 16];

/// An SSA rule. Build with the validating constructors, or check hand-built values with
/// [`Rule::validate`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Any address in the service prefixes (naive load sharing).
    Any,
    /// Destination low 64 bits = fmix64 of the source's first `src_prefix_len` bits (the
    /// built-in default: public, bijective, spreads clients over slices).
    SrcMix {
        /// Source bits that enter the mix (1..=64).
        src_prefix_len: u8,
    },
    /// Destination bits `[dst_start, dst_start + len)` equal source bits `[src_start, src_start + len)`.
    SrcBits {
        /// First copied source bit (0 = MSB).
        src_start: u8,
        /// First destination bit that receives them.
        dst_start: u8,
        /// Number of bits (≥ 1).
        len: u8,
    },
    /// Destination low 64 bits = SipHash-2-4 of the source's first `src_prefix_len` bits.
    KeyedHash {
        /// 128-bit SipHash key (secret shared with clients that may connect).
        key: [u8; 16],
        /// Source bits that enter the hash (0..=128).
        src_prefix_len: u8,
    },
    /// As `KeyedHash`, with the time window appended; accepts `skew` earlier windows too.
    TimeHop {
        /// 128-bit SipHash key.
        key: [u8; 16],
        /// Source bits that enter the hash (0..=128).
        src_prefix_len: u8,
        /// Window length in seconds (≥ 1).
        period_s: u64,
        /// Earlier windows still accepted (≤ [`MAX_SKEW`]).
        skew: u32,
    },
    /// Any address in the prefixes; clients derive it from the object key (content sharding).
    Content,
}

/// What a client knows when it picks a destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PickContext<'a> {
    /// Current Unix time in seconds (`time-hop`).
    pub now_unix_s: u64,
    /// The object's key (`content`).
    pub object_key: Option<&'a [u8]>,
    /// Fills host bits the rule leaves free, deterministically.
    pub entropy: u64,
}

/// Why no conforming destination could be picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// The rule itself is invalid.
    #[error("invalid rule: {0}")]
    InvalidRule(#[from] SsaError),
    /// Hash rules put 64 hash bits in the low half, so the prefix must leave them free.
    #[error("rule `{rule}` needs a prefix of /64 or shorter (the low 64 bits carry the hash), got {prefix}")]
    PrefixTooLong {
        /// The rule's name.
        rule: &'static str,
        /// The prefix given.
        prefix: Prefix,
    },
    /// src-bits copies into bits the prefix fixes, and the source disagrees with them.
    #[error("src-bits: destination bits [{dst_start}, {dst_end}) overlap prefix {prefix}, and source {src:#034x} bits [{src_start}, {src_end}) differ from the prefix there: no address in the prefix conforms", dst_end = *.dst_start as u16 + *.len as u16, src_end = *.src_start as u16 + *.len as u16)]
    SourceConflictsWithPrefix {
        /// The prefix given.
        prefix: Prefix,
        /// The source address.
        src: u128,
        /// Rule field.
        src_start: u8,
        /// Rule field.
        dst_start: u8,
        /// Rule field.
        len: u8,
    },
    /// `content` without an object key.
    #[error("rule `content` needs an object key to derive the address from")]
    MissingObjectKey,
}

/// `len` bits of `addr` starting at bit `start` (MSB = 0), right-aligned. Requires
/// `1 <= len` and `start + len <= 128`.
#[inline]
fn bits(addr: u128, start: u8, len: u8) -> u128 {
    (addr << start) >> (128 - u32::from(len))
}

/// Whether a src-bits range is inside the address and non-empty.
#[inline]
fn src_bits_valid(src_start: u8, dst_start: u8, len: u8) -> bool {
    len >= 1
        && u16::from(src_start) + u16::from(len) <= 128
        && u16::from(dst_start) + u16::from(len) <= 128
}

/// The 16 hashed bytes of a source: its first `src_prefix_len` bits, the rest zero.
#[inline]
fn src_bytes(src: u128, src_prefix_len: u8) -> [u8; 16] {
    (src & Prefix::mask(src_prefix_len)).to_be_bytes()
}

/// Keyed-hash value for a source.
#[inline]
fn keyed(key: &[u8; 16], src: u128, src_prefix_len: u8) -> u64 {
    siphash24(key, &src_bytes(src, src_prefix_len))
}

/// Time-hop value for a source in one window.
#[inline]
fn windowed(key: &[u8; 16], src: u128, src_prefix_len: u8, window: u64) -> u64 {
    let mut data = [0u8; 24];
    data[..16].copy_from_slice(&src_bytes(src, src_prefix_len));
    data[16..].copy_from_slice(&window.to_be_bytes());
    siphash24(key, &data)
}

/// MurmurHash3's 64-bit finalizer: the `src-mix` rule's public, bijective mix.
#[inline(always)]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The 64-bit mask that keeps the first `len` bits (1..=64) of a source's high half.
#[inline]
pub(crate) fn high_mask(len: u8) -> u64 {
    match len {
        0 => 0,
        1..=63 => !0u64 << (64 - u32::from(len)),
        _ => !0,
    }
}

/// `src-mix` value for a source: fmix64 of its first `src_prefix_len` bits.
#[inline]
#[allow(clippy::cast_possible_truncation)] // the high half is the point
fn mixed(src: u128, src_prefix_len: u8) -> u64 {
    fmix64((src >> 64) as u64 & high_mask(src_prefix_len))
}

/// Most source bits `src-mix` takes (the source's high half).
pub const MAX_SRC_MIX_LEN: u8 = 64;

/// SplitMix64 step: a bijective mixer that spreads entropy over free host bits.
#[inline]
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 128 bits derived from a 64-bit entropy value.
#[inline]
fn spread(entropy: u64) -> u128 {
    (u128::from(splitmix64(entropy)) << 64)
        | u128::from(splitmix64(entropy ^ 0x5555_5555_5555_5555))
}

impl Default for Rule {
    /// The built-in default: `src-mix` over the source's /64.
    fn default() -> Rule {
        Rule::SrcMix { src_prefix_len: 64 }
    }
}

impl Rule {
    /// The names used in config, counters and reports, in declaration order.
    pub const NAMES: [&'static str; 6] = [
        "any",
        "src-mix",
        "src-bits",
        "keyed-hash",
        "time-hop",
        "content",
    ];

    /// A validated `src-mix` rule: `1 <= src_prefix_len <= 64`.
    pub fn src_mix(src_prefix_len: u8) -> Result<Rule, SsaError> {
        let rule = Rule::SrcMix { src_prefix_len };
        rule.validate()?;
        Ok(rule)
    }

    /// A validated `src-bits` rule: `len >= 1`, both ranges end at or before bit 128.
    pub fn src_bits(src_start: u8, dst_start: u8, len: u8) -> Result<Rule, SsaError> {
        let rule = Rule::SrcBits {
            src_start,
            dst_start,
            len,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// A validated `keyed-hash` rule: `src_prefix_len <= 128`.
    pub fn keyed_hash(key: [u8; 16], src_prefix_len: u8) -> Result<Rule, SsaError> {
        let rule = Rule::KeyedHash {
            key,
            src_prefix_len,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// A validated `time-hop` rule: `src_prefix_len <= 128`, `period_s >= 1`, `skew <= MAX_SKEW`.
    pub fn time_hop(
        key: [u8; 16],
        src_prefix_len: u8,
        period_s: u64,
        skew: u32,
    ) -> Result<Rule, SsaError> {
        let rule = Rule::TimeHop {
            key,
            src_prefix_len,
            period_s,
            skew,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Checks the fields of a rule built directly.
    pub fn validate(&self) -> Result<(), SsaError> {
        match *self {
            Rule::Any | Rule::Content => Ok(()),
            Rule::SrcMix { src_prefix_len } => {
                if (1..=MAX_SRC_MIX_LEN).contains(&src_prefix_len) {
                    Ok(())
                } else {
                    Err(SsaError::SrcMixLen {
                        len: src_prefix_len,
                    })
                }
            }
            Rule::SrcBits {
                src_start,
                dst_start,
                len,
            } => {
                if src_bits_valid(src_start, dst_start, len) {
                    Ok(())
                } else {
                    Err(SsaError::SrcBits {
                        src_start,
                        dst_start,
                        len,
                    })
                }
            }
            Rule::KeyedHash { src_prefix_len, .. } => {
                if src_prefix_len > 128 {
                    return Err(SsaError::SrcPrefixLen {
                        len: src_prefix_len,
                    });
                }
                Ok(())
            }
            Rule::TimeHop {
                src_prefix_len,
                period_s,
                skew,
                ..
            } => {
                if src_prefix_len > 128 {
                    return Err(SsaError::SrcPrefixLen {
                        len: src_prefix_len,
                    });
                }
                if period_s == 0 {
                    return Err(SsaError::ZeroPeriod);
                }
                if skew > MAX_SKEW {
                    return Err(SsaError::Skew {
                        skew,
                        max: MAX_SKEW,
                    });
                }
                Ok(())
            }
        }
    }

    /// Whether `dst` conforms for `src` at `now_unix_s`. Per-packet: no allocation, no panic.
    #[inline]
    pub fn check(&self, src: u128, dst: u128, now_unix_s: u64) -> bool {
        match *self {
            Rule::Any | Rule::Content => true,
            // Truncation intended: the rule compares the destination's low 64 bits. An
            // out-of-range length built by hand fails closed.
            #[allow(clippy::cast_possible_truncation)]
            Rule::SrcMix { src_prefix_len } => {
                (1..=MAX_SRC_MIX_LEN).contains(&src_prefix_len)
                    && dst as u64 == mixed(src, src_prefix_len)
            }
            Rule::SrcBits {
                src_start,
                dst_start,
                len,
            } => {
                src_bits_valid(src_start, dst_start, len)
                    && bits(src, src_start, len) == bits(dst, dst_start, len)
            }
            // Truncation intended: the rule compares the destination's low 64 bits.
            #[allow(clippy::cast_possible_truncation)]
            Rule::KeyedHash {
                ref key,
                src_prefix_len,
            } => dst as u64 == keyed(key, src, src_prefix_len),
            #[allow(clippy::cast_possible_truncation)]
            Rule::TimeHop {
                ref key,
                src_prefix_len,
                period_s,
                skew,
            } => {
                let Some(window) = now_unix_s.checked_div(period_s) else {
                    return false;
                };
                let low = dst as u64;
                (0..=u64::from(skew.min(MAX_SKEW)))
                    .map_while(|back| window.checked_sub(back))
                    .any(|w| low == windowed(key, src, src_prefix_len, w))
            }
        }
    }

    /// Why this rule would put clients of one network into the same slices, or `None`.
    ///
    /// DESIGN.md, "Slices must spread clients": a `src-bits` rule whose copied source bits
    /// land in a prefix's slice bits `[L, L + slice_bits)` makes the slice a function of
    /// those source bits; when any of them is among the source's first 16 bits (the
    /// registry block: 2001::/16, 2a00::/12, …), nearly all clients share a handful of
    /// slices — one worker, one host.
    pub fn spread_warning(&self, prefixes: &[Prefix], slice_bits: u8) -> Option<String> {
        let Rule::SrcBits {
            src_start,
            dst_start,
            len,
        } = *self
        else {
            return None;
        };
        let (src_start, dst_start, len) =
            (u16::from(src_start), u16::from(dst_start), u16::from(len));
        prefixes.iter().find_map(|p| {
            let first = u16::from(p.len);
            let last = (first + u16::from(slice_bits)).min(128);
            // Slice bits that receive copied source bits, and which source bits they are.
            let lo = first.max(dst_start);
            let hi = last.min(dst_start + len);
            if lo >= hi {
                return None;
            }
            let (s_lo, s_hi) = (src_start + lo - dst_start, src_start + hi - dst_start);
            (s_lo < 16).then(|| {
                format!(
                    "rule {self} copies source bits [{s_lo}, {s_hi}) into the slice bits [{lo}, {hi}) of {p}: \
                     clients of one network (all of 2001::/16, say) land in the same few slices, so one worker \
                     (and one host) gets nearly all of them; use rule src-mix (the default) or keyed-hash to spread clients"
                )
            })
        })
    }

    /// Whether the rule depends on time (established flows outlive their window).
    #[inline]
    pub fn is_time_window(&self) -> bool {
        matches!(self, Rule::TimeHop { .. })
    }

    /// The rule's name as used in config and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Any => "any",
            Rule::SrcMix { .. } => "src-mix",
            Rule::SrcBits { .. } => "src-bits",
            Rule::KeyedHash { .. } => "keyed-hash",
            Rule::TimeHop { .. } => "time-hop",
            Rule::Content => "content",
        }
    }

    /// A destination inside `prefix` that passes `check(src, result, ctx.now_unix_s)`.
    pub fn pick(
        &self,
        prefix: &Prefix,
        src: u128,
        ctx: &PickContext<'_>,
    ) -> Result<u128, PickError> {
        self.validate()?;
        let prefix = Prefix::new(prefix.addr, prefix.len)?;
        let host = prefix.host_mask();
        let random = prefix.addr | (spread(ctx.entropy) & host);
        match *self {
            Rule::Any => Ok(random),
            Rule::SrcMix { src_prefix_len } => {
                let high = hash_high(self, &prefix, random)?;
                Ok(high | u128::from(mixed(src, src_prefix_len)))
            }
            Rule::SrcBits {
                src_start,
                dst_start,
                len,
            } => {
                let field = Prefix::mask(len) >> dst_start;
                let copied =
                    bits(src, src_start, len) << (128 - u32::from(len) - u32::from(dst_start));
                let dst = (random & !field) | copied;
                if prefix.contains(dst) {
                    Ok(dst)
                } else {
                    Err(PickError::SourceConflictsWithPrefix {
                        prefix,
                        src,
                        src_start,
                        dst_start,
                        len,
                    })
                }
            }
            Rule::KeyedHash {
                ref key,
                src_prefix_len,
            } => {
                let high = hash_high(self, &prefix, random)?;
                Ok(high | u128::from(keyed(key, src, src_prefix_len)))
            }
            Rule::TimeHop {
                ref key,
                src_prefix_len,
                period_s,
                ..
            } => {
                let high = hash_high(self, &prefix, random)?;
                // validate() guarantees period_s >= 1.
                let window = ctx.now_unix_s.checked_div(period_s).unwrap_or(0);
                Ok(high | u128::from(windowed(key, src, src_prefix_len, window)))
            }
            Rule::Content => {
                let key = ctx.object_key.ok_or(PickError::MissingObjectKey)?;
                let h = u128::from(siphash24(&CONTENT_KEY, key));
                let word = (h << 64) | h;
                // len 128 leaves no host bits (host == 0), so the shift amount never matters.
                Ok(prefix.addr | (word.checked_shr(u32::from(prefix.len)).unwrap_or(0) & host))
            }
        }
    }
}

/// The high 64 bits of a hash-rule destination: prefix, then entropy; the prefix must be ≤ /64.
fn hash_high(rule: &Rule, prefix: &Prefix, random: u128) -> Result<u128, PickError> {
    if prefix.len > 64 {
        return Err(PickError::PrefixTooLong {
            rule: rule.name(),
            prefix: *prefix,
        });
    }
    Ok(random & Prefix::mask(64))
}

impl fmt::Display for Rule {
    /// `src-bits(src_start=0, dst_start=64, len=64)`; keys are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Rule::Any | Rule::Content => f.write_str(self.name()),
            Rule::SrcMix { src_prefix_len } => {
                write!(f, "src-mix(src_prefix_len={src_prefix_len})")
            }
            Rule::SrcBits { src_start, dst_start, len } => {
                write!(f, "src-bits(src_start={src_start}, dst_start={dst_start}, len={len})")
            }
            Rule::KeyedHash { src_prefix_len, .. } => {
                write!(f, "keyed-hash(src_prefix_len={src_prefix_len}, key=<redacted>)")
            }
            Rule::TimeHop { src_prefix_len, period_s, skew, .. } => write!(
                f,
                "time-hop(src_prefix_len={src_prefix_len}, period_s={period_s}, skew={skew}, key=<redacted>)"
            ),
        }
    }
}

impl fmt::Debug for Rule {
    /// As `Display`: the key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv4_mapped;

    fn a(text: &str) -> u128 {
        u128::from(text.parse::<std::net::Ipv6Addr>().unwrap())
    }

    fn p(text: &str) -> Prefix {
        text.parse().unwrap()
    }

    const KEY: [u8; 16] = *b"weir-ssa-testkey";

    #[test]
    fn src_bits_seed_example_fixed_values() {
        let rule = Rule::src_bits(0, 64, 64).unwrap();
        let src = a("2001:db8:aaaa:bbbb::1");
        assert!(rule.check(src, a("2001:db8:5::2001:db8:aaaa:bbbb"), 0));
        assert!(!rule.check(src, a("2001:db8:5::2001:db8:aaaa:bbbc"), 0));
        assert!(!rule.check(src, a("2001:db8:5::1"), 0));
        let dst = rule
            .pick(&p("2001:db8:5::/64"), src, &PickContext::default())
            .unwrap();
        assert_eq!(
            dst,
            a("2001:db8:5::2001:db8:aaaa:bbbb"),
            "low 64 = source high 64, no free bits"
        );
    }

    #[test]
    fn src_bits_validation() {
        assert!(Rule::src_bits(0, 64, 64).is_ok());
        assert!(Rule::src_bits(64, 0, 64).is_ok());
        assert!(Rule::src_bits(127, 127, 1).is_ok());
        assert_eq!(
            Rule::src_bits(0, 65, 64),
            Err(SsaError::SrcBits {
                src_start: 0,
                dst_start: 65,
                len: 64
            })
        );
        assert!(Rule::src_bits(100, 0, 29).is_err());
        assert!(Rule::src_bits(0, 0, 0).is_err());
        assert!(Rule::src_bits(255, 255, 255)
            .unwrap_err()
            .to_string()
            .contains("src_start 255"));
        // Hand-built invalid rules fail closed, never panic.
        let bad = Rule::SrcBits {
            src_start: 200,
            dst_start: 0,
            len: 200,
        };
        assert!(!bad.check(0, 0, 0));
        assert!(!Rule::SrcBits {
            src_start: 0,
            dst_start: 0,
            len: 0
        }
        .check(0, 0, 0));
        assert!(matches!(
            bad.pick(&p("::/0"), 0, &PickContext::default()),
            Err(PickError::InvalidRule(_))
        ));
    }

    #[test]
    fn src_bits_full_and_single_bit() {
        let full = Rule::src_bits(0, 0, 128).unwrap();
        assert!(full.check(7, 7, 0) && !full.check(7, 6, 0));
        let one = Rule::src_bits(127, 0, 1).unwrap();
        assert!(one.check(1, 1 << 127, 0) && !one.check(1, 0, 0));
    }

    #[test]
    fn src_bits_overlapping_prefix() {
        // Copy source bits [0, 32) into destination [0, 32): only a source in 2001:db8::/32
        // can use the prefix 2001:db8::/32.
        let rule = Rule::src_bits(0, 0, 32).unwrap();
        let prefix = p("2001:db8::/32");
        let ok = rule
            .pick(
                &prefix,
                a("2001:db8:1::1"),
                &PickContext {
                    entropy: 9,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(prefix.contains(ok) && rule.check(a("2001:db8:1::1"), ok, 0));
        let err = rule
            .pick(&prefix, a("2001:db9::1"), &PickContext::default())
            .unwrap_err();
        assert!(matches!(err, PickError::SourceConflictsWithPrefix { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("[0, 32)") && msg.contains("2001:db8::/32") && msg.contains("0x20010db9"),
            "{msg}"
        );
    }

    #[test]
    fn keyed_hash_definition() {
        let rule = Rule::keyed_hash(KEY, 48).unwrap();
        let src = a("2001:db8:1:2:3:4:5:6");
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01]);
        let h = siphash24(&KEY, &bytes);
        let dst = a("2001:db8:5::") | u128::from(h);
        assert!(rule.check(src, dst, 0));
        assert!(
            rule.check(a("2001:db8:1:ffff::"), dst, 0),
            "bits beyond /48 do not matter"
        );
        assert!(!rule.check(a("2001:db8:2::"), dst, 0));
        assert!(!rule.check(src, dst ^ 1, 0));
        let too_long = rule
            .pick(&p("2001:db8:5::/72"), src, &PickContext::default())
            .unwrap_err();
        assert_eq!(too_long.to_string(), "rule `keyed-hash` needs a prefix of /64 or shorter (the low 64 bits carry the hash), got 2001:db8:5::/72");
        assert!(Rule::keyed_hash(KEY, 129).is_err());
        assert!(Rule::keyed_hash(KEY, 0).unwrap().check(
            1,
            u128::from(siphash24(&KEY, &[0; 16])),
            0
        ));
    }

    #[test]
    fn time_hop_definition_and_windows() {
        let rule = Rule::time_hop(KEY, 64, 30, 1).unwrap();
        let src = a("2001:db8:1:2::9");
        let mut data = [0u8; 24];
        data[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]);
        data[16..].copy_from_slice(&100u64.to_be_bytes());
        let dst = a("2001:db8:5::") | u128::from(siphash24(&KEY, &data));
        for now in [3000, 3029, 3030, 3059] {
            assert!(rule.check(src, dst, now), "window 100 or 101 at {now}");
        }
        assert!(!rule.check(src, dst, 2999));
        assert!(!rule.check(src, dst, 3060));
        assert!(rule.is_time_window() && !Rule::default().is_time_window());
        assert_eq!(Rule::time_hop(KEY, 64, 0, 0), Err(SsaError::ZeroPeriod));
        assert_eq!(
            Rule::time_hop(KEY, 64, 1, 17),
            Err(SsaError::Skew { skew: 17, max: 16 })
        );
        // Hand-built: zero period rejects, huge skew is capped, window 0 saturates.
        assert!(!Rule::TimeHop {
            key: KEY,
            src_prefix_len: 64,
            period_s: 0,
            skew: 0
        }
        .check(src, dst, 3000));
        let wide = Rule::TimeHop {
            key: KEY,
            src_prefix_len: 64,
            period_s: 1,
            skew: u32::MAX,
        };
        assert!(!wide.check(src, dst, 1_000_000));
        let early = Rule::time_hop(KEY, 64, 10, 5).unwrap();
        let d0 = early
            .pick(
                &p("2001:db8:5::/64"),
                src,
                &PickContext {
                    now_unix_s: 5,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(early.check(src, d0, 0) && early.check(src, d0, 9));
    }

    #[test]
    fn src_mix_is_the_default_and_matches_design_example() {
        // DESIGN.md: source 2001:db8:ff::1 (s = 0x20010db800ff0000) → destination
        // 2001:db8:5:0:f41c:bf9b:a428:420.
        assert_eq!(fmix64(0x2001_0db8_00ff_0000), 0xf41c_bf9b_a428_0420);
        let rule = Rule::default();
        assert_eq!(rule, Rule::src_mix(64).unwrap());
        let src = a("2001:db8:ff::1");
        let dst = a("2001:db8:5:0:f41c:bf9b:a428:420");
        assert!(rule.check(src, dst, 0));
        assert!(
            rule.check(a("2001:db8:ff:0:ffff::9"), dst, 0),
            "host bits are free"
        );
        assert!(!rule.check(a("2001:db8:ff:1::1"), dst, 0));
        assert!(!rule.check(src, dst ^ 1, 0));
        let picked = rule
            .pick(&p("2001:db8:5::/64"), src, &PickContext::default())
            .unwrap();
        assert_eq!(picked, dst, "a /64 leaves no free bits");
    }

    #[test]
    fn src_mix_prefix_length_and_validation() {
        let rule = Rule::src_mix(48).unwrap();
        let dst = a("2001:db8:5::") | u128::from(fmix64(0x2001_0db8_00ff_0000));
        assert!(rule.check(a("2001:db8:ff::1"), dst, 0));
        assert!(
            rule.check(a("2001:db8:ff:abcd::1"), dst, 0),
            "bits beyond /48 are free"
        );
        assert!(!rule.check(a("2001:db8:fe::1"), dst, 0));
        for bad in [0u8, 65, 128, 255] {
            assert_eq!(Rule::src_mix(bad), Err(SsaError::SrcMixLen { len: bad }));
            // Hand-built: fails closed.
            assert!(!Rule::SrcMix {
                src_prefix_len: bad
            }
            .check(0, u128::from(fmix64(0)), 0));
        }
        assert!(Rule::src_mix(0).unwrap_err().to_string().contains("1..=64"));
        // A /72 service prefix leaves no room for the 64-bit mix.
        assert!(matches!(
            rule.pick(&p("2001:db8:5::/72"), 0, &PickContext::default()),
            Err(PickError::PrefixTooLong {
                rule: "src-mix",
                ..
            })
        ));
        // A /48 prefix: bits [48, 64) are free and come from entropy.
        let wide = p("2001:db8::/48");
        let ctx = |entropy| PickContext {
            entropy,
            ..Default::default()
        };
        let d1 = rule.pick(&wide, a("2001:db8:ff::1"), &ctx(1)).unwrap();
        let d2 = rule.pick(&wide, a("2001:db8:ff::1"), &ctx(2)).unwrap();
        assert!(wide.contains(d1) && wide.contains(d2) && d1 != d2);
        assert_eq!(d1 as u64, d2 as u64);
    }

    #[test]
    fn spread_warning_names_src_bits_that_feed_the_slice_bits() {
        let v6 = [p("2001:db8:5::/64")];
        let seed = Rule::src_bits(0, 64, 64).unwrap();
        let w = seed.spread_warning(&v6, 14).unwrap();
        assert!(
            w.contains("source bits [0, 14)") && w.contains("[64, 78)") && w.contains("src-mix"),
            "{w}"
        );
        // Source bits from 16 on, or copies that miss the slice bits: no warning.
        assert_eq!(
            Rule::src_bits(16, 64, 64).unwrap().spread_warning(&v6, 14),
            None
        );
        assert_eq!(
            Rule::src_bits(0, 100, 28).unwrap().spread_warning(&v6, 14),
            None
        );
        assert_eq!(
            Rule::src_bits(0, 64, 64).unwrap().spread_warning(&v6, 0),
            None
        );
        // Slice bits [64, 78) from source bits [10, 24): 10..16 are in the first 16.
        assert!(Rule::src_bits(10, 64, 64)
            .unwrap()
            .spread_warning(&v6, 14)
            .is_some());
        for rule in [
            Rule::default(),
            Rule::Any,
            Rule::Content,
            Rule::keyed_hash(KEY, 64).unwrap(),
        ] {
            assert_eq!(rule.spread_warning(&v6, 14), None);
        }
    }

    #[test]
    fn content_needs_key_and_is_deterministic() {
        let prefix = p("2001:db8:5::/64");
        let rule = Rule::Content;
        assert_eq!(
            rule.pick(&prefix, 0, &PickContext::default()),
            Err(PickError::MissingObjectKey)
        );
        let ctx = |entropy| PickContext {
            object_key: Some(b"bucket/object-42"),
            entropy,
            ..Default::default()
        };
        let d1 = rule.pick(&prefix, 1, &ctx(1)).unwrap();
        let d2 = rule.pick(&prefix, 2, &ctx(2)).unwrap();
        assert_eq!(d1, d2, "same object, same address, whoever asks");
        let h = siphash24(&CONTENT_KEY, b"bucket/object-42");
        assert_eq!(d1, a("2001:db8:5::") | u128::from(h));
        // The bits after the prefix are the hash's top bits, for any prefix length.
        let v4 = rule.pick(&p("192.0.2.0/24"), 0, &ctx(0)).unwrap();
        assert_eq!(v4, ipv4_mapped(0xc000_0200 | u32::from((h >> 56) as u8)));
        let host = rule.pick(&p("2001:db8::1/128"), 0, &ctx(0)).unwrap();
        assert_eq!(host, a("2001:db8::1"));
        let all = rule.pick(&p("::/0"), 0, &ctx(0)).unwrap();
        assert_eq!(all, (u128::from(h) << 64) | u128::from(h));
    }

    #[test]
    fn any_uses_entropy_in_host_bits() {
        let prefix = p("2001:db8:5::/64");
        let d1 = Rule::Any
            .pick(
                &prefix,
                0,
                &PickContext {
                    entropy: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        let d2 = Rule::Any
            .pick(
                &prefix,
                0,
                &PickContext {
                    entropy: 2,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(prefix.contains(d1) && prefix.contains(d2) && d1 != d2);
        assert_eq!(
            Rule::Any.pick(&p("::1/128"), 0, &PickContext::default()),
            Ok(1)
        );
    }

    #[test]
    fn names_display_and_redaction() {
        let rules = [
            Rule::Any,
            Rule::default(),
            Rule::src_bits(0, 64, 64).unwrap(),
            Rule::keyed_hash(KEY, 64).unwrap(),
            Rule::time_hop(KEY, 56, 30, 2).unwrap(),
            Rule::Content,
        ];
        for (rule, name) in rules.iter().zip(Rule::NAMES) {
            assert_eq!(rule.name(), name);
            assert!(rule.to_string().starts_with(name));
            assert!(
                !format!("{rule:?}").contains("weir-ssa") && !format!("{rule:?}").contains("119")
            );
        }
        assert_eq!(rules[1].to_string(), "src-mix(src_prefix_len=64)");
        assert_eq!(
            rules[2].to_string(),
            "src-bits(src_start=0, dst_start=64, len=64)"
        );
        assert_eq!(
            rules[4].to_string(),
            "time-hop(src_prefix_len=56, period_s=30, skew=2, key=<redacted>)"
        );
    }
}
