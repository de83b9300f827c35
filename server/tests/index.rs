//! The index at scale, through real HTTP: channel changes whose work does not grow with the app,
//! index deltas that carry what changed, gzip for both, the full index for devices that know
//! only it, and a store from before per-package entries upgrading on open.

#![allow(clippy::unwrap_used)]

#[path = "support/counting.rs"]
mod counting;
#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use harness::{Response, TestServer, zip};
use manifests::{
    AppId, Channel, Index, IndexScope, Timestamp, apply_index_delta, parse_strict, verify_index,
};
use serde_json::{Value, json};

fn scope(channel: &str) -> IndexScope {
    IndexScope {
        app: AppId::parse("shop").unwrap(),
        channel: Channel::parse(channel).unwrap(),
    }
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp::from_unix_secs(secs)
}

/// Publishes a one-file release of `package`, promoting it on production if `promote`.
fn publish(s: &TestServer, package: &str, version: &str, promote: bool) {
    let page = format!("<h1>{package} {version}</h1>");
    let channel = if promote { "&channel=production" } else { "" };
    let r = s.publish(
        &s.admin,
        "shop",
        package,
        &format!("version={version}&routes=https://m.example.com/{package}/{channel}"),
        &zip(&[("index.html", page.as_bytes())]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

fn change(s: &TestServer, package: &str, body: Value) -> u64 {
    let r = s.change(package, "production", body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sequence"].as_u64().unwrap()
}

/// The full index of shop/production, verified.
fn full_index(s: &TestServer) -> (Vec<u8>, Index) {
    let bytes = s.index_bytes("shop", "production");
    let index = verify_index(&bytes, &s.trusted(), &scope("production"), now(), 0)
        .unwrap()
        .index;
    (bytes, index)
}

fn delta(s: &TestServer, from: &str) -> Response {
    s.get(&format!(
        "/v1/apps/shop/channels/production/index/delta/{from}"
    ))
}

/// The signed part of a delta that answered 200.
fn delta_signed(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    parse_strict(&r.body).unwrap()["signed"].clone()
}

fn names(value: &Value) -> BTreeSet<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn apply(s: &TestServer, delta: &Response, base: &Index) -> Index {
    assert_eq!(delta.status, 200, "{}", delta.text());
    apply_index_delta(
        &delta.body,
        &s.trusted(),
        &scope("production"),
        now(),
        base.sequence,
        base,
    )
    .unwrap()
}

#[test]
fn a_channel_change_reads_as_much_at_1000_packages_as_at_10() {
    let mut store = None;
    let s = TestServer::start_wrapped(|meta| {
        let counting = counting::Counting::new(meta);
        store = Some(counting.clone());
        counting
    });
    let store = store.unwrap();
    let package = |i: usize| format!("p{i:04}");
    // Changes the same way a package that has one promoted release and one more published.
    let measure = |name: &str| {
        publish(&s, name, "1.0.1", false);
        store.wait_idle(Duration::from_millis(300));
        store.take();
        let sequence = change(&s, name, json!({"action": "promote", "version": "1.0.1"}));
        (store.take(), sequence)
    };

    for i in 0..10 {
        publish(&s, &package(i), "1.0.0", true);
    }
    let (at_10, _) = measure(&package(5));
    let (_, before) = full_index(&s);
    for i in 10..1000 {
        publish(&s, &package(i), "1.0.0", true);
    }
    let (at_1000, sequence) = measure(&package(500));

    eprintln!("reads of one change (calls, rows) at 10 packages: {at_10:?}");
    eprintln!("reads of one change (calls, rows) at 1000 packages: {at_1000:?}");
    // The same reads, call for call and row for row, none of them the whole channel.
    assert_eq!(at_1000, at_10, "reads of one change at 1000 packages vs 10");
    for whole in ["channel_state", "channel_rows", "app_packages"] {
        assert!(!at_1000.contains_key(whole), "{whole} read: {at_1000:?}");
    }
    let rows: u64 = at_1000.values().map(|(_, rows)| rows).sum();
    assert!(rows < 12, "{rows} rows read for one change: {at_1000:?}");

    // The change shows at once, and the delta from before brings every package changed since.
    let (_, after) = full_index(&s);
    assert_eq!(after.sequence, sequence);
    assert_eq!(after.packages.len(), 1000);
    let d = delta(&s, &before.sequence.to_string());
    assert_eq!(apply(&s, &d, &before), after);
    let mut changed: Vec<String> = (10..1000).map(package).collect();
    changed.push(package(500));
    assert_eq!(
        names(&delta_signed(&d)["changed"]),
        changed.into_iter().collect()
    );
    let last = delta(&s, &(sequence - 1).to_string());
    assert_eq!(names(&delta_signed(&last)["changed"]), set(&["p0500"]));
}

#[test]
fn a_delta_carries_exactly_what_changed_and_leads_to_the_full_index() {
    let s = TestServer::start();
    for i in 0..300 {
        publish(&s, &format!("p{i:03}"), "1.0.0", true);
    }
    publish(&s, "p010", "1.1.0", false);
    publish(&s, "p020", "1.1.0", false);
    let (_, base) = full_index(&s);

    change(&s, "p010", json!({"action": "promote", "version": "1.1.0"}));
    change(
        &s,
        "p020",
        json!({"action": "rollout", "version": "1.1.0", "basis_points": 2500}),
    );
    let (full, new) = full_index(&s);
    assert_eq!(new.sequence, base.sequence + 2);

    // From the index a device holds: the two changed entries, whole, and nothing else.
    let d = delta(&s, &base.sequence.to_string());
    let signed = delta_signed(&d);
    assert_eq!(names(&signed["changed"]), set(&["p010", "p020"]));
    assert!(signed.get("removed").is_none(), "{signed}");
    assert_eq!(signed["from_sequence"], base.sequence);
    assert_eq!(signed["sequence"], new.sequence);
    assert_eq!(signed["issued_at"], json!(new.issued_at.to_string()));
    assert_eq!(signed["expires_at"], json!(new.expires_at.to_string()));
    assert_eq!(apply(&s, &d, &base), new);
    eprintln!(
        "300 packages: full index {} bytes, delta after 2 changes {} bytes",
        full.len(),
        d.body.len()
    );
    assert!(
        d.body.len() < 2048,
        "delta of 2 entries is {} bytes",
        d.body.len()
    );

    // From the sequence between the two changes: only the second.
    let mid = delta(&s, &(base.sequence + 1).to_string());
    assert_eq!(names(&delta_signed(&mid)["changed"]), set(&["p020"]));
    // From the current sequence: no changes, the current expiry.
    let same = delta(&s, &new.sequence.to_string());
    let signed = delta_signed(&same);
    assert!(signed.get("changed").is_none() && signed.get("removed").is_none());
    assert_eq!(signed["expires_at"], json!(new.expires_at.to_string()));
    assert_eq!(apply(&s, &same, &new), new);

    // A package that leaves the channel (its only release, a candidate, rolled back) is removed.
    publish(&s, "q", "1.0.0", false);
    change(
        &s,
        "q",
        json!({"action": "rollout", "version": "1.0.0", "basis_points": 1000}),
    );
    let (_, with_q) = full_index(&s);
    assert!(with_q.packages.keys().any(|p| p.as_str() == "q"));
    change(&s, "q", json!({"action": "rollback"}));
    let (_, without_q) = full_index(&s);
    assert_eq!(without_q.packages.len(), 300);
    let d = delta(&s, &with_q.sequence.to_string());
    let signed = delta_signed(&d);
    assert_eq!(names(&signed["removed"]), set(&["q"]));
    assert!(signed.get("changed").is_none(), "{signed}");
    assert_eq!(apply(&s, &d, &with_q), without_q);
    // From before it arrived, it is listed as removed too; applying still gives the index.
    let d = delta(&s, &base.sequence.to_string());
    assert_eq!(names(&delta_signed(&d)["removed"]), set(&["q"]));
    assert_eq!(apply(&s, &d, &base), without_q);
}

#[test]
fn a_delta_from_a_sequence_the_server_cannot_answer_is_delta_unavailable() {
    let s = TestServer::start();
    // Nothing promoted yet: no delta from anywhere.
    let r = delta(&s, "1");
    assert_eq!((r.status, r.code()), (404, "delta_unavailable".into()));
    publish(&s, "checkout", "1.0.0", true);
    publish(&s, "checkout", "1.1.0", true);
    for from in ["3", "18446744073709551615", "0", "-1", "abc", "1.5"] {
        let r = delta(&s, from);
        assert_eq!(
            (r.status, r.code()),
            (404, "delta_unavailable".into()),
            "from {from}: {}",
            r.text()
        );
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("fetch it whole")
        );
    }
    for from in ["1", "2"] {
        assert_eq!(delta(&s, from).status, 200, "from {from}");
    }
    // Another channel, an invalid name.
    let r = s.get("/v1/apps/shop/channels/staging/index/delta/1");
    assert_eq!((r.status, r.code()), (404, "delta_unavailable".into()));
    let r = s.get("/v1/apps/shop/channels/Bad!/index/delta/1");
    assert_eq!((r.status, r.code()), (422, "invalid_id".into()));
}

#[test]
fn indexes_and_deltas_are_gzipped_for_clients_that_accept_it() {
    let s = TestServer::start();
    for i in 0..30 {
        publish(&s, &format!("p{i:02}"), "1.0.0", true);
    }
    publish(&s, "p07", "1.1.0", true);
    let from = (full_index(&s).1.sequence - 1).to_string();
    for path in [
        "/v1/apps/shop/channels/production/index".to_owned(),
        format!("/v1/apps/shop/channels/production/index/delta/{from}"),
    ] {
        let identity = s.get(&path);
        let gz = s.get_with(&path, &[("Accept-Encoding", "br, gzip")]);
        assert_eq!((identity.status, gz.status), (200, 200), "{path}");
        assert_eq!(identity.header("content-encoding"), None, "{path}");
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
        for r in [&identity, &gz] {
            assert_eq!(r.header("vary"), Some("accept-encoding"), "{path}");
            assert_eq!(
                r.header("cache-control"),
                Some("public, max-age=60"),
                "{path}"
            );
            assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        }
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(gz.body.as_slice())
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(
            inflated, identity.body,
            "{path}: gzip inflates to the identity bytes"
        );
        assert!(gz.body.len() < identity.body.len(), "{path}");
        let tag = identity.header("etag").unwrap();
        let gz_tag = gz.header("etag").unwrap();
        assert_eq!(
            gz_tag,
            format!("{}.gz\"", tag.trim_end_matches('"')),
            "{path}"
        );

        // Each representation revalidates with its own ETag.
        let r = s.get_with(&path, &[("If-None-Match", tag)]);
        assert_eq!((r.status, r.header("etag")), (304, Some(tag)), "{path}");
        assert_eq!(r.header("vary"), Some("accept-encoding"), "{path}");
        assert!(r.body.is_empty());
        let r = s.get_with(
            &path,
            &[("Accept-Encoding", "gzip"), ("If-None-Match", gz_tag)],
        );
        assert_eq!((r.status, r.header("etag")), (304, Some(gz_tag)), "{path}");
        assert_eq!(r.header("vary"), Some("accept-encoding"), "{path}");
        // The other representation's ETag does not match.
        let r = s.get_with(
            &path,
            &[("Accept-Encoding", "gzip"), ("If-None-Match", tag)],
        );
        assert_eq!((r.status, r.header("etag")), (200, Some(gz_tag)), "{path}");
        let r = s.get_with(&path, &[("If-None-Match", gz_tag)]);
        assert_eq!((r.status, r.header("etag")), (200, Some(tag)), "{path}");
        // gzip refused: identity.
        let r = s.get_with(&path, &[("Accept-Encoding", "gzip;q=0, identity")]);
        assert_eq!(
            (r.header("content-encoding"), r.body.len()),
            (None, identity.body.len())
        );
    }
}

#[test]
fn the_full_index_is_the_same_bytes_for_the_same_state_and_shows_a_change_at_once() {
    let s = TestServer::start();
    for package in ["cart", "checkout", "search"] {
        publish(&s, package, "1.0.0", true);
    }
    publish(&s, "checkout", "1.1.0", false);
    let (first, index) = full_index(&s);
    assert_eq!(s.index_bytes("shop", "production"), first);
    let sequence = change(
        &s,
        "checkout",
        json!({"action": "rollout", "version": "1.1.0", "basis_points": 5000}),
    );
    // No waiting for a cache to expire.
    let (bytes, changed) = full_index(&s);
    assert_eq!(changed.sequence, sequence);
    assert_eq!(changed.sequence, index.sequence + 1);
    let tag = s
        .get("/v1/apps/shop/channels/production/index")
        .header("etag")
        .unwrap()
        .to_owned();

    // A server that never signed this sequence (another replica; here the kept index is gone)
    // signs the same bytes, which devices that know only the full index accept as before.
    let s = s.restart(|data| {
        rusqlite::Connection::open(data.join("meta.sqlite3"))
            .unwrap()
            .execute("DELETE FROM indexes", [])
            .unwrap();
    });
    assert_eq!(s.index_bytes("shop", "production"), bytes);
    let r = s.get("/v1/apps/shop/channels/production/index");
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    let verified =
        verify_index(&r.body, &s.trusted(), &scope("production"), now(), sequence).unwrap();
    assert_eq!(verified.index, changed);
    // And one that kept it serves it as kept.
    let s = s.restart(|_| {});
    assert_eq!(s.index_bytes("shop", "production"), bytes);
}

#[test]
fn a_re_signing_reaches_devices_as_a_delta_without_changes() {
    let s = TestServer::start_with(|settings| settings.index_ttl_secs = 2);
    publish(&s, "checkout", "1.0.0", true);
    let (_, first) = full_index(&s);
    // With a 2 s lifetime, half of it has passed at once, so the refresh raises the sequence.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let latest = loop {
        let (_, latest) = full_index(&s);
        if latest.sequence > first.sequence {
            break latest;
        }
        assert!(std::time::Instant::now() < deadline, "never re-signed");
        std::thread::yield_now();
    };
    let d = delta(&s, &first.sequence.to_string());
    let signed = delta_signed(&d);
    assert!(signed.get("changed").is_none() && signed.get("removed").is_none());
    assert!(signed["sequence"].as_u64().unwrap() >= latest.sequence);
    let applied = apply(&s, &d, &first);
    assert_eq!(applied.packages, first.packages);
    assert!(applied.expires_at >= latest.expires_at);
}

#[test]
fn a_store_from_before_per_package_entries_upgrades_on_open() {
    let s = TestServer::start();
    for package in ["cart", "checkout", "search"] {
        publish(&s, package, "1.0.0", true);
    }
    publish(&s, "checkout", "1.1.0", false);
    publish(&s, "search", "1.1.0", false);
    change(
        &s,
        "search",
        json!({"action": "rollout", "version": "1.1.0", "basis_points": 2500}),
    );
    let (old_bytes, old) = full_index(&s);

    // Take the store back to schema version 2: the sequence lived with the kept index, and
    // package rows had no entry or sequence (nor tokens their lifecycle, version 4, nor releases
    // their routes and apps their origins, 5, nor releases their blob lists, 6, nor apps their key
    // lists, 7).
    let s = s.restart(|data| {
        rusqlite::Connection::open(data.join("meta.sqlite3"))
            .unwrap()
            .execute_batch(
                "BEGIN;
                 DROP TABLE channels;
                 ALTER TABLE channel_packages DROP COLUMN entry;
                 ALTER TABLE channel_packages DROP COLUMN sequence;
                 ALTER TABLE tokens DROP COLUMN app;
                 ALTER TABLE tokens DROP COLUMN expires_at;
                 ALTER TABLE tokens DROP COLUMN revoked_at;
                 ALTER TABLE tokens DROP COLUMN last_used_at;
                 ALTER TABLE releases DROP COLUMN routes;
                 DROP TABLE apps;
                 DROP TABLE key_lists;
                 DROP TABLE release_blobs;
                 DROP TABLE collections;
                 DROP TABLE ingest_keys;
                 DROP TABLE release_devices;
                 DROP TABLE ramps;
                 DROP TABLE console_sessions;
                 DROP TABLE release_days;
                 ALTER TABLE history DROP COLUMN before_state;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )
            .unwrap();
    });
    let version: i64 = rusqlite::Connection::open(s.data().join("meta.sqlite3"))
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 11);

    // The same index, byte for byte; deltas start from its sequence.
    assert_eq!(s.index_bytes("shop", "production"), old_bytes);
    let sequence = old.sequence.to_string();
    assert_eq!(apply(&s, &delta(&s, &sequence), &old), old);
    let r = delta(&s, &(old.sequence - 1).to_string());
    assert_eq!((r.status, r.code()), (404, "delta_unavailable".into()));

    // A change after the upgrade: the other entries are computed as before it.
    change(
        &s,
        "checkout",
        json!({"action": "promote", "version": "1.1.0"}),
    );
    let (_, new) = full_index(&s);
    let d = delta(&s, &sequence);
    assert_eq!(names(&delta_signed(&d)["changed"]), set(&["checkout"]));
    assert_eq!(apply(&s, &d, &old), new);
    for package in ["cart", "search"] {
        let id = manifests::PackageId::parse(package).unwrap();
        assert_eq!(new.packages[&id], old.packages[&id], "{package}");
    }
    assert_ne!(
        new.packages[&manifests::PackageId::parse("checkout").unwrap()],
        old.packages[&manifests::PackageId::parse("checkout").unwrap()]
    );
}

/// What a test compares of two answers that carry different keys and bytes: the status, which
/// headers are there, the values that do not depend on the bytes, and whether a body came.
fn shape(r: &Response) -> (u16, Vec<String>, Vec<Option<String>>, bool) {
    let mut names: Vec<String> = r
        .headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| name != "date")
        .collect();
    names.sort();
    let values = ["content-type", "content-encoding", "cache-control", "vary"]
        .map(|name| r.header(name).map(str::to_owned))
        .to_vec();
    (r.status, names, values, r.body.is_empty())
}

#[test]
fn documents_in_memory_are_answered_as_the_router_answers_them() {
    // Served from memory (the hot path), and read again on every request (the router's path).
    let hot = TestServer::start();
    let routed = TestServer::start_with(|settings| settings.index_cache = Duration::ZERO);
    for s in [&hot, &routed] {
        for i in 0..30 {
            publish(s, &format!("p{i:02}"), "1.0.0", true);
        }
        publish(s, "p07", "1.1.0", true);
    }
    let from = (full_index(&hot).1.sequence - 1).to_string();
    assert_eq!(from, (full_index(&routed).1.sequence - 1).to_string());
    for path in [
        "/v1/apps/shop/channels/production/index".to_owned(),
        format!("/v1/apps/shop/channels/production/index/delta/{from}"),
    ] {
        let tags = |s: &TestServer| {
            let identity = s.get(&path).header("etag").unwrap().to_owned();
            let gzip = s
                .get_with(&path, &[("Accept-Encoding", "gzip")])
                .header("etag")
                .unwrap()
                .to_owned();
            (identity, gzip)
        };
        let (hot_tags, routed_tags) = (tags(&hot), tags(&routed));
        for method in ["GET", "HEAD"] {
            for (encoding, revalidate) in [
                (None, None),
                (Some("br, gzip"), None),
                (Some("gzip;q=0, identity"), None),
                (None, Some(false)),
                (Some("gzip"), Some(true)),
                (Some("gzip"), Some(false)),
                (None, Some(true)),
            ] {
                let answer = |s: &TestServer, (identity, gzip): &(String, String)| {
                    let mut headers = Vec::new();
                    if let Some(encoding) = encoding {
                        headers.push(("Accept-Encoding", encoding));
                    }
                    if let Some(use_gzip) = revalidate {
                        headers.push(("If-None-Match", if use_gzip { gzip } else { identity }));
                    }
                    harness::request(&s.base, method, &path, &headers, None)
                };
                let (h, r) = (answer(&hot, &hot_tags), answer(&routed, &routed_tags));
                let case = format!("{method} {path} {encoding:?} {revalidate:?}");
                assert_eq!(shape(&h), shape(&r), "{case}");
                assert!(h.status == 200 || h.status == 304, "{case}: {}", h.status);
                if method == "HEAD" && h.status == 200 {
                    let full = hot.get_with(
                        &path,
                        &encoding
                            .map(|e| vec![("Accept-Encoding", e)])
                            .unwrap_or_default(),
                    );
                    assert_eq!(
                        h.header("content-length"),
                        Some(full.body.len().to_string().as_str()),
                        "{case}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_index_signed_before_a_new_key_list_is_signed_again_at_its_sequence_after_a_crash() {
    let s = TestServer::start();
    publish(&s, "checkout", "1.0.0", true);
    let (_, before) = full_index(&s);
    // Key list version 2 (an offline root, the server's second key for indexes), stored as if
    // the server died before it moved the channels to a new sequence.
    let server_key = manifests::KeyPair::from_seed(&[42; 32]);
    let root = manifests::KeyPair::from_seed(&[7; 32]);
    let index_key = manifests::KeyPair::from_seed(&harness::NEXT_INDEX_SEED);
    let mut list = manifests::KeyList::single(
        manifests::AppId::parse("shop").unwrap(),
        2,
        server_key.public(),
    );
    for key in [&root, &index_key] {
        list.keys.insert(key.id(), key.public().to_hex());
    }
    list.roles.root.keyids = BTreeSet::from([root.id()]);
    list.roles.index.keyids = BTreeSet::from([index_key.id()]);
    let envelope = list.sign(&[&server_key, &root]).unwrap().bytes;
    let s = s.restart(|data| {
        rusqlite::Connection::open(data.join("meta.sqlite3"))
            .unwrap()
            .execute(
                "INSERT INTO key_lists (app, version, envelope) VALUES ('shop', 2, ?1)",
                [&envelope],
            )
            .unwrap();
    });
    let r = s.get("/v1/apps/shop/channels/production/index");
    assert_eq!(r.header("baleen-keys"), Some("2"));
    let new_keys = manifests::TrustedKeys::single(index_key.public().clone());
    let after = verify_index(&r.body, &new_keys, &scope("production"), now(), 0).unwrap();
    assert_eq!(
        after.index, before,
        "the same index, signed by the new index key"
    );
    let old_keys = manifests::TrustedKeys::single(server_key.public().clone());
    assert!(verify_index(&r.body, &old_keys, &scope("production"), now(), 0).is_err());
}

/// When the cache time runs out during a launch rush, the index is still answered from memory
/// while one background read of the channel row goes on: with that read taking 1.5 s (a store in
/// trouble), no request waits for it, and the row is read once, not once per request.
#[test]
fn an_expiring_index_is_answered_from_memory_while_the_channel_is_read_again() {
    let wrapped = std::sync::OnceLock::new();
    let s = TestServer::start_tuned_wrapped(
        |settings| settings.index_cache = Duration::from_millis(200),
        |meta| {
            let counting = counting::Counting::new(meta);
            wrapped.set(counting.clone()).unwrap();
            counting
        },
    );
    let counting = wrapped.get().unwrap();
    publish(&s, "checkout", "1.0.0", true);
    let path = "/v1/apps/shop/channels/production/index";
    let first = s.get(path);
    assert_eq!(first.status, 200);
    counting
        .channel_head_delay_ms
        .store(1_500, std::sync::atomic::Ordering::SeqCst);
    counting.take();
    let started = std::time::Instant::now();
    let slowest = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut slowest = Duration::ZERO;
                    while started.elapsed() < Duration::from_secs(2) {
                        let asked = std::time::Instant::now();
                        let r = s.get(path);
                        slowest = slowest.max(asked.elapsed());
                        assert_eq!((r.status, &r.body), (200, &first.body));
                    }
                    slowest
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    });
    assert!(
        slowest < Duration::from_millis(750),
        "a request waited {slowest:?}"
    );
    let reads = counting
        .take()
        .get("channel_head")
        .map_or(0, |(calls, _)| *calls);
    assert!((1..=3).contains(&reads), "{reads} reads of the channel row");
}
