//! Verdicts: the class a packet is queued in and, for suspect and reject, the reason.
//!
//! Reason names are part of weir's interface (counters, JSON reports, pcap file names),
//! exactly as DESIGN.md spells them. Both enums are `repr(u8)` and dense so that counters
//! are plain arrays indexed by them: no maps on the packet path.

use std::fmt;

/// How much weir trusts a packet; also the ring it is queued in (reject: dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Class {
    /// An established flow (the client proved it receives at its source address).
    KnownGood = 0,
    /// A new flow within its source prefix's rate.
    AssumedGood = 1,
    /// Served only with spare capacity.
    Suspect = 2,
    /// Counted and dropped.
    Reject = 3,
}

impl Class {
    /// Every class, in priority order.
    pub const ALL: [Class; 4] = [
        Class::KnownGood,
        Class::AssumedGood,
        Class::Suspect,
        Class::Reject,
    ];
    /// The classes that are queued to workers, in drain priority order.
    pub const QUEUED: [Class; 3] = [Class::KnownGood, Class::AssumedGood, Class::Suspect];

    /// The interface name (`known_good`, ...), as in JSON reports and config keys.
    pub const fn name(self) -> &'static str {
        match self {
            Class::KnownGood => "known_good",
            Class::AssumedGood => "assumed_good",
            Class::Suspect => "suspect",
            Class::Reject => "reject",
        }
    }

    /// Index into per-class arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown class {0:?}: expected known_good, assumed_good, suspect or reject")]
pub struct UnknownClass(pub String);

impl std::str::FromStr for Class {
    type Err = UnknownClass;
    /// `known_good` (or `known-good`), `assumed_good`, `suspect`, `reject`.
    fn from_str(text: &str) -> Result<Class, UnknownClass> {
        let name = text.trim().replace('-', "_");
        Class::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| UnknownClass(text.to_string()))
    }
}

impl serde::Serialize for Class {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Class {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Class, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a packet is suspect or rejected (DESIGN.md, "Classification").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// Step 1: headers truncated or inconsistent.
    Malformed = 0,
    /// Step 2: impossible source address.
    Martian = 1,
    /// Step 3: destination outside every service prefix.
    NotService = 2,
    /// Step 4: ICMPv6 error whose quote matches no established flow.
    IcmpUnmatched = 3,
    /// Step 5: the SSA rule fails for (source, destination).
    SsaViolation = 4,
    /// Step 6: source inside a blocked prefix.
    Blocked = 5,
    /// Step 7: an IP fragment (suspect).
    Fragment = 6,
    /// Step 9: TCP that is not a clean SYN for a flow that is not established (suspect).
    NoFlow = 7,
    /// Step 10: the source prefix's new-flow bucket is empty (suspect).
    Rate = 8,
    /// Step 11: anything else.
    UnsupportedProtocol = 9,
    /// An IPv6-in-IPv6 frame weir does not accept: not to this host's handover address,
    /// not from a cluster member, malformed or of a kind weir never sends (DESIGN.md,
    /// "Across hosts"). Decided before step 1, because the outer packet is not service
    /// traffic.
    TunnelRefused = 10,
}

impl Reason {
    /// Every reason, in step order.
    pub const ALL: [Reason; 11] = [
        Reason::Malformed,
        Reason::Martian,
        Reason::NotService,
        Reason::IcmpUnmatched,
        Reason::SsaViolation,
        Reason::Blocked,
        Reason::Fragment,
        Reason::NoFlow,
        Reason::Rate,
        Reason::UnsupportedProtocol,
        Reason::TunnelRefused,
    ];

    /// The interface name, e.g. `ssa-violation`.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::Martian => "martian",
            Reason::NotService => "not-service",
            Reason::IcmpUnmatched => "icmp-unmatched",
            Reason::SsaViolation => "ssa-violation",
            Reason::Blocked => "blocked",
            Reason::Fragment => "fragment",
            Reason::NoFlow => "no-flow",
            Reason::Rate => "rate",
            Reason::UnsupportedProtocol => "unsupported-protocol",
            Reason::TunnelRefused => "tunnel-refused",
        }
    }

    /// The class this reason belongs to.
    #[inline]
    pub const fn class(self) -> Class {
        // Fragment, NoFlow and Rate are the contiguous codes 6..=8.
        if self as u8 >= Reason::Fragment as u8 && self as u8 <= Reason::Rate as u8 {
            Class::Suspect
        } else {
            Class::Reject
        }
    }

    /// Index into per-reason arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Look a reason up by its interface name.
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The decision for one inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Verdict {
    /// Known-good (no reason).
    KnownGood,
    /// Assumed-good (no reason).
    AssumedGood,
    /// Suspect or reject, by reason.
    Flagged(Reason),
}

impl Verdict {
    /// The class of this verdict.
    #[inline]
    pub const fn class(self) -> Class {
        match self {
            Verdict::KnownGood => Class::KnownGood,
            Verdict::AssumedGood => Class::AssumedGood,
            Verdict::Flagged(r) => r.class(),
        }
    }

    /// The reason, for suspect and reject.
    #[inline]
    pub const fn reason(self) -> Option<Reason> {
        match self {
            Verdict::Flagged(r) => Some(r),
            _ => None,
        }
    }

    /// The label used in expected-verdict files: the class name, or the reason name.
    pub const fn label(self) -> &'static str {
        match self {
            Verdict::KnownGood => "known-good",
            Verdict::AssumedGood => "assumed-good",
            Verdict::Flagged(r) => r.name(),
        }
    }

    /// Parse a label written by [`Verdict::label`].
    pub fn from_label(label: &str) -> Option<Verdict> {
        match label {
            "known-good" => Some(Verdict::KnownGood),
            "assumed-good" => Some(Verdict::AssumedGood),
            other => Reason::from_name(other).map(Verdict::Flagged),
        }
    }
}

/// What the dataplane does with one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Sent by a service address: fed to the flow tracker, not classified.
    Outbound,
    /// NDP or ARP: the host path.
    Host,
    /// A frame that a capture's snap length cut inside its headers: it cannot be
    /// classified (replay only; a port delivers whole frames).
    Truncated,
    /// Classified; `worker` is where a queued class goes (unused for reject).
    Classified {
        /// The verdict.
        verdict: Verdict,
        /// The worker that owns the packet's flow or slice.
        worker: u16,
    },
    /// During a handover, a packet of a handed-over slice that this host's flow table does
    /// not know (not a clean SYN): it belongs to a connection the predecessor holds, and
    /// goes there IPv6-in-IPv6. `run` indexes the policy's handover runs.
    Forward {
        /// The handover run (its predecessor is the destination).
        run: u16,
    },
}

impl Disposition {
    /// Number of distinct [`Disposition::code`]s.
    pub const CODES: usize = 6 + Reason::ALL.len();

    /// A dense code: outbound 0, host 1, known-good 2, assumed-good 3, reasons 4.. in
    /// step order, then forwarded, truncated last. Counters are arrays indexed by it.
    #[inline]
    pub const fn code(self) -> usize {
        match self {
            Disposition::Outbound => 0,
            Disposition::Host => 1,
            Disposition::Forward { .. } => 4 + Reason::ALL.len(),
            Disposition::Truncated => 5 + Reason::ALL.len(),
            Disposition::Classified { verdict, .. } => match verdict {
                Verdict::KnownGood => 2,
                Verdict::AssumedGood => 3,
                Verdict::Flagged(r) => 4 + r as usize,
            },
        }
    }

    /// The label in expected-verdict files: `outbound`, `host`, `forwarded`, `truncated`, or the
    /// verdict's label.
    pub const fn label(self) -> &'static str {
        match self {
            Disposition::Outbound => "outbound",
            Disposition::Host => "host",
            Disposition::Forward { .. } => "forwarded",
            Disposition::Truncated => "truncated",
            Disposition::Classified { verdict, .. } => verdict.label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Verdict::from_label(r.name()), Some(Verdict::Flagged(r)));
            assert_eq!(Reason::ALL[r.index()], r);
        }
        assert_eq!(Verdict::from_label("known-good"), Some(Verdict::KnownGood));
        assert_eq!(
            Verdict::from_label("assumed-good"),
            Some(Verdict::AssumedGood)
        );
        assert_eq!(Verdict::from_label("bogus"), None);
    }

    #[test]
    fn disposition_codes_are_dense_and_distinct() {
        let mut all = vec![
            Disposition::Outbound,
            Disposition::Host,
            Disposition::Forward { run: 3 },
            Disposition::Truncated,
        ];
        for verdict in [Verdict::KnownGood, Verdict::AssumedGood]
            .into_iter()
            .chain(Reason::ALL.map(Verdict::Flagged))
        {
            all.push(Disposition::Classified { verdict, worker: 7 });
        }
        let mut codes: Vec<usize> = all.iter().map(|d| d.code()).collect();
        codes.sort_unstable();
        assert_eq!(codes, (0..Disposition::CODES).collect::<Vec<_>>());
    }

    #[test]
    fn suspect_reasons_are_exactly_three() {
        let suspect: Vec<_> = Reason::ALL
            .into_iter()
            .filter(|r| r.class() == Class::Suspect)
            .collect();
        assert_eq!(suspect, [Reason::Fragment, Reason::NoFlow, Reason::Rate]);
    }
}
