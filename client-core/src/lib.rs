//! # client-core — the Baleen on-device library
//!
//! Checks the signed index, plans and fetches what is missing, verifies every byte, installs
//! atomically and answers the WebView's requests from local storage. It uses plain threads and
//! blocking IO (no async runtime) and reaches the network only through a host-supplied fetcher.
//!
//! The library is being built; today it re-exports nothing beyond the shared contract it stands on.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The version of the shared contract this library speaks.
pub const RELEASE_FORMAT: u64 = manifests::RELEASE_FORMAT;
