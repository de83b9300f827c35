//! Unit tests: one `check` helper per feature and many one-line cases.

use expect_test::{Expect, expect};

use crate::*;

fn path(p: &str) -> RelPath {
    RelPath::parse(p).unwrap()
}

fn outcome<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("{}: {e}", e.code()),
    }
}

#[track_caller]
fn check_path(input: &str, expect: Expect) {
    expect.assert_eq(&outcome(RelPath::parse(input)));
}

#[test]
fn plain_paths_pass() {
    check_path("index.html", expect![[r#"ok RelPath("index.html")"#]]);
    check_path(
        "assets/app.3f2a1b.js",
        expect![[r#"ok RelPath("assets/app.3f2a1b.js")"#]],
    );
    check_path("über/café.png", expect![[r#"ok RelPath("über/café.png")"#]]);
    check_path(".well-known/x", expect![[r#"ok RelPath(".well-known/x")"#]]);
    check_path("a/..b/c..", expect![[r#"ok RelPath("a/..b/c..")"#]]);
}

#[test]
fn escaping_paths_are_refused() {
    check_path(
        "",
        expect![[r#"invalid_path: invalid path "": empty path"#]],
    );
    check_path(
        "../x",
        expect![[r#"invalid_path: invalid path "../x": '..' segment is not allowed"#]],
    );
    check_path(
        "a/../../x",
        expect![[r#"invalid_path: invalid path "a/../../x": '..' segment is not allowed"#]],
    );
    check_path(
        "a/./b",
        expect![[r#"invalid_path: invalid path "a/./b": '.' segment is not allowed"#]],
    );
    check_path(
        "/etc/passwd",
        expect![[r#"invalid_path: invalid path "/etc/passwd": absolute path (leading '/')"#]],
    );
    check_path(
        "..\\x",
        expect![[r#"invalid_path: invalid path "..\\x": backslash is not allowed"#]],
    );
    check_path(
        "C:\\x",
        expect![[r#"invalid_path: invalid path "C:\\x": backslash is not allowed"#]],
    );
    check_path(
        "C:x",
        expect![[
            r#"invalid_path: invalid path "C:x": ':' is not allowed (drive letters, alternate streams)"#
        ]],
    );
    check_path(
        "a//b",
        expect![[r#"invalid_path: invalid path "a//b": empty segment ('//' or trailing '/')"#]],
    );
    check_path(
        "dir/",
        expect![[r#"invalid_path: invalid path "dir/": empty segment ('//' or trailing '/')"#]],
    );
    check_path(
        "a\0b",
        expect![[r#"invalid_path: invalid path "a\0b": control characters are not allowed"#]],
    );
    check_path(
        "a\nb",
        expect![[r#"invalid_path: invalid path "a\nb": control characters are not allowed"#]],
    );
    check_path(
        "cafe\u{301}.png",
        expect![[
            r#"invalid_path: invalid path "cafe\u{301}.png": not in Unicode normalisation form C"#
        ]],
    );
}

#[test]
fn path_lengths_are_bounded() {
    let long_segment = "a".repeat(256);
    assert_eq!(
        RelPath::parse(&long_segment).unwrap_err().code(),
        "invalid_path"
    );
    assert!(RelPath::parse(&"a".repeat(255)).is_ok());
    let deep = vec!["d"; 33].join("/");
    assert!(RelPath::parse(&deep).is_err());
    assert!(RelPath::parse(&vec!["d"; 32].join("/")).is_ok());
    let long = vec!["abcdefghi"; 103].join("/");
    assert!(long.len() > MAX_PATH_LEN);
    assert!(RelPath::parse(&long).is_err());
}

#[test]
fn non_utf8_names_are_refused() {
    expect![[r#"invalid_path: invalid path "caf�": not valid UTF-8"#]]
        .assert_eq(&outcome(RelPath::from_bytes(b"caf\x82")));
}

#[track_caller]
fn check_collisions_of(paths: &[&str], expect: Expect) {
    let paths: Vec<RelPath> = paths.iter().map(|p| path(p)).collect();
    expect.assert_eq(&outcome(check_collisions(&paths)));
}

#[test]
fn colliding_paths_are_refused() {
    check_collisions_of(&["a.js", "b.js", "dir/a.js"], expect!["ok ()"]);
    check_collisions_of(
        &["index.html", "index.html"],
        expect![[
            r#"path_collision: paths "index.html" and "index.html" collide: the same path twice"#
        ]],
    );
    check_collisions_of(
        &["A.js", "a.js"],
        expect![[
            r#"path_collision: paths "A.js" and "a.js" collide: equal after case folding and Unicode normalisation"#
        ]],
    );
    check_collisions_of(&["Dir/x", "dir/y"], expect!["ok ()"]);
    check_collisions_of(
        &["a", "a/b"],
        expect![[
            r#"path_collision: paths "a" and "a/b" collide: a file is also needed as a directory"#
        ]],
    );
    check_collisions_of(
        &["a/b", "A"],
        expect![[
            r#"path_collision: paths "a/b" and "A" collide: a file is also needed as a directory"#
        ]],
    );
    check_collisions_of(
        &["ÉTÉ.txt", "été.txt"],
        expect![[
            r#"path_collision: paths "ÉTÉ.txt" and "été.txt" collide: equal after case folding and Unicode normalisation"#
        ]],
    );
}

#[test]
fn path_parts() {
    let p = path("assets/js/app.3f2a1b.JS");
    assert_eq!(p.file_name(), "app.3f2a1b.JS");
    assert_eq!(p.parent(), "assets/js");
    assert_eq!(p.extension().as_deref(), Some("js"));
    assert_eq!(path("Makefile").extension(), None);
    assert_eq!(path(".env").extension(), None);
    assert_eq!(path("index.html").parent(), "");
}

#[track_caller]
fn check_id(input: &str, expect: Expect) {
    expect.assert_eq(&outcome(PackageId::parse(input)));
}

#[test]
fn names() {
    check_id("checkout", expect![[r#"ok PackageId("checkout")"#]]);
    check_id("my-app_2.web", expect![[r#"ok PackageId("my-app_2.web")"#]]);
    check_id(
        "",
        expect![[r#"invalid_id: invalid package id "": must not be empty"#]],
    );
    check_id(
        "Checkout",
        expect![[
            r#"invalid_id: invalid package id "Checkout": must start with a lowercase letter or a digit"#
        ]],
    );
    check_id(
        "-x",
        expect![[
            r#"invalid_id: invalid package id "-x": must start with a lowercase letter or a digit"#
        ]],
    );
    check_id(
        "a/b",
        expect![[
            r#"invalid_id: invalid package id "a/b": only a-z, 0-9, '.', '_' and '-' are allowed"#
        ]],
    );
    check_id(
        &"a".repeat(65),
        expect![[
            r#"invalid_id: invalid package id "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": longer than 64 bytes"#
        ]],
    );
    expect![[
        r#"invalid_id: invalid channel "Prod": must start with a lowercase letter or a digit"#
    ]]
    .assert_eq(&outcome(Channel::parse("Prod")));
}

#[test]
fn versions() {
    let check =
        |input: &str, expect: Expect| expect.assert_eq(&outcome(ReleaseVersion::parse(input)));
    check("1.4.0", expect!["ok ReleaseVersion(1.4.0)"]);
    check("2.0.0-rc.1", expect!["ok ReleaseVersion(2.0.0-rc.1)"]);
    check(
        "1.4",
        expect![[
            r#"invalid_version: invalid release version "1.4": unexpected end of input while parsing minor version number"#
        ]],
    );
    check(
        "1.4.0+build5",
        expect![[
            r#"invalid_version: invalid release version "1.4.0+build5": build metadata (+...) is not allowed"#
        ]],
    );
    check(
        "01.4.0",
        expect![[
            r#"invalid_version: invalid release version "01.4.0": invalid leading zero in major version number"#
        ]],
    );

    let host = |input: &str, expect: Expect| expect.assert_eq(&outcome(HostVersion::parse(input)));
    host(
        "5",
        expect!["ok HostVersion(Version { major: 5, minor: 0, patch: 0 })"],
    );
    host(
        "5.2",
        expect!["ok HostVersion(Version { major: 5, minor: 2, patch: 0 })"],
    );
    host(
        "5.2-beta.1",
        expect![[
            r#"ok HostVersion(Version { major: 5, minor: 2, patch: 0, pre: Prerelease("beta.1") })"#
        ]],
    );
    host(
        "5.2.1.9",
        expect![[
            r#"invalid_version: invalid host-app version "5.2.1.9": unexpected character '.' after patch version number"#
        ]],
    );
    host(
        "",
        expect![[r#"invalid_version: invalid host-app version "": empty"#]],
    );

    let req = HostRequirement::parse(">=5.2, <7").unwrap();
    assert!(req.matches(&HostVersion::parse("5.2").unwrap()));
    assert!(req.matches(&HostVersion::parse("6.9.9").unwrap()));
    assert!(!req.matches(&HostVersion::parse("5.1.9").unwrap()));
    assert!(!req.matches(&HostVersion::parse("7").unwrap()));
    assert_eq!(req.as_str(), ">=5.2, <7");
    assert!(HostRequirement::parse(" >=1").is_err());
    assert!(HostRequirement::parse("~>1").is_err());
}

#[test]
fn timestamps() {
    let check = |input: &str, expect: Expect| expect.assert_eq(&outcome(Timestamp::parse(input)));
    check("1970-01-01T00:00:00Z", expect!["ok Timestamp(0)"]);
    check("2026-11-24T06:33:36Z", expect!["ok Timestamp(1795502016)"]);
    check("2024-02-29T23:59:59Z", expect!["ok Timestamp(1709251199)"]);
    check(
        "2023-02-29T00:00:00Z",
        expect![[r#"invalid_field: invalid timestamp "2023-02-29T00:00:00Z": no such date"#]],
    );
    check(
        "2026-11-24T24:00:00Z",
        expect![[
            r#"invalid_field: invalid timestamp "2026-11-24T24:00:00Z": no such time of day"#
        ]],
    );
    check(
        "2026-11-24 06:33:36Z",
        expect![[
            r#"invalid_field: invalid timestamp "2026-11-24 06:33:36Z": expected YYYY-MM-DDTHH:MM:SSZ"#
        ]],
    );
    check(
        "2026-11-24T06:33:36+01:00",
        expect![[
            r#"invalid_field: invalid timestamp "2026-11-24T06:33:36+01:00": expected YYYY-MM-DDTHH:MM:SSZ"#
        ]],
    );
    check(
        "1969-12-31T23:59:59Z",
        expect![[r#"invalid_field: invalid timestamp "1969-12-31T23:59:59Z": year before 1970"#]],
    );
    for secs in [
        0,
        59,
        86_399,
        951_782_400,
        1_709_251_199,
        4_102_444_800,
        253_402_300_799,
    ] {
        let t = Timestamp::from_unix_secs(secs);
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t, "{t}");
    }
}

#[test]
fn mime_and_prefixes() {
    let mime = |input: &str, expect: Expect| expect.assert_eq(&outcome(MimeType::parse(input)));
    mime(
        "text/html; charset=utf-8",
        expect![[r#"ok MimeType("text/html; charset=utf-8")"#]],
    );
    mime(
        "image/svg+xml",
        expect![[r#"ok MimeType("image/svg+xml")"#]],
    );
    mime(
        "text/html\r\nSet-Cookie: a=b",
        expect![[
            r#"invalid_field: invalid mime "text/html\r\nSet-Cookie: a=b": only printable ASCII is allowed"#
        ]],
    );
    mime(
        "html",
        expect![[r#"invalid_field: invalid mime "html": expected type/subtype"#]],
    );

    let prefix = |input: &str, expect: Expect| expect.assert_eq(&outcome(UrlPrefix::parse(input)));
    prefix(
        "https://m.example.com/checkout/",
        expect![[r#"ok UrlPrefix("https://m.example.com/checkout/")"#]],
    );
    prefix(
        "http://127.0.0.1:8080/",
        expect![[r#"ok UrlPrefix("http://127.0.0.1:8080/")"#]],
    );
    prefix(
        "https://m.example.com/checkout",
        expect![[
            r#"invalid_field: invalid route prefix "https://m.example.com/checkout": path must end in '/'"#
        ]],
    );
    prefix(
        "https://M.example.com/",
        expect![[
            r#"invalid_field: invalid route prefix "https://M.example.com/": host must be lower-case letters, digits, '-' and '.'"#
        ]],
    );
    prefix(
        "https://user@m.example.com/",
        expect![[
            r#"invalid_field: invalid route prefix "https://user@m.example.com/": host must be lower-case letters, digits, '-' and '.'"#
        ]],
    );
    prefix(
        "ftp://m.example.com/",
        expect![[
            r#"invalid_field: invalid route prefix "ftp://m.example.com/": must start with https:// or http://"#
        ]],
    );
    prefix(
        "https://m.example.com/a/../",
        expect![[
            r#"invalid_field: invalid route prefix "https://m.example.com/a/../": path must not hold empty, '.' or '..' segments"#
        ]],
    );
    prefix(
        "https://m.example.com/a%2f/",
        expect![[
            r#"invalid_field: invalid route prefix "https://m.example.com/a%2f/": path may hold only letters, digits and -._~!$&'()*+,;=:@/ (no '%', '?', '#')"#
        ]],
    );
    prefix(
        "https://m.example.com:0/",
        expect![[
            r#"invalid_field: invalid route prefix "https://m.example.com:0/": port must be between 1 and 65535"#
        ]],
    );
    let p = UrlPrefix::parse("https://m.example.com/checkout/").unwrap();
    assert_eq!(
        (p.scheme(), p.without_scheme()),
        ("https", "m.example.com/checkout/")
    );
}

#[track_caller]
fn check_canonical(input: &str, expect: Expect) {
    let got = match canonicalize(input.as_bytes()) {
        Ok(bytes) => String::from_utf8(bytes).unwrap(),
        Err(e) => format!("{}: {e}", e.code()),
    };
    expect.assert_eq(&got);
}

#[test]
fn canonical_json() {
    check_canonical(
        r#" { "b" : 1, "a" : [ true, null, "x" ] } "#,
        expect![[r#"{"a":[true,null,"x"],"b":1}"#]],
    );
    check_canonical(
        r#"{"a":{"d":1,"c":{}}}"#,
        expect![[r#"{"a":{"c":{},"d":1}}"#]],
    );
    let escaped = canonicalize(br#""\u00e9\u2028\/\u001f\u007f\b\t\n\f\r\"\\""#).unwrap();
    assert_eq!(
        escaped,
        "\"\u{e9}\u{2028}/\\u001f\u{7f}\\b\\t\\n\\f\\r\\\"\\\\\"".as_bytes()
    );
    check_canonical(
        "-0",
        expect![
            "invalid_json: invalid JSON at line 1, column 2: number -0 is not an integer within ±(2^53 - 1) (fractions and exponents are not allowed)"
        ],
    );
    check_canonical("9007199254740991", expect!["9007199254740991"]);
    check_canonical(
        "9007199254740992",
        expect![
            "invalid_json: invalid JSON at line 1, column 16: integer 9007199254740992 is beyond 2^53 - 1"
        ],
    );
    check_canonical(
        "1.5",
        expect![
            "invalid_json: invalid JSON at line 1, column 3: number 1.5 is not an integer within ±(2^53 - 1) (fractions and exponents are not allowed)"
        ],
    );
    check_canonical(
        "1e2",
        expect![
            "invalid_json: invalid JSON at line 1, column 3: number 100 is not an integer within ±(2^53 - 1) (fractions and exponents are not allowed)"
        ],
    );
    check_canonical(
        r#"{"a":1,"a":2}"#,
        expect![[r#"invalid_json: invalid JSON at line 1, column 10: duplicate key "a""#]],
    );
    check_canonical(
        r#"{"a":1} x"#,
        expect!["invalid_json: invalid JSON at line 1, column 9: trailing characters"],
    );
    check_canonical(
        r#""\ud800""#,
        expect!["invalid_json: invalid JSON at line 1, column 8: unexpected end of hex escape"],
    );
}

#[test]
fn canonical_keys_sort_by_utf16_code_units() {
    // U+1F600 sorts after U+FF61 in UTF-8 byte order (F0.. > EF..) but before it in UTF-16,
    // where it is the surrogate pair D83D DE00.
    let bytes = canonicalize("{\"\u{FF61}\":2,\"\u{1F600}\":1,\"a\":3}".as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "{\"a\":3,\"\u{1F600}\":1,\"\u{FF61}\":2}"
    );
}

#[test]
fn rename_keys_drop_content_hashes() {
    let check = |p: &str, expect: Expect| expect.assert_eq(&rename_key(&path(p)));
    check("assets/index-4f9a2c1e.js", expect!["assets/index-*.js"]);
    check(
        "static/js/main.3f2a1b9c.chunk.js",
        expect!["static/js/main.*.chunk.js"],
    );
    check("assets/index-BxY7z9aQ.css", expect!["assets/index-*.css"]);
    check("vendor-abc123def456.js", expect!["vendor-*.js"]);
    check("swagger-ui-bundle.js", expect!["swagger-ui-bundle.js"]);
    check("pdf.worker.min.mjs", expect!["pdf.worker.min.mjs"]);
    check(
        "fonts/Roboto-Regular.woff2",
        expect!["fonts/Roboto-Regular.woff2"],
    );
    check("decade-cafe12.png", expect!["decade-*.png"]);
    check("data/image-YKVTEDFW.js", expect!["data/image-*.js"]);
    check("chunk-LICENSE.txt", expect!["chunk-LICENSE.txt"]);
}

#[track_caller]
fn check_events(json: &str, expect: Expect) {
    expect.assert_eq(&outcome(
        parse_event_batch(json.as_bytes()).map(|b| b.events.len()),
    ));
}

#[test]
fn event_batches() {
    let ok = r#"{"app":"shop","channel":"production","events":[
        {"package":"checkout","version":"1.0.0","kind":"installed"},
        {"package":"checkout","version":"1.0.0","kind":"opens","count":10,"offline_hits":9,"under_1s":8}]}"#;
    check_events(ok, expect!["ok 2"]);
    let keyed = |device: &str| {
        format!(
            r#"{{"app":"shop","channel":"production","ingest_key":"bik_00","device_id":{device},"events":[
            {{"package":"checkout","version":"1.0.0","kind":"failed"}}]}}"#
        )
    };
    check_events(&keyed(r#""d-1""#), expect!["ok 1"]);
    // 128 characters, 256 bytes: JSON Schema's maxLength counts characters, and so does the rule.
    check_events(&keyed(&format!("{:?}", "é".repeat(128))), expect!["ok 1"]);
    check_events(
        &keyed(&format!("{:?}", "d".repeat(129))),
        expect!["invalid_field: invalid device_id: must be 1 to 128 characters"],
    );
    check_events(
        &keyed(r#""""#),
        expect!["invalid_field: invalid device_id: must be 1 to 128 characters"],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[]}"#,
        expect!["invalid_field: invalid events: must hold 1 to 1000 events"],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"opens","count":2,"offline_hits":3}]}"#,
        expect!["invalid_field: invalid events[0].offline_hits: more than the opens counted"],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"failed","under_1s":1}]}"#,
        expect![
            "invalid_field: invalid events[0].kind: only opens carry offline_hits, under_1s and paint_ms"
        ],
    );
    // Paint times: up to 11 buckets, counting no more opens than the event.
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"opens","count":5,"paint_ms":[1,2,0,2]}]}"#,
        expect!["ok 1"],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"opens","count":4,"paint_ms":[1,2,0,2]}]}"#,
        expect!["invalid_field: invalid events[0].paint_ms: counts more opens than the event"],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"opens","count":5,"paint_ms":[0,0,0,0,0,0,0,0,0,0,0,1]}]}"#,
        expect!["invalid_field: invalid events[0].paint_ms: has more than 11 buckets"],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"opens","count":5,"paint_ms":[18446744073709551615,1]}]}"#,
        expect!["invalid_field: invalid events[0].paint_ms: counts more opens than the event"],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"ready","paint_ms":[1]}]}"#,
        expect![
            "invalid_field: invalid events[0].kind: only opens carry offline_hits, under_1s and paint_ms"
        ],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"exploded"}]}"#,
        expect![[
            r#"schema: events field events[0].kind: unknown variant `exploded`, expected one of `installed`, `activated`, `ready`, `failed`, `rolled_back`, `opens`"#
        ]],
    );
    check_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"opens","count":0}]}"#,
        expect!["invalid_field: invalid events[0].count: must be 1 to 1000000"],
    );
}

/// A batch is read as JSON Schema reads JSON: a whole number is an integer however it is
/// written, and unknown fields are ignored whatever they hold; a fraction where a count belongs
/// and a duplicate key are still refused.
#[test]
fn event_batches_read_numbers_as_json_schema_does() {
    let batch = |event: &str| {
        format!(
            r#"{{"app":"shop","channel":"production","extra":[0.5,1e300,-7],"events":[{event}]}}"#
        )
    };
    let event = r#"{"package":"checkout","version":"1.0.0","kind":"opens","count":12.0,"offline_hits":1.2e1,"under_1s":0,"note":0.25}"#;
    assert_eq!(
        parse_event_batch(batch(event).as_bytes())
            .ok()
            .map(|b| (b.events[0].count, b.events[0].offline_hits)),
        Some((12, 12))
    );
    check_events(
        &batch(r#"{"package":"checkout","version":"1.0.0","kind":"opens","count":1.5}"#),
        expect![[
            r#"schema: events field events[0].count: invalid type: floating point `1.5`, expected u64"#
        ]],
    );
    check_events(
        &batch(r#"{"package":"checkout","version":"1.0.0","kind":"opens","count":-1.0}"#),
        expect![[
            r#"schema: events field events[0].count: invalid value: integer `-1`, expected u64"#
        ]],
    );
    check_events(
        &batch(r#"{"package":"checkout","version":"1.0.0","kind":"installed","kind":"opens"}"#),
        expect![[r#"invalid_json: invalid JSON at line 1, column 135: duplicate key "kind""#]],
    );
}

#[test]
fn signed_documents_still_refuse_numbers_that_are_not_canonical() {
    for text in ["1.0", "1e2", "9007199254740992", "[0.5]"] {
        assert!(parse_strict(text.as_bytes()).is_err(), "{text}");
    }
}

fn package_entry(prefetch: Prefetch) -> PackageEntry {
    PackageEntry {
        priority: 90,
        prefetch,
        stable: Some(ReleaseRef {
            version: ReleaseVersion::parse("1.0.0").unwrap(),
            manifest: Digest::of(b"m"),
            requires: HostRequirement::any(),
            size_bytes: 1,
        }),
        candidate: None,
        older: Vec::new(),
    }
}

#[test]
fn the_default_prefetch_policy_is_left_out() {
    let keys = |prefetch| {
        let value = serde_json::to_value(package_entry(prefetch)).unwrap();
        let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        (keys.join(","), value["prefetch"].clone())
    };
    expect![[r#"("priority,stable", Null)"#]].assert_eq(&format!("{:?}", keys(Prefetch::Always)));
    expect![[r#"("prefetch,priority,stable", String("wifi_only"))"#]]
        .assert_eq(&format!("{:?}", keys(Prefetch::WifiOnly)));
    expect![[r#"("prefetch,priority,stable", String("on_first_use"))"#]]
        .assert_eq(&format!("{:?}", keys(Prefetch::OnFirstUse)));
    let read: PackageEntry =
        serde_json::from_str(r#"{"priority":90,"stable":{"version":"1.0.0","manifest":"62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a","requires":"*","size_bytes":1}}"#)
            .unwrap();
    assert_eq!(read, package_entry(Prefetch::Always));
}

#[test]
fn prefetch_policies_parse_by_name_only() {
    for name in Prefetch::NAMES {
        let policy = Prefetch::parse(name).unwrap();
        assert_eq!(policy.as_str(), name);
        assert_eq!(
            serde_json::to_value(policy).unwrap(),
            serde_json::Value::from(name)
        );
    }
    expect![[r#"invalid_field: invalid prefetch: "wifi-only" is not a policy; expected always, wifi_only or on_first_use"#]]
        .assert_eq(&outcome(Prefetch::parse("wifi-only")));
    expect![[r#"invalid_field: invalid prefetch: "unknown" is not a policy; expected always, wifi_only or on_first_use"#]]
        .assert_eq(&outcome(Prefetch::parse("unknown")));
    expect![[r#"ok Unknown"#]].assert_eq(&outcome(
        serde_json::from_str::<Prefetch>(r#""charging_only""#).map_err(|e| Error::InvalidField {
            field: "prefetch".into(),
            reason: e.to_string(),
        }),
    ));
}

#[test]
fn url_prefixes_know_their_origin_and_which_others_they_overlap() {
    let p = |s: &str| UrlPrefix::parse(s).unwrap();
    assert_eq!(
        p("https://m.example.com/checkout/").origin(),
        "https://m.example.com"
    );
    assert_eq!(
        p("http://m.example.com:8080/").origin(),
        "http://m.example.com:8080"
    );
    let checkout = p("https://m.example.com/checkout/");
    for (other, overlaps) in [
        ("https://m.example.com/checkout/pay/", true),
        ("https://m.example.com/", true),
        ("http://m.example.com/checkout/", true),
        ("https://m.example.com/checkout-b/", false),
        ("https://m.example.com/check/", false),
        ("https://pay.example.com/checkout/", false),
        ("https://m.example.com:8443/checkout/", false),
    ] {
        assert_eq!(checkout.overlaps(&p(other)), overlaps, "{other}");
        assert_eq!(p(other).overlaps(&checkout), overlaps, "{other}");
    }
    crate::check_origin("https://m.example.com").unwrap();
    crate::check_origin("http://localhost:8080").unwrap();
    for bad in [
        "https://m.example.com/",
        "https://m.example.com/x",
        "ftp://m.example.com",
        "https://M.example.com",
        "m.example.com",
    ] {
        assert_eq!(
            crate::check_origin(bad).unwrap_err().code(),
            "invalid_field",
            "{bad}"
        );
    }
}
