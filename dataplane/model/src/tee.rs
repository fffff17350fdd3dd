//! The live tee's vocabulary: which decisions it copies ([`TeeFilter`]) and its settings
//! (`[tee]`, [`TeeConfig`]).
//!
//! A filter is a set of [`Disposition::code`]s held as a bit mask, so the rx core decides
//! "is this frame wanted?" with one shift and one AND — no strings, no maps on the packet
//! path. It is written as a list of terms, each one of
//!
//! ```text
//!   known_good | assumed_good            a class without reasons
//!   suspect | reject | suspect:* | reject:*   every reason of a class
//!   reject:ssa-violation | suspect:rate  one reason (it must belong to that class)
//!   ssa-violation                        one reason, class implied
//!   host | outbound | forwarded          the dispositions that are not verdicts
//!   * | all                              everything
//! ```
//!
//! (`-` and `_` are interchangeable in class names, as in [`Class`]'s `FromStr`.) Bad input
//! is an error naming the term and what is accepted; parsing never panics.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::verdict::{Class, Disposition, Reason, Verdict};

/// A set of dispositions to copy (see the module doc for the text form).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TeeFilter {
    mask: u32,
}

const _: () = assert!(Disposition::CODES <= 32, "the filter mask holds every code");

/// A filter term that names nothing weir decides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// No term at all.
    #[error("empty tee filter: give at least one of known_good, assumed_good, suspect[:REASON|:*], reject[:REASON|:*], host, outbound, forwarded, *")]
    Empty,
    /// A term that is not a class, reason or disposition.
    #[error("tee filter {0:?}: not a class (known_good, assumed_good, suspect, reject), a reason (ssa-violation, rate, …), host, outbound, forwarded or *")]
    Unknown(String),
    /// `class:reason` where the reason belongs to another class.
    #[error("tee filter {term:?}: {reason} is a {actual} reason, not a {class} one")]
    WrongClass {
        /// The term.
        term: String,
        /// The class written.
        class: Class,
        /// The reason written.
        reason: Reason,
        /// The reason's class.
        actual: Class,
    },
    /// `known_good:…` / `assumed_good:…`: those classes have no reasons.
    #[error("tee filter {0:?}: known_good and assumed_good have no reasons")]
    NoReasons(String),
}

impl TeeFilter {
    /// Nothing.
    pub const NONE: TeeFilter = TeeFilter { mask: 0 };

    /// Every disposition.
    pub const ALL: TeeFilter = TeeFilter {
        mask: if Disposition::CODES == 32 {
            u32::MAX
        } else {
            (1u32 << Disposition::CODES) - 1
        },
    };

    /// Does the filter want this disposition? One shift and one AND.
    #[inline(always)]
    pub const fn wants(self, d: Disposition) -> bool {
        self.mask & (1u32 << d.code()) != 0
    }

    /// True when nothing is selected.
    pub const fn is_empty(self) -> bool {
        self.mask == 0
    }

    /// The raw mask (bit = [`Disposition::code`]).
    pub const fn mask(self) -> u32 {
        self.mask
    }

    fn add(&mut self, d: Disposition) {
        self.mask |= 1u32 << d.code();
    }

    fn add_class(&mut self, class: Class) {
        match class {
            Class::KnownGood => self.add(classified(Verdict::KnownGood)),
            Class::AssumedGood => self.add(classified(Verdict::AssumedGood)),
            Class::Suspect | Class::Reject => {
                for r in Reason::ALL.into_iter().filter(|r| r.class() == class) {
                    self.add(classified(Verdict::Flagged(r)));
                }
            }
        }
    }

    /// Parse one term (see the module doc).
    pub fn parse_term(term: &str) -> Result<TeeFilter, FilterError> {
        let t = term.trim();
        let mut f = TeeFilter::NONE;
        match t {
            "" => return Err(FilterError::Empty),
            "*" | "all" => return Ok(TeeFilter::ALL),
            "host" => f.add(Disposition::Host),
            "outbound" => f.add(Disposition::Outbound),
            "forwarded" => f.add(Disposition::Forward { run: 0 }),
            _ => {}
        }
        if !f.is_empty() {
            return Ok(f);
        }
        let (class_part, reason_part) = match t.split_once(':') {
            Some((c, r)) => (c.trim(), Some(r.trim())),
            None => (t, None),
        };
        let Ok(class) = class_part.parse::<Class>() else {
            // A bare reason: `ssa-violation`.
            return match (reason_part, Reason::from_name(t)) {
                (None, Some(r)) => {
                    f.add(classified(Verdict::Flagged(r)));
                    Ok(f)
                }
                _ => Err(FilterError::Unknown(term.to_string())),
            };
        };
        match reason_part {
            None | Some("*") => f.add_class(class),
            Some(_) if matches!(class, Class::KnownGood | Class::AssumedGood) => {
                return Err(FilterError::NoReasons(term.to_string()))
            }
            Some(name) => {
                let reason = Reason::from_name(name)
                    .ok_or_else(|| FilterError::Unknown(term.to_string()))?;
                if reason.class() != class {
                    return Err(FilterError::WrongClass {
                        term: term.to_string(),
                        class,
                        reason,
                        actual: reason.class(),
                    });
                }
                f.add(classified(Verdict::Flagged(reason)));
            }
        }
        Ok(f)
    }

    /// Parse a list of terms (each may itself be comma-separated); the union.
    pub fn parse_list<S: AsRef<str>>(terms: &[S]) -> Result<TeeFilter, FilterError> {
        let mut f = TeeFilter::NONE;
        for term in terms {
            for part in term.as_ref().split(',') {
                f.mask |= TeeFilter::parse_term(part)?.mask;
            }
        }
        if f.is_empty() {
            return Err(FilterError::Empty);
        }
        Ok(f)
    }
}

impl std::str::FromStr for TeeFilter {
    type Err = FilterError;
    /// A comma-separated list of terms.
    fn from_str(s: &str) -> Result<TeeFilter, FilterError> {
        TeeFilter::parse_list(&[s])
    }
}

fn classified(verdict: Verdict) -> Disposition {
    Disposition::Classified { verdict, worker: 0 }
}

/// `class reason` words for a disposition, as the tee writes them into each packet's
/// comment: (`reject`, `ssa-violation`), (`known_good`, `-`), (`host`, `-`).
pub const fn class_and_reason(d: Disposition) -> (&'static str, &'static str) {
    match d {
        Disposition::Classified { verdict, .. } => (
            verdict.class().name(),
            match verdict.reason() {
                Some(r) => r.name(),
                None => "-",
            },
        ),
        Disposition::Host => ("host", "-"),
        Disposition::Outbound => ("outbound", "-"),
        Disposition::Forward { .. } => ("forwarded", "-"),
        Disposition::Truncated => ("truncated", "-"),
    }
}

/// The disposition of a [`Disposition::code`] (worker 0, run 0), for readers of codes.
pub fn disposition_of_code(code: usize) -> Option<Disposition> {
    Some(match code {
        0 => Disposition::Outbound,
        1 => Disposition::Host,
        2 => classified(Verdict::KnownGood),
        3 => classified(Verdict::AssumedGood),
        c if c >= 4 && c < 4 + Reason::ALL.len() => {
            classified(Verdict::Flagged(*Reason::ALL.get(c - 4)?))
        }
        c if c == 4 + Reason::ALL.len() => Disposition::Forward { run: 0 },
        c if c == 5 + Reason::ALL.len() => Disposition::Truncated,
        _ => return None,
    })
}

impl fmt::Display for TeeFilter {
    /// The canonical list: class terms where a whole class is selected, else single terms.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == TeeFilter::ALL {
            return f.write_str("*");
        }
        let mut terms: Vec<String> = Vec::new();
        for class in [Class::Suspect, Class::Reject] {
            let mut whole = TeeFilter::NONE;
            whole.add_class(class);
            if self.mask & whole.mask == whole.mask {
                terms.push(format!("{class}:*"));
            }
        }
        for code in 0..Disposition::CODES {
            if self.mask & (1 << code) == 0 {
                continue;
            }
            let Some(d) = disposition_of_code(code) else {
                continue;
            };
            let (class, reason) = class_and_reason(d);
            if reason != "-" {
                if terms.iter().any(|t| t == &format!("{class}:*")) {
                    continue;
                }
                terms.push(format!("{class}:{reason}"));
            } else {
                terms.push(class.to_string());
            }
        }
        f.write_str(&terms.join(","))
    }
}

/// Bounds of the tee's settings (config and control messages are checked against them).
pub mod limits {
    /// Largest 1-in-N.
    pub const MAX_SAMPLE: u32 = 1_000_000_000;
    /// Smallest snap length (Ethernet + IPv6 + TCP headers).
    pub const MIN_SNAPLEN: u32 = 64;
    /// Largest snap length (what one tee buffer holds after its record header).
    pub const MAX_SNAPLEN: u32 = 2000;
    /// Ring slots per rx core.
    pub const MAX_RING: u32 = 1 << 16;
    /// Smallest rotation size.
    pub const MIN_FILE_BYTES: u64 = 4096;
    /// Most files kept.
    pub const MAX_FILES: u32 = 100_000;
    /// Most filter terms.
    pub const MAX_TERMS: usize = 64;
}

/// `[tee]`: the live tee of `weir-dp run` (off unless `enabled`; weirctl starts and stops
/// it at run time with the same settings it gives here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeConfig {
    /// Start teeing when weir-dp starts.
    #[serde(default)]
    pub enabled: bool,
    /// Where the files go (created 0700 when missing; files are 0600).
    #[serde(default = "default_dir")]
    pub dir: std::path::PathBuf,
    /// What to copy (see [`TeeFilter`]).
    #[serde(default = "default_filters")]
    pub filters: Vec<String>,
    /// Copy 1 in `sample` of the frames the filter selects (1 = all).
    #[serde(default = "default_sample")]
    pub sample: u32,
    /// Most copies per second per rx core (0 = no cap).
    #[serde(default = "default_rate")]
    pub rate_per_core: u32,
    /// Bytes copied of each frame at most.
    #[serde(default = "default_snaplen")]
    pub snaplen: u32,
    /// Ring slots per rx core (preallocated buffers; rounded up to a power of two).
    #[serde(default = "default_ring")]
    pub ring: u32,
    /// Start a new file once the current one holds this many bytes.
    #[serde(default = "default_file_bytes")]
    pub file_bytes: u64,
    /// Keep at most this many files (the oldest is deleted).
    #[serde(default = "default_files")]
    pub files: u32,
}

fn default_dir() -> std::path::PathBuf {
    "/var/lib/weir/tee".into()
}
fn default_filters() -> Vec<String> {
    vec!["reject:*".into()]
}
fn default_sample() -> u32 {
    1
}
fn default_rate() -> u32 {
    10_000
}
fn default_snaplen() -> u32 {
    256
}
fn default_ring() -> u32 {
    1024
}
fn default_file_bytes() -> u64 {
    64 << 20
}
fn default_files() -> u32 {
    16
}

impl Default for TeeConfig {
    fn default() -> Self {
        TeeConfig {
            enabled: false,
            dir: default_dir(),
            filters: default_filters(),
            sample: default_sample(),
            rate_per_core: default_rate(),
            snaplen: default_snaplen(),
            ring: default_ring(),
            file_bytes: default_file_bytes(),
            files: default_files(),
        }
    }
}

/// Check the per-start settings (shared by `[tee]` and control messages).
pub fn check_settings(filters: &[String], sample: u32, snaplen: u32) -> Result<TeeFilter, String> {
    if filters.len() > limits::MAX_TERMS {
        return Err(format!(
            "at most {} filter terms, got {}",
            limits::MAX_TERMS,
            filters.len()
        ));
    }
    let f = TeeFilter::parse_list(filters).map_err(|e| e.to_string())?;
    if !(1..=limits::MAX_SAMPLE).contains(&sample) {
        return Err(format!(
            "sample must be from 1 to {} (1 in N), got {sample}",
            limits::MAX_SAMPLE
        ));
    }
    if !(limits::MIN_SNAPLEN..=limits::MAX_SNAPLEN).contains(&snaplen) {
        return Err(format!(
            "snaplen must be from {} to {}, got {snaplen}",
            limits::MIN_SNAPLEN,
            limits::MAX_SNAPLEN
        ));
    }
    Ok(f)
}

impl TeeConfig {
    /// Check every key; the message names the key and the value.
    pub fn validate(&self) -> Result<(), String> {
        check_settings(&self.filters, self.sample, self.snaplen)?;
        if !(1..=limits::MAX_RING).contains(&self.ring) {
            return Err(format!(
                "ring must be from 1 to {}, got {}",
                limits::MAX_RING,
                self.ring
            ));
        }
        if self.file_bytes < limits::MIN_FILE_BYTES {
            return Err(format!(
                "file_bytes must be at least {}, got {}",
                limits::MIN_FILE_BYTES,
                self.file_bytes
            ));
        }
        if !(1..=limits::MAX_FILES).contains(&self.files) {
            return Err(format!(
                "files must be from 1 to {}, got {}",
                limits::MAX_FILES,
                self.files
            ));
        }
        if self.dir.as_os_str().is_empty() {
            return Err("dir must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(r: Reason) -> Disposition {
        classified(Verdict::Flagged(r))
    }

    #[test]
    fn terms_select_what_they_name() {
        let f: TeeFilter = "reject:ssa-violation".parse().unwrap();
        assert!(f.wants(d(Reason::SsaViolation)));
        assert!(!f.wants(d(Reason::Martian)));
        assert!(!f.wants(classified(Verdict::KnownGood)));
        let f: TeeFilter = "suspect:*".parse().unwrap();
        for r in Reason::ALL {
            assert_eq!(f.wants(d(r)), r.class() == Class::Suspect, "{r}");
        }
        assert_eq!(f, "suspect".parse().unwrap());
        let f: TeeFilter = "known-good, ssa-violation".parse().unwrap();
        assert!(f.wants(Disposition::Classified {
            verdict: Verdict::KnownGood,
            worker: 7
        }));
        assert!(f.wants(d(Reason::SsaViolation)));
        assert!(!f.wants(classified(Verdict::AssumedGood)));
        let all: TeeFilter = "*".parse().unwrap();
        assert!(all.wants(Disposition::Truncated));
        assert!(all.wants(Disposition::Forward { run: 9 }));
        assert!(TeeFilter::parse_list(&["host", "outbound"])
            .unwrap()
            .wants(Disposition::Host));
    }

    #[test]
    fn bad_terms_are_clear_errors() {
        assert_eq!("".parse::<TeeFilter>(), Err(FilterError::Empty));
        assert_eq!(TeeFilter::parse_list::<&str>(&[]), Err(FilterError::Empty));
        assert!(matches!(
            "reject:rate".parse::<TeeFilter>(),
            Err(FilterError::WrongClass { .. })
        ));
        let e = "reject:rate".parse::<TeeFilter>().unwrap_err().to_string();
        assert!(e.contains("rate is a suspect reason"), "{e}");
        assert!(matches!(
            "known_good:rate".parse::<TeeFilter>(),
            Err(FilterError::NoReasons(_))
        ));
        let e = "rejekt:ssa-violation".parse::<TeeFilter>().unwrap_err();
        assert!(e.to_string().contains("rejekt:ssa-violation"), "{e}");
        assert!("reject:nonsense".parse::<TeeFilter>().is_err());
        assert!("reject,,".parse::<TeeFilter>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "reject:ssa-violation",
            "suspect:*",
            "known_good,reject:*",
            "*",
            "host",
        ] {
            let f: TeeFilter = text.parse().unwrap();
            let back: TeeFilter = f.to_string().parse().unwrap();
            assert_eq!(f, back, "{text} → {f}");
        }
    }

    #[test]
    fn codes_map_back() {
        for code in 0..Disposition::CODES {
            assert_eq!(disposition_of_code(code).unwrap().code(), code);
        }
        assert_eq!(disposition_of_code(Disposition::CODES), None);
    }

    #[test]
    fn config_checks_name_the_key() {
        let ok = TeeConfig::default();
        ok.validate().unwrap();
        let bad = TeeConfig {
            sample: 0,
            ..TeeConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("sample"));
        let bad = TeeConfig {
            snaplen: 5000,
            ..TeeConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("snaplen"));
        let bad = TeeConfig {
            file_bytes: 10,
            ..TeeConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("file_bytes"));
        let bad = TeeConfig {
            filters: vec!["reject:bogus".into()],
            ..TeeConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("reject:bogus"));
    }

    proptest! {
        /// Any text: an answer, never a panic.
        #[test]
        fn parsing_never_panics(s in ".{0,40}") {
            let _ = s.parse::<TeeFilter>();
        }
    }
}
