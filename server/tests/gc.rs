//! Garbage collection through the admin API: what goes, what stays (and stays downloadable),
//! dry runs, bad requests, publishes racing a collection, and the periodic collection.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;
#[path = "support/cli.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use harness::{Response, TestServer, build, zip_build};
use manifests::{Digest, Release, verify_release};
use serde_json::{Value, json};
use support::{BIN, Serve, baleen, fails, ok};

const GC: &str = "/v1/admin/gc";

fn route(package: &str) -> String {
    format!("https://m.example.com/{package}/")
}

/// Publishes `files` as `package@version`, promoted to `channel` if given.
fn publish(
    s: &TestServer,
    package: &str,
    version: &str,
    files: &[(String, Vec<u8>)],
    extra: &str,
) -> Response {
    let query = format!("version={version}&routes={}{extra}", route(package));
    s.publish(&s.admin, "shop", package, &query, &zip_build(files))
}

#[track_caller]
fn published(s: &TestServer, package: &str, version: &str, extra: &str) {
    let r = publish(
        s,
        package,
        version,
        &build(&format!("{package} {version}")),
        extra,
    );
    assert_eq!(r.status, 201, "{package}@{version}: {}", r.text());
}

fn gc(s: &TestServer, body: &Value) -> Response {
    s.post_json(GC, &s.admin, body)
}

#[track_caller]
fn collected(s: &TestServer, body: &Value) -> Value {
    let r = gc(s, body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The versions of `package` the server lists.
fn versions(s: &TestServer, package: &str) -> BTreeSet<String> {
    let r = s.admin_get(&format!("/v1/admin/packages/{package}/releases"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The manifest digest of `package@version`, from the release list.
fn manifest_digest(s: &TestServer, package: &str, version: &str) -> Option<String> {
    let r = s.admin_get(&format!("/v1/admin/packages/{package}/releases"));
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .map(|r| r["manifest_digest"].as_str().unwrap().to_owned())
}

/// Checks that `package@version` is fully downloadable: its manifest verifies, every blob is
/// served with the right sha256, and (with `pack`, once packs are built) its full pack is served
/// whole.
#[track_caller]
fn assert_downloadable(s: &TestServer, package: &str, version: &str, pack: bool) -> Release {
    let digest = manifest_digest(s, package, version)
        .unwrap_or_else(|| panic!("{package}@{version} is not listed"));
    let manifest = s.admin_get(&format!("/v1/manifests/{digest}"));
    assert_eq!(
        manifest.status,
        200,
        "{package}@{version}: {}",
        manifest.text()
    );
    let release = verify_release(
        &manifest.body,
        &s.trusted(),
        Some(&Digest::parse(&digest).unwrap()),
    )
    .unwrap()
    .release;
    for (path, file) in &release.files {
        let blob = s.get(&format!("/v1/blobs/{}", file.sha256));
        assert_eq!(blob.status, 200, "{package}@{version} {path}");
        assert_eq!(
            Digest::of(&blob.body),
            file.sha256,
            "{package}@{version} {path}"
        );
    }
    if pack {
        let pack = s.admin_get(&format!("/v1/packs/{package}/{version}.zip"));
        assert_eq!(
            pack.status,
            200,
            "{package}@{version} pack: {}",
            pack.text()
        );
        let etag = pack.header("etag").unwrap();
        assert_eq!(etag, format!("\"{}\"", Digest::of(&pack.body)));
    }
    release
}

fn blob_path(s: &TestServer, digest: &Digest) -> std::path::PathBuf {
    let hex = digest.to_string();
    s.data().join("blobs").join(&hex[..2]).join(&hex)
}

/// `checkout` 1.0.0 (for hosts >=1) then 1.1.0, 1.2.0 and 1.3.0 (for hosts >=2) promoted on
/// production in turn, 1.4.0 rolling out, 1.5.0 and 2.0.0 never on a channel; four dev builds
/// promoted on `dev` in turn; `cart` 1.0.0 and 1.1.0 never on a channel. Packs are built.
fn world() -> TestServer {
    let s = TestServer::start();
    published(
        &s,
        "checkout",
        "1.0.0",
        "&channel=production&requires=%3E%3D1",
    );
    for version in ["1.1.0", "1.2.0", "1.3.0"] {
        let extra = if version == "1.1.0" {
            "&channel=production&requires=%3E%3D2"
        } else {
            "&channel=production"
        };
        published(&s, "checkout", version, extra);
    }
    published(&s, "checkout", "1.4.0", "");
    let r = s.change(
        "checkout",
        "production",
        json!({"action": "rollout", "version": "1.4.0", "basis_points": 1000}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    published(&s, "checkout", "1.5.0", "");
    published(&s, "checkout", "2.0.0", "");
    for dev in ["0.0.0-dev.1", "0.0.0-dev.2", "0.0.0-dev.3", "0.0.0-dev.4"] {
        published(&s, "checkout", dev, "&channel=dev");
    }
    published(&s, "cart", "1.0.0", "");
    published(&s, "cart", "1.1.0", "");
    s.settle_packs();
    s
}

/// The policy the tests collect with: nothing is young enough to stay for its age; the last
/// three releases of each channel and the highest version of each package stay.
fn strict(dry_run: bool) -> Value {
    json!({"dry_run": dry_run, "max_age_secs": 0, "dev_max_age_secs": 0, "history_depth": 3, "keep_last": 1})
}

#[test]
fn a_dry_run_says_what_would_go_and_changes_nothing() {
    let s = world();
    let files = s.blob_files();
    let checkout = versions(&s, "checkout");
    let dry = collected(&s, &strict(true));
    let report = &dry;
    assert_eq!(report["dry_run"], true);
    let gone: Vec<String> = report["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}@{}",
                r["package"].as_str().unwrap(),
                r["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        gone,
        [
            "cart@1.0.0",
            "checkout@0.0.0-dev.1",
            "checkout@1.1.0",
            "checkout@1.5.0"
        ]
    );
    assert_eq!(report["releases_kept"], 9);
    assert!(report["packs"].as_u64().unwrap() > 0, "{report}");
    assert!(report["blobs"].as_u64().unwrap() > 0, "{report}");
    assert!(report["blob_bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        report["policy"],
        json!({"max_age_secs": 0, "dev_max_age_secs": 0, "history_depth": 3, "keep_last": 1})
    );
    // Nothing changed: not a file, not a release, no collection in the audit log.
    assert_eq!(s.blob_files(), files);
    assert_eq!(versions(&s, "checkout"), checkout);
    let audit = s.admin_get("/v1/admin/audit?limit=100").json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "gc"),
        "{audit}"
    );
    // The server's own policy (30 days, 7 for dev builds) lets nothing this young go, and
    // finds nothing unreferenced.
    let report = collected(&s, &json!({"dry_run": true}));
    assert_eq!(
        (&report["releases"], &report["packs"], &report["blobs"]),
        (&json!([]), &json!(0), &json!(0)),
        "{report}"
    );
    assert_eq!(report["policy"]["max_age_secs"], 30 * 24 * 3600);
    // A real collection then removes what the dry run said, and a dry run after it finds
    // nothing more.
    let real = collected(&s, &strict(false));
    for field in ["releases", "releases_kept", "packs", "blobs", "blob_bytes"] {
        assert_eq!(real[field], dry[field], "{field}");
    }
    let after = collected(&s, &strict(true));
    assert_eq!(
        (
            &after["releases"],
            &after["packs"],
            &after["blobs"],
            &after["releases_kept"]
        ),
        (&json!([]), &json!(0), &json!(0), &json!(9))
    );
}

#[test]
fn expired_releases_go_and_whatever_a_rule_keeps_stays_downloadable() {
    let s = world();
    // What the collected releases alone hold, and a pack built for one of them.
    let gone_release = assert_downloadable(&s, "checkout", "1.1.0", true);
    let unique: Vec<Digest> = {
        let kept = assert_downloadable(&s, "checkout", "1.2.0", true);
        gone_release
            .files
            .values()
            .map(|f| f.sha256)
            .filter(|d| kept.files.values().all(|f| f.sha256 != *d))
            .collect()
    };
    assert!(!unique.is_empty());
    let gone_pack = s.admin_get("/v1/packs/checkout/1.1.0.zip");
    let gone_pack = Digest::parse(gone_pack.header("etag").unwrap().trim_matches('"')).unwrap();
    assert!(blob_path(&s, &gone_pack).is_file());
    let gone_manifest = manifest_digest(&s, "checkout", "1.1.0").unwrap();

    let report = collected(&s, &strict(false));
    assert_eq!(report["dry_run"], false);
    let releases = report["releases"].as_array().unwrap();
    let by_name = |name: &str| {
        releases
            .iter()
            .find(|r| {
                format!(
                    "{}@{}",
                    r["package"].as_str().unwrap(),
                    r["version"].as_str().unwrap()
                ) == name
            })
            .unwrap_or_else(|| panic!("{name} not collected: {report}"))
    };
    assert_eq!(by_name("checkout@1.5.0")["last_on_channel_at"], Value::Null);
    assert!(by_name("checkout@1.1.0")["last_on_channel_at"].is_string());
    assert_eq!(by_name("checkout@0.0.0-dev.1")["dev_build"], true);
    assert_eq!(by_name("checkout@1.1.0")["dev_build"], false);
    assert_eq!(releases.len(), 4);

    // Stable, candidate, the release kept for older hosts, the last two on each channel and
    // the highest version of each package stay, downloadable in full.
    assert_eq!(
        versions(&s, "checkout"),
        set(&[
            "0.0.0-dev.2",
            "0.0.0-dev.3",
            "0.0.0-dev.4",
            "1.0.0",
            "1.2.0",
            "1.3.0",
            "1.4.0",
            "2.0.0"
        ])
    );
    assert_eq!(versions(&s, "cart"), set(&["1.1.0"]));
    for version in [
        "0.0.0-dev.2",
        "0.0.0-dev.3",
        "0.0.0-dev.4",
        "1.0.0",
        "1.2.0",
        "1.3.0",
        "1.4.0",
        "2.0.0",
    ] {
        assert_downloadable(&s, "checkout", version, true);
    }
    assert_downloadable(&s, "cart", "1.1.0", true);
    let diff = s.admin_get("/v1/packs/checkout/1.2.0..1.3.0.zip");
    assert_eq!(diff.status, 200, "{}", diff.text());

    // What went is gone: the manifest, the blobs only it held, its packs, on disk too.
    let r = s.admin_get(&format!("/v1/manifests/{gone_manifest}"));
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    for digest in &unique {
        assert_eq!(s.get(&format!("/v1/blobs/{digest}")).status, 404);
        assert!(!blob_path(&s, digest).exists(), "{digest} left on disk");
    }
    assert!(
        !blob_path(&s, &gone_pack).exists(),
        "the pack is left on disk"
    );
    for pack in ["1.1.0.zip", "1.1.0..1.2.0.zip", "1.0.0..1.1.0.zip"] {
        let r = s.admin_get(&format!("/v1/packs/checkout/{pack}"));
        assert_eq!(r.status, 404, "{pack}: {}", r.text());
    }
    // Every stored blob is one a release or a pack refers to: a second collection finds nothing.
    let again = collected(&s, &strict(false));
    assert_eq!(
        (&again["releases"], &again["blobs"]),
        (&json!([]), &json!(0))
    );

    // The channels go on: the index names only stored releases, a rollback finds the previous
    // release, a collected one is not found, and its version can be published again.
    let index = s.index_bytes("shop", "production");
    let scope = manifests::IndexScope {
        app: manifests::AppId::parse("shop").unwrap(),
        channel: manifests::Channel::parse("production").unwrap(),
    };
    let now = manifests::Timestamp::from_unix_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let index = manifests::verify_index(&index, &s.trusted(), &scope, now, 0).unwrap();
    let named: BTreeSet<String> = index.index.packages
        [&manifests::PackageId::parse("checkout").unwrap()]
        .releases()
        .map(|r| r.version.to_string())
        .collect();
    assert_eq!(named, set(&["1.0.0", "1.3.0", "1.4.0"]));
    let r = s.change(
        "checkout",
        "production",
        json!({"action": "promote", "version": "1.1.0"}),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (404, "not_found"),
        "{}",
        r.text()
    );
    // The first rollback drops the candidate, the second returns to the previous stable release.
    for stable in ["1.3.0", "1.2.0"] {
        let r = s.change("checkout", "production", json!({"action": "rollback"}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["state"]["stable"], stable);
    }
    published(&s, "checkout", "1.1.0", "");
    assert_downloadable(&s, "checkout", "1.1.0", false);

    // The audit log names who collected what.
    let audit = s.admin_get("/v1/admin/audit?limit=100").json();
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "gc")
        .unwrap();
    assert_eq!(
        (&entry["actor"], &entry["target"]),
        (&json!("admin"), &json!("4 releases"))
    );
    let detail: Value = serde_json::from_str(entry["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        detail["releases"],
        json!([
            "cart@1.0.0",
            "checkout@0.0.0-dev.1",
            "checkout@1.1.0",
            "checkout@1.5.0"
        ])
    );
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("baleen_gc_releases_total 4"), "{metrics}");
}

#[test]
fn bad_requests_and_policies_are_refused_with_the_reason_and_change_nothing() {
    let s = world();
    let files = s.blob_files();
    let before = versions(&s, "checkout");
    let refused = |body: &str, status: u16, code: &str, message: &str| {
        let auth = format!("Bearer {}", s.admin);
        let r = harness::request(
            &s.base,
            "POST",
            GC,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        );
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{body}: {}",
            r.text()
        );
        let text = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(text.contains(message), "{body}: {text}");
    };
    refused("nope", 422, "bad_request", "request body");
    refused("[]", 422, "bad_request", "expected a JSON object");
    refused(" [true]", 422, "bad_request", "expected a JSON object");
    refused(
        r#"{"dryrun": true}"#,
        422,
        "bad_request",
        "unknown field `dryrun`",
    );
    refused(r#"{"dry_run": "yes"}"#, 422, "bad_request", "dry_run");
    refused(
        r#"{"keep_last": 0}"#,
        422,
        "invalid_policy",
        "keep_last 0: keep from 1 to 10000",
    );
    refused(
        r#"{"keep_last": 10001}"#,
        422,
        "invalid_policy",
        "keep_last 10001",
    );
    refused(
        r#"{"history_depth": 10001}"#,
        422,
        "invalid_policy",
        "history_depth 10001",
    );
    refused(
        r#"{"max_age_secs": -1}"#,
        422,
        "bad_request",
        "max_age_secs",
    );
    refused(
        r#"{"max_age_secs": 1.5}"#,
        422,
        "bad_request",
        "1.5 is not a whole number",
    );
    refused(
        r#"{"max_age_secs": "30d"}"#,
        422,
        "bad_request",
        "max_age_secs",
    );
    refused(
        r#"{"max_age_secs": 2592000000}"#,
        422,
        "invalid_policy",
        "max_age_secs 2592000000: a maximum age is at most ten years",
    );
    refused(
        r#"{"dev_max_age_secs": 1e12}"#,
        422,
        "invalid_policy",
        "dev_max_age_secs 1000000000000",
    );
    // Without JSON's content type the body is not read.
    let auth = format!("Bearer {}", s.admin);
    let r = harness::request(
        &s.base,
        "POST",
        GC,
        &[("Authorization", &auth)],
        Some(b"{}"),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (422, "bad_request"),
        "{}",
        r.text()
    );
    // Only an admin token that is bound to no package may collect.
    let r = harness::request(
        &s.base,
        "POST",
        GC,
        &[("Content-Type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    for (name, scope, package) in [
        ("ci", server::meta_store::Scope::Publish, None),
        ("oncall", server::meta_store::Scope::Release, None),
        ("bound", server::meta_store::Scope::Admin, Some("checkout")),
    ] {
        let token = s.token(name, scope, package);
        let r = s.post_json(GC, &token, &json!({"dry_run": true}));
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "forbidden"),
            "{name}: {}",
            r.text()
        );
    }
    assert_eq!(s.blob_files(), files);
    assert_eq!(versions(&s, "checkout"), before);
    // Whole numbers may carry a fraction, as JSON Schema reads them.
    let report = collected(
        &s,
        &json!({"dry_run": true, "max_age_secs": 86400.0, "keep_last": 3.0}),
    );
    assert_eq!(report["policy"]["max_age_secs"], 86400);
    assert_eq!(report["policy"]["keep_last"], 3);
}

#[test]
fn a_release_published_during_collections_stays_complete() {
    let s = TestServer::start();
    // The highest version, on a channel, so that what each round publishes first is collectable.
    published(&s, "checkout", "9.0.0", "&channel=production");
    for round in 0..12 {
        let files = build(&format!("round {round}"));
        // A release nobody keeps, then one with the same files promoted while collections run:
        // its publish finds every blob stored already, the blobs the collections remove.
        let r = publish(&s, "checkout", &format!("1.0.{round}"), &files, "");
        assert_eq!(r.status, 201, "{}", r.text());
        let version = format!("2.0.{round}");
        std::thread::scope(|scope| {
            let publishing =
                scope.spawn(|| publish(&s, "checkout", &version, &files, "&channel=beta"));
            for _ in 0..3 {
                collected(
                    &s,
                    &json!({"max_age_secs": 0, "history_depth": 1, "keep_last": 1}),
                );
            }
            let r = publishing.join().unwrap();
            assert_eq!(r.status, 201, "{}", r.text());
        });
        assert_downloadable(&s, "checkout", &version, false);
    }
    s.settle_packs();
    collected(
        &s,
        &json!({"max_age_secs": 0, "history_depth": 1, "keep_last": 1}),
    );
    for version in versions(&s, "checkout") {
        assert_downloadable(&s, "checkout", &version, true);
    }
    assert_eq!(versions(&s, "checkout"), set(&["2.0.11", "9.0.0"]));
}

#[test]
fn the_server_collects_on_its_own_every_interval() {
    let s = TestServer::start_with(|settings| {
        settings.gc_interval = Some(Duration::from_secs(1));
        settings.retention.max_age_secs = 0;
        settings.retention.keep_last = 1;
    });
    published(&s, "checkout", "1.0.0", "");
    published(&s, "checkout", "1.1.0", "");
    let deadline = Instant::now() + Duration::from_secs(60);
    while versions(&s, "checkout") != set(&["1.1.0"]) {
        assert!(Instant::now() < deadline, "1.0.0 was never collected");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_downloadable(&s, "checkout", "1.1.0", false);
    let audit = s.admin_get("/v1/admin/audit?limit=100").json();
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "gc")
        .unwrap();
    assert_eq!(
        (&entry["actor"], &entry["target"]),
        (&json!("server"), &json!("checkout@1.0.0"))
    );
}

// The `baleen` command: `gc`, the `serve` flags, and what a crash leaves at start.

/// A data directory with a signing key and an admin token; returns the token.
fn init(data: &std::path::Path) -> String {
    support::init(data, "ops", "admin").trim().to_owned()
}

/// `baleen serve` on a free port with `flags` and `env`; returns it with its base URL once it
/// listens.
fn serve(data: &std::path::Path, flags: &[&str], env: &[(&str, &str)]) -> (Serve, String) {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (Serve(child), base)
}

fn write_build(dir: &std::path::Path, variant: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), format!("<h1>{variant}</h1>")).unwrap();
}

#[test]
fn baleen_gc_shows_what_would_go_then_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = init(&data);
    let (_server, base) = serve(
        &data,
        &["--gc-interval-secs", "0"],
        &[
            ("BALEEN_GC_MAX_AGE_SECS", "0"),
            ("BALEEN_GC_KEEP_LAST", "1"),
        ],
    );
    let env = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", token.as_str()),
    ];
    for version in ["1.0.0", "1.1.0"] {
        let build = dir.path().join(version);
        write_build(&build, version);
        ok(&baleen(
            &[
                "publish",
                build.to_str().unwrap(),
                "--app",
                "shop",
                "--package",
                "checkout",
                "--version",
                version,
                "--route",
                "https://m.example.com/checkout/",
            ],
            &env,
        ));
    }
    let listed = || {
        let out = ok(&baleen(
            &["releases", "--package", "checkout", "--json"],
            &env,
        ));
        let list: Value = serde_json::from_str(&out).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["version"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let out = ok(&baleen(&["gc", "--dry-run"], &env));
    let mut lines = out.lines();
    let head = lines.next().unwrap();
    assert!(
        head.starts_with("dry run, nothing removed: would remove 1 release, ")
            && head.ends_with("; 1 release stays"),
        "{out}"
    );
    assert_eq!(lines.next(), Some(""));
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("package   version  kind     published"),
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["checkout", "1.0.0", "release"], "{out}");
    assert_eq!(row[4], "never", "{out}");
    assert_eq!(listed(), ["1.1.0", "1.0.0"]);
    let out = ok(&baleen(
        &["gc", "--dry-run", "--json", "--keep-last", "2"],
        &env,
    ));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&report["dry_run"], &report["releases"]),
        (&json!(true), &json!([]))
    );
    assert_eq!(report["policy"]["keep_last"], 2);

    // Policy values are checked before the server is asked.
    let closed = [
        ("BALEEN_SERVER", "http://127.0.0.1:9"),
        ("BALEEN_TOKEN", token.as_str()),
    ];
    let err = fails(&baleen(&["gc", "--keep-last", "0"], &closed));
    assert!(
        err.starts_with("error: --keep-last 0: keep from 1 to 10000 releases of each package"),
        "{err}"
    );
    let err = fails(&baleen(
        &["gc", "--dry-run", "--max-age-secs", "400000000"],
        &closed,
    ));
    assert!(
        err.starts_with("error: --max-age-secs 400000000: a maximum age is at most ten years"),
        "{err}"
    );
    let err = fails(&baleen(&["gc", "--history-depth", "ten"], &closed));
    assert!(
        err.contains("invalid value 'ten' for '--history-depth"),
        "{err}"
    );
    // A token of a lower scope is refused by the server.
    let publisher = ok(&baleen(
        &[
            "token",
            "create",
            "--data-dir",
            data.to_str().unwrap(),
            "--name",
            "ci",
            "--scope",
            "publish",
        ],
        &[],
    ));
    let err = fails(&baleen(
        &["gc"],
        &[
            ("BALEEN_SERVER", base.as_str()),
            ("BALEEN_TOKEN", publisher.trim()),
        ],
    ));
    assert!(
        err.contains(
            "collecting garbage: token scope publish may not collect garbage (forbidden, HTTP 403)"
        ),
        "{err}"
    );
    assert_eq!(listed(), ["1.1.0", "1.0.0"]);

    let out = ok(&baleen(&["gc"], &env));
    assert!(out.starts_with("removed 1 release, "), "{out}");
    assert!(out.contains("checkout  1.0.0"), "{out}");
    assert_eq!(listed(), ["1.1.0"]);
    // Nothing more goes (but a pack of 1.0.0 whose build was under way and lost its release).
    let out = ok(&baleen(&["gc"], &env));
    assert!(
        out.starts_with("removed 0 releases, 0 packs and ") && out.ends_with("; 1 release stays\n"),
        "{out}"
    );
    let audit = ok(&baleen(&["audit", "--json"], &env));
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "gc")
        .unwrap();
    assert_eq!(
        (&entry["actor"], &entry["target"]),
        (&json!("ops"), &json!("checkout@1.0.0"))
    );
}

#[test]
fn serve_refuses_retention_settings_it_cannot_run_with() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data);
    let data_arg = data.to_str().unwrap();
    let refused = |flags: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data_arg];
        args.extend_from_slice(flags);
        fails(&baleen(&args, env))
    };
    let err = refused(&["--gc-keep-last", "0"], &[]);
    assert!(
        err.starts_with(
            "error: refusing to start: --gc-keep-last 0 (or BALEEN_GC_KEEP_LAST): keep from 1 to \
             10000 releases of each package"
        ),
        "{err}"
    );
    let err = refused(&[], &[("BALEEN_GC_HISTORY_DEPTH", "20000")]);
    assert!(
        err.contains("--gc-history-depth 20000 (or BALEEN_GC_HISTORY_DEPTH): keep from 0 to 10000"),
        "{err}"
    );
    let err = refused(&["--gc-max-age-secs", "2592000000"], &[]);
    assert!(
        err.contains(
            "--gc-max-age-secs 2592000000 (or BALEEN_GC_MAX_AGE_SECS): a maximum age is at most \
             ten years"
        ),
        "{err}"
    );
    let err = refused(&[], &[("BALEEN_GC_DEV_MAX_AGE_SECS", "315360001")]);
    assert!(err.contains("--gc-dev-max-age-secs 315360001"), "{err}");
    let err = refused(&["--gc-interval-secs", "40000000"], &[]);
    assert!(
        err.contains(
            "--gc-interval-secs 40000000 (or BALEEN_GC_INTERVAL_SECS): collect from every second \
             to once a year"
        ),
        "{err}"
    );
    let err = refused(&["--gc-keep-last=-1"], &[]);
    assert!(
        err.contains("invalid value '-1' for '--gc-keep-last"),
        "{err}"
    );
    // Refused before anything was opened or written.
    assert!(!data.join("blobs").exists());
}

#[test]
fn temp_files_a_crash_left_are_removed_when_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = init(&data);
    // What a kill leaves: an upload being staged, a blob being written, and a complete blob
    // that no release came to refer to.
    std::fs::create_dir_all(data.join("tmp/up-3f2a9c")).unwrap();
    std::fs::write(data.join("tmp/up-3f2a9c/upload.zip"), b"PK half an upload").unwrap();
    std::fs::create_dir_all(data.join("blobs/tmp")).unwrap();
    std::fs::write(data.join("blobs/tmp/5d41402abc4b.tmp"), b"half a blob").unwrap();
    let orphan = b"a blob a killed publish stored";
    let hex = Digest::of(orphan).to_string();
    std::fs::create_dir_all(data.join("blobs").join(&hex[..2])).unwrap();
    std::fs::write(data.join("blobs").join(&hex[..2]).join(&hex), orphan).unwrap();

    let (_server, base) = serve(&data, &["--gc-interval-secs", "0"], &[]);
    let entries = |dir: &str| std::fs::read_dir(data.join(dir)).unwrap().count();
    assert_eq!((entries("tmp"), entries("blobs/tmp")), (0, 0));
    assert!(data.join("blobs").join(&hex[..2]).join(&hex).exists());
    // The unreferenced blob waits for a collection.
    let env = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", token.as_str()),
    ];
    let out = ok(&baleen(&["gc"], &env));
    assert_eq!(
        out,
        format!(
            "removed 0 releases, 0 packs and 1 blob ({} bytes); 0 releases stay\n",
            orphan.len()
        )
    );
    assert!(!data.join("blobs").join(&hex[..2]).join(&hex).exists());
}
