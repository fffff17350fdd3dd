//! DPDK ports for the dataplane: EAL start-up, mbuf pools, owned mbufs, ports and lcores.
//!
//! This is the only place in the dataplane besides `ring` and `pool` with `unsafe`: it turns
//! the raw `weir_ffi` calls into owning types whose `Drop` gives every resource back.
//!
//! * [`eal_init`] starts the EAL once per process ([`std::sync::OnceLock`]); a second call
//!   with the same arguments is a no-op, with others an error, because `rte_eal_init` cannot
//!   run twice. Right after it the `weir_stamp` mbuf dynfield and DPDK's rx-timestamp
//!   dynfield/flag are registered, so their offsets are plain atomics read per packet.
//! * [`Mempool`] is a cloneable handle (`Arc`) to an `rte_pktmbuf_pool`. A configured
//!   [`Port`] keeps a clone, so the pool outlives the queues that allocate from it; the pool
//!   is freed only when every mbuf is back, else it is leaked with a warning (freeing memory
//!   that a live [`Mbuf`] points into would be unsound).
//! * [`Mbuf`] owns one packet (`NonNull<rte_mbuf>`, freed on `Drop`) and travels through the
//!   dataplane rings as a pointer ([`crate::ring::RingItem`]). Its accessors read the
//!   `rte_mbuf` fields through the bindgen layout (checked at compile time in `weir_ffi`), so
//!   the data pointer and lengths cost no C call; freeing one does (`rte_pktmbuf_free` is
//!   inline in C, reached through the shim).
//! * [`Burst`] / [`TxBurst`] hold up to [`BURST`] mbufs in a stack array: receiving and
//!   sending allocate nothing. [`FreeBatch`] collects mbufs to free together (a worker's
//!   drained frames; an rx burst's frames that were not queued). Untaken and batched mbufs
//!   are freed with one shim call (`weir_pktmbuf_free_many`): plain one-segment mbufs of one
//!   pool go straight back to its per-lcore cache (`rte_mempool_put_bulk`), anything else
//!   through `rte_pktmbuf_free_bulk`.
//! * [`Port`] is `Sync` so that one port can be polled by several lcores, one queue each.
//!   DPDK's burst functions are not thread-safe per queue, so each queue has a flag taken
//!   with one uncontended atomic swap per burst: a program that keeps one poller per queue
//!   never waits on it, and one that does not is serialised instead of racing. Control
//!   operations (attach, configure, detach) are serialised by one process-wide mutex, since
//!   DPDK's hot-plug and configuration paths are not meant to run concurrently.
//!
//! Rejected: a per-burst `Vec` (capsule) — an allocation per burst on the hot path; a
//! `Port<'pool>` lifetime tying ports to pools — it cannot be stored in long-lived worker
//! state, where the `Arc` clone costs nothing per packet; calling `rte_pktmbuf_mtod` and
//! friends through the shim — a call per packet for a field read.

mod eal;
mod lcore;
mod mbuf;
mod mempool;
mod port;
#[cfg(test)]
mod tests;

pub use eal::{eal_init, private_eal_arg, test_eal_args};
pub use lcore::{launch, lcore_id, wait, worker_lcores, LCORE_INVALID, LCORE_PANICKED};
pub use mbuf::{Burst, FreeBatch, Mbuf, TxBurst, BURST};
pub use mempool::{Mempool, DEFAULT_DATA_ROOM};
pub use port::{Port, PortInfo, PortReady, PortSetup, PortStats, TxResult, RSS_ADDRESS};

use std::ffi::CStr;

/// A DPDK error, with the value that caused it and DPDK's own text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    /// The EAL is not running.
    #[error("DPDK EAL is not initialised: call eal_init first")]
    NotInitialised,
    /// `rte_eal_init` failed.
    #[error("rte_eal_init {args:?} failed: {text} (rte_errno {code})")]
    Init {
        /// The arguments given.
        args: Vec<String>,
        /// `rte_errno`.
        code: i32,
        /// `rte_strerror(rte_errno)`.
        text: String,
    },
    /// The EAL already runs with other arguments; it can start once per process.
    #[error(
        "DPDK EAL already initialised with {running:?}; cannot start it again with \
         {requested:?} (the EAL starts once per process)"
    )]
    AlreadyInitialised {
        /// The arguments it runs with.
        running: Vec<String>,
        /// The arguments of this call.
        requested: Vec<String>,
    },
    /// A name or argument cannot be passed to C (interior NUL) or is too long.
    #[error("{what} {value:?} cannot be passed to DPDK: {why}")]
    InvalidName {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong with the value.
        why: &'static str,
    },
    /// Registering an mbuf dynamic field or flag failed.
    #[error("registering mbuf dynfield {name:?} failed: {text} (rte_errno {code})")]
    Dynfield {
        /// The field.
        name: &'static str,
        /// `rte_errno`.
        code: i32,
        /// DPDK's text.
        text: String,
    },
    /// `rte_pktmbuf_pool_create` failed.
    #[error(
        "creating mbuf pool {name:?} ({mbufs} mbufs, cache {cache}, data room {data_room}) \
         failed: {text} (rte_errno {code})"
    )]
    Mempool {
        /// Pool name.
        name: String,
        /// Mbufs asked for.
        mbufs: u32,
        /// Per-lcore cache asked for.
        cache: u32,
        /// Data room asked for.
        data_room: u16,
        /// `rte_errno`.
        code: i32,
        /// DPDK's text.
        text: String,
    },
    /// Hot-plugging a device failed.
    #[error("attaching device {devargs:?} failed: {text} ({code})")]
    Probe {
        /// The device arguments.
        devargs: String,
        /// The negative return code.
        code: i32,
        /// DPDK's text.
        text: String,
    },
    /// No ethdev port has this name.
    #[error("no DPDK port named {name:?} (ports: {known:?})")]
    NoSuchPort {
        /// The name looked up.
        name: String,
        /// The ports that exist.
        known: Vec<String>,
    },
    /// Another `Port` value already owns this port.
    #[error("DPDK port {name:?} (id {id}) is already owned by another Port in this process")]
    PortInUse {
        /// Port name.
        name: String,
        /// Port id.
        id: u16,
    },
    /// A port operation failed.
    #[error("port {port:?}: {op} failed: {text} ({code})")]
    Port {
        /// Port name.
        port: String,
        /// The DPDK call.
        op: &'static str,
        /// The negative return code.
        code: i32,
        /// DPDK's text.
        text: String,
    },
    /// More queues were asked for than the device has.
    #[error(
        "port {port:?} (driver {driver}): {requested} {kind} queues requested but the \
         device has at most {max}; lower {kind}_queues to {max} or less"
    )]
    TooManyQueues {
        /// Port name.
        port: String,
        /// Driver name.
        driver: String,
        /// "rx" or "tx".
        kind: &'static str,
        /// Queues asked for.
        requested: u16,
        /// The device's maximum.
        max: u16,
    },
    /// RSS was asked for but the device hashes none of the requested packet types.
    #[error(
        "port {port:?} (driver {driver}): {queues} rx queues need RSS, but the device \
         hashes none of the requested types {requested:#x} (it offers {offered:#x}); use \
         one rx queue or a device with RSS"
    )]
    NoRss {
        /// Port name.
        port: String,
        /// Driver name.
        driver: String,
        /// Rx queues asked for.
        queues: u16,
        /// Requested `rss_hf`.
        requested: u64,
        /// The device's `flow_type_rss_offloads`.
        offered: u64,
    },
    /// The port has not been configured.
    #[error("port {port:?}: not configured; call configure first")]
    NotConfigured {
        /// Port name.
        port: String,
    },
    /// `rte_eal_remote_launch` was refused.
    #[error("launching on lcore {lcore} failed: {text} ({code}); worker lcores: {workers:?}")]
    Launch {
        /// The lcore.
        lcore: u32,
        /// The negative return code, or -EINVAL for a lcore that is not a worker.
        code: i32,
        /// DPDK's description of the error (`rte_strerror`).
        text: String,
        /// The EAL's worker lcores.
        workers: Vec<u32>,
    },
}

/// DPDK's text for a (positive or negative) error number.
fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror accepts any int and returns a pointer to a NUL-terminated string
    // (static, or in a thread-local buffer valid until the next call on this thread), which is
    // copied out at once.
    let text = unsafe { CStr::from_ptr(weir_ffi::rte_strerror(code.saturating_abs())) };
    text.to_string_lossy().into_owned()
}

/// The calling thread's `rte_errno`.
fn errno() -> i32 {
    // SAFETY: weir_errno only reads the calling thread's rte_errno.
    unsafe { weir_ffi::weir_errno() }
}
