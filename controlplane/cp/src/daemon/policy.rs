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
//! **Slow clients.** The dataplane reports, per source prefix, how many of its connections
//! the terminators closed for slowness (`slow_sources`: `408` for a head not complete in
//! time, resets for replies not drained), as cumulative counts. [`SlowWindow`] turns
//! successive polls into events per prefix and sums them over the last `slow_window_s`;
//! a prefix whose sum is at least `slow_threshold` is "slow-attacking", and one that stays
//! so in every poll for `block_after_s` is blocked for `block_ttl_s` with the reason
//! `policy: slow clients …` — the same tracker, decision names and counters as the rate
//! loop. A window, not one poll: a slowloris client's connections time out together, so
//! its events come in bursts one `header_timeout_ms` apart, and a per-poll count would
//! drop to zero between them. The first poll of a connection only takes the counts as a
//! baseline (what happened before weir-cp looked is not an attack it saw), and a count
//! that went down (the prefix was evicted from a worker's table and came back) counts
//! from zero.
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

use std::collections::{HashMap, HashSet, VecDeque};
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

/// Samples kept per prefix in a [`SlowWindow`] (polls within one window).
const MAX_SAMPLES: usize = 4096;

/// Slow-client events per prefix over a sliding window, from cumulative counts.
#[derive(Debug, Default)]
pub(crate) struct SlowWindow {
    /// The cumulative count each prefix had at the last poll.
    last: HashMap<String, u64>,
    /// (when, new events) per prefix, within the window.
    samples: HashMap<String, VecDeque<(Instant, u64)>>,
    /// Whether a poll has been seen (the first one is a baseline).
    primed: bool,
}

impl SlowWindow {
    /// Forget everything (link lost, loop disabled).
    pub fn reset(&mut self) {
        *self = SlowWindow::default();
    }

    /// Take one poll's cumulative counts `(prefix, count)`; returns the prefixes with at
    /// least `threshold` events within `window`, with their sums.
    pub fn observe<'a>(
        &mut self,
        counts: impl IntoIterator<Item = (&'a str, u64)>,
        window: Duration,
        threshold: u64,
        now: Instant,
    ) -> Vec<(String, u64)> {
        for (prefix, total) in counts {
            let prev = self.last.insert(prefix.to_string(), total);
            let new = match prev {
                Some(p) if total >= p => total - p,
                Some(_) => total,
                None if self.primed => total,
                None => 0,
            };
            if new > 0 {
                let q = self.samples.entry(prefix.to_string()).or_default();
                if q.len() >= MAX_SAMPLES {
                    q.pop_front();
                }
                q.push_back((now, new));
            }
        }
        self.primed = true;
        let from = now.checked_sub(window).unwrap_or(now);
        let mut over = Vec::new();
        self.samples.retain(|prefix, q| {
            while q.front().is_some_and(|&(t, _)| t <= from) {
                q.pop_front();
            }
            let sum: u64 = q.iter().map(|&(_, n)| n).sum();
            if sum >= threshold {
                over.push((prefix.clone(), sum));
            }
            !q.is_empty()
        });
        // Prefixes no longer reported and without recent events are forgotten.
        let samples = &self.samples;
        if self.last.len() > 4 * weir_control::proto::MAX_SLOW_SOURCES {
            self.last.retain(|p, _| samples.contains_key(p));
        }
        over.sort();
        over
    }
}

/// The policy loop's memory for one dataplane link.
#[derive(Debug, Default)]
pub(crate) struct Trackers {
    /// Prefixes over their new-flow limit in every poll, since when.
    rate: Tracker,
    /// Prefixes slow-attacking in every poll, since when.
    slow: Tracker,
    /// Slow-client events per prefix.
    window: SlowWindow,
}

impl Trackers {
    /// Forget everything (link lost, loop disabled).
    pub fn reset(&mut self) {
        self.rate.reset();
        self.slow.reset();
        self.window.reset();
    }
}

/// Run the loop on one dataplane's stats.
pub(crate) fn observe(
    shared: &DaemonState,
    dataplane: &str,
    trackers: &mut Trackers,
    stats: &DpStats,
) {
    let policy = lock(&shared.desired).config.policy;
    if !policy.enabled {
        trackers.reset();
        return;
    }
    let now = Instant::now();
    let over = trackers.window.observe(
        stats
            .slow_sources
            .iter()
            .map(|s| (s.prefix.as_str(), s.slow_header + s.slow_read)),
        Duration::from_secs(policy.slow_window_s),
        policy.slow_threshold,
        now,
    );
    let sums: HashMap<&str, u64> = over.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    let due = trackers.slow.observe(
        over.iter().map(|(p, _)| p.as_str()),
        Duration::from_secs(policy.block_after_s),
        now,
    );
    for (text, held) in due {
        let events = sums.get(text.as_str()).copied().unwrap_or(0);
        let reason = format!(
            "policy: slow clients (slowloris/slow read), {events} connections closed by deadlines in {}s, for {}s",
            policy.slow_window_s,
            held.as_secs()
        );
        block(shared, dataplane, &text, reason, policy.block_ttl_s);
    }
    let tracker = &mut trackers.rate;
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
        let reason = format!("policy: over new-flow limit for {}s", held.as_secs());
        block(shared, dataplane, &text, reason, policy.block_ttl_s);
    }
}

/// Block `text` (a prefix a dataplane reported) for `ttl_s`, unless a block covers it
/// already; the decision is logged and counted.
fn block(shared: &DaemonState, dataplane: &str, text: &str, reason: String, ttl_s: u64) {
    let prefix: Prefix = match text.parse() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(dataplane, prefix = %text, error = %e, "dataplane reported an unparsable source prefix");
            return;
        }
    };
    if is_blocked(shared, &prefix) {
        return;
    }
    let until = now_unix_ns().saturating_add(ttl_s.saturating_mul(NS));
    let change = Change::BlockAdd {
        prefix: prefix.to_string(),
        until_unix_ns: Some(until),
        reason: reason.clone(),
    };
    match shared.commit(change, "policy") {
        Ok(_) => shared.decide(
            "block-added",
            &prefix.to_string(),
            &format!("{reason} on dataplane {dataplane}, ttl {ttl_s}s"),
        ),
        Err(e) => shared.decide("block-refused", &prefix.to_string(), &e),
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
    fn slow_window_sums_bursts_and_baselines_the_first_poll() {
        let mut w = SlowWindow::default();
        let t0 = Instant::now();
        let win = Duration::from_secs(10);
        let s = Duration::from_secs(1);
        // First poll: a baseline, whatever the counts.
        assert!(w.observe([("a", 500)], win, 20, t0).is_empty());
        // A burst of 200 closes, then nothing for a few polls: still over within the window.
        assert_eq!(
            w.observe([("a", 700)], win, 20, t0 + s),
            [("a".into(), 200)]
        );
        for i in 2..10 {
            assert_eq!(
                w.observe([("a", 700)], win, 20, t0 + i * s).len(),
                1,
                "poll {i}"
            );
        }
        // Out of the window: under the threshold again.
        assert!(w.observe([("a", 700)], win, 20, t0 + 11 * s).is_empty());
        // A new prefix after the first poll counts in full; a count that went down
        // (evicted and back) counts from zero.
        assert_eq!(
            w.observe([("b", 30)], win, 20, t0 + 12 * s),
            [("b".into(), 30)]
        );
        assert_eq!(
            w.observe([("a", 25), ("b", 30)], win, 20, t0 + 13 * s),
            [("a".into(), 25), ("b".into(), 30)]
        );
        w.reset();
        assert!(w.observe([("a", 9999)], win, 20, t0 + 14 * s).is_empty());
    }

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
