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
pub mod verdict;

pub use verdict::{Class, Disposition, Reason, Verdict};
