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
        None,
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
        None,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "no earlier stable release to roll back to");
}

fn entry(action: &str, before: Option<&str>) -> crate::meta_store::HistoryEntry {
    crate::meta_store::HistoryEntry {
        at: manifests::Timestamp::from_unix_secs(1_700_000_000),
        package: manifests::PackageId::parse("shop").unwrap(),
        action: action.into(),
        from_version: None,
        to_version: None,
        rollout_basis_points: None,
        actor: "tester".into(),
        reason: String::new(),
        sequence: 3,
        before: before.map(state),
    }
}

#[track_caller]
fn check_undo(now: &str, last: Option<crate::meta_store::HistoryEntry>, expect: Expect) {
    let published = ["1.0.0", "1.1.0"];
    let got = match apply(
        &state(now),
        &Action::Undo,
        |x| published.contains(&x.to_string().as_str()),
        None,
        last.as_ref(),
    ) {
        Ok(after) => show(&after),
        Err(e) => format!("{}: {e}", e.code()),
    };
    expect.assert_eq(&got);
}

#[test]
fn undo_restores_the_state_before_the_last_change() {
    // A promote that dropped a rollout comes back whole: stable, candidate, share and pause.
    check_undo(
        "stable=1.1.0",
        Some(entry(
            "promote",
            Some("stable=1.0.0 candidate=1.1.0@2500 paused"),
        )),
        expect!["stable=1.0.0 candidate=1.1.0@2500 paused"],
    );
    check_undo(
        "stable=1.0.0",
        Some(entry("rollback", Some("stable=1.0.0 candidate=1.1.0@500"))),
        expect!["stable=1.0.0 candidate=1.1.0@500"],
    );
    check_undo(
        "stable=1.0.0",
        None,
        expect!["conflict: nothing to undo: no change recorded"],
    );
    check_undo(
        "stable=1.0.0",
        Some(entry("promote", None)),
        expect![
            "conflict: the last change (promote at 2023-11-14T22:13:20Z) was recorded without the state before it, so it cannot be undone; name the action that restores it"
        ],
    );
    check_undo(
        "stable=1.1.0",
        Some(entry("promote", Some("stable=0.9.0"))),
        expect!["not_found: release 0.9.0 not found"],
    );
    check_undo(
        "stable=1.0.0",
        Some(entry("pause", Some("stable=1.0.0"))),
        expect!["conflict: undoing the last change (pause) would change nothing"],
    );
}
