//! The embedded default: metadata in one SQLite file (WAL, `synchronous=FULL`).
//!
//! Calls run on tokio's blocking pool behind one connection; SQLite serialises writers anyway, and
//! the write rate of a release system is low.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use manifests::{
    AppId, Channel, Digest, HostRequirement, PackageEntry, PackageId, Prefetch, ReleaseVersion,
    Timestamp,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::rows::{
    self, DayOpens, add_device_counts, capped_opens, check_new_origins,
    check_routes as check_route_rows, declared_by, entry_json, manifest_blobs, manifest_routes,
    named_versions, origins_json, parse_origins, parse_routes, routes_json, unreadable_blobs,
    versions_named_by,
};
use super::{
    AuditEntry, ChannelCommit, ChannelHead, ChannelPackage, ChannelRow, ChannelState, DayFigure,
    DeviceReport, HistoryEntry, HistoryMention, IngestKeyRecord, Inserted, MetaStore, PackFact,
    PackRecord, ReleaseFact, ReleaseRecord, ReleaseStats, RetentionFacts, Scope, SessionRecord,
    StoredIndex, TokenRecord,
};
use crate::error::{Error, Result};
use crate::ramp::RampRecord;

/// The schema a new database starts from: version 1. [`MIGRATIONS`] take it to the current one.
pub(crate) const SCHEMA_V1: &str = "
CREATE TABLE packages (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX packages_app ON packages(app);
CREATE TABLE releases (
    package TEXT NOT NULL REFERENCES packages(id),
    version TEXT NOT NULL,
    manifest_digest TEXT NOT NULL UNIQUE,
    manifest BLOB NOT NULL,
    content_key TEXT NOT NULL,
    requires TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    file_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    publisher TEXT NOT NULL,
    notes TEXT NOT NULL,
    PRIMARY KEY (package, version)
);
CREATE TABLE channel_packages (
    app TEXT NOT NULL,
    channel TEXT NOT NULL,
    package TEXT NOT NULL REFERENCES packages(id),
    stable TEXT,
    candidate TEXT,
    rollout_basis_points INTEGER NOT NULL,
    paused INTEGER NOT NULL,
    PRIMARY KEY (app, channel, package)
);
CREATE TABLE indexes (
    app TEXT NOT NULL,
    channel TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    digest TEXT NOT NULL,
    bytes BLOB NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (app, channel)
);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    channel TEXT NOT NULL,
    package TEXT NOT NULL,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT,
    rollout_basis_points INTEGER,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    sequence INTEGER NOT NULL
);
CREATE INDEX history_channel ON history(app, channel, package);
CREATE TABLE packs (
    package TEXT NOT NULL,
    from_version TEXT NOT NULL,
    to_version TEXT NOT NULL,
    digest TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    PRIMARY KEY (package, from_version, to_version),
    FOREIGN KEY (package, to_version) REFERENCES releases(package, version)
);
CREATE TABLE release_stats (
    app TEXT NOT NULL,
    channel TEXT NOT NULL,
    package TEXT NOT NULL,
    version TEXT NOT NULL,
    installed INTEGER NOT NULL DEFAULT 0,
    activated INTEGER NOT NULL DEFAULT 0,
    ready INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    rolled_back INTEGER NOT NULL DEFAULT 0,
    opens INTEGER NOT NULL DEFAULT 0,
    offline_hits INTEGER NOT NULL DEFAULT 0,
    under_1s INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app, channel, package, version)
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    package TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

/// Metadata in SQLite.
/// Upgrades, in order: `MIGRATIONS[0]` takes version 1 to 2, and so on. Only ever append.
pub(crate) const MIGRATIONS: [&str; 10] = [
    // 2: the publisher's fetch priority and prefetch policy, carried into the index.
    "ALTER TABLE releases ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE releases ADD COLUMN prefetch TEXT NOT NULL DEFAULT 'always';",
    // 3: a channel change writes one package: the sequence moves to a small row per channel, and
    // each package row keeps its index entry (JSON) and the sequence of its last change, which
    // deltas are cut by. Entries of existing rows are computed when first needed; deltas start
    // from the sequence a channel had at the upgrade.
    "CREATE TABLE channels (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         sequence INTEGER NOT NULL,
         issued_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         delta_floor INTEGER NOT NULL,
         PRIMARY KEY (app, channel)
     );
     INSERT INTO channels (app, channel, sequence, issued_at, expires_at, delta_floor)
         SELECT app, channel, sequence, issued_at, expires_at, sequence FROM indexes;
     ALTER TABLE channel_packages ADD COLUMN entry TEXT;
     ALTER TABLE channel_packages ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0;
     UPDATE channel_packages SET sequence = COALESCE((SELECT MAX(h.sequence) FROM history h
         WHERE h.app = channel_packages.app AND h.channel = channel_packages.channel
           AND h.package = channel_packages.package), 0);",
    // 4: a token's lifecycle: the app a package-bound token acts in, expiry, revocation and the
    // last use.
    "ALTER TABLE tokens ADD COLUMN app TEXT;
     ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
     ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;
     ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;",
    // 5: route ownership: each release's routes (JSON; filled from the manifests of releases
    // stored before, at open) and the origins each app declared (filled from its releases).
    "ALTER TABLE releases ADD COLUMN routes TEXT;
     CREATE TABLE apps (app TEXT PRIMARY KEY, origins TEXT NOT NULL);",
    // 6: garbage collection: the blobs each release's manifest lists (filled from the manifest
    // when a collection first needs them, so that it reads no manifest twice), and when the last
    // collection ran.
    "CREATE TABLE release_blobs (
         package TEXT NOT NULL,
         version TEXT NOT NULL,
         digest TEXT NOT NULL,
         PRIMARY KEY (package, version, digest)
     ) WITHOUT ROWID;
     CREATE TABLE collections (id INTEGER PRIMARY KEY CHECK (id = 1), last_at INTEGER NOT NULL);",
    // 7: each app's key lists after the first (which the server derives from its own key): the
    // signed envelopes, by version.
    "CREATE TABLE key_lists (
         app TEXT NOT NULL,
         version INTEGER NOT NULL,
         envelope BLOB NOT NULL,
         PRIMARY KEY (app, version)
     );",
    // 8: figures that cannot be faked cheaply: each app's ingest keys (hashes), and a row per
    // device (a hash of its id) and release for each state it reported, so that states count
    // distinct devices, plus one `opens` row holding the day's opens that bound its share.
    "CREATE TABLE ingest_keys (
         hash TEXT PRIMARY KEY,
         app TEXT NOT NULL,
         name TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         revoked_at INTEGER,
         UNIQUE (app, name)
     );
     CREATE TABLE release_devices (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL,
         version TEXT NOT NULL,
         state TEXT NOT NULL,
         device TEXT NOT NULL,
         day INTEGER NOT NULL,
         opens INTEGER NOT NULL,
         offline_hits INTEGER NOT NULL,
         under_1s INTEGER NOT NULL,
         PRIMARY KEY (app, channel, package, version, state, device)
     ) WITHOUT ROWID;",
    // 9: health-gated rollouts: a ramp per app, channel and package, its policy, state and last
    // evaluation as JSON (read whole, written whole).
    "CREATE TABLE ramps (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL,
         record TEXT NOT NULL,
         PRIMARY KEY (app, channel, package)
     );",
    // 10: the release console: sessions (hashes of the cookie's secret and of the token, the
    // form secret), and each history entry's state before the change, which an undo restores.
    "ALTER TABLE history ADD COLUMN before_state TEXT;
     CREATE TABLE console_sessions (
         id TEXT PRIMARY KEY,
         token TEXT NOT NULL,
         csrf TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL
     );",
    // 11: figures over time: for each release and UTC day, the devices first reporting each state
    // that day and the opens of the day, kept as states are first recorded, so that a release's
    // figures are a sum over its days rather than a count over its devices. Rows before this step
    // hold day 0 (unknown) for states; they are counted into day 0.
    "CREATE TABLE release_days (
         app TEXT NOT NULL,
         channel TEXT NOT NULL,
         package TEXT NOT NULL,
         version TEXT NOT NULL,
         day INTEGER NOT NULL,
         figure TEXT NOT NULL,
         count INTEGER NOT NULL,
         PRIMARY KEY (app, channel, package, version, day, figure)
     ) WITHOUT ROWID;
     INSERT INTO release_days (app, channel, package, version, day, figure, count)
       SELECT app, channel, package, version, day, state, COUNT(*) FROM release_devices
       WHERE state <> 'opens' GROUP BY app, channel, package, version, day, state;",
];

/// The version [`MIGRATIONS`] lead to.
const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;

#[derive(Debug, Clone)]
pub struct SqliteMetaStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteMetaStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteMetaStore> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<SqliteMetaStore> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<SqliteMetaStore> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Internal(format!(
                "metadata schema version {version} is newer than this server ({SCHEMA_VERSION})"
            )));
        }
        if version == 0 {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
            ))?;
            version = 1;
        }
        // Each step commits with its version, so an interrupted upgrade resumes where it stopped.
        for (from, step) in (1..).zip(MIGRATIONS) {
            if version == from {
                let to = from + 1;
                conn.execute_batch(&format!(
                    "BEGIN; {step} PRAGMA user_version = {to}; COMMIT;"
                ))?;
                version = to;
            }
        }
        fill_routes(&conn)?;
        Ok(SqliteMetaStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Error::Internal("metadata connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Internal(format!("metadata task failed: {e}")))?
    }
}

/// Parses a column with a contract constructor, turning a bad stored value into an error.
fn col<T>(
    row: &Row<'_>,
    i: usize,
    parse: impl FnOnce(&str) -> manifests::Result<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(i)?;
    parse(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn opt_col<T>(
    row: &Row<'_>,
    i: usize,
    parse: impl FnOnce(&str) -> manifests::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(i)?;
    text.map(|t| parse(&t))
        .transpose()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn time(row: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    let secs: i64 = row.get(i)?;
    Ok(Timestamp::from_unix_secs(secs.max(0) as u64))
}

fn secs(t: Timestamp) -> i64 {
    // Timestamps are capped at year 9999, far below i64::MAX.
    t.unix_secs() as i64
}

const INGEST_KEY_COLUMNS: &str = "hash, app, name, created_at, revoked_at";

fn ingest_key_row(r: &Row<'_>) -> rusqlite::Result<IngestKeyRecord> {
    Ok(IngestKeyRecord {
        hash: col(r, 0, Digest::parse)?,
        app: col(r, 1, AppId::parse)?,
        name: r.get(2)?,
        created_at: time(r, 3)?,
        revoked_at: opt_time(r, 4)?,
    })
}

const RELEASE_FACT_COLUMNS: &str =
    "package, version, manifest_digest, created_at, size_bytes, file_count";

fn release_fact_row(r: &Row<'_>) -> rusqlite::Result<ReleaseFact> {
    Ok(ReleaseFact {
        package: col(r, 0, PackageId::parse)?,
        version: col(r, 1, ReleaseVersion::parse)?,
        manifest_digest: col(r, 2, Digest::parse)?,
        created_at: time(r, 3)?,
        size_bytes: r.get::<_, i64>(4)?.max(0) as u64,
        file_count: r.get::<_, i64>(5)?.max(0) as u64,
    })
}

const SESSION_COLUMNS: &str = "id, token, csrf, created_at, expires_at";

fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: col(r, 0, Digest::parse)?,
        token: col(r, 1, Digest::parse)?,
        csrf: r.get(2)?,
        created_at: time(r, 3)?,
        expires_at: time(r, 4)?,
    })
}

const TOKEN_COLUMNS: &str =
    "hash, name, scope, app, package, created_at, expires_at, revoked_at, last_used_at";

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let hash: String = r.get(0)?;
    let scope: String = r.get(2)?;
    Ok(TokenRecord {
        hash: Digest::parse(&hash)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))?,
        name: r.get(1)?,
        scope: Scope::parse(&scope).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                Type::Text,
                format!("unknown scope {scope:?}").into(),
            )
        })?,
        app: opt_col(r, 3, AppId::parse)?,
        package: opt_col(r, 4, PackageId::parse)?,
        created_at: time(r, 5)?,
        expires_at: opt_time(r, 6)?,
        revoked_at: opt_time(r, 7)?,
        last_used_at: opt_time(r, 8)?,
    })
}

fn opt_time(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    let secs: Option<i64> = row.get(i)?;
    Ok(secs.map(|s| Timestamp::from_unix_secs(s.max(0) as u64)))
}

const RELEASE_COLUMNS: &str = "package, version, manifest_digest, manifest, content_key, requires, \
     size_bytes, file_count, created_at, publisher, notes, priority, prefetch, routes";

/// Fills the routes of releases stored before version 5 from their manifests, then declares the
/// origins of apps that have releases but no declaration, from all their routes. Runs at every
/// open; does nothing once filled.
fn fill_routes(conn: &Connection) -> Result<()> {
    let mut stmt =
        conn.prepare("SELECT package, version, manifest FROM releases WHERE routes IS NULL")?;
    let missing = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(stmt);
    if missing.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for (package, version, manifest) in missing {
        // Stored manifests were signed by this server; one that no longer parses claims nothing
        // rather than keeping the server from starting.
        let routes = manifest_routes(&manifest).unwrap_or_else(|e| {
            tracing::warn!(%package, %version, error = %e, "stored manifest unreadable; its routes are not claimed");
            Vec::new()
        });
        tx.execute(
            "UPDATE releases SET routes = ?3 WHERE package = ?1 AND version = ?2",
            params![package, version, routes_json(&routes)],
        )?;
    }
    let mut stmt = tx.prepare(
        "SELECT p.app, r.routes FROM releases r JOIN packages p ON p.id = r.package
         WHERE p.app NOT IN (SELECT app FROM apps)",
    )?;
    let mut origins: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (app, routes) = row?;
        let set = origins.entry(app).or_default();
        set.extend(parse_routes(&routes)?.iter().map(|r| r.origin().to_owned()));
    }
    drop(stmt);
    // An app whose stored releases name no route (unreadable manifests) declares at its next
    // publish instead.
    for (app, set) in origins.into_iter().filter(|(_, set)| !set.is_empty()) {
        let list: Vec<String> = set.into_iter().collect();
        tx.execute(
            "INSERT INTO apps (app, origins) VALUES (?1, ?2)",
            params![app, origins_json(&list)?],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Lists the blobs of releases whose blobs are not listed yet (published since the last
/// collection, or before the table existed), from their manifests.
fn fill_release_blobs(tx: &Connection) -> Result<()> {
    let mut stmt = tx.prepare(
        "SELECT package, version, manifest FROM releases r WHERE NOT EXISTS
           (SELECT 1 FROM release_blobs b WHERE b.package = r.package AND b.version = r.version)",
    )?;
    let missing = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(stmt);
    let mut insert = tx.prepare(
        "INSERT OR IGNORE INTO release_blobs (package, version, digest) VALUES (?1, ?2, ?3)",
    )?;
    for (package, version, manifest) in missing {
        // A manifest this server cannot read has blobs it cannot know: removing any blob could
        // break it, so the collection stops here rather than guess.
        let blobs =
            manifest_blobs(&manifest).map_err(|e| unreadable_blobs(&package, &version, e))?;
        for digest in blobs {
            insert.execute(params![package, version, digest.to_string()])?;
        }
    }
    Ok(())
}

fn release_row(row: &Row<'_>) -> rusqlite::Result<ReleaseRecord> {
    Ok(ReleaseRecord {
        package: col(row, 0, PackageId::parse)?,
        version: col(row, 1, ReleaseVersion::parse)?,
        manifest_digest: col(row, 2, Digest::parse)?,
        manifest: row.get(3)?,
        content_key: col(row, 4, Digest::parse)?,
        requires: col(row, 5, HostRequirement::parse)?,
        size_bytes: row.get::<_, i64>(6)?.max(0) as u64,
        file_count: row.get::<_, i64>(7)?.max(0) as u64,
        created_at: time(row, 8)?,
        publisher: row.get(9)?,
        notes: row.get(10)?,
        priority: row.get(11)?,
        prefetch: col(row, 12, Prefetch::parse)?,
        routes: {
            let text: Option<String> = row.get(13)?;
            text.map(|t| parse_routes(&t))
                .transpose()
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(13, Type::Text, Box::new(e))
                })?
                .unwrap_or_default()
        },
    })
}

/// Route ownership, in the publish's transaction: declares the app's origins on its first
/// release, then refuses a route outside them or overlapping another package's.
fn check_routes(tx: &Connection, app: &AppId, release: &ReleaseRecord) -> Result<()> {
    let declared: Option<String> = tx
        .query_row(
            "SELECT origins FROM apps WHERE app = ?1",
            [app.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let origins = match declared {
        Some(text) => parse_origins(app, &text)?,
        None => {
            let list = declared_by(release);
            tx.execute(
                "INSERT INTO apps (app, origins) VALUES (?1, ?2)",
                params![app.as_str(), origins_json(&list)?],
            )?;
            list
        }
    };
    let mut stmt = tx.prepare(
        "SELECT r.package, r.routes FROM releases r JOIN packages p ON p.id = r.package
         WHERE p.app = ?1 AND r.package != ?2 AND r.routes IS NOT NULL",
    )?;
    let others = stmt
        .query_map(params![app.as_str(), release.package.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    check_route_rows(app, release, &origins, others)
}

fn insert_audit(tx: &Connection, audit: &AuditEntry) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            secs(audit.at),
            audit.actor,
            audit.action,
            audit.target,
            audit.detail
        ],
    )?;
    Ok(())
}

/// The sequence of a channel row; 0 when the channel never changed.
fn channel_sequence(c: &Connection, app: &str, channel: &str) -> rusqlite::Result<u64> {
    let sequence: Option<i64> = c
        .query_row(
            "SELECT sequence FROM channels WHERE app = ?1 AND channel = ?2",
            params![app, channel],
            |r| r.get(0),
        )
        .optional()?;
    Ok(sequence.unwrap_or(0).max(0) as u64)
}

fn head_row(c: &Connection, app: &str, channel: &str) -> rusqlite::Result<Option<ChannelHead>> {
    c.query_row(
        "SELECT sequence, issued_at, expires_at, delta_floor FROM channels
         WHERE app = ?1 AND channel = ?2",
        params![app, channel],
        |r| {
            Ok(ChannelHead {
                sequence: r.get::<_, i64>(0)?.max(0) as u64,
                issued_at: time(r, 1)?,
                expires_at: time(r, 2)?,
                delta_floor: r.get::<_, i64>(3)?.max(0) as u64,
            })
        },
    )
    .optional()
}

/// The columns of a package's state on a channel, from column `at` on.
fn channel_package_row(r: &Row<'_>, at: usize) -> rusqlite::Result<ChannelPackage> {
    Ok(ChannelPackage {
        stable: opt_col(r, at, ReleaseVersion::parse)?,
        candidate: opt_col(r, at + 1, ReleaseVersion::parse)?,
        rollout_basis_points: r.get::<_, i64>(at + 2)?.clamp(0, 10_000) as u16,
        paused: r.get(at + 3)?,
    })
}

fn entry_col(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<PackageEntry>> {
    let text: Option<String> = r.get(i)?;
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn package_app(&self, package: &PackageId) -> Result<Option<AppId>> {
        let package = package.clone();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT app FROM packages WHERE id = ?1",
                [package.as_str()],
                |r| col(r, 0, AppId::parse),
            )
            .optional()?)
        })
        .await
    }

    async fn app_packages(&self, app: &AppId) -> Result<Vec<PackageId>> {
        let app = app.clone();
        self.with(move |c| {
            let mut stmt = c.prepare("SELECT id FROM packages WHERE app = ?1 ORDER BY id")?;
            let rows = stmt.query_map([app.as_str()], |r| col(r, 0, PackageId::parse))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn insert_release(
        &self,
        app: &AppId,
        release: &ReleaseRecord,
        audit: &AuditEntry,
    ) -> Result<Inserted> {
        let (app, release, audit) = (app.clone(), release.clone(), audit.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let owner: Option<String> = tx
                .query_row(
                    "SELECT app FROM packages WHERE id = ?1",
                    [release.package.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            match owner {
                Some(owner) if owner != app.as_str() => {
                    return Err(Error::Conflict(format!(
                        "package {} belongs to app {owner}, not {app}",
                        release.package
                    )));
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO packages (id, app, created_at) VALUES (?1, ?2, ?3)",
                        params![release.package.as_str(), app.as_str(), secs(release.created_at)],
                    )?;
                }
            }
            let existing = tx
                .query_row(
                    &format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE package = ?1 AND version = ?2"),
                    params![release.package.as_str(), release.version.to_string()],
                    release_row,
                )
                .optional()?;
            if let Some(existing) = existing {
                return Ok(Inserted::Existing(Box::new(existing)));
            }
            check_routes(&tx, &app, &release)?;
            tx.execute(
                &format!(
                    "INSERT INTO releases ({RELEASE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                params![
                    release.package.as_str(),
                    release.version.to_string(),
                    release.manifest_digest.to_string(),
                    release.manifest,
                    release.content_key.to_string(),
                    release.requires.as_str(),
                    release.size_bytes as i64,
                    release.file_count as i64,
                    secs(release.created_at),
                    release.publisher,
                    release.notes,
                    release.priority,
                    release.prefetch.as_str(),
                    routes_json(&release.routes),
                ],
            )?;
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(Inserted::New)
        })
        .await
    }

    async fn release(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
    ) -> Result<Option<ReleaseRecord>> {
        let (package, version) = (package.clone(), version.to_string());
        self.with(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE package = ?1 AND version = ?2"
                ),
                params![package.as_str(), version],
                release_row,
            )
            .optional()?)
        })
        .await
    }

    async fn release_by_manifest(&self, digest: &Digest) -> Result<Option<ReleaseRecord>> {
        let digest = digest.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE manifest_digest = ?1"),
                [digest],
                release_row,
            )
            .optional()?)
        })
        .await
    }

    async fn releases(&self, package: &PackageId) -> Result<Vec<ReleaseRecord>> {
        let package = package.clone();
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RELEASE_COLUMNS} FROM releases WHERE package = ?1"
            ))?;
            let mut rows = stmt
                .query_map([package.as_str()], release_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.sort_by(|a, b| b.version.cmp(&a.version));
            Ok(rows)
        })
        .await
    }

    async fn channel_state(&self, app: &AppId, channel: &Channel) -> Result<ChannelState> {
        let (app, channel) = (app.clone(), channel.clone());
        self.with(move |c| {
            let tx = c.transaction()?;
            let sequence = channel_sequence(&tx, app.as_str(), channel.as_str())?;
            let mut stmt = tx.prepare(
                "SELECT package, stable, candidate, rollout_basis_points, paused
                 FROM channel_packages WHERE app = ?1 AND channel = ?2",
            )?;
            let packages = stmt
                .query_map(params![app.as_str(), channel.as_str()], |r| {
                    Ok((col(r, 0, PackageId::parse)?, channel_package_row(r, 1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ChannelState { sequence, packages })
        })
        .await
    }

    async fn channel_package(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
    ) -> Result<(u64, ChannelPackage)> {
        let (app, channel, package) = (app.clone(), channel.clone(), package.clone());
        self.with(move |c| {
            let tx = c.transaction()?;
            let sequence = channel_sequence(&tx, app.as_str(), channel.as_str())?;
            let state = tx
                .query_row(
                    "SELECT stable, candidate, rollout_basis_points, paused FROM channel_packages
                     WHERE app = ?1 AND channel = ?2 AND package = ?3",
                    params![app.as_str(), channel.as_str(), package.as_str()],
                    |r| channel_package_row(r, 0),
                )
                .optional()?;
            Ok((sequence, state.unwrap_or_default()))
        })
        .await
    }

    async fn channel_head(&self, app: &AppId, channel: &Channel) -> Result<Option<ChannelHead>> {
        let (app, channel) = (app.clone(), channel.clone());
        self.with(move |c| Ok(head_row(c, app.as_str(), channel.as_str())?))
            .await
    }

    async fn channel_rows(
        &self,
        app: &AppId,
        channel: &Channel,
    ) -> Result<Option<(ChannelHead, Vec<ChannelRow>)>> {
        let (app, channel) = (app.clone(), channel.clone());
        self.with(move |c| {
            let tx = c.transaction()?;
            let Some(head) = head_row(&tx, app.as_str(), channel.as_str())? else {
                return Ok(None);
            };
            let mut stmt = tx.prepare(
                "SELECT package, stable, candidate, rollout_basis_points, paused, entry, sequence
                 FROM channel_packages WHERE app = ?1 AND channel = ?2 ORDER BY package",
            )?;
            let rows = stmt
                .query_map(params![app.as_str(), channel.as_str()], |r| {
                    Ok(ChannelRow {
                        package: col(r, 0, PackageId::parse)?,
                        state: channel_package_row(r, 1)?,
                        entry: entry_col(r, 5)?,
                        sequence: r.get::<_, i64>(6)?.max(0) as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((head, rows)))
        })
        .await
    }

    async fn fill_entries(
        &self,
        app: &AppId,
        channel: &Channel,
        entries: &[(PackageId, PackageEntry)],
    ) -> Result<()> {
        let (app, channel) = (app.clone(), channel.clone());
        let entries = entries
            .iter()
            .map(|(p, e)| Ok((p.clone(), entry_json(e)?)))
            .collect::<Result<Vec<_>>>()?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (package, entry) in &entries {
                tx.execute(
                    "UPDATE channel_packages SET entry = ?4
                     WHERE app = ?1 AND channel = ?2 AND package = ?3 AND entry IS NULL",
                    params![app.as_str(), channel.as_str(), package.as_str(), entry],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn channels(&self) -> Result<Vec<(AppId, Channel)>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT app, channel FROM channels ORDER BY app, channel")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((col(r, 0, AppId::parse)?, col(r, 1, Channel::parse)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn commit_channel(&self, commit: &ChannelCommit) -> Result<bool> {
        let commit = commit.clone();
        let entry = match commit.package.as_ref().and_then(|p| p.entry.as_ref()) {
            Some(entry) => Some(entry_json(entry)?),
            None => None,
        };
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (app, channel) = (commit.app.as_str(), commit.channel.as_str());
            if channel_sequence(&tx, app, channel)? != commit.expected_sequence {
                return Ok(false);
            }
            if commit.sequence <= commit.expected_sequence
                || commit.history.iter().any(|h| h.sequence != commit.sequence)
            {
                return Err(Error::Internal(format!(
                    "channel commit must raise the sequence above {} and record it in the history \
                     (sequence {})",
                    commit.expected_sequence, commit.sequence
                )));
            }
            if let Some(change) = &commit.package {
                // A collection may have removed a release since the change was decided: a
                // channel never names a release that is not stored.
                let package = change.package.as_str();
                for version in versions_named_by(change) {
                    let exists: bool = tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM releases WHERE package = ?1 AND version = ?2)",
                        params![package, version],
                        |r| r.get(0),
                    )?;
                    if !exists {
                        return Err(Error::NotFound(format!("release {package}@{version}")));
                    }
                }
            }
            tx.execute(
                "INSERT INTO channels (app, channel, sequence, issued_at, expires_at, delta_floor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?3)
                 ON CONFLICT (app, channel) DO UPDATE SET sequence = excluded.sequence,
                   issued_at = excluded.issued_at, expires_at = excluded.expires_at",
                params![
                    app,
                    channel,
                    commit.sequence as i64,
                    secs(commit.issued_at),
                    secs(commit.expires_at),
                ],
            )?;
            if let Some(change) = &commit.package {
                let state = &change.state;
                tx.execute(
                    "INSERT INTO channel_packages (app, channel, package, stable, candidate,
                       rollout_basis_points, paused, entry, sequence)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (app, channel, package) DO UPDATE SET stable = excluded.stable,
                       candidate = excluded.candidate,
                       rollout_basis_points = excluded.rollout_basis_points,
                       paused = excluded.paused, entry = excluded.entry,
                       sequence = excluded.sequence",
                    params![
                        app,
                        channel,
                        change.package.as_str(),
                        state.stable.as_ref().map(ToString::to_string),
                        state.candidate.as_ref().map(ToString::to_string),
                        i64::from(state.rollout_basis_points),
                        state.paused,
                        entry,
                        commit.sequence as i64,
                    ],
                )?;
            }
            for h in &commit.history {
                tx.execute(
                    "INSERT INTO history (app, channel, package, at, action, from_version,
                       to_version, rollout_basis_points, actor, reason, sequence, before_state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        app,
                        channel,
                        h.package.as_str(),
                        secs(h.at),
                        h.action,
                        h.from_version.as_ref().map(ToString::to_string),
                        h.to_version.as_ref().map(ToString::to_string),
                        h.rollout_basis_points.map(i64::from),
                        h.actor,
                        h.reason,
                        h.sequence as i64,
                        h.before.as_ref().map(rows::state_text).transpose()?,
                    ],
                )?;
            }
            if let Some(audit) = &commit.audit {
                insert_audit(&tx, audit)?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn index(&self, app: &AppId, channel: &Channel) -> Result<Option<StoredIndex>> {
        let (app, channel) = (app.clone(), channel.clone());
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT sequence, digest, bytes, issued_at, expires_at FROM indexes
                 WHERE app = ?1 AND channel = ?2",
                params![app.as_str(), channel.as_str()],
                |r| {
                    Ok(StoredIndex {
                        sequence: r.get::<_, i64>(0)?.max(0) as u64,
                        digest: col(r, 1, Digest::parse)?,
                        bytes: r.get(2)?,
                        issued_at: time(r, 3)?,
                        expires_at: time(r, 4)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn store_index(&self, app: &AppId, channel: &Channel, index: &StoredIndex) -> Result<()> {
        let (app, channel, index) = (app.clone(), channel.clone(), index.clone());
        self.with(move |c| {
            c.execute(
                "INSERT INTO indexes (app, channel, sequence, digest, bytes, issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (app, channel) DO UPDATE SET sequence = excluded.sequence,
                   digest = excluded.digest, bytes = excluded.bytes,
                   issued_at = excluded.issued_at, expires_at = excluded.expires_at
                 WHERE excluded.sequence > indexes.sequence",
                params![
                    app.as_str(),
                    channel.as_str(),
                    index.sequence as i64,
                    index.digest.to_string(),
                    index.bytes,
                    secs(index.issued_at),
                    secs(index.expires_at),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn history(
        &self,
        app: &AppId,
        channel: &Channel,
        package: Option<&PackageId>,
    ) -> Result<Vec<HistoryEntry>> {
        let (app, channel) = (app.clone(), channel.clone());
        let package = package.map(|p| p.as_str().to_owned());
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT package, at, action, from_version, to_version, rollout_basis_points,
                        actor, reason, sequence, before_state
                 FROM history WHERE app = ?1 AND channel = ?2 AND (?3 IS NULL OR package = ?3)
                 ORDER BY id DESC",
            )?;
            let rows = stmt
                .query_map(params![app.as_str(), channel.as_str(), package], |r| {
                    Ok(HistoryEntry {
                        package: col(r, 0, PackageId::parse)?,
                        at: time(r, 1)?,
                        action: r.get(2)?,
                        from_version: opt_col(r, 3, ReleaseVersion::parse)?,
                        to_version: opt_col(r, 4, ReleaseVersion::parse)?,
                        rollout_basis_points: r
                            .get::<_, Option<i64>>(5)?
                            .map(|bp| bp.clamp(0, 10_000) as u16),
                        actor: r.get(6)?,
                        reason: r.get(7)?,
                        sequence: r.get::<_, i64>(8)?.max(0) as u64,
                        before: r
                            .get::<_, Option<String>>(9)?
                            .map(|t| {
                                rows::state_of(&t).map_err(|e| {
                                    rusqlite::Error::FromSqlConversionFailure(
                                        9,
                                        Type::Text,
                                        Box::new(e),
                                    )
                                })
                            })
                            .transpose()?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
    ) -> Result<Option<PackRecord>> {
        let (package, from, to) = (
            package.as_str().to_owned(),
            from.map(ToString::to_string).unwrap_or_default(),
            to.to_string(),
        );
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT digest, size_bytes FROM packs
                 WHERE package = ?1 AND from_version = ?2 AND to_version = ?3",
                params![package, from, to],
                |r| {
                    Ok(PackRecord {
                        digest: col(r, 0, Digest::parse)?,
                        size_bytes: r.get::<_, i64>(1)?.max(0) as u64,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn insert_pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
        pack: &PackRecord,
    ) -> Result<()> {
        let (package, from, to, pack) = (
            package.as_str().to_owned(),
            from.map(ToString::to_string).unwrap_or_default(),
            to.to_string(),
            pack.clone(),
        );
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A collection may have removed either release while the pack was built: a pack
            // row never outlives its releases.
            for version in [&to, &from].into_iter().filter(|v| !v.is_empty()) {
                let exists: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM releases WHERE package = ?1 AND version = ?2)",
                    params![package, version],
                    |r| r.get(0),
                )?;
                if !exists {
                    return Err(Error::NotFound(format!("release {package}@{version}")));
                }
            }
            tx.execute(
                "INSERT INTO packs (package, from_version, to_version, digest, size_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![
                    package,
                    from,
                    to,
                    pack.digest.to_string(),
                    pack.size_bytes as i64
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn add_stats(
        &self,
        app: &AppId,
        channel: &Channel,
        deltas: &[ReleaseStats],
    ) -> Result<()> {
        let (app, channel, deltas) = (app.clone(), channel.clone(), deltas.to_vec());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for d in &deltas {
                let (Some(package), Some(version)) = (&d.package, &d.version) else {
                    continue;
                };
                let n = |v: u64| v.min(i64::MAX as u64) as i64;
                tx.execute(
                    "INSERT INTO release_stats (app, channel, package, version, installed, activated,
                       ready, failed, rolled_back, opens, offline_hits, under_1s)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (app, channel, package, version) DO UPDATE SET
                       installed = installed + excluded.installed,
                       activated = activated + excluded.activated,
                       ready = ready + excluded.ready,
                       failed = failed + excluded.failed,
                       rolled_back = rolled_back + excluded.rolled_back,
                       opens = opens + excluded.opens,
                       offline_hits = offline_hits + excluded.offline_hits,
                       under_1s = under_1s + excluded.under_1s",
                    params![
                        app.as_str(),
                        channel.as_str(),
                        package.as_str(),
                        version.to_string(),
                        n(d.installed),
                        n(d.activated),
                        n(d.ready),
                        n(d.failed),
                        n(d.rolled_back),
                        n(d.opens),
                        n(d.offline_hits),
                        n(d.under_1s),
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn add_device_reports(
        &self,
        app: &AppId,
        channel: &Channel,
        device: &Digest,
        day: u64,
        reports: &[DeviceReport],
    ) -> Result<()> {
        let (app, channel, device, reports) = (
            app.clone(),
            channel.clone(),
            device.to_string(),
            reports.to_vec(),
        );
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = |v: u64| v.min(i64::MAX as u64) as i64;
            for r in &reports {
                let (Some(package), Some(version)) = (&r.package, &r.version) else {
                    continue;
                };
                let key = (
                    app.as_str(),
                    channel.as_str(),
                    package.as_str(),
                    version.to_string(),
                );
                let add_to_day = |figure: &str, count: u64| {
                    tx.execute(
                        "INSERT INTO release_days (app, channel, package, version, day, figure,
                           count)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (app, channel, package, version, day, figure) DO UPDATE SET
                           count = count + excluded.count",
                        params![key.0, key.1, key.2, key.3, n(day), figure, n(count)],
                    )
                };
                for state in &r.states {
                    let first = tx.execute(
                        "INSERT INTO release_devices (app, channel, package, version, state,
                           device, day, opens, offline_hits, under_1s)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, 0) ON CONFLICT DO NOTHING",
                        params![key.0, key.1, key.2, key.3, state, device, n(day)],
                    )?;
                    if first == 1 {
                        add_to_day(state, 1)?;
                    }
                }
                if r.opens == 0 {
                    continue;
                }
                let stored = tx
                    .query_row(
                        "SELECT day, opens, offline_hits, under_1s FROM release_devices
                         WHERE app = ?1 AND channel = ?2 AND package = ?3 AND version = ?4
                           AND state = 'opens' AND device = ?5",
                        params![key.0, key.1, key.2, key.3, device],
                        |row| {
                            let v = |i| row.get::<_, i64>(i).map(|v| v.max(0) as u64);
                            Ok(DayOpens {
                                day: v(0)?,
                                opens: v(1)?,
                                offline_hits: v(2)?,
                                under_1s: v(3)?,
                            })
                        },
                    )
                    .optional()?;
                let (row, added) = capped_opens(stored, day, r);
                if added.opens == 0 {
                    continue;
                }
                tx.execute(
                    "INSERT INTO release_devices (app, channel, package, version, state, device,
                       day, opens, offline_hits, under_1s)
                     VALUES (?1, ?2, ?3, ?4, 'opens', ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (app, channel, package, version, state, device) DO UPDATE SET
                       day = excluded.day, opens = excluded.opens,
                       offline_hits = excluded.offline_hits, under_1s = excluded.under_1s",
                    params![
                        key.0,
                        key.1,
                        key.2,
                        key.3,
                        device,
                        n(row.day),
                        n(row.opens),
                        n(row.offline_hits),
                        n(row.under_1s)
                    ],
                )?;
                for (figure, count) in [
                    ("opens", added.opens),
                    ("offline_hits", added.offline_hits),
                    ("under_1s", added.under_1s),
                ] {
                    add_to_day(figure, count)?;
                }
                let paints = rows::capped_paints(&r.paint_ms, added.opens);
                for (i, count) in paints.iter().enumerate().filter(|(_, n)| **n > 0) {
                    add_to_day(&rows::paint_figure(i), *count)?;
                }
                tx.execute(
                    "INSERT INTO release_stats (app, channel, package, version, opens,
                       offline_hits, under_1s)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (app, channel, package, version) DO UPDATE SET
                       opens = opens + excluded.opens,
                       offline_hits = offline_hits + excluded.offline_hits,
                       under_1s = under_1s + excluded.under_1s",
                    params![
                        key.0,
                        key.1,
                        key.2,
                        key.3,
                        n(added.opens),
                        n(added.offline_hits),
                        n(added.under_1s)
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn insert_ingest_key(&self, key: &IngestKeyRecord, audit: &AuditEntry) -> Result<()> {
        let (key, audit) = (key.clone(), audit.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM ingest_keys WHERE app = ?1 AND name = ?2)",
                params![key.app.as_str(), key.name],
                |r| r.get(0),
            )?;
            if taken {
                return Err(Error::Conflict(format!(
                    "app {} has an ingest key named {:?}",
                    key.app, key.name
                )));
            }
            tx.execute(
                &format!(
                    "INSERT INTO ingest_keys ({INGEST_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                ),
                params![
                    key.hash.to_string(),
                    key.app.as_str(),
                    key.name,
                    secs(key.created_at),
                    key.revoked_at.map(secs),
                ],
            )?;
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn release_facts(&self, package: &PackageId) -> Result<Vec<ReleaseFact>> {
        let package = package.clone();
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RELEASE_FACT_COLUMNS} FROM releases WHERE package = ?1"
            ))?;
            let rows = stmt
                .query_map([package.as_str()], release_fact_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<()> {
        let session = session.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM console_sessions WHERE expires_at <= ?1",
                [secs(session.created_at)],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO console_sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                ),
                params![
                    session.id.to_string(),
                    session.token.to_string(),
                    session.csrf,
                    secs(session.created_at),
                    secs(session.expires_at),
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id: &Digest) -> Result<Option<SessionRecord>> {
        let id = *id;
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM console_sessions WHERE id = ?1"),
                [id.to_string()],
                session_row,
            )
            .optional()?)
        })
        .await
    }

    async fn delete_session(&self, id: &Digest) -> Result<()> {
        let id = *id;
        self.with(move |c| {
            c.execute(
                "DELETE FROM console_sessions WHERE id = ?1",
                [id.to_string()],
            )?;
            Ok(())
        })
        .await
    }

    async fn ingest_key(&self, hash: &Digest) -> Result<Option<IngestKeyRecord>> {
        let hash = *hash;
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {INGEST_KEY_COLUMNS} FROM ingest_keys WHERE hash = ?1"),
                [hash.to_string()],
                ingest_key_row,
            )
            .optional()?)
        })
        .await
    }

    async fn ingest_keys(&self, app: &AppId) -> Result<Vec<IngestKeyRecord>> {
        let app = app.clone();
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {INGEST_KEY_COLUMNS} FROM ingest_keys WHERE app = ?1
                 ORDER BY created_at, name"
            ))?;
            let rows = stmt
                .query_map([app.as_str()], ingest_key_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn revoke_ingest_key(
        &self,
        app: &AppId,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<IngestKeyRecord> {
        let (app, name, audit) = (app.clone(), name.to_owned(), audit.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE ingest_keys SET revoked_at = ?3
                 WHERE app = ?1 AND name = ?2 AND revoked_at IS NULL",
                params![app.as_str(), name, secs(at)],
            )?;
            if changed > 0 {
                insert_audit(&tx, &audit)?;
            }
            let key = tx
                .query_row(
                    &format!(
                        "SELECT {INGEST_KEY_COLUMNS} FROM ingest_keys WHERE app = ?1 AND name = ?2"
                    ),
                    params![app.as_str(), name],
                    ingest_key_row,
                )
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("ingest key {name:?} of app {app}")))?;
            tx.commit()?;
            Ok(key)
        })
        .await
    }

    async fn put_ramp(&self, ramp: &RampRecord, audit: Option<&AuditEntry>) -> Result<()> {
        let text = rows::ramp_text(ramp)?;
        let (ramp, audit) = (ramp.clone(), audit.cloned());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO ramps (app, channel, package, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app, channel, package) DO UPDATE SET record = excluded.record",
                params![
                    ramp.app.as_str(),
                    ramp.channel.as_str(),
                    ramp.package.as_str(),
                    text
                ],
            )?;
            if let Some(audit) = &audit {
                insert_audit(&tx, audit)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn ramps(&self) -> Result<Vec<RampRecord>> {
        let texts = self
            .with(|c| {
                let mut stmt =
                    c.prepare("SELECT record FROM ramps ORDER BY app, channel, package")?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        texts.iter().map(|t| rows::ramp_of(t)).collect()
    }

    async fn daily_figures(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
    ) -> Result<Vec<DayFigure>> {
        let (app, channel, package) = (app.clone(), channel.clone(), package.clone());
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT version, day, figure, count FROM release_days
                 WHERE app = ?1 AND channel = ?2 AND package = ?3
                 ORDER BY day, version, figure",
            )?;
            let rows = stmt
                .query_map(
                    params![app.as_str(), channel.as_str(), package.as_str()],
                    |r| {
                        Ok(DayFigure {
                            version: col(r, 0, ReleaseVersion::parse)?,
                            day: r.get::<_, i64>(1)?.max(0) as u64,
                            figure: r.get(2)?,
                            count: r.get::<_, i64>(3)?.max(0) as u64,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn stats(&self, app: &AppId, channel: &Channel) -> Result<Vec<ReleaseStats>> {
        let (app, channel) = (app.clone(), channel.clone());
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT package, version, installed, activated, ready, failed, rolled_back, opens,
                        offline_hits, under_1s
                 FROM release_stats WHERE app = ?1 AND channel = ?2",
            )?;
            let n = |r: &Row<'_>, i: usize| -> rusqlite::Result<u64> {
                Ok(r.get::<_, i64>(i)?.max(0) as u64)
            };
            let mut rows = stmt
                .query_map(params![app.as_str(), channel.as_str()], |r| {
                    Ok(ReleaseStats {
                        package: Some(col(r, 0, PackageId::parse)?),
                        version: Some(col(r, 1, ReleaseVersion::parse)?),
                        installed: n(r, 2)?,
                        activated: n(r, 3)?,
                        ready: n(r, 4)?,
                        failed: n(r, 5)?,
                        rolled_back: n(r, 6)?,
                        opens: n(r, 7)?,
                        offline_hits: n(r, 8)?,
                        under_1s: n(r, 9)?,
                        paint_ms: Default::default(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = c.prepare(&format!(
                "SELECT package, version, figure, SUM(count) FROM release_days
                 WHERE app = ?1 AND channel = ?2 AND figure IN ({})
                 GROUP BY package, version, figure",
                rows::COUNTED_FIGURES
            ))?;
            let counts = stmt
                .query_map(params![app.as_str(), channel.as_str()], |r| {
                    Ok((
                        col(r, 0, PackageId::parse)?,
                        col(r, 1, ReleaseVersion::parse)?,
                        r.get::<_, String>(2)?,
                        n(r, 3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            add_device_counts(&mut rows, counts);
            Ok(rows)
        })
        .await
    }

    async fn app_origins(&self, app: &AppId) -> Result<Option<Vec<String>>> {
        let app = app.clone();
        self.with(move |c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT origins FROM apps WHERE app = ?1",
                    [app.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            text.map(|t| parse_origins(&app, &t)).transpose()
        })
        .await
    }

    async fn set_app_origins(
        &self,
        app: &AppId,
        origins: &[String],
        audit: &AuditEntry,
    ) -> Result<()> {
        let (app, origins, audit) = (app.clone(), origins.to_vec(), audit.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut stmt = tx.prepare(
                "SELECT r.package, r.version, r.routes FROM releases r
                 JOIN packages p ON p.id = r.package WHERE p.app = ?1 AND r.routes IS NOT NULL",
            )?;
            let rows = stmt
                .query_map([app.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            check_new_origins(&app, &origins, rows)?;
            tx.execute(
                "INSERT INTO apps (app, origins) VALUES (?1, ?2)
                 ON CONFLICT (app) DO UPDATE SET origins = excluded.origins",
                params![app.as_str(), origins_json(&origins)?],
            )?;
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn key_lists(&self, app: &AppId) -> Result<Vec<Vec<u8>>> {
        let app = app.clone();
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT envelope FROM key_lists WHERE app = ?1 ORDER BY version")?;
            let rows = stmt.query_map([app.as_str()], |r| r.get::<_, Vec<u8>>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn insert_key_list(
        &self,
        app: &AppId,
        version: u64,
        envelope: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool> {
        let (app, envelope, audit) = (app.clone(), envelope.to_vec(), audit.clone());
        let version = i64::try_from(version)
            .map_err(|_| Error::BadRequest(format!("key list version {version} is too large")))?;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = tx.execute(
                "INSERT INTO key_lists (app, version, envelope) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app, version) DO NOTHING",
                params![app.as_str(), version, envelope],
            )?;
            if inserted == 0 {
                return Ok(false);
            }
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn set_manifest(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
        manifest: &[u8],
        audit: &AuditEntry,
    ) -> Result<()> {
        let (package, version, manifest, audit) = (
            package.clone(),
            version.clone(),
            manifest.to_vec(),
            audit.clone(),
        );
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let updated = tx.execute(
                "UPDATE releases SET manifest = ?3 WHERE package = ?1 AND version = ?2",
                params![package.as_str(), version.to_string(), manifest],
            )?;
            if updated == 0 {
                return Err(Error::NotFound(format!("release {package}@{version}")));
            }
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEntry) -> Result<()> {
        let (token, audit) = (token.clone(), audit.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM tokens WHERE name = ?1)",
                [&token.name],
                |r| r.get(0),
            )?;
            if taken {
                return Err(Error::Conflict(format!(
                    "a token named {:?} exists",
                    token.name
                )));
            }
            tx.execute(
                "INSERT INTO tokens (hash, name, scope, app, package, created_at, expires_at, \
                 revoked_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    token.hash.to_string(),
                    token.name,
                    token.scope.as_str(),
                    token.app.as_ref().map(|a| a.as_str().to_owned()),
                    token.package.as_ref().map(|p| p.as_str().to_owned()),
                    secs(token.created_at),
                    token.expires_at.map(secs),
                    token.revoked_at.map(secs),
                    token.last_used_at.map(secs),
                ],
            )?;
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>> {
        let hash = *hash;
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"),
                [hash.to_string()],
                token_row,
            )
            .optional()?)
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, name"
            ))?;
            let rows = stmt
                .query_map([], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn revoke_token(
        &self,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<TokenRecord> {
        let (name, audit) = (name.to_owned(), audit.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, secs(at)],
            )?;
            if changed > 0 {
                insert_audit(&tx, &audit)?;
            }
            let token = tx
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE name = ?1"),
                    [&name],
                    token_row,
                )
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("token {name:?}")))?;
            tx.commit()?;
            Ok(token)
        })
        .await
    }

    async fn token_used(&self, hash: &Digest, at: Timestamp, audit: &AuditEntry) -> Result<()> {
        let (hash, audit) = (*hash, audit.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE hash = ?1",
                params![hash.to_string(), secs(at)],
            )?;
            if changed > 0 {
                insert_audit(&tx, &audit)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok(AuditEntry {
                        at: time(r, 0)?,
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                        detail: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
    async fn retention_facts(&self) -> Result<RetentionFacts> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut stmt = tx.prepare(&format!("SELECT {RELEASE_FACT_COLUMNS} FROM releases"))?;
            let releases = stmt
                .query_map([], release_fact_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            let mut stmt =
                tx.prepare("SELECT package, stable, candidate, entry FROM channel_packages")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        col(r, 0, PackageId::parse)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            let mut named = Vec::new();
            for (package, stable, candidate, entry) in rows {
                for version in named_versions(stable, candidate, entry)? {
                    named.push((package.clone(), ReleaseVersion::parse(&version)?));
                }
            }
            let mut stmt = tx.prepare(
                "SELECT app, channel, package, from_version, to_version, at FROM history
                 ORDER BY id DESC",
            )?;
            let history = stmt
                .query_map([], |r| {
                    Ok(HistoryMention {
                        app: col(r, 0, AppId::parse)?,
                        channel: col(r, 1, Channel::parse)?,
                        package: col(r, 2, PackageId::parse)?,
                        from_version: opt_col(r, 3, ReleaseVersion::parse)?,
                        to_version: opt_col(r, 4, ReleaseVersion::parse)?,
                        at: time(r, 5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            let mut stmt = tx.prepare(
                "SELECT package, from_version, to_version, digest, size_bytes FROM packs",
            )?;
            let packs = stmt
                .query_map([], |r| {
                    let from: String = r.get(1)?;
                    Ok(PackFact {
                        package: col(r, 0, PackageId::parse)?,
                        from: if from.is_empty() {
                            None
                        } else {
                            Some(col(r, 1, ReleaseVersion::parse)?)
                        },
                        to: col(r, 2, ReleaseVersion::parse)?,
                        digest: col(r, 3, Digest::parse)?,
                        size_bytes: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            let history_mark: i64 =
                tx.query_row("SELECT COALESCE(MAX(id), 0) FROM history", [], |r| r.get(0))?;
            Ok(RetentionFacts {
                releases,
                named,
                history,
                packs,
                history_mark: history_mark.max(0) as u64,
            })
        })
        .await
    }

    async fn delete_releases(
        &self,
        releases: &BTreeSet<(PackageId, ReleaseVersion)>,
        history_mark: u64,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let (releases, audit) = (releases.clone(), audit.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mark: i64 =
                tx.query_row("SELECT COALESCE(MAX(id), 0) FROM history", [], |r| r.get(0))?;
            if mark.max(0) as u64 != history_mark {
                return Ok(false);
            }
            let packages: BTreeSet<&PackageId> = releases.iter().map(|(p, _)| p).collect();
            let mut stmt = tx.prepare(
                "SELECT stable, candidate, entry FROM channel_packages WHERE package = ?1",
            )?;
            for package in packages {
                let rows = stmt
                    .query_map([package.as_str()], |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for (stable, candidate, entry) in rows {
                    for version in named_versions(stable, candidate, entry)? {
                        if releases.contains(&(package.clone(), ReleaseVersion::parse(&version)?)) {
                            return Ok(false);
                        }
                    }
                }
            }
            drop(stmt);
            for (package, version) in &releases {
                let (package, version) = (package.as_str(), version.to_string());
                tx.execute(
                    "DELETE FROM packs WHERE package = ?1 AND (to_version = ?2 OR from_version = ?2)",
                    params![package, version],
                )?;
                tx.execute(
                    "DELETE FROM release_blobs WHERE package = ?1 AND version = ?2",
                    params![package, version],
                )?;
                tx.execute(
                    "DELETE FROM releases WHERE package = ?1 AND version = ?2",
                    params![package, version],
                )?;
            }
            insert_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn live_digests(
        &self,
        excluding: &BTreeSet<(PackageId, ReleaseVersion)>,
    ) -> Result<HashSet<Digest>> {
        let excluding: BTreeSet<(String, String)> = excluding
            .iter()
            .map(|(p, v)| (p.as_str().to_owned(), v.to_string()))
            .collect();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            fill_release_blobs(&tx)?;
            let mut live = HashSet::new();
            let mut stmt = tx.prepare("SELECT package, version, digest FROM release_blobs")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let key = (r.get::<_, String>(0)?, r.get::<_, String>(1)?);
                if !excluding.contains(&key) {
                    live.insert(col(r, 2, Digest::parse)?);
                }
            }
            drop(rows);
            drop(stmt);
            let mut stmt =
                tx.prepare("SELECT package, from_version, to_version, digest FROM packs")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let package: String = r.get(0)?;
                let gone = |version: String| excluding.contains(&(package.clone(), version));
                if !gone(r.get(1)?) && !gone(r.get(2)?) {
                    live.insert(col(r, 3, Digest::parse)?);
                }
            }
            drop(rows);
            drop(stmt);
            tx.commit()?;
            Ok(live)
        })
        .await
    }

    async fn last_collection(&self) -> Result<Option<Timestamp>> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT last_at FROM collections WHERE id = 1", [], |r| {
                    time(r, 0)
                })
                .optional()?,
            )
        })
        .await
    }

    async fn set_last_collection(&self, at: Timestamp) -> Result<()> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO collections (id, last_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET last_at = excluded.last_at",
                [secs(at)],
            )?;
            Ok(())
        })
        .await
    }
}
