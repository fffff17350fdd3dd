//! weir's dataplane process, `weir-dp`: the rx core and its decisions, the rings and the
//! workers behind them, and the ports in front.
//!
//! - Deciding: [`classify`] (DESIGN.md's eleven steps) over [`flow`], [`rate`] and
//!   [`blocklist`]; [`host`] answers NDP/ARP for weir's addresses.
//! - The rx core: [`rx`] — the one loop every port runs (burst → classify → queue / host
//!   path / tee → tx → housekeeping).
//! - Ports: [`port`] — the trait and its backends (capture replay, capture as a live
//!   source, TAP, and DPDK with `--features dpdk`); [`capture`] reads pcap/pcapng.
//! - Queueing: [`ring`] (SPSC rings), [`pool`] (software packet buffers, and replay's
//!   tallies of lengths), [`pipeline`] (rings per rx core × worker × class, the workers'
//!   drain rounds, the terminators' way back); [`terminators`] (workers that run a
//!   smoltcp terminator).
//! - Processes: [`replay`] (`weir-dp replay`), [`run`] (`weir-dp run`), [`state`] (what
//!   the rx cores, workers and the control thread share), [`control`] (the control socket
//!   weir-cp talks to).
//!
//! The packet path does not allocate, lock or panic per packet. `unsafe` lives in `pool`
//! (buffer ownership), `ring` (handle conversion), `table` (the huge-page hint of the big
//! tables), `port::tap` (the TUN ioctls) and, with the `dpdk` feature, `dpdk` (the safe
//! layer over `weir-ffi`); every block says which invariant makes it sound.

pub mod blocklist;
pub mod capture;
pub mod classify;
pub mod control;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod flow;
pub mod handover;
pub mod host;
pub mod output;
pub mod pipeline;
pub mod pool;
pub mod port;
pub mod rate;
pub mod replay;
pub mod ring;
pub mod run;
pub mod rx;
pub mod state;
pub mod table;
pub mod tee;
pub mod terminators;
pub mod verdicts;

pub use classify::{Classifier, Counters, Limits, Policy, Vantage};
