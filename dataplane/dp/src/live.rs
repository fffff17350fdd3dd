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
//! Ports: a capture replayed as a live source (`[port] kind = "pcap"`, here): its frames
//! in order, optionally looped and paced, on the dataplane's own clock (wall time at start
//! plus a monotonic clock), so rate buckets and expiry run in real time; and DPDK ports
//! (`kind = "dpdk"`, `dpdk_port`), with one rx core per rx queue. Every rx core keeps its
//! own [`RxCore`] (classifier, flow table, rate meter, rings) and publishes its own report;
//! RSS sends a client's packets to one rx core, so per-core flow tables see whole flows.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::capture::Capture;
use crate::classify::{Classifier, Counters, Limits, Policy, Vantage};
use crate::flow::FlowCounters;
use crate::pipeline::{
    self, Backing, Overflow, RxQueues, TxReceiver, WorkerQueues, WorkerReport, WorkerStats,
};
use crate::pool::Pool;
use crate::rate::RateCounters;
use crate::serve::{Serve, Wake};
use weir_model::config::{Config, PortConfig, RingsConfig};
use weir_model::verdict::{Class, Disposition};

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
    /// (rx core, worker, class index, size, occupancy) of every ring.
    pub rings: Vec<(u16, u16, usize, usize, usize)>,
    /// Packets per slice.
    pub slice_packets: Vec<u64>,
    /// New flows per worker (by slice owner).
    pub new_flows: Vec<u64>,
    /// Top source prefixes of the last interval: (prefix, len, admitted, limited).
    pub top_sources: Vec<(u128, u8, u32, u32)>,
    /// Live half-open flows (last walk).
    pub half_open: u64,
    /// Live established flows (last walk).
    pub established: u64,
    /// Policy version in force on the rx core.
    pub policy_version: u64,
    /// DPDK ports, at exit: (mempool capacity, mbufs back in it). Equal = nothing leaked.
    pub mempool: Option<(u32, u32)>,
    /// Drops before weir saw the frame, as the ports count them (DPDK ports).
    pub port: PortDrops,
    /// Host path and the terminators' way out (software ports).
    pub tx: TxCounts,
}

/// Frames a port dropped before an rx core saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortDrops {
    /// The NIC's rx ring was full (the rx core fell behind).
    pub imissed: u64,
    /// Bad frames the NIC dropped.
    pub ierrors: u64,
    /// No mbuf to receive into.
    pub rx_nombuf: u64,
}

impl RxReport {
    /// Add another rx core's report: counts add up, the policy version is the oldest one
    /// still in force anywhere, and top sources are merged by prefix.
    pub fn merge(&mut self, o: &RxReport) {
        self.counters.add(&o.counters);
        self.flow.table_full += o.flow.table_full;
        self.flow.half_open_created += o.flow.half_open_created;
        self.flow.established += o.flow.established;
        self.flow.reset += o.flow.reset;
        self.rate.evicted += o.rate.evicted;
        for (a, b) in self.ring_full.iter_mut().zip(o.ring_full) {
            *a += b;
        }
        self.oversize += o.oversize;
        self.port.imissed += o.port.imissed;
        self.port.ierrors += o.port.ierrors;
        self.port.rx_nombuf += o.port.rx_nombuf;
        self.tx.host_answered += o.tx.host_answered;
        self.tx.host_ignored += o.tx.host_ignored;
        self.tx.sent += o.tx.sent;
        self.tx.send_failed += o.tx.send_failed;
        self.rings.extend_from_slice(&o.rings);
        if self.slice_packets.len() < o.slice_packets.len() {
            self.slice_packets.resize(o.slice_packets.len(), 0);
        }
        for (a, b) in self.slice_packets.iter_mut().zip(&o.slice_packets) {
            *a += b;
        }
        if self.new_flows.len() < o.new_flows.len() {
            self.new_flows.resize(o.new_flows.len(), 0);
        }
        for (a, b) in self.new_flows.iter_mut().zip(&o.new_flows) {
            *a += b;
        }
        for &(p, len, admitted, limited) in &o.top_sources {
            match self.top_sources.iter_mut().find(|t| t.0 == p && t.1 == len) {
                Some(t) => {
                    t.2 = t.2.saturating_add(admitted);
                    t.3 = t.3.saturating_add(limited);
                }
                None => self.top_sources.push((p, len, admitted, limited)),
            }
        }
        self.top_sources
            .sort_by_key(|t| std::cmp::Reverse(u64::from(t.2) + u64::from(t.3)));
        self.half_open += o.half_open;
        self.established += o.established;
        self.policy_version = self.policy_version.min(o.policy_version);
    }
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
}

impl Shared {
    /// Install a new policy; the rx core picks it up at its next burst.
    pub fn set_policy(&self, policy: Policy) {
        if let Some(w) = policy.spread_warning() {
            tracing::warn!(version = policy.version, "{w}");
        }
        if let Ok(mut g) = self.policy.lock() {
            *g = Arc::new(policy);
        }
        self.policy_version.fetch_add(1, Ordering::Release);
    }

    /// The policy in force and its version (a worker that follows policy changes).
    pub fn policy_now(&self) -> Option<(u64, Arc<Policy>)> {
        let v = self.policy_version.load(Ordering::Acquire);
        self.policy.lock().ok().map(|p| (v, Arc::clone(&p)))
    }

    /// The service prefixes of the policy in force.
    pub fn prefixes(&self) -> Result<weir_ssa::ServicePrefixes> {
        Ok(self
            .policy
            .lock()
            .map_err(|_| anyhow::anyhow!("policy lock poisoned"))?
            .prefixes
            .clone())
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
    if let Some(w) = policy.spread_warning() {
        tracing::warn!("{w}");
    }
    let workers = cfg.dataplane.workers;
    Ok(Arc::new(Shared {
        policy: Mutex::new(Arc::new(policy)),
        policy_version: AtomicU64::new(0),
        rings: Mutex::new(cfg.rings),
        rings_version: AtomicU64::new(0),
        rx: (0..cfg.port.as_ref().map_or(1, PortConfig::rx_cores))
            .map(|_| Mutex::new(RxReport::default()))
            .collect(),
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
    match cfg.port.clone() {
        Some(PortConfig::Pcap { path, r#loop, pps }) => {
            run_pcap(cfg, shared, opts, PcapPort::open(&path, r#loop, pps)?)
        }
        Some(PortConfig::Tap { name, mac }) => {
            let mac = match mac {
                Some(m) => weir_model::config::parse_mac(&m).map_err(|e| anyhow::anyhow!("[port] mac: {e}"))?,
                None => DEFAULT_MAC,
            };
            run_tap(cfg, shared, opts, &name, mac)
        }
        #[cfg(feature = "dpdk")]
        Some(PortConfig::Dpdk(d)) => crate::dpdk_port::run(cfg, &d, shared, opts),
        #[cfg(not(feature = "dpdk"))]
        Some(PortConfig::Dpdk(_)) => bail!(
            "[port] kind = \"dpdk\" needs a weir-dp built with DPDK: cargo build --release --features dpdk (DPDK 22.11: scripts/setup-dpdk.sh)"
        ),
        None => bail!("`weir-dp run` needs a [port] section"),
    }
}

fn run_pcap(
    cfg: &Config,
    shared: &Arc<Shared>,
    opts: &RunOptions,
    mut port: PcapPort,
) -> Result<RxReport> {
    let (mut rxs, wks) = pipeline::build(&cfg.rings, 1, shared.worker_count, Overflow::Drop);
    let rx = rxs.pop().context("no rx queues")?;
    let clock = Clock::new();
    // A capture holds the service's own packets too: they feed the tracker (`outbound`).
    let mut core = RxCore::new(0, cfg, shared, rx, clock.base, Vantage::Replay)?;
    let mut wks = wks;
    pipeline::enable_latency(&mut [], &mut wks, clock.base);
    let handles = pipeline::spawn_workers(wks, Some(&shared.workers))?;
    let mut sent: u64 = 0;
    let mut ended = false;
    while !shared.stop.load(Ordering::Relaxed) && !ended {
        if opts.duration.is_some_and(|d| clock.elapsed() >= d) {
            break;
        }
        core.sync(shared);
        let now = clock.now_ns();
        for _ in 0..BURST {
            let Some(frame) = port.next_frame() else {
                ended = true;
                break;
            };
            sent += 1;
            if let Disposition::Classified { verdict, worker } = core.clf.classify(frame, now) {
                let class = verdict.class();
                if class != Class::Reject {
                    core.rx.enqueue(worker, class, frame);
                }
            }
        }
        // Pace (pps > 0): the frames sent so far are due at sent / pps seconds.
        if let Some(due_ns) = sent.saturating_mul(1_000_000_000).checked_div(port.pps) {
            if let Some(wait) = Duration::from_nanos(due_ns).checked_sub(clock.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            }
        }
        core.housekeeping(shared, now);
    }
    core.rx.finish();
    pipeline::join_workers(handles)?;
    Ok(core.finish(shared, clock.now_ns()))
}

/// weir's link address when `[port] mac` is not given (locally administered).
pub const DEFAULT_MAC: [u8; 6] = [0x02, 0x77, 0x65, 0x69, 0x72, 0x01];

/// What the rx core did on the host path and the way out (software ports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCounts {
    /// NDP / ARP requests answered.
    pub host_answered: u64,
    /// Host-path frames not answered (not for us, DAD, invalid).
    pub host_ignored: u64,
    /// Frames sent from the terminators.
    pub sent: u64,
    /// Frames the port refused (queue full or error).
    pub send_failed: u64,
}

/// An rx core's ends of its workers' ways back, tagged with the worker.
pub type WaysBack = Vec<(u16, TxReceiver)>;

/// One terminator per worker, with a way back per (worker, rx core). Returns the
/// terminators and, per rx core, the rx ends of the ways back (tagged with their worker).
pub fn build_serves(
    cfg: &Config,
    shared: &Arc<Shared>,
    rx_cores: usize,
    our_mac: [u8; 6],
    idle_sleep: Duration,
    wake: Option<Arc<Wake>>,
) -> Result<(Vec<Serve>, Vec<WaysBack>)> {
    let prefixes: Vec<(u128, u8)> = shared
        .prefixes()?
        .prefixes()
        .iter()
        .map(|p| (p.addr, p.len))
        .collect();
    let mut serves = Vec::new();
    let mut receivers: Vec<WaysBack> = (0..rx_cores).map(|_| Vec::new()).collect();
    // One adapter per worker; `nats` shares one NATS client thread among them.
    let mut adapters = weir_terminator::adapter::build_all(
        &cfg.terminator.adapter,
        usize::from(shared.worker_count),
    )
    .context("[terminator.adapter]")?
    .into_iter();
    for w in 0..shared.worker_count {
        let adapter = adapters
            .next()
            .context("[terminator.adapter]: one adapter per worker")?;
        let term = weir_terminator::tcp::Terminator::new(&cfg.terminator, &prefixes, adapter);
        let mut senders = Vec::with_capacity(rx_cores);
        for r in &mut receivers {
            let (tx, rx) = pipeline::tx_path(4096);
            senders.push(tx);
            r.push((w, rx));
        }
        serves.push(
            Serve::new(term, senders, our_mac, idle_sleep, wake.clone())
                .following(Arc::clone(shared)),
        );
    }
    Ok((serves, receivers))
}

/// Start the workers for `wks` on threads: terminators when `[terminator] enabled`, else
/// counting workers. Returns their threads and the rx core's ends of their ways back.
fn start_workers<B: Backing>(
    cfg: &Config,
    shared: &Arc<Shared>,
    wks: Vec<WorkerQueues<B>>,
    our_mac: [u8; 6],
    idle_sleep: Duration,
    wake: Option<Arc<Wake>>,
) -> Result<(Vec<std::thread::JoinHandle<WorkerStats>>, WaysBack)> {
    if !cfg.terminator.enabled {
        return Ok((
            pipeline::spawn_workers(wks, Some(&shared.workers))?,
            Vec::new(),
        ));
    }
    let (serves, mut receivers) = build_serves(cfg, shared, 1, our_mac, idle_sleep, wake)?;
    let cpus = allowed_cpus();
    let mut handles = Vec::new();
    for (i, (mut w, serve)) in wks.into_iter().zip(serves).enumerate() {
        if let Some(slot) = shared.workers.get(i) {
            w.publish_to(Arc::clone(slot));
        }
        // Worker i on the CPU after the rx core's (the rx core keeps the first one).
        let cpu = (cfg.terminator.pin && cpus.len() > 1).then(|| cpus[(i + 1) % cpus.len()]);
        let h = std::thread::Builder::new()
            .name(format!("weir-term-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to(cpu);
                }
                serve.run(w)
            })
            .context("cannot start terminator threads")?;
        handles.push(h);
    }
    Ok((handles, receivers.pop().unwrap_or_default()))
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

/// Pin the calling thread to `cpu` (best effort: a failure is logged).
fn pin_to(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
            tracing::warn!(cpu, "cannot pin a terminator thread: {e}");
        }
    }
}

/// `weir-dp run` on a TAP device: the rx core reads frames from it, answers NDP/ARP for
/// weir's addresses, classifies and queues the rest, and writes what the terminators
/// send (after the flow tracker has seen it).
fn run_tap(
    cfg: &Config,
    shared: &Arc<Shared>,
    opts: &RunOptions,
    name: &str,
    mac: [u8; 6],
) -> Result<RxReport> {
    let tap = crate::tap::Tap::open(name).with_context(|| format!("[port] tap {name}"))?;
    tap.set_up().with_context(|| format!("[port] tap {name}"))?;
    let responder = crate::l2::HostResponder::new(mac);
    tracing::info!(tap = tap.name(), mac = ?mac, link_local = %std::net::Ipv6Addr::from(responder.link_local()), "tap port ready");
    let (mut rxs, mut wks) = pipeline::build(&cfg.rings, 1, shared.worker_count, Overflow::Drop);
    let rx = rxs.pop().context("no rx queues")?;
    let clock = Clock::new();
    // A network port: the service's packets reach the tracker only from the terminators
    // (the tx path); a frame arriving with a service source address is spoofed (martian).
    let mut core = RxCore::new(0, cfg, shared, rx, clock.base, Vantage::Port)?;
    pipeline::enable_latency(&mut [], &mut wks, clock.base);
    let wake = Arc::new(Wake::new().context("eventfd")?);
    let (handles, mut tx_paths) = start_workers(
        cfg,
        shared,
        wks,
        mac,
        Duration::from_micros(50),
        Some(Arc::clone(&wake)),
    )?;
    let mut frame = vec![0u8; 65_536];
    let mut reply = [0u8; 256];
    let mut counts = TxCounts::default();
    while !shared.stop.load(Ordering::Relaxed) {
        if opts.duration.is_some_and(|d| clock.elapsed() >= d) {
            break;
        }
        core.sync(shared);
        let now = clock.now_ns();
        let mut busy = false;
        for _ in 0..BURST {
            let n = match tap.recv(&mut frame) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("tap read: {e}");
                    break;
                }
            };
            busy = true;
            let f = &frame[..n];
            match core.clf.classify(f, now) {
                Disposition::Classified { verdict, worker } if verdict.class() != Class::Reject => {
                    core.rx.enqueue(worker, verdict.class(), f);
                }
                Disposition::Host => {
                    match responder.answer(f, &core.clf.policy().prefixes, &mut reply) {
                        Ok(len) => {
                            counts.host_answered += 1;
                            if !matches!(tap.send(&reply[..len]), Ok(true)) {
                                counts.send_failed += 1;
                            }
                        }
                        Err(_) => counts.host_ignored += 1,
                    }
                }
                _ => {}
            }
        }
        for (w, path) in &mut tx_paths {
            let worker = Some(*w);
            let clf = &mut core.clf;
            let moved = path.drain(256, |f| {
                clf.observe_tx(f, worker, now);
                match tap.send(f) {
                    Ok(true) => counts.sent += 1,
                    _ => counts.send_failed += 1,
                }
            });
            busy |= moved > 0;
        }
        core.set_tx_counts(counts);
        core.housekeeping(shared, now);
        if !busy {
            // Idle: sleep until the kernel has a frame or a worker has queued one (the
            // eventfd is a counter, so a wake-up written before this poll is not lost).
            wait_either(&tap, &wake, 10);
        }
    }
    core.rx.finish();
    pipeline::join_workers(handles)?;
    // Replies the terminators queued while stopping.
    for (_, path) in &mut tx_paths {
        path.drain(usize::MAX, |f| {
            let _ = tap.send(f);
        });
    }
    Ok(core.finish(shared, clock.now_ns()))
}

/// Sleep until `tap` is readable or `wake` fires, at most `ms` milliseconds.
fn wait_either(tap: &crate::tap::Tap, wake: &Wake, ms: u16) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [
        PollFd::new(tap.as_fd(), PollFlags::POLLIN),
        PollFd::new(wake.fd(), PollFlags::POLLIN),
    ];
    if let Ok(n) = poll(&mut fds, PollTimeout::from(ms)) {
        if n > 0
            && fds[1]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            wake.clear();
        }
    }
}

/// The dataplane's clock: wall time at start plus a monotonic clock, in ns since the Unix
/// epoch (what the classifier's rate buckets, blocks and expiry run on).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    unix_start: u64,
    /// The monotonic start (also the base of queueing-latency stamps).
    pub base: Instant,
}

impl Clock {
    /// Start now.
    pub fn new() -> Clock {
        Clock {
            unix_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            base: Instant::now(),
        }
    }

    /// Now, in ns since the epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.unix_start
            .saturating_add(u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Time since start.
    pub fn elapsed(&self) -> Duration {
        self.base.elapsed()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// One rx core: its classifier and queues, and the between-bursts work every port's loop
/// shares: taking up new policy and ring sizes, walking the flow table, publishing the
/// report.
#[derive(Debug)]
pub struct RxCore<B: Backing = Pool> {
    index: usize,
    /// The classifier (flow table, rate meter) of this core.
    pub clf: Classifier,
    /// Rings towards every worker.
    pub rx: RxQueues<B>,
    rings_now: RingsConfig,
    policy_seen: u64,
    rings_seen: u64,
    last_publish: Instant,
    last_walk: Instant,
    last_top: Instant,
    report: RxReport,
}

impl<B: Backing> RxCore<B> {
    /// Rx core `index` over `rx`, with the policy in force in `shared`; queued packets are
    /// stamped relative to `base` for the latency histograms. `vantage`: `Replay` for a
    /// capture (which holds the service's own packets), `Port` for a network port.
    pub fn new(
        index: usize,
        cfg: &Config,
        shared: &Shared,
        mut rx: RxQueues<B>,
        base: Instant,
        vantage: Vantage,
    ) -> Result<RxCore<B>> {
        let policy = shared
            .policy
            .lock()
            .map_err(|_| anyhow::anyhow!("policy lock poisoned"))?
            .clone();
        let clf = Classifier::new((*policy).clone(), Limits::from_config(cfg), vantage, seed());
        pipeline::enable_latency(std::slice::from_mut(&mut rx), &mut [], base);
        let now = Instant::now();
        Ok(RxCore {
            index,
            clf,
            rx,
            rings_now: cfg.rings,
            policy_seen: u64::MAX,
            rings_seen: 0,
            last_publish: now,
            last_walk: now,
            last_top: now,
            report: RxReport::default(),
        })
    }

    /// Before a burst: take up a new policy or new ring sizes (one atomic load each when
    /// nothing changed).
    #[inline]
    pub fn sync(&mut self, shared: &Shared) {
        let v = shared.policy_version.load(Ordering::Acquire);
        if v != self.policy_seen {
            if let Ok(p) = shared.policy.lock() {
                self.clf.set_policy(Arc::clone(&p));
            }
            self.policy_seen = v;
        }
        let rv = shared.rings_version.load(Ordering::Acquire);
        if rv != self.rings_seen {
            self.rings_seen = rv;
            if let Ok(r) = shared.rings.lock() {
                let new = *r;
                for class in Class::QUEUED {
                    if let (Some(a), Some(b)) = (self.rings_now.of(class), new.of(class)) {
                        if a.size != b.size {
                            self.rx.resize(class, b.size as usize);
                        }
                    }
                }
                self.rx
                    .set_weights(Class::QUEUED.map(|c| new.of(c).map_or(1, |r| r.weight as usize)));
                self.rings_now = new;
            }
        }
    }

    /// After a burst: flow-table walk every 2 s, top sources every 1 s, publish every
    /// 100 ms (never waiting for the lock).
    #[inline]
    pub fn housekeeping(&mut self, shared: &Shared, now_ns: u64) {
        if self.last_walk.elapsed() >= Duration::from_secs(2) {
            let (h, e) = self.clf.flows().occupancy(now_ns);
            self.report.half_open = h as u64;
            self.report.established = e as u64;
            self.last_walk = Instant::now();
        }
        if self.last_top.elapsed() >= Duration::from_secs(1) {
            self.report.top_sources = self.clf.top_sources(16);
            self.last_top = Instant::now();
        }
        if self.last_publish.elapsed() >= Duration::from_millis(100) {
            self.fill_report();
            if let Some(Ok(mut g)) = shared.rx.get(self.index).map(Mutex::try_lock) {
                g.clone_from(&self.report);
            }
            self.last_publish = Instant::now();
        }
    }

    /// Set the host-path and tx counters.
    pub fn set_tx_counts(&mut self, counts: TxCounts) {
        self.report.tx = counts;
    }

    /// Set the ports' drop counters (reported by one rx core for all ports).
    pub fn set_port_drops(&mut self, drops: PortDrops) {
        self.report.port = drops;
    }

    /// At the end (after the workers stopped): the final report, published.
    pub fn finish(mut self, shared: &Shared, now_ns: u64) -> RxReport {
        let (h, e) = self.clf.flows().occupancy(now_ns);
        self.report.half_open = h as u64;
        self.report.established = e as u64;
        self.fill_report();
        if let Some(Ok(mut g)) = shared.rx.get(self.index).map(Mutex::lock) {
            g.clone_from(&self.report);
        }
        self.report
    }

    fn fill_report(&mut self) {
        let r = &mut self.report;
        let (clf, rx) = (&self.clf, &self.rx);
        r.counters = *clf.counters();
        r.flow = clf.flow_counters();
        r.rate = clf.rate_counters();
        r.ring_full = rx.ring_full;
        r.oversize = rx.oversize;
        r.rings.clear();
        let me = u16::try_from(self.index).unwrap_or(u16::MAX);
        for w in 0..rx.workers() {
            let w = u16::try_from(w).unwrap_or(u16::MAX);
            for class in Class::QUEUED {
                if let (Some(size), Some(len)) = (rx.ring_size(class), rx.occupancy(w, class)) {
                    r.rings.push((me, w, class.index(), size, len));
                }
            }
        }
        r.slice_packets.clear();
        r.slice_packets.extend_from_slice(clf.slice_packets());
        r.new_flows.clear();
        r.new_flows.extend_from_slice(clf.new_flows());
        r.policy_version = clf.policy().version;
    }
}

/// A per-process seed for the table hashes: live ports face the network, so the slot
/// layout should not be predictable from outside.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x7765_6972);
    h.finish()
}
