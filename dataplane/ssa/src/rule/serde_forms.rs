//! The two serde forms of a [`Rule`]: one type for the config file, weir-cp's state file,
//! weirctl's JSON and the control protocol.
//!
//! - **Text** (human-readable formats: TOML, JSON): a table tagged by `rule`, with the
//!   rule's own keys and their defaults, keys as 32 hex digits —
//!   `{ rule = "src-mix", src_prefix_len = 64 }`. Reading it validates the rule with
//!   [`Rule::validate`] (the one validator) and refuses keys that belong to another rule,
//!   so a config error names the key and the rule.
//! - **Wire** (binary formats: postcard): the same fields, externally tagged, because
//!   postcard is not self-describing and cannot read an internally tagged enum. Reading it
//!   does not validate: the dataplane validates a whole snapshot and names the bad field.
//!
//! Serialising a key is deliberate here (weir-cp persists its state, the protocol carries
//! the rule); `Display` and `Debug` still redact it.
//!
//! Rejected: separate config and protocol rule types with conversions between them (four
//! copies of the same fields, and two validators that had drifted apart: a `time-hop`
//! `skew` beyond the bound was accepted from a file and capped silently).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Rule, MAX_SRC_MIX_LEN};

/// Why a rule's text form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleTextError {
    /// A key that is not 32 hex digits.
    #[error("key must be 32 hex digits (128 bits), got {0:?}")]
    Key(String),
    /// A rule name weir does not know.
    #[error(
        "unknown rule `{0}`: expected one of any, src-mix, src-bits, keyed-hash, time-hop, content"
    )]
    UnknownRule(String),
    /// A key of another rule.
    #[error("`{key}` is not a key of rule `{rule}` (it takes {takes})")]
    NotItsKey {
        /// The key given.
        key: &'static str,
        /// The rule.
        rule: String,
        /// The keys it takes.
        takes: String,
    },
    /// A key the rule needs is missing.
    #[error("rule `{rule}` needs `{key}` ({what})")]
    Missing {
        /// The rule.
        rule: &'static str,
        /// The key.
        key: &'static str,
        /// What it is.
        what: &'static str,
    },
    /// The values are out of range.
    #[error(transparent)]
    Invalid(#[from] crate::SsaError),
}

/// Parse a 128-bit key from 32 hex digits.
pub fn parse_key(text: &str) -> Result<[u8; 16], RuleTextError> {
    let t = text.trim();
    let bad = || RuleTextError::Key(text.to_string());
    if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut key = [0u8; 16];
    for (i, k) in key.iter_mut().enumerate() {
        let pair = t.get(2 * i..2 * i + 2).ok_or_else(bad)?;
        *k = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(key)
}

/// A key as 32 lowercase hex digits.
pub fn key_hex(key: &[u8; 16]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Default source bits hashed or mixed, and default src-bits length.
const DEFAULT_LEN: u8 = 64;
/// Default first destination bit of `src-bits`.
const DEFAULT_DST_START: u8 = 64;

/// The text form: every key any rule has, each optional; `rule` says which apply.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Text {
    rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    src_start: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dst_start: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    len: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    src_prefix_len: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    period_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    skew: Option<u32>,
}

impl Text {
    fn of(rule: &Rule) -> Text {
        let mut t = Text {
            rule: rule.name().to_string(),
            ..Text::default()
        };
        match *rule {
            Rule::Any | Rule::Content => {}
            Rule::SrcMix { src_prefix_len } => t.src_prefix_len = Some(src_prefix_len),
            Rule::SrcBits {
                src_start,
                dst_start,
                len,
            } => {
                t.src_start = Some(src_start);
                t.dst_start = Some(dst_start);
                t.len = Some(len);
            }
            Rule::KeyedHash {
                ref key,
                src_prefix_len,
            } => {
                t.key = Some(key_hex(key));
                t.src_prefix_len = Some(src_prefix_len);
            }
            Rule::TimeHop {
                ref key,
                src_prefix_len,
                period_s,
                skew,
            } => {
                t.key = Some(key_hex(key));
                t.src_prefix_len = Some(src_prefix_len);
                t.period_s = Some(period_s);
                t.skew = Some(skew);
            }
        }
        t
    }

    /// The keys given, by name, for the "not a key of this rule" check.
    fn given(&self) -> [(&'static str, bool); 7] {
        [
            ("src_start", self.src_start.is_some()),
            ("dst_start", self.dst_start.is_some()),
            ("len", self.len.is_some()),
            ("key", self.key.is_some()),
            ("src_prefix_len", self.src_prefix_len.is_some()),
            ("period_s", self.period_s.is_some()),
            ("skew", self.skew.is_some()),
        ]
    }

    fn into_rule(self) -> Result<Rule, RuleTextError> {
        let allowed: &[&str] = match self.rule.as_str() {
            "any" | "content" => &[],
            "src-mix" => &["src_prefix_len"],
            "src-bits" => &["src_start", "dst_start", "len"],
            "keyed-hash" => &["key", "src_prefix_len"],
            "time-hop" => &["key", "src_prefix_len", "period_s", "skew"],
            other => return Err(RuleTextError::UnknownRule(other.to_string())),
        };
        if let Some((extra, _)) = self
            .given()
            .into_iter()
            .find(|(k, given)| *given && !allowed.contains(k))
        {
            let keys = if allowed.is_empty() {
                "no keys".to_string()
            } else {
                allowed.join(", ")
            };
            return Err(RuleTextError::NotItsKey {
                key: extra,
                rule: self.rule,
                takes: keys,
            });
        }
        let key = |k: Option<String>, rule: &'static str| -> Result<[u8; 16], RuleTextError> {
            let text = k.ok_or(RuleTextError::Missing {
                rule,
                key: "key",
                what: "32 hex digits",
            })?;
            parse_key(&text)
        };
        let rule = match self.rule.as_str() {
            "any" => Rule::Any,
            "content" => Rule::Content,
            "src-mix" => Rule::SrcMix {
                src_prefix_len: self.src_prefix_len.unwrap_or(MAX_SRC_MIX_LEN),
            },
            "src-bits" => Rule::SrcBits {
                src_start: self.src_start.unwrap_or(0),
                dst_start: self.dst_start.unwrap_or(DEFAULT_DST_START),
                len: self.len.unwrap_or(DEFAULT_LEN),
            },
            "keyed-hash" => Rule::KeyedHash {
                key: key(self.key, "keyed-hash")?,
                src_prefix_len: self.src_prefix_len.unwrap_or(DEFAULT_LEN),
            },
            _ => Rule::TimeHop {
                key: key(self.key, "time-hop")?,
                src_prefix_len: self.src_prefix_len.unwrap_or(DEFAULT_LEN),
                period_s: self.period_s.ok_or(RuleTextError::Missing {
                    rule: "time-hop",
                    key: "period_s",
                    what: "seconds per window",
                })?,
                skew: self.skew.unwrap_or(0),
            },
        };
        rule.validate()?;
        Ok(rule)
    }
}

/// The wire form: the rule's fields, externally tagged.
#[derive(Serialize, Deserialize)]
enum Wire {
    Any,
    SrcMix {
        src_prefix_len: u8,
    },
    SrcBits {
        src_start: u8,
        dst_start: u8,
        len: u8,
    },
    KeyedHash {
        key: [u8; 16],
        src_prefix_len: u8,
    },
    TimeHop {
        key: [u8; 16],
        src_prefix_len: u8,
        period_s: u64,
        skew: u32,
    },
    Content,
}

impl From<Rule> for Wire {
    fn from(r: Rule) -> Wire {
        match r {
            Rule::Any => Wire::Any,
            Rule::SrcMix { src_prefix_len } => Wire::SrcMix { src_prefix_len },
            Rule::SrcBits {
                src_start,
                dst_start,
                len,
            } => Wire::SrcBits {
                src_start,
                dst_start,
                len,
            },
            Rule::KeyedHash {
                key,
                src_prefix_len,
            } => Wire::KeyedHash {
                key,
                src_prefix_len,
            },
            Rule::TimeHop {
                key,
                src_prefix_len,
                period_s,
                skew,
            } => Wire::TimeHop {
                key,
                src_prefix_len,
                period_s,
                skew,
            },
            Rule::Content => Wire::Content,
        }
    }
}

impl From<Wire> for Rule {
    fn from(w: Wire) -> Rule {
        match w {
            Wire::Any => Rule::Any,
            Wire::SrcMix { src_prefix_len } => Rule::SrcMix { src_prefix_len },
            Wire::SrcBits {
                src_start,
                dst_start,
                len,
            } => Rule::SrcBits {
                src_start,
                dst_start,
                len,
            },
            Wire::KeyedHash {
                key,
                src_prefix_len,
            } => Rule::KeyedHash {
                key,
                src_prefix_len,
            },
            Wire::TimeHop {
                key,
                src_prefix_len,
                period_s,
                skew,
            } => Rule::TimeHop {
                key,
                src_prefix_len,
                period_s,
                skew,
            },
            Wire::Content => Rule::Content,
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            Text::of(self).serialize(s)
        } else {
            Wire::from(*self).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        if d.is_human_readable() {
            Text::deserialize(d)?.into_rule().map_err(D::Error::custom)
        } else {
            Wire::deserialize(d).map(Rule::from)
        }
    }
}

impl Rule {
    /// Build a rule from its text form's fields (weirctl's flags): `name` and the keys
    /// given. The same checks as reading it from a file.
    #[allow(clippy::too_many_arguments)]
    pub fn from_keys(
        name: &str,
        src_start: Option<u8>,
        dst_start: Option<u8>,
        len: Option<u8>,
        key: Option<&[u8; 16]>,
        src_prefix_len: Option<u8>,
        period_s: Option<u64>,
        skew: Option<u32>,
    ) -> Result<Rule, RuleTextError> {
        Text {
            rule: name.to_string(),
            src_start,
            dst_start,
            len,
            key: key.map(key_hex),
            src_prefix_len,
            period_s,
            skew,
        }
        .into_rule()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = *b"weir-ssa-testkey";

    fn all() -> Vec<Rule> {
        vec![
            Rule::Any,
            Rule::default(),
            Rule::src_mix(40).unwrap(),
            Rule::src_bits(0, 64, 64).unwrap(),
            Rule::keyed_hash(KEY, 56).unwrap(),
            Rule::time_hop(KEY, 48, 30, 2).unwrap(),
            Rule::Content,
        ]
    }

    #[test]
    fn text_form_round_trips_and_reads_like_the_config_file() {
        for rule in all() {
            let json = serde_json::to_string(&rule).unwrap();
            assert!(
                json.contains(&format!("\"rule\":\"{}\"", rule.name())),
                "{json}"
            );
            assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), rule, "{json}");
        }
        let r: Rule = serde_json::from_str(r#"{"rule":"src-mix"}"#).unwrap();
        assert_eq!(r, Rule::SrcMix { src_prefix_len: 64 });
        let r: Rule = serde_json::from_str(r#"{"rule":"src-bits"}"#).unwrap();
        assert_eq!(r, Rule::src_bits(0, 64, 64).unwrap());
        let keyed = serde_json::to_string(&Rule::keyed_hash(KEY, 64).unwrap()).unwrap();
        assert!(
            keyed.contains(&key_hex(&KEY)),
            "the state file keeps the key"
        );
    }

    #[test]
    fn text_form_refuses_what_the_rule_does_not_take() {
        let err = |j: &str| serde_json::from_str::<Rule>(j).unwrap_err().to_string();
        assert!(err(r#"{"rule":"src-mix","len":3}"#)
            .contains("`len` is not a key of rule `src-mix` (it takes src_prefix_len)"));
        assert!(err(r#"{"rule":"any","key":"00"}"#).contains("it takes no keys"));
        assert!(err(r#"{"rule":"src-mix","src_prefix_len":0}"#).contains("1..=64"));
        assert!(err(r#"{"rule":"src-mix","src_prefix_len":65}"#).contains("1..=64"));
        assert!(err(r#"{"rule":"time-hop","key":"000102030405060708090a0b0c0d0e0f","period_s":30,"skew":1000}"#)
            .contains("skew 1000 is too large"));
        assert!(
            err(r#"{"rule":"time-hop","key":"000102030405060708090a0b0c0d0e0f"}"#)
                .contains("needs `period_s`")
        );
        assert!(err(r#"{"rule":"keyed-hash"}"#).contains("needs `key`"));
        assert!(err(r#"{"rule":"keyed-hash","key":"12"}"#).contains("32 hex digits"));
        assert!(err(r#"{"rule":"bogus"}"#).contains("expected one of any, src-mix"));
        assert!(err(r#"{"rule":"any","colour":1}"#).contains("unknown field"));
    }

    #[test]
    fn wire_form_round_trips_through_postcard() {
        for rule in all() {
            let bytes = postcard::to_allocvec(&rule).unwrap();
            assert_eq!(postcard::from_bytes::<Rule>(&bytes).unwrap(), rule);
        }
        // Not validated on the way in: the snapshot's validation names the field.
        let bad = Rule::SrcMix { src_prefix_len: 0 };
        let bytes = postcard::to_allocvec(&bad).unwrap();
        assert_eq!(postcard::from_bytes::<Rule>(&bytes).unwrap(), bad);
    }

    #[test]
    fn keys_parse_from_hex() {
        assert_eq!(
            parse_key("000102030405060708090a0b0c0d0e0f").unwrap(),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        );
        assert!(parse_key("zz0102030405060708090a0b0c0d0e0f").is_err());
        assert_eq!(key_hex(&KEY).len(), 32);
    }
}
