//! The vocabulary weir's processes share: the configuration file and its types, verdict
//! and reason names, and (in `proto`) the control protocol between `weirctl`, `weir-cp`
//! and `weir-dp`. It builds without DPDK and without the dataplane.
#![deny(unsafe_code)]

pub mod config;
pub mod frame;
pub mod proto;
pub mod transport;
pub mod verdict;
