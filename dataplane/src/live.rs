//! `weir-dp run`: the dataplane as a long-running process, directed at run time.
//!
//! One rx core (this thread) reads bursts from the port, classifies them and queues them
//! to the workers (threads); a control thread (see `control`) applies policy snapshots
//! and answers stats. They share a [`Shared`]:
//! - **Policy**: the control thread stores a complete new `Arc<Policy>` and then bumps
//!   `policy_version`; the rx core compares that version once per burst (one atomic load)
//!   and only when it changed takes the lock to fetch the new `Arc`. The packet path never
//!   locks, and a burst is classified under one policy.
//! - **Rings**: sizes and weights work the same way (`rings_version`); the rx core resizes
//!   its rings between bursts (losslessly, see `pipeline`).
//! - **Reports**: the rx core and each worker publish copies of their counters a few times
//!   per second with `try_lock` (never waiting), and the control thread reads those. Flow
//!   occupancy needs a walk of the flow table, done by the rx core every 2 s.
//!
//! The port here is a capture replayed as a live source (`[port] kind = "pcap"`): its
//! frames in order, optionally looped and paced, on the dataplane's own clock (wall time
//! at start + a monotonic clock), so rate buckets and expiry run in real time. TAP and
//! DPDK ports plug into the same loop.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::capture::Capture;
use crate::classify::{Classifier, Counters, Limits, Policy, Vantage};
use crate::config::{Config, PortConfig, RingsConfig};
use crate::flow::FlowCounters;
use crate::pipeline::{self, Overflow, WorkerReport};
use crate::rate::RateCounters;
use crate::verdict::{Class, Disposition};

/// Frames per burst.
pub const BURST: usize = 32;
/// Largest capture a pcap port loads (it is held in memory to loop over it).
pub const MAX_PORT_CAPTURE: u64 = 256 << 20;

/// What the rx core publishes for the control thread.
#[derive(Debug, Clone, Default)]
pub struct RxReport {
    /// Verdict counters.
    pub counters: Counters,
    /// Flow-table events.
    pub flow: FlowCounters,
    /// Rate-meter events.
    pub rate: RateCounters,
    /// `ring-full` drops per queued class.
    pub ring_full: [u64; 3],
    /// Frames longer than a buffer.
    pub oversize: u64,
    /// (worker, class index, size, occupancy) of every ring.
    pub rings: Vec<(u16, usize, usize, usize)>,
    /// Packets per slice.
    pub slice_packets: Vec<u64>,
    /// Top source prefixes of the last interval: (prefix, len, admitted, limited).
    pub top_sources: Vec<(u128, u8, u32, u32)>,
    /// Live half-open flows (last walk).
    pub half_open: u64,
    /// Live established flows (last walk).
    pub established: u64,
    /// Policy version in force on the rx core.
    pub policy_version: u64,
}

/// State shared between the rx core, the workers and the control thread.
#[derive(Debug)]
pub struct Shared {
    /// The policy in force (see the module doc for the protocol).
    pub policy: Mutex<Arc<Policy>>,
    /// Bumped after `policy` changes.
    pub policy_version: AtomicU64,
    /// Ring sizes and weights.
    pub rings: Mutex<RingsConfig>,
    /// Bumped after `rings` changes.
    pub rings_version: AtomicU64,
    /// The rx core's report.
    pub rx: Mutex<RxReport>,
    /// Each worker's report.
    pub workers: Vec<Arc<Mutex<WorkerReport>>>,
    /// Start time.
    pub started: Instant,
    /// Set to stop everything.
    pub stop: Arc<AtomicBool>,
    /// Worker count (fixed for the process's life).
    pub worker_count: u16,
}

impl Shared {
    /// Install a new policy; the rx core picks it up at its next burst.
    pub fn set_policy(&self, policy: Policy) {
        if let Ok(mut g) = self.policy.lock() {
            *g = Arc::new(policy);
        }
        self.policy_version.fetch_add(1, Ordering::Release);
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

/// A capture replayed as a live port.
#[derive(Debug)]
pub struct PcapPort {
    frames: Vec<Vec<u8>>,
    next: usize,
    looped: bool,
    pps: u64,
}

impl PcapPort {
    /// Load `path`.
    pub fn open(path: &Path, looped: bool, pps: u64) -> Result<PcapPort> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("[port] {}", path.display()))?
            .len();
        if size > MAX_PORT_CAPTURE {
            bail!(
                "[port] {} is {size} bytes; a pcap port holds at most {MAX_PORT_CAPTURE} (use `weir-dp replay` for large captures)",
                path.display()
            );
        }
        let mut frames = Vec::new();
        Capture::open(path)?.for_each(|r| frames.push(r.data.to_vec()))?;
        if frames.is_empty() {
            bail!("[port] {} holds no frames", path.display());
        }
        Ok(PcapPort {
            frames,
            next: 0,
            looped,
            pps,
        })
    }

    /// The next frame, or `None` at the end of a capture that does not loop.
    fn next_frame(&mut self) -> Option<&[u8]> {
        if self.next >= self.frames.len() {
            if !self.looped {
                return None;
            }
            self.next = 0;
        }
        let f = self.frames.get(self.next)?;
        self.next += 1;
        Some(f)
    }
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this long (tests, demos); `None` = until stopped.
    pub duration: Option<Duration>,
}

/// Everything a run sets up before its loop: exposed so the control thread can be started
/// against [`Shared`] before packets flow.
pub fn shared_for(cfg: &Config, stop: Arc<AtomicBool>) -> Result<Arc<Shared>> {
    let policy = Policy::from_config(cfg).context("invalid policy")?;
    let workers = cfg.dataplane.workers;
    Ok(Arc::new(Shared {
        policy: Mutex::new(Arc::new(policy)),
        policy_version: AtomicU64::new(0),
        rings: Mutex::new(cfg.rings),
        rings_version: AtomicU64::new(0),
        rx: Mutex::new(RxReport::default()),
        workers: (0..workers)
            .map(|w| Arc::new(Mutex::new(WorkerReport::new(w))))
            .collect(),
        started: Instant::now(),
        stop,
        worker_count: workers,
    }))
}

/// Run the dataplane until `shared.stop` is set (or the port ends, or `opts.duration`).
pub fn run(cfg: &Config, shared: &Arc<Shared>, opts: &RunOptions) -> Result<RxReport> {
    let Some(PortConfig::Pcap { path, r#loop, pps }) = cfg.port.clone() else {
        bail!("`weir-dp run` needs a [port] section (kind = \"pcap\")");
    };
    let mut port = PcapPort::open(&path, r#loop, pps)?;
    let policy = shared
        .policy
        .lock()
        .map_err(|_| anyhow::anyhow!("policy lock poisoned"))?
        .clone();
    let mut clf = Classifier::new(
        (*policy).clone(),
        Limits::from_config(cfg),
        Vantage::Replay,
        seed(),
    );
    let mut rings_now = cfg.rings;
    let (mut rxs, mut wks) = pipeline::build(&rings_now, 1, shared.worker_count, Overflow::Drop);
    let base = Instant::now();
    pipeline::enable_latency(&mut rxs, &mut wks, base);
    let mut rx = rxs.pop().context("no rx queues")?;
    let handles: Vec<_> = wks
        .into_iter()
        .zip(&shared.workers)
        .map(|(mut w, slot)| {
            w.publish_to(Arc::clone(slot));
            std::thread::Builder::new()
                .name(format!("weir-worker-{}", w.index()))
                .spawn(move || w.run())
        })
        .collect::<std::io::Result<_>>()
        .context("cannot start worker threads")?;

    let unix_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let clock = Instant::now();
    let now_ns =
        || unix_start.saturating_add(u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX));
    let mut policy_seen = u64::MAX;
    let mut rings_seen = 0;
    let mut last_publish = Instant::now();
    let mut last_walk = Instant::now();
    let mut last_top = Instant::now();
    let mut report = RxReport::default();
    let mut sent: u64 = 0;
    let mut ended = false;
    while !shared.stop.load(Ordering::Relaxed) && !ended {
        if opts.duration.is_some_and(|d| clock.elapsed() >= d) {
            break;
        }
        // Policy and rings: one atomic load each per burst.
        let v = shared.policy_version.load(Ordering::Acquire);
        if v != policy_seen {
            if let Ok(p) = shared.policy.lock() {
                clf.set_policy(Arc::clone(&p));
            }
            policy_seen = v;
        }
        let rv = shared.rings_version.load(Ordering::Acquire);
        if rv != rings_seen {
            rings_seen = rv;
            if let Ok(r) = shared.rings.lock() {
                let new = *r;
                for class in Class::QUEUED {
                    if let (Some(a), Some(b)) = (rings_now.of(class), new.of(class)) {
                        if a.size != b.size {
                            rx.resize(class, b.size as usize);
                        }
                    }
                }
                rx.set_weights(Class::QUEUED.map(|c| new.of(c).map_or(1, |r| r.weight as usize)));
                rings_now = new;
            }
        }
        let now = now_ns();
        for _ in 0..BURST {
            let Some(frame) = port.next_frame() else {
                ended = true;
                break;
            };
            sent += 1;
            if let Disposition::Classified { verdict, worker } = clf.classify(frame, now) {
                let class = verdict.class();
                if class != Class::Reject {
                    rx.enqueue(worker, class, frame);
                }
            }
        }
        // Pace (pps > 0): the frames sent so far are due at sent / pps seconds.
        if let Some(due_ns) = sent.saturating_mul(1_000_000_000).checked_div(port.pps) {
            if let Some(wait) = Duration::from_nanos(due_ns).checked_sub(clock.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            }
        }
        if last_walk.elapsed() >= Duration::from_secs(2) {
            let (h, e) = clf.flows().occupancy(now);
            report.half_open = h as u64;
            report.established = e as u64;
            last_walk = Instant::now();
        }
        if last_top.elapsed() >= Duration::from_secs(1) {
            report.top_sources = clf.top_sources(16);
            last_top = Instant::now();
        }
        if last_publish.elapsed() >= Duration::from_millis(100) {
            fill_report(&mut report, &clf, &rx);
            if let Ok(mut g) = shared.rx.try_lock() {
                g.clone_from(&report);
            }
            last_publish = Instant::now();
        }
    }
    rx.finish();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    }
    let (h, e) = clf.flows().occupancy(now_ns());
    report.half_open = h as u64;
    report.established = e as u64;
    fill_report(&mut report, &clf, &rx);
    if let Ok(mut g) = shared.rx.lock() {
        g.clone_from(&report);
    }
    Ok(report)
}

fn fill_report(r: &mut RxReport, clf: &Classifier, rx: &pipeline::RxQueues) {
    r.counters = *clf.counters();
    r.flow = clf.flow_counters();
    r.rate = clf.rate_counters();
    r.ring_full = rx.ring_full;
    r.oversize = rx.oversize;
    r.rings.clear();
    for w in 0..rx.workers() {
        let w = u16::try_from(w).unwrap_or(u16::MAX);
        for class in Class::QUEUED {
            if let (Some(size), Some(len)) = (rx.ring_size(class), rx.occupancy(w, class)) {
                r.rings.push((w, class.index(), size, len));
            }
        }
    }
    r.slice_packets.clear();
    r.slice_packets.extend_from_slice(clf.slice_packets());
    r.policy_version = clf.policy().version;
}

/// A per-process seed for the table hashes: live ports face the network, so the slot
/// layout should not be predictable from outside.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x7765_6972);
    h.finish()
}
