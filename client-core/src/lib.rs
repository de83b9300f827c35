//! # client-core — the Baleen on-device library
//!
//! Checks the signed index, fetches what is missing (diff pack, full pack or single blobs),
//! verifies every byte against the signed manifest, installs with one atomic state switch, and
//! answers the WebView's requests from local storage. A new release stays pending until the page
//! says it is ready; a failure or too many launches without that signal roll it back.
//!
//! It uses plain threads and blocking IO (no async runtime) and reaches the network only through
//! a host-supplied [`fetch::Fetcher`].
//!
//! Where to start: [`device::Device`] is the pure core that makes every decision (sans IO, tested
//! with a fake clock); [`Client`] is the thin IO shell around it and the whole API;
//! [`resolve::Resolver`] is the lock-free hot path; [`store`] is what lies on disk.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod client;
pub mod clock;
pub mod device;
pub mod error;
pub mod fetch;
pub mod ffi;
pub mod install;
mod net;
pub mod plan;
pub mod quota;
mod releases;
pub mod resolve;
pub mod store;

pub use api::{CheckOutcome, Config, PackageStatus, Status, UpdateOutcome};
pub use client::Client;
pub use error::{BaleenError, Error, Result};
pub use plan::{Conditions, Network, Update, Wait};
pub use resolve::Resolved;

uniffi::setup_scaffolding!();
