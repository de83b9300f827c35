//! Rollout buckets: which devices fall inside a staged rollout.
//!
//! A device's bucket for a release is a number in `0..10_000` derived from the device id, the
//! package and the release version alone, so it is stable across launches and servers, and a
//! device inside a 10 % rollout stays inside at 20 % (membership is `bucket < basis points`).
//! Each release draws fresh buckets, so the same devices are not always the first to try.

use sha2::{Digest as _, Sha256};

use crate::{PackageId, ReleaseVersion};

/// Number of buckets: one per basis point.
pub const BUCKETS: u16 = 10_000;

/// The device's bucket for this release of this package, in `0..10_000`.
///
/// Defined as the first 8 bytes, big-endian, of
/// `sha256("baleen-rollout-v1" 0x00 device_id 0x00 package 0x00 version)`, modulo 10 000.
/// The golden vectors in `tests/data/bucket-vectors.json` pin it.
pub fn bucket(device_id: &str, package: &PackageId, version: &ReleaseVersion) -> u16 {
    let mut hasher = Sha256::new();
    hasher.update(b"baleen-rollout-v1\0");
    hasher.update(device_id.as_bytes());
    hasher.update(b"\0");
    hasher.update(package.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(version.to_string().as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    // The remainder is below 10 000, so it fits in a u16.
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u16
}

/// Whether a device with `bucket` is inside a rollout of `basis_points` (0 to 10 000).
pub fn in_rollout(bucket: u16, basis_points: u16) -> bool {
    bucket < basis_points
}
