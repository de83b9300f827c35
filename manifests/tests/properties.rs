//! Property tests: what must hold for every input, not only the ones we thought of.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Component, Path};

use common::*;
use manifests::*;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn canonical_json_round_trips(value in json_value()) {
        let canonical = to_canonical_bytes(&value).unwrap();
        // Parsing the canonical bytes gives the value back...
        prop_assert_eq!(&parse_strict(&canonical).unwrap(), &value);
        // ...canonicalising is idempotent...
        prop_assert_eq!(&canonicalize(&canonical).unwrap(), &canonical);
        // ...and any other layout of the same value canonicalises to the same bytes.
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        prop_assert_eq!(&canonicalize(&pretty).unwrap(), &canonical);
    }

    #[test]
    fn an_accepted_path_never_leaves_its_root(raw in "[a./\\\\:A\u{e9}\u{301}\0-]{0,12}") {
        if let Ok(path) = RelPath::parse(&raw) {
            let components: Vec<Component> = Path::new(path.as_str()).components().collect();
            prop_assert!(components.iter().all(|c| matches!(c, Component::Normal(_))), "{:?}", components);
            prop_assert_eq!(components.len(), path.segments().count());
            let root = Path::new("root");
            prop_assert!(root.join(path.as_str()).starts_with(root));
        }
    }

    #[test]
    fn parse_and_display_agree(raw in "[a-z0-9./_-]{1,20}") {
        if let Ok(path) = RelPath::parse(&raw) {
            prop_assert_eq!(RelPath::parse(path.as_ref()).unwrap(), path);
        }
        if let Ok(id) = PackageId::parse(&raw) {
            prop_assert_eq!(id.as_str(), raw.as_str());
        }
    }

    #[test]
    fn applying_a_plan_to_the_old_files_gives_the_new_files(
        old in file_list(),
        new in file_list(),
        first_install in any::<bool>(),
    ) {
        let base = if first_install { Files::new() } else { old };
        let plan = plan_diff(Some(&base), &new, |_| false);
        prop_assert_eq!(plan.apply(&base).unwrap(), new.clone());
        // Every blob of the new release is held or fetched, and none is fetched twice.
        let held: BTreeSet<Digest> = base.values().map(|f| f.sha256).collect();
        let fetched: Vec<Digest> = plan.fetch.iter().map(|f| f.sha256).collect();
        let unique: BTreeSet<Digest> = fetched.iter().copied().collect();
        prop_assert_eq!(unique.len(), fetched.len());
        for entry in new.values() {
            prop_assert!(held.contains(&entry.sha256) || unique.contains(&entry.sha256));
        }
        for digest in &unique {
            prop_assert!(!held.contains(digest));
        }
    }

    #[test]
    fn rollout_membership_only_grows_with_the_percentage(
        device in "[a-zA-Z0-9-]{1,36}",
        low in 0u16..=10_000,
        extra in 0u16..=10_000,
    ) {
        let package = PackageId::parse("checkout").unwrap();
        let version = ReleaseVersion::parse("1.5.0").unwrap();
        let bucket = rollout::bucket(&device, &package, &version);
        prop_assert!(bucket < rollout::BUCKETS);
        let high = low.saturating_add(extra).min(10_000);
        if rollout::in_rollout(bucket, low) {
            prop_assert!(rollout::in_rollout(bucket, high));
        }
        prop_assert!(rollout::in_rollout(bucket, 10_000));
        prop_assert!(!rollout::in_rollout(bucket, 0));
    }

    #[test]
    fn a_signed_release_verifies_and_any_flipped_byte_is_caught(
        spec in prop::collection::btree_map("[a-z]{1,6}\\.(js|css|html)", "[a-z0-9]{0,12}", 1..6),
        flip in any::<prop::sample::Index>(),
    ) {
        let spec: Vec<String> = spec.into_iter().map(|(p, c)| format!("{p}={c}")).collect();
        let r = release("1.0.0", &spec.join(" "));
        let k = key(1);
        let trusted = TrustedKeys::single(k.public().clone());
        let doc = r.sign(&[&k]).unwrap();
        prop_assert_eq!(&verify_release(&doc.bytes, &trusted, Some(&doc.digest)).unwrap().release, &r);
        let mut bytes = doc.bytes.clone();
        let i = flip.index(bytes.len());
        bytes[i] ^= 0x01;
        prop_assert!(verify_release(&bytes, &trusted, Some(&doc.digest)).is_err());
    }
}

fn file_list() -> impl Strategy<Value = Files> {
    // Few names and few contents, so that lists overlap, share blobs and rename files.
    prop::collection::btree_map(
        prop::sample::select(vec![
            "index.html",
            "a.js",
            "b.js",
            "app-4f9a2c1e.js",
            "app-77aa01bc.js",
            "d/x.css",
            "d/y.css",
        ]),
        prop::sample::select(vec!["1", "2", "3", "4"]),
        0..7,
    )
    .prop_map(|m| {
        let spec: Vec<String> = m.into_iter().map(|(p, c)| format!("{p}={c}")).collect();
        files(&spec.join(" "))
    })
}

#[test]
fn a_rollout_reaches_its_share_of_devices_and_keeps_them() {
    let package = PackageId::parse("checkout").unwrap();
    let version = ReleaseVersion::parse("1.5.0").unwrap();
    let buckets: Vec<u16> = (0..10_000)
        .map(|n| rollout::bucket(&format!("device-{n}"), &package, &version))
        .collect();
    for (basis_points, low, high) in [
        (1_000, 900, 1_100),
        (3_000, 2_850, 3_150),
        (6_000, 5_850, 6_150),
    ] {
        let inside = buckets
            .iter()
            .filter(|b| rollout::in_rollout(**b, basis_points))
            .count();
        assert!(
            (low..=high).contains(&inside),
            "{basis_points} bp reached {inside} of 10000 devices"
        );
    }
    let at_30: BTreeSet<usize> = (0..buckets.len())
        .filter(|i| rollout::in_rollout(buckets[*i], 3_000))
        .collect();
    let at_60: BTreeSet<usize> = (0..buckets.len())
        .filter(|i| rollout::in_rollout(buckets[*i], 6_000))
        .collect();
    assert!(at_30.is_subset(&at_60));
}
