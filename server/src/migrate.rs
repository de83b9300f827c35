//! `baleen migrate`: copies an embedded install (the data directory's `blobs/` and
//! `meta.sqlite3`) to a scaled one (an S3-compatible bucket and PostgreSQL), offline, with the
//! embedded server stopped.
//!
//! The blobs go first, each checked on both ends: the data directory's file must have the sha256
//! it is stored under, and the target's copy, read back, must too (a copy that does not is
//! removed). Blobs the target already holds with the right size are skipped, so a run that failed
//! half way resumes where it stopped. The metadata follows: every table, read from one SQLite
//! read transaction (one snapshot), written in one PostgreSQL transaction and read back before it
//! commits. So no row the scaled servers see names a blob the bucket lacks, and a failed run
//! leaves PostgreSQL as it found it.
//!
//! A run finds PostgreSQL empty (it copies), or holding exactly this install's rows (a run before
//! it committed: it says so and copies nothing); any other data there is refused before anything
//! is written anywhere. Tables are copied by name and column: the two schemas must have the same
//! tables and columns, which the first step checks (the stores' migrations keep them alike).
//!
//! What this does not do: copy the signing keys (files the scaled servers are given with `--key`
//! and `--extra-key`), or copy from a bucket (an install whose blobs are in S3 already).

use std::path::{Path, PathBuf};
use std::time::Instant;

use manifests::Digest;
use serde::Serialize;
use tokio_postgres::IsolationLevel;

use crate::blob_store::BlobStore;
use crate::error::{Error, Result};
use crate::meta_store::postgres::PostgresMetaStore;

mod blobs;
mod source;
mod tables;

use self::blobs::copy_blobs;
use self::source::Source;
use self::tables::{TargetState, connect, copy_metadata, schema, target_state};
#[cfg(test)]
mod tests;

/// Every metadata table, each after the tables its foreign keys name.
pub const TABLES: [&str; 19] = [
    "packages",
    "apps",
    "releases",
    "channels",
    "channel_packages",
    "indexes",
    "history",
    "packs",
    "release_stats",
    "tokens",
    "audit",
    "release_blobs",
    "collections",
    "key_lists",
    "ingest_keys",
    "release_devices",
    "ramps",
    "console_sessions",
    "release_days",
];

/// PostgreSQL's own tables, with no counterpart in an embedded install: coordination between
/// replicas (leases on work one of them does at a time), neither copied nor compared.
pub const POSTGRES_ONLY: [&str; 1] = ["leases"];

/// Why a migration stopped. Each message says what was wrong, where, and what was left changed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The source directory is not an embedded install.
    #[error(
        "{dir} is not an embedded install: it has no {missing} (give the --data-dir that `baleen serve` used)"
    )]
    NotAnInstall {
        /// The directory given.
        dir: PathBuf,
        /// What it lacks.
        missing: &'static str,
    },
    /// The SQLite and PostgreSQL schemas do not have the same tables and columns.
    #[error(
        "the metadata schemas differ ({detail}); this baleen cannot copy between them, nothing was changed"
    )]
    SchemaMismatch {
        /// Which tables or columns differ.
        detail: String,
    },
    /// A stored value PostgreSQL's column cannot take.
    #[error("{table}.{column} in meta.sqlite3: {reason}; nothing was copied to PostgreSQL")]
    BadValue {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// PostgreSQL holds rows that are not this install's.
    #[error(
        "the PostgreSQL database already holds other data ({detail}); migrate copies into an empty database only (or finds its own finished copy there), so nothing was changed"
    )]
    TargetHoldsOtherData {
        /// The tables that differ, with their row counts.
        detail: String,
    },
    /// Files of the data directory whose bytes do not have the sha256 they are stored under.
    #[error(
        "{count} damaged file(s) in {dir}, so no metadata was copied: {list}; restore each from a backup (or delete it if no release lists it) and run migrate again"
    )]
    DamagedBlobs {
        /// The data directory's `blobs/`.
        dir: PathBuf,
        /// How many.
        count: usize,
        /// The first few, with what their bytes hash to.
        list: String,
    },
    /// A copy read back from the target does not have the bytes that were sent.
    #[error(
        "{what}: the target's copy reads back as {actual_size} bytes with sha256 {actual}, not the {size} bytes sent; {action}, run migrate again"
    )]
    ArrivedDamaged {
        /// `blob …` or `gzip representation of blob …`.
        what: String,
        /// The size sent.
        size: u64,
        /// The sha256 read back.
        actual: Digest,
        /// The size read back.
        actual_size: u64,
        /// What was done about it.
        action: &'static str,
    },
    /// The metadata names a blob that neither the data directory nor the target holds.
    #[error(
        "{by} names blob {digest}, which is neither in {dir} nor in the target bucket: the install is damaged, so no metadata was copied"
    )]
    MissingBlob {
        /// `release checkout@1.4.0` or `pack checkout 1.3.0 → 1.4.0`.
        by: String,
        /// The blob.
        digest: Digest,
        /// The data directory's `blobs/`.
        dir: PathBuf,
    },
    /// PostgreSQL does not hold, after the copy, the rows that were sent.
    #[error(
        "table {table}: PostgreSQL holds {target_rows} rows after the copy, not the {source_rows} rows sent{contents}; rolled back"
    )]
    CopyDiffers {
        /// The table.
        table: String,
        /// Rows sent.
        source_rows: u64,
        /// Rows read back.
        target_rows: u64,
        /// `, with other contents` when the counts agree.
        contents: &'static str,
    },
}

impl MigrateError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            MigrateError::NotAnInstall { .. } => "not_an_install",
            MigrateError::SchemaMismatch { .. } => "schema_mismatch",
            MigrateError::BadValue { .. } => "bad_value",
            MigrateError::TargetHoldsOtherData { .. } => "target_holds_other_data",
            MigrateError::DamagedBlobs { .. } => "damaged_blobs",
            MigrateError::ArrivedDamaged { .. } => "arrived_damaged",
            MigrateError::MissingBlob { .. } => "missing_blob",
            MigrateError::CopyDiffers { .. } => "copy_differs",
        }
    }
}

/// What a migration did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// The blobs and their precompressed representations.
    pub blobs: BlobReport,
    /// Whether the metadata was copied now or by an earlier run.
    pub metadata: MetadataOutcome,
    /// Rows per table, in copy order.
    pub tables: Vec<TableReport>,
    /// How long the whole migration took.
    pub elapsed_ms: u64,
}

/// Blobs copied and skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlobReport {
    /// Blobs uploaded and verified.
    pub copied: u64,
    /// Their bytes.
    pub copied_bytes: u64,
    /// Blobs the target already held with the right size.
    pub skipped: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    /// Of the copied, those the target held with another size (damaged), removed and copied.
    pub replaced: u64,
    /// Precompressed representations uploaded and verified.
    pub variants_copied: u64,
    /// Representations the target already held with the right size.
    pub variants_skipped: u64,
}

/// Whether this run wrote the metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataOutcome {
    /// Copied in this run's transaction.
    #[default]
    Copied,
    /// PostgreSQL already held exactly these rows (an earlier run committed); nothing written.
    AlreadyCopied,
}

/// One table's rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// Its rows.
    pub rows: u64,
}

/// Copies the embedded install in `data_dir` (which must not be served meanwhile) to the blob
/// store `blobs` and the PostgreSQL database `meta` (already at this server's schema, as
/// [`PostgresMetaStore::connect`] leaves it). Safe to run again after a failure, and after a
/// success (it then copies nothing).
///
/// # Errors
/// [`MigrateError`] (in [`Error::Migrate`]) when the install or the target is refused or a copy
/// does not verify; the stores' own errors when they fail. Whatever the error, PostgreSQL is as
/// the run found it; blobs already copied stay (the next run skips them).
pub async fn migrate(
    data_dir: &Path,
    blobs: &dyn BlobStore,
    meta: &PostgresMetaStore,
) -> Result<MigrationReport> {
    let started = Instant::now();
    let dir = data_dir.to_owned();
    // Opening may upgrade the SQLite file: blocking work.
    let source = tokio::task::spawn_blocking(move || Source::open(&dir))
        .await
        .map_err(|e| Error::Internal(format!("opening the install: {e}")))??;
    let mut client = connect(meta).await?;
    let tables = schema(&source, &client).await?;
    // Other data in PostgreSQL is refused before anything is written anywhere.
    let before = {
        let tx = client
            .build_transaction()
            .read_only(true)
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let state = target_state(&tx, &source, &tables).await?;
        tx.commit().await?;
        state
    };
    let referenced = source.referenced_blobs().await?;
    let blob_report = copy_blobs(&source, blobs, &referenced).await?;
    let (metadata, summaries) = match before {
        TargetState::Same(summaries) => (MetadataOutcome::AlreadyCopied, summaries),
        TargetState::Empty => copy_metadata(&mut client, &source, &tables).await?,
    };
    Ok(MigrationReport {
        blobs: blob_report,
        metadata,
        tables: tables
            .iter()
            .zip(&summaries)
            .map(|(t, s)| TableReport {
                table: t.name.to_owned(),
                rows: s.rows,
            })
            .collect(),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Checks that `dir` looks like an embedded install (its `meta.sqlite3` and `blobs/`), before
/// anything else is opened.
///
/// # Errors
/// [`MigrateError::NotAnInstall`] naming what it lacks.
pub fn check_install(dir: &Path) -> Result<()> {
    let not_an_install = |missing| MigrateError::NotAnInstall {
        dir: dir.to_owned(),
        missing,
    };
    if !dir.join("meta.sqlite3").is_file() {
        return Err(not_an_install("meta.sqlite3").into());
    }
    if !dir.join("blobs").is_dir() {
        return Err(not_an_install("blobs/ directory").into());
    }
    Ok(())
}
