//! The desired state: the config file's policy sections plus a runtime [`Overlay`], and the
//! [`PolicySnapshot`] they make.
//!
//! Every accepted change produces a *candidate* (new overlay + new snapshot, built and
//! validated in full) before anything is touched; the daemon persists the candidate, then
//! commits it. So a refused change — bad value, snapshot too large for a frame, state file
//! not writable — leaves the running state exactly as it was, and every acknowledged change
//! is on disk first.
//!
//! Overrides remember the config value they were made against (`base`). At a config reload
//! an override whose key the file changed is dropped: the operator edited that key on
//! purpose, and the file wins. Overrides of keys the file left alone are kept. Slice moves
//! are kept as the difference from the default assignment (bounded by the slice count, not
//! by the number of moves ever made) and dropped when the slice layout itself (APL, slice
//! bits, workers) changed, since old slice numbers no longer mean the same addresses.
//!
//! Rejected: storing the whole effective policy as the state file (a reload could then
//! never bring a file edit into force), and replaying a log of changes (unbounded growth,
//! and an entry that no longer validates would poison every restart).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_control::proto::{
    slice_runs, BlockSpec, ClusterPolicy, PolicySnapshot, SliceRun, TeeOrder,
};
use weir_model::config::{Config, RingConfig, MAX_BLOCKS};
use weir_model::Class;
use weir_ssa::Rule;
use weir_ssa::{Prefix, ServicePrefixes, SliceMap};

/// Reason recorded for `[[block]]` entries of the config file.
pub const CONFIG_BLOCK_REASON: &str = "config";

/// A runtime override of one ring class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingOverride {
    /// The config file's value when the override was made.
    pub base: RingConfig,
    /// The value in force.
    pub value: RingConfig,
}

/// A runtime override of the SSA rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    /// The config file's rule when the override was made.
    pub base: Rule,
    /// The rule in force.
    pub value: Rule,
}

/// Slice moves, as runs that differ from the default assignment of a slice layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceOverride {
    /// The layout the runs refer to (see [`layout_key`]).
    pub layout: String,
    /// Slices whose worker differs from the default, as runs.
    pub runs: Vec<SliceRun>,
}

/// Everything changed at run time, on top of the config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// Ring overrides by class (`known_good`, … in the state file).
    #[serde(default)]
    pub rings: BTreeMap<Class, RingOverride>,
    /// Rule override.
    #[serde(default)]
    pub rule: Option<RuleOverride>,
    /// Slice moves.
    #[serde(default)]
    pub slices: Option<SliceOverride>,
    /// Blocks added at run time (operator or policy loop), by normalized prefix.
    #[serde(default)]
    pub blocks_added: Vec<BlockSpec>,
    /// `[[block]]` entries of the config file removed at run time (normalized prefixes).
    #[serde(default)]
    pub blocks_removed: Vec<String>,
    /// The operator's word on the dataplanes' live tee (`weirctl tee start/stop`).
    #[serde(default)]
    pub tee: TeeOrder,
}

/// A change the operator or the policy loop asks for.
#[derive(Debug, Clone)]
pub enum Change {
    /// Ring size and/or weight of one class.
    Ring {
        /// The ring's class.
        class: Class,
        /// New size.
        size: Option<u32>,
        /// New weight.
        weight: Option<u32>,
    },
    /// Replace the rule.
    Rule(Rule),
    /// Give slices to a worker.
    SlicesMove {
        /// First slice.
        first: u32,
        /// Last slice, inclusive.
        last: u32,
        /// Worker.
        worker: u16,
    },
    /// Add (or replace) a block.
    BlockAdd {
        /// Prefix text as given.
        prefix: String,
        /// Expiry, unix ns.
        until_unix_ns: Option<u64>,
        /// Who blocked it (`operator`, `policy`, `config`) and why.
        reason: String,
    },
    /// Remove a block.
    BlockDel {
        /// Prefix text as given.
        prefix: String,
    },
    /// Remove every block whose expiry is at or before this unix time (ns).
    Expire {
        /// Now.
        now_unix_ns: u64,
    },
    /// Replace the config file's part.
    Reload(Box<Config>),
    /// Replace the cluster part (handover addresses and runs), from the cluster session.
    Cluster(Option<ClusterPolicy>),
    /// Start or stop the dataplanes' live tee.
    Tee(TeeOrder),
}

/// The desired state in force.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The config file's part.
    pub config: Config,
    /// The runtime part.
    pub overlay: Overlay,
    /// The cluster part, kept by the cluster session (not persisted: etcd holds it).
    pub cluster: Option<ClusterPolicy>,
    /// What all three make, with the current version.
    pub snapshot: PolicySnapshot,
}

/// A change built and validated, not yet persisted or in force.
#[derive(Debug)]
pub struct Candidate {
    /// The state after the change.
    pub desired: Desired,
    /// What changed, for the log and the reply.
    pub message: String,
    /// Blocks removed by an [`Change::Expire`] (for the decision log).
    pub expired: Vec<BlockSpec>,
}

impl Desired {
    /// The state made by `config` and `overlay` at `version`; the overlay is pruned of what
    /// no longer applies to this config (the notes say what was dropped).
    pub fn build(
        config: Config,
        mut overlay: Overlay,
        version: u64,
    ) -> Result<(Desired, Vec<String>), String> {
        let notes = prune(&config, &mut overlay)?;
        let snapshot = snapshot(&config, &overlay, None, version)?;
        Ok((
            Desired {
                config,
                overlay,
                cluster: None,
                snapshot,
            },
            notes,
        ))
    }

    /// The version in force.
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }

    /// Build and validate `change` as the next version; `Err` says why it was refused.
    /// An [`Change::Expire`] with nothing to expire gives `Ok(None)`.
    pub fn propose(&self, change: Change) -> Result<Option<Candidate>, String> {
        let mut overlay = self.overlay.clone();
        let mut config = self.config.clone();
        let mut expired = Vec::new();
        let mut notes = Vec::new();
        let mut cluster = self.cluster.clone();
        let message = match change {
            Change::Ring {
                class,
                size,
                weight,
            } => self.ring_change(&mut overlay, class, size, weight)?,
            Change::Rule(rule) => {
                rule.validate().map_err(|e| e.to_string())?;
                let base = self.config.ssa();
                overlay.rule = (rule != base).then_some(RuleOverride { base, value: rule });
                format!("rule set to {rule}")
            }
            Change::SlicesMove {
                first,
                last,
                worker,
            } => {
                let default = default_map(&self.config)?;
                let mut map = effective_map(&self.config, &overlay)?;
                map.assign(first, last, worker).map_err(|e| e.to_string())?;
                let runs = diff_runs(default.table(), map.table());
                overlay.slices = (!runs.is_empty()).then(|| SliceOverride {
                    layout: layout_key(&self.config),
                    runs,
                });
                format!("slices {first}..={last} moved to worker {worker}")
            }
            Change::BlockAdd {
                prefix,
                until_unix_ns,
                reason,
            } => {
                let p: Prefix = prefix.trim().parse().map_err(|e| format!("{e}"))?;
                let key = p.to_string();
                overlay.blocks_added.retain(|b| b.prefix != key);
                overlay.blocks_added.push(BlockSpec {
                    prefix: key.clone(),
                    until_unix_ns,
                    reason: reason.clone(),
                });
                overlay.blocks_added.sort_by(|a, b| a.prefix.cmp(&b.prefix));
                match until_unix_ns {
                    Some(ns) => format!("blocked {key} until unix {}s ({reason})", ns / NS),
                    None => format!("blocked {key} until removed ({reason})"),
                }
            }
            Change::BlockDel { prefix } => {
                let p: Prefix = prefix.trim().parse().map_err(|e| format!("{e}"))?;
                let key = p.to_string();
                if !self.snapshot.blocks.iter().any(|b| b.prefix == key) {
                    return Err(format!("{key} is not blocked"));
                }
                remove_block(&self.config, &mut overlay, &key);
                format!("unblocked {key}")
            }
            Change::Expire { now_unix_ns } => {
                for b in &self.snapshot.blocks {
                    if b.until_unix_ns.is_some_and(|u| u <= now_unix_ns) {
                        remove_block(&self.config, &mut overlay, &b.prefix);
                        expired.push(b.clone());
                    }
                }
                if expired.is_empty() {
                    return Ok(None);
                }
                let names: Vec<&str> = expired.iter().map(|b| b.prefix.as_str()).collect();
                format!("expired blocks: {}", names.join(", "))
            }
            Change::Reload(new) => {
                config = *new;
                notes = prune(&config, &mut overlay)?;
                "config reloaded".to_string()
            }
            Change::Cluster(c) => {
                if c == self.cluster {
                    return Ok(None);
                }
                let msg = match &c {
                    Some(c) => format!(
                        "cluster: {} members, {} handover runs",
                        c.members.len(),
                        c.handovers.len()
                    ),
                    None => "cluster: none".to_string(),
                };
                cluster = c;
                msg
            }
            Change::Tee(order) => {
                let msg = match &order {
                    TeeOrder::Start(spec) => {
                        weir_model::tee::check_settings(
                            &spec.filters,
                            spec.sample,
                            spec.snaplen.unwrap_or(weir_model::tee::limits::MIN_SNAPLEN),
                        )?;
                        let filter = weir_model::tee::TeeFilter::parse_list(&spec.filters)
                            .map_err(|e| e.to_string())?;
                        match spec.until_unix_ns {
                            Some(ns) => format!(
                                "tee started: {filter}, 1 in {}, until unix {}s",
                                spec.sample,
                                ns / NS
                            ),
                            None => format!("tee started: {filter}, 1 in {}", spec.sample),
                        }
                    }
                    TeeOrder::Stop => "tee stopped".to_string(),
                    TeeOrder::Config => "tee follows the dataplanes' [tee]".to_string(),
                };
                overlay.tee = order;
                msg
            }
        };
        let count = effective_blocks(&config, &overlay).len();
        if count > MAX_BLOCKS {
            return Err(format!(
                "at most {MAX_BLOCKS} blocks, this would make {count}"
            ));
        }
        let snapshot = snapshot(&config, &overlay, cluster.clone(), self.version() + 1)?;
        let message = if notes.is_empty() {
            message
        } else {
            format!("{message}; {}", notes.join("; "))
        };
        Ok(Some(Candidate {
            desired: Desired {
                config,
                overlay,
                cluster,
                snapshot,
            },
            message,
            expired,
        }))
    }

    fn ring_change(
        &self,
        overlay: &mut Overlay,
        class: Class,
        size: Option<u32>,
        weight: Option<u32>,
    ) -> Result<String, String> {
        let base = self.config.rings.of(class).ok_or_else(|| {
            format!("{class} has no ring (known_good, assumed_good and suspect have)")
        })?;
        if size.is_none() && weight.is_none() {
            return Err("nothing to change: give a size and/or a weight".into());
        }
        let current = self.snapshot.rings.of(class).unwrap_or(base);
        let mut value = current;
        if let Some(s) = size {
            value.size = weir_model::config::check_ring_size(s).map_err(|e| e.to_string())?;
        }
        if let Some(w) = weight {
            value.weight = weir_model::config::check_ring_weight(w).map_err(|e| e.to_string())?;
        }
        if value == base {
            overlay.rings.remove(&class);
        } else {
            overlay.rings.insert(class, RingOverride { base, value });
        }
        Ok(format!(
            "ring {class}: size {} weight {} (was size {} weight {})",
            value.size, value.weight, current.size, current.weight
        ))
    }
}

/// Nanoseconds per second.
pub const NS: u64 = 1_000_000_000;

/// What identifies a slice layout: slice ids mean the same addresses only while it holds.
pub fn layout_key(config: &Config) -> String {
    let service = config.service();
    format!(
        "{} bits={} workers={}",
        service.apl, service.slice_bits, config.dataplane.workers
    )
}

fn default_map(config: &Config) -> Result<SliceMap, String> {
    let service = config.service();
    let prefixes = ServicePrefixes::new(&service.apl).map_err(|e| format!("[service] {e}"))?;
    SliceMap::new(
        prefixes.prefixes(),
        service.slice_bits,
        config.dataplane.workers,
    )
    .map_err(|e| format!("[service] {e}"))
}

fn effective_map(config: &Config, overlay: &Overlay) -> Result<SliceMap, String> {
    let mut map = default_map(config)?;
    if let Some(s) = &overlay.slices {
        for r in &s.runs {
            map.assign(r.first, r.last, r.worker)
                .map_err(|e| format!("slice move {}..={}: {e}", r.first, r.last))?;
        }
    }
    Ok(map)
}

/// Runs of the slices whose worker in `now` differs from `default`.
fn diff_runs(default: &[u16], now: &[u16]) -> Vec<SliceRun> {
    let mut runs: Vec<SliceRun> = Vec::new();
    for (i, (&d, &w)) in default.iter().zip(now).enumerate() {
        if d == w {
            continue;
        }
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        match runs.last_mut() {
            Some(r) if r.worker == w && r.last + 1 == i => r.last = i,
            _ => runs.push(SliceRun {
                first: i,
                last: i,
                worker: w,
            }),
        }
    }
    runs
}

fn config_blocks(config: &Config) -> Vec<BlockSpec> {
    config
        .blocks
        .iter()
        .map(|b| BlockSpec {
            prefix: b.prefix.to_string(),
            until_unix_ns: b.until.map(|s| s.saturating_mul(NS)),
            reason: CONFIG_BLOCK_REASON.to_string(),
        })
        .collect()
}

fn remove_block(config: &Config, overlay: &mut Overlay, key: &str) {
    overlay.blocks_added.retain(|b| b.prefix != key);
    if config_blocks(config).iter().any(|b| b.prefix == key)
        && !overlay.blocks_removed.iter().any(|r| r == key)
    {
        overlay.blocks_removed.push(key.to_string());
        overlay.blocks_removed.sort();
    }
}

/// Config blocks not removed, then runtime blocks (which replace a config block of the same
/// prefix), sorted by prefix.
fn effective_blocks(config: &Config, overlay: &Overlay) -> Vec<BlockSpec> {
    let mut blocks: BTreeMap<String, BlockSpec> = BTreeMap::new();
    for b in config_blocks(config) {
        if !overlay.blocks_removed.contains(&b.prefix) {
            blocks.insert(b.prefix.clone(), b);
        }
    }
    for b in &overlay.blocks_added {
        blocks.insert(b.prefix.clone(), b.clone());
    }
    blocks.into_values().collect()
}

/// Drop the overrides that no longer apply to `config`; say what was dropped.
fn prune(config: &Config, overlay: &mut Overlay) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    overlay.rings.retain(|class, o| {
        let keep = config.rings.of(*class) == Some(o.base);
        if !keep {
            notes.push(format!(
                "runtime ring override of {class} dropped: the config file changed it"
            ));
        }
        keep
    });
    if let Some(o) = overlay.rule {
        if o.base != config.ssa() {
            notes.push("runtime rule override dropped: the config file changed [ssa]".into());
            overlay.rule = None;
        }
    }
    if let Some(s) = &overlay.slices {
        if s.layout != layout_key(config) {
            notes.push(format!(
                "runtime slice moves dropped: the slice layout changed to {}",
                layout_key(config)
            ));
            overlay.slices = None;
        }
    }
    let in_config = config_blocks(config);
    overlay.blocks_removed.retain(|key| {
        let keep = in_config.iter().any(|b| &b.prefix == key);
        if !keep {
            notes.push(format!(
                "removal of config block {key} forgotten: no longer in the config file"
            ));
        }
        keep
    });
    Ok(notes)
}

/// The snapshot `config` and `overlay` make at `version`.
fn snapshot(
    config: &Config,
    overlay: &Overlay,
    cluster: Option<ClusterPolicy>,
    version: u64,
) -> Result<PolicySnapshot, String> {
    let service = config.service();
    let limits = config.limits();
    let map = effective_map(config, overlay)?;
    let mut rings = config.rings;
    for (class, o) in &overlay.rings {
        if let Some(r) = rings.of_mut(*class) {
            *r = o.value;
        }
    }
    let rule = overlay.rule.map_or_else(|| config.ssa(), |o| o.value);
    let snap = PolicySnapshot {
        version,
        apl: service.apl.to_string(),
        slice_bits: service.slice_bits,
        rule,
        slices: slice_runs(map.table()),
        blocks: effective_blocks(config, overlay),
        rings,
        new_flows_per_sec: limits.new_flows_per_sec,
        source_prefix_len: limits.source_prefix_len,
        cluster,
        tee: overlay.tee.clone(),
    };
    check_fits(&snap)?;
    Ok(snap)
}

/// A snapshot must fit one frame, or no dataplane could ever receive it.
fn check_fits(snap: &PolicySnapshot) -> Result<(), String> {
    use weir_control::proto::{DpRequest, Envelope};
    let env = Envelope {
        id: u64::MAX,
        body: DpRequest::Apply(Box::new(snap.clone())),
    };
    weir_control::frame::encode(&env)
        .map(|_| ())
        .map_err(|e| format!("the policy would not fit one message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_toml("t.toml", text).unwrap()
    }

    fn base() -> Desired {
        Desired::build(
            cfg("[[block]]\nprefix = \"2001:db8:bad::/48\"\n"),
            Overlay::default(),
            1,
        )
        .unwrap()
        .0
    }

    fn apply(d: &Desired, c: Change) -> Desired {
        d.propose(c).unwrap().unwrap().desired
    }

    /// A tee start is validated, goes into the snapshot and the overlay (persisted), and
    /// a stop replaces it; a bad filter is refused with nothing changed.
    #[test]
    fn tee_orders_ride_the_snapshot() {
        use weir_control::proto::TeeSpec;
        let d = base();
        assert_eq!(d.snapshot.tee, TeeOrder::Config);
        let spec = TeeSpec {
            filters: vec!["reject:ssa-violation".into()],
            sample: 100,
            rate_per_core: None,
            snaplen: None,
            until_unix_ns: Some(5 * NS),
            serial: 2,
        };
        let c = d
            .propose(Change::Tee(TeeOrder::Start(spec.clone())))
            .unwrap()
            .unwrap();
        assert!(
            c.message.contains("reject:ssa-violation") && c.message.contains("1 in 100"),
            "{}",
            c.message
        );
        assert_eq!(c.desired.snapshot.tee, TeeOrder::Start(spec.clone()));
        assert_eq!(c.desired.overlay.tee, TeeOrder::Start(spec.clone()));
        assert_eq!(c.desired.version(), d.version() + 1);
        let stopped = apply(&c.desired, Change::Tee(TeeOrder::Stop));
        assert_eq!(stopped.snapshot.tee, TeeOrder::Stop);
        let bad = TeeSpec {
            filters: vec!["reject:nope".into()],
            ..spec
        };
        let e = d.propose(Change::Tee(TeeOrder::Start(bad))).unwrap_err();
        assert!(e.contains("reject:nope"), "{e}");
    }

    #[test]
    fn default_snapshot_covers_every_slice() {
        let d = base();
        assert_eq!(d.snapshot.slices.first().unwrap().first, 0);
        assert_eq!(d.snapshot.slices.last().unwrap().last, 16383);
        assert_eq!(d.snapshot.blocks.len(), 1);
        assert_eq!(d.snapshot.blocks[0].reason, CONFIG_BLOCK_REASON);
    }

    #[test]
    fn ring_changes_validate_and_revert_to_config() {
        let d = base();
        assert!(d
            .propose(Change::Ring {
                class: Class::Reject,
                size: Some(8),
                weight: None
            })
            .is_err());
        for (size, weight) in [(Some(1000), None), (Some(0), None), (None, Some(0))] {
            assert!(d
                .propose(Change::Ring {
                    class: Class::Suspect,
                    size,
                    weight
                })
                .is_err());
        }
        let d2 = apply(
            &d,
            Change::Ring {
                class: Class::Suspect,
                size: Some(1024),
                weight: None,
            },
        );
        assert_eq!(d2.snapshot.rings.suspect.size, 1024);
        assert_eq!(d2.version(), 2);
        let d3 = apply(
            &d2,
            Change::Ring {
                class: Class::Suspect,
                size: Some(512),
                weight: None,
            },
        );
        assert!(d3.overlay.rings.is_empty(), "{:?}", d3.overlay);
    }

    #[test]
    fn slice_moves_are_stored_as_differences() {
        let d = base();
        assert!(d
            .propose(Change::SlicesMove {
                first: 0,
                last: 10,
                worker: 2
            })
            .is_err());
        assert!(d
            .propose(Change::SlicesMove {
                first: 10,
                last: 20000,
                worker: 1
            })
            .is_err());
        let d2 = apply(
            &d,
            Change::SlicesMove {
                first: 0,
                last: 9,
                worker: 1,
            },
        );
        assert_eq!(
            d2.overlay.slices.as_ref().unwrap().runs,
            vec![SliceRun {
                first: 0,
                last: 9,
                worker: 1
            }]
        );
        let d3 = apply(
            &d2,
            Change::SlicesMove {
                first: 0,
                last: 9,
                worker: 0,
            },
        );
        assert!(d3.overlay.slices.is_none());
    }

    #[test]
    fn blocks_add_delete_and_expire() {
        let d = base();
        assert!(d
            .propose(Change::BlockDel {
                prefix: "2001:db8:1::/48".into()
            })
            .is_err());
        assert!(d
            .propose(Change::BlockAdd {
                prefix: "nonsense".into(),
                until_unix_ns: None,
                reason: "t".into()
            })
            .is_err());
        let d2 = apply(
            &d,
            Change::BlockAdd {
                prefix: "2001:db8:1:2::1/64".into(),
                until_unix_ns: Some(5 * NS),
                reason: "t".into(),
            },
        );
        assert_eq!(d2.snapshot.blocks.len(), 2);
        assert!(d2
            .snapshot
            .blocks
            .iter()
            .any(|b| b.prefix == "2001:db8:1:2::/64"));
        assert!(d2
            .propose(Change::Expire {
                now_unix_ns: 4 * NS
            })
            .unwrap()
            .is_none());
        let c = d2
            .propose(Change::Expire {
                now_unix_ns: 5 * NS,
            })
            .unwrap()
            .unwrap();
        assert_eq!(c.expired.len(), 1);
        assert_eq!(c.desired.snapshot.blocks.len(), 1);
        let d3 = apply(
            &d,
            Change::BlockDel {
                prefix: "2001:db8:bad::/48".into(),
            },
        );
        assert!(d3.snapshot.blocks.is_empty());
        assert_eq!(d3.overlay.blocks_removed, vec!["2001:db8:bad::/48"]);
    }

    #[test]
    fn reload_keeps_overrides_the_file_did_not_touch() {
        let d = base();
        let d = apply(
            &d,
            Change::Ring {
                class: Class::Suspect,
                size: Some(1024),
                weight: None,
            },
        );
        let d = apply(
            &d,
            Change::Ring {
                class: Class::KnownGood,
                size: None,
                weight: Some(7),
            },
        );
        let new = cfg("[rings]\nsuspect = { size = 256, weight = 8 }\n");
        let c = d.propose(Change::Reload(Box::new(new))).unwrap().unwrap();
        assert_eq!(c.desired.snapshot.rings.suspect.size, 256);
        assert_eq!(c.desired.snapshot.rings.known_good.weight, 7);
        assert!(c.message.contains("suspect"), "{}", c.message);
        assert!(c.desired.snapshot.blocks.is_empty());
    }

    #[test]
    fn overlay_round_trips_through_json() {
        let d = apply(
            &base(),
            Change::Rule(Rule::SrcBits {
                src_start: 0,
                dst_start: 64,
                len: 48,
            }),
        );
        let text = serde_json::to_string(&d.overlay).unwrap();
        let back: Overlay = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d.overlay);
    }
}
