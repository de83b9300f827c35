//! Metadata in PostgreSQL, for several server replicas sharing one database.
//!
//! Every write is one transaction. The channel's compare-and-swap is one SQL statement (an
//! `UPDATE … WHERE sequence = expected`, or an `INSERT … ON CONFLICT DO NOTHING` for a channel's
//! first change), whose row lock holds until commit, so concurrent changes on different replicas
//! serialise per channel and the loser sees zero rows and retries. Publishes of one app serialise
//! on the app's row (route ownership is decided against every other release of the app), and a
//! channel change or a pack takes a share lock on the releases it names, so a collection removing
//! them waits or is refused, never leaving a channel naming a removed release.
//!
//! Migrations are numbered steps embedded in the binary ([`MIGRATIONS`]), applied in order, each
//! in its own transaction that also records its number in `schema_migrations`, under an advisory
//! lock so that replicas starting together apply each step once. A committed channel change
//! notifies [`CHANNEL_EVENTS`] with `app/channel`, for replicas to drop what they cached.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use manifests::{
    AppId, Channel, Digest, HostRequirement, PackageEntry, PackageId, Prefetch, ReleaseVersion,
    Timestamp,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_postgres::{NoTls, Row};

use super::rows::{
    self, DayOpens, add_device_counts, capped_opens, check_new_origins, check_routes, declared_by,
    entry_json, manifest_blobs, named_versions, origins_json, parse_origins, parse_routes,
    routes_json, unreadable_blobs, versions_named_by,
};
use super::{
    AuditEntry, ChannelCommit, ChannelHead, ChannelPackage, ChannelRow, ChannelState, DayFigure,
    DeviceReport, HistoryEntry, HistoryMention, IngestKeyRecord, Inserted, MetaStore, PackFact,
    PackRecord, ReleaseFact, ReleaseRecord, ReleaseStats, RetentionFacts, Scope, SessionRecord,
    StoreChange, StoreLock, StoredIndex, TokenRecord,
};
use crate::error::{Error, Result};
use crate::ramp::RampRecord;

/// The channel named `app/channel` changed (committed).
pub const CHANNEL_EVENTS: &str = "baleen_channel";

/// Schema steps, in order: `MIGRATIONS[0]` makes version 1, and so on. Only ever append.
pub(crate) const MIGRATIONS: [&str; 6] = [
    // 1: everything the embedded store has at its version 7.
    "CREATE TABLE packages (
         id TEXT PRIMARY KEY,
         app TEXT NOT NULL,
         created_at BIGINT NOT NULL
     );
     CREATE INDEX packages_app ON packages(app);
     CREATE TABLE apps (app TEXT PRIMARY KEY, origins TEXT NOT NULL);
     CREATE TABLE releases (
         package TEXT NOT NULL REFERENCES packages(id),
         version TEXT NOT NULL,
         manifest_digest TEXT NOT NULL UNIQUE,
         manifest BYTEA NOT NULL,
         content_key TEXT NOT NULL,
         requires TEXT NOT NULL,
         size_bytes BIGINT NOT NULL,
         file_count BIGINT NOT NULL,
         created_at BIGINT NOT NULL,
         publisher TEXT NOT NULL,
         notes TEXT NOT NULL,
         priority INTEGER NOT NULL,
         prefetch TEXT NOT NULL,
         routes TEXT NOT NULL,
         PRIMARY KEY (package, version)
     );
     CREATE TABLE channels (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         sequence BIGINT NOT NULL,
         issued_at BIGINT NOT NULL,
         expires_at BIGINT NOT NULL,
         delta_floor BIGINT NOT NULL,
         PRIMARY KEY (app, channel)
     );
     CREATE TABLE channel_packages (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL REFERENCES packages(id),
         stable TEXT,
         candidate TEXT,
         rollout_basis_points INTEGER NOT NULL,
         paused BOOLEAN NOT NULL,
         entry TEXT,
         sequence BIGINT NOT NULL,
         PRIMARY KEY (app, channel, package)
     );
     CREATE INDEX channel_packages_package ON channel_packages(package);
     CREATE TABLE indexes (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         sequence BIGINT NOT NULL,
         digest TEXT NOT NULL,
         bytes BYTEA NOT NULL,
         issued_at BIGINT NOT NULL,
         expires_at BIGINT NOT NULL,
         PRIMARY KEY (app, channel)
     );
     CREATE TABLE history (
         id BIGSERIAL PRIMARY KEY,
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL,
         at BIGINT NOT NULL,
         action TEXT NOT NULL,
         from_version TEXT,
         to_version TEXT,
         rollout_basis_points INTEGER,
         actor TEXT NOT NULL,
         reason TEXT NOT NULL,
         sequence BIGINT NOT NULL
     );
     CREATE INDEX history_channel ON history(app, channel, package);
     CREATE TABLE packs (
         package TEXT NOT NULL,
         from_version TEXT NOT NULL,
         to_version TEXT NOT NULL,
         digest TEXT NOT NULL,
         size_bytes BIGINT NOT NULL,
         PRIMARY KEY (package, from_version, to_version),
         FOREIGN KEY (package, to_version) REFERENCES releases(package, version)
     );
     CREATE TABLE release_stats (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL,
         version TEXT NOT NULL,
         installed BIGINT NOT NULL DEFAULT 0,
         activated BIGINT NOT NULL DEFAULT 0,
         ready BIGINT NOT NULL DEFAULT 0,
         failed BIGINT NOT NULL DEFAULT 0,
         rolled_back BIGINT NOT NULL DEFAULT 0,
         opens BIGINT NOT NULL DEFAULT 0,
         offline_hits BIGINT NOT NULL DEFAULT 0,
         under_1s BIGINT NOT NULL DEFAULT 0,
         PRIMARY KEY (app, channel, package, version)
     );
     CREATE TABLE tokens (
         hash TEXT PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         scope TEXT NOT NULL,
         app TEXT,
         package TEXT,
         created_at BIGINT NOT NULL,
         expires_at BIGINT,
         revoked_at BIGINT,
         last_used_at BIGINT
     );
     CREATE TABLE audit (
         id BIGSERIAL PRIMARY KEY,
         at BIGINT NOT NULL,
         actor TEXT NOT NULL,
         action TEXT NOT NULL,
         target TEXT NOT NULL,
         detail TEXT NOT NULL
     );
     CREATE TABLE release_blobs (
         package TEXT NOT NULL,
         version TEXT NOT NULL,
         digest TEXT NOT NULL,
         PRIMARY KEY (package, version, digest)
     );
     CREATE TABLE collections (id INTEGER PRIMARY KEY CHECK (id = 1), last_at BIGINT NOT NULL);
     CREATE TABLE key_lists (
         app TEXT NOT NULL,
         version BIGINT NOT NULL,
         envelope BYTEA NOT NULL,
         PRIMARY KEY (app, version)
     );",
    // 2: leases on work that one server should do at a time (a pack build): the holder renews
    // its lease while it works; a lease not renewed by its expiry (the holder died) is free.
    "CREATE TABLE leases (
         name TEXT PRIMARY KEY,
         holder TEXT NOT NULL,
         expires_at_ms BIGINT NOT NULL
     );",
    // 3: as the embedded store's 8: ingest keys, and a row per device and release for each
    // state it reported (distinct devices) and for its day's opens.
    "CREATE TABLE ingest_keys (
         hash TEXT PRIMARY KEY,
         app TEXT NOT NULL,
         name TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         revoked_at BIGINT,
         UNIQUE (app, name)
     );
     CREATE TABLE release_devices (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL,
         version TEXT NOT NULL,
         state TEXT NOT NULL,
         device TEXT NOT NULL,
         day BIGINT NOT NULL,
         opens BIGINT NOT NULL,
         offline_hits BIGINT NOT NULL,
         under_1s BIGINT NOT NULL,
         PRIMARY KEY (app, channel, package, version, state, device)
     );",
    // 4: as the embedded store's 9: a ramp per app, channel and package, as JSON.
    "CREATE TABLE ramps (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL,
         record TEXT NOT NULL,
         PRIMARY KEY (app, channel, package)
     );",
    // 5: as the embedded store's 10: console sessions, and history's state before each change.
    "ALTER TABLE history ADD COLUMN before_state TEXT;
     CREATE TABLE console_sessions (
         id TEXT PRIMARY KEY,
         token TEXT NOT NULL,
         csrf TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         expires_at BIGINT NOT NULL
     );",
    // 6: as the embedded store's 11: figures per release and day.
    "CREATE TABLE release_days (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL,
         version TEXT NOT NULL,
         day BIGINT NOT NULL,
         figure TEXT NOT NULL,
         count BIGINT NOT NULL,
         PRIMARY KEY (app, channel, package, version, day, figure)
     );
     INSERT INTO release_days (app, channel, package, version, day, figure, count)
       SELECT app, channel, package, version, day, state, COUNT(*) FROM release_devices
       WHERE state <> 'opens' GROUP BY app, channel, package, version, day, state;",
];

/// The advisory lock migrations run under (any constant unlikely to clash: "baleen" in ASCII).
const MIGRATION_LOCK: i64 = 0x6261_6c65_656e;

/// Metadata in PostgreSQL, through a pool of connections.
#[derive(Clone)]
pub struct PostgresMetaStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for PostgresMetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the password.
        f.debug_struct("PostgresMetaStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl PostgresMetaStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`) and
    /// brings its schema to this server's version.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a URL that does not parse; [`Error::MetaUnavailable`] when
    /// the database cannot be reached; [`Error::Internal`] when its schema is newer than this
    /// server.
    pub async fn connect(url: &str) -> Result<PostgresMetaStore> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| Error::InvalidSetting {
            setting: "meta",
            value: redact(url),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::Internal(format!("PostgreSQL pool: {e}")))?;
        let store = PostgresMetaStore { pool, config };
        store.migrate().await?;
        Ok(store)
    }

    /// The connection settings, for a listener of [`CHANNEL_EVENTS`].
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let outcome = apply_migrations(&mut client).await;
        // The lock is the session's: released here, or with the connection if this fails.
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        outcome
    }
}

async fn apply_migrations(client: &mut deadpool_postgres::Object) -> Result<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY,
                 applied_at BIGINT NOT NULL
             )",
        )
        .await?;
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let latest = MIGRATIONS.len() as i64;
    if current > latest {
        return Err(Error::Internal(format!(
            "metadata schema version {current} is newer than this server ({latest})"
        )));
    }
    for (version, step) in (1_i64..).zip(MIGRATIONS).skip(current.max(0) as usize) {
        let tx = client.transaction().await?;
        tx.batch_execute(step).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &secs(crate::service::now())],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "metadata schema upgraded");
    }
    Ok(())
}

/// The advisory lock key of a named lock: the first 8 bytes of the name's sha256.
fn lock_key(name: &str) -> i64 {
    let digest = Digest::of(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    i64::from_be_bytes(first)
}

/// A session-level advisory lock, held by the connection it was taken on. Dropping it unlocks
/// and returns the connection to the pool; if the process dies, the connection closes and
/// PostgreSQL releases the lock at once.
struct AdvisoryLock {
    client: Option<deadpool_postgres::Object>,
    key: i64,
    shared: bool,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let (key, shared) = (self.key, self.shared);
        let unlock = if shared {
            "SELECT pg_advisory_unlock_shared($1)"
        } else {
            "SELECT pg_advisory_unlock($1)"
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = client.execute(unlock, &[&key]).await {
                        // Closing the connection releases the lock just as well.
                        tracing::warn!(error = %e, "unlocking failed; closing the connection");
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

/// How long a lease lasts unless renewed, and how often its holder renews it.
/// Short: while a dead holder's lease runs out, devices asking for the pack get `503` and fall
/// back to whole blobs. Renewing every 1.5 s leaves room for a slow database.
const LEASE_MS: i64 = 5_000;
const LEASE_RENEW: std::time::Duration = std::time::Duration::from_millis(1_500);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A lease in the `leases` table: renewed while held, given up when dropped, and lost to
/// whoever asks after its expiry if the holder died without giving it up.
struct Lease {
    renewing: tokio::task::JoinHandle<()>,
    pool: Pool,
    name: String,
    holder: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewing.abort();
        let (pool, name, holder) = (
            self.pool.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.holder),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let given_up = async {
                    pool.get()
                        .await?
                        .execute(
                            "DELETE FROM leases WHERE name = $1 AND holder = $2",
                            &[&name, &holder],
                        )
                        .await?;
                    Ok::<_, Error>(())
                };
                if let Err(e) = given_up.await {
                    tracing::warn!(lease = %name, error = %e, "giving up a lease failed; it expires");
                }
            });
        }
    }
}

/// Who holds leases taken by this process: random, with the process id for the log.
fn holder_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness two processes could share a name; the pid still tells them apart
        // on one machine.
        let _ = getrandom::fill(&mut bytes);
        format!("{}-{}", std::process::id(), manifests::encode_hex(&bytes))
    })
}

/// Forwards the notifications of [`CHANNEL_EVENTS`] to `changes`, reconnecting after a loss
/// (then, once listening again, sending [`StoreChange::Missed`]: changes may have been missed
/// meanwhile, and the store can be read again), until the receiver is dropped.
async fn listen(config: tokio_postgres::Config, changes: UnboundedSender<StoreChange>) {
    use futures::StreamExt;
    let mut connected_before = false;
    while !changes.is_closed() {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (payloads, mut received) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if payloads.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "channel feed connection lost");
                                break;
                            }
                        }
                    }
                });
                match client
                    .batch_execute(&format!("LISTEN {CHANNEL_EVENTS}"))
                    .await
                {
                    Ok(()) => {
                        if connected_before && changes.send(StoreChange::Missed).is_err() {
                            return;
                        }
                        connected_before = true;
                        while let Some(payload) = received.recv().await {
                            match parse_change(&payload) {
                                Some(change) => {
                                    if changes.send(change).is_err() {
                                        return;
                                    }
                                }
                                None => tracing::warn!(%payload, "unreadable channel event"),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "channel feed cannot connect"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `app/channel/sequence`, as [`MetaStore::commit_channel`] notifies it, or `manifest/DIGEST`.
fn parse_change(payload: &str) -> Option<StoreChange> {
    if let Some(digest) = payload.strip_prefix("manifest/") {
        return Digest::parse(digest).ok().map(StoreChange::Manifest);
    }
    let mut parts = payload.splitn(3, '/');
    let app = AppId::parse(parts.next()?).ok()?;
    let channel = Channel::parse(parts.next()?).ok()?;
    let sequence = parts.next()?.parse().ok()?;
    Some(StoreChange::Channel {
        app,
        channel,
        sequence,
    })
}

/// Tells listening servers, when the transaction commits, that a manifest changed or went.
async fn notify_manifest(tx: &impl GenericClient, digest: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL_EVENTS, &format!("manifest/{digest}")],
    )
    .await?;
    Ok(())
}

/// The URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn secs(t: Timestamp) -> i64 {
    // Timestamps are capped at year 9999, far below i64::MAX.
    t.unix_secs() as i64
}

fn time(row: &Row, i: usize) -> Result<Timestamp> {
    Ok(Timestamp::from_unix_secs(
        row.try_get::<_, i64>(i)?.max(0) as u64
    ))
}

fn opt_time(row: &Row, i: usize) -> Result<Option<Timestamp>> {
    Ok(row
        .try_get::<_, Option<i64>>(i)?
        .map(|s| Timestamp::from_unix_secs(s.max(0) as u64)))
}

const RELEASE_FACT_COLUMNS: &str =
    "package, version, manifest_digest, created_at, size_bytes, file_count";

fn release_fact_row(r: &Row) -> Result<ReleaseFact> {
    Ok(ReleaseFact {
        package: col(r, 0, PackageId::parse)?,
        version: col(r, 1, ReleaseVersion::parse)?,
        manifest_digest: col(r, 2, Digest::parse)?,
        created_at: time(r, 3)?,
        size_bytes: count(r, 4)?,
        file_count: count(r, 5)?,
    })
}

const SESSION_COLUMNS: &str = "id, token, csrf, created_at, expires_at";

fn session_row(r: &Row) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: col(r, 0, Digest::parse)?,
        token: col(r, 1, Digest::parse)?,
        csrf: r.try_get(2)?,
        created_at: time(r, 3)?,
        expires_at: time(r, 4)?,
    })
}

const INGEST_KEY_COLUMNS: &str = "hash, app, name, created_at, revoked_at";

fn ingest_key_row(r: &Row) -> Result<IngestKeyRecord> {
    Ok(IngestKeyRecord {
        hash: col(r, 0, Digest::parse)?,
        app: col(r, 1, AppId::parse)?,
        name: r.try_get(2)?,
        created_at: time(r, 3)?,
        revoked_at: opt_time(r, 4)?,
    })
}

fn count(row: &Row, i: usize) -> Result<u64> {
    Ok(row.try_get::<_, i64>(i)?.max(0) as u64)
}

/// Parses a text column with a contract constructor; a bad stored value is an internal error
/// naming the column.
fn col<T>(row: &Row, i: usize, parse: impl FnOnce(&str) -> manifests::Result<T>) -> Result<T> {
    let text: &str = row.try_get(i)?;
    parse(text).map_err(|e| bad_column(row, i, e))
}

fn opt_col<T>(
    row: &Row,
    i: usize,
    parse: impl FnOnce(&str) -> manifests::Result<T>,
) -> Result<Option<T>> {
    let text: Option<&str> = row.try_get(i)?;
    text.map(parse)
        .transpose()
        .map_err(|e| bad_column(row, i, e))
}

fn bad_column(row: &Row, i: usize, e: impl std::fmt::Display) -> Error {
    let name = row.columns().get(i).map_or("?", |c| c.name());
    Error::Internal(format!("stored {name} unreadable: {e}"))
}

fn each<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

type Params<'a> = [&'a (dyn tokio_postgres::types::ToSql + Sync)];

/// A read-only transaction that sees one snapshot of the database.
async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

impl PostgresMetaStore {
    /// The row `sql` selects, if any, read by `f`.
    async fn one<T>(
        &self,
        sql: &str,
        params: &Params<'_>,
        f: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let client = self.pool.get().await?;
        client
            .query_opt(sql, params)
            .await?
            .as_ref()
            .map(f)
            .transpose()
    }

    /// Every row `sql` selects, read by `f`.
    async fn all<T>(
        &self,
        sql: &str,
        params: &Params<'_>,
        f: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let client = self.pool.get().await?;
        each(client.query(sql, params).await?, f)
    }
}

const RELEASE_COLUMNS: &str = "package, version, manifest_digest, manifest, content_key, requires, \
     size_bytes, file_count, created_at, publisher, notes, priority, prefetch, routes";

fn release_row(row: &Row) -> Result<ReleaseRecord> {
    Ok(ReleaseRecord {
        package: col(row, 0, PackageId::parse)?,
        version: col(row, 1, ReleaseVersion::parse)?,
        manifest_digest: col(row, 2, Digest::parse)?,
        manifest: row.try_get(3)?,
        content_key: col(row, 4, Digest::parse)?,
        requires: col(row, 5, HostRequirement::parse)?,
        size_bytes: count(row, 6)?,
        file_count: count(row, 7)?,
        created_at: time(row, 8)?,
        publisher: row.try_get(9)?,
        notes: row.try_get(10)?,
        priority: u8::try_from(row.try_get::<_, i32>(11)?).map_err(|e| bad_column(row, 11, e))?,
        prefetch: col(row, 12, Prefetch::parse)?,
        routes: parse_routes(row.try_get(13)?)?,
    })
}

const TOKEN_COLUMNS: &str =
    "hash, name, scope, app, package, created_at, expires_at, revoked_at, last_used_at";

fn token_row(r: &Row) -> Result<TokenRecord> {
    let scope: &str = r.try_get(2)?;
    Ok(TokenRecord {
        hash: col(r, 0, Digest::parse)?,
        name: r.try_get(1)?,
        scope: Scope::parse(scope)
            .ok_or_else(|| bad_column(r, 2, format!("unknown scope {scope:?}")))?,
        app: opt_col(r, 3, AppId::parse)?,
        package: opt_col(r, 4, PackageId::parse)?,
        created_at: time(r, 5)?,
        expires_at: opt_time(r, 6)?,
        revoked_at: opt_time(r, 7)?,
        last_used_at: opt_time(r, 8)?,
    })
}

/// The columns of a package's state on a channel, from column `at` on.
fn channel_package_row(r: &Row, at: usize) -> Result<ChannelPackage> {
    Ok(ChannelPackage {
        stable: opt_col(r, at, ReleaseVersion::parse)?,
        candidate: opt_col(r, at + 1, ReleaseVersion::parse)?,
        rollout_basis_points: r.try_get::<_, i32>(at + 2)?.clamp(0, 10_000) as u16,
        paused: r.try_get(at + 3)?,
    })
}

async fn insert_audit(c: &impl GenericClient, audit: &AuditEntry) -> Result<()> {
    c.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        &[
            &secs(audit.at),
            &audit.actor,
            &audit.action,
            &audit.target,
            &audit.detail,
        ],
    )
    .await?;
    Ok(())
}

async fn channel_sequence(c: &impl GenericClient, app: &str, channel: &str) -> Result<u64> {
    let row = c
        .query_opt(
            "SELECT sequence FROM channels WHERE app = $1 AND channel = $2",
            &[&app, &channel],
        )
        .await?;
    row.map_or(Ok(0), |r| count(&r, 0))
}

async fn head_row(c: &impl GenericClient, app: &str, channel: &str) -> Result<Option<ChannelHead>> {
    let row = c
        .query_opt(
            "SELECT sequence, issued_at, expires_at, delta_floor FROM channels
             WHERE app = $1 AND channel = $2",
            &[&app, &channel],
        )
        .await?;
    row.map(|r| {
        Ok(ChannelHead {
            sequence: count(&r, 0)?,
            issued_at: time(&r, 1)?,
            expires_at: time(&r, 2)?,
            delta_floor: count(&r, 3)?,
        })
    })
    .transpose()
}

/// Takes a share lock on a release, so that no collection removes it before the transaction
/// ends; fails with not-found if it is gone.
async fn hold_release(c: &impl GenericClient, package: &str, version: &str) -> Result<()> {
    let row = c
        .query_opt(
            "SELECT 1 FROM releases WHERE package = $1 AND version = $2 FOR SHARE",
            &[&package, &version],
        )
        .await?;
    match row {
        Some(_) => Ok(()),
        None => Err(Error::NotFound(format!("release {package}@{version}"))),
    }
}

/// Lists the blobs of releases whose blobs are not listed yet, from their manifests.
async fn fill_release_blobs(tx: &impl GenericClient) -> Result<()> {
    let missing = tx
        .query(
            "SELECT package, version, manifest FROM releases r WHERE NOT EXISTS
               (SELECT 1 FROM release_blobs b WHERE b.package = r.package AND b.version = r.version)",
            &[],
        )
        .await?;
    for row in missing {
        let (package, version, manifest): (&str, &str, &[u8]) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let blobs = manifest_blobs(manifest).map_err(|e| unreadable_blobs(package, version, e))?;
        let digests: Vec<String> = blobs.iter().map(ToString::to_string).collect();
        tx.execute(
            "INSERT INTO release_blobs (package, version, digest)
             SELECT $1, $2, d FROM UNNEST($3::TEXT[]) AS d ON CONFLICT DO NOTHING",
            &[&package, &version, &digests],
        )
        .await?;
    }
    Ok(())
}

/// What a channel's package rows name, by package, for collections.
fn named_in(rows: &[Row], at: usize) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for r in rows {
        out.extend(named_versions(
            r.try_get(at)?,
            r.try_get(at + 1)?,
            r.try_get(at + 2)?,
        )?);
    }
    Ok(out)
}

#[async_trait]
impl MetaStore for PostgresMetaStore {
    async fn package_app(&self, package: &PackageId) -> Result<Option<AppId>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT app FROM packages WHERE id = $1",
                &[&package.as_str()],
            )
            .await?;
        row.map(|r| col(&r, 0, AppId::parse)).transpose()
    }

    async fn app_packages(&self, app: &AppId) -> Result<Vec<PackageId>> {
        self.all(
            "SELECT id FROM packages WHERE app = $1 ORDER BY id",
            &[&app.as_str()],
            |r| col(r, 0, PackageId::parse),
        )
        .await
    }

    async fn insert_release(
        &self,
        app: &AppId,
        release: &ReleaseRecord,
        audit: &AuditEntry,
    ) -> Result<Inserted> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let package = release.package.as_str();
        // Publishes of one app wait for each other here: route ownership is decided against
        // every other release of the app, and the first release declares the app's origins.
        tx.execute(
            "INSERT INTO apps (app, origins) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&app.as_str(), &origins_json(&declared_by(release))?],
        )
        .await?;
        let origins: String = tx
            .query_one(
                "SELECT origins FROM apps WHERE app = $1 FOR UPDATE",
                &[&app.as_str()],
            )
            .await?
            .try_get(0)?;
        tx.execute(
            "INSERT INTO packages (id, app, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&package, &app.as_str(), &secs(release.created_at)],
        )
        .await?;
        let owner: String = tx
            .query_one("SELECT app FROM packages WHERE id = $1", &[&package])
            .await?
            .try_get(0)?;
        if owner != app.as_str() {
            return Err(Error::Conflict(format!(
                "package {package} belongs to app {owner}, not {app}"
            )));
        }
        let version = release.version.to_string();
        let existing = tx
            .query_opt(
                &format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE package = $1 AND version = $2"
                ),
                &[&package, &version],
            )
            .await?;
        if let Some(row) = existing {
            return Ok(Inserted::Existing(Box::new(release_row(&row)?)));
        }
        let others = tx
            .query(
                "SELECT r.package, r.routes FROM releases r JOIN packages p ON p.id = r.package
                 WHERE p.app = $1 AND r.package != $2",
                &[&app.as_str(), &package],
            )
            .await?;
        let others = each(others, |r| Ok((r.try_get(0)?, r.try_get(1)?)))?;
        check_routes(app, release, &parse_origins(app, &origins)?, others)?;
        tx.execute(
            &format!(
                "INSERT INTO releases ({RELEASE_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            &[
                &package,
                &version,
                &release.manifest_digest.to_string(),
                &release.manifest,
                &release.content_key.to_string(),
                &release.requires.as_str(),
                &(release.size_bytes as i64),
                &(release.file_count as i64),
                &secs(release.created_at),
                &release.publisher,
                &release.notes,
                &i32::from(release.priority),
                &release.prefetch.as_str(),
                &routes_json(&release.routes),
            ],
        )
        .await?;
        insert_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(Inserted::New)
    }

    async fn release(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
    ) -> Result<Option<ReleaseRecord>> {
        self.one(
            &format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE package = $1 AND version = $2"),
            &[&package.as_str(), &version.to_string()],
            release_row,
        )
        .await
    }

    async fn release_by_manifest(&self, digest: &Digest) -> Result<Option<ReleaseRecord>> {
        self.one(
            &format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE manifest_digest = $1"),
            &[&digest.to_string()],
            release_row,
        )
        .await
    }

    async fn releases(&self, package: &PackageId) -> Result<Vec<ReleaseRecord>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE package = $1"),
                &[&package.as_str()],
            )
            .await?;
        let mut releases = each(rows, release_row)?;
        releases.sort_by(|a, b| b.version.cmp(&a.version));
        Ok(releases)
    }

    async fn channel_state(&self, app: &AppId, channel: &Channel) -> Result<ChannelState> {
        let mut client = self.pool.get().await?;
        let tx = snapshot(&mut client).await?;
        let sequence = channel_sequence(&tx, app.as_str(), channel.as_str()).await?;
        let rows = tx
            .query(
                "SELECT package, stable, candidate, rollout_basis_points, paused
                 FROM channel_packages WHERE app = $1 AND channel = $2",
                &[&app.as_str(), &channel.as_str()],
            )
            .await?;
        let packages = each(rows, |r| {
            Ok((col(r, 0, PackageId::parse)?, channel_package_row(r, 1)?))
        })?
        .into_iter()
        .collect();
        tx.commit().await?;
        Ok(ChannelState { sequence, packages })
    }

    async fn channel_package(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
    ) -> Result<(u64, ChannelPackage)> {
        let mut client = self.pool.get().await?;
        let tx = snapshot(&mut client).await?;
        let sequence = channel_sequence(&tx, app.as_str(), channel.as_str()).await?;
        let row = tx
            .query_opt(
                "SELECT stable, candidate, rollout_basis_points, paused FROM channel_packages
                 WHERE app = $1 AND channel = $2 AND package = $3",
                &[&app.as_str(), &channel.as_str(), &package.as_str()],
            )
            .await?;
        let state = row.map(|r| channel_package_row(&r, 0)).transpose()?;
        tx.commit().await?;
        Ok((sequence, state.unwrap_or_default()))
    }

    async fn channel_head(&self, app: &AppId, channel: &Channel) -> Result<Option<ChannelHead>> {
        let client = self.pool.get().await?;
        head_row(&client, app.as_str(), channel.as_str()).await
    }

    async fn channel_rows(
        &self,
        app: &AppId,
        channel: &Channel,
    ) -> Result<Option<(ChannelHead, Vec<ChannelRow>)>> {
        let mut client = self.pool.get().await?;
        let tx = snapshot(&mut client).await?;
        let Some(head) = head_row(&tx, app.as_str(), channel.as_str()).await? else {
            return Ok(None);
        };
        let rows = tx
            .query(
                "SELECT package, stable, candidate, rollout_basis_points, paused, entry, sequence
                 FROM channel_packages WHERE app = $1 AND channel = $2 ORDER BY package",
                &[&app.as_str(), &channel.as_str()],
            )
            .await?;
        let rows = each(rows, |r| {
            Ok(ChannelRow {
                package: col(r, 0, PackageId::parse)?,
                state: channel_package_row(r, 1)?,
                entry: r
                    .try_get::<_, Option<&str>>(5)?
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| bad_column(r, 5, e))?,
                sequence: count(r, 6)?,
            })
        })?;
        tx.commit().await?;
        Ok(Some((head, rows)))
    }

    async fn fill_entries(
        &self,
        app: &AppId,
        channel: &Channel,
        entries: &[(PackageId, PackageEntry)],
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for (package, entry) in entries {
            tx.execute(
                "UPDATE channel_packages SET entry = $4
                 WHERE app = $1 AND channel = $2 AND package = $3 AND entry IS NULL",
                &[
                    &app.as_str(),
                    &channel.as_str(),
                    &package.as_str(),
                    &entry_json(entry)?,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn channels(&self) -> Result<Vec<(AppId, Channel)>> {
        self.all(
            "SELECT app, channel FROM channels ORDER BY app, channel",
            &[],
            |r| Ok((col(r, 0, AppId::parse)?, col(r, 1, Channel::parse)?)),
        )
        .await
    }

    async fn commit_channel(&self, commit: &ChannelCommit) -> Result<bool> {
        if commit.sequence <= commit.expected_sequence
            || commit.history.iter().any(|h| h.sequence != commit.sequence)
        {
            return Err(Error::Internal(format!(
                "channel commit must raise the sequence above {} and record it in the history \
                 (sequence {})",
                commit.expected_sequence, commit.sequence
            )));
        }
        let entry = match commit.package.as_ref().and_then(|p| p.entry.as_ref()) {
            Some(entry) => Some(entry_json(entry)?),
            None => None,
        };
        let (app, channel) = (commit.app.as_str(), commit.channel.as_str());
        let (sequence, expected) = (commit.sequence as i64, commit.expected_sequence as i64);
        let (issued, expires) = (secs(commit.issued_at), secs(commit.expires_at));
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The compare-and-swap: the row lock it takes holds until commit, so a concurrent change
        // of the channel waits here and then finds the sequence moved.
        let swapped = if expected == 0 {
            tx.execute(
                "INSERT INTO channels (app, channel, sequence, issued_at, expires_at, delta_floor)
                 VALUES ($1, $2, $3, $4, $5, $3) ON CONFLICT DO NOTHING",
                &[&app, &channel, &sequence, &issued, &expires],
            )
            .await?
        } else {
            tx.execute(
                "UPDATE channels SET sequence = $3, issued_at = $4, expires_at = $5
                 WHERE app = $1 AND channel = $2 AND sequence = $6",
                &[&app, &channel, &sequence, &issued, &expires, &expected],
            )
            .await?
        };
        if swapped != 1 {
            return Ok(false);
        }
        if let Some(change) = &commit.package {
            let package = change.package.as_str();
            for version in versions_named_by(change) {
                hold_release(&tx, package, &version).await?;
            }
            let state = &change.state;
            tx.execute(
                "INSERT INTO channel_packages (app, channel, package, stable, candidate,
                   rollout_basis_points, paused, entry, sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (app, channel, package) DO UPDATE SET stable = excluded.stable,
                   candidate = excluded.candidate,
                   rollout_basis_points = excluded.rollout_basis_points,
                   paused = excluded.paused, entry = excluded.entry,
                   sequence = excluded.sequence",
                &[
                    &app,
                    &channel,
                    &package,
                    &state.stable.as_ref().map(ToString::to_string),
                    &state.candidate.as_ref().map(ToString::to_string),
                    &i32::from(state.rollout_basis_points),
                    &state.paused,
                    &entry,
                    &sequence,
                ],
            )
            .await?;
        }
        for h in &commit.history {
            tx.execute(
                "INSERT INTO history (app, channel, package, at, action, from_version,
                   to_version, rollout_basis_points, actor, reason, sequence, before_state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &app,
                    &channel,
                    &h.package.as_str(),
                    &secs(h.at),
                    &h.action,
                    &h.from_version.as_ref().map(ToString::to_string),
                    &h.to_version.as_ref().map(ToString::to_string),
                    &h.rollout_basis_points.map(i32::from),
                    &h.actor,
                    &h.reason,
                    &sequence,
                    &h.before.as_ref().map(rows::state_text).transpose()?,
                ],
            )
            .await?;
        }
        if let Some(audit) = &commit.audit {
            insert_audit(&tx, audit).await?;
        }
        // Delivered to listening replicas when (and only if) the transaction commits.
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL_EVENTS, &format!("{app}/{channel}/{sequence}")],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn index(&self, app: &AppId, channel: &Channel) -> Result<Option<StoredIndex>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT sequence, digest, bytes, issued_at, expires_at FROM indexes
                 WHERE app = $1 AND channel = $2",
                &[&app.as_str(), &channel.as_str()],
            )
            .await?;
        row.map(|r| {
            Ok(StoredIndex {
                sequence: count(&r, 0)?,
                digest: col(&r, 1, Digest::parse)?,
                bytes: r.try_get(2)?,
                issued_at: time(&r, 3)?,
                expires_at: time(&r, 4)?,
            })
        })
        .transpose()
    }

    async fn store_index(&self, app: &AppId, channel: &Channel, index: &StoredIndex) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO indexes (app, channel, sequence, digest, bytes, issued_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (app, channel) DO UPDATE SET sequence = excluded.sequence,
                   digest = excluded.digest, bytes = excluded.bytes,
                   issued_at = excluded.issued_at, expires_at = excluded.expires_at
                 WHERE excluded.sequence > indexes.sequence",
                &[
                    &app.as_str(),
                    &channel.as_str(),
                    &(index.sequence as i64),
                    &index.digest.to_string(),
                    &index.bytes,
                    &secs(index.issued_at),
                    &secs(index.expires_at),
                ],
            )
            .await?;
        Ok(())
    }

    async fn history(
        &self,
        app: &AppId,
        channel: &Channel,
        package: Option<&PackageId>,
    ) -> Result<Vec<HistoryEntry>> {
        self.all(
            "SELECT package, at, action, from_version, to_version, rollout_basis_points,
                        actor, reason, sequence, before_state
                 FROM history WHERE app = $1 AND channel = $2
                   AND ($3::TEXT IS NULL OR package = $3)
                 ORDER BY id DESC",
            &[
                &app.as_str(),
                &channel.as_str(),
                &package.map(PackageId::as_str),
            ],
            |r| {
                Ok(HistoryEntry {
                    package: col(r, 0, PackageId::parse)?,
                    at: time(r, 1)?,
                    action: r.try_get(2)?,
                    from_version: opt_col(r, 3, ReleaseVersion::parse)?,
                    to_version: opt_col(r, 4, ReleaseVersion::parse)?,
                    rollout_basis_points: r
                        .try_get::<_, Option<i32>>(5)?
                        .map(|bp| bp.clamp(0, 10_000) as u16),
                    actor: r.try_get(6)?,
                    reason: r.try_get(7)?,
                    sequence: count(r, 8)?,
                    before: r
                        .try_get::<_, Option<String>>(9)?
                        .map(|t| rows::state_of(&t))
                        .transpose()?,
                })
            },
        )
        .await
    }

    async fn pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
    ) -> Result<Option<PackRecord>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT digest, size_bytes FROM packs
                 WHERE package = $1 AND from_version = $2 AND to_version = $3",
                &[
                    &package.as_str(),
                    &from.map(ToString::to_string).unwrap_or_default(),
                    &to.to_string(),
                ],
            )
            .await?;
        row.map(|r| {
            Ok(PackRecord {
                digest: col(&r, 0, Digest::parse)?,
                size_bytes: count(&r, 1)?,
            })
        })
        .transpose()
    }

    async fn insert_pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
        pack: &PackRecord,
    ) -> Result<()> {
        let (from, to) = (
            from.map(ToString::to_string).unwrap_or_default(),
            to.to_string(),
        );
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // A collection may have removed either release while the pack was built: a pack row
        // never outlives its releases.
        for version in [&to, &from].into_iter().filter(|v| !v.is_empty()) {
            hold_release(&tx, package.as_str(), version).await?;
        }
        tx.execute(
            "INSERT INTO packs (package, from_version, to_version, digest, size_bytes)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &package.as_str(),
                &from,
                &to,
                &pack.digest.to_string(),
                &(pack.size_bytes as i64),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_stats(
        &self,
        app: &AppId,
        channel: &Channel,
        deltas: &[ReleaseStats],
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = |v: u64| v.min(i64::MAX as u64) as i64;
        for d in deltas {
            let (Some(package), Some(version)) = (&d.package, &d.version) else {
                continue;
            };
            tx.execute(
                "INSERT INTO release_stats AS s (app, channel, package, version, installed,
                   activated, ready, failed, rolled_back, opens, offline_hits, under_1s)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (app, channel, package, version) DO UPDATE SET
                   installed = s.installed + excluded.installed,
                   activated = s.activated + excluded.activated,
                   ready = s.ready + excluded.ready,
                   failed = s.failed + excluded.failed,
                   rolled_back = s.rolled_back + excluded.rolled_back,
                   opens = s.opens + excluded.opens,
                   offline_hits = s.offline_hits + excluded.offline_hits,
                   under_1s = s.under_1s + excluded.under_1s",
                &[
                    &app.as_str(),
                    &channel.as_str(),
                    &package.as_str(),
                    &version.to_string(),
                    &n(d.installed),
                    &n(d.activated),
                    &n(d.ready),
                    &n(d.failed),
                    &n(d.rolled_back),
                    &n(d.opens),
                    &n(d.offline_hits),
                    &n(d.under_1s),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_device_reports(
        &self,
        app: &AppId,
        channel: &Channel,
        device: &Digest,
        day: u64,
        reports: &[DeviceReport],
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = |v: u64| v.min(i64::MAX as u64) as i64;
        let device = device.to_string();
        for r in reports {
            let (Some(package), Some(version)) = (&r.package, &r.version) else {
                continue;
            };
            let version = version.to_string();
            let key: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
                &app.as_str(),
                &channel.as_str(),
                &package.as_str(),
                &version,
                &device,
            ];
            let day_n = n(day);
            let add_to_day = |figure: String, count: u64| {
                let tx = &tx;
                let (package, version) = (package.as_str(), version.as_str());
                async move {
                    tx.execute(
                        "INSERT INTO release_days AS d (app, channel, package, version, day,
                           figure, count)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (app, channel, package, version, day, figure) DO UPDATE SET
                           count = d.count + excluded.count",
                        &[
                            &app.as_str(),
                            &channel.as_str(),
                            &package,
                            &version,
                            &day_n,
                            &figure,
                            &n(count),
                        ],
                    )
                    .await
                }
            };
            for state in &r.states {
                let first = tx
                    .execute(
                        "INSERT INTO release_devices (app, channel, package, version, device,
                           state, day, opens, offline_hits, under_1s)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0) ON CONFLICT DO NOTHING",
                        &[key[0], key[1], key[2], key[3], key[4], state, &day_n],
                    )
                    .await?;
                if first == 1 {
                    add_to_day((*state).to_owned(), 1).await?;
                }
            }
            if r.opens == 0 {
                continue;
            }
            // The row exists before it is locked, so two batches of one device wait for each
            // other rather than both starting from nothing.
            tx.execute(
                "INSERT INTO release_devices (app, channel, package, version, device, state,
                   day, opens, offline_hits, under_1s)
                 VALUES ($1, $2, $3, $4, $5, 'opens', 0, 0, 0, 0) ON CONFLICT DO NOTHING",
                &key,
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT day, opens, offline_hits, under_1s FROM release_devices
                     WHERE app = $1 AND channel = $2 AND package = $3 AND version = $4
                       AND device = $5 AND state = 'opens' FOR UPDATE",
                    &key,
                )
                .await?;
            let stored = DayOpens {
                day: count(&row, 0)?,
                opens: count(&row, 1)?,
                offline_hits: count(&row, 2)?,
                under_1s: count(&row, 3)?,
            };
            let (row, added) = capped_opens(Some(stored), day, r);
            if added.opens == 0 {
                continue;
            }
            tx.execute(
                "UPDATE release_devices SET day = $6, opens = $7, offline_hits = $8, under_1s = $9
                 WHERE app = $1 AND channel = $2 AND package = $3 AND version = $4
                   AND device = $5 AND state = 'opens'",
                &[
                    key[0],
                    key[1],
                    key[2],
                    key[3],
                    key[4],
                    &n(row.day),
                    &n(row.opens),
                    &n(row.offline_hits),
                    &n(row.under_1s),
                ],
            )
            .await?;
            for (figure, count) in [
                ("opens", added.opens),
                ("offline_hits", added.offline_hits),
                ("under_1s", added.under_1s),
            ] {
                add_to_day(figure.to_owned(), count).await?;
            }
            let paints = rows::capped_paints(&r.paint_ms, added.opens);
            for (i, count) in paints.iter().enumerate().filter(|(_, n)| **n > 0) {
                add_to_day(rows::paint_figure(i), *count).await?;
            }
            tx.execute(
                "INSERT INTO release_stats AS s (app, channel, package, version, opens,
                   offline_hits, under_1s)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (app, channel, package, version) DO UPDATE SET
                   opens = s.opens + excluded.opens,
                   offline_hits = s.offline_hits + excluded.offline_hits,
                   under_1s = s.under_1s + excluded.under_1s",
                &[
                    key[0],
                    key[1],
                    key[2],
                    key[3],
                    &n(added.opens),
                    &n(added.offline_hits),
                    &n(added.under_1s),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_ingest_key(&self, key: &IngestKeyRecord, audit: &AuditEntry) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let taken = tx
            .query_opt(
                "SELECT 1 FROM ingest_keys WHERE app = $1 AND name = $2",
                &[&key.app.as_str(), &key.name],
            )
            .await?
            .is_some();
        if taken {
            return Err(Error::Conflict(format!(
                "app {} has an ingest key named {:?}",
                key.app, key.name
            )));
        }
        tx.execute(
            &format!("INSERT INTO ingest_keys ({INGEST_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
            &[
                &key.hash.to_string(),
                &key.app.as_str(),
                &key.name,
                &secs(key.created_at),
                &key.revoked_at.map(secs),
            ],
        )
        .await?;
        insert_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_facts(&self, package: &PackageId) -> Result<Vec<ReleaseFact>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {RELEASE_FACT_COLUMNS} FROM releases WHERE package = $1"),
                &[&package.as_str()],
            )
            .await?;
        each(rows, release_fact_row)
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM console_sessions WHERE expires_at <= $1",
            &[&secs(session.created_at)],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO console_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
            ),
            &[
                &session.id.to_string(),
                &session.token.to_string(),
                &session.csrf,
                &secs(session.created_at),
                &secs(session.expires_at),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: &Digest) -> Result<Option<SessionRecord>> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM console_sessions WHERE id = $1"),
                &[&id.to_string()],
            )
            .await?
            .map(|r| session_row(&r))
            .transpose()
    }

    async fn delete_session(&self, id: &Digest) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM console_sessions WHERE id = $1",
                &[&id.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn ingest_key(&self, hash: &Digest) -> Result<Option<IngestKeyRecord>> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                &format!("SELECT {INGEST_KEY_COLUMNS} FROM ingest_keys WHERE hash = $1"),
                &[&hash.to_string()],
            )
            .await?
            .map(|r| ingest_key_row(&r))
            .transpose()
    }

    async fn ingest_keys(&self, app: &AppId) -> Result<Vec<IngestKeyRecord>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {INGEST_KEY_COLUMNS} FROM ingest_keys WHERE app = $1
                     ORDER BY created_at, name"
                ),
                &[&app.as_str()],
            )
            .await?;
        each(rows, ingest_key_row)
    }

    async fn revoke_ingest_key(
        &self,
        app: &AppId,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<IngestKeyRecord> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE ingest_keys SET revoked_at = $3
                 WHERE app = $1 AND name = $2 AND revoked_at IS NULL",
                &[&app.as_str(), &name, &secs(at)],
            )
            .await?;
        if changed > 0 {
            insert_audit(&tx, audit).await?;
        }
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {INGEST_KEY_COLUMNS} FROM ingest_keys WHERE app = $1 AND name = $2"
                ),
                &[&app.as_str(), &name],
            )
            .await?
            .ok_or_else(|| Error::NotFound(format!("ingest key {name:?} of app {app}")))?;
        let key = ingest_key_row(&row)?;
        tx.commit().await?;
        Ok(key)
    }

    async fn put_ramp(&self, ramp: &RampRecord, audit: Option<&AuditEntry>) -> Result<()> {
        let text = rows::ramp_text(ramp)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO ramps (app, channel, package, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (app, channel, package) DO UPDATE SET record = excluded.record",
            &[
                &ramp.app.as_str(),
                &ramp.channel.as_str(),
                &ramp.package.as_str(),
                &text,
            ],
        )
        .await?;
        if let Some(audit) = audit {
            insert_audit(&tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ramps(&self) -> Result<Vec<RampRecord>> {
        let client = self.pool.get().await?;
        let found = client
            .query(
                "SELECT record FROM ramps ORDER BY app, channel, package",
                &[],
            )
            .await?;
        found
            .iter()
            .map(|r| rows::ramp_of(&r.try_get::<_, String>(0)?))
            .collect()
    }

    async fn stats(&self, app: &AppId, channel: &Channel) -> Result<Vec<ReleaseStats>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT package, version, installed, activated, ready, failed, rolled_back, opens,
                        offline_hits, under_1s
                 FROM release_stats WHERE app = $1 AND channel = $2",
                &[&app.as_str(), &channel.as_str()],
            )
            .await?;
        let mut stats = each(rows, |r| {
            Ok(ReleaseStats {
                package: Some(col(r, 0, PackageId::parse)?),
                version: Some(col(r, 1, ReleaseVersion::parse)?),
                installed: count(r, 2)?,
                activated: count(r, 3)?,
                ready: count(r, 4)?,
                failed: count(r, 5)?,
                rolled_back: count(r, 6)?,
                opens: count(r, 7)?,
                offline_hits: count(r, 8)?,
                under_1s: count(r, 9)?,
                paint_ms: Default::default(),
            })
        })?;
        let rows = client
            .query(
                &format!(
                    "SELECT package, version, figure, SUM(count)::BIGINT FROM release_days
                     WHERE app = $1 AND channel = $2 AND figure IN ({})
                     GROUP BY package, version, figure",
                    rows::COUNTED_FIGURES
                ),
                &[&app.as_str(), &channel.as_str()],
            )
            .await?;
        let counts = each(rows, |r| {
            Ok((
                col(r, 0, PackageId::parse)?,
                col(r, 1, ReleaseVersion::parse)?,
                r.try_get::<_, String>(2)?,
                count(r, 3)?,
            ))
        })?;
        add_device_counts(&mut stats, counts);
        Ok(stats)
    }

    async fn daily_figures(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
    ) -> Result<Vec<DayFigure>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT version, day, figure, count FROM release_days
                 WHERE app = $1 AND channel = $2 AND package = $3
                 ORDER BY day, version, figure",
                &[&app.as_str(), &channel.as_str(), &package.as_str()],
            )
            .await?;
        each(rows, |r| {
            Ok(DayFigure {
                version: col(r, 0, ReleaseVersion::parse)?,
                day: count(r, 1)?,
                figure: r.try_get(2)?,
                count: count(r, 3)?,
            })
        })
    }

    async fn app_origins(&self, app: &AppId) -> Result<Option<Vec<String>>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT origins FROM apps WHERE app = $1", &[&app.as_str()])
            .await?;
        row.map(|r| parse_origins(app, r.try_get(0)?)).transpose()
    }

    async fn set_app_origins(
        &self,
        app: &AppId,
        origins: &[String],
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The app's row is locked before the check (the upsert takes its lock), so that no publish
        // of the app slips a route in between.
        tx.execute(
            "INSERT INTO apps (app, origins) VALUES ($1, $2)
             ON CONFLICT (app) DO UPDATE SET origins = apps.origins",
            &[&app.as_str(), &origins_json(origins)?],
        )
        .await?;
        let rows = tx
            .query(
                "SELECT r.package, r.version, r.routes FROM releases r
                 JOIN packages p ON p.id = r.package WHERE p.app = $1",
                &[&app.as_str()],
            )
            .await?;
        let rows = each(rows, |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))?;
        check_new_origins(app, origins, rows)?;
        tx.execute(
            "UPDATE apps SET origins = $2 WHERE app = $1",
            &[&app.as_str(), &origins_json(origins)?],
        )
        .await?;
        insert_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key_lists(&self, app: &AppId) -> Result<Vec<Vec<u8>>> {
        self.all(
            "SELECT envelope FROM key_lists WHERE app = $1 ORDER BY version",
            &[&app.as_str()],
            |r| Ok(r.try_get(0)?),
        )
        .await
    }

    async fn insert_key_list(
        &self,
        app: &AppId,
        version: u64,
        envelope: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool> {
        let version = i64::try_from(version)
            .map_err(|_| Error::BadRequest(format!("key list version {version} is too large")))?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO key_lists (app, version, envelope) VALUES ($1, $2, $3)
                 ON CONFLICT (app, version) DO NOTHING",
                &[&app.as_str(), &version, &envelope],
            )
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        insert_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_manifest(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
        manifest: &[u8],
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                "UPDATE releases SET manifest = $3 WHERE package = $1 AND version = $2",
                &[&package.as_str(), &version.to_string(), &manifest],
            )
            .await?;
        if updated == 0 {
            return Err(Error::NotFound(format!("release {package}@{version}")));
        }
        let digest: String = tx
            .query_one(
                "SELECT manifest_digest FROM releases WHERE package = $1 AND version = $2",
                &[&package.as_str(), &version.to_string()],
            )
            .await?
            .try_get(0)?;
        notify_manifest(&tx, &digest).await?;
        insert_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEntry) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO tokens (hash, name, scope, app, package, created_at, expires_at,
                   revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT DO NOTHING",
                &[
                    &token.hash.to_string(),
                    &token.name,
                    &token.scope.as_str(),
                    &token.app.as_ref().map(AppId::as_str),
                    &token.package.as_ref().map(PackageId::as_str),
                    &secs(token.created_at),
                    &token.expires_at.map(secs),
                    &token.revoked_at.map(secs),
                    &token.last_used_at.map(secs),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(Error::Conflict(format!(
                "a token named {:?} exists",
                token.name
            )));
        }
        insert_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>> {
        self.one(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"),
            &[&hash.to_string()],
            token_row,
        )
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.all(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, name"),
            &[],
            token_row,
        )
        .await
    }

    async fn revoke_token(
        &self,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<TokenRecord> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                &[&name, &secs(at)],
            )
            .await?;
        if changed > 0 {
            insert_audit(&tx, audit).await?;
        }
        let row = tx
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE name = $1"),
                &[&name],
            )
            .await?
            .ok_or_else(|| Error::NotFound(format!("token {name:?}")))?;
        let token = token_row(&row)?;
        tx.commit().await?;
        Ok(token)
    }

    async fn token_used(&self, hash: &Digest, at: Timestamp, audit: &AuditEntry) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE tokens SET last_used_at = $2 WHERE hash = $1",
                &[&hash.to_string(), &secs(at)],
            )
            .await?;
        if changed > 0 {
            insert_audit(&tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.all(
            "SELECT at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT $1",
            &[&i64::from(limit)],
            |r| {
                Ok(AuditEntry {
                    at: time(r, 0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    target: r.try_get(3)?,
                    detail: r.try_get(4)?,
                })
            },
        )
        .await
    }

    async fn retention_facts(&self) -> Result<RetentionFacts> {
        let mut client = self.pool.get().await?;
        let tx = snapshot(&mut client).await?;
        let rows = tx
            .query(&format!("SELECT {RELEASE_FACT_COLUMNS} FROM releases"), &[])
            .await?;
        let releases = each(rows, release_fact_row)?;
        let rows = tx
            .query(
                "SELECT package, stable, candidate, entry FROM channel_packages",
                &[],
            )
            .await?;
        let mut named = Vec::new();
        for r in &rows {
            let package = col(r, 0, PackageId::parse)?;
            for version in named_in(std::slice::from_ref(r), 1)? {
                named.push((package.clone(), ReleaseVersion::parse(&version)?));
            }
        }
        let rows = tx
            .query(
                "SELECT app, channel, package, from_version, to_version, at FROM history
                 ORDER BY id DESC",
                &[],
            )
            .await?;
        let history = each(rows, |r| {
            Ok(HistoryMention {
                app: col(r, 0, AppId::parse)?,
                channel: col(r, 1, Channel::parse)?,
                package: col(r, 2, PackageId::parse)?,
                from_version: opt_col(r, 3, ReleaseVersion::parse)?,
                to_version: opt_col(r, 4, ReleaseVersion::parse)?,
                at: time(r, 5)?,
            })
        })?;
        let rows = tx
            .query(
                "SELECT package, from_version, to_version, digest, size_bytes FROM packs",
                &[],
            )
            .await?;
        let packs = each(rows, |r| {
            let from: &str = r.try_get(1)?;
            Ok(PackFact {
                package: col(r, 0, PackageId::parse)?,
                from: if from.is_empty() {
                    None
                } else {
                    Some(col(r, 1, ReleaseVersion::parse)?)
                },
                to: col(r, 2, ReleaseVersion::parse)?,
                digest: col(r, 3, Digest::parse)?,
                size_bytes: count(r, 4)?,
            })
        })?;
        let history_mark = count(
            &tx.query_one("SELECT COALESCE(MAX(id), 0)::BIGINT FROM history", &[])
                .await?,
            0,
        )?;
        tx.commit().await?;
        Ok(RetentionFacts {
            releases,
            named,
            history,
            packs,
            history_mark,
        })
    }

    async fn delete_releases(
        &self,
        releases: &BTreeSet<(PackageId, ReleaseVersion)>,
        history_mark: u64,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Locked first: a channel change naming one of them waits for this transaction (and
        // then finds it gone), or finished before and is seen by the checks below.
        for (package, version) in releases {
            tx.execute(
                "SELECT 1 FROM releases WHERE package = $1 AND version = $2 FOR UPDATE",
                &[&package.as_str(), &version.to_string()],
            )
            .await?;
        }
        let mark = count(
            &tx.query_one("SELECT COALESCE(MAX(id), 0)::BIGINT FROM history", &[])
                .await?,
            0,
        )?;
        if mark != history_mark {
            return Ok(false);
        }
        let mut by_package: BTreeMap<&PackageId, BTreeSet<String>> = BTreeMap::new();
        for (package, version) in releases {
            by_package
                .entry(package)
                .or_default()
                .insert(version.to_string());
        }
        for (package, versions) in &by_package {
            let rows = tx
                .query(
                    "SELECT stable, candidate, entry FROM channel_packages WHERE package = $1",
                    &[&package.as_str()],
                )
                .await?;
            if named_in(&rows, 0)?.iter().any(|v| versions.contains(v)) {
                return Ok(false);
            }
        }
        for (package, version) in releases {
            let (package, version) = (package.as_str(), version.to_string());
            tx.execute(
                "DELETE FROM packs WHERE package = $1 AND (to_version = $2 OR from_version = $2)",
                &[&package, &version],
            )
            .await?;
            tx.execute(
                "DELETE FROM release_blobs WHERE package = $1 AND version = $2",
                &[&package, &version],
            )
            .await?;
            let gone = tx
                .query_opt(
                    "DELETE FROM releases WHERE package = $1 AND version = $2
                     RETURNING manifest_digest",
                    &[&package, &version],
                )
                .await?;
            if let Some(row) = gone {
                notify_manifest(&tx, row.try_get(0)?).await?;
            }
        }
        insert_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn live_digests(
        &self,
        excluding: &BTreeSet<(PackageId, ReleaseVersion)>,
    ) -> Result<HashSet<Digest>> {
        let excluding: BTreeSet<(String, String)> = excluding
            .iter()
            .map(|(p, v)| (p.as_str().to_owned(), v.to_string()))
            .collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        fill_release_blobs(&tx).await?;
        let mut live = HashSet::new();
        let rows = tx
            .query("SELECT package, version, digest FROM release_blobs", &[])
            .await?;
        for r in &rows {
            let key = (r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?);
            if !excluding.contains(&key) {
                live.insert(col(r, 2, Digest::parse)?);
            }
        }
        let rows = tx
            .query(
                "SELECT package, from_version, to_version, digest FROM packs",
                &[],
            )
            .await?;
        for r in &rows {
            let package: String = r.try_get(0)?;
            let gone = |version: String| excluding.contains(&(package.clone(), version));
            if !gone(r.try_get(1)?) && !gone(r.try_get(2)?) {
                live.insert(col(r, 3, Digest::parse)?);
            }
        }
        tx.commit().await?;
        Ok(live)
    }

    async fn last_collection(&self) -> Result<Option<Timestamp>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT last_at FROM collections WHERE id = 1", &[])
            .await?;
        row.map(|r| time(&r, 0)).transpose()
    }

    async fn set_last_collection(&self, at: Timestamp) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO collections (id, last_at) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET last_at = excluded.last_at",
                &[&secs(at)],
            )
            .await?;
        Ok(())
    }

    async fn lock(&self, name: &str, shared: bool) -> Result<StoreLock> {
        let client = self.pool.get().await?;
        let key = lock_key(name);
        let sql = if shared {
            "SELECT pg_advisory_lock_shared($1)"
        } else {
            "SELECT pg_advisory_lock($1)"
        };
        client.execute(sql, &[&key]).await?;
        Ok(StoreLock::held_by(Box::new(AdvisoryLock {
            client: Some(client),
            key,
            shared,
        })))
    }

    async fn try_lock(&self, name: &str) -> Result<Option<StoreLock>> {
        let holder = holder_id();
        let taken = self
            .pool
            .get()
            .await?
            .execute(
                "INSERT INTO leases (name, holder, expires_at_ms) VALUES ($1, $2, $3::BIGINT + $4::BIGINT)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                   expires_at_ms = excluded.expires_at_ms
                 WHERE leases.expires_at_ms < $3",
                &[&name, &holder, &now_ms(), &LEASE_MS],
            )
            .await?;
        if taken == 0 {
            return Ok(None);
        }
        let (pool, lease, who) = (self.pool.clone(), name.to_owned(), holder.to_owned());
        let renewing = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_RENEW).await;
                let renewed = async {
                    pool.get()
                        .await?
                        .execute(
                            "UPDATE leases SET expires_at_ms = $3::BIGINT + $4::BIGINT
                             WHERE name = $1 AND holder = $2",
                            &[&lease, &who, &now_ms(), &LEASE_MS],
                        )
                        .await
                        .map_err(Error::from)
                };
                match renewed.await {
                    Ok(1) => {}
                    Ok(_) => {
                        tracing::warn!(%lease, "lease lost to another server");
                        return;
                    }
                    Err(e) => tracing::warn!(%lease, error = %e, "renewing a lease failed"),
                }
            }
        });
        Ok(Some(StoreLock::held_by(Box::new(Lease {
            renewing,
            pool: self.pool.clone(),
            name: name.to_owned(),
            holder: holder.to_owned(),
        }))))
    }

    async fn changes(&self) -> Result<Option<UnboundedReceiver<StoreChange>>> {
        let (changes, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(listen(self.config.clone(), changes));
        Ok(Some(received))
    }
}
