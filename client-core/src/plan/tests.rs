//! The planner as a table.

#![allow(clippy::unwrap_used)]

use expect_test::{Expect, expect};
use manifests::{Digest, HostRequirement, PackageId, Reason, ReleaseRef, ReleaseVersion};

use super::*;

const DAY: u64 = 24 * 3600;
const NOW: u64 = 1_800_000_000;

/// `name:priority:missing:size:opens:days_since_open[:policy][:installed]` (days `-` for never;
/// policy `wifi`, `first` or `newer`, a policy this code does not know).
fn candidate(spec: &str) -> Candidate {
    let f: Vec<&str> = spec.split(':').collect();
    let prefetch = match f.get(6).copied() {
        Some("wifi") => Prefetch::WifiOnly,
        Some("first") => Prefetch::OnFirstUse,
        Some("newer") => Prefetch::Unknown,
        _ => Prefetch::Always,
    };
    let from = (f.get(7) == Some(&"installed")).then(|| ReleaseVersion::parse("0.9.0").unwrap());
    Candidate {
        update: Update {
            package: PackageId::parse(f[0]).unwrap(),
            from,
            to: ReleaseRef {
                version: ReleaseVersion::parse("1.0.0").unwrap(),
                manifest: Digest::of(f[0].as_bytes()),
                requires: HostRequirement::any(),
                size_bytes: f[3].parse().unwrap(),
            },
            reason: Reason::Stable,
            priority: f[1].parse().unwrap(),
            prefetch,
        },
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
        free_space_bytes: 1 << 30,
        ..Conditions::unrestricted()
    };
    for word in conditions.split_whitespace() {
        match word {
            "cellular" => c.network = Network::Cellular,
            "offline" => c.network = Network::Offline,
            "metered" => c.metered = true,
            "background" => c.foreground = false,
            "low-power" => c.low_power_mode = true,
            w if w.starts_with("battery=") => {
                c.battery_percent = w[8..].parse().unwrap();
                c.charging = false;
            }
            w if w.starts_with("free=") => c.free_space_bytes = w[5..].parse().unwrap(),
            w => panic!("unknown condition {w}"),
        }
    }
    let p = plan(candidates.iter().map(|s| candidate(s)).collect(), &c, NOW);
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
        expect!["now [d b a] later [c:Wifi]"],
    );
    check(
        "metered",
        &["c:0:10:10:9:30"],
        expect!["now [] later [c:Wifi]"],
    );
}

#[test]
fn low_battery_and_low_space_wait() {
    check(
        "battery=15",
        &["a:0:10:10:5:1", "c:0:10:10:9:30", "u:80:10:10:0:-"],
        expect!["now [u a] later [c:Charge]"],
    );
    check(
        "battery=60 low-power",
        &["a:0:10:10:5:1", "c:0:10:10:9:30"],
        expect!["now [a] later [c:Charge]"],
    );
    check(
        "battery=21",
        &["c:0:10:10:9:30"],
        expect!["now [c] later []"],
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

#[test]
fn in_the_background_off_wifi_only_urgent_packages_go() {
    check(
        "cellular background",
        &["used:0:10:10:5:1", "urgent:90:10:10:0:-"],
        expect!["now [urgent] later [used:Wifi]"],
    );
}

#[test]
fn the_publishers_policy_is_followed() {
    check(
        "cellular",
        &["w:90:10:10:5:1:wifi", "first:0:10:10:0:-:first"],
        expect!["now [] later [w:Wifi first:FirstUse]"],
    );
    check(
        "",
        &[
            "w:0:10:10:5:1:wifi",
            "first:0:10:10:0:-:first",
            "opened:0:10:10:1:1:first",
        ],
        expect!["now [w opened] later [first:FirstUse]"],
    );
    // A policy newer than this code is treated as on first use: it may restrict downloads.
    check(
        "",
        &["newer:0:10:10:0:-:newer", "opened:0:10:10:1:1:newer"],
        expect!["now [opened] later [newer:FirstUse]"],
    );
    // A package already on the device follows its updates whatever its policy says.
    check(
        "",
        &["first:0:10:10:0:-:first:installed"],
        expect!["now [first] later []"],
    );
}

#[test]
fn off_wifi_a_budget_defers_lower_priorities() {
    let mb = 1024 * 1024;
    let big = |name: &str, priority: u8, mbs: u64| {
        format!("{name}:{priority}:{}:{}:5:1", mbs * mb, mbs * mb)
    };
    let specs = [
        big("high", 50, 15),
        big("low", 10, 10),
        big("small", 5, 4),
        big("urgent", 90, 30),
    ];
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    check(
        "cellular",
        &specs,
        expect!["now [urgent high small] later [low:Priority]"],
    );
    check("", &specs, expect!["now [urgent high low small] later []"]);
}
