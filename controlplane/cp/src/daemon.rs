//! weir-cp: the daemon.
