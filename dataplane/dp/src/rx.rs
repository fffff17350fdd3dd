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

use crate::classify::{Classifier, Counters, Limits, Policy, Vantage};
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
    /// Handover forwarding and decapsulation.
    pub handover: HandoverCounts,
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
        self.handover.forwarded += o.handover.forwarded;
        self.handover.too_big += o.handover.too_big;
        self.handover.dropped += o.handover.dropped;
        self.handover.decapsulated += o.handover.decapsulated;
        for (a, b) in self.handover.refused.iter_mut().zip(o.handover.refused) {
            *a += b;
        }
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

/// A received frame and its decision, as a [`Tee`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct TeeFrame<'a> {
    /// What the classifier decided.
    pub disposition: Disposition,
    /// The frame's bytes as received (as captured, in replay), link header included.
    pub bytes: &'a [u8],
    /// Its link type (a capture's; Ethernet on a port).
    pub link: crate::capture::Link,
    /// For a frame without an Ethernet header: its EtherType and where the packet starts.
    pub network: Option<(u16, usize)>,
    /// Its time (the burst's on a live port, the capture's in replay), unix ns.
    pub time_ns: u64,
    /// Its length on the wire (beyond `bytes.len()` when a capture cut it short).
    pub wire_len: u32,
    /// The port's device it came in on ([`Received::device`]).
    pub device: u8,
    /// The policy it was classified under.
    pub policy: &'a Policy,
}

/// Something that sees every received frame with its decision: `replay --out-dir`'s
/// per-class captures, `--verdicts` and `--expect`. Called on the rx core, after
/// classification; it must not block.
pub trait Tee: Send + std::fmt::Debug {
    /// One frame and its decision.
    fn frame(&mut self, f: &TeeFrame<'_>);
    /// The loop has ended: write out what is buffered.
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Several tees, each shown every frame in turn.
impl Tee for Vec<Box<dyn Tee>> {
    fn frame(&mut self, f: &TeeFrame<'_>) {
        for t in self.iter_mut() {
            t.frame(f);
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        // Every tee is finished, the first error reported.
        let mut first = Ok(());
        for t in self.iter_mut() {
            let r = t.finish();
            if first.is_ok() {
                first = r;
            }
        }
        first
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

/// The largest IPv6 packet a forwarded (encapsulated) frame may be: the link MTU of the
/// hosts' uplinks. A client segment within 40 bytes of it does not fit with the outer
/// header and is dropped and counted (`handover-too-big`); the terminators' MSS leaves
/// room for it (see README, "Running a cluster").
pub const FORWARD_MTU: u16 = 1500;

/// Frames forwarded to a predecessor during a burst, sent after it (fixed size).
struct Forwards {
    buf: Box<[[u8; FORWARD_MTU as usize + 14]; BURST]>,
    lens: [usize; BURST],
    n: usize,
}

impl std::fmt::Debug for Forwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwards").field("n", &self.n).finish()
    }
}

/// What an rx core did for handovers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandoverCounts {
    /// Frames sent to a predecessor.
    pub forwarded: u64,
    /// Frames too big for the MTU once encapsulated.
    pub too_big: u64,
    /// Frames that could not be forwarded (no port address, no room).
    pub dropped: u64,
    /// Frames decapsulated and classified by their inner packet.
    pub decapsulated: u64,
    /// Tunnel frames refused, by `handover::Refusal` in its `ALL` order.
    pub refused: [u64; 4],
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
    forwards: Forwards,
    handover: HandoverCounts,
    tee: Option<Box<dyn Tee>>,
    tx: TxCounts,
    rings_now: RingsConfig,
    policy_seen: u64,
    rings_seen: u64,
    tee_seen: u64,
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
            forwards: Forwards {
                buf: vec![[0; FORWARD_MTU as usize + 14]; BURST]
                    .into_boxed_slice()
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("BURST slots")),
                lens: [0; BURST],
                n: 0,
            },
            handover: HandoverCounts::default(),
            tee: setup.tee,
            tx: TxCounts::default(),
            rings_now: cfg.rings,
            policy_seen: state.policy_version.load(Ordering::Acquire),
            rings_seen: 0,
            tee_seen: 0,
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
        let d = self
            .clf
            .classify_received(frame.bytes(), frame.wire_len(), frame.link(), now_ns);
        if let Some(tee) = self.tee.as_deref_mut() {
            tee.frame(&TeeFrame {
                disposition: d,
                bytes: frame.bytes(),
                link: frame.link(),
                network: frame.network(),
                time_ns: now_ns,
                wire_len: frame.wire_len(),
                device: frame.device(),
                policy: self.clf.policy(),
            });
        }
        match d {
            Disposition::Classified { verdict, worker } => {
                let class = verdict.class();
                if class != Class::Reject {
                    match self.clf.take_inner() {
                        None => frame.queue(&mut self.rx, worker, class),
                        Some(inner) => frame.queue_inner(&mut self.rx, worker, class, inner),
                    };
                }
            }
            Disposition::Host => self.answer_host(frame.bytes()),
            Disposition::Outbound | Disposition::Truncated => {}
            Disposition::Forward { run } => self.forward(frame.bytes(), run),
        }
        d
    }

    /// Handover: send `frame`'s IPv6 packet to the predecessor of handover run `run`,
    /// IPv6-in-IPv6, back to the link address it came from (the router), after the burst.
    /// Too big for the MTU with the outer header, or no room: counted, dropped.
    #[cold]
    #[inline(never)]
    fn forward(&mut self, frame: &[u8], run: u16) {
        let (Some(c), Some(responder)) = (self.clf.policy().cluster.as_ref(), &self.responder)
        else {
            self.handover.dropped += 1;
            return;
        };
        let (Some(pred), Ok(l2)) = (c.run_predecessor(run), weir_wire::link_layer(frame)) else {
            self.handover.dropped += 1;
            return;
        };
        let f = &mut self.forwards;
        let Some(slot) = f.buf.get_mut(f.n) else {
            self.handover.dropped += 1;
            return;
        };
        let encap = crate::handover::Encap {
            src_mac: responder.mac(),
            dst_mac: l2.src,
            outer_src: c.handover_addr,
            outer_dst: pred,
            hop_limit: 64,
            mtu: FORWARD_MTU,
        };
        match crate::handover::encapsulate(&encap, l2.payload, &mut slot[..]) {
            Ok(len) => {
                f.lens[f.n] = len;
                f.n += 1;
                self.handover.forwarded += 1;
            }
            Err(crate::handover::EncapError::TooBig { .. }) => self.handover.too_big += 1,
            Err(_) => self.handover.dropped += 1,
        }
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
        let policy = self.clf.policy();
        let also = policy.cluster.as_ref().map(|c| c.handover_addr);
        match responder.answer_also(frame, &policy.prefixes, also, slot) {
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
            let status = port.rx_burst(
                #[inline(always)]
                |frame| {
                    let t = frame.capture_ns().unwrap_or(burst_ns);
                    last = t;
                    self.receive(frame, t);
                },
            )?;
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
        let f = &mut self.forwards;
        moved += f.n;
        for (buf, &len) in f.buf.iter().zip(&f.lens).take(f.n) {
            port.send(&buf[..len]);
        }
        f.n = 0;
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

    /// Before a burst: take up a new policy, a new tee, or new ring sizes (one atomic load
    /// each when nothing changed; the changes themselves are out of line).
    #[inline(always)]
    pub fn sync(&mut self, state: &DataplaneState) {
        let v = state.policy_version.load(Ordering::Acquire);
        if v != self.policy_seen {
            self.sync_policy(state, v);
        }
        if state.tee.version() != self.tee_seen {
            self.sync_tee(state);
        }
        let rv = state.rings_version.load(Ordering::Acquire);
        if rv != self.rings_seen {
            self.sync_rings(state, rv);
        }
    }

    #[cold]
    #[inline(never)]
    fn sync_policy(&mut self, state: &DataplaneState, v: u64) {
        if let Ok(p) = state.policy.lock() {
            self.clf.set_policy(Arc::clone(&p));
        }
        self.policy_seen = v;
    }

    #[cold]
    #[inline(never)]
    fn sync_rings(&mut self, state: &DataplaneState, rv: u64) {
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

    /// A live tee was started or stopped: swap ours for the pending one (the old one goes
    /// back to the control thread, which frees it).
    #[cold]
    #[inline(never)]
    fn sync_tee(&mut self, state: &DataplaneState) {
        if let Some(v) = state.tee.pick_up(self.index, &mut self.tee) {
            self.tee_seen = v;
        }
    }

    /// A slice of the flow-table walk, top sources every 1 s, port drops every 1 s,
    /// publish every 100 ms (never waiting for the lock).
    fn housekeeping<P: Port<Backing = B>>(&mut self, state: &DataplaneState, port: &P) {
        // A capture replay has no live reader (no control socket): its report is made once,
        // by `finish`. (Each interim report copies the per-slice counters, 128 KiB at the
        // default 16384 slices, twice: in instruction counts that made replay's figures
        // follow its wall-clock length.)
        if P::CAPTURE_CLOCK {
            return;
        }
        if self.walk.step(self.clf.flows(), self.last_ns) {
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
        let t = clf.tunnel_counters();
        r.handover = HandoverCounts {
            decapsulated: t.decapsulated,
            refused: t.refused,
            ..self.handover
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::{decapsulate, encapsulate, Encap, Members, Tunnel};
    use crate::pipeline::Overflow;
    use crate::port::{RxStatus, Sent, SoftFrame};
    use std::sync::atomic::AtomicBool;
    use weir_model::config::Config;

    /// A port that lends the frames it was given, once, and keeps what is sent.
    #[derive(Debug, Default)]
    struct Script {
        frames: Vec<Vec<u8>>,
        next: usize,
        sent: Vec<Vec<u8>>,
    }

    impl Port for Script {
        type Backing = Pool;
        type Frame<'a> = SoftFrame<'a>;
        fn rx_burst<F>(&mut self, mut f: F) -> Result<RxStatus, PortError>
        where
            F: for<'a> FnMut(SoftFrame<'a>),
        {
            let Some(frame) = self.frames.get(self.next) else {
                return Ok(RxStatus::Ended);
            };
            self.next += 1;
            f(SoftFrame {
                data: frame,
                wire_len: frame.len() as u32,
                capture_ns: None,
                link: crate::capture::Link::Ethernet,
            });
            Ok(RxStatus::Frames(1))
        }
        fn send(&mut self, frame: &[u8]) {
            self.sent.push(frame.to_vec());
        }
        fn sent(&self) -> Sent {
            Sent::default()
        }
    }

    const OURS: u128 = 0x2001_0db8_0077_0000_0000_0000_0000_0002;
    const PRED: u128 = 0x2001_0db8_0077_0000_0000_0000_0000_0001;
    const MAC: [u8; 6] = [2, 0x77, 0x65, 0x69, 0x72, 1];
    const ROUTER: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn tcp6(src: u128, dst: u128, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20];
        f[..6].copy_from_slice(&MAC);
        f[6..12].copy_from_slice(&ROUTER);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&20u16.to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[22..38].copy_from_slice(&src.to_be_bytes());
        f[38..54].copy_from_slice(&dst.to_be_bytes());
        f[54..56].copy_from_slice(&40000u16.to_be_bytes());
        f[56..58].copy_from_slice(&80u16.to_be_bytes());
        f[66] = 5 << 4;
        f[67] = flags;
        f
    }

    /// The handover path end to end on one rx core: a packet of a handed-over slice that
    /// this host does not know leaves IPv6-in-IPv6 for the predecessor, back to the router;
    /// a tunnel frame from a member reaches the worker as the inner packet behind an
    /// Ethernet header; NS for the handover address is answered.
    #[test]
    fn forwarded_and_decapsulated_frames_take_the_right_ways() {
        let cfg = Config::from_toml("t", "[dataplane]\nworkers = 1\n").unwrap();
        let state = DataplaneState::new(&cfg, 1, Arc::new(AtomicBool::new(false))).unwrap();
        let snapshot = weir_control::proto::PolicySnapshot {
            version: 2,
            apl: "2:2001:db8:5::/64".into(),
            slice_bits: 14,
            rule: weir_ssa::Rule::Any,
            slices: vec![weir_control::proto::SliceRun {
                first: 0,
                last: 16383,
                worker: 0,
            }],
            blocks: vec![],
            rings: cfg.rings,
            new_flows_per_sec: 1000,
            source_prefix_len: 64,
            cluster: Some(weir_control::proto::ClusterPolicy {
                handover_addr: "2001:db8:77::2".into(),
                members: vec!["2001:db8:77::1".into(), "2001:db8:77::2".into()],
                handovers: vec![weir_control::proto::HandoverRun {
                    first: 0,
                    last: 1023,
                    predecessor: "2001:db8:77::1".into(),
                }],
            }),
            tee: Default::default(),
        };
        state.set_policy(crate::classify::Policy::from_snapshot(&snapshot, 1).unwrap());
        let (mut rxs, mut wks) = pipeline::build(&cfg.rings, 1, 1, Overflow::Wait);
        let mut setup = RxSetup::live(0);
        setup.responder = Some(HostResponder::new(MAC));
        let mut core = RxCore::new(&cfg, &state, rxs.pop().unwrap(), setup);
        let client = 0x2001_0db8_c000_0001_0000_0000_0000_0100_u128;
        let in_run = 0x2001_0db8_0005_0000_0000_0000_0000_0042_u128; // slice 0
        let ack = tcp6(client, in_run, 0x10);
        let mut tunneled = vec![0u8; 256];
        let n = encapsulate(
            &Encap {
                src_mac: ROUTER,
                dst_mac: MAC,
                outer_src: PRED,
                outer_dst: OURS,
                hop_limit: 64,
                mtu: 1500,
            },
            &tcp6(client, in_run, 0x02)[14..],
            &mut tunneled,
        )
        .unwrap();
        tunneled.truncate(n);
        let mut port = Script {
            frames: vec![ack.clone(), tunneled],
            ..Script::default()
        };
        let limits = RunLimits {
            clock: Clock::new(),
            duration: None,
        };
        core.run(&mut port, &state, &limits, None).unwrap();
        // The ACK went to the predecessor, through the router it came from.
        assert_eq!(port.sent.len(), 1, "one forwarded frame");
        let out = &port.sent[0];
        assert_eq!(&out[..6], &ROUTER);
        assert_eq!(&out[6..12], &MAC);
        let members = Members::new(&[PRED, OURS]).unwrap();
        let Tunnel::Inner(inner) = decapsulate(out, PRED, &members) else {
            panic!("the predecessor accepts it");
        };
        assert_eq!(&out[inner.offset..inner.offset + inner.len], &ack[14..]);
        // The tunneled SYN reached the worker as the inner packet behind Ethernet.
        let mut got = Vec::new();
        wks[0].round_with(&mut |_, class, f| got.push((class, f.to_vec())));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Class::AssumedGood);
        assert_eq!(&got[0].1[14..], &tcp6(client, in_run, 0x02)[14..]);
        assert_eq!(&got[0].1[12..14], &[0x86, 0xdd]);
        let report = core.finish(&state, &port);
        assert_eq!(report.handover.forwarded, 1);
        assert_eq!(report.handover.decapsulated, 1);
    }
}
