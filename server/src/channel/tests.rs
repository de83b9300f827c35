//! The channel state machine as a table.

use expect_test::{Expect, expect};
use manifests::ReleaseVersion;

use super::{Action, apply};
use crate::meta_store::ChannelPackage;

fn v(s: &str) -> ReleaseVersion {
    ReleaseVersion::parse(s).unwrap()
}

/// State as `stable=1.0.0 candidate=1.1.0@2500 paused`.
fn state(spec: &str) -> ChannelPackage {
    let mut s = ChannelPackage::default();
    for part in spec.split_whitespace() {
        match part.split_once('=') {
            Some(("stable", x)) => s.stable = Some(v(x)),
            Some(("candidate", x)) => {
                let (version, bp) = x.split_once('@').unwrap();
                s.candidate = Some(v(version));
                s.rollout_basis_points = bp.parse().unwrap();
            }
            _ if part == "paused" => s.paused = true,
            _ => panic!("bad spec {part}"),
        }
    }
    s
}

fn show(s: &ChannelPackage) -> String {
    let mut out = format!(
        "stable={}",
        s.stable.as_ref().map_or("-".into(), ToString::to_string)
    );
    if let Some(c) = &s.candidate {
        out += &format!(" candidate={c}@{}", s.rollout_basis_points);
    }
    if s.paused {
        out += " paused";
    }
    out
}

#[track_caller]
fn check(before: &str, action: Action, expect: Expect) {
    let published = ["0.9.0", "1.0.0", "1.1.0", "1.2.0"];
    let previous = v("0.9.0");
    let got = match apply(
        &state(before),
        &action,
        |x| published.contains(&x.to_string().as_str()),
        Some(&previous),
    ) {
        Ok(after) => show(&after),
        Err(e) => format!("{}: {e}", e.code()),
    };
    expect.assert_eq(&got);
}

fn promote(x: &str) -> Action {
    Action::Promote { version: v(x) }
}
fn rollout(x: Option<&str>, basis_points: u16) -> Action {
    Action::Rollout {
        version: x.map(v),
        basis_points,
    }
}

#[test]
fn channel_actions() {
    check("", promote("1.0.0"), expect!["stable=1.0.0"]);
    check(
        "stable=1.0.0",
        promote("1.0.0"),
        expect!["conflict: 1.0.0 is already stable"],
    );
    check(
        "stable=1.0.0",
        promote("3.0.0"),
        expect!["not_found: release 3.0.0 not found"],
    );
    check(
        "stable=1.0.0 candidate=1.1.0@2500",
        promote("1.2.0"),
        expect!["stable=1.2.0"],
    );
    check(
        "stable=1.0.0 candidate=1.2.0@2500",
        promote("1.1.0"),
        expect!["stable=1.1.0 candidate=1.2.0@2500"],
    );

    check(
        "stable=1.0.0",
        rollout(Some("1.1.0"), 1000),
        expect!["stable=1.0.0 candidate=1.1.0@1000"],
    );
    check(
        "stable=1.0.0 candidate=1.1.0@1000",
        rollout(None, 3000),
        expect!["stable=1.0.0 candidate=1.1.0@3000"],
    );
    check(
        "stable=1.0.0 candidate=1.1.0@1000",
        rollout(Some("1.2.0"), 500),
        expect!["stable=1.0.0 candidate=1.2.0@500"],
    );
    check(
        "stable=1.0.0",
        rollout(None, 3000),
        expect!["conflict: no rollout in progress; name the version to roll out"],
    );
    check(
        "stable=1.0.0",
        rollout(Some("1.0.0"), 3000),
        expect!["conflict: 1.0.0 is already stable"],
    );
    check(
        "stable=1.0.0",
        rollout(Some("1.1.0"), 10_001),
        expect!["bad_request: rollout 10001 basis points is above 10000 (100 %)"],
    );
    check(
        "stable=1.0.0 candidate=1.1.0@1000 paused",
        rollout(None, 3000),
        expect!["conflict: the rollout is paused; resume it first"],
    );

    check(
        "stable=1.0.0 candidate=1.1.0@1000",
        Action::Pause,
        expect!["stable=1.0.0 candidate=1.1.0@1000 paused"],
    );
    check(
        "stable=1.0.0 candidate=1.1.0@1000 paused",
        Action::Pause,
        expect!["conflict: the rollout is already paused"],
    );
    check(
        "stable=1.0.0 candidate=1.1.0@1000 paused",
        Action::Resume,
        expect!["stable=1.0.0 candidate=1.1.0@1000"],
    );
    check(
        "stable=1.0.0",
        Action::Pause,
        expect!["conflict: no rollout in progress"],
    );

    check(
        "stable=1.0.0 candidate=1.1.0@1000 paused",
        Action::Complete,
        expect!["stable=1.1.0"],
    );
    check(
        "stable=1.0.0",
        Action::Complete,
        expect!["conflict: no rollout in progress"],
    );

    check(
        "stable=1.0.0 candidate=1.1.0@1000",
        Action::Rollback { to: None },
        expect!["stable=1.0.0"],
    );
    check(
        "stable=1.0.0",
        Action::Rollback { to: None },
        expect!["stable=0.9.0"],
    );
    check(
        "stable=1.2.0 candidate=1.1.0@1000",
        Action::Rollback {
            to: Some(v("1.0.0")),
        },
        expect!["stable=1.0.0"],
    );
    check(
        "stable=1.0.0",
        Action::Rollback {
            to: Some(v("1.0.0")),
        },
        expect!["conflict: 1.0.0 is already stable"],
    );
}

#[test]
fn rollback_without_history_has_nowhere_to_go() {
    let err = apply(
        &state("stable=1.0.0"),
        &Action::Rollback { to: None },
        |_| true,
        None,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "no earlier stable release to roll back to");
}
