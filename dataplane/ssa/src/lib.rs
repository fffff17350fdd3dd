//! Structured Service Addressing (SSA): the address arithmetic shared by the dataplane, the
//! control plane and clients.
//!
//! - [`prefix`]: [`Prefix`], one 128-bit address space for IPv6 and IPv4-mapped IPv4.
//! - [`apl`]: the RFC 3123 APL presentation format a service publishes in DNS.
//! - [`service`]: [`ServicePrefixes`], longest-match lookup over an APL (negations carve holes).
//! - [`rule`]: the SSA rules: `check` on every packet, `pick` on the client; one type for
//!   the config file, the control protocol and the packet path (see [`rule::serde_forms`]).
//! - [`slice`]: [`SliceMap`], service prefixes cut into slices that map to workers.
//! - [`siphash`]: SipHash-2-4, the keyed hash under `keyed-hash`, `time-hop` and `content`.
//!
//! Everything a packet touches (`Prefix::contains`, `ServicePrefixes::lookup`, `Rule::check`,
//! `SliceMap::slice_of` / `worker_of`) is total: no allocation, no lock, no panic, whatever the
//! input. Validation happens once, when a configuration is built.
//!
//! ```
//! use weir_ssa::{PickContext, Rule, ServicePrefixes, SliceMap};
//!
//! // The built-in default: [service] apl, slice_bits = 14, src-mix over the source /64, 2 workers.
//! let service = ServicePrefixes::parse("2:2001:db8:5::/64").unwrap();
//! let slices = SliceMap::new(service.prefixes(), 14, 2).unwrap();
//! let rule = Rule::default();
//!
//! // Client: pick a destination for its source.
//! let src: u128 = 0x2001_0db8_00ff_0000_0000_0000_0000_0001; // 2001:db8:ff::1
//! let dst = rule.pick(&service.prefixes()[0], src, &PickContext::default()).unwrap();
//! assert_eq!(dst, 0x2001_0db8_0005_0000_f41c_bf9b_a428_0420); // DESIGN.md's example
//!
//! // Dataplane, per packet: service prefix, rule, slice, worker.
//! let idx = service.lookup(dst).unwrap();
//! assert!(rule.check(src, dst, 0));
//! let slice = slices.slice_of(idx, dst);
//! assert_eq!((slice, slices.worker_of(slice)), (15623, 1)); // bits [64, 78) of dst
//! assert_eq!(slices.slice_prefix(slice).unwrap().to_string(), "2001:db8:5:0:f41c::/78");
//! ```
#![deny(unsafe_code)]

pub mod apl;
pub mod checker;
mod error;
pub mod prefix;
pub mod rule;
pub mod service;
pub mod siphash;
pub mod slice;

pub use apl::{Apl, AplError, AplItem, AplItemError};
pub use checker::Checker;
pub use error::SsaError;
pub use prefix::{ipv4_mapped, Prefix};
pub use rule::{
    fmix64, key_hex, parse_key, PickContext, PickError, Rule, RuleTextError, CONTENT_KEY, MAX_SKEW,
    MAX_SRC_MIX_LEN,
};
pub use service::{ServicePrefixes, MAX_APL_ITEMS};
pub use siphash::siphash24;
pub use slice::{SliceMap, DEFAULT_SLICE_BITS, MAX_SLICE_BITS, MAX_SLICE_PREFIXES};
