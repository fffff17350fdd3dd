//! weir's terminators: the workers behind the rings that speak to the clients.
//!
//! - [`http`]: HTTP/1.1 on a byte stream (keep-alive, pipelining, bodies, limits).
//! - [`adapter`]: what a request is handed to (`static`, `echo`, `health`, `nats`).
//! - [`nats`]: the `nats` adapter: requests to application servers over NATS, from a
//!   client thread of its own.
//! - [`client`]: a scripted TCP client for tests and benchmarks.
//! - [`tcp`]: userspace TCP for whole slices with smoltcp, sharded so the cost per packet
//!   does not grow with the number of connections.

pub mod adapter;
pub mod client;
pub mod http;
pub mod nats;
pub mod tcp;
