//! Arguments that need more than clap's own parsers: durations (`300`, `5m`, `1h30m`), slice
//! ranges (`a..b`), source addresses (IPv6, or IPv4 taken as IPv4-mapped), 128-bit keys, and
//! the rule flags shared by `rules set` and `ssa pick`.
//!
//! Rule flags are checked the way the daemon would check them (through `weir_ssa`'s validating
//! constructors), and a flag that does not belong to the chosen rule is an error rather than
//! silently ignored: `--rule src-bits --key …` is almost always a typo for `keyed-hash`, and
//! quietly installing a different rule than the operator meant is the worst outcome here.

use std::net::{IpAddr, Ipv6Addr};

use clap::{Args, ValueEnum};
use weir_ssa::parse_key;
use weir_ssa::{ipv4_mapped, Rule};

use super::CtlError;

/// A duration in whole seconds: `300`, `300s`, `5m`, `1h`, `2d`, or a sum such as `1h30m`.
pub fn parse_duration_s(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("bad duration {text:?}: {why} (examples: 300, 300s, 5m, 1h30m)");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| bad("number too large"));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let (num, tail) = rest.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
        let unit_len = tail.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            // A bare number is seconds only as the whole text: "1h30" is ambiguous.
            "" => return Err(bad("expected a unit (s, m, h, d) after each number")),
            other => return Err(bad(&format!("unknown unit {other:?} (use s, m, h or d)"))),
        };
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too large"))?;
        rest = tail;
    }
    Ok(total)
}

/// A positive duration in seconds (block TTLs, time-hop periods): zero is refused.
pub fn parse_positive_duration_s(text: &str) -> Result<u64, String> {
    match parse_duration_s(text)? {
        0 => Err(format!("bad duration {text:?}: must be at least 1 second")),
        n => Ok(n),
    }
}

/// Seconds as a float (`--timeout`, `--watch`): finite and above zero.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 1e9 => Ok(s),
        _ => Err(format!(
            "bad number of seconds {text:?}: expected a number above 0, such as 5 or 0.5"
        )),
    }
}

/// An inclusive slice range: `first..last`, `first..=last`, or a single slice `n`.
pub fn parse_slice_range(text: &str) -> Result<(u32, u32), String> {
    let num = |s: &str| {
        s.trim().parse::<u32>().map_err(|_| {
            format!("bad slice range {text:?}: {s:?} is not a slice number (0..=4294967295)")
        })
    };
    let (first, last) = match text.split_once("..") {
        Some((a, b)) => (num(a)?, num(b.strip_prefix('=').unwrap_or(b))?),
        None => {
            let n = num(text)?;
            (n, n)
        }
    };
    if first > last {
        return Err(format!(
            "bad slice range {text:?}: first slice {first} is after last slice {last}"
        ));
    }
    Ok((first, last))
}

/// A client source address: IPv6, or IPv4 (taken as `::ffff:a.b.c.d`, as weir does).
pub fn parse_source(text: &str) -> Result<u128, String> {
    match text.trim().parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => Ok(u128::from(a)),
        Ok(IpAddr::V4(a)) => Ok(ipv4_mapped(u32::from(a))),
        Err(_) => Err(format!("bad address {text:?}: not an IPv6 or IPv4 address")),
    }
}

/// A 128-bit key: 32 hex digits.
pub fn parse_key_arg(text: &str) -> Result<[u8; 16], String> {
    parse_key(text).map_err(|e| e.to_string())
}

/// An address as people write it: IPv4 for IPv4-mapped addresses, IPv6 otherwise.
pub fn format_addr(addr: u128) -> String {
    let v6 = Ipv6Addr::from(addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => v6.to_string(),
    }
}

/// The SSA rule names, as in the config file's `[ssa] rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuleName {
    /// Any address in the service prefixes.
    Any,
    /// Destination low 64 bits = fmix64 of the source prefix (the default).
    SrcMix,
    /// Destination bits copy source bits.
    SrcBits,
    /// Destination low 64 bits = SipHash of the source prefix.
    KeyedHash,
    /// As keyed-hash, with the time window hashed in.
    TimeHop,
    /// Any address; the client derives it from an object key.
    Content,
}

/// The flags that describe an SSA rule (`rules set`, `ssa pick`). Defaults are the config
/// file's: src-mix /64, src-bits 0/64/64, src_prefix_len 64, skew 0.
#[derive(Debug, Clone, Args)]
pub struct RuleArgs {
    /// The rule.
    #[arg(long, value_enum, value_name = "RULE")]
    pub rule: RuleName,
    /// src-bits: first source bit copied (0 = most significant) [default: 0].
    #[arg(long, value_name = "BIT")]
    pub src_start: Option<u8>,
    /// src-bits: first destination bit that receives them [default: 64].
    #[arg(long, value_name = "BIT")]
    pub dst_start: Option<u8>,
    /// src-bits: number of bits copied [default: 64].
    #[arg(long, value_name = "BITS")]
    pub len: Option<u8>,
    /// keyed-hash, time-hop: the 128-bit SipHash key, 32 hex digits.
    #[arg(long, value_name = "HEX32", value_parser = parse_key_arg)]
    pub key: Option<[u8; 16]>,
    /// src-mix, keyed-hash, time-hop: source bits mixed or hashed [default: 64].
    #[arg(long, value_name = "BITS")]
    pub src_prefix_len: Option<u8>,
    /// time-hop: window length (30, 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration_s)]
    pub period: Option<u64>,
    /// time-hop: earlier windows still accepted [default: 0].
    #[arg(long, value_name = "WINDOWS")]
    pub skew: Option<u32>,
}

impl RuleArgs {
    /// The flags given that `rule` does not use, by flag name.
    fn stray_flags(&self) -> Vec<&'static str> {
        let uses = |flag: &str| match self.rule {
            RuleName::Any | RuleName::Content => false,
            RuleName::SrcMix => flag == "--src-prefix-len",
            RuleName::SrcBits => matches!(flag, "--src-start" | "--dst-start" | "--len"),
            RuleName::KeyedHash => matches!(flag, "--key" | "--src-prefix-len"),
            RuleName::TimeHop => {
                matches!(flag, "--key" | "--src-prefix-len" | "--period" | "--skew")
            }
        };
        [
            ("--src-start", self.src_start.is_some()),
            ("--dst-start", self.dst_start.is_some()),
            ("--len", self.len.is_some()),
            ("--key", self.key.is_some()),
            ("--src-prefix-len", self.src_prefix_len.is_some()),
            ("--period", self.period.is_some()),
            ("--skew", self.skew.is_some()),
        ]
        .into_iter()
        .filter(|&(flag, given)| given && !uses(flag))
        .map(|(flag, _)| flag)
        .collect()
    }

    /// The validated rule.
    pub fn rule(&self) -> Result<Rule, CtlError> {
        let name = self
            .rule
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string());
        if let Some(flag) = self.stray_flags().first() {
            return Err(CtlError::Argument(format!(
                "{flag} does not apply to rule {name}"
            )));
        }
        if matches!(self.rule, RuleName::KeyedHash | RuleName::TimeHop) && self.key.is_none() {
            return Err(CtlError::Argument(format!("rule {name} needs --key HEX32")));
        }
        if self.rule == RuleName::TimeHop && self.period.is_none() {
            return Err(CtlError::Argument(
                "rule time-hop needs --period DURATION".into(),
            ));
        }
        // The same constructor and validator as the config file's `[ssa]`.
        Rule::from_keys(
            &name,
            self.src_start,
            self.dst_start,
            self.len,
            self.key.as_ref(),
            self.src_prefix_len,
            self.period,
            self.skew,
        )
        .map_err(|e| CtlError::Argument(format!("rule {name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_s("300"), Ok(300));
        assert_eq!(parse_duration_s("300s"), Ok(300));
        assert_eq!(parse_duration_s("5m"), Ok(300));
        assert_eq!(parse_duration_s("1h"), Ok(3600));
        assert_eq!(parse_duration_s("1h30m"), Ok(5400));
        assert_eq!(parse_duration_s("2d"), Ok(172_800));
        assert_eq!(parse_duration_s("0"), Ok(0));
        for bad in [
            "",
            "m",
            "5x",
            "1.5h",
            "-3",
            "5 m",
            "1h30",
            "99999999999999999999",
        ] {
            assert!(parse_duration_s(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_positive_duration_s("0s").is_err());
        assert!(parse_duration_s("5x").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn slice_ranges() {
        assert_eq!(parse_slice_range("0..99"), Ok((0, 99)));
        assert_eq!(parse_slice_range("0..=99"), Ok((0, 99)));
        assert_eq!(parse_slice_range("7"), Ok((7, 7)));
        for bad in ["9..3", "a..3", "..3", "3..", "", "-1", "1...3"] {
            assert!(parse_slice_range(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn sources() {
        assert_eq!(parse_source("2001:db8::1"), Ok(0x2001_0db8 << 96 | 1));
        assert_eq!(parse_source("192.0.2.1"), Ok(ipv4_mapped(0xc000_0201)));
        assert!(parse_source("2001:db8::/64").is_err());
        assert_eq!(format_addr(ipv4_mapped(0xc000_0201)), "192.0.2.1");
        assert_eq!(format_addr(0x2001_0db8 << 96 | 1), "2001:db8::1");
    }

    fn args(rule: RuleName) -> RuleArgs {
        RuleArgs {
            rule,
            src_start: None,
            dst_start: None,
            len: None,
            key: None,
            src_prefix_len: None,
            period: None,
            skew: None,
        }
    }

    #[test]
    fn rule_flags() {
        assert_eq!(
            args(RuleName::SrcBits).rule().unwrap(),
            Rule::src_bits(0, 64, 64).unwrap()
        );
        assert_eq!(args(RuleName::SrcMix).rule().unwrap(), Rule::default());
        let mut a = args(RuleName::SrcMix);
        a.src_prefix_len = Some(0);
        assert!(a.rule().unwrap_err().to_string().contains("1..=64"));
        a.src_prefix_len = Some(48);
        assert_eq!(a.rule().unwrap(), Rule::SrcMix { src_prefix_len: 48 });
        a.len = Some(3);
        let e = a.rule().unwrap_err().to_string();
        assert!(e.contains("--len does not apply to rule src-mix"), "{e}");
        let mut a = args(RuleName::SrcBits);
        a.key = Some([1; 16]);
        let e = a.rule().unwrap_err().to_string();
        assert!(e.contains("--key") && e.contains("src-bits"), "{e}");

        let mut a = args(RuleName::SrcBits);
        a.dst_start = Some(100);
        assert!(a.rule().unwrap_err().to_string().contains("src-bits"));

        let mut a = args(RuleName::TimeHop);
        a.key = Some([1; 16]);
        assert!(a.rule().unwrap_err().to_string().contains("--period"));
        a.period = Some(30);
        a.skew = Some(99);
        assert!(a.rule().is_err(), "skew above MAX_SKEW");
        a.skew = Some(2);
        assert_eq!(
            a.rule().unwrap(),
            Rule::TimeHop {
                key: [1; 16],
                src_prefix_len: 64,
                period_s: 30,
                skew: 2
            }
        );
        assert!(args(RuleName::KeyedHash).rule().is_err(), "no key");
    }
}
