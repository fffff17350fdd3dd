//! The classifier: DESIGN.md's eleven steps, in order, for one frame at a time.
//!
//! One `Classifier` belongs to one rx core: it owns that core's flow table and rate meter
//! (flows are steered to rx cores by the address pair, so no state is shared) and reads
//! the current [`Policy`] snapshot. Nothing here allocates, locks or panics per packet; a
//! bad packet is a counted verdict.
//!
//! The order is the spec; each step below quotes the line of DESIGN.md it implements.
//! Two decisions the list leaves open, written down here:
//! - IPv4 packets go through every step, but the SSA rules (which are defined on 128-bit
//!   addresses and built around /64 host parts) are not applied to them: an IPv4 service
//!   prefix is served with the `any` rule. An IPv6 packet whose source or destination is
//!   IPv4-mapped (`::ffff:0:0/96`, never valid on the wire, RFC 4291 §2.5.5.2) is a martian
//!   or not-service respectively, so it cannot pose as IPv4 traffic.
//! - A service address as *source* is `outbound` in replay (the capture holds both
//!   directions) and `martian` on a live rx port (the terminators' own frames are seen on
//!   the tx path, so one arriving from the wire is spoofed).

use std::sync::Arc;

use weir_control::proto::PolicySnapshot;
use weir_ssa::{Apl, Checker, Prefix, ServicePrefixes, SliceMap};
use weir_wire::{
    is_ipv4_mapped, parse_frame, peek_addresses, Fragment, Frame, Icmpv6, Ip, IpVersion, Net, Tcp,
    Transport,
};

use crate::blocklist::{Block, Blocklist, BlocklistError};
use crate::capture::Link;
use crate::flow::{FlowCounters, FlowKey, FlowTable, InboundMatch};
use crate::handover::{Members, MAX_MEMBERS};
use crate::rate::{RateCounters, RateMeter};
use weir_model::config::Config;
use weir_model::verdict::{Class, Disposition, Reason, Verdict};

/// A complete, versioned policy: what the control plane pushes as one snapshot.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Snapshot version (0 = from the config file at start).
    pub version: u64,
    /// The service prefixes (from the APL record).
    pub prefixes: ServicePrefixes,
    /// The SSA rule, prepared for the packet path (`checker.rule()` is the rule).
    pub checker: Checker,
    /// Slice → worker.
    pub slices: SliceMap,
    /// Blocked source prefixes.
    pub blocklist: Blocklist,
    /// Source prefix length of a rate bucket.
    pub source_prefix_len: u8,
    /// New flows per second per source prefix.
    pub new_flows_per_sec: u32,
    /// This host's part in a cluster (handover addresses and runs); `None` alone.
    pub cluster: Option<ClusterState>,
}

/// Most handover runs a [`ClusterState`] holds (as `weir_control::proto::MAX_HANDOVER_RUNS`).
pub const MAX_HANDOVER_RUNS: usize = weir_control::proto::MAX_HANDOVER_RUNS;

/// The cluster part of a policy, parsed and checked for the packet path: addresses as
/// `u128`, the members in a fixed-size sorted list, the handover runs sorted and disjoint
/// (a binary search finds a slice's predecessor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    /// This host's handover address.
    pub handover_addr: u128,
    /// Every member's handover address (this host's included).
    pub members: Members,
    /// Handed-over runs: (first, last, predecessor's handover address), sorted by `first`,
    /// disjoint, at most [`MAX_HANDOVER_RUNS`].
    runs: Vec<(u32, u32, u128)>,
}

impl ClusterState {
    /// The predecessor's handover address for `slice`, if the slice is in a handover run.
    #[inline]
    pub fn predecessor(&self, slice: u32) -> Option<u128> {
        let i = self.runs.partition_point(|&(first, _, _)| first <= slice);
        let &(_, last, pred) = self.runs.get(i.checked_sub(1)?)?;
        (slice <= last).then_some(pred)
    }

    /// The index of the handover run that holds `slice`, if any.
    #[inline]
    pub fn run_of(&self, slice: u32) -> Option<u16> {
        let i = self.runs.partition_point(|&(first, _, _)| first <= slice);
        let i = i.checked_sub(1)?;
        let &(_, last, _) = self.runs.get(i)?;
        (slice <= last).then(|| u16::try_from(i).unwrap_or(u16::MAX))
    }

    /// The predecessor's handover address of run `run`.
    #[inline]
    pub fn run_predecessor(&self, run: u16) -> Option<u128> {
        self.runs.get(usize::from(run)).map(|r| r.2)
    }

    /// The handover runs: (first, last, predecessor), sorted.
    pub fn runs(&self) -> &[(u32, u32, u128)] {
        &self.runs
    }

    /// Parse and check a snapshot's cluster part for a layout of `slices` slices and the
    /// service `prefixes`; the error names the field.
    pub fn from_policy(
        c: &weir_control::proto::ClusterPolicy,
        slices: usize,
        prefixes: &ServicePrefixes,
    ) -> Result<ClusterState, PolicyError> {
        let bad = |m: String| PolicyError::Cluster(m);
        let parse = |field: &str, text: &str| -> Result<u128, PolicyError> {
            let a: std::net::Ipv6Addr = text
                .parse()
                .map_err(|_| bad(format!("{field} {text:?} is not an IPv6 address")))?;
            let a = u128::from(a);
            if !weir_model::config::is_unicast_v6(a) {
                return Err(bad(format!("{field} {text} is not a unicast address")));
            }
            if prefixes.contains(a) {
                return Err(bad(format!("{field} {text} is a service address")));
            }
            Ok(a)
        };
        let handover_addr = parse("cluster.handover_addr", &c.handover_addr)?;
        if c.members.len() > MAX_MEMBERS {
            return Err(bad(format!(
                "cluster.members: at most {MAX_MEMBERS}, got {}",
                c.members.len()
            )));
        }
        let mut addrs = [0u128; MAX_MEMBERS];
        for (i, (slot, text)) in addrs.iter_mut().zip(&c.members).enumerate() {
            *slot = parse(&format!("cluster.members[{i}]"), text)?;
        }
        let members = Members::new(&addrs[..c.members.len()])
            .map_err(|e| bad(format!("cluster.members: {e}")))?;
        if !members.contains(handover_addr) {
            return Err(bad(format!(
                "cluster.members does not list this host's handover_addr {}",
                c.handover_addr
            )));
        }
        if c.handovers.len() > MAX_HANDOVER_RUNS {
            return Err(bad(format!(
                "cluster.handovers: at most {MAX_HANDOVER_RUNS}, got {}",
                c.handovers.len()
            )));
        }
        let mut runs = Vec::with_capacity(c.handovers.len());
        for (i, h) in c.handovers.iter().enumerate() {
            let field = format!("cluster.handovers[{i}]");
            if h.first > h.last || h.last as usize >= slices {
                return Err(bad(format!(
                    "{field}: slices {}..={} are not within 0..{slices}",
                    h.first, h.last
                )));
            }
            let pred = parse(&format!("{field}.predecessor"), &h.predecessor)?;
            if !members.contains(pred) {
                return Err(bad(format!(
                    "{field}.predecessor {} is not a member",
                    h.predecessor
                )));
            }
            if pred == handover_addr {
                return Err(bad(format!(
                    "{field}.predecessor {} is this host",
                    h.predecessor
                )));
            }
            runs.push((h.first, h.last, pred));
        }
        runs.sort_unstable_by_key(|r| r.0);
        if let Some(w) = runs.windows(2).find(|w| w[1].0 <= w[0].1) {
            return Err(bad(format!(
                "cluster.handovers: runs {}..={} and {}..={} overlap",
                w[0].0, w[0].1, w[1].0, w[1].1
            )));
        }
        Ok(ClusterState {
            handover_addr,
            members,
            runs,
        })
    }
}

/// Errors building a policy from a config.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The SSA part is invalid.
    #[error("ssa: {0}")]
    Ssa(String),
    /// The blocklist is invalid.
    #[error(transparent)]
    Blocklist(#[from] BlocklistError),
    /// The cluster part is invalid.
    #[error("{0}")]
    Cluster(String),
}

impl Policy {
    /// Build the policy a config describes.
    pub fn from_config(cfg: &Config) -> Result<Policy, PolicyError> {
        let service = cfg.service();
        let prefixes =
            ServicePrefixes::new(&service.apl).map_err(|e| PolicyError::Ssa(e.to_string()))?;
        let slices = SliceMap::new(
            prefixes.prefixes(),
            service.slice_bits,
            cfg.dataplane.workers,
        )
        .map_err(|e| PolicyError::Ssa(e.to_string()))?;
        let checker = Checker::new(&cfg.ssa());
        let blocks: Vec<Block> = cfg
            .blocks
            .iter()
            .map(|b| Block {
                prefix: b.prefix,
                until_ns: b.until.map(|s| s.saturating_mul(1_000_000_000)),
            })
            .collect();
        let limits = cfg.limits();
        Ok(Policy {
            version: 0,
            prefixes,
            checker,
            slices,
            blocklist: Blocklist::new(&blocks)?,
            source_prefix_len: limits.source_prefix_len,
            new_flows_per_sec: limits.new_flows_per_sec,
            cluster: None,
        })
    }
}

impl Policy {
    /// Why this policy's rule would not spread clients over slices (see
    /// `weir_ssa::Rule::spread_warning`), for start-up logs and reports.
    pub fn spread_warning(&self) -> Option<String> {
        let bits = (0..self.prefixes.prefixes().len())
            .filter_map(|i| self.slices.slice_bits_of(i))
            .max()
            .unwrap_or(0);
        self.checker
            .rule()
            .spread_warning(self.prefixes.prefixes(), bits)
    }

    /// Build and validate the policy a control-plane snapshot describes, for a dataplane
    /// with `workers` workers. Every field is checked; the error names the field.
    pub fn from_snapshot(s: &PolicySnapshot, workers: u16) -> Result<Policy, PolicyError> {
        let bad = |m: String| PolicyError::Ssa(m);
        let apl = Apl::parse(&s.apl).map_err(|e| bad(format!("apl {:?}: {e}", s.apl)))?;
        let prefixes = ServicePrefixes::new(&apl).map_err(|e| bad(format!("apl: {e}")))?;
        let mut slices = SliceMap::new(prefixes.prefixes(), s.slice_bits, workers)
            .map_err(|e| bad(format!("slice_bits: {e}")))?;
        let mut next: u32 = 0;
        for r in &s.slices {
            if r.first != next || r.last < r.first {
                return Err(bad(format!(
                    "slices: run {}..={} does not continue at slice {next}",
                    r.first, r.last
                )));
            }
            slices
                .assign(r.first, r.last, r.worker)
                .map_err(|e| bad(format!("slices: {e}")))?;
            next = r.last.saturating_add(1);
        }
        if next as usize != slices.len() {
            return Err(bad(format!(
                "slices: runs cover {next} of {} slices",
                slices.len()
            )));
        }
        let rule = s.rule;
        rule.validate().map_err(|e| bad(format!("rule: {e}")))?;
        let mut blocks = Vec::with_capacity(s.blocks.len());
        for b in &s.blocks {
            let prefix: Prefix = b
                .prefix
                .parse()
                .map_err(|e| bad(format!("blocks: {:?}: {e}", b.prefix)))?;
            blocks.push(Block {
                prefix,
                until_ns: b.until_unix_ns,
            });
        }
        if s.source_prefix_len > 128 {
            return Err(bad(format!(
                "source_prefix_len {} is beyond 128",
                s.source_prefix_len
            )));
        }
        if s.new_flows_per_sec > 1_000_000_000 {
            return Err(bad(format!(
                "new_flows_per_sec {} is beyond 1000000000",
                s.new_flows_per_sec
            )));
        }
        for class in Class::QUEUED {
            if let Some(r) = s.rings.of(class) {
                r.check()
                    .map_err(|e| bad(format!("rings.{}: {e}", class.name())))?;
            }
        }
        let cluster = match &s.cluster {
            Some(c) => Some(ClusterState::from_policy(c, slices.len(), &prefixes)?),
            None => None,
        };
        Ok(Policy {
            cluster,
            version: s.version,
            prefixes,
            checker: Checker::new(&rule),
            slices,
            blocklist: Blocklist::new(&blocks)?,
            source_prefix_len: s.source_prefix_len,
            new_flows_per_sec: s.new_flows_per_sec,
        })
    }
}

/// Where a frame was received, which decides what a service-address source means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vantage {
    /// A capture holding both directions: service-sourced frames are `outbound`.
    Replay,
    /// A live rx port: service-sourced frames are spoofed (`martian`).
    Port,
}

/// Verdict counters of one classifier: one dense array indexed by
/// [`Disposition::code`], so counting a packet is a single increment on the packet path;
/// classes and totals are sums taken when a report is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    by_code: [u64; Disposition::CODES],
}

impl Counters {
    /// Count one disposition.
    #[inline]
    pub fn count(&mut self, d: Disposition) {
        if let Some(n) = self.by_code.get_mut(d.code()) {
            *n += 1;
        }
    }

    /// Count one disposition by its code.
    #[inline(always)]
    fn bump(&mut self, code: usize) {
        if let Some(n) = self.by_code.get_mut(code) {
            *n += 1;
        }
    }

    /// Frames seen.
    pub fn packets(&self) -> u64 {
        self.by_code.iter().sum()
    }

    /// Frames from service addresses (tracker input).
    pub fn outbound(&self) -> u64 {
        self.by_code[Disposition::Outbound.code()]
    }

    /// NDP and ARP.
    pub fn host(&self) -> u64 {
        self.by_code[Disposition::Host.code()]
    }

    /// Cut by a capture's snap length inside the headers: not classified.
    pub fn truncated(&self) -> u64 {
        self.by_code[Disposition::Truncated.code()]
    }

    /// Sent to a predecessor during a handover.
    pub fn forwarded(&self) -> u64 {
        self.by_code[Disposition::Forward { run: 0 }.code()]
    }

    /// Packets of a class.
    pub fn class(&self, class: Class) -> u64 {
        match class {
            Class::KnownGood => self.verdict(Verdict::KnownGood),
            Class::AssumedGood => self.verdict(Verdict::AssumedGood),
            c => Reason::ALL
                .iter()
                .filter(|r| r.class() == c)
                .map(|&r| self.reason(r))
                .sum(),
        }
    }

    /// Packets with a reason.
    pub fn reason(&self, reason: Reason) -> u64 {
        self.verdict(Verdict::Flagged(reason))
    }

    fn verdict(&self, verdict: Verdict) -> u64 {
        self.by_code[Disposition::Classified { verdict, worker: 0 }.code()]
    }

    /// Add another set of counters.
    pub fn add(&mut self, o: &Counters) {
        for (a, b) in self.by_code.iter_mut().zip(o.by_code) {
            *a += b;
        }
    }
}

/// Handover events of one classifier (DESIGN.md, "Across hosts").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    /// Frames from a member to this host's handover address, classified by their inner packet.
    pub decapsulated: u64,
    /// Refused tunnel frames, by [`crate::handover::Refusal`] in its `ALL` order.
    pub refused: [u64; 4],
}

/// Sizes of the per-core state, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Flow table slots.
    pub flow_table_capacity: usize,
    /// Rate-meter buckets.
    pub rate_table_capacity: usize,
    /// Source prefix length metered.
    pub source_prefix_len: u8,
    /// New flows per second per source prefix.
    pub new_flows_per_sec: u32,
}

impl Limits {
    /// The limits a config gives.
    pub fn from_config(cfg: &Config) -> Limits {
        let l = cfg.limits();
        Limits {
            flow_table_capacity: l.flow_table_capacity as usize,
            rate_table_capacity: l.rate_table_capacity as usize,
            source_prefix_len: l.source_prefix_len,
            new_flows_per_sec: l.new_flows_per_sec,
        }
    }
}

/// One rx core's classifier.
#[derive(Debug)]
pub struct Classifier {
    policy: Arc<Policy>,
    /// Packets per slice (those whose slice was looked up: new flows, no-flow, fragments).
    slice_packets: Vec<u64>,
    /// New flows (step 10: clean SYNs, UDP, echo requests, admitted or `rate`) per worker
    /// that owns their slice: how evenly the rule and the slice table spread clients.
    new_flows: Vec<u64>,
    /// Handover: decapsulated and refused tunnel frames (by refusal), and where the inner
    /// packet of the frame just classified lies (the rx core queues that, not the outer
    /// frame).
    tunnel: TunnelCounters,
    last_inner: Option<crate::handover::Inner>,
    /// Classifying a decapsulated packet: never forward it again.
    decapsulating: bool,
    /// A cut frame padded to its wire length ([`Classifier::classify_cut`]); allocated
    /// once, at [`CUT_MAX`].
    cut_buf: Vec<u8>,
    vantage: Vantage,
    flows: FlowTable,
    rate: RateMeter,
    counters: Counters,
}

/// The longest frame `classify_cut` pads to: the largest IPv6 packet behind the longest
/// link header weir reads (Ethernet with two VLAN tags; Linux cooked v2 is 20 bytes).
pub const CUT_MAX: usize = 65_535 + 40 + 22;

/// True for sources no client can have (DESIGN.md step 2 and "Other frames").
#[inline]
fn is_martian(version: IpVersion, src: u128) -> bool {
    match version {
        // Global unicast (2000::/3) is never martian: one compare for nearly every packet.
        IpVersion::V6 if src >> 125 == 1 => false,
        IpVersion::V6 => {
            src == 0                              // unspecified
                || src == 1                       // loopback
                || src >> 120 == 0xff             // multicast ff00::/8
                || src >> 118 == 0xfe80 >> 6      // link-local fe80::/10
                || is_ipv4_mapped(src) // never on the wire
        }
        IpVersion::V4 => {
            let a = src as u32;
            a >> 24 == 0                       // 0/8
                || a >> 24 == 127              // 127/8
                || a >> 16 == 0xa9fe           // 169.254/16
                || a >> 28 == 0xe              // 224/4
                || a >> 28 == 0xf // 240/4
        }
    }
}

impl Classifier {
    /// A classifier for one rx core.
    pub fn new(policy: Policy, limits: Limits, vantage: Vantage, seed: u64) -> Classifier {
        Classifier {
            slice_packets: vec![0; policy.slices.len()],
            new_flows: vec![0; usize::from(policy.slices.workers())],
            tunnel: TunnelCounters::default(),
            last_inner: None,
            decapsulating: false,
            cut_buf: Vec::with_capacity(CUT_MAX),
            policy: Arc::new(policy),
            vantage,
            flows: FlowTable::new(limits.flow_table_capacity, seed),
            rate: RateMeter::new(
                limits.source_prefix_len,
                limits.new_flows_per_sec,
                limits.rate_table_capacity,
                seed.rotate_left(17),
            ),
            counters: Counters::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Install a new policy snapshot (flows and buckets are kept; a changed rate limit
    /// applies to the buckets at once).
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        if policy.slices.len() != self.slice_packets.len() {
            self.slice_packets = vec![0; policy.slices.len()];
        }
        let workers = usize::from(policy.slices.workers());
        if workers > self.new_flows.len() {
            self.new_flows.resize(workers, 0);
        }
        if (
            policy.source_prefix_len,
            u64::from(policy.new_flows_per_sec),
        ) != (self.rate.prefix_len(), self.rate.rate())
        {
            self.rate
                .set_limits(policy.source_prefix_len, policy.new_flows_per_sec);
        }
        self.policy = policy;
    }

    /// Packets per slice so far.
    pub fn slice_packets(&self) -> &[u64] {
        &self.slice_packets
    }

    /// New flows per worker so far (by the owner of their slice).
    pub fn new_flows(&self) -> &[u64] {
        &self.new_flows
    }

    /// The source prefixes with the most new-flow attempts since the last call (see
    /// [`RateMeter::top_sources`]).
    pub fn top_sources(&mut self, n: usize) -> Vec<crate::rate::SourceActivity> {
        self.rate.top_sources(n)
    }

    /// Verdict counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Flow-table event counters.
    pub fn flow_counters(&self) -> FlowCounters {
        self.flows.counters()
    }

    /// Rate-meter event counters.
    pub fn rate_counters(&self) -> RateCounters {
        self.rate.counters()
    }

    /// The flow table (for reports).
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Start loading the flow-table slot `frame` would look up (untagged Ethernet, IPv6,
    /// TCP: the common case; anything else is ignored). A hint only: it reads at fixed
    /// offsets without validating, never changes state and never faults.
    #[inline]
    pub fn prefetch(&self, frame: &[u8]) {
        const ETH: usize = 14;
        let Some(h) = frame.get(..ETH + 40 + 4) else {
            return;
        };
        if h[12] != 0x86 || h[13] != 0xdd || h[ETH + 6] != weir_wire::protocol::TCP {
            return;
        }
        let addr = |at: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[at..at + 16]);
            u128::from_be_bytes(a)
        };
        self.flows.prefetch(&FlowKey {
            client: addr(ETH + 8),
            service: addr(ETH + 24),
            client_port: u16::from_be_bytes([h[ETH + 40], h[ETH + 41]]),
            service_port: u16::from_be_bytes([h[ETH + 42], h[ETH + 43]]),
        });
    }

    /// Classify one received frame at `now_ns` (unix nanoseconds) and count it.
    #[inline(always)]
    pub fn classify(&mut self, frame: &[u8], now_ns: u64) -> Disposition {
        // In a cluster, IPv6-in-IPv6 frames to this host's handover address come first: the
        // outer packet is not service traffic (one load and a branch when alone).
        if self.policy.cluster.is_some() {
            if let Some(d) = self.classify_tunnel(frame, now_ns) {
                return d;
            }
        }
        // The common case straight to the IP steps; everything else through the general
        // parse (which names the broken rule of a malformed frame).
        // (Both count what they decide.)
        match weir_wire::parse_common(frame) {
            Some(ip) => self.decide_ip(&ip, frame, now_ns),
            None => self.decide(&parse_frame(frame), frame, || peek_addresses(frame), now_ns),
        }
    }

    /// Count `d` and return it. Each of the deciding steps' exits counts its own outcome,
    /// so that a constant disposition is counted by one increment rather than decoded
    /// again after the exits meet (~20 instructions a packet, callgrind).
    #[inline(always)]
    fn counted(&mut self, d: Disposition) -> Disposition {
        self.counters.count(d);
        d
    }

    /// A tunnel frame: refused (counted, reject `tunnel-refused`) or decapsulated and its
    /// inner packet classified as if it had arrived directly; `None` when `frame` is not a
    /// tunnel frame.
    #[cold]
    #[inline(never)]
    fn classify_tunnel(&mut self, frame: &[u8], now_ns: u64) -> Option<Disposition> {
        use crate::handover::{decapsulate, Refusal, Tunnel};
        let c = self.policy.cluster.as_ref()?;
        match decapsulate(frame, c.handover_addr, &c.members) {
            Tunnel::NotTunnel => None,
            Tunnel::Refused(r) => {
                let i = Refusal::ALL.iter().position(|&x| x == r).unwrap_or(0);
                self.tunnel.refused[i] += 1;
                let d = reject(Reason::TunnelRefused);
                self.counters.count(d);
                Some(d)
            }
            Tunnel::Inner(inner) => {
                self.tunnel.decapsulated += 1;
                let packet = frame.get(inner.offset..inner.offset + inner.len)?;
                self.decapsulating = true;
                let d = self.classify_network(0x86dd, packet, now_ns);
                self.decapsulating = false;
                self.last_inner = Some(inner);
                Some(d)
            }
        }
    }

    /// Where the inner packet of the frame just classified lies, when it was decapsulated
    /// (taken: the next frame starts without one).
    #[inline]
    pub fn take_inner(&mut self) -> Option<crate::handover::Inner> {
        self.last_inner.take()
    }

    /// Handover events so far.
    pub fn tunnel_counters(&self) -> TunnelCounters {
        self.tunnel
    }

    /// During a handover: the run whose predecessor holds the connections of `dst`'s
    /// slice, for a packet that may be forwarded (never one already decapsulated).
    #[inline]
    fn forward_run(&self, prefix_idx: usize, dst: u128) -> Option<u16> {
        let c = self.policy.cluster.as_ref()?;
        if self.decapsulating {
            return None;
        }
        c.run_of(self.policy.slices.slice_of(prefix_idx, dst))
    }

    /// Classify a received frame, whatever its link layer and whether or not a capture cut
    /// it: `frame` as received, `wire_len` its length on the wire, `link` its link type.
    #[inline(always)]
    pub fn classify_received(
        &mut self,
        frame: &[u8],
        wire_len: u32,
        link: Link,
        now_ns: u64,
    ) -> Disposition {
        if wire_len as usize > frame.len() {
            // A capture cut it short (snap length), or a DPDK frame in several segments.
            return self.classify_cut(frame, wire_len, link.packet_of(frame), now_ns);
        }
        if link != Link::Ethernet {
            return self.classify_linked(frame, link, now_ns);
        }
        self.classify(frame, now_ns)
    }

    /// A whole frame of a capture without Ethernet headers (raw IP, Linux cooked,
    /// loopback): classified from its network layer on.
    #[cold]
    #[inline(never)]
    fn classify_linked(&mut self, frame: &[u8], link: Link, now_ns: u64) -> Disposition {
        match link.packet_of(frame) {
            None => self.classify(frame, now_ns),
            Some((ethertype, at)) => {
                self.classify_network(ethertype, frame.get(at..).unwrap_or_default(), now_ns)
            }
        }
    }

    /// Classify a frame that a capture cut short (`wire_len` beyond its bytes): the same
    /// steps over the captured bytes padded with zeros to the length on the wire, so that
    /// length rules see the lengths the packet had; [`Disposition::Truncated`] when the cut
    /// removed a header byte the steps read. `network` as for [`crate::port::Received::network`]
    /// (`crate::port::Received`). A cut tunnel frame is classified as the outer packet.
    #[cold]
    #[inline(never)]
    pub fn classify_cut(
        &mut self,
        frame: &[u8],
        wire_len: u32,
        network: Option<(u16, usize)>,
        now_ns: u64,
    ) -> Disposition {
        let mut buf = std::mem::take(&mut self.cut_buf);
        let len = usize::try_from(wire_len).map_or(CUT_MAX, |l| l.min(CUT_MAX));
        let kept = frame.len().min(len);
        buf.clear();
        buf.extend_from_slice(&frame[..kept]);
        buf.resize(len, 0);
        let d = match weir_wire::parse_cut(&buf, kept, network) {
            None => self.counted(Disposition::Truncated),
            Some(parsed) => match network {
                None => self.decide(&parsed, &buf, || peek_addresses(&buf), now_ns),
                Some((ethertype, at)) => {
                    let packet = buf.get(at..).unwrap_or_default();
                    self.decide(
                        &parsed,
                        packet,
                        || weir_wire::peek_network(ethertype, packet),
                        now_ns,
                    )
                }
            },
        };
        self.cut_buf = buf;
        d
    }

    /// Classify a network packet that came without an Ethernet header (a raw-IP, Linux
    /// cooked or loopback capture), its link header having named EtherType `ethertype`:
    /// the same steps from the network layer on.
    #[inline]
    pub fn classify_network(&mut self, ethertype: u16, packet: &[u8], now_ns: u64) -> Disposition {
        let parsed = weir_wire::parse_network(ethertype, packet);
        self.decide(
            &parsed,
            packet,
            || weir_wire::peek_network(ethertype, packet),
            now_ns,
        )
    }

    #[inline(always)]
    fn decide(
        &mut self,
        parsed: &Result<Frame, weir_wire::Malformed>,
        bytes: &[u8],
        peek: impl FnOnce() -> Option<(IpVersion, u128, u128)>,
        now_ns: u64,
    ) -> Disposition {
        // Matched by reference: the parsed frame is read in place, not moved again.
        match parsed {
            Ok(Frame {
                net: Net::Ip(ip), ..
            }) => self.decide_ip(ip, bytes, now_ns),
            // 2. "NDP and ARP go to the host path."
            Ok(Frame {
                net: Net::Arp { .. },
                ..
            }) => self.counted(Disposition::Host),
            // "EtherTypes other than IPv4, IPv6, ARP and VLAN" → unsupported-protocol.
            Ok(Frame {
                net: Net::Other { .. },
                ..
            }) => self.counted(reject(Reason::UnsupportedProtocol)),
            Err(_) => {
                // "A frame whose Ethernet and fixed IPv6 (or IPv4) header are readable and
                // whose source is a service address is outbound before step 1."
                if self.vantage == Vantage::Replay {
                    if let Some((_, src, _)) = peek() {
                        if self.policy.prefixes.contains(src) {
                            return self.counted(Disposition::Outbound);
                        }
                    }
                }
                // 1. "Headers truncated or inconsistent → reject malformed."
                self.counted(reject(Reason::Malformed))
            }
        }
    }

    #[inline(always)]
    fn decide_ip(&mut self, ip: &Ip, bytes: &[u8], now_ns: u64) -> Disposition {
        if self.vantage == Vantage::Replay && self.policy.prefixes.contains(ip.src) {
            self.track_outbound(ip, None, now_ns);
            return self.counted(Disposition::Outbound);
        }
        let policy = &self.policy;
        // 2. NDP → host; martian sources → reject.
        if let Transport::Icmpv6(Icmpv6::Ndp { .. }) = ip.transport {
            return self.counted(Disposition::Host);
        }
        // (In replay a service source was `outbound` above; on a port it is spoofed.)
        if is_martian(ip.version, ip.src)
            || (self.vantage == Vantage::Port && policy.prefixes.contains(ip.src))
        {
            return self.counted(reject(Reason::Martian));
        }
        // 3. "Destination outside every service prefix → reject not-service."
        // (An IPv4-mapped destination can only match a prefix that reaches into
        // ::ffff:0:0/96; without one, the lookup alone says not-service.)
        // (The mapped test runs only after a match, and only where such a prefix exists.)
        let prefix_idx = match policy.prefixes.lookup(ip.dst) {
            Some(i) if !(policy.prefixes.has_ipv4() && mapped_destination(ip)) => i,
            _ => return self.counted(reject(Reason::NotService)),
        };
        // 4. ICMPv6 errors are classified by the packet they quote.
        if let Transport::Icmpv6(Icmpv6::Error { quote_at, .. }) = ip.transport {
            let matched = weir_wire::quote_of(bytes, quote_at).and_then(|q| {
                let (sport, dport) = q.tcp_ports?;
                if !policy.prefixes.contains(q.src) {
                    return None;
                }
                let key = FlowKey {
                    client: q.dst,
                    service: q.src,
                    client_port: dport,
                    service_port: sport,
                };
                self.flows.established_worker(&key, now_ns)
            });
            let d = match matched {
                Some(worker) => Disposition::Classified {
                    verdict: Verdict::KnownGood,
                    worker,
                },
                // During a handover the quoted flow may be the predecessor's (Packet Too
                // Big must reach the host that holds the connection).
                None => match self.forward_run(prefix_idx, ip.dst) {
                    Some(run) => Disposition::Forward { run },
                    None => reject(Reason::IcmpUnmatched),
                },
            };
            return self.counted(d);
        }
        // 5. "The SSA rule fails for (source, destination) → reject ssa-violation. For
        //    time-window rules, an established flow still passes after its window has
        //    rolled."
        if ip.version == IpVersion::V6
            && !policy.checker.check(ip.src, ip.dst, now_ns / 1_000_000_000)
        {
            let rolled_over = policy.checker.rule().is_time_window()
                && ip.fragment == Fragment::Whole
                && match ip.transport {
                    Transport::Tcp(t) => self
                        .flows
                        .established_worker(&inbound_key(ip, &t), now_ns)
                        .is_some(),
                    _ => false,
                };
            if !rolled_over {
                return self.counted(reject(Reason::SsaViolation));
            }
        }
        // 6. "Source inside a blocked prefix → reject blocked."
        if policy.blocklist.is_blocked(ip.src, now_ns) {
            return self.counted(reject(Reason::Blocked));
        }
        // The slice owner is only needed for new flows (known-good goes to the flow's
        // worker), so it is looked up there, not for every packet. (A closure capturing
        // the counters here cost ~100 instructions per packet on *every* path, measured
        // with callgrind: it is a plain function on the two fields instead.)
        // 7. "The packet is an IPv6 fragment → suspect fragment."
        if ip.fragment != Fragment::Whole {
            return self.suspect_or_forward(Reason::Fragment, prefix_idx, ip.dst);
        }
        let new_flow = match ip.transport {
            Transport::Tcp(t) => {
                // 8. "The 5-tuple is an established flow → known-good."
                if let InboundMatch::Established { worker } =
                    self.flows
                        .inbound(&inbound_key(ip, &t), t.flags, t.ack, now_ns)
                {
                    self.counters.bump(const { known_good(0).code() });
                    return known_good(worker);
                }
                // 9. "TCP that is not a clean SYN, for a flow that is not established →
                //    suspect no-flow."
                if !t.is_clean_syn() {
                    // During a handover: a connection this host does not know is the
                    // predecessor's; new connections (clean SYNs) stay here.
                    return self.suspect_or_forward(Reason::NoFlow, prefix_idx, ip.dst);
                }
                true
            }
            Transport::Udp { .. } | Transport::Icmpv6(Icmpv6::EchoRequest) => true,
            _ => false,
        };
        if !new_flow {
            // 11. "Anything else → reject unsupported-protocol."
            return self.counted(reject(Reason::UnsupportedProtocol));
        }
        // 10. "A clean TCP SYN, a UDP datagram or an ICMPv6 echo request takes a token from
        //     its source prefix's bucket → assumed-good; with the bucket empty → suspect
        //     rate."
        let admitted = self.rate.take(ip.src, now_ns);
        let worker = slice_owner(
            &self.policy.slices,
            &mut self.slice_packets,
            prefix_idx,
            ip.dst,
        );
        if let Some(n) = self.new_flows.get_mut(usize::from(worker)) {
            *n += 1;
        }
        if admitted {
            self.counters.bump(const { assumed_good(0).code() });
            assumed_good(worker)
        } else {
            self.counters
                .bump(const { flagged(Reason::Rate, 0).code() });
            flagged(Reason::Rate, worker)
        }
    }

    /// A suspect packet of `dst`'s slice (a fragment, or TCP of no known flow), counted;
    /// during a handover one of a handed-over slice goes to the predecessor instead.
    #[inline(always)]
    fn suspect_or_forward(&mut self, reason: Reason, prefix_idx: usize, dst: u128) -> Disposition {
        if let Some(run) = self.forward_run(prefix_idx, dst) {
            return self.counted(Disposition::Forward { run });
        }
        let worker = slice_owner(
            &self.policy.slices,
            &mut self.slice_packets,
            prefix_idx,
            dst,
        );
        self.counted(flagged(reason, worker))
    }

    /// Feed a frame the terminators sent (the tx path) to the flow tracker. `worker` is the
    /// sender; `None` means the owner of the source address's slice.
    #[inline]
    pub fn observe_tx(&mut self, frame: &[u8], worker: Option<u16>, now_ns: u64) {
        if let Ok(f) = parse_frame(frame) {
            if let Net::Ip(ip) = f.net {
                self.track_outbound(&ip, worker, now_ns);
            }
        }
    }

    /// Feed a frame from a service address to the flow tracker (TCP, not a fragment).
    #[inline]
    fn track_outbound(&mut self, ip: &Ip, worker: Option<u16>, now_ns: u64) {
        let Transport::Tcp(t) = ip.transport else {
            return;
        };
        if ip.fragment != Fragment::Whole {
            return;
        }
        let key = FlowKey {
            client: ip.dst,
            service: ip.src,
            client_port: t.dst_port,
            service_port: t.src_port,
        };
        self.track_segment(key, t.flags, t.seq, worker, now_ns);
    }

    /// One outbound TCP segment of flow `key` to the tracker (out of line: the inbound path
    /// hands it the fields, not the parsed header, which can then stay in registers).
    #[inline(never)]
    fn track_segment(
        &mut self,
        key: FlowKey,
        flags: u8,
        seq: u32,
        worker: Option<u16>,
        now_ns: u64,
    ) {
        // From the rx path (a capture's service side) the worker is the owner of the
        // service address's slice, looked up only for a SYN-ACK (the slice lookup was ~45
        // of this function's ~160 instructions, for segments that never use it).
        let policy = &self.policy;
        let prefix_idx = match worker {
            Some(_) => 0,
            None => match policy.prefixes.lookup(key.service) {
                Some(i) => i,
                None => return,
            },
        };
        let owner = || {
            worker.unwrap_or_else(|| {
                let s = &policy.slices;
                s.worker_of(s.slice_of(prefix_idx, key.service))
            })
        };
        self.flows.outbound_with(&key, flags, seq, owner, now_ns);
    }
}

/// The worker owning `dst`'s slice; counts the packet for that slice.
#[inline]
fn slice_owner(slices: &SliceMap, counts: &mut [u64], prefix_idx: usize, dst: u128) -> u16 {
    let slice = slices.slice_of(prefix_idx, dst);
    if let Some(n) = counts.get_mut(slice as usize) {
        *n += 1;
    }
    slices.worker_of(slice)
}

/// An IPv6 packet to an IPv4-mapped address (out of line, so that the flag of the
/// prefixes is tested first: inline, the compiler computed this before the flag, ~7
/// instructions a packet for nothing in the common deployment, callgrind).
#[cold]
#[inline(never)]
fn mapped_destination(ip: &Ip) -> bool {
    ip.version == IpVersion::V6 && is_ipv4_mapped(ip.dst)
}

#[inline]
fn inbound_key(ip: &Ip, t: &Tcp) -> FlowKey {
    FlowKey {
        client: ip.src,
        service: ip.dst,
        client_port: t.src_port,
        service_port: t.dst_port,
    }
}

#[inline]
fn reject(reason: Reason) -> Disposition {
    debug_assert_eq!(reason.class(), Class::Reject);
    Disposition::Classified {
        verdict: Verdict::Flagged(reason),
        worker: 0,
    }
}

#[inline]
const fn flagged(reason: Reason, worker: u16) -> Disposition {
    Disposition::Classified {
        verdict: Verdict::Flagged(reason),
        worker,
    }
}

#[inline]
const fn known_good(worker: u16) -> Disposition {
    Disposition::Classified {
        verdict: Verdict::KnownGood,
        worker,
    }
}

#[inline]
const fn assumed_good(worker: u16) -> Disposition {
    Disposition::Classified {
        verdict: Verdict::AssumedGood,
        worker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_wire::tcp_flags::{ACK, SYN};

    const T: u64 = 1_767_225_600_000_000_000;

    /// A minimal Ethernet + IPv6 + TCP frame (checksums are not read by the classifier).
    fn tcp6(
        src: u128,
        dst: u128,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
    ) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&20u16.to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[22..38].copy_from_slice(&src.to_be_bytes());
        f[38..54].copy_from_slice(&dst.to_be_bytes());
        let t = &mut f[54..];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        f
    }

    #[test]
    fn an_ipv6_packet_to_an_ipv4_mapped_address_is_not_service_even_under_a_covering_prefix() {
        // `::/1` reaches into `::ffff:0:0/96` (so IPv4 can be service traffic), but an
        // IPv6 packet addressed to a mapped address is never on the wire.
        for apl in ["2:::/1", "2:2001:db8:5::/64"] {
            let cfg = Config::from_toml(
                "test",
                &format!("[service]\napl = \"{apl}\"\n[ssa]\nrule = \"any\"\n"),
            )
            .unwrap_or_else(|e| panic!("{apl}: {e}"));
            let policy = Policy::from_config(&cfg).unwrap();
            let mut clf = Classifier::new(policy, Limits::from_config(&cfg), Vantage::Replay, 1);
            // Outside both prefixes, and not martian.
            let client: u128 = 0xa001_0db8_c000_0001_0000_0000_0000_0100;
            let mapped = weir_ssa::ipv4_mapped(0x0a00_0001);
            assert_eq!(
                clf.classify(&tcp6(client, mapped, 40000, 80, 1, 0, SYN), T),
                reject(Reason::NotService),
                "{apl}"
            );
            let inside = 0x2001_0db8_0005_0000_0000_0000_0000_0001;
            assert!(
                matches!(
                    clf.classify(&tcp6(client, inside, 40001, 80, 1, 0, SYN), T),
                    Disposition::Classified {
                        verdict: Verdict::AssumedGood,
                        ..
                    }
                ),
                "{apl}"
            );
        }
    }

    #[test]
    fn on_a_port_a_forged_service_syn_ack_is_martian_and_establishes_nothing() {
        // Live ports (TAP, DPDK) learn the service's side only from the terminators' tx
        // path. A frame arriving with a service source address is spoofed: were it
        // tracked, anyone could forge a SYN-ACK and the matching ACK and make a spoofed
        // source known-good.
        let cfg = Config::default();
        let policy = Policy::from_config(&cfg).unwrap();
        let client: u128 = 0x2001_0db8_c000_0001_0000_0000_0000_0100;
        let svc: u128 =
            (0x2001_0db8_0005_0000 << 64) | u128::from(weir_ssa::fmix64(0x2001_0db8_c000_0001));
        let forged = tcp6(svc, client, 80, 40000, 500, 2, SYN | ACK);
        let ack = tcp6(client, svc, 40000, 80, 2, 501, ACK);
        let mut port = Classifier::new(policy.clone(), Limits::from_config(&cfg), Vantage::Port, 1);
        assert_eq!(port.classify(&forged, T), reject(Reason::Martian));
        assert!(matches!(
            port.classify(&ack, T),
            Disposition::Classified {
                verdict: Verdict::Flagged(Reason::NoFlow),
                ..
            }
        ));
        // The same frames in a capture (replay) are the service's own side.
        let mut replay = Classifier::new(policy, Limits::from_config(&cfg), Vantage::Replay, 1);
        assert_eq!(replay.classify(&forged, T), Disposition::Outbound);
        assert!(matches!(
            replay.classify(&ack, T),
            Disposition::Classified {
                verdict: Verdict::KnownGood,
                ..
            }
        ));
        // And on a port, the terminators' real SYN-ACK (tx path) is what counts.
        port.observe_tx(&forged, None, T);
        assert!(matches!(
            port.classify(&ack, T),
            Disposition::Classified {
                verdict: Verdict::KnownGood,
                ..
            }
        ));
    }

    #[test]
    fn a_slice_move_keeps_established_flows_on_their_worker() {
        let cfg = Config::default();
        let policy = Policy::from_config(&cfg).unwrap();
        let mut clf = Classifier::new(
            policy.clone(),
            Limits::from_config(&cfg),
            Vantage::Replay,
            1,
        );
        let client: u128 = 0x2001_0db8_c000_0001_0000_0000_0000_0100;
        let svc: u128 =
            (0x2001_0db8_0005_0000 << 64) | u128::from(weir_ssa::fmix64(0x2001_0db8_c000_0001));
        let owner = |p: &Policy| p.slices.worker_of(p.slices.slice_of(0, svc));
        let before = owner(&policy);
        // Handshake: SYN (new), SYN-ACK (outbound), ACK (established).
        assert_eq!(
            clf.classify(&tcp6(client, svc, 40000, 80, 1, 0, SYN), T),
            Disposition::Classified {
                verdict: Verdict::AssumedGood,
                worker: before
            }
        );
        clf.classify(&tcp6(svc, client, 80, 40000, 500, 2, SYN | ACK), T);
        assert_eq!(
            clf.classify(&tcp6(client, svc, 40000, 80, 2, 501, ACK), T),
            Disposition::Classified {
                verdict: Verdict::KnownGood,
                worker: before
            }
        );
        // Move every slice to the other worker.
        let mut moved = policy.clone();
        let other = 1 - before;
        let last = u32::try_from(moved.slices.len() - 1).unwrap();
        moved.slices.assign(0, last, other).unwrap();
        moved.version = 2;
        clf.set_policy(Arc::new(moved));
        // The established flow stays; a new flow goes to the new owner.
        assert_eq!(
            clf.classify(&tcp6(client, svc, 40000, 80, 2, 501, ACK), T),
            Disposition::Classified {
                verdict: Verdict::KnownGood,
                worker: before
            }
        );
        assert_eq!(
            clf.classify(&tcp6(client, svc, 40001, 80, 1, 0, SYN), T),
            Disposition::Classified {
                verdict: Verdict::AssumedGood,
                worker: other
            }
        );
    }

    fn snapshot_with(cluster: weir_control::proto::ClusterPolicy) -> PolicySnapshot {
        PolicySnapshot {
            version: 3,
            apl: "2:2001:db8:5::/64".into(),
            slice_bits: 14,
            rule: weir_ssa::Rule::default(),
            slices: vec![weir_control::proto::SliceRun {
                first: 0,
                last: 16383,
                worker: 0,
            }],
            blocks: vec![],
            rings: weir_model::config::RingsConfig::default(),
            new_flows_per_sec: 1000,
            source_prefix_len: 64,
            cluster: Some(cluster),
            tee: Default::default(),
        }
    }

    fn cluster() -> weir_control::proto::ClusterPolicy {
        weir_control::proto::ClusterPolicy {
            handover_addr: "2001:db8:77::2".into(),
            members: vec![
                "2001:db8:77::1".into(),
                "2001:db8:77::2".into(),
                "2001:db8:77::3".into(),
            ],
            handovers: vec![
                weir_control::proto::HandoverRun {
                    first: 100,
                    last: 199,
                    predecessor: "2001:db8:77::1".into(),
                },
                weir_control::proto::HandoverRun {
                    first: 10,
                    last: 19,
                    predecessor: "2001:db8:77::3".into(),
                },
            ],
        }
    }

    #[test]
    fn cluster_state_is_parsed_and_looked_up() {
        let p = Policy::from_snapshot(&snapshot_with(cluster()), 1).unwrap();
        let c = p.cluster.as_ref().unwrap();
        assert_eq!(c.handover_addr, 0x2001_0db8_0077_0000_0000_0000_0000_0002);
        assert_eq!(c.members.len(), 3);
        let a1 = 0x2001_0db8_0077_0000_0000_0000_0000_0001;
        let a3 = 0x2001_0db8_0077_0000_0000_0000_0000_0003;
        for (slice, want) in [
            (0, None),
            (9, None),
            (10, Some(a3)),
            (19, Some(a3)),
            (20, None),
            (100, Some(a1)),
            (199, Some(a1)),
            (200, None),
            (u32::MAX, None),
        ] {
            assert_eq!(c.predecessor(slice), want, "slice {slice}");
        }
        let mut s = snapshot_with(cluster());
        s.cluster = None;
        assert!(Policy::from_snapshot(&s, 1).unwrap().cluster.is_none());
    }

    /// DESIGN.md, "Across hosts": during a handover of run R, new clean SYNs for R stay
    /// here; other packets this host does not know go to the predecessor; frames to this
    /// host's handover address from a member are classified by their inner packet (and never
    /// forwarded again); any other tunnel frame is `tunnel-refused`.
    #[test]
    fn handover_forwards_unknown_flows_and_decapsulates_members_only() {
        use crate::handover::{encapsulate, Encap};
        let policy = Policy::from_snapshot(&snapshot_with(cluster()), 1).unwrap();
        let cfg = Config::default();
        let mut clf = Classifier::new(policy, Limits::from_config(&cfg), Vantage::Port, 1);
        // A client whose conforming destination lies in slice 100..=199 (the run with
        // predecessor ::1, run index 1 once sorted), and one whose slice is in no run.
        let find = |want: &dyn Fn(u32) -> bool| {
            (1u64..)
                .map(|n| (0x2001_0db8_c000_0000_u128 + u128::from(n)) << 64 | 0x100)
                .find(|src| want((weir_ssa::fmix64((src >> 64) as u64) >> 50) as u32))
                .unwrap()
        };
        let svc = |src: u128| {
            (0x2001_0db8_0005_0000_u128 << 64) | u128::from(weir_ssa::fmix64((src >> 64) as u64))
        };
        let moving = find(&|slice| (100..=199).contains(&slice));
        let staying = find(&|slice| slice >= 1000);
        let ack = tcp6(moving, svc(moving), 40000, 80, 5, 6, ACK);
        assert_eq!(clf.classify(&ack, T), Disposition::Forward { run: 1 });
        assert_eq!(
            clf.classify(&tcp6(moving, svc(moving), 40001, 80, 1, 0, SYN), T)
                .label(),
            "assumed-good",
            "new connections stay on the new owner"
        );
        let other = tcp6(staying, svc(staying), 40000, 80, 5, 6, ACK);
        assert_eq!(clf.classify(&other, T).label(), "no-flow");
        assert_eq!(clf.take_inner(), None);
        // Tunnel frames: from a member to us, and from a stranger.
        let ours = 0x2001_0db8_0077_0000_0000_0000_0000_0002_u128;
        let tunnel = |from: u128, inner: &[u8]| {
            let mut out = vec![0u8; 2048];
            let e = Encap {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                outer_src: from,
                outer_dst: ours,
                hop_limit: 64,
                mtu: 1500,
            };
            let n = encapsulate(&e, &inner[14..], &mut out).unwrap();
            out.truncate(n);
            out
        };
        let member = 0x2001_0db8_0077_0000_0000_0000_0000_0003_u128;
        let d = clf.classify(&tunnel(member, &ack), T);
        assert_eq!(
            d.label(),
            "no-flow",
            "a decapsulated packet is not forwarded again"
        );
        let inner = clf
            .take_inner()
            .expect("the rx core queues the inner packet");
        assert_eq!(inner.len, ack.len() - 14);
        let syn = tcp6(moving, svc(moving), 40002, 80, 1, 0, SYN);
        assert_eq!(
            clf.classify(&tunnel(member, &syn), T).label(),
            "assumed-good"
        );
        assert!(clf.take_inner().is_some());
        let stranger = 0x2001_0db8_0099_0000_0000_0000_0000_0001_u128;
        assert_eq!(
            clf.classify(&tunnel(stranger, &syn), T),
            reject(Reason::TunnelRefused)
        );
        assert_eq!(clf.take_inner(), None);
        let t = clf.tunnel_counters();
        assert_eq!(t.decapsulated, 2);
        assert_eq!(t.refused, [0, 1, 0, 0], "counted as tunnel-not-member");
        assert_eq!(clf.counters().forwarded(), 1);
        assert_eq!(clf.counters().reason(Reason::TunnelRefused), 1);
    }

    #[test]
    fn every_cluster_field_is_checked_by_name() {
        type Edit = fn(&mut weir_control::proto::ClusterPolicy);
        let cases: [(Edit, &str); 10] = [
            (
                |c| c.handover_addr = "nope".into(),
                "cluster.handover_addr \"nope\"",
            ),
            (|c| c.handover_addr = "ff02::1".into(), "not a unicast"),
            (
                |c| c.handover_addr = "2001:db8:5::1".into(),
                "is a service address",
            ),
            (|c| c.members[1] = "1.2.3.4".into(), "cluster.members[1]"),
            (|c| c.members[2] = "2001:db8:77::1".into(), "listed twice"),
            (
                |c| {
                    c.members.remove(1);
                },
                "does not list this host",
            ),
            (
                |c| c.members = (0..65).map(|i| format!("2001:db8:77::{i:x}")).collect(),
                "at most 64",
            ),
            (
                |c| c.handovers[0].last = 16384,
                "cluster.handovers[0]: slices 100..=16384",
            ),
            (
                |c| c.handovers[1].predecessor = "2001:db8:77::2".into(),
                "cluster.handovers[1].predecessor 2001:db8:77::2 is this host",
            ),
            (|c| c.handovers[1].last = 100, "overlap"),
        ];
        for (edit, needle) in cases {
            let mut c = cluster();
            edit(&mut c);
            let e = Policy::from_snapshot(&snapshot_with(c), 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let mut c = cluster();
        c.handovers[0].predecessor = "2001:db8:99::1".into();
        let e = Policy::from_snapshot(&snapshot_with(c), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a member"), "{e}");
        let mut c = cluster();
        c.handovers = vec![c.handovers[0].clone(); MAX_HANDOVER_RUNS + 1];
        let e = Policy::from_snapshot(&snapshot_with(c), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 1024"), "{e}");
    }

    #[test]
    fn a_new_rate_limit_applies_at_once() {
        let cfg = Config::default();
        let mut policy = Policy::from_config(&cfg).unwrap();
        let mut clf = Classifier::new(
            policy.clone(),
            Limits::from_config(&cfg),
            Vantage::Replay,
            1,
        );
        policy.new_flows_per_sec = 2;
        clf.set_policy(Arc::new(policy));
        let client: u128 = 0x2001_0db8_c000_0001_0000_0000_0000_0100;
        let svc: u128 =
            (0x2001_0db8_0005_0000 << 64) | u128::from(weir_ssa::fmix64(0x2001_0db8_c000_0001));
        let labels: Vec<&str> = (0..3)
            .map(|p| {
                clf.classify(&tcp6(client, svc, 40000 + p, 80, 1, 0, SYN), T)
                    .label()
            })
            .collect();
        assert_eq!(labels, ["assumed-good", "assumed-good", "rate"]);
    }
}
