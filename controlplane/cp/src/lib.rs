//! weir's control plane: the `weir-cp` daemon (desired state, dataplane links, the
//! security policy loop, metrics, the operator socket) and `weirctl`'s client side.

pub mod ctl;
pub mod daemon;
