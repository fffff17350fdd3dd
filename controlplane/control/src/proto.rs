//! The control protocol: what `weirctl`, `weir-cp` and `weir-dp` say to each other.
//!
//! Every message is one datagram on a unix `SOCK_SEQPACKET` socket (see `transport`): a
//! postcard-encoded [`Envelope`] of at most [`MAX_FRAME`] bytes. A connection opens with a
//! [`Hello`] from the connecting side and a [`HelloReply`] from the listening side; a
//! different [`PROTOCOL_VERSION`] (or magic) is refused with a reason, and the connection
//! is closed. After that, each request carries an id that its reply repeats, so a client
//! can tell a late reply from the one it waits for.
//!
//! Two request sets share the envelope: [`DpRequest`] (weir-cp → weir-dp: policy
//! snapshots, stats) and [`CtlRequest`] (weirctl → weir-cp: the operator's commands).
//! The dataplane only ever applies *complete* [`PolicySnapshot`]s, each with a version:
//! there are no partial updates to get out of order, and a re-sync after a reconnect is the
//! same message as the first push.
//!
//! Types here are plain data with string forms for prefixes and rules, so the protocol does
//! not depend on how either side represents them internally, and every field can be
//! validated on arrival with an error that names it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use weir_model::config::RingsConfig;
use weir_model::{Class, WorkerStats};
use weir_ssa::Rule;

/// Version of this protocol; a peer with another version is refused. 3: [`DpStats`]
/// carries `slow_sources` and `upstreams`. 4: the live tee ([`PolicySnapshot::tee`],
/// [`DpStats::tee`], `CtlRequest::Tee*`).
pub const PROTOCOL_VERSION: u32 = 4;

/// First bytes of every hello.
pub const MAGIC: [u8; 4] = *b"weir";

/// Largest encoded message. A policy's slice table travels as runs (see [`SliceRun`]), so
/// even many prefixes fit.
pub const MAX_FRAME: usize = 256 * 1024;

/// Who is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// `weirctl`
    Cli,
    /// `weir-cp`
    ControlPlane,
    /// `weir-dp`
    Dataplane,
}

/// The first message on a connection, from the connecting side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The sender's role.
    pub role: Role,
    /// A name for logs (host, instance).
    pub name: String,
}

impl Hello {
    /// A hello for this build.
    pub fn new(role: Role, name: impl Into<String>) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            role,
            name: name.into(),
        }
    }
}

/// The listening side's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Go ahead.
    Accepted {
        /// The listener's protocol version.
        version: u32,
        /// The listener's role.
        role: Role,
        /// The listener's name.
        name: String,
    },
    /// Refused (version, role or credentials); the connection closes.
    Refused {
        /// Why, for the peer's log.
        reason: String,
    },
}

/// A request or reply with its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    /// Chosen by the requester; the reply repeats it.
    pub id: u64,
    /// The message.
    pub body: B,
}

// ---------------------------------------------------------------------------------------
// weir-cp → weir-dp

/// Requests weir-cp sends to a weir-dp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DpRequest {
    /// Replace the whole policy, atomically.
    Apply(Box<PolicySnapshot>),
    /// Counters, gauges and histograms.
    Stats,
    /// Liveness.
    Ping,
}

/// weir-dp's replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DpReply {
    /// The snapshot is in force (rx cores pick it up at their next burst).
    Applied {
        /// Its version.
        version: u64,
    },
    /// The stats.
    Stats(Box<DpStats>),
    /// Reply to [`DpRequest::Ping`], with the policy version in force.
    Pong {
        /// Version of the policy in force (0 = the dataplane's own config).
        version: u64,
    },
    /// The request was refused; nothing changed.
    Error {
        /// What was wrong, in one line for the operator.
        message: String,
    },
}

/// A complete, versioned policy for a dataplane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySnapshot {
    /// Increases with every change weir-cp makes.
    pub version: u64,
    /// APL text of the service prefixes.
    pub apl: String,
    /// Slices per prefix = 2^slice_bits.
    pub slice_bits: u8,
    /// The SSA rule.
    pub rule: Rule,
    /// Slice → worker, as runs covering every slice in order.
    pub slices: Vec<SliceRun>,
    /// Blocked source prefixes.
    pub blocks: Vec<BlockSpec>,
    /// Ring sizes and weights.
    pub rings: RingsConfig,
    /// New flows per second per source prefix.
    pub new_flows_per_sec: u32,
    /// Source prefix length of a rate bucket.
    pub source_prefix_len: u8,
    /// This host's part in a cluster of weir hosts (weir-cp's `[cluster]`); `None` for a
    /// host alone.
    pub cluster: Option<ClusterPolicy>,
    /// What the dataplane's live tee should do.
    pub tee: TeeOrder,
}

/// weir-cp's word on a dataplane's live tee.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeeOrder {
    /// No word: the dataplane follows its own `[tee]` (on at start with `enabled`).
    #[default]
    Config,
    /// Stopped by the operator.
    Stop,
    /// Teeing as the operator asked.
    Start(TeeSpec),
}

/// One tee as the operator starts it (`weirctl tee start`). Where the files go, the ring
/// and the rotation are the dataplane's own `[tee]` settings: a control message cannot
/// make weir-dp write anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeeSpec {
    /// Filter terms (`reject:ssa-violation`, `suspect:*`, `known_good`, …), at most
    /// `weir_model::tee::limits::MAX_TERMS`.
    pub filters: Vec<String>,
    /// 1 in N.
    pub sample: u32,
    /// Copies per second per rx core at most (0 = no cap); `None` = `[tee]`'s.
    pub rate_per_core: Option<u32>,
    /// Bytes copied per frame at most; `None` = `[tee]`'s.
    pub snaplen: Option<u32>,
    /// Stop by itself at this unix time (ns); `None` = until stopped.
    pub until_unix_ns: Option<u64>,
    /// weir-cp's serial of this start: a re-push of the same start does not begin new
    /// files, a new start does.
    pub serial: u64,
}

/// A dataplane's live tee, as `weirctl tee status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeeStatus {
    /// Copying now.
    pub active: bool,
    /// The filter in force (canonical form), empty when stopped.
    pub filter: String,
    /// 1 in N.
    pub sample: u32,
    /// Copies per second per rx core at most (0 = no cap).
    pub rate_per_core: u32,
    /// Bytes copied per frame at most.
    pub snaplen: u32,
    /// When it stops by itself (unix ns).
    pub until_unix_ns: Option<u64>,
    /// The directory of the files.
    pub dir: String,
    /// The file being written (or last written).
    pub file: Option<String>,
    /// Frames copied into the ring (cumulative over every tee of this process).
    pub teed: u64,
    /// Copies dropped because the ring was full (`tee-dropped`).
    pub dropped: u64,
    /// Frames the filter selected but sampling skipped.
    pub sampled_out: u64,
    /// Frames the filter selected but the per-core rate cap refused.
    pub rate_capped: u64,
    /// Frames written to files.
    pub written: u64,
    /// Files begun.
    pub files: u64,
    /// Bytes written to files.
    pub bytes: u64,
    /// The last error writing files, if any (the tee stops on one).
    pub error: Option<String>,
}

/// Most members a [`ClusterPolicy`] lists.
pub const MAX_CLUSTER_MEMBERS: usize = 64;

/// Most handover runs a [`ClusterPolicy`] lists.
pub const MAX_HANDOVER_RUNS: usize = 1024;

/// What a dataplane needs to know about its cluster: where frames of flows it still holds
/// arrive from after a handover, and where to send those of flows a predecessor holds.
///
/// Addresses are IPv6 text (`2001:db8:77::1`); the dataplane parses and checks every one
/// (`weir_dp::classify::ClusterState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPolicy {
    /// This host's handover address: encapsulated frames to it from a member are
    /// decapsulated and classified as if they had arrived directly.
    pub handover_addr: String,
    /// Every member's handover address (this host's included): the only outer sources an
    /// encapsulated frame is accepted from. At most [`MAX_CLUSTER_MEMBERS`].
    pub members: Vec<String>,
    /// Slice runs this host took over while their predecessor still holds flows: new
    /// clean SYNs terminate here, other packets the flow table does not know go to the
    /// predecessor, encapsulated. Disjoint, at most [`MAX_HANDOVER_RUNS`].
    pub handovers: Vec<HandoverRun>,
}

/// Slices `first..=last` were handed over to this host by `predecessor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverRun {
    /// First slice (global slice id).
    pub first: u32,
    /// Last slice, inclusive.
    pub last: u32,
    /// The predecessor's handover address (one of the members).
    pub predecessor: String,
}

/// Slices `first..=last` belong to `worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceRun {
    /// First slice (global slice id).
    pub first: u32,
    /// Last slice, inclusive.
    pub last: u32,
    /// Owner.
    pub worker: u16,
}

/// Compress a slice table into runs.
pub fn slice_runs(table: &[u16]) -> Vec<SliceRun> {
    let mut runs: Vec<SliceRun> = Vec::new();
    for (i, &w) in table.iter().enumerate() {
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

/// A blocked source prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSpec {
    /// The prefix, e.g. `2001:db8:bad::/48`.
    pub prefix: String,
    /// Unix time (ns) after which the block lapses; `None` = until removed.
    pub until_unix_ns: Option<u64>,
    /// Why (operator, or the policy loop's decision).
    pub reason: String,
}

/// A dataplane's counters, gauges and histograms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DpStats {
    /// Version of the policy in force.
    pub policy_version: u64,
    /// Nanoseconds since the dataplane started.
    pub uptime_ns: u64,
    /// Frames received.
    pub packets: u64,
    /// Frames from service addresses.
    pub outbound: u64,
    /// NDP and ARP.
    pub host: u64,
    /// Per class name (`known_good`, …).
    pub classes: BTreeMap<String, u64>,
    /// Per reason name (`ssa-violation`, …).
    pub reasons: BTreeMap<String, u64>,
    /// Events that are not verdicts (`flow-table-full`, `rate-table-evicted`, …).
    pub events: BTreeMap<String, u64>,
    /// Packets per slice that reached the slice table (non-zero slices only).
    pub slices: Vec<(u32, u64)>,
    /// Per worker.
    pub workers: Vec<WorkerStats>,
    /// Per ring.
    pub rings: Vec<RingStats>,
    /// Live half-open flows.
    pub half_open: u64,
    /// Live established flows.
    pub established: u64,
    /// Source prefixes with the most new-flow attempts recently, most first.
    pub top_sources: Vec<SourceRate>,
    /// Queueing latency per class (rx → worker), hdrhistogram V2-serialized, in ns.
    pub latency: BTreeMap<String, Vec<u8>>,
    /// Source prefixes whose connections the terminators closed for slowness, most
    /// events first (at most [`MAX_SLOW_SOURCES`]); counts are cumulative.
    pub slow_sources: Vec<SlowSource>,
    /// The application servers' side of asynchronous adapters (`nats`), per subject.
    pub upstreams: Vec<UpstreamStats>,
    /// The live tee.
    pub tee: TeeStatus,
}

/// Most [`SlowSource`]s in one [`DpStats`].
pub const MAX_SLOW_SOURCES: usize = 32;

/// Slow-client events of one source prefix, summed over the workers; cumulative since the
/// prefix entered the workers' tables (an evicted prefix starts again from 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowSource {
    /// The source prefix.
    pub prefix: String,
    /// Connections answered `408` for an incomplete request head (slowloris).
    pub slow_header: u64,
    /// Connections reset for a reply not drained (slow read).
    pub slow_read: u64,
}

/// One upstream subject of the `nats` adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStats {
    /// Adapter kind (`nats`).
    pub kind: String,
    /// The server URL(s).
    pub url: String,
    /// The subject.
    pub subject: String,
    /// Link state: `connected`, `disconnected` or `pending`.
    pub state: String,
    /// Connections made (1 + reconnects, once up).
    pub connects: u64,
    /// Requests published.
    pub requests: u64,
    /// Requests waiting for a reply now.
    pub in_flight: u64,
    /// Outcomes: `2xx`, `3xx`, `4xx`, `5xx` (the application's statuses), `503` (no
    /// responders, link down), `504` (timeout), `502` (bad reply), `413` (over the NATS
    /// payload limit).
    pub outcomes: BTreeMap<String, u64>,
    /// Reply headers dropped (hop-by-hop).
    pub headers_dropped: u64,
    /// Replies that came after their request's timeout.
    pub late_replies: u64,
    /// Reply latency (request taken → reply arrived), hdrhistogram V2-serialized, in ns.
    pub latency: Vec<u8>,
}

/// One ring's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingStats {
    /// Rx core.
    pub rx: u16,
    /// Worker.
    pub worker: u16,
    /// The ring's class.
    pub class: Class,
    /// Slots.
    pub size: u32,
    /// Packets queued now.
    pub occupancy: u32,
    /// `ring-full` drops.
    pub drops: u64,
}

/// New-flow activity of one source prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRate {
    /// The source prefix.
    pub prefix: String,
    /// New flows admitted (assumed-good) in the last report interval.
    pub admitted: u64,
    /// New flows refused (`rate`) in the last report interval.
    pub limited: u64,
}

// ---------------------------------------------------------------------------------------
// weirctl → weir-cp

/// Operator requests (weirctl → weir-cp).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CtlRequest {
    /// Daemon and dataplane connection status.
    Status,
    /// Every dataplane's stats.
    Stats,
    /// Ring sizes and weights.
    RingsShow,
    /// Change one class's ring size and/or weight.
    RingsSet {
        /// `known_good`, `assumed_good` or `suspect`.
        class: Class,
        /// New size (power of two).
        size: Option<u32>,
        /// New weight.
        weight: Option<u32>,
    },
    /// The SSA rule and limits.
    RulesShow,
    /// Replace the SSA rule.
    RulesSet(Rule),
    /// The slice table.
    SlicesShow,
    /// Give slices `first..=last` to `worker`.
    SlicesMove {
        /// First slice.
        first: u32,
        /// Last slice (inclusive).
        last: u32,
        /// New owner.
        worker: u16,
    },
    /// Block a source prefix.
    BlockAdd {
        /// The prefix.
        prefix: String,
        /// Lifetime; `None` = until removed.
        ttl_s: Option<u64>,
    },
    /// Unblock a source prefix.
    BlockDel {
        /// The prefix.
        prefix: String,
    },
    /// The blocklist.
    BlockList,
    /// Re-read the config file; applied only if valid.
    ConfigReload,
    /// The cluster: members, coordinator, assignment, handovers.
    ClusterStatus,
    /// Hand slices `first..=last` over to `host` (the coordinator runs it).
    ClusterMove {
        /// First slice.
        first: u32,
        /// Last slice (inclusive).
        last: u32,
        /// The host that gets them.
        host: String,
    },
    /// Hand every slice of `host` over to the other live hosts, and give it none until a
    /// `ClusterMove` gives it some again.
    ClusterDrain {
        /// The host to empty.
        host: String,
    },
    /// Start (or replace) the live tee on every dataplane.
    TeeStart {
        /// Filter terms.
        filters: Vec<String>,
        /// 1 in N.
        sample: u32,
        /// Copies per second per rx core (`None`: the dataplane's `[tee]`).
        rate_per_core: Option<u32>,
        /// Bytes per frame (`None`: the dataplane's `[tee]`).
        snaplen: Option<u32>,
        /// Stop by itself after this long.
        duration_ms: Option<u64>,
    },
    /// Stop the live tee on every dataplane.
    TeeStop,
    /// Every dataplane's live tee.
    TeeStatus,
}

/// weir-cp's replies to weirctl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CtlReply {
    /// For [`CtlRequest::Status`].
    Status(CpStatus),
    /// For [`CtlRequest::Stats`]: per dataplane (by name).
    Stats(Vec<(String, DpStats)>),
    /// For [`CtlRequest::RingsShow`].
    Rings(RingsConfig),
    /// For [`CtlRequest::RulesShow`].
    Rules {
        /// The rule.
        rule: Rule,
        /// New flows per second per source prefix.
        new_flows_per_sec: u32,
        /// Source prefix length.
        source_prefix_len: u8,
        /// Why the rule would not spread clients over slices (`Rule::spread_warning`).
        warning: Option<String>,
    },
    /// For [`CtlRequest::SlicesShow`].
    Slices {
        /// APL text.
        apl: String,
        /// Slice bits.
        slice_bits: u8,
        /// Workers.
        workers: u16,
        /// Runs.
        runs: Vec<SliceRun>,
        /// New flows per worker so far, summed over the dataplanes (empty before the
        /// first stats poll).
        new_flows: Vec<u64>,
    },
    /// For [`CtlRequest::BlockList`].
    Blocks(Vec<BlockSpec>),
    /// A change was made; the new policy version.
    Done {
        /// What was done.
        message: String,
        /// Policy version now desired.
        version: u64,
    },
    /// Refused; nothing changed.
    Error {
        /// What was wrong, in one line for the operator.
        message: String,
    },
    /// For [`CtlRequest::ClusterStatus`].
    Cluster(Box<ClusterView>),
    /// A cluster change was committed: the assignment's new epoch.
    ClusterDone {
        /// What was done.
        message: String,
        /// The assignment's epoch after the change.
        epoch: u64,
    },
    /// For [`CtlRequest::TeeStatus`]: the order in force and each dataplane's tee (from
    /// its latest stats; dataplanes not polled yet are left out).
    Tee {
        /// weir-cp's order.
        order: TeeOrder,
        /// Per dataplane (by name).
        dataplanes: Vec<(String, TeeStatus)>,
    },
}

/// The cluster as one weir-cp sees it (`weirctl cluster status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The service name (etcd keys under `/weir/<service>/`).
    pub service: String,
    /// The host this weir-cp runs on.
    pub host: String,
    /// Whether this weir-cp has a live etcd session now.
    pub connected: bool,
    /// The coordinator, if one is elected.
    pub coordinator: Option<String>,
    /// The assignment's epoch (0: none yet).
    pub epoch: u64,
    /// Slices in the layout.
    pub slices: u32,
    /// Every host that is registered or owns slices.
    pub hosts: Vec<ClusterHostView>,
    /// Slice runs → host, covering every slice in order (empty before the first assignment).
    pub runs: Vec<ClusterRunView>,
    /// Handovers in progress.
    pub handovers: Vec<HandoverView>,
    /// The routes this host announces now (BIRD include), as prefixes.
    pub announced: Vec<String>,
    /// The last error of the cluster session, if any.
    pub last_error: Option<String>,
}

/// One host in [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHostView {
    /// Host name.
    pub name: String,
    /// Registered (its lease is alive).
    pub live: bool,
    /// Drained: given no slices until a move gives it some.
    pub drained: bool,
    /// Its handover address (empty when not registered).
    pub handover_addr: String,
    /// Slices it owns.
    pub slices: u32,
}

/// One assignment run in [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRunView {
    /// First slice.
    pub first: u32,
    /// Last slice, inclusive.
    pub last: u32,
    /// Owner.
    pub host: String,
}

/// One handover in [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverView {
    /// Its id (`handovers/<id>` in etcd).
    pub id: String,
    /// First slice.
    pub first: u32,
    /// Last slice, inclusive.
    pub last: u32,
    /// The predecessor (holds the old flows).
    pub from: String,
    /// The new owner.
    pub to: String,
    /// Milliseconds until it ends.
    pub remaining_ms: u64,
    /// Whether the new owner announces the run already.
    pub announced: bool,
}

/// weir-cp's own state, for `weirctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpStatus {
    /// Policy version desired.
    pub version: u64,
    /// Config file in use.
    pub config: String,
    /// Seconds since weir-cp started.
    pub uptime_s: u64,
    /// Each configured dataplane.
    pub dataplanes: Vec<DpLink>,
    /// Policy-loop decisions made so far (blocks added, expired).
    pub decisions: BTreeMap<String, u64>,
}

/// One dataplane link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpLink {
    /// Configured name.
    pub name: String,
    /// Its socket.
    pub socket: String,
    /// Connected now.
    pub connected: bool,
    /// Policy version the dataplane acknowledged last.
    pub applied_version: u64,
    /// Reconnections so far.
    pub reconnects: u64,
    /// Last error, if any.
    pub last_error: Option<String>,
}
