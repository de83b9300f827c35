use std::collections::BTreeSet;
use std::sync::Arc;

use manifests::Digest;
use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::blobs::check_arrival;
use super::tables::{Cell, Column, ColumnType, Summing, Table};
use super::*;
use crate::blob_store::BlobStore;

/// A fresh SQLite database at this server's schema.
fn embedded_schema() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(crate::meta_store::sqlite::SCHEMA_V1)
        .unwrap();
    for step in crate::meta_store::sqlite::MIGRATIONS {
        conn.execute_batch(step).unwrap();
    }
    conn
}

#[test]
fn every_embedded_table_is_copied_after_the_tables_it_refers_to() {
    let conn = embedded_schema();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    let tables: BTreeSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let copied: BTreeSet<String> = TABLES.iter().map(|t| t.to_string()).collect();
    assert_eq!(tables, copied, "a new table needs its place in TABLES");
    for (at, table) in TABLES.iter().enumerate() {
        let mut fks = conn
            .prepare(&format!("PRAGMA foreign_key_list({table})"))
            .unwrap();
        let parents: Vec<String> = fks
            .query_map([], |r| r.get(2))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for parent in parents {
            let before = TABLES[..at].contains(&parent.as_str());
            assert!(
                before,
                "{table} refers to {parent}, which is copied after it"
            );
        }
    }
}

/// The tables PostgreSQL's migrations create are the copied ones and its own coordination
/// tables, so a new table there is a decision this module has to make.
#[test]
fn every_postgres_table_is_copied_or_its_own() {
    let created: BTreeSet<String> = crate::meta_store::postgres::MIGRATIONS
        .iter()
        .flat_map(|step| step.split("CREATE TABLE ").skip(1))
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = TABLES
        .iter()
        .chain(&POSTGRES_ONLY)
        .map(|t| t.to_string())
        .collect();
    assert_eq!(created, expected);
}

#[track_caller]
fn check(ty: ColumnType, value: ValueRef<'_>, expected: std::result::Result<Cell, &str>) {
    assert_eq!(
        Cell::from_sqlite(ty, value),
        expected.map_err(str::to_owned)
    );
}

#[test]
fn sqlite_values_convert_to_the_postgres_column_type_or_say_why_not() {
    use ColumnType::*;
    check(BigInt, ValueRef::Integer(-3), Ok(Cell::BigInt(Some(-3))));
    check(BigInt, ValueRef::Null, Ok(Cell::BigInt(None)));
    check(
        BigInt,
        ValueRef::Text(b"7"),
        Err("text \"7\" is not an integer"),
    );
    check(
        Integer,
        ValueRef::Integer(10_000),
        Ok(Cell::Integer(Some(10_000))),
    );
    check(
        Integer,
        ValueRef::Integer(1 << 40),
        Err("1099511627776 is not a 32-bit integer"),
    );
    check(Boolean, ValueRef::Integer(1), Ok(Cell::Boolean(Some(true))));
    check(
        Boolean,
        ValueRef::Integer(0),
        Ok(Cell::Boolean(Some(false))),
    );
    check(
        Boolean,
        ValueRef::Integer(2),
        Err("2 is not a boolean (0 or 1)"),
    );
    check(
        Text,
        ValueRef::Text(b"shop"),
        Ok(Cell::Text(Some("shop".into()))),
    );
    check(
        Text,
        ValueRef::Text(b"\xff"),
        Err("text \"\u{fffd}\" is not UTF-8 text"),
    );
    check(
        Text,
        ValueRef::Blob(b"ab"),
        Err("a blob of 2 bytes is not text"),
    );
    check(
        Bytes,
        ValueRef::Blob(b"ab"),
        Ok(Cell::Bytes(Some(b"ab".to_vec()))),
    );
    check(Bytes, ValueRef::Real(1.5), Err("1.5 is not bytes"));
}

#[test]
fn a_summary_ignores_row_order_but_not_values_or_types() {
    let table = Table {
        name: "history",
        columns: vec![
            Column {
                name: "id".into(),
                ty: ColumnType::BigInt,
                serial: true,
            },
            Column {
                name: "reason".into(),
                ty: ColumnType::Text,
                serial: false,
            },
        ],
    };
    let row = |id: i64, reason: Option<&str>| {
        vec![Cell::BigInt(Some(id)), Cell::Text(reason.map(Into::into))]
    };
    let summary = |rows: &[Vec<Cell>]| {
        let mut summing = Summing::new(&table);
        rows.iter().for_each(|r| summing.add(r));
        summing.finish()
    };
    let a = summary(&[row(1, Some("x")), row(7, None)]);
    assert_eq!(a, summary(&[row(7, None), row(1, Some("x"))]));
    assert_eq!((a.rows, a.max_serial), (2, 7));
    assert_ne!(
        a.digest,
        summary(&[row(1, Some("x")), row(7, Some(""))]).digest
    );
    assert_ne!(
        a.digest,
        summary(&[
            row(1, Some("x")),
            vec![Cell::Integer(Some(7)), Cell::Text(None)]
        ])
        .digest
    );
}

/// A copy that arrives with other bytes than were sent (here written straight into the bucket, as
/// a faulty store or network would leave it) is named and removed, so the next run copies it
/// again; one that arrives whole passes.
#[tokio::test]
async fn a_blob_that_arrives_damaged_is_named_and_removed() {
    use object_store::ObjectStoreExt;
    let bucket = Arc::new(object_store::memory::InMemory::new());
    let store = crate::blob_store::s3::S3BlobStore::with_store(bucket.clone(), 4096);
    let bytes = b"console.log('shared')".to_vec();
    let digest = Digest::of(&bytes);
    let hex = digest.to_string();
    let key = object_store::path::Path::from(format!("blobs/{}/{hex}", &hex[..2]));
    let mut damaged = bytes.clone();
    damaged[0] ^= 1;
    bucket.put(&key, damaged.clone().into()).await.unwrap();

    let err = check_arrival(&store, &digest, bytes.len() as u64)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "blob {digest}: the target's copy reads back as 21 bytes with sha256 {}, not the 21 \
             bytes sent; removed it, run migrate again",
            Digest::of(&damaged)
        )
    );
    assert_eq!(store.size(&digest).await.unwrap(), None);

    store.put_bytes(&bytes).await.unwrap();
    check_arrival(&store, &digest, bytes.len() as u64)
        .await
        .unwrap();
    assert_eq!(store.size(&digest).await.unwrap(), Some(21));
}
