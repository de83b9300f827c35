//! The embedded install as the migration reads it: its blob files, and one SQLite read snapshot
//! whose tables are streamed in chunks to whoever copies or compares them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use manifests::Digest;
use rusqlite::Connection;

use super::tables::{Cell, Summary, Summing, Table, quote};
use super::{MigrateError, check_install};
use crate::blob_store::fs::FsBlobStore;
use crate::error::{Error, Result};
use crate::meta_store::rows::manifest_blobs;
use crate::meta_store::sqlite::SqliteMetaStore;

/// Rows handed from the SQLite reader to PostgreSQL at once, at most…
const ROWS_PER_CHUNK: usize = 256;

/// …and about this many bytes (manifests can be large).
const CHUNK_BYTES: usize = 4 << 20;

/// The embedded install: its blob files and one read snapshot of its metadata.
pub(super) struct Source {
    pub(super) dir: PathBuf,
    pub(super) blobs: FsBlobStore,
    /// A connection inside a read transaction, so every read sees the same snapshot.
    snapshot: Arc<Mutex<Connection>>,
}

impl Source {
    pub(super) fn open(dir: &Path) -> Result<Source> {
        check_install(dir)?;
        let meta = dir.join("meta.sqlite3");
        // Opening brings the file to this server's schema (and fills what old versions left
        // out) so that it matches PostgreSQL's.
        drop(SqliteMetaStore::open(&meta)?);
        let conn = Connection::open(&meta)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // The first read after BEGIN fixes the snapshot every later read sees.
        conn.execute_batch("BEGIN")?;
        conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(Source {
            dir: dir.to_owned(),
            blobs: FsBlobStore::open(dir.join("blobs"))?,
            snapshot: Arc::new(Mutex::new(conn)),
        })
    }

    pub(super) fn blob_dir(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    /// Runs `f` on the snapshot off the async threads.
    pub(super) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.snapshot.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| Error::Internal("metadata snapshot lock poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(|e| Error::Internal(format!("reading meta.sqlite3: {e}")))?
    }

    /// The rows of `table`, in chunks, from the snapshot.
    pub(super) fn rows(&self, table: &Table) -> RowReader {
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let conn = self.snapshot.clone();
        let table = table.clone();
        let task = tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| Error::Internal("metadata snapshot lock poisoned".into()))?;
            send_rows(&guard, &table, &sender)
        });
        RowReader { receiver, task }
    }

    /// Every table's row count and digest.
    pub(super) async fn summaries(&self, tables: &[Table]) -> Result<Vec<Summary>> {
        let mut out = Vec::with_capacity(tables.len());
        for table in tables {
            let mut rows = self.rows(table);
            let mut summing = Summing::new(table);
            while let Some(chunk) = rows.next().await {
                chunk.iter().for_each(|row| summing.add(row));
            }
            rows.finish().await?;
            out.push(summing.finish());
        }
        Ok(out)
    }

    /// The blobs the metadata names, each with the first thing naming it: every release's files
    /// (from its manifest) and every pack.
    pub(super) async fn referenced_blobs(&self) -> Result<BTreeMap<Digest, String>> {
        self.with(|conn| {
            let mut named = BTreeMap::new();
            let mut stmt = conn.prepare("SELECT package, version, manifest FROM releases")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (package, version): (String, String) = (row.get(0)?, row.get(1)?);
                let manifest: Vec<u8> = row.get(2)?;
                match manifest_blobs(&manifest) {
                    Ok(blobs) => {
                        for digest in blobs {
                            named
                                .entry(digest)
                                .or_insert_with(|| format!("release {package}@{version}"));
                        }
                    }
                    // Every blob file is copied anyway; only this check cannot cover it.
                    Err(e) => tracing::warn!(
                        %package, %version, error = %e,
                        "stored manifest unreadable; its blobs are copied with the rest but not checked by name"
                    ),
                }
            }
            drop(rows);
            let mut stmt =
                conn.prepare("SELECT package, from_version, to_version, digest FROM packs")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (package, from, to, hex): (String, String, String, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let digest = Digest::parse(&hex).map_err(|e| MigrateError::BadValue {
                    table: "packs".into(),
                    column: "digest".into(),
                    reason: format!("pack {package} {from} → {to}: {e}"),
                })?;
                named
                    .entry(digest)
                    .or_insert_with(|| format!("pack {package} {from} → {to}"));
            }
            Ok(named)
        })
        .await
    }

    /// The highest value an AUTOINCREMENT table ever gave (deleted rows included), if any.
    pub(super) async fn autoincrement(&self, table: &'static str) -> Result<Option<i64>> {
        self.with(move |conn| {
            let has: i64 = conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'",
                [],
                |r| r.get(0),
            )?;
            if has == 0 {
                return Ok(None);
            }
            let mut stmt = conn.prepare("SELECT seq FROM sqlite_sequence WHERE name = ?1")?;
            let mut rows = stmt.query([table])?;
            match rows.next()? {
                Some(row) => Ok(row.get::<_, Option<i64>>(0)?),
                None => Ok(None),
            }
        })
        .await
    }
}

/// Rows of one table arriving from the SQLite reader.
pub(super) struct RowReader {
    receiver: tokio::sync::mpsc::Receiver<Vec<Vec<Cell>>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl RowReader {
    pub(super) async fn next(&mut self) -> Option<Vec<Vec<Cell>>> {
        self.receiver.recv().await
    }

    /// Whether the reader read every row (it stops at the first error, which ends the chunks).
    pub(super) async fn finish(self) -> Result<()> {
        drop(self.receiver);
        self.task
            .await
            .map_err(|e| Error::Internal(format!("reading meta.sqlite3: {e}")))?
    }
}

/// Reads a table and sends its rows in chunks; stops quietly when the receiver is gone.
fn send_rows(
    conn: &Connection,
    table: &Table,
    sender: &tokio::sync::mpsc::Sender<Vec<Vec<Cell>>>,
) -> Result<()> {
    let sql = format!("SELECT {} FROM {}", table.column_list(), quote(table.name));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let (mut chunk, mut bytes) = (Vec::new(), 0);
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(table.columns.len());
        for (i, column) in table.columns.iter().enumerate() {
            let cell = Cell::from_sqlite(column.ty, row.get_ref(i)?).map_err(|reason| {
                MigrateError::BadValue {
                    table: table.name.to_owned(),
                    column: column.name.clone(),
                    reason,
                }
            })?;
            bytes += cell.size_bytes();
            cells.push(cell);
        }
        chunk.push(cells);
        if chunk.len() >= ROWS_PER_CHUNK || bytes >= CHUNK_BYTES {
            if sender.blocking_send(std::mem::take(&mut chunk)).is_err() {
                return Ok(());
            }
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        // A receiver gone has stopped for its own reason, which it reports.
        let _ = sender.blocking_send(chunk);
    }
    Ok(())
}
