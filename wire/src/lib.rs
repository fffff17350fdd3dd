//! weir's wire formats: zero-copy, panic-free views of the headers weir classifies, owned
//! representations that emit them, and [`parse_frame`], the one-pass summary the
//! classifier reads.
#![deny(unsafe_code)]

pub mod frame;
mod parse;

pub use frame::{
    ipv4_mapped, is_ipv4_mapped, parse_frame, peek_addresses, tcp_flags, Fragment, Frame,
    Icmpv6, Ip, IpVersion, Malformed, Net, Quote, Tcp, Transport,
};
