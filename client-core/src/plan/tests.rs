//! The planner as a table.

#![allow(clippy::unwrap_used)]

use expect_test::{Expect, expect};
use manifests::{Digest, HostRequirement, PackageId, Reason, ReleaseRef, ReleaseVersion};

use super::*;

const DAY: u64 = 24 * 3600;
const NOW: u64 = 1_800_000_000;

/// `name:priority:missing:size:opens:days_since_open` (days `-` for never).
fn candidate(spec: &str) -> Candidate {
    let f: Vec<&str> = spec.split(':').collect();
    Candidate {
        update: Update {
            package: PackageId::parse(f[0]).unwrap(),
            from: None,
            to: ReleaseRef {
                version: ReleaseVersion::parse("1.0.0").unwrap(),
                manifest: Digest::of(f[0].as_bytes()),
                requires: HostRequirement::any(),
                size_bytes: f[3].parse().unwrap(),
            },
            reason: Reason::Stable,
            priority: f[1].parse().unwrap(),
        },
        priority: f[1].parse().unwrap(),
        missing_bytes: f[2].parse().unwrap(),
        size_bytes: f[3].parse().unwrap(),
        opens: f[4].parse().unwrap(),
        last_opened_secs: match f[5] {
            "-" => 0,
            days => NOW - days.parse::<u64>().unwrap() * DAY,
        },
    }
}

#[track_caller]
fn check(conditions: &str, candidates: &[&str], expect: Expect) {
    let mut c = Conditions {
        network: Network::Wifi,
        metered: false,
        low_battery: false,
        free_space_bytes: 1 << 30,
        now_secs: NOW,
    };
    for word in conditions.split_whitespace() {
        match word {
            "cellular" => c.network = Network::Cellular,
            "offline" => c.network = Network::Offline,
            "metered" => c.metered = true,
            "low-battery" => c.low_battery = true,
            w if w.starts_with("free=") => c.free_space_bytes = w[5..].parse().unwrap(),
            w => panic!("unknown condition {w}"),
        }
    }
    let p = plan(candidates.iter().map(|s| candidate(s)).collect(), &c);
    let now: Vec<String> = p.now.iter().map(|c| c.update.package.to_string()).collect();
    let later: Vec<String> = p.later.iter().map(|(p, w)| format!("{p}:{w:?}")).collect();
    expect.assert_eq(&format!(
        "now [{}] later [{}]",
        now.join(" "),
        later.join(" ")
    ));
}

#[test]
fn wifi_fetches_everything_by_priority_then_use() {
    check(
        "",
        &[
            "a:0:10:10:5:1",
            "b:50:10:10:0:-",
            "c:0:10:10:9:2",
            "d:0:5:10:9:2",
        ],
        expect!["now [b d c a] later []"],
    );
}

#[test]
fn cellular_fetches_only_urgent_or_used_packages() {
    check(
        "cellular",
        &[
            "a:0:10:10:5:1",
            "b:90:10:10:0:-",
            "c:0:10:10:9:30",
            "d:0:0:10:0:-",
        ],
        expect!["now [d b a] later [c:Metered]"],
    );
    check(
        "metered",
        &["c:0:10:10:9:30"],
        expect!["now [] later [c:Metered]"],
    );
}

#[test]
fn low_battery_and_low_space_wait() {
    check(
        "low-battery",
        &["a:0:10:10:5:1", "c:0:10:10:9:30", "u:80:10:10:0:-"],
        expect!["now [u a] later [c:Battery]"],
    );
    check(
        "free=25",
        &["a:0:10:10:5:1", "big:0:20:20:5:1"],
        expect!["now [a] later [big:Space]"],
    );
}

#[test]
fn offline_waits_unless_nothing_needs_downloading() {
    check(
        "offline",
        &["a:0:10:10:5:1", "rollback:0:0:10:5:1"],
        expect!["now [rollback] later [a:Offline]"],
    );
}
