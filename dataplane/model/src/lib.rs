//! weir's vocabulary: the words every process uses for what the dataplane decides and how
//! it is configured.
//!
//! - [`verdict`]: [`Class`], [`Reason`], [`Verdict`], [`Disposition`] — what the classifier
//!   decides for a frame, and the names that appear in counters, JSON reports and pcap file
//!   names.
//! - [`appmsg`]: the messages the `nats` adapter exchanges with application servers —
//!   the contract an application server in any language implements.
//! - [`config`]: the configuration file (TOML) of `weir-dp` and `weir-cp`, its built-in
//!   default and its validation with `FILE:LINE:COL` errors.
//!
//! It depends on nothing of the dataplane, the terminator or the control plane, so all of
//! them (and the fuzz targets) share it without depending on each other.
#![deny(unsafe_code)]

pub mod appmsg;
pub mod config;
pub mod tee;
pub mod verdict;

pub use verdict::{Class, Disposition, Reason, Verdict};

/// A TCP flow, always written from the client's point of view (inbound: source = client).
/// The dataplane's flow table and the terminators' shard choice both key by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address (inbound source; IPv4 as IPv4-mapped).
    pub client: u128,
    /// Service address (inbound destination).
    pub service: u128,
    /// Client port.
    pub client_port: u16,
    /// Service port.
    pub service_port: u16,
}

/// One worker's counters: what it drained, and how many new flows its slices drew.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: u16,
    /// Known-good packets drained.
    pub known_good: u64,
    /// Assumed-good packets drained.
    pub assumed_good: u64,
    /// Suspect packets drained.
    pub suspect: u64,
    /// Bytes drained (as received on the wire).
    pub bytes: u64,
    /// Drain rounds that found work.
    pub rounds: u64,
    /// New flows whose slice this worker owns (clean SYNs, UDP, echo requests), counted by
    /// the rx cores: the worker's share of new clients.
    pub new_flows: u64,
}
