use expect_test::{Expect, expect};
use proptest::prelude::*;

use super::*;

/// `pattern` with each `{name}` replaced by its value; every parameter must be used and every
/// placeholder filled.
#[track_caller]
fn fill(pattern: &str, params: &[(&str, &str)]) -> String {
    let mut path = pattern.to_owned();
    for (name, value) in params {
        let placeholder = format!("{{{name}}}");
        assert!(
            path.contains(&placeholder),
            "{pattern} has no {placeholder}"
        );
        path = path.replace(&placeholder, value);
    }
    assert!(
        !path.contains('{'),
        "{pattern}: unfilled placeholder in {path}"
    );
    path
}

fn app() -> AppId {
    AppId::parse("shop").unwrap()
}

fn channel() -> Channel {
    Channel::parse("production").unwrap()
}

fn package() -> PackageId {
    PackageId::parse("check.out_2-b").unwrap()
}

fn version(v: &str) -> ReleaseVersion {
    ReleaseVersion::parse(v).unwrap()
}

#[test]
fn every_builder_fills_its_pattern() {
    let digest = Digest::of(b"x");
    let (digest_text, from, to) = (digest.to_string(), version("1.4.0"), version("2.0.0-rc.1"));
    let cases = [
        (
            index_path(&app(), &channel()),
            fill(INDEX, &[("app", "shop"), ("channel", "production")]),
        ),
        (
            index_delta_path(&app(), &channel(), 42),
            fill(
                INDEX_DELTA,
                &[("app", "shop"), ("channel", "production"), ("from", "42")],
            ),
        ),
        (
            manifest_path(&digest),
            fill(MANIFEST, &[("digest", &digest_text)]),
        ),
        (blob_path(&digest), fill(BLOB, &[("digest", &digest_text)])),
        (
            full_pack_path(&package(), &to),
            fill(
                PACK,
                &[("package", "check.out_2-b"), ("name", "2.0.0-rc.1.zip")],
            ),
        ),
        (
            diff_pack_path(&package(), &from, &to),
            fill(
                PACK,
                &[
                    ("package", "check.out_2-b"),
                    ("name", "1.4.0..2.0.0-rc.1.zip"),
                ],
            ),
        ),
        (
            publish_path(&app(), &package()),
            fill(PUBLISH, &[("app", "shop"), ("package", "check.out_2-b")]),
        ),
        (
            releases_path(&package()),
            fill(RELEASES, &[("package", "check.out_2-b")]),
        ),
        (
            channel_change_path(&package(), &channel()),
            fill(
                CHANNEL_CHANGE,
                &[("package", "check.out_2-b"), ("channel", "production")],
            ),
        ),
        (
            history_path(&package(), &channel()),
            fill(
                HISTORY,
                &[("package", "check.out_2-b"), ("channel", "production")],
            ),
        ),
        (
            channel_state_path(&app(), &channel()),
            fill(CHANNEL_STATE, &[("app", "shop"), ("channel", "production")]),
        ),
        (
            stats_path(&app(), &channel()),
            fill(STATS, &[("app", "shop"), ("channel", "production")]),
        ),
    ];
    for (built, expected) in cases {
        assert_eq!(built, expected);
    }
}

#[test]
fn paths_without_parameters_are_plain() {
    for path in [EVENTS, HEALTHZ, METRICS, OPENAPI, AUDIT, GC] {
        assert_eq!(fill(path, &[]), path);
    }
}

#[track_caller]
fn check_name(name: &str, expect: Expect) {
    let outcome = match PackName::parse(name) {
        Ok(parsed) => {
            assert_eq!(parsed.to_string(), name, "does not round-trip");
            assert_eq!(name.parse::<PackName>().as_ref(), Ok(&parsed));
            format!(
                "ok from {:?} to {}",
                parsed.from().map(|v| v.to_string()),
                parsed.to()
            )
        }
        Err(e) => format!("{}: {e}", e.code()),
    };
    expect.assert_eq(&outcome);
}

#[test]
fn pack_files_name_their_container() {
    let outcome = |file: &str| match PackName::parse_file(file) {
        Ok((name, format)) => format!("{} {format:?}", name.file(format)),
        Err(e) => format!("{}: {e}", e.code()),
    };
    expect!["1.0.0..1.1.0.bpk Compact"].assert_eq(&outcome("1.0.0..1.1.0.bpk"));
    expect!["1.0.0.zip Zip"].assert_eq(&outcome("1.0.0.zip"));
    // Only the last suffix names the container.
    expect!["1.0.0-a.zip.bpk Compact"].assert_eq(&outcome("1.0.0-a.zip.bpk"));
    expect!["1.0.0-a.bpk.zip Zip"].assert_eq(&outcome("1.0.0-a.bpk.zip"));
    expect!["invalid_pack_name: invalid pack name \"1.0.0.tar\": expected {to}.zip or {from}..{to}.zip (or .bpk)"].assert_eq(&outcome("1.0.0.tar"));
    assert_eq!(
        compact_pack_path(
            &PackageId::parse("shop").unwrap(),
            &PackName::parse("1.0.0..1.1.0.zip").unwrap()
        ),
        "/v1/packs/shop/1.0.0..1.1.0.bpk"
    );
}

#[test]
fn pack_names_round_trip() {
    check_name("1.0.0.zip", expect![[r#"ok from None to 1.0.0"#]]);
    check_name(
        "1.0.0..1.1.0.zip",
        expect![[r#"ok from Some("1.0.0") to 1.1.0"#]],
    );
    check_name(
        "2.0.0-rc.1..2.0.0.zip",
        expect![[r#"ok from Some("2.0.0-rc.1") to 2.0.0"#]],
    );
    // A pre-release may end in `zip`: only the last `.zip` is the suffix.
    check_name(
        "1.0.0-a.zip.zip",
        expect![[r#"ok from None to 1.0.0-a.zip"#]],
    );
    // Order is the server's question: the grammar takes any two versions.
    check_name(
        "1.1.0..1.0.0.zip",
        expect![[r#"ok from Some("1.1.0") to 1.0.0"#]],
    );
}

#[test]
fn bad_pack_names_are_refused() {
    check_name(
        "1.0.0.tar",
        expect![[
            r#"invalid_pack_name: invalid pack name "1.0.0.tar": expected {to}.zip or {from}..{to}.zip (or .bpk)"#
        ]],
    );
    check_name(
        "",
        expect![[
            r#"invalid_pack_name: invalid pack name "": expected {to}.zip or {from}..{to}.zip (or .bpk)"#
        ]],
    );
    check_name(
        "one.zip",
        expect![[
            r#"invalid_version: invalid release version "one": unexpected character 'o' while parsing major version number"#
        ]],
    );
    check_name(
        ".zip",
        expect![[
            r#"invalid_version: invalid release version "": empty string, expected a semver version"#
        ]],
    );
    check_name(
        "..1.0.0.zip",
        expect![[
            r#"invalid_version: invalid release version "": empty string, expected a semver version"#
        ]],
    );
    check_name(
        "1.0.0...1.1.0.zip",
        expect![[
            r#"invalid_version: invalid release version ".1.1.0": unexpected character '.' while parsing major version number"#
        ]],
    );
    check_name(
        "1.0.0..1.1.0..1.2.0.zip",
        expect![[
            r#"invalid_version: invalid release version "1.1.0..1.2.0": unexpected character '.' after patch version number"#
        ]],
    );
    check_name(
        "1.0.0+build.zip",
        expect![[
            r#"invalid_version: invalid release version "1.0.0+build": build metadata (+...) is not allowed"#
        ]],
    );
    check_name(
        "1.0.0.ZIP",
        expect![[
            r#"invalid_pack_name: invalid pack name "1.0.0.ZIP": expected {to}.zip or {from}..{to}.zip (or .bpk)"#
        ]],
    );
}

fn any_version() -> impl Strategy<Value = ReleaseVersion> {
    (
        0u64..1000,
        0u64..1000,
        0u64..1000,
        proptest::option::of("[a-z0-9-]{1,8}(\\.[a-z0-9-]{1,8}){0,2}"),
    )
        .prop_filter_map("not a semver pre-release", |(major, minor, patch, pre)| {
            let text = match pre {
                Some(pre) => format!("{major}.{minor}.{patch}-{pre}"),
                None => format!("{major}.{minor}.{patch}"),
            };
            ReleaseVersion::parse(&text).ok()
        })
}

proptest! {
    #[test]
    fn every_pack_name_round_trips(from in proptest::option::of(any_version()), to in any_version()) {
        let name = match from {
            Some(from) => PackName::Diff { from, to },
            None => PackName::Full { to },
        };
        prop_assert_eq!(PackName::parse(&name.to_string()), Ok(name.clone()));
        for format in [PackFormat::Zip, PackFormat::Compact] {
            prop_assert_eq!(PackName::parse_file(&name.file(format)), Ok((name.clone(), format)));
        }
    }
}
