//! The slice assignment (`/weir/<service>/assignment`): which host owns which slice run,
//! with an epoch, and the pure functions the coordinator uses to change it.
//!
//! An assignment covers every slice of the layout in order, as runs of one host each.
//! Every change makes a new assignment with `epoch + 1`; the coordinator writes it in an
//! etcd transaction that compares the key's modification revision with the one it read
//! along with the old epoch, so two writers can never both build on the same epoch.
//!
//! [`Assignment::rebalance`] is the one planner: slices owned by hosts that are not live
//! (dead) or drained are freed, hosts above an even share give up their excess from the
//! end of their runs, and the freed slices fill the hosts below their share in order. A
//! host keeps every slice it may keep, so a failure or a join moves as few slices as an
//! even spread allows. Rejected: consistent hashing of slices onto hosts (moves are then
//! scattered single slices, which aggregate into many more routes).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Slices `first..=last` belong to `host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// First slice.
    pub first: u32,
    /// Last slice, inclusive.
    pub last: u32,
    /// Owner.
    pub host: String,
}

/// The assignment as stored in etcd (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Grows by one with every change.
    pub epoch: u64,
    /// The slice layout the numbers refer to (APL and slice bits).
    pub layout: String,
    /// Slices in the layout.
    pub slices: u32,
    /// Runs covering `0..slices` in order.
    pub runs: Vec<Run>,
    /// Hosts that get no slices until a move gives them some.
    #[serde(default)]
    pub drained: Vec<String>,
}

/// Slices that change owner in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// First slice.
    pub first: u32,
    /// Last slice, inclusive.
    pub last: u32,
    /// Old owner.
    pub from: String,
    /// New owner.
    pub to: String,
}

impl Assignment {
    /// `hosts` (sorted, deduplicated) share `slices` evenly in contiguous runs: host i of H
    /// gets [i·n/H, (i+1)·n/H).
    pub fn even(layout: &str, slices: u32, hosts: &BTreeSet<String>, epoch: u64) -> Assignment {
        let h = hosts.len() as u64;
        let n = u64::from(slices);
        let mut runs = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let (lo, hi) = (i as u64 * n / h, (i as u64 + 1) * n / h);
            if hi > lo {
                runs.push(Run {
                    first: u32::try_from(lo).unwrap_or(u32::MAX),
                    last: u32::try_from(hi - 1).unwrap_or(u32::MAX),
                    host: host.clone(),
                });
            }
        }
        Assignment {
            epoch,
            layout: layout.to_string(),
            slices,
            runs,
            drained: Vec::new(),
        }
    }

    /// Check the runs cover `0..slices` in order with no gap or overlap.
    pub fn validate(&self) -> Result<(), String> {
        let mut next = 0u32;
        for r in &self.runs {
            if r.first != next || r.last < r.first || r.host.is_empty() {
                return Err(format!(
                    "assignment epoch {}: run {}..={} ({}) does not continue at slice {next}",
                    self.epoch, r.first, r.last, r.host
                ));
            }
            next = r.last.saturating_add(1);
        }
        if next != self.slices {
            return Err(format!(
                "assignment epoch {}: runs cover {next} of {} slices",
                self.epoch, self.slices
            ));
        }
        Ok(())
    }

    /// The owner of every slice.
    pub fn table(&self) -> Vec<&str> {
        let mut t = Vec::with_capacity(self.slices as usize);
        for r in &self.runs {
            for _ in r.first..=r.last {
                t.push(r.host.as_str());
            }
        }
        t
    }

    fn next_with(&self, table: &[&str], drained: Vec<String>) -> Assignment {
        let mut runs: Vec<Run> = Vec::new();
        for (i, &h) in table.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match runs.last_mut() {
                Some(r) if r.host == h && r.last + 1 == i => r.last = i,
                _ => runs.push(Run {
                    first: i,
                    last: i,
                    host: h.to_string(),
                }),
            }
        }
        Assignment {
            epoch: self.epoch + 1,
            layout: self.layout.clone(),
            slices: self.slices,
            runs,
            drained,
        }
    }

    /// The runs `host` owns.
    pub fn owned(&self, host: &str) -> Vec<(u32, u32)> {
        self.runs
            .iter()
            .filter(|r| r.host == host)
            .map(|r| (r.first, r.last))
            .collect()
    }

    /// Slices per host.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let mut c = BTreeMap::new();
        for r in &self.runs {
            *c.entry(r.host.clone()).or_insert(0) += r.last - r.first + 1;
        }
        c
    }

    /// The owner of `slice`.
    pub fn owner(&self, slice: u32) -> Option<&str> {
        self.runs
            .iter()
            .find(|r| (r.first..=r.last).contains(&slice))
            .map(|r| r.host.as_str())
    }

    /// Whether the rebalancer has work: slices owned by hosts not in `live` or drained,
    /// or a live host that may own slices owns none.
    pub fn needs_rebalance(&self, live: &BTreeSet<String>) -> bool {
        let counts = self.counts();
        let eligible = self.eligible(live);
        if eligible.is_empty() {
            return false;
        }
        counts.keys().any(|h| !eligible.contains(h))
            || eligible.iter().any(|h| !counts.contains_key(h))
    }

    /// The live hosts that may own slices: the undrained ones, or, when every live host
    /// is drained, all of them (drained hosts serving beats slices owned by no one).
    fn eligible(&self, live: &BTreeSet<String>) -> BTreeSet<String> {
        let undrained: BTreeSet<String> = live
            .iter()
            .filter(|h| !self.drained.contains(h))
            .cloned()
            .collect();
        if undrained.is_empty() {
            live.clone()
        } else {
            undrained
        }
    }

    /// The next assignment where every live, undrained host has an even share, moving as
    /// few slices as that allows; `None` when no host is eligible or nothing moves.
    pub fn rebalance(&self, live: &BTreeSet<String>) -> Option<(Assignment, Vec<Moved>)> {
        let eligible = self.eligible(live);
        if eligible.is_empty() {
            return None;
        }
        let n = self.slices as usize;
        let e = eligible.len();
        let counts = self.counts();
        // Targets: n/E each; the remainder goes to the hosts holding the most now (they
        // keep it instead of moving it), ties by name.
        let mut order: Vec<&String> = eligible.iter().collect();
        order.sort_by_key(|h| std::cmp::Reverse(counts.get(*h).copied().unwrap_or(0)));
        let mut target: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, h) in order.iter().enumerate() {
            target.insert(h.as_str(), n / e + usize::from(i < n % e));
        }
        let old = self.table();
        let mut table = old.clone();
        // Free: slices of ineligible owners, and each eligible owner's excess from the end.
        let mut kept: BTreeMap<&str, usize> = BTreeMap::new();
        let mut free = vec![false; n];
        for (i, h) in old.iter().enumerate() {
            match target.get(h) {
                Some(&t) => {
                    let k = kept.entry(h).or_insert(0);
                    if *k < t {
                        *k += 1;
                    } else {
                        free[i] = true;
                    }
                }
                None => free[i] = true,
            }
        }
        // Fill: hosts below their target, in name order, take free slices in order.
        let mut takers = target
            .iter()
            .map(|(h, &t)| (*h, t.saturating_sub(kept.get(h).copied().unwrap_or(0))))
            .filter(|(_, want)| *want > 0);
        let mut current = takers.next();
        for (i, f) in free.iter().enumerate() {
            if !f {
                continue;
            }
            let Some((h, want)) = current.as_mut() else {
                break;
            };
            table[i] = h;
            *want -= 1;
            if *want == 0 {
                current = takers.next();
            }
        }
        let moved = moved_runs(&old, &table);
        if moved.is_empty() {
            return None;
        }
        Some((self.next_with(&table, self.drained.clone()), moved))
    }

    /// The next assignment with slices `first..=last` given to `host` (which is no longer
    /// drained), and what moved.
    pub fn assign(
        &self,
        first: u32,
        last: u32,
        host: &str,
    ) -> Result<(Assignment, Vec<Moved>), String> {
        if first > last || last >= self.slices {
            return Err(format!(
                "slices {first}..={last} are not within 0..{}",
                self.slices
            ));
        }
        let old = self.table();
        let mut table = old.clone();
        for t in &mut table[first as usize..=last as usize] {
            *t = host;
        }
        let drained = self
            .drained
            .iter()
            .filter(|h| *h != host)
            .cloned()
            .collect();
        let moved = moved_runs(&old, &table);
        Ok((self.next_with(&table, drained), moved))
    }

    /// The next assignment with `host` drained and its slices spread over the other live
    /// hosts.
    pub fn drain(
        &self,
        host: &str,
        live: &BTreeSet<String>,
    ) -> Result<(Assignment, Vec<Moved>), String> {
        let mut drained = self.drained.clone();
        if !drained.iter().any(|h| h == host) {
            drained.push(host.to_string());
            drained.sort();
        }
        let with = Assignment {
            drained,
            ..self.clone()
        };
        if live.iter().all(|h| with.drained.contains(h)) {
            return Err(format!(
                "draining {host} would leave no live host to own the slices"
            ));
        }
        match with.rebalance(live) {
            Some(r) => Ok(r),
            None => Ok((
                Assignment {
                    epoch: self.epoch + 1,
                    ..with
                },
                Vec::new(),
            )),
        }
    }
}

/// The runs whose owner differs between `old` and `new`.
fn moved_runs(old: &[&str], new: &[&str]) -> Vec<Moved> {
    let mut moved: Vec<Moved> = Vec::new();
    for (i, (&a, &b)) in old.iter().zip(new).enumerate() {
        if a == b {
            continue;
        }
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        match moved.last_mut() {
            Some(m) if m.from == a && m.to == b && m.last + 1 == i => m.last = i,
            _ => moved.push(Moved {
                first: i,
                last: i,
                from: a.to_string(),
                to: b.to_string(),
            }),
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn even_runs_and_counts() {
        let a = Assignment::even("l", 16384, &set(&["h1", "h2", "h3"]), 1);
        a.validate().unwrap();
        assert_eq!(
            a.counts().values().copied().collect::<Vec<_>>(),
            [5461, 5461, 5462]
        );
        assert_eq!(a.owned("h2"), [(5461, 10921)]);
        assert_eq!(a.owner(0), Some("h1"));
        assert_eq!(a.owner(16383), Some("h3"));
        assert_eq!(a.owner(16384), None);
    }

    #[test]
    fn a_dead_hosts_slices_go_to_the_survivors_and_nothing_else_moves() {
        let a = Assignment::even("l", 16384, &set(&["h1", "h2", "h3"]), 1);
        let (b, moved) = a.rebalance(&set(&["h1", "h3"])).unwrap();
        b.validate().unwrap();
        assert_eq!(b.epoch, 2);
        assert!(moved.iter().all(|m| m.from == "h2"), "{moved:?}");
        let c = b.counts();
        assert_eq!(c.len(), 2);
        assert!(c.values().all(|&n| n == 8192), "{c:?}");
        // h1 and h3 kept everything they had.
        for s in a.owned("h1").into_iter().chain(a.owned("h3")) {
            for i in s.0..=s.1 {
                assert_eq!(a.owner(i), b.owner(i));
            }
        }
        assert!(!b.needs_rebalance(&set(&["h1", "h3"])));
        assert!(b.needs_rebalance(&set(&["h1", "h2", "h3"])), "a join");
    }

    #[test]
    fn moves_and_drains() {
        let a = Assignment::even("l", 12, &set(&["a", "b", "c"]), 1);
        let (b, moved) = a.assign(2, 5, "c").unwrap();
        assert_eq!(
            moved,
            vec![
                Moved {
                    first: 2,
                    last: 3,
                    from: "a".into(),
                    to: "c".into()
                },
                Moved {
                    first: 4,
                    last: 5,
                    from: "b".into(),
                    to: "c".into()
                },
            ]
        );
        assert!(a.assign(5, 12, "c").is_err());
        assert!(a.assign(5, 4, "c").is_err());
        let (d, moved) = b.drain("c", &set(&["a", "b", "c"])).unwrap();
        assert!(moved.iter().all(|m| m.from == "c"));
        assert_eq!(d.drained, ["c"]);
        assert!(!d.counts().contains_key("c"));
        assert!(
            d.rebalance(&set(&["a", "b", "c"])).is_none(),
            "drained stays empty"
        );
        assert!(d.drain("a", &set(&["a"])).is_err());
        // A move to a drained host undrains it.
        let (e, _) = d.assign(0, 0, "c").unwrap();
        assert!(e.drained.is_empty());
    }

    fn hosts() -> impl Strategy<Value = BTreeSet<String>> {
        proptest::collection::btree_set("[a-e]", 1..5)
    }

    proptest! {
        /// Rebalancing after any membership change gives every eligible host n/E or
        /// n/E + 1 slices, covers every slice, and never takes a slice from a host that
        /// stays at or below its share.
        #[test]
        fn rebalance_is_even_and_minimal(slices in 1u32..300, before in hosts(), after in hosts()) {
            let a = Assignment::even("l", slices, &before, 1);
            let Some((b, moved)) = a.rebalance(&after) else {
                prop_assert!(!a.needs_rebalance(&after) || slices < after.len() as u32);
                return Ok(());
            };
            b.validate().unwrap();
            let n = slices as usize;
            let e = after.len();
            let counts = b.counts();
            for h in &after {
                let c = counts.get(h).copied().unwrap_or(0) as usize;
                prop_assert!(c == n / e || c == n / e + 1, "{h}: {c}");
            }
            prop_assert!(counts.keys().all(|h| after.contains(h)));
            let old = a.counts();
            for m in &moved {
                if after.contains(&m.from) {
                    // Only hosts above their share give slices away.
                    prop_assert!(old[&m.from] as usize > n / e, "{m:?}");
                }
            }
            prop_assert!(b.rebalance(&after).is_none(), "stable");
        }
    }
}
