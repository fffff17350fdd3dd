//! weir dataplane.
