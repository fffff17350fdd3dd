//! [`Checker`]: a [`Rule`] prepared for the packet path.
//!
//! `Rule::check` is the definition; it re-derives everything from the rule's fields on
//! each call (validity of the bit range, two variable-width shifts of 128-bit values).
//! A `Checker` does that work once: for `src-bits` it keeps the shift that moves the source
//! field onto the destination field and the destination mask, so a check is one shift, one
//! xor and one mask test; for `src-mix` (the default) it keeps the source mask, so a check
//! is a mask, fmix64 (two multiplies) and one 64-bit compare with no call and no branch on
//! the rule's fields. The keyed hashes gain nothing from preparation and delegate to the
//! rule. A property test holds `Checker::check` equal to `Rule::check` for every rule.

use crate::Rule;

/// A rule prepared for per-packet checks; same answers as [`Rule::check`].
#[derive(Clone, PartialEq, Eq)]
pub struct Checker {
    kind: Kind,
    rule: Rule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Every destination passes.
    Always,
    /// Nothing passes (an invalid src-bits range built by hand: fail closed, as `check`).
    Never,
    /// `((src << left) >> right) ^ dst) & mask == 0` — the source field moved onto the
    /// destination field (`left` and `right` are never both non-zero).
    Bits { left: u32, right: u32, mask: u128 },
    /// The default src-bits rule (0, 64, 64): the destination's low 64 bits equal the
    /// source's high 64 bits — one 64-bit compare.
    HighToLow,
    /// `src-mix`: `dst as u64 == fmix64((src >> 64) as u64 & mask)`.
    Mix { mask: u64 },
    /// Delegate to [`Rule::check`].
    Rule,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("kind", &self.kind)
            .field("rule", &self.rule)
            .finish()
    }
}

impl Checker {
    /// Prepare `rule`.
    pub fn new(rule: &Rule) -> Checker {
        let kind = match *rule {
            Rule::Any | Rule::Content => Kind::Always,
            Rule::SrcMix { src_prefix_len } => {
                if (1..=crate::rule::MAX_SRC_MIX_LEN).contains(&src_prefix_len) {
                    Kind::Mix {
                        mask: crate::rule::high_mask(src_prefix_len),
                    }
                } else {
                    Kind::Never
                }
            }
            Rule::SrcBits {
                src_start,
                dst_start,
                len,
            } => {
                let valid = len >= 1
                    && u16::from(src_start) + u16::from(len) <= 128
                    && u16::from(dst_start) + u16::from(len) <= 128;
                if (src_start, dst_start, len) == (0, 64, 64) {
                    Kind::HighToLow
                } else if valid {
                    // Field of `len` bits starting at bit `dst_start` (bit 0 = MSB).
                    let mask = (u128::MAX >> (128 - u32::from(len)))
                        << (128 - u32::from(dst_start) - u32::from(len));
                    let (left, right) = if src_start >= dst_start {
                        (u32::from(src_start - dst_start), 0)
                    } else {
                        (0, u32::from(dst_start - src_start))
                    };
                    Kind::Bits { left, right, mask }
                } else {
                    Kind::Never
                }
            }
            Rule::KeyedHash { .. } | Rule::TimeHop { .. } => Kind::Rule,
        };
        Checker { kind, rule: *rule }
    }

    /// The rule this checker was prepared from.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Same as [`Rule::check`]. Always inlined: it runs on every packet, and as a call
    /// (LTO's choice once `src-mix` grew the match) it cost ~30 instructions per packet
    /// more than inline (callgrind, `scripts/bench-instructions.sh`).
    ///
    /// `src-mix` (the default) and `src-bits` are tested for first, inline; the other
    /// rules are one call away. (`match`ed inline all together, they cost `src-mix` a jump
    /// table and its spills: ~6 instructions a packet on the flood, callgrind.)
    #[inline(always)]
    pub fn check(&self, src: u128, dst: u128, now_unix_s: u64) -> bool {
        if let Kind::Mix { mask } = self.kind {
            #[allow(clippy::cast_possible_truncation)] // the halves are the point
            return crate::rule::fmix64((src >> 64) as u64 & mask) == dst as u64;
        }
        if let Kind::Bits { left, right, mask } = self.kind {
            return ((src << left) >> right ^ dst) & mask == 0;
        }
        self.check_other(src, dst, now_unix_s)
    }

    #[inline(never)]
    fn check_other(&self, src: u128, dst: u128, now_unix_s: u64) -> bool {
        match self.kind {
            Kind::Always => true,
            Kind::Never => false,
            Kind::Bits { left, right, mask } => ((src << left) >> right ^ dst) & mask == 0,
            #[allow(clippy::cast_possible_truncation)] // the low half is the point
            Kind::HighToLow => (src >> 64) as u64 == dst as u64,
            #[allow(clippy::cast_possible_truncation)] // the halves are the point
            Kind::Mix { mask } => crate::rule::fmix64((src >> 64) as u64 & mask) == dst as u64,
            Kind::Rule => self.rule.check(src, dst, now_unix_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn agrees_with_rule_check_on_src_bits(
            src_start in 0u8..=130, dst_start in 0u8..=130, len in 0u8..=130,
            src in any::<u128>(), dst in any::<u128>(), copy in any::<bool>(),
        ) {
            let rule = Rule::SrcBits { src_start, dst_start, len };
            let c = Checker::new(&rule);
            // Half the cases make dst conform, so both answers are exercised.
            let dst = match (copy, rule.pick(&crate::Prefix::new(0, 0).unwrap(), src, &crate::PickContext { entropy: dst as u64, ..Default::default() })) {
                (true, Ok(d)) => d,
                _ => dst,
            };
            prop_assert_eq!(c.check(src, dst, 0), rule.check(src, dst, 0));
        }

        #[test]
        fn agrees_with_rule_check_on_the_seed_example(src in any::<u128>(), dst in any::<u128>(), copy in any::<bool>()) {
            let rule = Rule::SrcBits { src_start: 0, dst_start: 64, len: 64 };
            let dst = if copy { (dst >> 64 << 64) | (src >> 64) } else { dst };
            prop_assert_eq!(Checker::new(&rule).check(src, dst, 0), rule.check(src, dst, 0));
        }

        #[test]
        fn agrees_with_rule_check_on_src_mix(
            src_prefix_len in 0u8..=70, src in any::<u128>(), dst in any::<u128>(), copy in any::<bool>(),
        ) {
            let rule = Rule::SrcMix { src_prefix_len };
            // Half the cases make dst conform (when the rule is valid), so both answers
            // are exercised.
            let dst = match (copy, rule.pick(&crate::Prefix::new(0, 0).unwrap(), src, &crate::PickContext { entropy: dst as u64, ..Default::default() })) {
                (true, Ok(d)) => d,
                _ => dst,
            };
            prop_assert_eq!(Checker::new(&rule).check(src, dst, 0), rule.check(src, dst, 0));
        }

        #[test]
        fn agrees_with_rule_check_on_other_rules(src in any::<u128>(), dst in any::<u128>(), now in any::<u64>(), key in any::<[u8; 16]>()) {
            for rule in [
                Rule::Any,
                Rule::Content,
                Rule::KeyedHash { key, src_prefix_len: 64 },
                Rule::TimeHop { key, src_prefix_len: 48, period_s: 30, skew: 1 },
            ] {
                prop_assert_eq!(Checker::new(&rule).check(src, dst, now), rule.check(src, dst, now));
            }
        }
    }

    #[test]
    fn seed_example_low_half_equals_source_high_half() {
        let c = Checker::new(&Rule::src_bits(0, 64, 64).unwrap());
        let src = 0x2001_0db8_c000_0001_0000_0000_0000_0100u128;
        assert!(c.check(src, 0x2001_0db8_0005_0000_2001_0db8_c000_0001, 0));
        assert!(!c.check(src, 0x2001_0db8_0005_0000_2001_0db8_c000_0002, 0));
    }

    #[test]
    fn default_rule_is_src_mix() {
        let c = Checker::new(&Rule::default());
        // DESIGN.md's example.
        let src = 0x2001_0db8_00ff_0000_0000_0000_0000_0001u128;
        assert!(c.check(src, 0x2001_0db8_0005_0000_f41c_bf9b_a428_0420, 0));
        assert!(!c.check(src, 0x2001_0db8_0005_0000_f41c_bf9b_a428_0421, 0));
    }
}
