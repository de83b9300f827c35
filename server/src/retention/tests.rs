use expect_test::{Expect, expect};
use manifests::{AppId, Channel};

use super::*;
use crate::meta_store::{HistoryMention, ReleaseFact};

const DAY: u64 = 24 * 3600;
const NOW: u64 = 1_800_000_000;

fn at(days_ago: u64) -> Timestamp {
    Timestamp::from_unix_secs(NOW - days_ago * DAY)
}

fn key(name: &str) -> (PackageId, ReleaseVersion) {
    let (package, version) = name.split_once('@').unwrap();
    (
        PackageId::parse(package).unwrap(),
        ReleaseVersion::parse(version).unwrap(),
    )
}

/// The facts a collection reads, built up in a test.
#[derive(Default)]
struct World(RetentionFacts);

impl World {
    /// `name` (`package@version`) published `days_ago`.
    fn release(mut self, name: &str, days_ago: u64) -> World {
        let (package, version) = key(name);
        self.0.releases.push(ReleaseFact {
            manifest_digest: Digest::of(name.as_bytes()),
            package,
            version,
            created_at: at(days_ago),
            size_bytes: 100,
            file_count: 2,
        });
        self
    }

    /// A change on `channel` of `package` from `from` to `to` (`-` for none), `days_ago`; add
    /// them oldest first.
    fn change(
        mut self,
        channel: &str,
        package: &str,
        from: &str,
        to: &str,
        days_ago: u64,
    ) -> World {
        let version = |v: &str| (v != "-").then(|| ReleaseVersion::parse(v).unwrap());
        self.0.history.insert(
            0,
            HistoryMention {
                app: AppId::parse("shop").unwrap(),
                channel: Channel::parse(channel).unwrap(),
                package: PackageId::parse(package).unwrap(),
                from_version: version(from),
                to_version: version(to),
                at: at(days_ago),
            },
        );
        self
    }

    /// A channel's current index entry names `name`.
    fn named(mut self, name: &str) -> World {
        self.0.named.push(key(name));
        self
    }

    /// A pack of `package` from `from` (`-`: full) to `to`.
    fn pack(mut self, package: &str, from: &str, to: &str) -> World {
        self.0.packs.push(PackFact {
            package: PackageId::parse(package).unwrap(),
            from: (from != "-").then(|| ReleaseVersion::parse(from).unwrap()),
            to: ReleaseVersion::parse(to).unwrap(),
            digest: Digest::of(format!("{package}{from}{to}").as_bytes()),
            size_bytes: 10,
        });
        self
    }
}

fn policy(
    max_age_days: u64,
    dev_max_age_days: u64,
    history_depth: u64,
    keep_last: u64,
) -> Retention {
    Retention {
        max_age_secs: max_age_days * DAY,
        dev_max_age_secs: dev_max_age_days * DAY,
        history_depth,
        keep_last,
    }
}

#[track_caller]
fn check(world: World, policy: Retention, expect: Expect) {
    let plan = plan(&world.0, &policy, Timestamp::from_unix_secs(NOW));
    let mut out = String::new();
    for e in &plan.expired {
        let seen = e.last_on_channel_at.map_or_else(
            || "never on a channel".to_owned(),
            |t| format!("on a channel {} days ago", (NOW - t.unix_secs()) / DAY),
        );
        let dev = if e.dev_build { ", dev build" } else { "" };
        out.push_str(&format!("go {}@{} ({seen}{dev})\n", e.package, e.version));
    }
    for p in &plan.packs {
        let from = p
            .from
            .as_ref()
            .map_or_else(String::new, |f| format!("{f}.."));
        out.push_str(&format!("go pack {}@{from}{}\n", p.package, p.to));
    }
    out.push_str(&format!("kept {}", plan.kept));
    expect.assert_eq(&out);
}

#[test]
fn a_release_on_no_channel_goes_once_older_than_the_max_age() {
    let world = World::default()
        .release("checkout@3.0.0", 1)
        .release("checkout@1.0.0", 31)
        .release("checkout@2.0.0", 29)
        .release("checkout@1.5.0", 30);
    check(
        world,
        policy(30, 7, 10, 1),
        expect![[r#"
            go checkout@1.0.0 (never on a channel)
            go checkout@1.5.0 (never on a channel)
            kept 2"#]],
    );
}

#[test]
fn dev_builds_go_after_their_shorter_max_age() {
    let world = World::default()
        .release("checkout@1.0.0", 40)
        .release("checkout@0.0.0-dev.1", 8)
        .release("checkout@0.0.0-dev.2", 6)
        .release("checkout@2.0.0-beta-dev.3", 8)
        .release("checkout@1.1.0", 8);
    check(
        world,
        policy(365, 7, 10, 1),
        expect![[r#"
            go checkout@0.0.0-dev.1 (never on a channel, dev build)
            kept 4"#]],
    );
}

#[test]
fn what_the_channels_name_now_stays_whatever_its_age() {
    // Stable, candidate and an older release kept for old hosts are all in the entry.
    let world = World::default()
        .release("checkout@1.0.0", 400)
        .release("checkout@1.1.0", 300)
        .release("checkout@1.2.0", 200)
        .release("checkout@1.3.0", 100)
        .named("checkout@1.0.0")
        .named("checkout@1.2.0")
        .named("checkout@1.3.0");
    check(
        world,
        policy(30, 7, 0, 1),
        expect![[r#"
            go checkout@1.1.0 (never on a channel)
            kept 3"#]],
    );
}

#[test]
fn the_last_releases_each_channel_held_stay() {
    let world = World::default()
        .release("checkout@1.0.0", 400)
        .release("checkout@1.1.0", 400)
        .release("checkout@1.2.0", 400)
        .release("checkout@1.3.0", 400)
        .release("checkout@1.4.0", 400)
        .change("production", "checkout", "-", "1.0.0", 390)
        .change("production", "checkout", "1.0.0", "1.1.0", 380)
        .change("production", "checkout", "1.1.0", "1.2.0", 370)
        // A rollout and its share changes name the candidate once.
        .change("production", "checkout", "-", "1.4.0", 360)
        .change("production", "checkout", "1.4.0", "1.4.0", 359)
        .change("production", "checkout", "1.4.0", "1.2.0", 358)
        .change("staging", "checkout", "-", "1.0.0", 350)
        .named("checkout@1.2.0")
        .named("checkout@1.0.0");
    check(
        world,
        policy(30, 7, 2, 1),
        expect![[r#"
            go checkout@1.1.0 (on a channel 370 days ago)
            go checkout@1.3.0 (never on a channel)
            kept 3"#]],
    );
    // Depth 0 keeps only what the channels name now (and the highest version).
    let world = World::default()
        .release("checkout@1.0.0", 400)
        .release("checkout@1.1.0", 400)
        .release("checkout@1.2.0", 400)
        .change("production", "checkout", "1.0.0", "1.1.0", 380)
        .named("checkout@1.1.0");
    check(
        world,
        policy(30, 7, 0, 1),
        expect![[r#"
            go checkout@1.0.0 (on a channel 380 days ago)
            kept 2"#]],
    );
}

#[test]
fn the_highest_versions_of_each_package_stay() {
    let world = World::default()
        .release("checkout@1.0.0", 100)
        .release("checkout@1.10.0", 100)
        .release("checkout@1.9.0", 100)
        .release("checkout@1.2.0", 100)
        .release("cart@0.1.0", 100);
    check(
        world,
        policy(30, 7, 10, 2),
        expect![[r#"
            go checkout@1.0.0 (never on a channel)
            go checkout@1.2.0 (never on a channel)
            kept 3"#]],
    );
}

#[test]
fn the_age_counts_from_the_last_time_a_channel_held_the_release() {
    let world = World::default()
        .release("checkout@1.0.0", 400)
        .release("checkout@1.1.0", 400)
        .release("checkout@1.2.0", 400)
        .release("checkout@9.0.0", 1)
        .change("production", "checkout", "-", "1.0.0", 390)
        .change("production", "checkout", "1.0.0", "1.1.0", 40)
        .change("production", "checkout", "1.1.0", "1.2.0", 10)
        .named("checkout@1.2.0");
    check(
        world,
        policy(30, 7, 0, 1),
        expect![[r#"
            go checkout@1.0.0 (on a channel 40 days ago)
            kept 3"#]],
    );
}

#[test]
fn packs_to_or_from_a_removed_release_go_with_it() {
    let world = World::default()
        .release("checkout@1.0.0", 100)
        .release("checkout@1.1.0", 100)
        .release("checkout@1.2.0", 1)
        .named("checkout@1.1.0")
        .pack("checkout", "-", "1.0.0")
        .pack("checkout", "-", "1.1.0")
        .pack("checkout", "1.0.0", "1.1.0")
        .pack("checkout", "1.1.0", "1.2.0")
        .pack("checkout", "1.0.0", "1.2.0");
    check(
        world,
        policy(30, 7, 10, 1),
        expect![[r#"
            go checkout@1.0.0 (never on a channel)
            go pack checkout@1.0.0
            go pack checkout@1.0.0..1.1.0
            go pack checkout@1.0.0..1.2.0
            kept 2"#]],
    );
}

#[test]
fn a_max_age_of_zero_lets_go_of_everything_no_other_rule_keeps() {
    let world = World::default()
        .release("checkout@1.0.0", 0)
        .release("checkout@1.1.0", 0)
        .release("checkout@1.2.0", 0)
        .change("production", "checkout", "1.0.0", "1.1.0", 0)
        .named("checkout@1.1.0");
    check(
        world,
        policy(0, 0, 0, 1),
        expect![[r#"
            go checkout@1.0.0 (on a channel 0 days ago)
            kept 2"#]],
    );
}

#[test]
fn dev_builds_are_named_by_a_dev_pre_release_identifier() {
    for (version, dev) in [
        ("0.0.0-dev.1700000000000", true),
        ("1.2.0-beta-dev.1700000000000", true),
        ("1.2.0-dev", true),
        ("1.2.0-rc.1.dev", true),
        ("1.2.0", false),
        ("1.2.0-devel.1", false),
        ("1.2.0-beta.1", false),
    ] {
        assert_eq!(
            is_dev_build(&ReleaseVersion::parse(version).unwrap()),
            dev,
            "{version}"
        );
    }
}

#[test]
fn bad_policy_values_are_refused_naming_the_field() {
    let refusal = |p: Retention| p.check().unwrap_err().to_string();
    assert!(Retention::default().check().is_ok());
    let ok = Retention {
        max_age_secs: 0,
        dev_max_age_secs: MAX_AGE_LIMIT_SECS,
        history_depth: 0,
        keep_last: MAX_KEPT,
    };
    assert!(ok.check().is_ok());
    expect![[r#"keep_last 0: keep from 1 to 10000 releases of each package: the highest version is always kept, since a publish takes its routes and defaults from it"#]]
        .assert_eq(&refusal(Retention {
            keep_last: 0,
            ..Retention::default()
        }));
    expect![[r#"keep_last 10001: keep from 1 to 10000 releases of each package: the highest version is always kept, since a publish takes its routes and defaults from it"#]]
        .assert_eq(&refusal(Retention {
            keep_last: 10_001,
            ..Retention::default()
        }));
    expect![[r#"history_depth 10001: keep from 0 to 10000 releases of each channel's history"#]]
        .assert_eq(&refusal(Retention {
            history_depth: 10_001,
            ..Retention::default()
        }));
    expect![[r#"max_age_secs 2592000000: a maximum age is at most ten years, 315360000 seconds (was it given in milliseconds?)"#]]
        .assert_eq(&refusal(Retention {
            max_age_secs: 2_592_000_000,
            ..Retention::default()
        }));
    expect![[r#"dev_max_age_secs 315360001: a maximum age is at most ten years, 315360000 seconds (was it given in milliseconds?)"#]]
        .assert_eq(&refusal(Retention {
            dev_max_age_secs: MAX_AGE_LIMIT_SECS + 1,
            ..Retention::default()
        }));
}

#[test]
fn retention_decides_without_io_or_a_clock() {
    // The time comes in as an argument and the facts from the metadata store.
    let source = include_str!("../retention.rs");
    for forbidden in [
        "std::fs",
        "tokio",
        "SystemTime",
        "Instant",
        "service::now",
        "async ",
    ] {
        assert!(!source.contains(forbidden), "retention.rs uses {forbidden}");
    }
}
