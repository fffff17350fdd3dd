//! The rx core: the one loop every port runs — `weir-dp replay` (software and `--dpdk`),
//! `weir-dp run` on a capture, a TAP device or DPDK queues, and `weir-bench`.
//!
//! ```text
//!  loop (one burst per round):
//!    sync        one atomic load each: a new policy? new ring sizes/weights?
//!    rx burst    port → for each frame: classify → tee → queue to (worker, class)
//!                                                     | host path (NDP/ARP answer, sent below)
//!                                                     | counted drop (reject, outbound)
//!    tx          host answers; frames the terminators queued (the flow tracker sees each
//!                one first: their SYN-ACKs make clients known-good) → port
//!    housekeeping  every 16 bursts (or when idle): flow-table walk (2 s), top sources
//!                (1 s), publish the report (100 ms), port drop counters (1 s)
//!    idle        nothing in or out: the port may sleep until woken (TAP)
//! ```
//! What differs between ports is a parameter, not a second loop: the clock (a frame's
//! capture time, or the dataplane's clock read once per burst), what a full ring does
//! ([`Overflow`](crate::pipeline::Overflow): replay waits, live ports drop and count), the
//! vantage (replay treats service-sourced frames as the service's own side, live ports as
//! spoofed), whether host frames are answered, and the tee.
//!
//! Per frame ([`RxCore::receive`]): one classification, at most one copy (software ports,
//! queued frames only), no allocation, no lock. Everything else is per burst or rarer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_model::config::RingsConfig;
use weir_model::{Class, Disposition};

use crate::classify::{Classifier, Counters, Limits, Vantage};
use crate::flow::FlowCounters;
use crate::host::{HostResponder, MAX_REPLY_LEN};
use crate::pipeline::{self, Backing, ReplyEnds, RxQueues};
use crate::pool::Pool;
use crate::port::{Port, PortDrops, PortError, Received, RxStatus, BURST};
use crate::rate::{RateCounters, SourceActivity};
use crate::state::DataplaneState;
use crate::terminators::Wake;

/// What an rx core publishes for the control thread.
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
    /// Frames longer than a buffer (queued cut at the buffer size).
    pub oversize: u64,
    /// Every ring of this core.
    pub rings: Vec<RingReport>,
    /// Packets per slice.
    pub slice_packets: Vec<u64>,
    /// New flows per worker (by slice owner).
    pub new_flows: Vec<u64>,
    /// Top source prefixes of the last interval.
    pub top_sources: Vec<SourceActivity>,
    /// Live half-open flows (last walk).
    pub half_open: u64,
    /// Live established flows (last walk).
    pub established: u64,
    /// Policy version in force on the rx core.
    pub policy_version: u64,
    /// DPDK ports, at exit: (mempool capacity, mbufs back in it). Equal = nothing leaked.
    pub mempool: Option<(u32, u32)>,
    /// Drops before weir saw the frame, as the ports count them.
    pub port: PortDrops,
    /// The host path and the way out.
    pub tx: TxCounts,
}

/// One ring's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingReport {
    /// The rx core that fills it.
    pub rx: u16,
    /// The worker that drains it.
    pub worker: u16,
    /// Its class.
    pub class: Class,
    /// Slots.
    pub size: usize,
    /// Packets queued now.
    pub occupancy: usize,
}

/// What an rx core did on the host path and the way out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCounts {
    /// NDP / ARP requests answered.
    pub host_answered: u64,
    /// Host-path frames not answered (not for us, DAD, invalid).
    pub host_ignored: u64,
    /// Frames sent (answers and the terminators' frames).
    pub sent: u64,
    /// Frames the port refused (queue full or error).
    pub send_failed: u64,
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
        self.port.add(&o.port);
        self.tx.host_answered += o.tx.host_answered;
        self.tx.host_ignored += o.tx.host_ignored;
        self.tx.sent += o.tx.sent;
        self.tx.send_failed += o.tx.send_failed;
        self.rings.extend_from_slice(&o.rings);
        add_into(&mut self.slice_packets, &o.slice_packets);
        add_into(&mut self.new_flows, &o.new_flows);
        for s in &o.top_sources {
            match self
                .top_sources
                .iter_mut()
                .find(|t| t.prefix == s.prefix && t.len == s.len)
            {
                Some(t) => {
                    t.admitted = t.admitted.saturating_add(s.admitted);
                    t.limited = t.limited.saturating_add(s.limited);
                }
                None => self.top_sources.push(*s),
            }
        }
        self.top_sources
            .sort_by_key(|t| std::cmp::Reverse(u64::from(t.admitted) + u64::from(t.limited)));
        self.half_open += o.half_open;
        self.established += o.established;
        self.policy_version = self.policy_version.min(o.policy_version);
    }
}

/// `a[i] += b[i]`, growing `a` to `b`'s length.
fn add_into(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
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

/// Something that sees every received frame with its decision: `replay --out-dir`'s
/// per-class captures, a live sampled tee. Called on the rx core, after classification.
pub trait Tee: Send + std::fmt::Debug {
    /// One frame, its disposition and its time (capture time in replay).
    fn frame(&mut self, d: Disposition, bytes: &[u8], time_ns: u64, wire_len: u32);
    /// The loop has ended: write out what is buffered.
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// NDP/ARP answers made during a burst, sent after it (the port is lending the burst's
/// frames while they are made). Fixed size: one answer per received frame at most.
struct HostReplies {
    buf: Box<[[u8; MAX_REPLY_LEN]; BURST]>,
    lens: [usize; BURST],
    n: usize,
}

impl std::fmt::Debug for HostReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostReplies").field("n", &self.n).finish()
    }
}

/// How an rx core is set up; the defaults are a live port's.
#[derive(Debug)]
pub struct RxSetup {
    /// This core's index (its slot in [`DataplaneState::rx`]).
    pub index: usize,
    /// `Replay` for a capture (which holds the service's own packets), `Port` for a
    /// network port.
    pub vantage: Vantage,
    /// Seed of the flow table's and rate meter's hashes.
    pub seed: u64,
    /// Answer NDP/ARP for the service's addresses with this responder (network ports).
    pub responder: Option<HostResponder>,
    /// The terminators' frames to send through this core, per worker.
    pub replies: ReplyEnds,
    /// Sees every frame and its decision.
    pub tee: Option<Box<dyn Tee>>,
    /// Stamp queued packets relative to this instant (queueing-latency histograms).
    pub stamp_base: Option<Instant>,
}

impl RxSetup {
    /// A live port's rx core `index`: port vantage, a per-process random seed.
    pub fn live(index: usize) -> RxSetup {
        RxSetup {
            index,
            vantage: Vantage::Port,
            seed: process_seed(),
            responder: None,
            replies: Vec::new(),
            tee: None,
            stamp_base: None,
        }
    }
}

/// How long a loop runs.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// The dataplane's clock (for ports without capture times, and for `duration`).
    pub clock: Clock,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// One rx core: its classifier and queues, its host path and way out, and the
/// between-bursts work every port's loop shares.
#[derive(Debug)]
pub struct RxCore<B: Backing = Pool> {
    index: usize,
    /// The classifier (flow table, rate meter) of this core.
    pub clf: Classifier,
    /// Rings towards every worker.
    pub rx: RxQueues<B>,
    responder: Option<HostResponder>,
    host_replies: HostReplies,
    replies: ReplyEnds,
    tee: Option<Box<dyn Tee>>,
    tx: TxCounts,
    rings_now: RingsConfig,
    policy_seen: u64,
    rings_seen: u64,
    bursts: u32,
    last_ns: u64,
    last_publish: Instant,
    walk: crate::flow::OccupancyWalk,
    last_top: Instant,
    last_port_read: Instant,
    report: RxReport,
}

impl<B: Backing> RxCore<B> {
    /// An rx core over `rx`, with the policy in force in `state`.
    pub fn new(
        cfg: &weir_model::config::Config,
        state: &DataplaneState,
        mut rx: RxQueues<B>,
        setup: RxSetup,
    ) -> RxCore<B> {
        let policy = state
            .policy
            .lock()
            .map(|p| (**p).clone())
            .unwrap_or_else(|p| (**p.into_inner()).clone());
        let clf = Classifier::new(policy, Limits::from_config(cfg), setup.vantage, setup.seed);
        if let Some(base) = setup.stamp_base {
            pipeline::enable_latency(std::slice::from_mut(&mut rx), &mut [], base);
        }
        let now = Instant::now();
        RxCore {
            index: setup.index,
            clf,
            rx,
            responder: setup.responder,
            host_replies: HostReplies {
                buf: Box::new([[0; MAX_REPLY_LEN]; BURST]),
                lens: [0; BURST],
                n: 0,
            },
            replies: setup.replies,
            tee: setup.tee,
            tx: TxCounts::default(),
            rings_now: cfg.rings,
            policy_seen: state.policy_version.load(Ordering::Acquire),
            rings_seen: 0,
            bursts: 0,
            last_ns: 0,
            last_publish: now,
            walk: crate::flow::OccupancyWalk::default(),
            last_top: now,
            last_port_read: now,
            report: RxReport::default(),
        }
    }

    /// One received frame at `now_ns`: classify it, show it to the tee, then queue it to
    /// its worker, answer it (host path, sent after the burst), or let it go (its verdict
    /// is counted; a DPDK mbuf is freed when dropped here).
    #[inline(always)]
    pub fn receive<F: Received<B>>(&mut self, frame: F, now_ns: u64) -> Disposition {
        if let Some(next) = frame.lookahead() {
            self.clf.prefetch(next);
        }
        let d = match frame.network() {
            None => self.clf.classify(frame.bytes(), now_ns),
            Some((ethertype, at)) => self.clf.classify_network(
                ethertype,
                frame.bytes().get(at..).unwrap_or_default(),
                now_ns,
            ),
        };
        if let Some(tee) = self.tee.as_deref_mut() {
            tee.frame(d, frame.bytes(), now_ns, frame.wire_len());
        }
        match d {
            Disposition::Classified { verdict, worker } => {
                let class = verdict.class();
                if class != Class::Reject {
                    frame.queue(&mut self.rx, worker, class);
                }
            }
            Disposition::Host => self.answer_host(frame.bytes()),
            Disposition::Outbound => {}
        }
        d
    }

    /// NDP/ARP: answer for the service's addresses under the policy in force.
    #[inline]
    fn answer_host(&mut self, frame: &[u8]) {
        let Some(responder) = &self.responder else {
            return;
        };
        let r = &mut self.host_replies;
        let Some(slot) = r.buf.get_mut(r.n) else {
            self.tx.host_ignored += 1;
            return;
        };
        match responder.answer(frame, &self.clf.policy().prefixes, slot) {
            Ok(len) => {
                self.tx.host_answered += 1;
                r.lens[r.n] = len;
                r.n += 1;
            }
            Err(_) => self.tx.host_ignored += 1,
        }
    }

    /// Run on `port` until `state.stop` is set, the port ends, or `limits.duration` has
    /// passed. A capture error ends the loop with that error (what was read is counted).
    pub fn run<P: Port<Backing = B>>(
        &mut self,
        port: &mut P,
        state: &DataplaneState,
        limits: &RunLimits,
        wake: Option<&Wake>,
    ) -> Result<(), PortError> {
        let clock = limits.clock;
        loop {
            if state.stop.load(Ordering::Relaxed) {
                break;
            }
            self.sync(state);
            let burst_ns = if P::CAPTURE_CLOCK {
                self.last_ns
            } else {
                clock.now_ns()
            };
            let mut last = self.last_ns;
            self.rx.set_burst_stamp();
            let status = port.rx_burst(|frame| {
                let t = frame.capture_ns().unwrap_or(burst_ns);
                last = t;
                self.receive(frame, t);
            })?;
            self.last_ns = if P::CAPTURE_CLOCK { last } else { burst_ns };
            self.rx.wake_workers();
            let received = matches!(status, RxStatus::Frames(n) if n > 0);
            let sent = self.send_out(port);
            self.bursts = self.bursts.wrapping_add(1);
            let idle = !received && !sent;
            if idle || self.bursts.is_multiple_of(16) {
                if limits.duration.is_some_and(|d| clock.elapsed() >= d) {
                    break;
                }
                self.housekeeping(state, port);
            }
            if status == RxStatus::Ended {
                break;
            }
            if idle {
                port.idle(wake);
            }
        }
        Ok(())
    }

    /// Send the host answers of the last burst and what the terminators queued (the flow
    /// tracker sees those first); true when anything went out.
    fn send_out<P: Port<Backing = B>>(&mut self, port: &mut P) -> bool {
        let r = &mut self.host_replies;
        let mut moved = r.n;
        for (buf, &len) in r.buf.iter().zip(&r.lens).take(r.n) {
            port.send(&buf[..len]);
        }
        r.n = 0;
        let now = self.last_ns;
        let clf = &mut self.clf;
        for (w, path) in &mut self.replies {
            let worker = Some(*w);
            moved += path.drain(BURST, |f| {
                clf.observe_tx(f, worker, now);
                port.send(f);
            });
        }
        port.flush();
        moved > 0
    }

    /// After the workers stopped: send what the terminators queued while stopping.
    pub fn send_remaining<P: Port<Backing = B>>(&mut self, port: &mut P) {
        while self.send_out(port) {}
    }

    /// Before a burst: take up a new policy or new ring sizes (one atomic load each when
    /// nothing changed).
    #[inline]
    pub fn sync(&mut self, state: &DataplaneState) {
        let v = state.policy_version.load(Ordering::Acquire);
        if v != self.policy_seen {
            if let Ok(p) = state.policy.lock() {
                self.clf.set_policy(Arc::clone(&p));
            }
            self.policy_seen = v;
        }
        let rv = state.rings_version.load(Ordering::Acquire);
        if rv != self.rings_seen {
            self.rings_seen = rv;
            if let Ok(r) = state.rings.lock() {
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

    /// A slice of the flow-table walk, top sources every 1 s, port drops every 1 s,
    /// publish every 100 ms (never waiting for the lock).
    fn housekeeping<P: Port<Backing = B>>(&mut self, state: &DataplaneState, port: &P) {
        if !P::CAPTURE_CLOCK && self.walk.step(self.clf.flows(), self.last_ns) {
            self.report.half_open = self.walk.last.0 as u64;
            self.report.established = self.walk.last.1 as u64;
        }
        if self.last_top.elapsed() >= Duration::from_secs(1) {
            self.report.top_sources = self.clf.top_sources(16);
            self.last_top = Instant::now();
        }
        if self.last_port_read.elapsed() >= Duration::from_secs(1) {
            if let Some(d) = port.drops() {
                self.report.port = d;
            }
            self.last_port_read = Instant::now();
        }
        if self.last_publish.elapsed() >= Duration::from_millis(100) {
            let sent = port.sent();
            self.tx.sent = sent.sent;
            self.tx.send_failed = sent.failed;
            self.fill_report();
            if let Some(Ok(mut g)) = state.rx.get(self.index).map(Mutex::try_lock) {
                g.clone_from(&self.report);
            }
            self.last_publish = Instant::now();
        }
    }

    /// At the end (after the workers stopped): the final report, published.
    pub fn finish<P: Port<Backing = B>>(&mut self, state: &DataplaneState, port: &P) -> RxReport {
        let (h, e) = self.clf.flows().occupancy(self.last_ns);
        self.report.half_open = h as u64;
        self.report.established = e as u64;
        if let Some(d) = port.drops() {
            self.report.port = d;
        }
        let sent = port.sent();
        self.tx.sent = sent.sent;
        self.tx.send_failed = sent.failed;
        self.fill_report();
        if let Some(Ok(mut g)) = state.rx.get(self.index).map(Mutex::lock) {
            g.clone_from(&self.report);
        }
        self.report.clone()
    }

    /// The tee, taken back (replay's per-class captures are finished after the run).
    pub fn take_tee(&mut self) -> Option<Box<dyn Tee>> {
        self.tee.take()
    }

    fn fill_report(&mut self) {
        let r = &mut self.report;
        let (clf, rx) = (&self.clf, &self.rx);
        r.counters = *clf.counters();
        r.flow = clf.flow_counters();
        r.rate = clf.rate_counters();
        r.ring_full = rx.ring_full;
        r.oversize = rx.oversize;
        r.tx = self.tx;
        r.rings.clear();
        let me = u16::try_from(self.index).unwrap_or(u16::MAX);
        for w in 0..rx.workers() {
            let w = u16::try_from(w).unwrap_or(u16::MAX);
            for class in Class::QUEUED {
                if let (Some(size), Some(occupancy)) = (rx.ring_size(class), rx.occupancy(w, class))
                {
                    r.rings.push(RingReport {
                        rx: me,
                        worker: w,
                        class,
                        size,
                        occupancy,
                    });
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
pub fn process_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x7765_6972);
    h.finish()
}
