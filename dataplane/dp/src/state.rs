//! [`DataplaneState`]: what the rx cores, the workers and the control thread of one
//! weir-dp share, and the protocol by which each side reads it without slowing the packet
//! path.
//!
//! - **Policy**: the control thread stores a complete new `Arc<Policy>` and then bumps
//!   `policy_version`; an rx core compares that version once per burst (one atomic load)
//!   and only when it changed takes the lock to fetch the new `Arc`. The packet path never
//!   locks, and a burst is classified under one policy. Terminator workers do the same once
//!   per drain round (their service prefixes follow the policy).
//! - **Rings**: sizes and weights work the same way (`rings_version`); an rx core resizes
//!   its rings between bursts (losslessly, see `pipeline`).
//! - **Reports**: rx cores and workers publish copies of their counters a few times per
//!   second with `try_lock` (never waiting), and the control thread reads those. A
//!   capture replay's rx core publishes once, at the end (nothing reads it before).
//!
//! Replay uses the same state (with a policy that never changes), so `replay` and `run`
//! share one rx loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use weir_model::config::{Config, PortConfig, RingsConfig};

use crate::classify::{Policy, PolicyError};
use crate::pipeline::WorkerReport;
use crate::rx::RxReport;

/// State shared between the rx cores, the workers and the control thread.
#[derive(Debug)]
pub struct DataplaneState {
    /// The policy in force (see the module doc for the protocol).
    pub policy: Mutex<Arc<Policy>>,
    /// Bumped after `policy` changes.
    pub policy_version: AtomicU64,
    /// Ring sizes and weights.
    pub rings: Mutex<RingsConfig>,
    /// Bumped after `rings` changes.
    pub rings_version: AtomicU64,
    /// Each rx core's report.
    pub rx: Vec<Mutex<RxReport>>,
    /// Each worker's report.
    pub workers: Vec<Arc<Mutex<WorkerReport>>>,
    /// Start time.
    pub started: Instant,
    /// Set to stop everything.
    pub stop: Arc<AtomicBool>,
    /// Worker count (fixed for the process's life).
    pub worker_count: u16,
    /// The live tee (`tee` module): off until started.
    pub tee: crate::tee::TeeHub,
}

impl DataplaneState {
    /// The state `cfg` describes, for `rx_cores` rx cores (a warning is logged when the
    /// rule would not spread clients over slices).
    pub fn new(
        cfg: &Config,
        rx_cores: usize,
        stop: Arc<AtomicBool>,
    ) -> Result<Arc<DataplaneState>, PolicyError> {
        let policy = Policy::from_config(cfg)?;
        if let Some(w) = policy.spread_warning() {
            tracing::warn!("{w}");
        }
        let workers = cfg.dataplane.workers;
        Ok(Arc::new(DataplaneState {
            policy: Mutex::new(Arc::new(policy)),
            policy_version: AtomicU64::new(0),
            rings: Mutex::new(cfg.rings),
            rings_version: AtomicU64::new(0),
            rx: (0..rx_cores.max(1))
                .map(|_| Mutex::new(RxReport::default()))
                .collect(),
            workers: (0..workers)
                .map(|w| Arc::new(Mutex::new(WorkerReport::new(w))))
                .collect(),
            started: Instant::now(),
            tee: crate::tee::TeeHub::new(cfg, rx_cores, Arc::clone(&stop)),
            stop,
            worker_count: workers,
        }))
    }

    /// The state of `weir-dp run` under `cfg`: one rx core per rx queue of its `[port]`.
    pub fn for_run(
        cfg: &Config,
        stop: Arc<AtomicBool>,
    ) -> Result<Arc<DataplaneState>, PolicyError> {
        DataplaneState::new(cfg, cfg.port.as_ref().map_or(1, PortConfig::rx_cores), stop)
    }

    /// Install a new policy; rx cores pick it up at their next burst, terminators at their
    /// next drain round.
    pub fn set_policy(&self, policy: Policy) {
        if let Some(w) = policy.spread_warning() {
            tracing::warn!(version = policy.version, "{w}");
        }
        if let Ok(mut g) = self.policy.lock() {
            *g = Arc::new(policy);
        }
        self.policy_version.fetch_add(1, Ordering::Release);
    }

    /// The policy in force and its version.
    pub fn policy_now(&self) -> Option<(u64, Arc<Policy>)> {
        let v = self.policy_version.load(Ordering::Acquire);
        self.policy.lock().ok().map(|p| (v, Arc::clone(&p)))
    }

    /// Every rx core's report, merged.
    pub fn rx_report(&self) -> RxReport {
        let mut merged: Option<RxReport> = None;
        for slot in &self.rx {
            let Ok(r) = slot.lock() else { continue };
            match &mut merged {
                Some(m) => m.merge(&r),
                None => merged = Some(r.clone()),
            }
        }
        merged.unwrap_or_default()
    }

    /// Install new ring sizes and weights.
    pub fn set_rings(&self, rings: RingsConfig) {
        if let Ok(mut g) = self.rings.lock() {
            if *g == rings {
                return;
            }
            *g = rings;
        }
        self.rings_version.fetch_add(1, Ordering::Release);
    }
}
