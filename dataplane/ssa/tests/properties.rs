//! Property tests over the public API: pick-then-check for every rule, round trips for the
//! text formats, lookup against a naive oracle, slices against their routes.

use proptest::prelude::*;
use weir_ssa::{
    fmix64, Apl, AplItem, PickContext, Prefix, Rule, ServicePrefixes, SliceMap, MAX_SKEW,
};

/// An IPv6 service prefix of length 16..=64 (hash rules need ≤ /64).
fn v6_prefix() -> impl Strategy<Value = Prefix> {
    (any::<u128>(), 16u8..=64).prop_map(|(addr, len)| Prefix::new(addr, len).unwrap())
}

/// An IPv4 (mapped) prefix of length 8..=32.
fn v4_prefix() -> impl Strategy<Value = Prefix> {
    (any::<u32>(), 8u8..=32).prop_map(|(addr, len)| Prefix::from_ipv4(addr, len).unwrap())
}

fn any_prefix() -> impl Strategy<Value = Prefix> {
    (any::<u128>(), 0u8..=128).prop_map(|(addr, len)| Prefix::new(addr, len).unwrap())
}

fn ctx(now: u64, object: &[u8], entropy: u64) -> PickContext<'_> {
    PickContext {
        now_unix_s: now,
        object_key: Some(object),
        entropy,
    }
}

fn assert_pick(
    rule: &Rule,
    prefix: &Prefix,
    src: u128,
    c: &PickContext<'_>,
) -> Result<u128, TestCaseError> {
    let dst = rule
        .pick(prefix, src, c)
        .map_err(|e| TestCaseError::fail(format!("{rule} on {prefix}: {e}")))?;
    prop_assert!(prefix.contains(dst), "{rule}: {dst:#x} outside {prefix}");
    prop_assert!(
        rule.check(src, dst, c.now_unix_s),
        "{rule}: check failed for {dst:#x}"
    );
    Ok(dst)
}

proptest! {
    #[test]
    fn any_and_content_pick_then_check(
        prefix in prop_oneof![v6_prefix(), v4_prefix()],
        src: u128, now: u64, entropy: u64, object in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let c = ctx(now, &object, entropy);
        assert_pick(&Rule::Any, &prefix, src, &c)?;
        let d = assert_pick(&Rule::Content, &prefix, src, &c)?;
        // Content ignores entropy and source: one object, one address.
        prop_assert_eq!(Rule::Content.pick(&prefix, !src, &ctx(now, &object, !entropy)).unwrap(), d);
    }

    #[test]
    fn src_bits_seed_example_pick_then_check(prefix in v6_prefix(), src: u128, entropy: u64) {
        let rule = Rule::src_bits(0, 64, 64).unwrap();
        let dst = assert_pick(&rule, &prefix, src, &ctx(0, &[], entropy))?;
        prop_assert_eq!(dst as u64, (src >> 64) as u64);
    }

    #[test]
    fn src_mix_pick_then_check(prefix in v6_prefix(), src: u128, entropy: u64, src_prefix_len in 1u8..=64) {
        let rule = Rule::src_mix(src_prefix_len).unwrap();
        let dst = assert_pick(&rule, &prefix, src, &ctx(0, &[], entropy))?;
        // Only the source's first src_prefix_len bits matter.
        let other = src ^ !Prefix::mask(src_prefix_len);
        prop_assert!(rule.check(other, dst, 0));
        prop_assert_eq!(Rule::default().pick(&prefix, src, &ctx(0, &[], entropy)).unwrap() as u64, fmix64((src >> 64) as u64));
    }

    /// fmix64 is a bijection: undoing each step (xorshift 33 is its own inverse after two
    /// rounds; each multiplier is odd, so it has an inverse mod 2^64) gives the input back.
    /// So distinct source /64s always get distinct destinations under `src-mix`.
    #[test]
    fn fmix64_is_bijective(x: u64, y: u64) {
        fn unshift(k: u64) -> u64 { k ^ (k >> 33) } // 33 + 33 >= 64: one round undoes it
        const INV1: u64 = 0x4f74_430c_22a5_4005; // inverse of 0xff51afd7ed558ccd mod 2^64
        const INV2: u64 = 0x9cb4_b2f8_1293_37db; // inverse of 0xc4ceb9fe1a85ec53 mod 2^64
        prop_assert_eq!(0xff51_afd7_ed55_8ccd_u64.wrapping_mul(INV1), 1);
        prop_assert_eq!(0xc4ce_b9fe_1a85_ec53_u64.wrapping_mul(INV2), 1);
        let undo = |h: u64| unshift(unshift(unshift(h).wrapping_mul(INV2)).wrapping_mul(INV1));
        prop_assert_eq!(undo(fmix64(x)), x);
        let rule = Rule::default();
        let (sx, sy) = (u128::from(x) << 64, u128::from(y) << 64);
        let svc = 0x2001_0db8_0005_0000_u128 << 64;
        let (dx, dy) = (svc | u128::from(fmix64(x)), svc | u128::from(fmix64(y)));
        prop_assert!(rule.check(sx, dx, 0));
        prop_assert_eq!(x == y, rule.check(sy, dx, 0));
        prop_assert_eq!(x == y, dx == dy);
    }

    #[test]
    fn src_bits_any_layout_pick_then_check(
        prefix in prop_oneof![v6_prefix(), v4_prefix()],
        src: u128, entropy: u64,
        (src_start, dst_start, len) in (1u8..=128).prop_flat_map(|len| (0..=128 - len, 0..=128 - len, Just(len))),
    ) {
        let rule = Rule::src_bits(src_start, dst_start, len).unwrap();
        let overlaps = dst_start < prefix.len;
        if !overlaps {
            assert_pick(&rule, &prefix, src, &ctx(0, &[], entropy))?;
        } else {
            // Possible exactly when the source agrees with the prefix on the overlap.
            match rule.pick(&prefix, src, &ctx(0, &[], entropy)) {
                Ok(dst) => prop_assert!(prefix.contains(dst) && rule.check(src, dst, 0)),
                Err(e) => {
                    let overlap = prefix.len.min(dst_start + len) - dst_start;
                    let from_src = (src << src_start) >> (128 - u32::from(overlap));
                    let from_prefix = (prefix.addr << dst_start) >> (128 - u32::from(overlap));
                    prop_assert_ne!(from_src, from_prefix, "{}", e);
                }
            }
            // A source that agrees with the prefix on the overlap always succeeds: copy the
            // prefix's bits in the destination field back to the source field.
            let dst_field = Prefix::mask(len) >> dst_start;
            let fixed_at_dst = Prefix::mask(prefix.len) & dst_field;
            let fixed_at_src = (fixed_at_dst << dst_start) >> src_start;
            let prefix_bits_at_src = ((prefix.addr & dst_field) << dst_start) >> src_start;
            let agreeing = (src & !fixed_at_src) | prefix_bits_at_src;
            assert_pick(&rule, &prefix, agreeing, &ctx(0, &[], entropy))?;
        }
    }

    #[test]
    fn keyed_hash_pick_then_check(prefix in v6_prefix(), src: u128, entropy: u64, key: [u8; 16], src_prefix_len in 0u8..=128) {
        let rule = Rule::keyed_hash(key, src_prefix_len).unwrap();
        let dst = assert_pick(&rule, &prefix, src, &ctx(0, &[], entropy))?;
        // Only the source's first src_prefix_len bits matter.
        let other = src ^ !Prefix::mask(src_prefix_len);
        prop_assert!(rule.check(other, dst, 0));
    }

    #[test]
    fn time_hop_pick_then_check_and_windows(
        prefix in v6_prefix(), src: u128, entropy: u64, key: [u8; 16],
        period_s in 1u64..=86_400, skew in 0u32..=MAX_SKEW, now in 0u64..=(1 << 40),
    ) {
        let rule = Rule::time_hop(key, 64, period_s, skew).unwrap();
        let dst = assert_pick(&rule, &prefix, src, &ctx(now, &[], entropy))?;
        for k in 0..=u64::from(skew) {
            prop_assert!(rule.check(src, dst, now + k * period_s), "k = {}", k);
        }
        // One window too late: fails (a 64-bit hash collision has probability 2^-64 per window).
        prop_assert!(!rule.check(src, dst, now + (u64::from(skew) + 1) * period_s));
        // Earlier than the window it was picked for: fails unless saturated at window 0.
        if now >= period_s {
            prop_assert!(!rule.check(src, dst, now - period_s));
        }
    }

    #[test]
    fn hash_rules_refuse_long_prefixes(addr: u128, len in 65u8..=128, key: [u8; 16]) {
        let prefix = Prefix::new(addr, len).unwrap();
        prop_assert!(Rule::keyed_hash(key, 64).unwrap().pick(&prefix, 0, &PickContext::default()).is_err());
        prop_assert!(Rule::time_hop(key, 64, 1, 0).unwrap().pick(&prefix, 0, &PickContext::default()).is_err());
        prop_assert!(Rule::default().pick(&prefix, 0, &PickContext::default()).is_err());
    }

    #[test]
    fn check_never_panics_on_hand_built_rules(
        a: u8, b: u8, c: u8, key: [u8; 16], period_s: u64, skew: u32, src: u128, dst: u128, now: u64,
    ) {
        let rules = [
            Rule::SrcBits { src_start: a, dst_start: b, len: c },
            Rule::SrcMix { src_prefix_len: a },
            Rule::KeyedHash { key, src_prefix_len: a },
            Rule::TimeHop { key, src_prefix_len: a, period_s, skew },
        ];
        for rule in rules {
            let ok = rule.check(src, dst, now);
            if rule.validate().is_err() && matches!(rule, Rule::SrcBits { .. } | Rule::SrcMix { .. }) {
                prop_assert!(!ok);
            }
            let _ = rule.pick(&Prefix::new(dst, a).unwrap_or(Prefix { addr: 0, len: 0 }), src, &PickContext::default());
        }
    }

    #[test]
    fn prefix_text_round_trip(prefix in prop_oneof![any_prefix(), v4_prefix()]) {
        let text = prefix.to_string();
        prop_assert_eq!(text.parse::<Prefix>().unwrap(), prefix);
    }

    #[test]
    fn apl_text_round_trip(items in proptest::collection::vec((any::<bool>(), prop_oneof![any_prefix(), v4_prefix()]), 1..8)) {
        let apl = Apl { items: items.into_iter().map(|(negated, prefix)| AplItem { negated, prefix }).collect() };
        prop_assert_eq!(Apl::parse(&apl.to_string()).unwrap(), apl);
    }

    #[test]
    fn apl_parse_never_panics(text in "[!0-9a-fA-F:./ \t]{0,64}") {
        let _ = Apl::parse(&text);
    }

    #[test]
    fn lookup_matches_naive_longest_match(
        items in proptest::collection::vec((any::<bool>(), 0u8..=16, 0u8..=20), 1..12),
        probe: u16,
    ) {
        // Small address space (top 16 bits) so that items nest and probes hit them.
        let mut list: Vec<AplItem> = Vec::new();
        for (negated, bits, len) in items {
            let prefix = Prefix::new(u128::from(bits) << 124, len).unwrap();
            if list.iter().all(|i| i.prefix != prefix) {
                list.push(AplItem { negated, prefix });
            }
        }
        let apl = Apl { items: list.clone() };
        let addr = u128::from(probe) << 112;
        let expected = list
            .iter()
            .filter(|i| i.prefix.contains(addr))
            .max_by_key(|i| i.prefix.len)
            .filter(|i| !i.negated)
            .map(|hit| list.iter().filter(|i| !i.negated).position(|i| i.prefix == hit.prefix).unwrap());
        match ServicePrefixes::new(&apl) {
            Ok(s) => prop_assert_eq!(s.lookup(addr), expected),
            Err(_) => prop_assert!(list.iter().all(|i| i.negated)),
        }
    }

    #[test]
    fn slices_are_routes_that_contain_their_addresses(
        prefixes in proptest::collection::vec(prop_oneof![v6_prefix(), v4_prefix(), any_prefix()], 1..4),
        slice_bits in 0u8..=8, workers in 1u16..=40, dst_host: u128, which in 0usize..4,
    ) {
        let map = SliceMap::new(&prefixes, slice_bits, workers).unwrap();
        let idx = which % prefixes.len();
        let prefix = prefixes[idx];
        let dst = prefix.addr | (dst_host & prefix.host_mask());
        let slice = map.slice_of(idx, dst);
        prop_assert!(map.slices_of_prefix(idx).unwrap().contains(&slice));
        let route = map.slice_prefix(slice).unwrap();
        prop_assert!(route.contains(dst) && prefix.covers(&route));
        prop_assert_eq!(map.slice_of(idx, route.addr), slice);
        prop_assert!(map.worker_of(slice) < workers);
        // Default assignment: blocks, so workers are non-decreasing along each prefix.
        let range = map.slices_of_prefix(idx).unwrap();
        let table = &map.table()[range.start as usize..range.end as usize];
        prop_assert!(table.windows(2).all(|w| w[0] <= w[1]));
    }
}
