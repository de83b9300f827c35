//! The values the client takes and returns.

use std::path::PathBuf;

use manifests::{AppId, Channel, HostVersion, PackageId, PublicKey, ReleaseVersion};

use crate::device::DeviceConfig;
use crate::install::Report;
use crate::plan::{Update, Wait};
use crate::store::Recovery;

/// How a client is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The store's directory (app-private storage).
    pub dir: PathBuf,
    /// The server's base URL, such as `https://updates.example.com`.
    pub server: String,
    /// The host app.
    pub app: AppId,
    /// The channel the device follows.
    pub channel: Channel,
    /// A stable, random id of this installation (rollout buckets).
    pub device_id: String,
    /// The host app's version (targeting).
    pub host_version: HostVersion,
    /// The keys the app ships, and how many must sign.
    pub trusted_keys: Vec<PublicKey>,
    /// Distinct trusted keys required per signature.
    pub threshold: usize,
    /// A custom URL scheme `resolve` also accepts (iOS).
    pub custom_scheme: Option<String>,
    /// Launches a new release may take without `mark_ready` before it is rolled back.
    pub max_pending_launches: u32,
    /// The lowest index sequence ever acceptable, shipped with the app: after a state reset the
    /// device still refuses indexes older than the app itself.
    pub sequence_floor: u64,
    /// The app's ingest key (`bik_…`, from `baleen ingest-key create`), sent with events; none:
    /// the device keeps no events and sends none.
    pub ingest_key: Option<String>,
}

impl Config {
    /// The part of the configuration the device core decides with.
    pub fn device(&self) -> DeviceConfig {
        DeviceConfig {
            app: self.app.clone(),
            channel: self.channel.clone(),
            device_id: self.device_id.clone(),
            host_version: self.host_version.clone(),
            max_pending_launches: self.max_pending_launches,
            sequence_floor: self.sequence_floor,
        }
    }
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The sequence of the index in force.
    pub sequence: u64,
    /// False when the server answered `304 Not Modified`, or the stored index was used offline.
    pub changed: bool,
    /// Packages whose selected release differs from the active one.
    pub updates: Vec<Update>,
}

/// What [`crate::Client::update`] did.
#[derive(Clone, Debug, Default)]
pub struct UpdateOutcome {
    /// Updates installed, in order, with how their bytes came.
    pub installed: Vec<(Update, Report)>,
    /// Updates left for later, and why.
    pub waiting: Vec<(PackageId, Wait)>,
}

/// One package as the host's debug screen shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageStatus {
    /// The package.
    pub package: PackageId,
    /// The release served.
    pub active: Option<ReleaseVersion>,
    /// The release kept for rollback.
    pub previous: Option<ReleaseVersion>,
    /// Whether the active release awaits `mark_ready`.
    pub pending: bool,
}

/// The client's state for a debug screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Per package.
    pub packages: Vec<PackageStatus>,
    /// The highest index sequence accepted.
    pub sequence: u64,
    /// Files the resolver answers for.
    pub files: usize,
    /// How the state file was found when the store was opened.
    pub recovery: Recovery,
    /// Events waiting to be sent.
    pub queued_events: usize,
    /// Packages whose stored manifest no longer verified when the store was opened: they serve
    /// nothing until fetched again.
    pub quarantined: Vec<PackageId>,
}
