//! weir's control protocol (in [`proto`]: `weirctl` ↔ `weir-cp` ↔ `weir-dp`), its frames
//! ([`frame`]: postcard with limits) and its transport ([`transport`]: unix seqpacket
//! sockets with hello/version and peer credentials). The vocabulary the messages carry
//! (classes, reasons, config types) is `weir-model`'s. It builds without DPDK and without
//! the dataplane.
#![deny(unsafe_code)]

pub mod frame;
pub mod proto;
pub mod transport;
