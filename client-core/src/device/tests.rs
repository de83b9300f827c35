//! The device core driven with plain values and a fake clock: no files, no network.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use manifests::{
    Digest, HostRequirement, Index, KeyPair, PackageEntry, ReleaseRef, Timestamp, TrustedKeys,
};

use super::*;

const T0: u64 = 1_800_000_000;
const DAY: u64 = 24 * 3600;
const YEAR: u64 = 365 * DAY;

fn key() -> KeyPair {
    KeyPair::from_seed(&[7; 32])
}

fn trusted() -> TrustedKeys {
    TrustedKeys::single(key().public().clone())
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn pkg(name: &str) -> PackageId {
    PackageId::parse(name).unwrap()
}

fn version(v: &str) -> ReleaseVersion {
    ReleaseVersion::parse(v).unwrap()
}

fn release(name: &str, v: &str) -> ReleaseRef {
    ReleaseRef {
        version: version(v),
        manifest: Digest::of(format!("{name}@{v}").as_bytes()),
        requires: HostRequirement::any(),
        size_bytes: 10,
    }
}

fn installed(name: &str, v: &str) -> Installed {
    Installed {
        version: version(v),
        manifest: release(name, v).manifest,
    }
}

/// A signed index with `sequence`, issued at `issued` and valid for a day, offering `shop@v`.
fn index(sequence: u64, issued: u64, v: &str) -> Vec<u8> {
    let mut packages = BTreeMap::new();
    packages.insert(
        pkg("shop"),
        PackageEntry {
            priority: 5,
            prefetch: manifests::Prefetch::WifiOnly,
            stable: Some(release("shop", v)),
            candidate: None,
            older: Vec::new(),
        },
    );
    let index = Index {
        app: AppId::parse("app").unwrap(),
        channel: Channel::parse("production").unwrap(),
        sequence,
        issued_at: at(issued),
        expires_at: at(issued + DAY),
        packages,
    };
    index.sign(&[&key()]).unwrap().bytes
}

fn device() -> Device {
    Device::new(
        DeviceConfig {
            app: AppId::parse("app").unwrap(),
            channel: Channel::parse("production").unwrap(),
            device_id: "device-1".into(),
            host_version: HostVersion::parse("6.0.0").unwrap(),
            max_pending_launches: 2,
            sequence_floor: 0,
        },
        State::default(),
    )
}

/// Applies a change as the shell would after writing it.
fn apply(device: &mut Device, decide: impl FnOnce(&Device) -> Change) {
    let change = decide(device);
    let state = change.state().clone();
    device.commit(change, state);
}

/// Accepts `bytes` as a fresh download at wall time `wall`.
fn accept(device: &mut Device, bytes: &[u8], wall: u64) -> Result<Index> {
    let (index, change) = device.accept_index(
        IndexDoc::Full(bytes),
        &trusted(),
        at(wall),
        Fetched::New(None),
    )?;
    apply(device, |_| change);
    Ok(index)
}

fn code(e: Error) -> &'static str {
    match e {
        Error::Contract(e) => e.code(),
        other => panic!("not a contract error: {other}"),
    }
}

#[test]
fn an_index_selects_releases_the_device_does_not_run() {
    let mut d = device();
    let index = accept(&mut d, &index(1, T0, "1.0.0"), T0).unwrap();
    let updates = d.updates(&index);
    assert_eq!(updates.len(), 1);
    assert_eq!((updates[0].priority, updates[0].from.clone()), (5, None));
    assert_eq!(
        updates[0].prefetch,
        manifests::Prefetch::WifiOnly,
        "the publisher's policy"
    );
    apply(&mut d, |d| {
        d.activate(&pkg("shop"), installed("shop", "1.0.0"), Source::Download)
    });
    assert!(d.updates(&index).is_empty(), "the device runs it now");
    assert_eq!(d.sequence(), 1);
}

#[test]
fn a_replayed_older_index_is_refused_and_nothing_changes() {
    let mut d = device();
    accept(&mut d, &index(7, T0, "1.0.0"), T0).unwrap();
    let before = d.state().clone();
    let e = accept(&mut d, &index(5, T0 + 60, "0.9.0"), T0 + 60).unwrap_err();
    assert_eq!(code(e), "replay");
    assert_eq!(d.state(), &before);
}

#[test]
fn an_expired_index_is_refused() {
    let mut d = device();
    let e = accept(&mut d, &index(1, T0, "1.0.0"), T0 + 2 * DAY).unwrap_err();
    assert_eq!(code(e), "expired");
}

#[test]
fn a_clock_set_back_does_not_revive_an_expired_index() {
    let mut d = device();
    let bytes = index(3, T0, "1.0.0");
    accept(&mut d, &bytes, T0).unwrap();
    // Two days on, the server keeps serving the same index (a freeze): refused, and the time of
    // that check is recorded (bounded by the index's expiry) even so.
    let wall = at(T0 + 2 * DAY);
    apply(&mut d, |d| d.observe(wall));
    assert_eq!(d.state().last_trusted_secs, T0 + DAY);
    let refused = d.accept_index(
        IndexDoc::Full(&bytes),
        &trusted(),
        wall,
        Fetched::NotModified,
    );
    assert_eq!(code(refused.unwrap_err()), "expired");
    // The clock is set back 30 days: the index is still expired.
    let set_back = at(T0 - 28 * DAY);
    apply(&mut d, |d| d.observe(set_back));
    let replay = d.accept_index(
        IndexDoc::Full(&bytes),
        &trusted(),
        set_back,
        Fetched::NotModified,
    );
    assert_eq!(code(replay.unwrap_err()), "expired");
}

#[test]
fn an_index_dated_years_ahead_does_not_expire_every_later_index() {
    let mut d = device();
    // A server clock glitch signs an index five years ahead; the device accepts it.
    accept(&mut d, &index(1, T0 + 5 * YEAR, "1.0.0"), T0).unwrap();
    assert!(
        d.state().last_trusted_secs <= T0,
        "an index's own date never lifts the floor"
    );
    // The server's clock is fixed: its next index, dated today, is accepted.
    let index = accept(&mut d, &index(2, T0 + 60, "1.0.1"), T0 + 60).unwrap();
    assert_eq!(index.sequence, 2);
}

#[test]
fn a_device_clock_years_ahead_lifts_the_floor_only_to_the_newest_expiry() {
    let mut d = device();
    accept(&mut d, &index(1, T0, "1.0.0"), T0).unwrap();
    // The device clock jumps five years ahead: the index is expired, as far as it can tell.
    let ahead = at(T0 + 5 * YEAR);
    apply(&mut d, |d| d.observe(ahead));
    let glitch = d.accept_index(
        IndexDoc::Full(&index(1, T0, "1.0.0")),
        &trusted(),
        ahead,
        Fetched::NotModified,
    );
    assert_eq!(code(glitch.unwrap_err()), "expired");
    assert_eq!(d.state().last_trusted_secs, T0 + DAY);
    // The clock is right again: the next index from the server is accepted.
    accept(&mut d, &index(2, T0 + 3600, "1.0.1"), T0 + 3600).unwrap();
}

#[test]
fn a_pending_release_rolls_back_after_too_many_launches_without_ready() {
    let mut d = device();
    let shop = pkg("shop");
    apply(&mut d, |d| {
        d.activate(&shop, installed("shop", "1.0.0"), Source::Preset)
    });
    apply(&mut d, |d| {
        d.activate(&shop, installed("shop", "2.0.0"), Source::Download)
    });
    for _ in 0..2 {
        let (change, rolled_back) = d.launch();
        assert!(rolled_back.is_empty());
        apply(&mut d, |_| change);
    }
    let (change, rolled_back) = d.launch();
    assert_eq!(rolled_back, vec![shop.clone()]);
    assert!(change.changes_serving());
    apply(&mut d, |_| change);
    let p = &d.state().packages[&shop];
    assert_eq!(p.active, Some(installed("shop", "1.0.0")));
    assert_eq!(p.bad, vec![installed("shop", "2.0.0").manifest]);
    // The failed release is never offered again.
    let index = accept(&mut d, &index(1, T0, "2.0.0"), T0).unwrap();
    assert!(d.updates(&index).is_empty());
    let (_, events) = d.take_events(at(T0));
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Installed,
            EventKind::Activated,
            EventKind::Failed,
            EventKind::RolledBack
        ]
    );
}

#[test]
fn mark_ready_ends_pending_and_a_ready_release_survives_launches() {
    let mut d = device();
    let shop = pkg("shop");
    apply(&mut d, |d| {
        d.activate(&shop, installed("shop", "1.0.0"), Source::Download)
    });
    apply(&mut d, |d| d.mark_ready(&shop).unwrap().unwrap());
    assert!(
        d.mark_ready(&shop).unwrap().is_none(),
        "not pending any more"
    );
    for _ in 0..5 {
        let (change, rolled_back) = d.launch();
        assert!(rolled_back.is_empty());
        apply(&mut d, |_| change);
    }
    assert!(matches!(
        d.mark_ready(&pkg("other")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn a_rollback_needs_a_previous_release_unless_it_reports_a_failure() {
    let mut d = device();
    let shop = pkg("shop");
    apply(&mut d, |d| {
        d.activate(&shop, installed("shop", "1.0.0"), Source::Download)
    });
    assert!(matches!(d.roll_back(&shop, false), Err(Error::NotFound(_))));
    apply(&mut d, |d| d.roll_back(&shop, true).unwrap());
    assert_eq!(d.state().packages[&shop].active, None);
}

#[test]
fn eviction_keeps_routes_and_usage() {
    let mut d = device();
    let shop = pkg("shop");
    apply(&mut d, |d| {
        d.activate(&shop, installed("shop", "1.0.0"), Source::Preset)
    });
    apply(&mut d, |d| {
        d.activate(&shop, installed("shop", "2.0.0"), Source::Preset)
    });
    d.record_open((shop.clone(), version("2.0.0")), true, 300);
    d.record_open((shop.clone(), version("2.0.0")), true, 2_400);
    let (usage, events) = d.take_events(at(T0));
    apply(&mut d, |_| usage.unwrap());
    assert_eq!((events[0].count, events[0].under_1s), (2, 1));
    // By time to first paint: one in (200, 300] ms, one in (2, 3] s; no empty buckets after.
    assert_eq!(events[0].paint_ms, [0, 0, 1, 0, 0, 0, 0, 0, 1]);
    let change = d.evict(&[Eviction::Package(shop.clone())], |_| {
        vec!["m.example.com/shop/".into()]
    });
    apply(&mut d, |_| change);
    let p = &d.state().packages[&shop];
    assert_eq!((p.active.clone(), p.previous.clone()), (None, None));
    assert_eq!(p.evicted.as_ref().unwrap().routes, ["m.example.com/shop/"]);
    assert_eq!((p.opens, p.last_opened_secs), (2, T0));
}

#[test]
fn a_quarantined_release_stops_serving_and_is_offered_again() {
    let mut d = device();
    let (shop, news) = (pkg("shop"), pkg("news"));
    apply(&mut d, |d| {
        d.activate(&shop, installed("shop", "1.0.0"), Source::Preset)
    });
    apply(&mut d, |d| {
        d.activate(&news, installed("news", "1.0.0"), Source::Preset)
    });
    let broken = [installed("shop", "1.0.0").manifest].into_iter().collect();
    apply(&mut d, |d| d.quarantine(&broken));
    assert_eq!(d.state().packages[&shop].active, None);
    assert!(
        d.state().packages[&news].active.is_some(),
        "other packages keep serving"
    );
    let index = accept(&mut d, &index(1, T0, "1.0.0"), T0).unwrap();
    assert_eq!(d.updates(&index).len(), 1, "fetched again");
}

#[test]
fn a_preset_never_replaces_a_newer_release_or_a_bad_one() {
    let mut d = device();
    let shop = pkg("shop");
    let v2 = installed("shop", "2.0.0");
    assert!(d.wants_preset(&shop, &version("2.0.0"), &v2.manifest));
    apply(&mut d, |d| d.activate(&shop, v2.clone(), Source::Preset));
    assert!(!d.wants_preset(
        &shop,
        &version("1.0.0"),
        &installed("shop", "1.0.0").manifest
    ));
    assert!(d.wants_preset(
        &shop,
        &version("3.0.0"),
        &installed("shop", "3.0.0").manifest
    ));
}

#[test]
fn unsent_events_go_back_in_order_and_the_queue_is_bounded() {
    let mut d = device();
    let shop = pkg("shop");
    for i in 0..(MAX_QUEUED_EVENTS + 10) {
        apply(&mut d, |d| {
            d.activate(
                &shop,
                installed("shop", &format!("1.0.{i}")),
                Source::Download,
            )
        });
    }
    assert_eq!(d.queued_events(), MAX_QUEUED_EVENTS);
    let (_, events) = d.take_events(at(T0));
    assert_eq!(d.queued_events(), 0);
    apply(&mut d, |d| d.mark_ready(&shop).unwrap().unwrap());
    d.requeue(events);
    let (_, again) = d.take_events(at(T0));
    assert_eq!(again.len(), MAX_QUEUED_EVENTS);
    assert_eq!(
        again.last().unwrap().kind,
        EventKind::Ready,
        "the newest survive"
    );
}

#[test]
fn a_delta_moves_the_device_to_the_next_index_and_one_for_another_base_changes_nothing() {
    let mut d = device();
    let v1 = accept(&mut d, &index(1, T0, "1.0.0"), T0).unwrap();
    let mut v2 = v1.clone();
    v2.sequence = 2;
    v2.packages.get_mut(&pkg("shop")).unwrap().stable = Some(release("shop", "1.0.1"));
    let delta = manifests::IndexDelta::between(&v1, &v2, at(T0 + 60), at(T0 + DAY))
        .unwrap()
        .sign(&[&key()])
        .unwrap()
        .bytes;
    let doc = IndexDoc::Delta {
        delta: &delta,
        base: &v1,
    };
    let (index, change) = d
        .accept_index(
            doc,
            &trusted(),
            at(T0 + 60),
            Fetched::New(Some("\"d2\"".into())),
        )
        .unwrap();
    apply(&mut d, |_| change);
    assert_eq!((d.sequence(), d.index_etag()), (2, Some("\"d2\"")));
    assert_eq!(d.updates(&index)[0].to.version, version("1.0.1"));
    // The same delta again now starts from a sequence the device no longer holds.
    let before = d.state().clone();
    let again = IndexDoc::Delta {
        delta: &delta,
        base: &index,
    };
    let refused = d.accept_index(again, &trusted(), at(T0 + 90), Fetched::New(None));
    assert_eq!(code(refused.unwrap_err()), "delta_base");
    assert_eq!(d.state(), &before);
}

#[test]
fn a_held_index_is_checked_again_for_sequence_and_expiry_only() {
    let mut d = device();
    let bytes = index(4, T0, "1.0.0");
    accept(&mut d, &bytes, T0).unwrap();
    let held = d.held_index(IndexDoc::Full(&bytes), &trusted()).unwrap();
    let again = d.accept_index(
        IndexDoc::Held(&held),
        &trusted(),
        at(T0 + 60),
        Fetched::NotModified,
    );
    assert_eq!(again.unwrap().0, held);
    let stale = d.accept_index(
        IndexDoc::Held(&held),
        &trusted(),
        at(T0 + 2 * DAY),
        Fetched::NotModified,
    );
    assert_eq!(code(stale.unwrap_err()), "expired");
    // An index whose sequence is not the state's is not the one held.
    let other = index(3, T0, "1.0.0");
    assert!(d.held_index(IndexDoc::Full(&other), &trusted()).is_err());
}
