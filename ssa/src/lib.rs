//! Structured Service Addressing.
#![deny(unsafe_code)]
