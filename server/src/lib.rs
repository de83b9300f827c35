//! # server — the Baleen server library behind the `baleen` command
//!
//! Turns published builds into signed releases, stores them, and serves indexes, manifests and
//! blobs over HTTP; release engineers promote, stage and roll back through it. `main.rs` only
//! parses arguments and calls into this library.
//!
//! Where to start: [`service::Service`] holds the stores and the signing key; [`publish`] and
//! [`channel`] are what it does; [`gc`] removes what [`retention`] lets go; [`http`] maps
//! requests onto it; [`blob_store`] and [`meta_store`] are the storage traits with their embedded
//! engines; [`api`] is the JSON the admin API and the command line exchange.

#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod auth;
pub mod blob_store;
pub mod channel;
pub mod config_file;
pub mod console;
pub mod data_dir;
pub mod demo;
pub mod documents;
pub mod error;
pub mod gc;
pub mod hot_blobs;
pub mod http;
pub mod ingest;
pub mod keys;
pub mod manifest_docs;
pub mod meta_store;
pub mod metrics;
pub mod migrate;
pub mod pack;
pub mod precompress;
pub mod publish;
pub mod ramp;
pub mod rate_limit;
pub mod remote;
pub mod retention;
pub mod service;
pub mod stats;
#[cfg(test)]
pub(crate) mod test_service;
pub mod trust;
pub mod watch;

pub use error::{Error, Result};
