//! One suite for every metadata store engine.

use std::collections::BTreeMap;

use manifests::{
    AppId, Channel, Digest, HostRequirement, PackageId, Prefetch, ReleaseVersion, Timestamp,
};

use super::sqlite::SqliteMetaStore;
use super::*;

fn pkg(s: &str) -> PackageId {
    PackageId::parse(s).unwrap()
}
fn ver(s: &str) -> ReleaseVersion {
    ReleaseVersion::parse(s).unwrap()
}
fn app(s: &str) -> AppId {
    AppId::parse(s).unwrap()
}
fn chan(s: &str) -> Channel {
    Channel::parse(s).unwrap()
}

fn record(package: &str, version: &str) -> ReleaseRecord {
    ReleaseRecord {
        package: pkg(package),
        version: ver(version),
        manifest_digest: Digest::of(format!("{package}@{version}").as_bytes()),
        manifest: format!("manifest of {package}@{version}").into_bytes(),
        content_key: Digest::of(version.as_bytes()),
        requires: HostRequirement::parse(">=5").unwrap(),
        size_bytes: 1234,
        file_count: 3,
        created_at: Timestamp::from_unix_secs(1_700_000_000),
        publisher: "ci".into(),
        notes: "notes".into(),
        priority: 90,
        prefetch: Prefetch::WifiOnly,
    }
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        at: Timestamp::from_unix_secs(1_700_000_000),
        actor: "tester".into(),
        action: action.into(),
        target: "t".into(),
        detail: "{}".into(),
    }
}

fn commit(expected: u64, stable: &str) -> ChannelCommit {
    let sequence = expected + 1;
    ChannelCommit {
        app: app("shop"),
        channel: chan("production"),
        expected_sequence: expected,
        state: ChannelState {
            sequence,
            packages: BTreeMap::from([(
                pkg("checkout"),
                ChannelPackage {
                    stable: Some(ver(stable)),
                    ..ChannelPackage::default()
                },
            )]),
        },
        index: StoredIndex {
            sequence,
            digest: Digest::of(&sequence.to_be_bytes()),
            bytes: format!("index {sequence}").into_bytes(),
            issued_at: Timestamp::from_unix_secs(1_700_000_000),
            expires_at: Timestamp::from_unix_secs(1_700_600_000),
        },
        history: vec![HistoryEntry {
            at: Timestamp::from_unix_secs(1_700_000_000 + sequence),
            package: pkg("checkout"),
            action: "promote".into(),
            from_version: None,
            to_version: Some(ver(stable)),
            rollout_basis_points: None,
            actor: "tester".into(),
            reason: format!("step {sequence}"),
            sequence,
        }],
        audit: Some(audit("promote")),
    }
}

/// What every engine must do.
pub(crate) async fn meta_store_suite(store: &dyn MetaStore) {
    // Releases: first publish creates the package in its app.
    for v in ["1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0"] {
        assert_eq!(
            store
                .insert_release(&app("shop"), &record("checkout", v), &audit("publish"))
                .await
                .unwrap(),
            Inserted::New
        );
    }
    assert_eq!(
        store.package_app(&pkg("checkout")).await.unwrap(),
        Some(app("shop"))
    );
    assert_eq!(store.package_app(&pkg("nope")).await.unwrap(), None);
    assert_eq!(
        store.app_packages(&app("shop")).await.unwrap(),
        vec![pkg("checkout")]
    );
    let versions: Vec<String> = store
        .releases(&pkg("checkout"))
        .await
        .unwrap()
        .iter()
        .map(|r| r.version.to_string())
        .collect();
    assert_eq!(
        versions,
        ["2.0.0", "2.0.0-rc.1", "1.10.0", "1.9.0"],
        "newest semver first"
    );

    // The same version again returns the stored one untouched.
    let mut again = record("checkout", "1.9.0");
    again.notes = "other".into();
    match store
        .insert_release(&app("shop"), &again, &audit("publish"))
        .await
        .unwrap()
    {
        Inserted::Existing(existing) => assert_eq!(*existing, record("checkout", "1.9.0")),
        Inserted::New => panic!("a version was inserted twice"),
    }
    // A package belongs to one app.
    let err = store
        .insert_release(
            &app("other"),
            &record("checkout", "3.0.0"),
            &audit("publish"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    assert!(
        store
            .release(&pkg("checkout"), &ver("3.0.0"))
            .await
            .unwrap()
            .is_none()
    );

    let r = record("checkout", "1.10.0");
    assert_eq!(
        store
            .release(&pkg("checkout"), &ver("1.10.0"))
            .await
            .unwrap(),
        Some(r.clone())
    );
    assert_eq!(
        store.release_by_manifest(&r.manifest_digest).await.unwrap(),
        Some(r)
    );

    // Channels start empty, then move by compare-and-swap on the sequence.
    let (shop, production) = (app("shop"), chan("production"));
    assert_eq!(
        store.channel_state(&shop, &production).await.unwrap(),
        ChannelState::default()
    );
    assert!(store.index(&shop, &production).await.unwrap().is_none());
    assert!(store.commit_channel(&commit(0, "1.9.0")).await.unwrap());
    assert!(store.commit_channel(&commit(1, "1.10.0")).await.unwrap());
    // A change computed from an old state loses, and changes nothing.
    assert!(!store.commit_channel(&commit(1, "2.0.0")).await.unwrap());
    let state = store.channel_state(&shop, &production).await.unwrap();
    assert_eq!(state.sequence, 2);
    assert_eq!(state.packages[&pkg("checkout")].stable, Some(ver("1.10.0")));
    let index = store.index(&shop, &production).await.unwrap().unwrap();
    assert_eq!((index.sequence, index.bytes), (2, b"index 2".to_vec()));
    assert_eq!(
        store.channels().await.unwrap(),
        vec![(shop.clone(), production.clone())]
    );
    // A commit must raise the sequence.
    let mut flat = commit(2, "2.0.0");
    flat.index.sequence = 2;
    assert!(store.commit_channel(&flat).await.is_err());

    let history = store
        .history(&shop, &production, Some(&pkg("checkout")))
        .await
        .unwrap();
    let reasons: Vec<&str> = history.iter().map(|h| h.reason.as_str()).collect();
    assert_eq!(reasons, ["step 2", "step 1"], "newest first");
    assert!(
        store
            .history(&shop, &production, Some(&pkg("search")))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .history(&shop, &chan("staging"), None)
            .await
            .unwrap()
            .is_empty()
    );

    // Stats add up per release and channel.
    let delta = |version: &str, opens: u64| ReleaseStats {
        package: Some(pkg("checkout")),
        version: Some(ver(version)),
        installed: 1,
        opens,
        under_1s: opens / 2,
        ..ReleaseStats::default()
    };
    store
        .add_stats(&shop, &production, &[delta("1.9.0", 4), delta("2.0.0", 10)])
        .await
        .unwrap();
    store
        .add_stats(&shop, &production, &[delta("2.0.0", 6)])
        .await
        .unwrap();
    let stats = store.stats(&shop, &production).await.unwrap();
    let summary: Vec<(String, u64, u64, u64)> = stats
        .iter()
        .map(|s| {
            (
                s.version.as_ref().unwrap().to_string(),
                s.installed,
                s.opens,
                s.under_1s,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("2.0.0".into(), 2, 16, 8), ("1.9.0".into(), 1, 4, 2)]
    );
    assert!(
        store
            .stats(&shop, &chan("staging"))
            .await
            .unwrap()
            .is_empty()
    );

    // Tokens: found by hash, names unique.
    let token = TokenRecord {
        name: "ci".into(),
        hash: Digest::of(b"secret"),
        scope: Scope::Publish,
        package: Some(pkg("checkout")),
        created_at: Timestamp::from_unix_secs(1_700_000_000),
    };
    store
        .insert_token(&token, &audit("token.create"))
        .await
        .unwrap();
    assert_eq!(store.token(&token.hash).await.unwrap(), Some(token.clone()));
    assert_eq!(store.token(&Digest::of(b"guess")).await.unwrap(), None);
    let dup = TokenRecord {
        hash: Digest::of(b"other"),
        ..token
    };
    assert_eq!(
        store
            .insert_token(&dup, &audit("token.create"))
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );

    // The audit log holds every write, newest first.
    let log = store.audit_log(100).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "token.create",
            "promote",
            "promote",
            "publish",
            "publish",
            "publish",
            "publish"
        ]
    );
    assert_eq!(store.audit_log(2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn sqlite_meta_store() {
    meta_store_suite(&SqliteMetaStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_meta_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite3");
    {
        let store = SqliteMetaStore::open(&path).unwrap();
        store
            .insert_release(
                &app("shop"),
                &record("checkout", "1.0.0"),
                &audit("publish"),
            )
            .await
            .unwrap();
    }
    let store = SqliteMetaStore::open(&path).unwrap();
    assert_eq!(store.releases(&pkg("checkout")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_meta_store_upgrades_a_version_1_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite3");
    {
        // A database as the first release of the server left it, with one release.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 1; COMMIT;",
            super::sqlite::SCHEMA_V1
        ))
        .unwrap();
        let r = record("checkout", "1.0.0");
        conn.execute_batch(&format!(
            "INSERT INTO packages VALUES ('checkout', 'shop', 0);
             INSERT INTO releases VALUES ('checkout', '1.0.0', '{}', x'00', '{}', '>=5', 1234, 3,
                 1700000000, 'ci', 'notes');",
            r.manifest_digest, r.content_key
        ))
        .unwrap();
    }
    let store = SqliteMetaStore::open(&path).unwrap();
    let old = store
        .release(&pkg("checkout"), &ver("1.0.0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((old.priority, old.prefetch), (0, Prefetch::Always));
    store
        .insert_release(
            &app("shop"),
            &record("checkout", "1.1.0"),
            &audit("publish"),
        )
        .await
        .unwrap();
    drop(store);
    // Opening again finds the current version and changes nothing.
    let store = SqliteMetaStore::open(&path).unwrap();
    let new = store
        .release(&pkg("checkout"), &ver("1.1.0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new, record("checkout", "1.1.0"));
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}
