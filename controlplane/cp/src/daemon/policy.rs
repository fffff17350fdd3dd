//! The policy loop: temporary blocks for source prefixes that stay over their new-flow
//! limit, and the expiry of every block whose time is up.
//!
//! After each stats poll of a dataplane, [`observe`] looks at its `top_sources`: a prefix
//! with at least `min_limited_per_poll` `rate` verdicts in the poll is "limited"; the
//! [`Tracker`] remembers since when each prefix has been limited *in every poll* (one poll
//! without it resets the clock, and so does a lost link). Once that has lasted
//! `block_after_s`, the prefix is blocked for `block_ttl_s` with the reason
//! `policy: over new-flow limit for Ns`. A prefix already covered by a block is left alone.
//!
//! Tracking is per dataplane: "continuously limited" is only meaningful against one
//! dataplane's sequence of polls, while the block, once decided, applies to all of them.
//!
//! [`expire_loop`] removes expired blocks (operator, policy or config ones) every 250 ms,
//! whether or not the loop is enabled: a TTL the operator asked for must hold either way.
//! Every decision (`block-added`, `block-expired`, `block-refused`) is logged with its
//! prefix and reason and counted for `weirctl status` and `weir_decisions_total`.
//!
//! Rejected: blocking on one bad poll (a burst of new flows is what the rate limit is for;
//! a block is for sustained abuse), and letting the dataplane expire blocks by itself only
//! (weir-cp would then show blocks that are no longer in force).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use weir_control::proto::DpStats;
use weir_ssa::Prefix;

use super::state::{Change, NS};
use super::{lock, now_unix_ns, DaemonState, TICK};

/// Since when each prefix has been limited in every poll.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    since: HashMap<String, Instant>,
}

impl Tracker {
    /// Forget everything (link lost, loop disabled).
    pub fn reset(&mut self) {
        self.since.clear();
    }

    /// Record one poll; returns the prefixes limited in every poll for at least `after`,
    /// with how long, and forgets them (they are about to be blocked).
    pub fn observe<'a>(
        &mut self,
        limited: impl IntoIterator<Item = &'a str>,
        after: Duration,
        now: Instant,
    ) -> Vec<(String, Duration)> {
        let limited: HashSet<&str> = limited.into_iter().collect();
        self.since.retain(|p, _| limited.contains(p.as_str()));
        for p in limited {
            self.since.entry(p.to_string()).or_insert(now);
        }
        let due: Vec<(String, Duration)> = self
            .since
            .iter()
            .map(|(p, &t)| (p.clone(), now.saturating_duration_since(t)))
            .filter(|(_, d)| *d >= after)
            .collect();
        for (p, _) in &due {
            self.since.remove(p);
        }
        due
    }
}

/// Run the loop on one dataplane's stats.
pub(crate) fn observe(
    shared: &DaemonState,
    dataplane: &str,
    tracker: &mut Tracker,
    stats: &DpStats,
) {
    let policy = lock(&shared.desired).config.policy;
    if !policy.enabled {
        tracker.reset();
        return;
    }
    let min = policy.min_limited_per_poll.max(1);
    let limited = stats
        .top_sources
        .iter()
        .filter(|s| s.limited >= min)
        .map(|s| s.prefix.as_str());
    let due = tracker.observe(
        limited,
        Duration::from_secs(policy.block_after_s),
        Instant::now(),
    );
    for (text, held) in due {
        let prefix: Prefix = match text.parse() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(dataplane, prefix = %text, error = %e, "dataplane reported an unparsable source prefix");
                continue;
            }
        };
        if is_blocked(shared, &prefix) {
            continue;
        }
        let reason = format!("policy: over new-flow limit for {}s", held.as_secs());
        let until = now_unix_ns().saturating_add(policy.block_ttl_s.saturating_mul(NS));
        let change = Change::BlockAdd {
            prefix: prefix.to_string(),
            until_unix_ns: Some(until),
            reason: reason.clone(),
        };
        match shared.commit(change, "policy") {
            Ok(_) => shared.decide(
                "block-added",
                &prefix.to_string(),
                &format!(
                    "{reason} on dataplane {dataplane}, ttl {}s",
                    policy.block_ttl_s
                ),
            ),
            Err(e) => shared.decide("block-refused", &prefix.to_string(), &e),
        }
    }
}

fn is_blocked(shared: &DaemonState, prefix: &Prefix) -> bool {
    lock(&shared.desired)
        .snapshot
        .blocks
        .iter()
        .filter_map(|b| b.prefix.parse::<Prefix>().ok())
        .any(|b| b.covers(prefix))
}

/// Remove expired blocks until shutdown.
pub(crate) fn expire_loop(shared: &DaemonState) {
    let mut last_error: Option<String> = None;
    while !shared.stopping() {
        shared.sleep(TICK);
        match shared.commit(
            Change::Expire {
                now_unix_ns: now_unix_ns(),
            },
            "expiry",
        ) {
            Ok(Some(done)) => {
                for b in done.expired {
                    shared.decide(
                        "block-expired",
                        &b.prefix,
                        &format!("ttl over; blocked for: {}", b.reason),
                    );
                }
                last_error = None;
            }
            Ok(None) => {}
            Err(e) => {
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::error!(error = %e, "cannot expire blocks; will retry");
                }
                last_error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_resets_the_clock() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert!(t.observe(["a"], s, t0).is_empty());
        assert!(t.observe(["a"], s, t0 + s / 2).is_empty());
        assert!(t.observe([], s, t0 + s).is_empty());
        assert!(t.observe(["a"], s, t0 + 2 * s).is_empty());
        let due = t.observe(["a", "b"], s, t0 + 3 * s);
        assert_eq!(due, vec![("a".to_string(), s)]);
        // Forgotten once due: the next poll starts a new clock.
        assert!(t.observe(["a"], s, t0 + 3 * s).is_empty());
    }
}
