//! # tests — Baleen end to end
//!
//! The harness that runs a real `baleen` process and a real client over HTTP. Scenarios live in
//! this crate's `tests/` folder as one test binary with modules.

#![forbid(unsafe_code)]
