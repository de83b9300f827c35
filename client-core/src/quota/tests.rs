//! The quota as a table.

use expect_test::{Expect, expect};
use manifests::{Digest, PackageId};

use super::*;

/// `name:active_blobs:previous_blobs:last_opened:opens[:protected]`, blobs as `x=size,y=size`
/// (a blob's name is its identity, so `x` in two packages is one shared blob).
fn holding(spec: &str) -> Holding {
    let f: Vec<&str> = spec.split(':').collect();
    let blobs = |s: &str| {
        s.split(',')
            .filter(|b| !b.is_empty())
            .map(|b| {
                let (name, size) = b.split_once('=').unwrap();
                (Digest::of(name.as_bytes()), size.parse().unwrap())
            })
            .collect()
    };
    Holding {
        package: PackageId::parse(f[0]).unwrap(),
        active: blobs(f[1]),
        previous: blobs(f[2]),
        last_opened_secs: f[3].parse().unwrap(),
        opens: f[4].parse().unwrap(),
        protected: f.get(5) == Some(&"protected"),
    }
}

#[track_caller]
fn check(holdings: &[&str], incoming: Option<&str>, quota: u64, expect: Expect) {
    let holdings: Vec<Holding> = holdings.iter().map(|s| holding(s)).collect();
    let incoming = incoming.map(holding);
    let out = match evictions(&holdings, incoming.as_ref(), quota) {
        None => "wait".to_owned(),
        Some(e) if e.is_empty() => "fits".to_owned(),
        Some(e) => e
            .iter()
            .map(|e| match e {
                Eviction::Previous(p) => format!("previous:{p}"),
                Eviction::Package(p) => format!("package:{p}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
    };
    expect.assert_eq(&out);
}

#[test]
fn shared_blobs_count_once() {
    let h = [holding("a:x=10,y=5:x=10:0:0"), holding("b:x=10,z=1::0:0")];
    assert_eq!(held_bytes(&h), 16);
}

#[test]
fn within_the_quota_nothing_moves() {
    check(
        &["a:x=10:y=10:5:1", "b:z=10::6:1"],
        None,
        30,
        expect!["fits"],
    );
}

#[test]
fn rollback_targets_go_first_least_recently_opened_first() {
    check(
        &["a:x=10:y=10:5:1", "b:z=10:w=10:6:1"],
        None,
        30,
        expect!["previous:a"],
    );
    check(
        &["a:x=10:y=10:5:1", "b:z=10:w=10:6:1"],
        None,
        20,
        expect!["previous:a previous:b"],
    );
}

#[test]
fn then_whole_packages_least_recently_opened_first() {
    check(
        &["a:x=10:y=10:5:1", "b:z=10:w=10:6:1", "c:v=10::7:1"],
        None,
        15,
        expect!["package:a package:b"],
    );
}

#[test]
fn a_pending_package_keeps_its_rollback_target() {
    check(
        &["a:x=10:y=10:5:1:protected", "b:z=10:w=10:6:1"],
        None,
        30,
        expect!["previous:b"],
    );
    check(&["a:x=10:y=10:5:1:protected"], None, 10, expect!["wait"]);
}

#[test]
fn an_unused_new_package_waits_rather_than_push_out_a_used_one() {
    check(
        &["a:x=10::5:1", "b:z=10::6:1"],
        Some("new:n=10::0:0:protected"),
        20,
        expect!["wait"],
    );
}

#[test]
fn an_incoming_release_of_a_used_package_evicts_less_used_ones() {
    // `b` updates: its old release becomes its protected rollback target; `a` is used less.
    check(
        &["a:x=10:y=10:5:1", "b:z=10::9:4"],
        Some("b:z2=10:z=10:9:4:protected"),
        30,
        expect!["previous:a"],
    );
}

#[test]
fn blobs_shared_with_a_kept_release_free_nothing() {
    // Dropping `a` frees nothing: its only blob is also `b`'s.
    check(
        &["a:x=10::1:1", "b:x=10,y=10::9:1:protected"],
        None,
        15,
        expect!["wait"],
    );
}
