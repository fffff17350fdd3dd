//! weir-cp.
