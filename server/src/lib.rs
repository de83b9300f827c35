//! # server — the Baleen server library behind the `baleen` command
//!
//! Turns published builds into signed releases, stores them, and serves indexes, manifests, packs
//! and blobs over HTTP. `main.rs` only parses arguments and calls into this library.

#![forbid(unsafe_code)]

pub mod ingest;
pub mod keys;
