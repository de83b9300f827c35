//! Metadata storage: packages, releases, channels and their history, indexes, tokens and the
//! audit log.
//!
//! The trait is what the rest of the server sees; `sqlite` is the embedded default. Channel
//! changes are compare-and-swap on the channel's sequence ([`MetaStore::commit_channel`]), so any
//! number of stateless server replicas can share one store, and a PostgreSQL engine needs no
//! server-side locking to match.
//!
//! A channel is one small row (its sequence and the lifetime of its index) and one row per
//! package, which keeps the package's index entry and the sequence of its last change. A change
//! writes one package row and the channel row, whatever the number of packages; the signed index
//! and deltas are built from the rows when first asked for.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use async_trait::async_trait;
use manifests::{
    AppId, Channel, Digest, HostRequirement, PackageEntry, PackageId, Prefetch, ReleaseVersion,
    Timestamp, UrlPrefix,
};

use crate::error::Result;

pub mod postgres;
pub(crate) mod rows;
pub mod sqlite;

#[cfg(test)]
mod tests;

/// Where the metadata lives, as `--meta` (`BALEEN_META`) names it: `sqlite` (the default, the
/// data directory's `meta.sqlite3`) or a PostgreSQL URL, which any number of replicas share.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum MetaLocation {
    /// SQLite in the data directory.
    #[default]
    DataDir,
    /// PostgreSQL at this URL (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`).
    Postgres {
        /// The URL, password included.
        url: String,
    },
}

impl std::fmt::Debug for MetaLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaLocation::DataDir => f.write_str("DataDir"),
            MetaLocation::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &postgres::redact(url))
                .finish(),
        }
    }
}

impl MetaLocation {
    /// Parses `sqlite` or `postgres://…` (`postgresql://…`).
    ///
    /// # Errors
    /// [`crate::error::Error::InvalidSetting`] (setting `meta`) for anything else.
    pub fn parse(value: &str) -> Result<MetaLocation> {
        if value.is_empty() || value == "sqlite" {
            return Ok(MetaLocation::DataDir);
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(MetaLocation::Postgres {
                url: value.to_owned(),
            });
        }
        Err(crate::error::Error::InvalidSetting {
            setting: "meta",
            value: postgres::redact(value),
            reason: "expected `sqlite` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`".into(),
        })
    }

    /// Opens the store (creating and migrating it if needed); SQLite in `data_dir`.
    ///
    /// # Errors
    /// What opening or migrating the store fails with.
    pub async fn open(&self, data_dir: &std::path::Path) -> Result<std::sync::Arc<dyn MetaStore>> {
        Ok(match self {
            MetaLocation::DataDir => std::sync::Arc::new(sqlite::SqliteMetaStore::open(
                &data_dir.join("meta.sqlite3"),
            )?),
            MetaLocation::Postgres { url } => {
                std::sync::Arc::new(postgres::PostgresMetaStore::connect(url).await?)
            }
        })
    }
}

/// One published release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// The package.
    pub package: PackageId,
    /// The version.
    pub version: ReleaseVersion,
    /// The digest of the signed manifest's signed part.
    pub manifest_digest: Digest,
    /// The signed manifest envelope as served.
    pub manifest: Vec<u8>,
    /// A digest of what makes two publishes "the same": files, entry, routes and requirement.
    pub content_key: Digest,
    /// Supported host-app versions.
    pub requires: HostRequirement,
    /// Sum of file sizes.
    pub size_bytes: u64,
    /// Number of files.
    pub file_count: u64,
    /// Publication time.
    pub created_at: Timestamp,
    /// Who published it (token name).
    pub publisher: String,
    /// Release notes.
    pub notes: String,
    /// The publisher's fetch priority for devices, higher first.
    pub priority: u8,
    /// When devices may fetch the release before it is opened.
    pub prefetch: Prefetch,
    /// The URL prefixes it answers for (also in its manifest), which its package claims in its
    /// app.
    pub routes: Vec<UrlPrefix>,
}

/// What one channel says of one package.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelPackage {
    /// The release every device gets.
    pub stable: Option<ReleaseVersion>,
    /// A release being rolled out.
    pub candidate: Option<ReleaseVersion>,
    /// The candidate's rollout in basis points.
    pub rollout_basis_points: u16,
    /// Whether the rollout is paused (its percentage may not change until resumed).
    pub paused: bool,
}

/// A channel of one app: every package's state and the sequence of its current index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelState {
    /// The sequence of the channel's current index; 0 before the first.
    pub sequence: u64,
    /// Per package.
    pub packages: BTreeMap<PackageId, ChannelPackage>,
}

/// A channel's small row: its sequence and the lifetime of its index at that sequence. Every
/// change compare-and-swaps the sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelHead {
    /// The sequence of the channel's current index; at least 1.
    pub sequence: u64,
    /// When the index at this sequence was issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The lowest sequence a delta can start from: 1, or for a channel older than per-package
    /// entries, its sequence when the store was upgraded.
    pub delta_floor: u64,
}

/// One package's row on a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRow {
    /// The package.
    pub package: PackageId,
    /// Its state on the channel.
    pub state: ChannelPackage,
    /// Its index entry, computed when it last changed. None when it has neither a stable release
    /// nor a candidate (it is not in the index), or, in a store upgraded from before entries were
    /// kept, when it was not computed yet.
    pub entry: Option<PackageEntry>,
    /// The sequence of the change that last wrote the row.
    pub sequence: u64,
}

impl ChannelRow {
    /// Whether the package is in the channel's index.
    pub fn is_listed(&self) -> bool {
        self.state.stable.is_some() || self.state.candidate.is_some()
    }
}

/// A signed index as stored and served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredIndex {
    /// Its sequence.
    pub sequence: u64,
    /// The digest of its signed part.
    pub digest: Digest,
    /// The envelope bytes.
    pub bytes: Vec<u8>,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
}

/// One change in a channel's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When.
    pub at: Timestamp,
    /// Which package.
    pub package: PackageId,
    /// What: `promote`, `rollout`, `pause`, `resume`, `complete`, `rollback` (which also records
    /// dropping a candidate).
    pub action: String,
    /// The version before the change (stable or candidate, as the action concerns).
    pub from_version: Option<ReleaseVersion>,
    /// The version after.
    pub to_version: Option<ReleaseVersion>,
    /// The rollout after the change, for rollout actions.
    pub rollout_basis_points: Option<u16>,
    /// Who (token name).
    pub actor: String,
    /// Why, as the operator said.
    pub reason: String,
    /// The index sequence the change produced.
    pub sequence: u64,
    /// The package's state on the channel before the change, which an undo restores (none for
    /// changes recorded before undo existed).
    pub before: Option<ChannelPackage>,
}

/// A write to the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// When.
    pub at: Timestamp,
    /// Who (token name, or `cli` for local commands).
    pub actor: String,
    /// What (`publish`, `promote`, `token.create`…).
    pub action: String,
    /// On what (`checkout@1.4.0`, `shop/production`…).
    pub target: String,
    /// Details as JSON text.
    pub detail: String,
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Publish releases.
    Publish,
    /// Promote, stage, roll back (and publish).
    Release,
    /// Everything.
    Admin,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Release => "release",
            Scope::Admin => "admin",
        }
    }

    /// Parses a scope name.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "publish" => Some(Scope::Publish),
            "release" => Some(Scope::Release),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a token of this scope may act with `needed`'s rights.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// An API token; only its hash is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// A human name, shown as the actor in history and audit.
    pub name: String,
    /// sha256 of the secret token.
    pub hash: Digest,
    /// What it may do.
    pub scope: Scope,
    /// If set, the only app it may act in (a token bound to a package names its app; older
    /// ones may not, and then act only on a package that exists).
    pub app: Option<AppId>,
    /// If set, the only package it may act on.
    pub package: Option<PackageId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops being accepted, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked; a revoked token is never accepted again.
    pub revoked_at: Option<Timestamp>,
    /// When it was last accepted (recorded at most once a minute, see [`TOKEN_USE_GRANULARITY_SECS`]).
    pub last_used_at: Option<Timestamp>,
}

/// A token's use is written (its last-used time and a `token.use` audit entry) at most once per
/// this many seconds, so that a busy script does not turn every read into a database write.
pub const TOKEN_USE_GRANULARITY_SECS: u64 = 60;

/// The outcome of inserting a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The release is new.
    New,
    /// The same package and version exist already; here they are.
    Existing(Box<ReleaseRecord>),
}

/// Counts devices reported for one release on one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseStats {
    /// The package.
    pub package: Option<PackageId>,
    /// The release.
    pub version: Option<ReleaseVersion>,
    /// Installs reported.
    pub installed: u64,
    /// Activations reported.
    pub activated: u64,
    /// Boot verifications passed.
    pub ready: u64,
    /// Failures reported.
    pub failed: u64,
    /// Rollbacks on devices reported.
    pub rolled_back: u64,
    /// Page opens.
    pub opens: u64,
    /// Opens answered from the device.
    pub offline_hits: u64,
    /// Opens shown within one second.
    pub under_1s: u64,
    /// Opens by time to first paint ([`manifests::PAINT_MS_BOUNDS`]), from devices that report
    /// it.
    pub paint_ms: [u64; manifests::PAINT_BUCKETS],
}

/// One figure of one release on one UTC day: the devices that first reported a state that day
/// (`installed`, `activated`, `ready`, `failed`, `rolled_back`), or the day's `opens`,
/// `offline_hits` and `under_1s`. Day 0 holds states recorded before days were kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayFigure {
    /// The release.
    pub version: ReleaseVersion,
    /// Days since the Unix epoch (UTC).
    pub day: u64,
    /// Which figure.
    pub figure: String,
    /// Its count that day.
    pub count: u64,
}

/// Most page opens one device adds to one release's figures per day (UTC): far above what a
/// person opens, far below what would move an open rate.
pub const MAX_OPENS_PER_DEVICE_DAY: u64 = 1_000;

/// One device's reports on one release in one batch, as the server counts them: the states it
/// reported (each counted once per device, ever) and its opens (bounded per device and day, see
/// [`MAX_OPENS_PER_DEVICE_DAY`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceReport {
    /// The package.
    pub package: Option<PackageId>,
    /// The release.
    pub version: Option<ReleaseVersion>,
    /// The states reported: `installed`, `activated`, `ready`, `failed`, `rolled_back`.
    pub states: Vec<&'static str>,
    /// Page opens reported.
    pub opens: u64,
    /// Of them, answered from the device.
    pub offline_hits: u64,
    /// Of them, shown within one second.
    pub under_1s: u64,
    /// Of them, by time to first paint ([`manifests::PAINT_MS_BOUNDS`]).
    pub paint_ms: [u64; manifests::PAINT_BUCKETS],
}

/// An app's ingest key: public (shipped in the app) but known to the server, so that event
/// figures come only from apps that hold one; only its hash is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestKeyRecord {
    /// The app it reports for.
    pub app: AppId,
    /// Its name, unique in the app (`android-5.3`…).
    pub name: String,
    /// sha256 of the key.
    pub hash: Digest,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key is never accepted again.
    pub revoked_at: Option<Timestamp>,
}

/// A console session: a browser signed in with a token. Only hashes are stored: of the session's
/// secret (the cookie) and of the token it was opened with, which is checked again on every
/// request, so that revoking the token ends its sessions at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// sha256 of the cookie's secret.
    pub id: Digest,
    /// sha256 of the token the session was opened with.
    pub token: Digest,
    /// The secret every form of the session carries (CSRF), random per session.
    pub csrf: String,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// A built pack, stored as a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackRecord {
    /// The blob holding the pack.
    pub digest: Digest,
    /// Its size.
    pub size_bytes: u64,
}

/// What a collection decides from ([`crate::retention::plan`]), read in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionFacts {
    /// Every release.
    pub releases: Vec<ReleaseFact>,
    /// The releases the channels' current index entries name (stable, candidate, older).
    pub named: Vec<(PackageId, ReleaseVersion)>,
    /// Every release a channel's history names, newest entry first.
    pub history: Vec<HistoryMention>,
    /// Every built pack.
    pub packs: Vec<PackFact>,
    /// The newest history entry's id (0 for none): a change of any channel moves it, so a
    /// removal decided from these facts commits only if it did not move
    /// ([`MetaStore::delete_releases`]).
    pub history_mark: u64,
}

/// One release, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseFact {
    /// The package.
    pub package: PackageId,
    /// The version.
    pub version: ReleaseVersion,
    /// The digest of its signed manifest.
    pub manifest_digest: Digest,
    /// Publication time.
    pub created_at: Timestamp,
    /// Sum of file sizes.
    pub size_bytes: u64,
    /// Number of files.
    pub file_count: u64,
}

/// One history entry, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryMention {
    /// The app.
    pub app: AppId,
    /// The channel.
    pub channel: Channel,
    /// The package.
    pub package: PackageId,
    /// The version before the change.
    pub from_version: Option<ReleaseVersion>,
    /// The version after.
    pub to_version: Option<ReleaseVersion>,
    /// When.
    pub at: Timestamp,
}

/// One built pack, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackFact {
    /// The package.
    pub package: PackageId,
    /// The release a diff pack starts from; none for a full pack.
    pub from: Option<ReleaseVersion>,
    /// The release it brings.
    pub to: ReleaseVersion,
    /// The blob holding it.
    pub digest: Digest,
    /// Its size.
    pub size_bytes: u64,
}

/// A channel change to commit atomically.
#[derive(Clone, Debug)]
pub struct ChannelCommit {
    /// The app.
    pub app: AppId,
    /// The channel.
    pub channel: Channel,
    /// The sequence the change was computed from; the commit fails if another won the race.
    pub expected_sequence: u64,
    /// The new sequence, above `expected_sequence`.
    pub sequence: u64,
    /// When the index at the new sequence is issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The one package that changed (none for a plain re-signing).
    pub package: Option<PackageChange>,
    /// History entries for the change (none for a plain re-signing).
    pub history: Vec<HistoryEntry>,
    /// The audit entry, if the change was an operator's.
    pub audit: Option<AuditEntry>,
}

/// The new row of the package a channel change is about.
#[derive(Clone, Debug)]
pub struct PackageChange {
    /// The package.
    pub package: PackageId,
    /// Its new state.
    pub state: ChannelPackage,
    /// Its new index entry; none when it leaves the index.
    pub entry: Option<PackageEntry>,
}

/// A lock held across every server sharing the store, released when dropped, and by the store
/// itself when the holding process dies (a killed holder never keeps it).
pub struct StoreLock {
    _held: Option<Box<dyn Send + Sync>>,
}

impl StoreLock {
    /// A lock that only this process could contend for, which its own locks already order: what
    /// an engine that one process owns hands out.
    pub fn local() -> StoreLock {
        StoreLock { _held: None }
    }

    /// A lock released when `held` is dropped.
    pub fn held_by(held: Box<dyn Send + Sync>) -> StoreLock {
        StoreLock { _held: Some(held) }
    }
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self._held.is_some() {
            "StoreLock(shared store)"
        } else {
            "StoreLock(local)"
        })
    }
}

/// A change another server sharing the store committed, which this one may hold in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChange {
    /// A channel moved to a new sequence.
    Channel {
        /// The app.
        app: AppId,
        /// The channel.
        channel: Channel,
        /// Its new sequence.
        sequence: u64,
    },
    /// A release's signed manifest changed (it gained signatures) or went (it was collected).
    Manifest(Digest),
    /// The feed was interrupted: changes may have been missed.
    Missed,
}

/// Metadata storage.
#[async_trait]
pub trait MetaStore: Send + Sync + std::fmt::Debug + 'static {
    /// The app a package belongs to, if the package exists.
    async fn package_app(&self, package: &PackageId) -> Result<Option<AppId>>;

    /// Every package of an app.
    async fn app_packages(&self, app: &AppId) -> Result<Vec<PackageId>>;

    /// Inserts a release, creating its package (in `app`) on first publish. If the package
    /// exists in another app, fails with a conflict; if the version exists, returns it unchanged.
    ///
    /// Routes are owned, in the same transaction: the app's first release declares the app's
    /// origins (those of its routes) unless they were declared before; a route outside the
    /// declared origins is refused ([`crate::error::Error::RouteOutsideOrigins`]), and so is one
    /// that overlaps a route of any release of another package of the app
    /// ([`crate::error::Error::RouteTaken`]).
    async fn insert_release(
        &self,
        app: &AppId,
        release: &ReleaseRecord,
        audit: &AuditEntry,
    ) -> Result<Inserted>;

    /// One release.
    async fn release(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
    ) -> Result<Option<ReleaseRecord>>;

    /// A release by the digest of its manifest.
    async fn release_by_manifest(&self, digest: &Digest) -> Result<Option<ReleaseRecord>>;

    /// Every release of a package, newest version first.
    async fn releases(&self, package: &PackageId) -> Result<Vec<ReleaseRecord>>;

    /// The state of an app's channel (empty with sequence 0 if it never changed).
    async fn channel_state(&self, app: &AppId, channel: &Channel) -> Result<ChannelState>;

    /// The channel's sequence (0 if it never changed) and one package's state there (the
    /// default if the package was never on it): what a change of that package starts from.
    async fn channel_package(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
    ) -> Result<(u64, ChannelPackage)>;

    /// The channel's row, if it ever changed.
    async fn channel_head(&self, app: &AppId, channel: &Channel) -> Result<Option<ChannelHead>>;

    /// The channel's row and every package row, read together, if it ever changed: what an
    /// index and its deltas are built from.
    async fn channel_rows(
        &self,
        app: &AppId,
        channel: &Channel,
    ) -> Result<Option<(ChannelHead, Vec<ChannelRow>)>>;

    /// Stores entries computed for rows that have none yet (a store upgraded from before entries
    /// were kept); rows that got one meanwhile are left as they are.
    async fn fill_entries(
        &self,
        app: &AppId,
        channel: &Channel,
        entries: &[(PackageId, PackageEntry)],
    ) -> Result<()>;

    /// Every (app, channel) that ever changed.
    async fn channels(&self) -> Result<Vec<(AppId, Channel)>>;

    /// Commits a channel change if the channel is still at `expected_sequence`: the channel row,
    /// the package row, history and audit in one transaction. Returns false (and changes
    /// nothing) if another change won the race.
    async fn commit_channel(&self, commit: &ChannelCommit) -> Result<bool>;

    /// The last signed index stored for a channel (it may be older than the channel's sequence:
    /// indexes are signed when first asked for).
    async fn index(&self, app: &AppId, channel: &Channel) -> Result<Option<StoredIndex>>;

    /// Keeps a signed index, unless one of a higher sequence is kept already.
    async fn store_index(&self, app: &AppId, channel: &Channel, index: &StoredIndex) -> Result<()>;

    /// A channel's history, newest first, optionally for one package only.
    async fn history(
        &self,
        app: &AppId,
        channel: &Channel,
        package: Option<&PackageId>,
    ) -> Result<Vec<HistoryEntry>>;

    /// The built pack from `from` (none: full pack) to `to`, if it was built.
    async fn pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
    ) -> Result<Option<PackRecord>>;

    /// Records a built pack (a no-op if it was recorded already).
    async fn insert_pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
        pack: &PackRecord,
    ) -> Result<()>;

    /// Adds device reports to the per-release counters of a channel; `deltas` name releases that
    /// exist.
    async fn add_stats(
        &self,
        app: &AppId,
        channel: &Channel,
        deltas: &[ReleaseStats],
    ) -> Result<()>;

    /// Counts one device's reports on a channel: each state at most once per device and release
    /// (a row per device, keyed by `device`, a hash of its id), opens up to
    /// [`MAX_OPENS_PER_DEVICE_DAY`] per device, release and `day` (days since the epoch);
    /// `reports` name releases that exist.
    async fn add_device_reports(
        &self,
        app: &AppId,
        channel: &Channel,
        device: &Digest,
        day: u64,
        reports: &[DeviceReport],
    ) -> Result<()>;

    /// Stores an ingest key and writes `audit`.
    ///
    /// # Errors
    /// [`crate::error::Error::Conflict`] when the app has a key of that name.
    async fn insert_ingest_key(&self, key: &IngestKeyRecord, audit: &AuditEntry) -> Result<()>;

    /// The ingest key with this hash.
    async fn ingest_key(&self, hash: &Digest) -> Result<Option<IngestKeyRecord>>;

    /// Every ingest key of `app`, revoked ones included, oldest first.
    async fn ingest_keys(&self, app: &AppId) -> Result<Vec<IngestKeyRecord>>;

    /// Revokes `app`'s ingest key `name` at `at` and writes `audit`; a key revoked before keeps
    /// its first revocation time. Returns the key as it is now.
    ///
    /// # Errors
    /// [`crate::error::Error::NotFound`] when the app has no key of that name.
    async fn revoke_ingest_key(
        &self,
        app: &AppId,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<IngestKeyRecord>;

    /// The counters of every release reported on a channel: states in distinct devices (plus
    /// any event counts recorded before devices were counted), opens in events.
    async fn stats(&self, app: &AppId, channel: &Channel) -> Result<Vec<ReleaseStats>>;

    /// One package's figures per release and day on a channel, oldest day first.
    async fn daily_figures(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
    ) -> Result<Vec<DayFigure>>;

    /// Stores `ramp` (one per app, channel and package, replacing the one before) and writes
    /// `audit` with it.
    async fn put_ramp(
        &self,
        ramp: &crate::ramp::RampRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;

    /// Every stored ramp, ended ones included.
    async fn ramps(&self) -> Result<Vec<crate::ramp::RampRecord>>;

    /// The origins an app's packages may claim routes in, once declared (by its first publish,
    /// or by [`MetaStore::set_app_origins`]).
    async fn app_origins(&self, app: &AppId) -> Result<Option<Vec<String>>>;

    /// Declares the origins of `app` and writes `audit`.
    ///
    /// # Errors
    /// [`crate::error::Error::Conflict`] when a release of the app has a route outside them.
    async fn set_app_origins(
        &self,
        app: &AppId,
        origins: &[String],
        audit: &AuditEntry,
    ) -> Result<()>;

    /// The signed key lists stored for `app` (versions from 2; version 1 is derived from the
    /// server's key), oldest first.
    async fn key_lists(&self, app: &AppId) -> Result<Vec<Vec<u8>>>;

    /// Stores version `version` of `app`'s key list and writes `audit`; false, storing nothing,
    /// when that version exists already.
    async fn insert_key_list(
        &self,
        app: &AppId,
        version: u64,
        envelope: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool>;

    /// Replaces a release's signed manifest by the same document with more signatures (its
    /// digest unchanged: the caller checks) and writes `audit`.
    ///
    /// # Errors
    /// [`crate::error::Error::NotFound`] for an unknown release.
    async fn set_manifest(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
        manifest: &[u8],
        audit: &AuditEntry,
    ) -> Result<()>;

    /// Stores a token.
    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEntry) -> Result<()>;

    /// The token with this hash.
    async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>>;

    /// Every token, revoked and expired ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;

    /// Revokes the token named `name` at `at` and writes `audit`; a token revoked before keeps
    /// its first revocation time (and no second entry is written). Returns the token as it is
    /// now.
    ///
    /// # Errors
    /// [`crate::error::Error::NotFound`] when no token has that name.
    async fn revoke_token(
        &self,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<TokenRecord>;

    /// Records a use of the token with this hash: its last-used time and `audit`, together.
    async fn token_used(&self, hash: &Digest, at: Timestamp, audit: &AuditEntry) -> Result<()>;

    /// A package's releases without their manifests (what a listing needs), in no order.
    async fn release_facts(&self, package: &PackageId) -> Result<Vec<ReleaseFact>>;

    /// Stores a console session, removing the sessions that expired before it was opened.
    async fn insert_session(&self, session: &SessionRecord) -> Result<()>;

    /// The session with this hash, expired or not.
    async fn session(&self, id: &Digest) -> Result<Option<SessionRecord>>;

    /// Removes the session with this hash (a sign-out); removing none is no error.
    async fn delete_session(&self, id: &Digest) -> Result<()>;

    /// The newest audit entries, newest first.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>>;
    /// What a collection decides from, read in one transaction.
    async fn retention_facts(&self) -> Result<RetentionFacts>;

    /// Removes `releases` with the packs built to or from them, and writes `audit`, in one
    /// transaction, if no channel changed since the facts were read (`history_mark`) and no
    /// channel's index entry names one of them. Returns false, having changed nothing,
    /// otherwise: the caller reads the facts again.
    async fn delete_releases(
        &self,
        releases: &BTreeSet<(PackageId, ReleaseVersion)>,
        history_mark: u64,
        audit: &AuditEntry,
    ) -> Result<bool>;

    /// The digests of every blob a release or a pack refers to (a manifest's files, a pack's
    /// own blob), leaving out `excluding`'s releases and the packs to or from them.
    ///
    /// # Errors
    /// [`crate::error::Error::Internal`] when a stored manifest cannot be read: its blobs are
    /// unknown, so no collection may remove any.
    async fn live_digests(
        &self,
        excluding: &BTreeSet<(PackageId, ReleaseVersion)>,
    ) -> Result<HashSet<Digest>>;

    /// When the last collection ran (or, before the first, when periodic collection started).
    async fn last_collection(&self) -> Result<Option<Timestamp>>;

    /// Records when a collection ran.
    async fn set_last_collection(&self, at: Timestamp) -> Result<()>;

    /// Takes the lock `name` for every server sharing the store, `shared` with other shared
    /// holders or alone, waiting as long as it takes. An engine one process owns has nobody
    /// else to exclude and returns [`StoreLock::local`] (the process orders its own work).
    async fn lock(&self, name: &str, shared: bool) -> Result<StoreLock> {
        let _ = (name, shared);
        Ok(StoreLock::local())
    }

    /// Takes the lease `name` alone if nobody holds it; `None` otherwise. Unlike
    /// [`MetaStore::lock`] it holds no connection: it is renewed while held, and a holder that
    /// dies loses it within seconds. For long work one server should do (a pack build).
    async fn try_lock(&self, name: &str) -> Result<Option<StoreLock>> {
        let _ = name;
        Ok(Some(StoreLock::local()))
    }

    /// The changes servers sharing the store commit, as they commit, for as long as the
    /// receiver is kept; `None` for an engine one process owns.
    async fn changes(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<StoreChange>>> {
        Ok(None)
    }
}
