//! Raw bindings to DPDK 22.11: bindgen output over an allowlist, plus `weir_*` wrappers
//! (src/shim.c) for the static inline functions and thread-local macros that have no
//! symbol to link against.
//!
//! Nothing here is safe to call without reading DPDK's documentation; the safe layer is
//! `weir_dp::dpdk`. The `rte_mbuf` layout is known in Rust, so the per-packet reads (data
//! pointer, lengths, flags, dynamic fields) need no C call; the assertions below stop the
//! build if the installed headers disagree with the layout that code assumes.
//!
//! Rejected: generating bindings for everything DPDK's headers declare (they do not compile:
//! `max_align_t`, packed/aligned unions) and binding `per_lcore_*` thread-locals directly
//! (they link, then crash: their TLS model does not survive the Rust declaration).

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

/// The generated bindings; bindgen's bitfield helpers predate `unsafe_op_in_unsafe_fn`.
#[allow(unsafe_op_in_unsafe_fn)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}
pub use sys::*;

include!(concat!(env!("OUT_DIR"), "/flags.rs"));

use core::mem::{offset_of, size_of};

// The mbuf is two 64-byte cache lines in 22.11; the fields weir reads per packet sit at
// the offsets `rte_mbuf_core.h` documents.
const _: () = assert!(size_of::<rte_mbuf>() == 128);
const _: () = assert!(offset_of!(rte_mbuf, buf_addr) == 0);
const _: () = assert!(offset_of!(rte_mbuf, data_off) == 16);
const _: () = assert!(offset_of!(rte_mbuf, nb_segs) == 20);
const _: () = assert!(offset_of!(rte_mbuf, port) == 22);
const _: () = assert!(offset_of!(rte_mbuf, ol_flags) == 24);
const _: () = assert!(offset_of!(rte_mbuf, pkt_len) == 36);
const _: () = assert!(offset_of!(rte_mbuf, data_len) == 40);
