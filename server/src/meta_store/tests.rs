//! One suite for every metadata store engine.

use std::collections::{BTreeSet, HashSet};

use manifests::{
    AppId, Channel, Digest, HostRequirement, PackageEntry, PackageId, Prefetch, ReleaseVersion,
    Timestamp,
};

use super::postgres::PostgresMetaStore;
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
        routes: vec![
            manifests::UrlPrefix::parse(&format!("https://m.example.com/{package}/")).unwrap(),
        ],
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

fn entry(stable: &str) -> PackageEntry {
    PackageEntry {
        priority: 90,
        prefetch: Prefetch::WifiOnly,
        stable: Some(manifests::ReleaseRef {
            version: ver(stable),
            manifest: Digest::of(stable.as_bytes()),
            requires: HostRequirement::parse(">=5").unwrap(),
            size_bytes: 1234,
        }),
        candidate: None,
        older: Vec::new(),
    }
}

fn commit(expected: u64, stable: &str) -> ChannelCommit {
    commit_of("checkout", expected, stable)
}

fn commit_of(package: &str, expected: u64, stable: &str) -> ChannelCommit {
    let sequence = expected + 1;
    ChannelCommit {
        app: app("shop"),
        channel: chan("production"),
        expected_sequence: expected,
        sequence,
        issued_at: Timestamp::from_unix_secs(1_700_000_000 + sequence),
        expires_at: Timestamp::from_unix_secs(1_700_600_000 + sequence),
        package: Some(PackageChange {
            package: pkg(package),
            state: ChannelPackage {
                stable: Some(ver(stable)),
                ..ChannelPackage::default()
            },
            entry: Some(entry(stable)),
        }),
        history: vec![HistoryEntry {
            at: Timestamp::from_unix_secs(1_700_000_000 + sequence),
            package: pkg(package),
            action: "promote".into(),
            from_version: None,
            to_version: Some(ver(stable)),
            rollout_basis_points: None,
            actor: "tester".into(),
            reason: format!("step {sequence}"),
            sequence,
            before: Some(ChannelPackage::default()),
        }],
        audit: Some(audit("promote")),
    }
}

fn stored_index(sequence: u64) -> StoredIndex {
    StoredIndex {
        sequence,
        digest: Digest::of(&sequence.to_be_bytes()),
        bytes: format!("index {sequence}").into_bytes(),
        issued_at: Timestamp::from_unix_secs(1_700_000_000),
        expires_at: Timestamp::from_unix_secs(1_700_600_000),
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
    // The same releases without their manifests.
    let full = store.releases(&pkg("checkout")).await.unwrap();
    let mut facts = store.release_facts(&pkg("checkout")).await.unwrap();
    facts.sort_by(|a, b| b.version.cmp(&a.version));
    assert_eq!(facts.len(), full.len());
    for (fact, record) in facts.iter().zip(&full) {
        assert_eq!(
            (
                &fact.version,
                fact.manifest_digest,
                fact.created_at,
                fact.size_bytes
            ),
            (
                &record.version,
                record.manifest_digest,
                record.created_at,
                record.size_bytes
            )
        );
    }
    assert!(store.release_facts(&pkg("nope")).await.unwrap().is_empty());

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
    assert!(
        store
            .channel_head(&shop, &production)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .channel_rows(&shop, &production)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .channel_package(&shop, &production, &pkg("checkout"))
            .await
            .unwrap(),
        (0, ChannelPackage::default())
    );
    assert!(store.index(&shop, &production).await.unwrap().is_none());
    assert!(store.commit_channel(&commit(0, "1.9.0")).await.unwrap());
    assert!(store.commit_channel(&commit(1, "1.10.0")).await.unwrap());
    // A change computed from an old state loses, and changes nothing.
    assert!(!store.commit_channel(&commit(1, "2.0.0")).await.unwrap());
    let state = store.channel_state(&shop, &production).await.unwrap();
    assert_eq!(state.sequence, 2);
    assert_eq!(state.packages[&pkg("checkout")].stable, Some(ver("1.10.0")));
    assert_eq!(
        store
            .channel_package(&shop, &production, &pkg("checkout"))
            .await
            .unwrap(),
        (2, state.packages[&pkg("checkout")].clone())
    );
    // The channel row keeps the sequence and the index's lifetime; deltas start from the first.
    let head = store
        .channel_head(&shop, &production)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        head,
        ChannelHead {
            sequence: 2,
            issued_at: Timestamp::from_unix_secs(1_700_000_002),
            expires_at: Timestamp::from_unix_secs(1_700_600_002),
            delta_floor: 1,
        }
    );
    // A change writes only its package's row, with its entry and the change's sequence.
    store
        .insert_release(&shop, &record("cart", "2.0.0"), &audit("publish"))
        .await
        .unwrap();
    assert!(
        store
            .commit_channel(&commit_of("cart", 2, "2.0.0"))
            .await
            .unwrap()
    );
    let (head, rows) = store
        .channel_rows(&shop, &production)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.sequence, 3);
    let rows: Vec<(String, Option<PackageEntry>, u64)> = rows
        .into_iter()
        .map(|r| (r.package.to_string(), r.entry, r.sequence))
        .collect();
    assert_eq!(
        rows,
        [
            ("cart".into(), Some(entry("2.0.0")), 3),
            ("checkout".into(), Some(entry("1.10.0")), 2),
        ]
    );
    // A re-signing moves the sequence and the lifetime only.
    let mut resign = commit(3, "9.9.9");
    resign.package = None;
    resign.history.clear();
    resign.audit = None;
    assert!(store.commit_channel(&resign).await.unwrap());
    let (head, rows) = store
        .channel_rows(&shop, &production)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((head.sequence, head.delta_floor, rows.len()), (4, 1, 2));
    // Filling entries leaves rows that have one untouched.
    store
        .fill_entries(&shop, &production, &[(pkg("checkout"), entry("0.0.1"))])
        .await
        .unwrap();
    let (_, rows) = store
        .channel_rows(&shop, &production)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows[1].entry, Some(entry("1.10.0")));
    assert_eq!(
        store.channels().await.unwrap(),
        vec![(shop.clone(), production.clone())]
    );
    // A commit must raise the sequence.
    let mut flat = commit(4, "2.0.0");
    flat.sequence = 4;
    assert!(store.commit_channel(&flat).await.is_err());

    // The signed index is kept as built, the highest sequence winning.
    store
        .store_index(&shop, &production, &stored_index(3))
        .await
        .unwrap();
    store
        .store_index(&shop, &production, &stored_index(2))
        .await
        .unwrap();
    let index = store.index(&shop, &production).await.unwrap().unwrap();
    assert_eq!((index.sequence, index.bytes), (3, b"index 3".to_vec()));

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

    // Device reports: states count distinct devices (added to the event counts above), opens
    // are bounded per device, release and day.
    let report = |version: &str, states: &[&'static str], opens: u64| DeviceReport {
        package: Some(pkg("checkout")),
        version: Some(ver(version)),
        states: states.to_vec(),
        opens,
        offline_hits: opens,
        under_1s: 0,
        paint_ms: [0, 0, opens, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let (phone, tablet) = (Digest::of(b"phone"), Digest::of(b"tablet"));
    for _ in 0..3 {
        store
            .add_device_reports(
                &shop,
                &production,
                &phone,
                100,
                &[report("2.0.0", &["failed", "installed"], 600)],
            )
            .await
            .unwrap();
    }
    store
        .add_device_reports(
            &shop,
            &production,
            &tablet,
            100,
            &[
                report("2.0.0", &["failed"], 5),
                report("3.0.0", &["ready"], 0),
            ],
        )
        .await
        .unwrap();
    // A new day: the phone's share starts again.
    store
        .add_device_reports(&shop, &production, &phone, 101, &[report("2.0.0", &[], 7)])
        .await
        .unwrap();
    let stats = store.stats(&shop, &production).await.unwrap();
    let summary: Vec<(String, u64, u64, u64, u64, u64)> = stats
        .iter()
        .map(|s| {
            (
                s.version.as_ref().unwrap().to_string(),
                s.installed,
                s.failed,
                s.ready,
                s.opens,
                s.offline_hits,
            )
        })
        .collect();
    let opens = 16 + super::MAX_OPENS_PER_DEVICE_DAY + 5 + 7;
    assert_eq!(
        summary,
        [
            ("3.0.0".into(), 0, 0, 1, 0, 0),
            ("2.0.0".into(), 3, 2, 0, opens, opens - 16),
            ("1.9.0".into(), 1, 0, 0, 4, 0)
        ]
    );

    // The same figures per day: each state on the day a device first reported it, opens on
    // the day they were counted.
    let days: Vec<(String, u64, String, u64)> = store
        .daily_figures(&shop, &production, &pkg("checkout"))
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.version != ver("1.9.0"))
        .map(|d| (d.version.to_string(), d.day, d.figure, d.count))
        .collect();
    let cap = super::MAX_OPENS_PER_DEVICE_DAY;
    let expected: Vec<(String, u64, String, u64)> = [
        ("2.0.0", 100, "failed", 2),
        ("2.0.0", 100, "installed", 1),
        ("2.0.0", 100, "offline_hits", cap + 5),
        ("2.0.0", 100, "opens", cap + 5),
        ("2.0.0", 100, "paint_2", cap + 5),
        ("2.0.0", 100, "under_1s", 0),
        ("3.0.0", 100, "ready", 1),
        ("2.0.0", 101, "offline_hits", 7),
        ("2.0.0", 101, "opens", 7),
        ("2.0.0", 101, "paint_2", 7),
        ("2.0.0", 101, "under_1s", 0),
    ]
    .into_iter()
    .map(|(v, d, f, c)| (v.to_owned(), d, f.to_owned(), c))
    .collect();
    assert_eq!(days, expected);

    // Console sessions: found by hash until removed; a new session clears expired ones.
    let opened = Timestamp::from_unix_secs(1_700_000_000);
    let session = SessionRecord {
        id: Digest::of(b"session-1"),
        token: Digest::of(b"baleen_token"),
        csrf: "f0rm".into(),
        created_at: opened,
        expires_at: opened.plus_secs(3600),
    };
    store.insert_session(&session).await.unwrap();
    assert_eq!(
        store.session(&session.id).await.unwrap(),
        Some(session.clone())
    );
    let later_session = SessionRecord {
        id: Digest::of(b"session-2"),
        created_at: opened.plus_secs(7200),
        expires_at: opened.plus_secs(9000),
        ..session.clone()
    };
    store.insert_session(&later_session).await.unwrap();
    assert_eq!(store.session(&session.id).await.unwrap(), None, "expired");
    store.delete_session(&later_session.id).await.unwrap();
    assert_eq!(store.session(&later_session.id).await.unwrap(), None);
    store.delete_session(&later_session.id).await.unwrap();

    // Ingest keys: found by hash, names unique per app, listed per app, revoked once.
    let ingest = IngestKeyRecord {
        app: shop.clone(),
        name: "android-1".into(),
        hash: Digest::of(b"bik_1"),
        created_at: Timestamp::from_unix_secs(1_700_000_000),
        revoked_at: None,
    };
    store
        .insert_ingest_key(&ingest, &audit("ingest_key.create"))
        .await
        .unwrap();
    let again = IngestKeyRecord {
        hash: Digest::of(b"bik_2"),
        ..ingest.clone()
    };
    assert!(matches!(
        store
            .insert_ingest_key(&again, &audit("ingest_key.create"))
            .await,
        Err(crate::Error::Conflict(_))
    ));
    let elsewhere = IngestKeyRecord {
        app: app("news"),
        ..again.clone()
    };
    store
        .insert_ingest_key(&elsewhere, &audit("ingest_key.create"))
        .await
        .unwrap();
    assert_eq!(
        store.ingest_key(&ingest.hash).await.unwrap(),
        Some(ingest.clone())
    );
    assert_eq!(store.ingest_key(&Digest::of(b"nope")).await.unwrap(), None);
    assert_eq!(
        store.ingest_keys(&shop).await.unwrap(),
        std::slice::from_ref(&ingest)
    );
    let at = Timestamp::from_unix_secs(1_750_000_000);
    let revoked = store
        .revoke_ingest_key(&shop, "android-1", at, &audit("ingest_key.revoke"))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    let later = Timestamp::from_unix_secs(1_760_000_000);
    let still = store
        .revoke_ingest_key(&shop, "android-1", later, &audit("ingest_key.revoke"))
        .await
        .unwrap();
    assert_eq!(still.revoked_at, Some(at), "the first revocation stays");
    assert!(matches!(
        store
            .revoke_ingest_key(&shop, "none", at, &audit("ingest_key.revoke"))
            .await,
        Err(crate::Error::NotFound(_))
    ));

    // Tokens: found by hash, names unique, listed, revoked once, their use recorded.
    let token = TokenRecord {
        name: "ci".into(),
        hash: Digest::of(b"secret"),
        scope: Scope::Publish,
        app: Some(AppId::parse("shop").unwrap()),
        package: Some(pkg("checkout")),
        created_at: Timestamp::from_unix_secs(1_700_000_000),
        expires_at: Some(Timestamp::from_unix_secs(1_800_000_000)),
        revoked_at: None,
        last_used_at: None,
    };
    store
        .insert_token(&token, &audit("token.create"))
        .await
        .unwrap();
    assert_eq!(store.token(&token.hash).await.unwrap(), Some(token.clone()));
    assert_eq!(store.token(&Digest::of(b"guess")).await.unwrap(), None);
    let dup = TokenRecord {
        hash: Digest::of(b"other"),
        ..token.clone()
    };
    assert_eq!(
        store
            .insert_token(&dup, &audit("token.create"))
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    let used = Timestamp::from_unix_secs(1_700_000_100);
    store
        .token_used(&token.hash, used, &audit("token.use"))
        .await
        .unwrap();
    let revoked_at = Timestamp::from_unix_secs(1_700_000_200);
    let revoked = store
        .revoke_token("ci", revoked_at, &audit("token.revoke"))
        .await
        .unwrap();
    assert_eq!(
        (revoked.revoked_at, revoked.last_used_at),
        (Some(revoked_at), Some(used))
    );
    // A second revocation keeps the first time and writes nothing.
    let again = store
        .revoke_token(
            "ci",
            Timestamp::from_unix_secs(1_700_000_300),
            &audit("token.revoke"),
        )
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(revoked_at));
    assert_eq!(
        store
            .revoke_token("nobody", revoked_at, &audit("token.revoke"))
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(store.tokens().await.unwrap(), [revoked]);

    // The audit log holds every write, newest first.
    let log = store.audit_log(100).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "token.revoke",
            "token.use",
            "token.create",
            "ingest_key.revoke",
            "ingest_key.create",
            "ingest_key.create",
            "promote",
            "publish",
            "promote",
            "promote",
            "publish",
            "publish",
            "publish",
            "publish"
        ]
    );
    assert_eq!(store.audit_log(2).await.unwrap().len(), 2);

    // Ramps: one per app, channel and package, replaced whole, read back as written.
    let mut ramp = crate::ramp::RampRecord {
        app: shop.clone(),
        channel: Channel::parse("production").unwrap(),
        package: PackageId::parse("checkout").unwrap(),
        version: ReleaseVersion::parse("2.0.0").unwrap(),
        policy: crate::ramp::RampPolicy {
            steps: vec![100, 10_000],
            min_devices: 10,
            min_step_secs: 60,
            margin_basis_points: 50,
            auto_rollback: true,
        },
        state: crate::ramp::RampState::Active,
        actor: "release-bot".into(),
        started_at: Timestamp::from_unix_secs(1_700_000_000),
        step_started_at: Timestamp::from_unix_secs(1_700_000_000),
        last: None,
    };
    assert!(store.ramps().await.unwrap().is_empty());
    store
        .put_ramp(&ramp, Some(&audit("ramp.start")))
        .await
        .unwrap();
    ramp.state = crate::ramp::RampState::Paused;
    ramp.last = Some(crate::ramp::Evaluation {
        at: Timestamp::from_unix_secs(1_700_000_060),
        verdict: "pause".into(),
        reason: "worse".into(),
        basis_points: 100,
        candidate: crate::ramp::Health {
            activated: 40,
            failed: 9,
        },
        stable: None,
    });
    store.put_ramp(&ramp, None).await.unwrap();
    let mut other = ramp.clone();
    other.channel = Channel::parse("beta").unwrap();
    store.put_ramp(&other, None).await.unwrap();
    assert_eq!(store.ramps().await.unwrap(), [other, ramp]);
    assert_eq!(store.audit_log(1).await.unwrap()[0].action, "ramp.start");
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
                 1700000000, 'ci', 'notes');
             INSERT INTO tokens VALUES ('{}', 'ci', 'publish', 'checkout', 1700000000);",
            r.manifest_digest,
            r.content_key,
            Digest::of(b"old secret")
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
    // A token of version 1 keeps working: bound to its package, no app, no expiry, never used.
    let token = store
        .token(&Digest::of(b"old secret"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            token.package,
            token.app,
            token.expires_at,
            token.revoked_at,
            token.last_used_at
        ),
        (Some(pkg("checkout")), None, None, None, None)
    );
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
    assert_eq!(version, 1 + super::sqlite::MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn sqlite_meta_store_upgrades_a_version_2_channel_to_per_package_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite3");
    {
        // A channel as version 2 kept it: every package row, the index with the sequence, and the
        // history of each change.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "BEGIN; {} {} PRAGMA user_version = 2; COMMIT;",
            super::sqlite::SCHEMA_V1,
            super::sqlite::MIGRATIONS[0]
        ))
        .unwrap();
        conn.execute_batch(
            "INSERT INTO packages VALUES ('checkout', 'shop', 0), ('search', 'shop', 0);
             INSERT INTO channel_packages VALUES
                 ('shop', 'production', 'checkout', '1.0.0', NULL, 0, 0),
                 ('shop', 'production', 'search', '2.0.0', '2.1.0', 500, 1);
             INSERT INTO indexes VALUES ('shop', 'production', 7,
                 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', x'00',
                 1700000000, 1700600000);
             INSERT INTO history (app, channel, package, at, action, from_version, to_version,
                 rollout_basis_points, actor, reason, sequence) VALUES
                 ('shop', 'production', 'checkout', 1, 'promote', NULL, '1.0.0', NULL, 'ci', '', 1),
                 ('shop', 'production', 'search', 2, 'promote', NULL, '2.0.0', NULL, 'ci', '', 2),
                 ('shop', 'production', 'search', 3, 'rollout', NULL, '2.1.0', 500, 'ci', '', 5);",
        )
        .unwrap();
    }
    let store = SqliteMetaStore::open(&path).unwrap();
    let (shop, production) = (app("shop"), chan("production"));
    let (head, rows) = store
        .channel_rows(&shop, &production)
        .await
        .unwrap()
        .unwrap();
    // The sequence and lifetime come from the index; deltas start from the upgrade.
    assert_eq!(
        head,
        ChannelHead {
            sequence: 7,
            issued_at: Timestamp::from_unix_secs(1_700_000_000),
            expires_at: Timestamp::from_unix_secs(1_700_600_000),
            delta_floor: 7,
        }
    );
    // Each row's last change comes from the history; entries are computed later.
    let rows: Vec<(String, bool, Option<PackageEntry>, u64)> = rows
        .into_iter()
        .map(|r| (r.package.to_string(), r.is_listed(), r.entry, r.sequence))
        .collect();
    assert_eq!(
        rows,
        [
            ("checkout".into(), true, None, 1),
            ("search".into(), true, None, 5),
        ]
    );
    assert_eq!(
        store
            .channel_state(&shop, &production)
            .await
            .unwrap()
            .sequence,
        7
    );
    // The kept index is still there, and the next change starts from its sequence.
    assert_eq!(
        store
            .index(&shop, &production)
            .await
            .unwrap()
            .unwrap()
            .sequence,
        7
    );
    assert!(!store.commit_channel(&commit(6, "1.1.0")).await.unwrap());
    store
        .insert_release(&shop, &record("checkout", "1.1.0"), &audit("publish"))
        .await
        .unwrap();
    assert!(store.commit_channel(&commit(7, "1.1.0")).await.unwrap());
}

/// A release whose stored manifest lists a blob for each of `contents`.
fn signed(package: &str, version: &str, contents: &[&str]) -> ReleaseRecord {
    use manifests::{FileEntry, KeyPair, MimeType, RelPath, Release, Route, UrlPrefix};
    let files = contents
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let entry = FileEntry {
                sha256: Digest::of(c.as_bytes()),
                size: c.len() as u64,
                mime: MimeType::parse("text/plain").unwrap(),
            };
            (RelPath::parse(&format!("f{i}.txt")).unwrap(), entry)
        })
        .collect();
    let release = Release {
        package: pkg(package),
        version: ver(version),
        files,
        entry: RelPath::parse("f0.txt").unwrap(),
        routes: vec![Route {
            prefix: UrlPrefix::parse(&format!("https://m.example.com/{package}/")).unwrap(),
            fallback: None,
        }],
        requires: HostRequirement::any(),
        created_at: Timestamp::from_unix_secs(1_700_000_000),
        notes: String::new(),
        source_revision: None,
    };
    let signed = release.sign(&[&KeyPair::from_seed(&[7; 32])]).unwrap();
    ReleaseRecord {
        manifest_digest: signed.digest,
        manifest: signed.bytes,
        ..record(package, version)
    }
}

fn digests(texts: &[&str]) -> HashSet<Digest> {
    texts.iter().map(|t| Digest::of(t.as_bytes())).collect()
}

/// What a collection needs of every engine: facts read together, removal only while nothing
/// names a release, the blobs releases and packs refer to, and channels and packs that never
/// name a removed release.
async fn collection_suite(store: &dyn MetaStore) {
    let shop = app("shop");
    for (version, contents) in [
        ("1.0.0", ["x", "shared"]),
        ("1.1.0", ["y", "shared"]),
        ("1.2.0", ["z", "z"]),
    ] {
        store
            .insert_release(
                &shop,
                &signed("checkout", version, &contents),
                &audit("publish"),
            )
            .await
            .unwrap();
    }
    // Nothing may name a release that is not stored.
    assert!(matches!(
        store.commit_channel(&commit(0, "1.5.0")).await,
        Err(crate::Error::NotFound(m)) if m == "release checkout@1.5.0"
    ));
    assert!(store.commit_channel(&commit(0, "1.1.0")).await.unwrap());
    let pack = |name: &str| PackRecord {
        digest: Digest::of(name.as_bytes()),
        size_bytes: 10,
    };
    let (checkout, v) = (pkg("checkout"), ver);
    store
        .insert_pack(&checkout, Some(&v("1.0.0")), &v("1.1.0"), &pack("p1"))
        .await
        .unwrap();
    store
        .insert_pack(&checkout, None, &v("1.2.0"), &pack("p2"))
        .await
        .unwrap();
    for (from, to) in [(Some("9.0.0"), "1.1.0"), (None, "9.0.0")] {
        let from = from.map(v);
        assert!(matches!(
            store.insert_pack(&checkout, from.as_ref(), &v(to), &pack("p3")).await,
            Err(crate::Error::NotFound(m)) if m == "release checkout@9.0.0"
        ));
    }

    let facts = store.retention_facts().await.unwrap();
    let mut versions: Vec<String> = facts
        .releases
        .iter()
        .map(|r| r.version.to_string())
        .collect();
    versions.sort();
    assert_eq!(versions, ["1.0.0", "1.1.0", "1.2.0"]);
    assert_eq!(facts.named, [(checkout.clone(), v("1.1.0"))]);
    assert_eq!(facts.history.len(), 1);
    assert_eq!(facts.history[0].to_version, Some(v("1.1.0")));
    assert_eq!(facts.packs.len(), 2);
    assert!(facts.history_mark > 0);

    let none = BTreeSet::new();
    let old: BTreeSet<_> = [(checkout.clone(), v("1.0.0"))].into();
    let mut all = digests(&["x", "y", "shared", "z", "p1", "p2"]);
    assert_eq!(store.live_digests(&none).await.unwrap(), all);
    let without_old = digests(&["y", "shared", "z", "p2"]);
    assert_eq!(store.live_digests(&old).await.unwrap(), without_old);

    // A release a channel names stays, and so does everything when a channel changed since the
    // facts were read.
    let named: BTreeSet<_> = [(checkout.clone(), v("1.1.0"))].into();
    assert!(
        !store
            .delete_releases(&named, facts.history_mark, &audit("gc"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_releases(&old, facts.history_mark - 1, &audit("gc"))
            .await
            .unwrap()
    );
    assert_eq!(store.live_digests(&none).await.unwrap(), all);
    assert!(
        store
            .delete_releases(&old, facts.history_mark, &audit("gc"))
            .await
            .unwrap()
    );
    assert!(
        store
            .release(&checkout, &v("1.0.0"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .pack(&checkout, Some(&v("1.0.0")), &v("1.1.0"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.audit_log(1).await.unwrap()[0].action, "gc");
    all = without_old;
    assert_eq!(store.live_digests(&none).await.unwrap(), all);
    // The version is free again, and its blobs are listed anew.
    store
        .insert_release(
            &shop,
            &signed("checkout", "1.0.0", &["w"]),
            &audit("publish"),
        )
        .await
        .unwrap();
    all.insert(Digest::of(b"w"));
    assert_eq!(store.live_digests(&none).await.unwrap(), all);

    assert_eq!(store.last_collection().await.unwrap(), None);
    let at = Timestamp::from_unix_secs(1_800_000_000);
    store.set_last_collection(at).await.unwrap();
    store.set_last_collection(at.plus_secs(5)).await.unwrap();
    assert_eq!(
        store.last_collection().await.unwrap(),
        Some(at.plus_secs(5))
    );

    // A manifest the store cannot read has blobs it cannot know: no blob may be removed.
    store
        .insert_release(&shop, &record("checkout", "2.0.0"), &audit("publish"))
        .await
        .unwrap();
    let refused = store.live_digests(&none).await.unwrap_err().to_string();
    assert!(
        refused.contains("release checkout@2.0.0: stored manifest unreadable"),
        "{refused}"
    );
}

#[tokio::test]
async fn sqlite_meta_store_passes_the_collection_suite() {
    collection_suite(&SqliteMetaStore::open_in_memory().unwrap()).await;
}

/// A fresh PostgreSQL with this server's schema, or None (the test skips, saying so) where none
/// is installed and `BALEEN_REQUIRE_POSTGRES` is unset.
async fn postgres(test: &str) -> Option<(crate::test_service::TestService, PostgresMetaStore)> {
    use crate::test_service::{Kind, TestService};
    let server = TestService::start(Kind::Postgres, test)?;
    let store = PostgresMetaStore::connect(&server.var("BALEEN_PG_URL").unwrap())
        .await
        .unwrap();
    Some((server, store))
}

#[tokio::test]
async fn postgres_meta_store() {
    let Some((_server, store)) = postgres("meta_store::tests::postgres_meta_store").await else {
        return;
    };
    meta_store_suite(&store).await;
    assert_eq!(
        store.schema_version().await.unwrap(),
        super::postgres::MIGRATIONS.len() as i64
    );
}

#[tokio::test]
async fn postgres_meta_store_passes_the_collection_suite() {
    let Some((_server, store)) = postgres("meta_store::tests::postgres_collection_suite").await
    else {
        return;
    };
    collection_suite(&store).await;
}

/// Replicas starting together apply each migration once; a database whose schema is newer than
/// the server is refused, naming both versions.
#[tokio::test]
async fn postgres_migrations_run_once_and_refuse_a_newer_schema() {
    let Some((server, _store)) = postgres("meta_store::tests::postgres_migrations").await else {
        return;
    };
    let url = server.var("BALEEN_PG_URL").unwrap();
    let replicas =
        futures::future::join_all((0..4).map(|_| PostgresMetaStore::connect(&url))).await;
    for replica in &replicas {
        assert!(replica.is_ok(), "{replica:?}");
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let applied: i64 = client
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, super::postgres::MIGRATIONS.len() as i64);
    client
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
            &[],
        )
        .await
        .unwrap();
    let err = PostgresMetaStore::connect(&url).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("schema version 999 is newer than this server"),
        "{err}"
    );
}

/// Two replicas racing on one channel: every sequence is won by exactly one change, the losers
/// see false and nothing of theirs is stored, and the history holds exactly the winners.
#[tokio::test]
async fn postgres_channel_compare_and_swap_holds_across_replicas() {
    let Some((server, a)) = postgres("meta_store::tests::postgres_cas").await else {
        return;
    };
    let b = PostgresMetaStore::connect(&server.var("BALEEN_PG_URL").unwrap())
        .await
        .unwrap();
    for v in ["1.0.0", "2.0.0"] {
        a.insert_release(&app("shop"), &record("checkout", v), &audit("publish"))
            .await
            .unwrap();
    }
    let mut wins = 0;
    for expected in 0..20u64 {
        let (one, two) = (commit(expected, "1.0.0"), commit(expected, "2.0.0"));
        let (x, y) = tokio::join!(a.commit_channel(&one), b.commit_channel(&two));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x ^ y, "sequence {expected}: exactly one wins ({x}, {y})");
        wins += 1;
        let state = b
            .channel_state(&app("shop"), &chan("production"))
            .await
            .unwrap();
        let winner = if x { "1.0.0" } else { "2.0.0" };
        assert_eq!(state.sequence, expected + 1);
        assert_eq!(state.packages[&pkg("checkout")].stable, Some(ver(winner)));
    }
    let history = a
        .history(&app("shop"), &chan("production"), None)
        .await
        .unwrap();
    assert_eq!(history.len(), wins);
    let sequences: Vec<u64> = history.iter().rev().map(|h| h.sequence).collect();
    assert_eq!(sequences, (1..=20).collect::<Vec<_>>());
}

/// While PostgreSQL restarts, calls fail as "unavailable" (503, retry), never as a bug; once it
/// is back, the same store works again on fresh connections, with everything committed kept.
#[tokio::test]
async fn postgres_restart_is_unavailable_then_recovers() {
    let Some((mut server, store)) = postgres("meta_store::tests::postgres_restart").await else {
        return;
    };
    store
        .insert_release(
            &app("shop"),
            &record("checkout", "1.0.0"),
            &audit("publish"),
        )
        .await
        .unwrap();
    assert!(store.commit_channel(&commit(0, "1.0.0")).await.unwrap());
    server.restart();
    let mut unavailable = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let head = loop {
        match store.channel_head(&app("shop"), &chan("production")).await {
            Ok(head) => break head,
            Err(e) => {
                assert_eq!(e.code(), "meta_unavailable", "{e}");
                assert_eq!(e.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
                unavailable += 1;
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(head.unwrap().sequence, 1);
    // The pooled connections died with the server: at least the first call saw it.
    assert!(unavailable >= 1);
    assert!(store.commit_channel(&commit(1, "1.0.0")).await.unwrap());
}

/// Leases: one holder at a time; given up when dropped; locks shared or alone.
#[tokio::test]
async fn postgres_leases_and_locks_exclude_other_replicas() {
    let Some((server, a)) = postgres("meta_store::tests::postgres_leases").await else {
        return;
    };
    let b = PostgresMetaStore::connect(&server.var("BALEEN_PG_URL").unwrap())
        .await
        .unwrap();
    let held = a.try_lock("pack-job:x").await.unwrap();
    assert!(held.is_some());
    assert!(b.try_lock("pack-job:x").await.unwrap().is_none());
    assert!(b.try_lock("pack-job:y").await.unwrap().is_some());
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while b.try_lock("pack-job:x").await.unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was never given up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Shared holders together; the exclusive one waits for them.
    let s1 = a.lock("gate", true).await.unwrap();
    let s2 = b.lock("gate", true).await.unwrap();
    let exclusive = tokio::spawn(async move { a.lock("gate", false).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!exclusive.is_finished());
    drop((s1, s2));
    tokio::time::timeout(std::time::Duration::from_secs(5), exclusive)
        .await
        .unwrap()
        .unwrap();
}

async fn next_change(feed: &mut tokio::sync::mpsc::UnboundedReceiver<StoreChange>) -> StoreChange {
    tokio::time::timeout(std::time::Duration::from_secs(10), feed.recv())
        .await
        .expect("nothing on the feed")
        .unwrap()
}

/// What one replica commits reaches another's feed: a channel's new sequence, a manifest that
/// gained signatures or was collected; a lost feed says changes may have been missed.
#[tokio::test]
async fn postgres_feed_tells_other_replicas_what_changed() {
    let Some((mut server, a)) = postgres("meta_store::tests::postgres_feed").await else {
        return;
    };
    let b = PostgresMetaStore::connect(&server.var("BALEEN_PG_URL").unwrap())
        .await
        .unwrap();
    let mut feed = b.changes().await.unwrap().unwrap();
    // The listener connects in the background: commit until its first change arrives.
    a.insert_release(
        &app("shop"),
        &record("checkout", "1.0.0"),
        &audit("publish"),
    )
    .await
    .unwrap();
    let mut expected = 0;
    let first = loop {
        assert!(a.commit_channel(&commit(expected, "1.0.0")).await.unwrap());
        expected += 1;
        match tokio::time::timeout(std::time::Duration::from_millis(200), feed.recv()).await {
            Ok(change) => break change.unwrap(),
            Err(_) => assert!(expected < 50, "the feed never delivered"),
        }
    };
    assert!(
        matches!(&first, StoreChange::Channel { app: a, channel: c, sequence } if a.as_str() == "shop" && c.as_str() == "production" && *sequence <= expected),
        "{first:?}"
    );
    while let Ok(Some(_)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), feed.recv()).await
    {}
    assert!(a.commit_channel(&commit(expected, "1.0.0")).await.unwrap());
    assert_eq!(
        next_change(&mut feed).await,
        StoreChange::Channel {
            app: app("shop"),
            channel: chan("production"),
            sequence: expected + 1
        }
    );
    let r = record("checkout", "1.0.0");
    a.set_manifest(
        &r.package,
        &r.version,
        b"more signatures",
        &audit("release.sign"),
    )
    .await
    .unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreChange::Manifest(r.manifest_digest)
    );
    // A restart cuts the feed: the replica hears that it may have missed changes.
    server.restart();
    assert_eq!(next_change(&mut feed).await, StoreChange::Missed);
}
