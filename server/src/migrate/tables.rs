//! The metadata side: the two schemas checked against each other, values typed as PostgreSQL's
//! columns, order-free digests of tables, and the copy in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use futures::TryStreamExt;
use manifests::{Digest, Hasher};
use rusqlite::types::ValueRef;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};

use super::source::Source;
use super::{MetadataOutcome, MigrateError, POSTGRES_ONLY, TABLES};
use crate::error::{Error, Result};
use crate::meta_store::postgres::PostgresMetaStore;

/// A separate connection to the target database, for the migration's transactions.
pub(super) async fn connect(meta: &PostgresMetaStore) -> Result<Client> {
    let (client, connection) = meta.config().connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the migration's PostgreSQL connection failed");
        }
    });
    Ok(client)
}

/// The type of a column, as PostgreSQL declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ColumnType {
    BigInt,
    Integer,
    Boolean,
    Text,
    Bytes,
}

impl ColumnType {
    fn from_postgres(data_type: &str) -> Option<ColumnType> {
        Some(match data_type {
            "bigint" => ColumnType::BigInt,
            "integer" => ColumnType::Integer,
            "boolean" => ColumnType::Boolean,
            "text" => ColumnType::Text,
            "bytea" => ColumnType::Bytes,
            _ => return None,
        })
    }

    pub(super) fn postgres(self) -> Type {
        match self {
            ColumnType::BigInt => Type::INT8,
            ColumnType::Integer => Type::INT4,
            ColumnType::Boolean => Type::BOOL,
            ColumnType::Text => Type::TEXT,
            ColumnType::Bytes => Type::BYTEA,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) ty: ColumnType,
    /// Filled from a sequence (`BIGSERIAL`) in PostgreSQL.
    pub(super) serial: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Table {
    pub(super) name: &'static str,
    /// In PostgreSQL's order.
    pub(super) columns: Vec<Column>,
}

impl Table {
    pub(super) fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn serial(&self) -> Option<(usize, &Column)> {
        self.columns.iter().enumerate().find(|(_, c)| c.serial)
    }
}

/// An SQL identifier, quoted.
pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks that SQLite and PostgreSQL have exactly the tables of [`TABLES`], with the same
/// columns, and returns them with PostgreSQL's column types.
pub(super) async fn schema(source: &Source, client: &Client) -> Result<Vec<Table>> {
    let sqlite: BTreeMap<String, BTreeSet<String>> = source
        .with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            )?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = BTreeMap::new();
            for name in names {
                let mut info = conn.prepare(&format!("PRAGMA table_info({})", quote(&name)))?;
                let columns = info
                    .query_map([], |r| r.get::<_, String>(1))?
                    .collect::<rusqlite::Result<BTreeSet<_>>>()?;
                out.insert(name, columns);
            }
            Ok(out)
        })
        .await?;
    let rows = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, \
                    COALESCE(column_default::text, '')
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> 'schema_migrations'
             ORDER BY table_name, ordinal_position",
            &[],
        )
        .await?;
    let mut postgres: BTreeMap<String, Vec<(String, String, bool)>> = BTreeMap::new();
    for row in rows {
        let (table, column, ty, default): (String, String, String, String) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
        postgres
            .entry(table)
            .or_default()
            .push((column, ty, default.starts_with("nextval(")));
    }
    let mismatch = |detail: String| -> Error { MigrateError::SchemaMismatch { detail }.into() };
    let known: BTreeSet<&str> = TABLES.into_iter().collect();
    for (engine, names) in [
        ("meta.sqlite3", sqlite.keys().collect::<Vec<_>>()),
        ("PostgreSQL", postgres.keys().collect::<Vec<_>>()),
    ] {
        let have: BTreeSet<&str> = names
            .into_iter()
            .map(String::as_str)
            .filter(|t| !(engine == "PostgreSQL" && POSTGRES_ONLY.contains(t)))
            .collect();
        let extra: Vec<&str> = have.difference(&known).copied().collect();
        let missing: Vec<&str> = known.difference(&have).copied().collect();
        if !extra.is_empty() || !missing.is_empty() {
            return Err(mismatch(format!(
                "{engine} has tables [{}] that migrate does not know and lacks [{}]",
                extra.join(", "),
                missing.join(", ")
            )));
        }
    }
    let mut tables = Vec::with_capacity(TABLES.len());
    for name in TABLES {
        // Both sides have every table: checked above.
        let (Some(theirs), Some(ours)) = (sqlite.get(name), postgres.get(name)) else {
            return Err(mismatch(format!("table {name} is missing")));
        };
        let pg_names: BTreeSet<String> = ours.iter().map(|(c, _, _)| c.clone()).collect();
        if &pg_names != theirs {
            let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
                a.difference(b).cloned().collect::<Vec<_>>().join(", ")
            };
            return Err(mismatch(format!(
                "table {name}: columns only in meta.sqlite3 [{}], only in PostgreSQL [{}]",
                only(theirs, &pg_names),
                only(&pg_names, theirs)
            )));
        }
        let mut columns = Vec::with_capacity(ours.len());
        for (column, ty, serial) in ours {
            let ty = ColumnType::from_postgres(ty).ok_or_else(|| {
                mismatch(format!(
                    "{name}.{column} has PostgreSQL type {ty}, which migrate cannot copy"
                ))
            })?;
            columns.push(Column {
                name: column.clone(),
                ty,
                serial: *serial,
            });
        }
        tables.push(Table { name, columns });
    }
    Ok(tables)
}

/// One value, typed as PostgreSQL's column is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Cell {
    BigInt(Option<i64>),
    Integer(Option<i32>),
    Boolean(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Cell {
    /// Converts an SQLite value for a column of type `ty`, or says why it cannot.
    pub(super) fn from_sqlite(
        ty: ColumnType,
        value: ValueRef<'_>,
    ) -> std::result::Result<Cell, String> {
        let shown = |value: ValueRef<'_>| match value {
            ValueRef::Null => "NULL".to_owned(),
            ValueRef::Integer(n) => n.to_string(),
            ValueRef::Real(x) => x.to_string(),
            ValueRef::Text(t) => format!("text {:?}", String::from_utf8_lossy(t)),
            ValueRef::Blob(b) => format!("a blob of {} bytes", b.len()),
        };
        let refuse = |what: &str| format!("{} is not {what}", shown(value));
        Ok(match (ty, value) {
            (ColumnType::BigInt, ValueRef::Null) => Cell::BigInt(None),
            (ColumnType::BigInt, ValueRef::Integer(n)) => Cell::BigInt(Some(n)),
            (ColumnType::BigInt, _) => return Err(refuse("an integer")),
            (ColumnType::Integer, ValueRef::Null) => Cell::Integer(None),
            (ColumnType::Integer, ValueRef::Integer(n)) => Cell::Integer(Some(
                i32::try_from(n).map_err(|_| refuse("a 32-bit integer"))?,
            )),
            (ColumnType::Integer, _) => return Err(refuse("an integer")),
            (ColumnType::Boolean, ValueRef::Null) => Cell::Boolean(None),
            (ColumnType::Boolean, ValueRef::Integer(0)) => Cell::Boolean(Some(false)),
            (ColumnType::Boolean, ValueRef::Integer(1)) => Cell::Boolean(Some(true)),
            (ColumnType::Boolean, _) => return Err(refuse("a boolean (0 or 1)")),
            (ColumnType::Text, ValueRef::Null) => Cell::Text(None),
            (ColumnType::Text, ValueRef::Text(t)) => Cell::Text(Some(
                String::from_utf8(t.to_vec()).map_err(|_| refuse("UTF-8 text"))?,
            )),
            (ColumnType::Text, _) => return Err(refuse("text")),
            (ColumnType::Bytes, ValueRef::Null) => Cell::Bytes(None),
            (ColumnType::Bytes, ValueRef::Blob(b) | ValueRef::Text(b)) => {
                Cell::Bytes(Some(b.to_vec()))
            }
            (ColumnType::Bytes, _) => return Err(refuse("bytes")),
        })
    }

    /// Reads column `i` of a PostgreSQL row as type `ty`.
    fn from_postgres(ty: ColumnType, row: &tokio_postgres::Row, i: usize) -> Result<Cell> {
        Ok(match ty {
            ColumnType::BigInt => Cell::BigInt(row.try_get(i)?),
            ColumnType::Integer => Cell::Integer(row.try_get(i)?),
            ColumnType::Boolean => Cell::Boolean(row.try_get(i)?),
            ColumnType::Text => Cell::Text(row.try_get(i)?),
            ColumnType::Bytes => Cell::Bytes(row.try_get(i)?),
        })
    }

    pub(super) fn size_bytes(&self) -> usize {
        match self {
            Cell::Text(Some(t)) => t.len(),
            Cell::Bytes(Some(b)) => b.len(),
            _ => 8,
        }
    }

    /// Feeds an unambiguous encoding of the value (tag, length, bytes) to `hasher`.
    fn hash_into(&self, hasher: &mut Hasher) {
        let (tag, bytes): (u8, Option<Vec<u8>>) = match self {
            Cell::BigInt(v) => (1, v.map(|n| n.to_be_bytes().to_vec())),
            Cell::Integer(v) => (2, v.map(|n| n.to_be_bytes().to_vec())),
            Cell::Boolean(v) => (3, v.map(|b| vec![u8::from(b)])),
            Cell::Text(v) => (4, v.as_ref().map(|t| t.as_bytes().to_vec())),
            Cell::Bytes(v) => (5, v.clone()),
        };
        match bytes {
            None => hasher.update(&[tag, 0]),
            Some(bytes) => {
                hasher.update(&[tag, 1]);
                hasher.update(&(bytes.len() as u64).to_be_bytes());
                hasher.update(&bytes);
            }
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Cell::BigInt(v) => *v,
            Cell::Integer(v) => v.map(i64::from),
            _ => None,
        }
    }
}

impl ToSql for Cell {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::BigInt(v) => v.to_sql(ty, out),
            Cell::Integer(v) => v.to_sql(ty, out),
            Cell::Boolean(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::INT4, Type::BOOL, Type::TEXT, Type::BYTEA].contains(ty)
    }

    // Checked against the value's own type, not just any of the five.
    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::BigInt(v) => v.to_sql_checked(ty, out),
            Cell::Integer(v) => v.to_sql_checked(ty, out),
            Cell::Boolean(v) => v.to_sql_checked(ty, out),
            Cell::Text(v) => v.to_sql_checked(ty, out),
            Cell::Bytes(v) => v.to_sql_checked(ty, out),
        }
    }
}

/// A table's row count and a digest of its rows, whatever their order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) rows: u64,
    pub(super) digest: Digest,
    /// The highest value of its serial column (0 without one, or without rows).
    pub(super) max_serial: i64,
}

pub(super) struct Summing {
    serial: Option<usize>,
    row_digests: Vec<Digest>,
    max_serial: i64,
}

impl Summing {
    pub(super) fn new(table: &Table) -> Summing {
        Summing {
            serial: table.serial().map(|(i, _)| i),
            row_digests: Vec::new(),
            max_serial: 0,
        }
    }

    pub(super) fn add(&mut self, row: &[Cell]) {
        let mut hasher = Hasher::new();
        row.iter().for_each(|cell| cell.hash_into(&mut hasher));
        self.row_digests.push(hasher.finish());
        if let Some(n) = self.serial.and_then(|i| row.get(i)).and_then(Cell::as_i64) {
            self.max_serial = self.max_serial.max(n);
        }
    }

    pub(super) fn finish(mut self) -> Summary {
        // Sorted, so that the two engines' scan orders (and collations) do not matter.
        self.row_digests.sort_unstable();
        let mut hasher = Hasher::new();
        self.row_digests
            .iter()
            .for_each(|d| hasher.update(d.as_bytes()));
        Summary {
            rows: self.row_digests.len() as u64,
            digest: hasher.finish(),
            max_serial: self.max_serial,
        }
    }
}

/// Reads a table back from PostgreSQL.
async fn target_summary(tx: &Transaction<'_>, table: &Table) -> Result<Summary> {
    let sql = format!("SELECT {} FROM {}", table.column_list(), quote(table.name));
    let no_params: [&(dyn ToSql + Sync); 0] = [];
    let rows = tx.query_raw(&sql, no_params).await?;
    let mut rows = std::pin::pin!(rows);
    let mut summing = Summing::new(table);
    while let Some(row) = rows.try_next().await? {
        let cells = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Cell::from_postgres(c.ty, &row, i))
            .collect::<Result<Vec<_>>>()?;
        summing.add(&cells);
    }
    Ok(summing.finish())
}

/// What PostgreSQL holds before the copy.
pub(super) enum TargetState {
    /// No rows in any table.
    Empty,
    /// Exactly the install's rows: an earlier run's committed copy.
    Same(Vec<Summary>),
}

/// Whether PostgreSQL is empty, holds this copy, or (an error) holds other data.
pub(super) async fn target_state(
    tx: &Transaction<'_>,
    source: &Source,
    tables: &[Table],
) -> Result<TargetState> {
    let mut empty = true;
    for table in tables {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", quote(table.name));
        if tx.query_one(&sql, &[]).await?.try_get::<_, bool>(0)? {
            empty = false;
            break;
        }
    }
    if empty {
        return Ok(TargetState::Empty);
    }
    let wanted = source.summaries(tables).await?;
    // The tables that differ, those holding rows there first: they say whose data it is.
    let mut differ = Vec::new();
    for (table, want) in tables.iter().zip(&wanted) {
        let got = target_summary(tx, table).await?;
        if (got.rows, got.digest) != (want.rows, want.digest) {
            let contents = if got.rows == want.rows {
                ", with other contents"
            } else {
                ""
            };
            let text = format!(
                "{}: {} there, {} in the data directory{contents}",
                table.name,
                rows_text(got.rows),
                rows_text(want.rows)
            );
            differ.push((got.rows == 0, text));
        }
    }
    if !differ.is_empty() {
        differ.sort_by_key(|(empty, _)| *empty);
        let shown = 3;
        let mut detail = differ
            .iter()
            .take(shown)
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if differ.len() > shown {
            detail.push_str(&format!("; {} more tables differ", differ.len() - shown));
        }
        return Err(MigrateError::TargetHoldsOtherData { detail }.into());
    }
    Ok(TargetState::Same(wanted))
}

/// `1 row`, `2 rows`.
fn rows_text(n: u64) -> String {
    if n == 1 {
        "1 row".to_owned()
    } else {
        format!("{n} rows")
    }
}

/// Copies every table in one transaction: locks them, checks again that they are empty (another
/// run may have committed since), copies, moves the sequences past the copied ids, reads every
/// table back and commits only if it holds what was sent.
pub(super) async fn copy_metadata(
    client: &mut Client,
    source: &Source,
    tables: &[Table],
) -> Result<(MetadataOutcome, Vec<Summary>)> {
    let tx = client.transaction().await?;
    let all = tables
        .iter()
        .map(|t| quote(t.name))
        .collect::<Vec<_>>()
        .join(", ");
    // Writers wait (a server started too early, another migrate); readers do not.
    tx.batch_execute(&format!("LOCK TABLE {all} IN SHARE ROW EXCLUSIVE MODE"))
        .await?;
    if let TargetState::Same(summaries) = target_state(&tx, source, tables).await? {
        tx.rollback().await?;
        return Ok((MetadataOutcome::AlreadyCopied, summaries));
    }
    let mut sent = Vec::with_capacity(tables.len());
    for table in tables {
        sent.push(copy_table(&tx, source, table).await?);
    }
    for (table, summary) in tables.iter().zip(&sent) {
        let Some((_, column)) = table.serial() else {
            continue;
        };
        // Past every id SQLite ever gave, deleted rows' included, so no id is given twice.
        let given = source.autoincrement(table.name).await?.unwrap_or(0);
        let next = summary.max_serial.max(given).saturating_add(1);
        tx.execute(
            "SELECT setval(pg_get_serial_sequence($1, $2), $3, false)",
            &[&table.name, &column.name, &next],
        )
        .await?;
    }
    for (table, want) in tables.iter().zip(&sent) {
        let got = target_summary(&tx, table).await?;
        if (got.rows, got.digest) != (want.rows, want.digest) {
            return Err(MigrateError::CopyDiffers {
                table: table.name.to_owned(),
                source_rows: want.rows,
                target_rows: got.rows,
                contents: if got.rows == want.rows {
                    ", with other contents"
                } else {
                    ""
                },
            }
            .into());
        }
    }
    tx.commit().await?;
    Ok((MetadataOutcome::Copied, sent))
}

/// Streams one table from the snapshot into PostgreSQL (binary `COPY`).
async fn copy_table(tx: &Transaction<'_>, source: &Source, table: &Table) -> Result<Summary> {
    let sql = format!(
        "COPY {} ({}) FROM STDIN BINARY",
        quote(table.name),
        table.column_list()
    );
    let sink = tx.copy_in(&sql).await?;
    let types: Vec<Type> = table.columns.iter().map(|c| c.ty.postgres()).collect();
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    let mut rows = source.rows(table);
    let mut summing = Summing::new(table);
    while let Some(chunk) = rows.next().await {
        for row in &chunk {
            summing.add(row);
            let values: Vec<&(dyn ToSql + Sync)> =
                row.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&values).await?;
        }
    }
    rows.finish().await?;
    writer.as_mut().finish().await?;
    Ok(summing.finish())
}
