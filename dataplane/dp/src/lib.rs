//! weir's dataplane: the classifier and the state behind it (flow table, rate meter,
//! blocklist), the rings and workers, and the replay port.
//!
//! The packet path (`classify`, `flow`, `rate`, `blocklist`, `ring`, `pipeline`) does not
//! allocate, lock or panic per packet. `unsafe` appears only in `pool` (buffer ownership)
//! and `ring` (handle conversion), each block with the invariant that makes it sound.

pub mod blocklist;
pub mod capture;
pub mod classify;
pub mod control;
#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(feature = "dpdk")]
pub mod dpdk_port;
pub mod flow;
pub mod handover;
pub mod l2;
pub mod live;
pub mod pipeline;
pub mod pool;
pub mod rate;
pub mod replay;
pub mod ring;
pub mod serve;
pub mod tap;

pub use classify::{Classifier, Counters, Limits, Policy, Vantage};
