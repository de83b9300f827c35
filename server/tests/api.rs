//! The HTTP API, through real HTTP against a real server: publish, serve, release, refuse.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use harness::{TestServer, build, request, zip, zip_build};
use manifests::{AppId, Channel, Digest, IndexScope, Timestamp, verify_index, verify_release};
use serde_json::json;
use server::meta_store::Scope;

const ROUTE: &str = "routes=https://m.example.com/checkout/";

fn scope(channel: &str) -> IndexScope {
    IndexScope {
        app: AppId::parse("shop").unwrap(),
        channel: Channel::parse(channel).unwrap(),
    }
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp::from_unix_secs(secs)
}

#[test]
fn a_published_release_is_served_signed_and_byte_exact() {
    let s = TestServer::start();
    let files = build("v1");
    let r = s.publish(
        &s.admin,
        "shop",
        "checkout",
        &format!("version=1.0.0&channel=production&{ROUTE}"),
        &zip_build(&files),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["sequence"], 1);

    // The index verifies with the server's key and names the release.
    let index = s.get("/v1/apps/shop/channels/production/index");
    assert_eq!(index.header("content-type"), Some("application/json"));
    assert_eq!(index.header("cache-control"), Some("public, max-age=60"));
    let verified = verify_index(&index.body, &s.trusted(), &scope("production"), now(), 0).unwrap();
    assert_eq!(
        index.header("etag").unwrap(),
        format!("\"{}\"", verified.digest)
    );
    let entry = &verified.index.packages[&manifests::PackageId::parse("checkout").unwrap()];
    let stable = entry.stable.as_ref().unwrap();
    assert_eq!(stable.version.to_string(), "1.0.0");

    // The manifest it names verifies against that digest and lists every file.
    let manifest = s.get(&format!("/v1/manifests/{}", stable.manifest));
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let release = verify_release(&manifest.body, &s.trusted(), Some(&stable.manifest))
        .unwrap()
        .release;
    assert_eq!(release.files.len(), files.len());
    assert_eq!(release.entry.as_str(), "index.html");
    assert_eq!(
        release.routes[0].prefix.as_str(),
        "https://m.example.com/checkout/"
    );
    assert_eq!(
        release.files[&manifests::RelPath::parse("app.js").unwrap()]
            .mime
            .as_str(),
        "text/javascript; charset=utf-8"
    );

    // Every blob comes back byte for byte.
    for (path, bytes) in &files {
        let entry = &release.files[&manifests::RelPath::parse(path).unwrap()];
        let blob = s.get(&format!("/v1/blobs/{}", entry.sha256));
        assert_eq!(blob.status, 200);
        assert_eq!(&blob.body, bytes, "{path}");
        assert_eq!(
            blob.header("etag").unwrap(),
            format!("\"{}\"", entry.sha256)
        );
        assert_eq!(blob.header("accept-ranges"), Some("bytes"));
    }
}

#[test]
fn conditional_range_and_head_requests() {
    let s = TestServer::start();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let r = s.publish(
        &s.admin,
        "shop",
        "checkout",
        &format!("version=1.0.0&channel=production&{ROUTE}"),
        &zip(&[("index.html", b"x"), ("big.bin", &big)]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let digest = Digest::of(&big);

    let index = s.get("/v1/apps/shop/channels/production/index");
    let etag = index.header("etag").unwrap().to_owned();
    let again = s.get_with(
        "/v1/apps/shop/channels/production/index",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let other = s.get_with(
        "/v1/apps/shop/channels/production/index",
        &[("If-None-Match", "\"nope\"")],
    );
    assert_eq!(other.status, 200);

    let blob = format!("/v1/blobs/{digest}");
    assert_eq!(
        s.get_with(&blob, &[("If-None-Match", &format!("\"{digest}\""))])
            .status,
        304
    );
    let part = s.get_with(&blob, &[("Range", "bytes=1000-1999")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 1000-1999/100000"));
    assert_eq!(part.body, &big[1000..2000]);
    let tail = s.get_with(&blob, &[("Range", "bytes=-10")]);
    assert_eq!((tail.status, tail.body.as_slice()), (206, &big[99_990..]));
    let open = s.get_with(&blob, &[("Range", "bytes=99999-")]);
    assert_eq!((open.status, open.body.as_slice()), (206, &big[99_999..]));
    let beyond = s.get_with(&blob, &[("Range", "bytes=100000-")]);
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */100000"));
    let multi = s.get_with(&blob, &[("Range", "bytes=0-1,5-6")]);
    assert_eq!((multi.status, multi.body.len()), (200, big.len()));

    let head = request(&s.base, "HEAD", &blob, &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("100000"));
    assert!(head.body.is_empty());
}

#[test]
fn unknown_things_are_404_with_a_json_error() {
    let s = TestServer::start();
    for path in [
        "/v1/apps/shop/channels/production/index".to_owned(),
        format!("/v1/blobs/{}", Digest::of(b"nothing")),
        format!("/v1/manifests/{}", Digest::of(b"nothing")),
        "/v1/blobs/not-a-digest".to_owned(),
        "/v1/no/such/route".to_owned(),
    ] {
        let r = s.get(&path);
        assert_eq!(
            (r.status, r.code()),
            (404, "not_found".to_owned()),
            "{path}"
        );
    }
    let r = s.get("/v1/apps/Shop/channels/production/index");
    assert_eq!((r.status, r.code()), (422, "invalid_id".to_owned()));
}

#[test]
fn releases_are_immutable_and_an_identical_publish_is_a_no_op() {
    let s = TestServer::start();
    let v1 = zip_build(&build("v1"));
    let query = format!("version=1.0.0&{ROUTE}");
    assert_eq!(
        s.publish(&s.admin, "shop", "checkout", &query, &v1).status,
        201
    );
    let same = s.publish(&s.admin, "shop", "checkout", &query, &v1);
    assert_eq!(same.status, 200, "{}", same.text());
    assert_eq!(same.json()["created"], false);

    let other = s.publish(
        &s.admin,
        "shop",
        "checkout",
        &query,
        &zip_build(&build("v2")),
    );
    assert_eq!((other.status, other.code()), (409, "conflict".to_owned()));
    assert!(
        other.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("immutable")
    );
    for (path, bytes) in build("v2") {
        let stored = s.get(&format!("/v1/blobs/{}", Digest::of(&bytes)));
        let in_v1 = build("v1").iter().any(|(_, b)| *b == bytes);
        assert_eq!(
            stored.status == 200,
            in_v1,
            "{path}: a refused publish stores no blob"
        );
    }

    // A package belongs to one app.
    let elsewhere = s.publish(&s.admin, "other-app", "checkout", "version=2.0.0", &v1);
    assert_eq!(
        (elsewhere.status, elsewhere.code()),
        (409, "conflict".to_owned())
    );
}

#[test]
fn later_releases_inherit_routes_and_the_first_needs_one() {
    let s = TestServer::start();
    let first = s.publish(
        &s.admin,
        "shop",
        "checkout",
        "version=1.0.0",
        &zip_build(&build("v1")),
    );
    assert_eq!(
        (first.status, first.code()),
        (422, "bad_request".to_owned())
    );
    assert!(first.text().contains("route"), "{}", first.text());
    assert!(s.blob_files().is_empty());

    let q = format!("version=1.0.0&requires=%3E%3D5.2%2C%20%3C7&spa=true&{ROUTE}");
    assert_eq!(
        s.publish(&s.admin, "shop", "checkout", &q, &zip_build(&build("v1")))
            .status,
        201
    );
    let r = s.publish(
        &s.admin,
        "shop",
        "checkout",
        "version=1.1.0&channel=production",
        &zip_build(&build("v2")),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let digest = r.json()["release"]["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest = s.get(&format!("/v1/manifests/{digest}"));
    let release = verify_release(&manifest.body, &s.trusted(), None)
        .unwrap()
        .release;
    assert_eq!(release.requires.as_str(), ">=5.2, <7");
    assert_eq!(
        release.routes[0].fallback.as_ref().map(|f| f.as_str()),
        Some("index.html")
    );
}

#[test]
fn bad_metadata_is_refused_and_nothing_is_stored() {
    let s = TestServer::start();
    let z = zip_build(&build("v1"));
    for (app, package, query, code) in [
        (
            "shop",
            "checkout",
            format!("version=1.0&{ROUTE}"),
            "invalid_version",
        ),
        (
            "shop",
            "checkout",
            format!("version=1.0.0+build&{ROUTE}"),
            "invalid_version",
        ),
        (
            "shop",
            "Check_Out",
            format!("version=1.0.0&{ROUTE}"),
            "invalid_id",
        ),
        (
            "Shop",
            "checkout",
            format!("version=1.0.0&{ROUTE}"),
            "invalid_id",
        ),
        (
            "shop",
            "checkout",
            "version=1.0.0&routes=ftp://x/".to_owned(),
            "invalid_field",
        ),
        (
            "shop",
            "checkout",
            format!("version=1.0.0&requires=~%3E1&{ROUTE}"),
            "invalid_version",
        ),
        (
            "shop",
            "checkout",
            format!("version=1.0.0&entry=missing.html&{ROUTE}"),
            "bad_request",
        ),
        (
            "shop",
            "checkout",
            format!("version=1.0.0&channel=Prod&{ROUTE}"),
            "invalid_id",
        ),
        ("shop", "checkout", ROUTE.to_owned(), "bad_request"),
        (
            "shop",
            "checkout",
            format!("version=1.0.0&prefetch=sometimes&{ROUTE}"),
            "invalid_field",
        ),
        (
            "shop",
            "checkout",
            format!("version=1.0.0&prefetch=unknown&{ROUTE}"),
            "invalid_field",
        ),
        (
            "shop",
            "checkout",
            format!("version=1.0.0&priority=256&{ROUTE}"),
            "bad_request",
        ),
    ] {
        let r = s.publish(&s.admin, app, package, &query, &z);
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, code),
            "{query}: {}",
            r.text()
        );
    }
    assert!(s.blob_files().is_empty());
    assert!(s.staging_files().is_empty());
    assert_eq!(
        s.admin_get("/v1/admin/packages/checkout/releases").status,
        404
    );
}

#[test]
fn hostile_or_broken_archives_are_refused_and_nothing_is_stored() {
    let s = TestServer::start();
    let query = format!("version=1.0.0&{ROUTE}");
    for (name, body) in [
        (
            "traversal",
            zip(&[("index.html", b"x"), ("../evil.js", b"x")]),
        ),
        (
            "absolute",
            zip(&[("index.html", b"x"), ("/etc/passwd", b"x")]),
        ),
        (
            "case collision",
            zip(&[("index.html", b"x"), ("A.js", b"1"), ("a.js", b"2")]),
        ),
        ("not a zip", b"this is not a zip file".to_vec()),
        ("empty", Vec::new()),
    ] {
        let r = s.publish(&s.admin, "shop", "checkout", &query, &body);
        assert_eq!(r.status, 422, "{name}: {}", r.text());
        assert!(!r.code().is_empty(), "{name}");
    }
    assert!(s.blob_files().is_empty());
    assert!(s.staging_files().is_empty());
}

#[test]
fn an_oversized_upload_is_413_and_leaves_nothing() {
    let s = TestServer::start_with(|settings| settings.max_upload_bytes = 10_000);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..50_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let r = s.publish(
        &s.admin,
        "shop",
        "checkout",
        &format!("version=1.0.0&{ROUTE}"),
        &zip(&[("index.html", &noise)]),
    );
    assert_eq!((r.status, r.code()), (413, "too_large".to_owned()));
    assert!(s.blob_files().is_empty());
    assert!(s.staging_files().is_empty());
}

#[test]
fn a_client_hanging_up_mid_upload_stores_nothing() {
    use std::io::Write;
    let s = TestServer::start();
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /v1/admin/apps/shop/packages/checkout/releases?version=1.0.0&{ROUTE} HTTP/1.1\r\n\
         Host: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 1000000\r\n\r\n",
        s.admin
    )
    .unwrap();
    stream.write_all(&zip_build(&build("v1"))[..200]).unwrap();
    drop(stream);
    // The server notices the hang-up; poll until its upload dir is gone (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.staging_files().is_empty() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(s.staging_files().is_empty());
    assert!(s.blob_files().is_empty());
    assert_eq!(
        s.admin_get("/v1/admin/packages/checkout/releases").status,
        404
    );
}

#[test]
fn tokens_gate_every_write() {
    let s = TestServer::start();
    let z = zip_build(&build("v1"));
    let q = format!("version=1.0.0&{ROUTE}");
    let none = request(
        &s.base,
        "POST",
        &format!("/v1/admin/apps/shop/packages/checkout/releases?{q}"),
        &[],
        Some(&z),
    );
    assert_eq!((none.status, none.code()), (401, "unauthorized".to_owned()));
    let wrong = s.publish("baleen_0000", "shop", "checkout", &q, &z);
    assert_eq!(wrong.status, 401);

    let publisher = s.token("ci", Scope::Publish, Some("checkout"));
    // A token bound to one package never creates an app: app `shop` must exist first.
    let early = s.publish(&publisher, "shop", "checkout", &q, &z);
    assert_eq!((early.status, early.code()), (403, "forbidden".to_owned()));
    assert!(early.text().contains("create app shop"), "{}", early.text());
    let home = "version=1.0.0&routes=https://m.example.com/home/";
    assert_eq!(s.publish(&s.admin, "shop", "home", home, &z).status, 201);
    assert_eq!(
        s.publish(&publisher, "shop", "checkout", &q, &z).status,
        201
    );
    // Bound to one package, and no channel changes.
    let other = s.publish(&publisher, "shop", "search", &q, &z);
    assert_eq!((other.status, other.code()), (403, "forbidden".to_owned()));
    let promote = s.post_json(
        "/v1/admin/packages/checkout/channels/production",
        &publisher,
        &json!({"action": "promote", "version": "1.0.0"}),
    );
    assert_eq!(
        (promote.status, promote.code()),
        (403, "forbidden".to_owned())
    );
    let to_channel = s.publish(
        &publisher,
        "shop",
        "checkout",
        &format!("version=1.0.1&channel=production&{ROUTE}"),
        &z,
    );
    assert_eq!(to_channel.status, 403);
    assert_eq!(
        s.get("/v1/apps/shop/channels/production/index").status,
        404,
        "no index was made"
    );

    let releaser = s.token("release-eng", Scope::Release, None);
    let ok = s.post_json(
        "/v1/admin/packages/checkout/channels/production",
        &releaser,
        &json!({"action": "promote", "version": "1.0.0", "reason": "ship it"}),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let audit = request(
        &s.base,
        "GET",
        "/v1/admin/audit",
        &[("Authorization", &format!("Bearer {releaser}"))],
        None,
    );
    assert_eq!(audit.status, 403, "only admins read the audit log");

    let log = s.admin_get("/v1/admin/audit").json();
    let actions: Vec<(&str, &str)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["actor"].as_str().unwrap()))
        .filter(|(action, _)| !action.starts_with("token."))
        .collect();
    assert_eq!(
        &actions[..2],
        &[("promote", "release-eng"), ("publish", "ci")]
    );
}

#[test]
fn staged_rollout_complete_and_rollback_each_make_a_higher_signed_index() {
    let s = TestServer::start();
    for (i, v) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
        let channel = if i == 0 { "&channel=production" } else { "" };
        let r = s.publish(
            &s.admin,
            "shop",
            "checkout",
            &format!("version={v}{channel}&{ROUTE}"),
            &zip_build(&build(v)),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let checkout = manifests::PackageId::parse("checkout").unwrap();
    let mut seen = 0;
    let mut step =
        |body: serde_json::Value, expect_stable: &str, expect_candidate: Option<(&str, u16)>| {
            let r = s.change("checkout", "production", body.clone());
            assert_eq!(r.status, 200, "{body}: {}", r.text());
            let bytes = s.index_bytes("shop", "production");
            let verified =
                verify_index(&bytes, &s.trusted(), &scope("production"), now(), seen).unwrap();
            assert!(verified.index.sequence > seen, "sequence grows");
            seen = verified.index.sequence;
            let entry = &verified.index.packages[&checkout];
            assert_eq!(
                entry.stable.as_ref().unwrap().version.to_string(),
                expect_stable,
                "{body}"
            );
            let candidate = entry
                .candidate
                .as_ref()
                .map(|c| (c.release.version.to_string(), c.rollout_basis_points));
            assert_eq!(
                candidate,
                expect_candidate.map(|(v, bp)| (v.to_owned(), bp)),
                "{body}"
            );
            bytes
        };
    let first = step(
        json!({"action": "rollout", "version": "1.1.0", "basis_points": 1000}),
        "1.0.0",
        Some(("1.1.0", 1000)),
    );
    step(
        json!({"action": "rollout", "basis_points": 3000}),
        "1.0.0",
        Some(("1.1.0", 3000)),
    );
    step(json!({"action": "pause"}), "1.0.0", Some(("1.1.0", 3000)));
    let paused = s.change(
        "checkout",
        "production",
        json!({"action": "rollout", "basis_points": 6000}),
    );
    assert_eq!((paused.status, paused.code()), (409, "conflict".to_owned()));
    step(json!({"action": "resume"}), "1.0.0", Some(("1.1.0", 3000)));
    step(
        json!({"action": "complete", "reason": "healthy"}),
        "1.1.0",
        None,
    );
    step(
        json!({"action": "promote", "version": "1.2.0"}),
        "1.2.0",
        None,
    );
    step(
        json!({"action": "rollback", "reason": "crash on login"}),
        "1.1.0",
        None,
    );
    step(json!({"action": "rollback"}), "1.0.0", None);

    // A replay of the first index is refused by a device that has seen the latest.
    let err = verify_index(&first, &s.trusted(), &scope("production"), now(), seen).unwrap_err();
    assert_eq!(err.code(), "replay");

    let history = s
        .admin_get("/v1/admin/packages/checkout/channels/production/history")
        .json();
    let lines: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{} {}->{} {}",
                h["action"].as_str().unwrap(),
                h["from_version"].as_str().unwrap_or("-"),
                h["to_version"].as_str().unwrap_or("-"),
                h["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            "rollback 1.1.0->1.0.0 ",
            "rollback 1.2.0->1.1.0 crash on login",
            "promote 1.1.0->1.2.0 ",
            "complete 1.0.0->1.1.0 healthy",
            "resume 1.1.0->1.1.0 ",
            "pause 1.1.0->1.1.0 ",
            "rollout 1.1.0->1.1.0 ",
            "rollout -->1.1.0 ",
            "promote -->1.0.0 published",
        ]
    );
}

#[test]
fn bad_channel_requests_are_refused_and_change_nothing() {
    let s = TestServer::start();
    assert_eq!(
        s.publish(
            &s.admin,
            "shop",
            "checkout",
            &format!("version=1.0.0&channel=production&{ROUTE}"),
            &zip_build(&build("v1"))
        )
        .status,
        201
    );
    let before = s.index_bytes("shop", "production");
    for (package, body, status, code) in [
        (
            "checkout",
            json!({"action": "promote", "version": "9.9.9"}),
            404,
            "not_found",
        ),
        (
            "nope",
            json!({"action": "promote", "version": "1.0.0"}),
            404,
            "not_found",
        ),
        (
            "checkout",
            json!({"action": "rollout", "version": "1.0.0", "basis_points": 20_000}),
            422,
            "bad_request",
        ),
        (
            "checkout",
            json!({"action": "rollout", "basis_points": 100}),
            409,
            "conflict",
        ),
        ("checkout", json!({"action": "complete"}), 409, "conflict"),
        ("checkout", json!({"action": "explode"}), 422, "bad_request"),
        (
            "checkout",
            json!({"action": "promote", "version": "not-semver"}),
            422,
            "bad_request",
        ),
    ] {
        let r = s.change(package, "production", body.clone());
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{body}: {}",
            r.text()
        );
    }
    let malformed = request(
        &s.base,
        "POST",
        "/v1/admin/packages/checkout/channels/production",
        &[
            ("Authorization", &format!("Bearer {}", s.admin)),
            ("Content-Type", "application/json"),
        ],
        Some(b"{\"action\": "),
    );
    assert_eq!(
        (malformed.status, malformed.code()),
        (422, "bad_request".to_owned())
    );
    assert_eq!(
        s.index_bytes("shop", "production"),
        before,
        "the index did not change"
    );
}

#[test]
fn an_old_host_app_keeps_the_newest_release_it_can_run() {
    let s = TestServer::start();
    let publish = |v: &str, requires: &str| {
        let q = format!(
            "version={v}&channel=production&requires={}&{ROUTE}",
            requires
                .replace('>', "%3E")
                .replace('<', "%3C")
                .replace(' ', "%20")
                .replace(',', "%2C")
                .replace('=', "%3D")
        );
        let r = s.publish(&s.admin, "shop", "checkout", &q, &zip_build(&build(v)));
        assert_eq!(r.status, 201, "{}", r.text());
    };
    publish("1.0.0", ">=4");
    publish("1.1.0", ">=4");
    publish("2.0.0", ">=6");
    let bytes = s.index_bytes("shop", "production");
    let index = verify_index(&bytes, &s.trusted(), &scope("production"), now(), 0)
        .unwrap()
        .index;
    for (host, expect) in [("6.1", "2.0.0"), ("5.0", "1.1.0"), ("3.0", "none")] {
        let chosen = manifests::select_all(
            &index,
            &manifests::HostVersion::parse(host).unwrap(),
            "device-1",
        )
        .values()
        .next()
        .map(|s| s.release.version.to_string())
        .unwrap_or_else(|| "none".into());
        assert_eq!(chosen, expect, "host {host}");
    }
}

#[test]
fn indexes_are_re_signed_before_they_expire() {
    let s = TestServer::start_with(|settings| settings.index_ttl_secs = 2);
    assert_eq!(
        s.publish(
            &s.admin,
            "shop",
            "checkout",
            &format!("version=1.0.0&channel=production&{ROUTE}"),
            &zip_build(&build("v1"))
        )
        .status,
        201
    );
    let first = verify_index(
        &s.index_bytes("shop", "production"),
        &s.trusted(),
        &scope("production"),
        now(),
        0,
    )
    .unwrap();
    // With a 2 s lifetime, half of it has passed at once, so a refresh raises the sequence.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let bytes = s.index_bytes("shop", "production");
        let latest = manifests::parse_strict(&bytes).unwrap()["signed"]["sequence"]
            .as_u64()
            .unwrap();
        if latest > first.index.sequence {
            let again = verify_index(
                &bytes,
                &s.trusted(),
                &scope("production"),
                now(),
                first.index.sequence,
            )
            .unwrap();
            assert_eq!(
                again.index.packages, first.index.packages,
                "same content, newer signature"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the index was not re-signed"
        );
        std::thread::yield_now();
    }
}

#[test]
fn device_reports_add_up_to_adoption_and_page_open_figures() {
    let s = TestServer::start();
    for v in ["1.0.0", "1.1.0"] {
        let r = s.publish(
            &s.admin,
            "shop",
            "checkout",
            &format!("version={v}&{ROUTE}"),
            &zip_build(&build(v)),
        );
        assert_eq!(r.status, 201);
    }
    let r = s.change(
        "checkout",
        "production",
        json!({"action": "promote", "version": "1.0.0"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let key = s
        .post_json(
            "/v1/admin/apps/shop/ingest-keys",
            &s.admin,
            &json!({"name": "app"}),
        )
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |device: &str, mut body: serde_json::Value| {
        body["ingest_key"] = json!(key);
        body["device_id"] = json!(device);
        request(
            &s.base,
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            Some(&serde_json::to_vec(&body).unwrap()),
        )
    };
    let event = |version: &str, kind: &str| json!({"package": "checkout", "version": version, "kind": kind});
    // Three devices report; states count devices, opens count opens.
    for device in ["d1", "d2", "d3"] {
        let r = post(
            device,
            json!({"app": "shop", "channel": "production", "events": [
                event("1.1.0", "installed"), event("1.1.0", "activated"),
                {"package": "checkout", "version": "1.1.0", "kind": "opens", "count": 10, "offline_hits": 9, "under_1s": 7},
            ]}),
        );
        assert_eq!(
            (r.status, r.json()["accepted"].as_u64()),
            (202, Some(3)),
            "{}",
            r.text()
        );
    }
    let r = post(
        "d1",
        json!({"app": "shop", "channel": "production", "events": [
            event("1.1.0", "failed"), event("1.1.0", "rolled_back"), event("1.0.0", "activated"),
            event("9.9.9", "installed"),
            {"package": "unknown", "version": "1.0.0", "kind": "installed"},
        ]}),
    );
    assert_eq!(
        (&r.json()["accepted"], &r.json()["ignored"]),
        (&json!(3), &json!(2))
    );
    // Another app's devices cannot count towards this app's package: the key is this app's.
    let r = post(
        "d1",
        json!({"app": "other", "channel": "production", "events": [event("1.1.0", "installed")]}),
    );
    assert_eq!(
        (r.status, r.code()),
        (403, "ingest_key_wrong_app".to_owned())
    );

    let stats = s
        .admin_get("/v1/admin/apps/shop/channels/production/stats")
        .json();
    let v11 = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == "1.1.0")
        .unwrap();
    assert_eq!(
        (
            v11["installed"].as_u64(),
            v11["activated"].as_u64(),
            v11["failed"].as_u64(),
            v11["rolled_back"].as_u64()
        ),
        (Some(3), Some(3), Some(1), Some(1))
    );
    assert_eq!(
        (
            v11["opens"].as_u64(),
            v11["offline_hits"].as_u64(),
            v11["under_1s"].as_u64()
        ),
        (Some(30), Some(27), Some(21))
    );
    assert_eq!(v11["offline_hit_rate"].as_f64(), Some(0.9));
    assert_eq!(v11["under_1s_rate"].as_f64(), Some(0.7));
    let v10 = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == "1.0.0")
        .unwrap();
    assert_eq!(v10["activated"].as_u64(), Some(1));
    assert!(v10["under_1s_rate"].is_null(), "no opens, no rate");

    // Bad batches are refused whole and count nothing.
    for (body, code) in [
        (b"{".to_vec(), "invalid_json"),
        (serde_json::to_vec(&json!({"app": "shop", "channel": "production", "events": []})).unwrap(), "invalid_field"),
        (serde_json::to_vec(&json!({"app": "shop", "channel": "production", "events": [{"package": "checkout", "version": "1.1.0", "kind": "opens", "count": 1, "under_1s": 5}]})).unwrap(), "invalid_field"),
    ] {
        let r = request(&s.base, "POST", "/v1/events", &[("Content-Type", "application/json")], Some(&body));
        assert_eq!(r.code(), code, "{}", r.text());
    }
    // An oversized batch is refused from its declared length, before its body is read.
    {
        use std::io::{Read, Write};
        let addr = s.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"too_large\""), "{answer}");
    }
    assert_eq!(
        s.admin_get("/v1/admin/apps/shop/channels/production/stats")
            .json(),
        stats
    );
    let publisher = s.token("ci", Scope::Publish, None);
    let denied = request(
        &s.base,
        "GET",
        "/v1/admin/apps/shop/channels/production/stats",
        &[("Authorization", &format!("Bearer {publisher}"))],
        None,
    );
    assert_eq!(denied.status, 403);
}

#[test]
fn metrics_count_requests_by_route_and_publishes_by_outcome() {
    let s = TestServer::start();
    let q = format!("version=1.0.0&channel=production&{ROUTE}");
    assert_eq!(
        s.publish(&s.admin, "shop", "checkout", &q, &zip_build(&build("v1")))
            .status,
        201
    );
    assert_eq!(
        s.publish(&s.admin, "shop", "checkout", &q, &zip_build(&build("v1")))
            .status,
        200
    );
    assert_eq!(
        s.publish(&s.admin, "shop", "checkout", &q, b"not a zip")
            .status,
        422
    );
    for _ in 0..3 {
        assert_eq!(s.get("/v1/apps/shop/channels/production/index").status, 200);
    }
    s.get(&format!("/v1/blobs/{}", Digest::of(b"missing")));
    let metrics = s.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    for line in [
        r#"baleen_http_requests_total{route="/v1/apps/{app}/channels/{channel}/index",method="GET",status="200"} 3"#,
        r#"baleen_http_requests_total{route="/v1/blobs/{digest}",method="GET",status="404"} 1"#,
        r#"baleen_publishes_total{outcome="created"} 1"#,
        r#"baleen_publishes_total{outcome="unchanged"} 1"#,
        r#"baleen_publishes_total{outcome="refused"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    assert!(
        text.contains("baleen_http_request_duration_seconds_bucket{"),
        "{text}"
    );
}

#[test]
fn a_client_that_sends_headers_too_slowly_is_cut_off_and_others_are_served() {
    use std::io::{Read, Write};
    let s = TestServer::start_with(|settings| {
        settings.header_read_timeout = std::time::Duration::from_millis(500)
    });
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut slow: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    // Legitimate clients keep being served meanwhile.
    assert_eq!(s.get("/healthz").status, 200);
    let started = std::time::Instant::now();
    for stream in &mut slow {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        // The server answers 408 or just closes; either way the read ends, well before 10 s.
        let _ = stream.read_to_end(&mut rest);
        let text = String::from_utf8_lossy(&rest);
        assert!(
            rest.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "slow clients held for {:?}",
        started.elapsed()
    );
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn overload_is_shed_at_once_with_retry_after() {
    let s = TestServer::start_with(|settings| settings.max_concurrent_requests = 0);
    let r = s.get("/v1/apps/shop/channels/production/index");
    assert_eq!((r.status, r.code()), (503, "overloaded".to_owned()));
    assert_eq!(r.header("retry-after"), Some("1"));
}

#[test]
fn a_publish_on_a_base_release_uploads_only_changes_and_checks_them() {
    let s = TestServer::start();
    assert_eq!(
        s.publish(
            &s.admin,
            "shop",
            "checkout",
            &format!("version=1.0.0&{ROUTE}"),
            &zip_build(&build("v1"))
        )
        .status,
        201
    );
    let changed = zip(&[("app.js", b"console.log('v2')")]);
    let r = s.publish(
        &s.admin,
        "shop",
        "checkout",
        "version=1.0.1&base=1.0.0&removed=img%2Flogo.png",
        &changed,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["release"]["file_count"], 3);
    let only_removal = s.publish(
        &s.admin,
        "shop",
        "checkout",
        "version=1.0.2&base=1.0.1&removed=css%2Fsite.css",
        b"",
    );
    assert_eq!(
        (
            only_removal.status,
            only_removal.json()["release"]["file_count"].as_u64()
        ),
        (201, Some(2))
    );

    for (query, body, status, code) in [
        ("version=2.0.0&base=9.9.9", &changed[..], 404, "not_found"),
        (
            "version=2.0.0&base=1.0.0&removed=nope.js",
            &changed[..],
            422,
            "bad_request",
        ),
        (
            "version=2.0.0&base=1.0.0&removed=..%2Fx",
            &changed[..],
            422,
            "invalid_path",
        ),
        (
            "version=2.0.0&removed=app.js",
            &changed[..],
            422,
            "bad_request",
        ),
        ("version=2.0.0", b"", 422, "not_a_zip"),
    ] {
        let r = s.publish(&s.admin, "shop", "checkout", query, body);
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{query}: {}",
            r.text()
        );
    }
    let releases = s.admin_get("/v1/admin/packages/checkout/releases").json();
    assert_eq!(releases.as_array().unwrap().len(), 3);
}

#[test]
fn text_blobs_are_served_gzipped_to_clients_that_accept_it() {
    use std::io::Read;
    let s = TestServer::start();
    let script =
        "function render(state) { return state.items.map(item => item.name); }\n".repeat(200);
    let png = vec![0x89u8; 4096];
    let r = s.publish(
        &s.admin,
        "shop",
        "checkout",
        &format!("version=1.0.0&{ROUTE}"),
        &zip(&[
            ("index.html", b"x"),
            ("app.js", script.as_bytes()),
            ("logo.png", &png),
        ]),
    );
    assert_eq!(r.status, 201);
    let blob = format!("/v1/blobs/{}", Digest::of(script.as_bytes()));
    // Precompression runs after the publish; wait for it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let gz = loop {
        let r = s.get_with(&blob, &[("Accept-Encoding", "br, gzip")]);
        if r.header("content-encoding") == Some("gzip") {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "never gzipped");
        std::thread::yield_now();
    };
    assert_eq!(gz.header("vary"), Some("accept-encoding"));
    assert_eq!(
        gz.header("etag").unwrap(),
        format!("\"{}.gz\"", Digest::of(script.as_bytes()))
    );
    assert!(gz.body.len() * 10 < script.len());
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(plain, script);
    let etag = gz.header("etag").unwrap().to_owned();
    assert_eq!(
        s.get_with(
            &blob,
            &[("Accept-Encoding", "gzip"), ("If-None-Match", &etag)]
        )
        .status,
        304
    );

    // Without gzip, with gzip refused, or with a Range: the bytes as they are.
    for headers in [
        vec![],
        vec![("Accept-Encoding", "gzip;q=0, identity")],
        vec![("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")],
    ] {
        let r = s.get_with(&blob, &headers);
        assert_eq!(r.header("content-encoding"), None, "{headers:?}");
        assert_eq!(r.body, &script.as_bytes()[..r.body.len()]);
    }
    // Images are not precompressed.
    let r = s.get_with(
        &format!("/v1/blobs/{}", Digest::of(&png)),
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(
        (r.header("content-encoding"), r.body.len()),
        (None, png.len())
    );
}

/// A blob asked for again is answered from memory, exactly as the first time; a `Range` still
/// reads storage, and a server told to hold none reads storage every time.
#[test]
fn blobs_asked_for_again_are_answered_from_memory_with_the_same_answer() {
    for budget_mib in [128, 0] {
        let s = TestServer::start_with(|settings| {
            settings.blob_cache_bytes = budget_mib * 1024 * 1024;
        });
        let script = "export const total = (xs) => xs.reduce((a, b) => a + b, 0);\n".repeat(300);
        let binary: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let r = s.publish(
            &s.admin,
            "shop",
            "checkout",
            &format!("version=1.0.0&{ROUTE}"),
            &zip(&[
                ("index.html", b"x"),
                ("app.js", script.as_bytes()),
                ("data.bin", &binary),
            ]),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let (script_digest, binary_digest) = (Digest::of(script.as_bytes()), Digest::of(&binary));
        let path = |d: &Digest| format!("/v1/blobs/{d}");
        // Precompression runs after the publish; wait for the script's gzip representation.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while s
            .get_with(&path(&script_digest), &[("Accept-Encoding", "gzip")])
            .header("content-encoding")
            != Some("gzip")
        {
            assert!(std::time::Instant::now() < deadline, "never gzipped");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let without_date = |r: &harness::Response| {
            let mut headers: Vec<_> = r
                .headers
                .iter()
                .filter(|(n, _)| n != "date")
                .cloned()
                .collect();
            headers.sort();
            (r.status, headers, r.body.clone())
        };
        let binary_tag = format!("\"{binary_digest}\"");
        let asks: [(&Digest, Vec<(&str, &str)>); 5] = [
            (&script_digest, vec![]),
            (&script_digest, vec![("Accept-Encoding", "gzip")]),
            (&binary_digest, vec![("Accept-Encoding", "gzip")]),
            (&binary_digest, vec![]),
            (&binary_digest, vec![("If-None-Match", &binary_tag)]),
        ];
        let first: Vec<_> = asks
            .iter()
            .map(|(d, h)| without_date(&s.get_with(&path(d), h)))
            .collect();
        assert_eq!(first[0].2, script.as_bytes());
        assert!(
            first[1]
                .1
                .contains(&("content-encoding".into(), "gzip".into()))
        );
        assert_eq!(
            (first[3].0, first[3].2.as_slice()),
            (200, binary.as_slice())
        );
        assert_eq!(first[4].0, 304);
        for (ask, before) in asks.iter().zip(&first) {
            let again = s.get_with(&path(ask.0), &ask.1);
            assert_eq!(&without_date(&again), before, "{ask:?}");
            let head = request(&s.base, "HEAD", &path(ask.0), &ask.1, None);
            assert_eq!(head.status, before.0, "HEAD {ask:?}");
            assert!(head.body.is_empty());
        }

        // Storage loses the files: what is held is still answered, a range reads storage.
        std::fs::remove_dir_all(s.data().join("blobs")).unwrap();
        std::fs::create_dir_all(s.data().join("blobs/tmp")).unwrap();
        let held = s.get(&path(&binary_digest));
        let range = s.get_with(&path(&binary_digest), &[("Range", "bytes=0-9")]);
        assert_eq!(range.status, 404, "{}", range.text());
        match budget_mib {
            0 => assert_eq!(held.status, 404, "held with no budget"),
            _ => assert_eq!(without_date(&held), first[3]),
        }
    }
}

#[test]
fn a_caller_without_a_token_learns_nothing_about_the_input() {
    let s = TestServer::start();
    let bad_query = request(
        &s.base,
        "POST",
        "/v1/admin/apps/Shop/packages/x/releases?version=nope",
        &[],
        Some(b"junk"),
    );
    assert_eq!(
        (bad_query.status, bad_query.code()),
        (401, "unauthorized".to_owned())
    );
    let bad_body = request(
        &s.base,
        "POST",
        "/v1/admin/packages/x/channels/production",
        &[("Content-Type", "application/json")],
        Some(b"{"),
    );
    assert_eq!(bad_body.status, 401);
    let bad_limit = request(&s.base, "GET", "/v1/admin/audit?limit=abc", &[], None);
    assert_eq!(bad_limit.status, 401);
    let with_token = s.admin_get("/v1/admin/audit?limit=abc");
    assert_eq!(
        (with_token.status, with_token.code()),
        (422, "bad_request".to_owned())
    );
}

#[test]
fn tokens_are_made_listed_expired_and_revoked_through_the_api() {
    let s = TestServer::start();
    let z = zip_build(&build("v1"));
    let releaser = s.token("release-eng", Scope::Release, None);
    let tokens = "/v1/admin/tokens";
    // Only admins manage tokens.
    let denied = s.post_json(tokens, &releaser, &json!({"name": "x", "scope": "publish"}));
    assert_eq!(
        (denied.status, denied.code()),
        (403, "forbidden".to_owned())
    );
    let auth = format!("Bearer {releaser}");
    let listed = request(&s.base, "GET", tokens, &[("Authorization", &auth)], None);
    assert_eq!(listed.status, 403);

    // Bad requests change nothing.
    for (body, code) in [
        (json!({"name": "x", "scope": "root"}), "bad_request"),
        (
            json!({"name": "x", "scope": "publish", "expires_in_secs": 0}),
            "bad_request",
        ),
        (
            json!({"name": "x", "scope": "publish", "app": "shop"}),
            "bad_request",
        ),
        (
            json!({"name": "x", "scope": "publish", "package": "new"}),
            "not_found",
        ),
        (
            json!({"name": "release-eng", "scope": "publish"}),
            "conflict",
        ),
    ] {
        let r = s.post_json(tokens, &s.admin, &body);
        assert_eq!(r.code(), code, "{body}: {}", r.text());
    }

    let made = s.post_json(
        tokens,
        &s.admin,
        &json!({"name": "short", "scope": "publish", "expires_in_secs": 3}),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let made = made.json();
    let secret = made["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("baleen_"));
    let q = format!("version=1.0.0&{ROUTE}");
    assert_eq!(s.publish(&secret, "shop", "checkout", &q, &z).status, 201);

    let list = s.admin_get(tokens);
    assert_eq!(list.status, 200);
    assert!(!list.text().contains(&secret), "secrets are never listed");
    let short = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "short")
        .cloned();
    let short = short.unwrap();
    assert_eq!(short["state"], "active");
    assert!(short["last_used_at"].is_string(), "{short}");

    // Expired: refused with a reason, and listed as such.
    // (Expiry is to the second: a 3 s token is past its time 4.1 s after it was made.)
    std::thread::sleep(std::time::Duration::from_millis(4100));
    let late = s.publish(
        &secret,
        "shop",
        "checkout",
        &format!("version=1.0.1&{ROUTE}"),
        &z,
    );
    assert_eq!(
        (late.status, late.code()),
        (401, "token_refused".to_owned())
    );
    assert!(late.text().contains("expired at"), "{}", late.text());
    let list = s.admin_get(tokens).json();
    let short = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "short")
        .unwrap();
    assert_eq!(short["state"], "expired");

    // Revoked: refused at once; revoking again keeps the first time; an unknown name is 404.
    let delete = |name: &str| {
        let auth = format!("Bearer {}", s.admin);
        request(
            &s.base,
            "DELETE",
            &manifests::paths::token_path(name),
            &[("Authorization", &auth)],
            None,
        )
    };
    let allowed = s.admin_get("/v1/admin/packages/checkout/releases");
    assert_eq!(allowed.status, 200);
    let revoked = delete("release-eng");
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(revoked.json()["state"], "revoked");
    let first = revoked.json()["revoked_at"].clone();
    assert_eq!(delete("release-eng").json()["revoked_at"], first);
    let after = s.post_json(
        "/v1/admin/packages/checkout/channels/production",
        &releaser,
        &json!({"action": "promote", "version": "1.0.0"}),
    );
    assert_eq!(
        (after.status, after.code()),
        (401, "token_refused".to_owned())
    );
    assert!(after.text().contains("was revoked at"), "{}", after.text());
    assert_eq!(delete("no such token").status, 404);

    // A token bound to a package of another app is refused at creation.
    let conflict = s.post_json(
        tokens,
        &s.admin,
        &json!({"name": "y", "scope": "publish", "app": "other", "package": "checkout"}),
    );
    assert_eq!(conflict.code(), "conflict", "{}", conflict.text());
    // Bound to a new package of app `other`, which does not exist: it cannot create the app,
    // nor its package under app `shop`.
    let bound = s.post_json(
        tokens,
        &s.admin,
        &json!({"name": "z", "scope": "publish", "app": "other", "package": "cart"}),
    );
    assert_eq!(bound.status, 201, "{}", bound.text());
    let bound = bound.json()["token"].as_str().unwrap().to_owned();
    let cart = "version=1.0.0&routes=https://m.example.com/cart/";
    let r = s.publish(&bound, "other", "cart", cart, &z);
    assert!(
        r.status == 403 && r.text().contains("create app other"),
        "{}",
        r.text()
    );
    let r = s.publish(&bound, "shop", "cart", cart, &z);
    assert!(
        r.status == 403 && r.text().contains("create package cart in app shop"),
        "{}",
        r.text()
    );

    let log = s.admin_get("/v1/admin/audit").json();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for action in ["token.create", "token.use", "token.revoke"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
}

#[test]
fn a_route_belongs_to_one_package_of_its_app_and_to_the_app_s_origins() {
    let s = TestServer::start();
    let z = zip_build(&build("v1"));
    let publish = |token: &str, package: &str, version: &str, route: &str| {
        s.publish(
            token,
            "shop",
            package,
            &format!("version={version}&routes={route}"),
            &z,
        )
    };
    // The app's first release declares its origin.
    let first = publish(
        &s.admin,
        "checkout",
        "1.0.0",
        "https://m.example.com/checkout/",
    );
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(
        s.admin_get("/v1/admin/apps/shop/origins").json(),
        json!({"origins": ["https://m.example.com"]})
    );

    // A token bound to package `b` cannot make devices answer checkout's pages from `b`.
    let b = s.token("b-ci", Scope::Publish, Some("b"));
    for route in [
        "https://m.example.com/checkout/pay/",
        "https://m.example.com/checkout/",
        "https://m.example.com/",
    ] {
        let r = publish(&b, "b", "1.0.0", route);
        assert_eq!(
            (r.status, r.code()),
            (409, "route_taken".to_owned()),
            "{route}"
        );
        assert!(
            r.text().contains("of package checkout"),
            "{route}: {}",
            r.text()
        );
    }
    // Nor claim a host the app never declared.
    let r = publish(&b, "b", "1.0.0", "https://pay.example.net/b/");
    assert_eq!(
        (r.status, r.code()),
        (403, "route_outside_origins".to_owned())
    );
    assert!(
        r.text().contains("outside the origins of app shop"),
        "{}",
        r.text()
    );
    assert_eq!(
        s.get("/v1/admin/packages/b/releases").status,
        401,
        "nothing was published"
    );
    assert_eq!(
        s.admin_get("/v1/admin/packages/b/releases").status,
        404,
        "nothing was published"
    );
    // A prefix beside checkout's is its own.
    let ok = publish(&b, "b", "1.0.0", "https://m.example.com/checkout-b/");
    assert_eq!(ok.status, 201, "{}", ok.text());
    // The owner may still narrow or keep its own prefix.
    let own = publish(
        &s.admin,
        "checkout",
        "1.1.0",
        "https://m.example.com/checkout/pay/",
    );
    assert_eq!(own.status, 201, "{}", own.text());

    // Only admins declare origins; a new one lets packages claim routes there.
    let put = |token: &str, body: serde_json::Value| {
        let auth = format!("Bearer {token}");
        let bytes = serde_json::to_vec(&body).unwrap();
        request(
            &s.base,
            "PUT",
            "/v1/admin/apps/shop/origins",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(&bytes),
        )
    };
    assert_eq!(
        put(&b, json!({"origins": ["https://pay.example.net"]})).status,
        403
    );
    for bad in [
        json!([]),
        json!(["https://pay.example.net/path"]),
        json!(["ftp://x.example"]),
    ] {
        let r = put(&s.admin, json!({ "origins": bad }));
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
    }
    // Dropping an origin a release still uses is refused.
    let r = put(&s.admin, json!({"origins": ["https://pay.example.net"]}));
    assert_eq!(
        (r.status, r.code()),
        (409, "conflict".to_owned()),
        "{}",
        r.text()
    );
    let r = put(
        &s.admin,
        json!({"origins": ["https://pay.example.net", "https://m.example.com", "http://m.example.com"]}),
    );
    assert_eq!(
        r.json(),
        json!({"origins": ["http://m.example.com", "https://m.example.com", "https://pay.example.net"]})
    );
    let r = publish(&b, "b", "1.1.0", "https://pay.example.net/b/");
    assert_eq!(r.status, 201, "{}", r.text());
    // Devices match without the scheme: plain http over checkout's prefix is still taken.
    let r = publish(&b, "b", "1.2.0", "http://m.example.com/checkout/pay/");
    assert_eq!(
        (r.status, r.code()),
        (409, "route_taken".to_owned()),
        "{}",
        r.text()
    );
    let log = s.admin_get("/v1/admin/audit").text();
    assert!(log.contains("app.origins"), "{log}");
}

#[test]
fn an_unknown_channel_is_refused_with_the_app_s_channels() {
    let s = TestServer::start();
    let z = zip_build(&build("v1"));
    let auth = format!("Bearer {}", s.admin);
    let publish = |query: &str| {
        request(
            &s.base,
            "POST",
            &format!("/v1/admin/apps/shop/packages/checkout/releases?{query}&{ROUTE}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/zip"),
            ],
            Some(&z),
        )
    };
    let change = |channel: &str, body: serde_json::Value| {
        let bytes = serde_json::to_vec(&body).unwrap();
        request(
            &s.base,
            "POST",
            &format!("/v1/admin/packages/checkout/channels/{channel}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(&bytes),
        )
    };
    // A new app has no channel: publishing to one needs the flag, and nothing is published
    // without it.
    let r = publish("version=1.0.0&channel=production");
    assert_eq!((r.status, r.code()), (404, "unknown_channel".to_owned()));
    assert!(r.text().contains("it has none yet"), "{}", r.text());
    assert_eq!(
        s.admin_get("/v1/admin/packages/checkout/releases").status,
        404
    );
    let r = publish("version=1.0.0&channel=production&create_channel=true");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = change(
        "staging",
        json!({"action": "promote", "version": "1.0.0", "create_channel": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // A typo is an error that lists the app's channels, and changes nothing.
    let before = s.get("/v1/apps/shop/channels/production/index").text();
    let r = change(
        "prodution",
        json!({"action": "promote", "version": "1.0.0"}),
    );
    assert_eq!((r.status, r.code()), (404, "unknown_channel".to_owned()));
    assert!(
        r.text().contains("its channels: production, staging"),
        "{}",
        r.text()
    );
    assert_eq!(s.get("/v1/apps/shop/channels/prodution/index").status, 404);
    assert_eq!(
        s.get("/v1/apps/shop/channels/production/index").text(),
        before
    );
    // An existing channel needs no flag.
    let r = publish("version=1.1.0&channel=staging");
    assert_eq!(r.status, 201, "{}", r.text());
}
