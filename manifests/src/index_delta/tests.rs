//! Index deltas: built, signed, applied, and every way a delta can be refused.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::{HostRequirement, ReleaseRef, ReleaseVersion};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32])
}

fn trusted() -> TrustedKeys {
    TrustedKeys::single(key(1).public().clone())
}

fn scope() -> IndexScope {
    IndexScope {
        app: AppId::parse("shop").unwrap(),
        channel: Channel::parse("production").unwrap(),
    }
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn entry(package: &str, version: &str) -> PackageEntry {
    PackageEntry {
        priority: 0,
        prefetch: Prefetch::Always,
        stable: Some(ReleaseRef {
            version: ReleaseVersion::parse(version).unwrap(),
            manifest: Digest::of(format!("{package}@{version}").as_bytes()),
            requires: HostRequirement::any(),
            size_bytes: 100,
        }),
        candidate: None,
        older: Vec::new(),
    }
}

/// An index at `sequence` of packages `name@version`.
fn index(sequence: u64, packages: &[(&str, &str)]) -> Index {
    Index {
        app: scope().app,
        channel: scope().channel,
        sequence,
        issued_at: at(T0),
        expires_at: at(T0 + DAY),
        packages: packages
            .iter()
            .map(|(p, v)| (PackageId::parse(p).unwrap(), entry(p, v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn signed(from: &Index, to: &Index) -> Vec<u8> {
    let delta = IndexDelta::between(from, to, at(T0 + 60), at(T0 + 60 + DAY)).unwrap();
    delta.sign(&[&key(1)]).unwrap().bytes
}

fn apply(bytes: &[u8], base: &Index) -> Result<Index> {
    apply_index_delta(
        bytes,
        &trusted(),
        &scope(),
        at(T0 + 120),
        base.sequence,
        base,
    )
}

#[test]
fn a_delta_carries_only_what_changed_and_rebuilds_the_index_exactly() {
    let names: Vec<String> = (0..1000).map(|i| format!("pkg{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1.0.0")).collect();
    let base = index(7, &many);
    let mut next = base.clone();
    next.sequence = 8;
    next.packages
        .insert(PackageId::parse("pkg5").unwrap(), entry("pkg5", "1.0.1"));
    next.packages.remove(&PackageId::parse("pkg9").unwrap());
    let bytes = signed(&base, &next);
    assert!(
        bytes.len() < 1_200,
        "{} bytes for one change of 1,000 packages",
        bytes.len()
    );
    let rebuilt = apply(&bytes, &base).unwrap();
    assert_eq!(rebuilt.packages, next.packages);
    assert_eq!(
        (rebuilt.sequence, rebuilt.expires_at),
        (8, at(T0 + 60 + DAY))
    );
    // The device stores what it rebuilt and trusts it again from the delta alone.
    let stored = rebuilt_index_bytes(&rebuilt).unwrap();
    let again = verify_rebuilt_index(&bytes, &stored, &trusted(), &scope(), at(T0 + 120), 8);
    assert_eq!(again.unwrap(), rebuilt);
}

#[test]
fn a_delta_with_no_change_renews_the_expiry() {
    let base = index(3, &[("a", "1.0.0")]);
    let bytes = signed(&base, &base);
    let renewed = apply(&bytes, &base).unwrap();
    assert_eq!(
        (renewed.sequence, renewed.expires_at),
        (3, at(T0 + 60 + DAY))
    );
}

#[test]
fn a_delta_for_another_base_a_replay_or_a_stale_one_is_refused() {
    let (v1, v2, v3) = (
        index(1, &[("a", "1.0.0")]),
        index(2, &[("a", "1.0.1")]),
        index(3, &[("a", "1.0.2")]),
    );
    let code = |r: Result<Index>| r.unwrap_err().code();
    // Mix-and-match: a delta from 2 applied to the index at 1.
    assert_eq!(code(apply(&signed(&v2, &v3), &v1)), "delta_base");
    // Replay: a device that saw sequence 3 refuses a delta that brings 2.
    let replay = apply_index_delta(&signed(&v1, &v2), &trusted(), &scope(), at(T0), 3, &v1);
    assert_eq!(code(replay), "replay");
    // Freeze: expired.
    let stale = apply_index_delta(
        &signed(&v1, &v2),
        &trusted(),
        &scope(),
        at(T0 + 2 * DAY),
        1,
        &v1,
    );
    assert_eq!(code(stale), "expired");
    // Another key.
    let mut delta = IndexDelta::between(&v1, &v2, at(T0), at(T0 + DAY)).unwrap();
    let forged = delta.sign(&[&key(2)]).unwrap().bytes;
    assert_eq!(code(apply(&forged, &v1)), "untrusted_signer");
    // A signed delta whose digest does not match what it carries.
    delta.packages_digest = Digest::of(b"something else");
    let lying = delta.sign(&[&key(1)]).unwrap().bytes;
    assert_eq!(code(apply(&lying, &v1)), "delta_mismatch");
    // Another channel.
    let mut other = v2.clone();
    other.channel = Channel::parse("staging").unwrap();
    let mut base = v1.clone();
    base.channel = other.channel.clone();
    assert_eq!(code(apply(&signed(&base, &other), &v1)), "wrong_index");
}

#[test]
fn a_stored_index_that_is_not_the_one_its_delta_led_to_is_refused() {
    let (v1, v2) = (index(1, &[("a", "1.0.0")]), index(2, &[("a", "1.0.1")]));
    let bytes = signed(&v1, &v2);
    let rebuilt = apply(&bytes, &v1).unwrap();
    let mut tampered = rebuilt.clone();
    tampered
        .packages
        .insert(PackageId::parse("b").unwrap(), entry("b", "6.6.6"));
    let stored = rebuilt_index_bytes(&tampered).unwrap();
    let result = verify_rebuilt_index(&bytes, &stored, &trusted(), &scope(), at(T0 + 120), 2);
    assert_eq!(result.unwrap_err().code(), "delta_mismatch");
}

#[test]
fn a_delta_that_changes_nothing_cannot_raise_the_sequence_and_a_package_cannot_both_change_and_go()
{
    let base = index(3, &[("a", "1.0.0")]);
    let mut delta = IndexDelta::between(&base, &base, at(T0), at(T0 + DAY)).unwrap();
    delta.sequence = 2;
    assert_eq!(delta.validate().unwrap_err().code(), "invalid_field");
    let mut both =
        IndexDelta::between(&base, &index(4, &[("a", "1.0.1")]), at(T0), at(T0 + DAY)).unwrap();
    both.removed.insert(PackageId::parse("a").unwrap());
    assert_eq!(both.validate().unwrap_err().code(), "invalid_field");
}
