//! Diff planning and targeting, as tables.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use expect_test::{Expect, expect};
use manifests::*;

#[track_caller]
fn check(old: Option<&str>, new: &str, expect: Expect) {
    let old = old.map(files);
    let plan = plan_diff(old.as_ref(), &files(new), |_| false);
    expect.assert_eq(&plan.to_string());
}

#[test]
fn first_install_fetches_every_blob_once() {
    check(
        None,
        "index.html=1 a.js=2 copy.js=2",
        expect![[r#"
        add a.js
        add copy.js
        add index.html
        fetch d4735e3a265e (1 bytes)
        fetch 6b86b273ff34 (1 bytes)
    "#]],
    );
}

#[test]
fn unchanged_files_stay_out_of_the_pack() {
    check(
        Some("a.js=1"),
        "a.js=1 b.css=2",
        expect![[r#"
        add b.css
        fetch d4735e3a265e (1 bytes)
    "#]],
    );
}

#[test]
fn a_changed_file_patches_from_its_old_content() {
    check(
        Some("index.html=1 a.js=2"),
        "index.html=1 a.js=3",
        expect![[r#"
        change a.js
        fetch 4e07408562be (1 bytes) patch from d4735e3a265e
    "#]],
    );
}

#[test]
fn a_renamed_chunk_patches_from_its_predecessor() {
    check(
        Some("assets/index-4f9a2c1e.js=aaaa assets/vendor-0badc0de.js=bbbbbbbb"),
        "assets/index-9c8d7e6f.js=aaab assets/vendor-0badc0de.js=bbbbbbbb",
        expect![[r#"
            add assets/index-9c8d7e6f.js
            remove assets/index-4f9a2c1e.js
            fetch 85e90f7f0e71 (4 bytes) patch from 61be55a8e2f6
        "#]],
    );
}

#[test]
fn the_closest_in_size_is_the_predecessor() {
    let old = files("chunk-1111aaaa.js=xx chunk-2222bbbb.js=xxxxxxxxxx");
    let new = files("chunk-3333cccc.js=xxxxxxxxx");
    let plan = plan_diff(Some(&old), &new, |_| false);
    let bigger = old.values().find(|f| f.size == 10).unwrap();
    assert_eq!(plan.fetch[0].base, Some(bigger.sha256));
}

#[test]
fn a_moved_file_is_not_fetched_again() {
    check(
        Some("old/a.js=1"),
        "new/a.js=1",
        expect![[r#"
        add new/a.js
        remove old/a.js
    "#]],
    );
}

#[test]
fn blobs_held_elsewhere_are_not_fetched() {
    let shared = Digest::of(b"2");
    let plan = plan_diff(None, &files("a.js=1 b.js=2"), |d| *d == shared);
    assert_eq!(plan.fetch.len(), 1);
    assert_eq!(plan.fetch[0].sha256, Digest::of(b"1"));
    assert_eq!(plan.fetch_bytes(), 1);
}

#[test]
fn a_plan_refuses_the_wrong_base() {
    let plan = plan_diff(Some(&files("a.js=1 b.js=2")), &files("a.js=3"), |_| false);
    expect![[r#"Err(PlanMismatch { path: "a.js", reason: "changed file has other content" })"#]]
        .assert_eq(&format!("{:?}", plan.apply(&files("a.js=9 b.js=2"))));
    expect![[r#"Err(PlanMismatch { path: "b.js", reason: "removed file is missing" })"#]]
        .assert_eq(&format!("{:?}", plan.apply(&files("a.js=1"))));
    expect![[r#"Err(PlanMismatch { path: "", reason: "the old list holds files the plan does not know" })"#]]
        .assert_eq(&format!("{:?}", plan.apply(&files("a.js=1 b.js=2 c.js=4"))));
}

fn entry_with(
    stable_requires: &str,
    candidate: Option<(&str, u16)>,
    older: &[(&str, &str)],
) -> PackageEntry {
    let reference = |version: &str, requires: &str| ReleaseRef {
        version: ReleaseVersion::parse(version).unwrap(),
        manifest: Digest::of(version.as_bytes()),
        requires: HostRequirement::parse(requires).unwrap(),
        size_bytes: 1,
    };
    PackageEntry {
        priority: 0,
        prefetch: Prefetch::default(),
        stable: Some(reference("2.0.0", stable_requires)),
        candidate: candidate.map(|(requires, bp)| Candidate {
            release: reference("2.1.0", requires),
            rollout_basis_points: bp,
        }),
        older: older.iter().map(|(v, r)| reference(v, r)).collect(),
    }
}

#[track_caller]
fn check_select(entry: &PackageEntry, host: &str, device: &str, expect: Expect) {
    let package = PackageId::parse("checkout").unwrap();
    let got = select(&package, entry, &HostVersion::parse(host).unwrap(), device)
        .map(|s| format!("{} {:?}", s.release.version, s.reason))
        .unwrap_or_else(|| "none".into());
    expect.assert_eq(&got);
}

#[test]
fn targeting() {
    let entry = entry_with(
        ">=6",
        Some((">=6", 10_000)),
        &[("1.9.0", ">=5, <6"), ("1.0.0", ">=4")],
    );
    check_select(&entry, "6.1", "d", expect!["2.1.0 Candidate"]);
    check_select(&entry, "5.5", "d", expect!["1.9.0 Older"]);
    check_select(&entry, "4.0", "d", expect!["1.0.0 Older"]);
    check_select(&entry, "3.9", "d", expect!["none"]);

    let paused = entry_with(">=6", Some((">=6", 0)), &[]);
    check_select(&paused, "6.1", "d", expect!["2.0.0 Stable"]);

    // A candidate the host app cannot run is skipped even inside the rollout.
    let needs_7 = entry_with(">=6", Some((">=7", 10_000)), &[]);
    check_select(&needs_7, "6.1", "d", expect!["2.0.0 Stable"]);
    check_select(&needs_7, "7.0", "d", expect!["2.1.0 Candidate"]);
}

#[test]
fn invalid_indexes_are_refused() {
    let k = key(1);
    let r = release_ref(&release("1.0.0", "index.html=1"), &[&k]);
    let check =
        |index: Index, expect: Expect| expect.assert_eq(&index.validate().unwrap_err().to_string());

    check(
        index(0, r.clone(), None),
        expect!["invalid sequence: must be at least 1"],
    );
    let mut expired = index(1, r.clone(), None);
    expired.expires_at = expired.issued_at;
    check(
        expired,
        expect![
            "invalid expires_at: 2026-11-24T06:00:00Z is not after issued_at 2026-11-24T06:00:00Z"
        ],
    );
    check(
        index(1, r.clone(), Some((r.clone(), 10_001))),
        expect!["invalid packages.checkout.candidate.rollout_basis_points: 10001 is above 10000"],
    );
    check(
        index(1, r.clone(), Some((r.clone(), 500))),
        expect!["invalid packages.checkout.version: 1.0.0 is listed twice"],
    );
    let mut unordered = index(1, r.clone(), None);
    let older = |v: &str| ReleaseRef {
        version: ReleaseVersion::parse(v).unwrap(),
        ..r.clone()
    };
    unordered
        .packages
        .values_mut()
        .for_each(|e| e.older = vec![older("0.1.0"), older("0.2.0")]);
    check(
        unordered,
        expect!["invalid packages.checkout.older: must be listed newest first, each version once"],
    );
    let mut empty = index(1, r.clone(), None);
    empty.packages.values_mut().for_each(|e| e.stable = None);
    check(
        empty,
        expect!["invalid packages.checkout.stable: the package lists no release"],
    );
}

#[test]
fn invalid_releases_are_refused() {
    let check = |release: Release, expect: Expect| {
        expect.assert_eq(&release.validate().unwrap_err().to_string())
    };
    let base = release("1.0.0", "index.html=1 app.js=2");
    check(
        Release {
            files: Files::new(),
            ..base.clone()
        },
        expect!["invalid files: a release holds at least one file"],
    );
    check(
        Release {
            routes: vec![],
            ..base.clone()
        },
        expect!["invalid routes: a release serves at least one route"],
    );
    let mut twice = base.clone();
    twice.routes.push(twice.routes[0].clone());
    check(twice, expect!["invalid routes[1].prefix: listed twice"]);
    let mut bad_fallback = base.clone();
    bad_fallback.routes[0].fallback = Some(RelPath::parse("spa.html").unwrap());
    check(
        bad_fallback,
        expect![[r#"invalid routes[0].fallback: "spa.html" is not one of the files"#]],
    );
    check(
        Release {
            source_revision: Some("a\nb".into()),
            ..base.clone()
        },
        expect!["invalid source_revision: must be 1 to 256 bytes without control characters"],
    );
    check(
        Release {
            files: files("A.js=1 a.js=2 index.html=3"),
            ..base.clone()
        },
        expect![[
            r#"paths "A.js" and "a.js" collide: equal after case folding and Unicode normalisation"#
        ]],
    );
    // An invalid release is never signed.
    assert!(
        Release {
            files: Files::new(),
            ..base
        }
        .sign(&[&key(1)])
        .is_err()
    );
}
