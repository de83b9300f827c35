//! The device's trusted state as values: which release of each package is active, which was
//! before, what is pending verification, the highest index sequence seen and the time the device
//! trusts. Plain data; `store::state` makes it durable.

use std::collections::BTreeMap;

use manifests::{Digest, PackageId, ReleaseVersion};
use serde::{Deserialize, Serialize};

/// A release installed on the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Its version.
    pub version: ReleaseVersion,
    /// The digest of its signed manifest (the file `manifests/<digest>.json`).
    pub manifest: Digest,
}

/// What the device knows of one package.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageState {
    /// The release being served.
    pub active: Option<Installed>,
    /// The release served before it, kept for rollback.
    pub previous: Option<Installed>,
    /// The active release was activated and has not yet been marked ready.
    #[serde(default)]
    pub pending: bool,
    /// Launches since activation without a ready signal.
    #[serde(default)]
    pub pending_launches: u32,
    /// Releases that failed on this device: never installed again.
    #[serde(default)]
    pub bad: Vec<Digest>,
    /// Page opens counted (for planning what to prefetch first).
    #[serde(default)]
    pub opens: u64,
    /// When a page of the package was last opened (Unix seconds).
    #[serde(default)]
    pub last_opened_secs: u64,
    /// Set when the quota evicted the package: its routes stay known, so opens of its pages
    /// (now from the network) still count and can bring it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted: Option<Evicted>,
}

/// What stays known of a package the quota evicted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evicted {
    /// The release that was active.
    pub version: ReleaseVersion,
    /// Its route prefixes, without scheme (`m.example.com/profile/`).
    pub routes: Vec<String>,
}

/// The device's trusted state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Grows with every write; picks the newer slot.
    pub generation: u64,
    /// The highest index sequence accepted, per `app/channel`.
    #[serde(default)]
    pub highest_sequence: BTreeMap<String, u64>,
    /// The latest time the device trusts: the newest wall-clock reading it has seen, never past
    /// the expiry of the newest index it accepted (see `device::time`). A clock set back cannot
    /// revive an expired index, and a clock or index dated years ahead cannot freeze the device.
    #[serde(default)]
    pub last_trusted_secs: u64,
    /// When the newest accepted index expires (Unix seconds; 0 before the first): the bound of
    /// `last_trusted_secs`.
    #[serde(default)]
    pub index_expires_secs: u64,
    /// The ETag of the last index accepted, per `app/channel`, for conditional requests.
    #[serde(default)]
    pub index_etag: BTreeMap<String, String>,
    /// Per package.
    #[serde(default)]
    pub packages: BTreeMap<PackageId, PackageState>,
}
