//! `baleen migrate --to-config scaled.toml` against a real Garage node and a real PostgreSQL: an
//! embedded install built with the binary (keys, a token, two releases with a route, a rollout,
//! packs, precompressed copies, device reports, a key list) is copied, and `baleen serve --config
//! scaled.toml` then serves the same bytes and accepts the same token. A second run copies
//! nothing; a damaged blob file stops a run before any metadata and the run after the repair
//! copies only what is missing; a database holding other data is refused and left as it was.
//! Skips, saying why, without Garage or PostgreSQL, unless `BALEEN_REQUIRE_GARAGE` and
//! `BALEEN_REQUIRE_POSTGRES` are set.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;
#[path = "support/cli.rs"]
mod support;
#[path = "../src/test_service.rs"]
mod test_service;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use harness::{Response, request};
use manifests::Digest;
use serde_json::{Value, json};
use server::blob_store::BlobStore;
use server::blob_store::s3::{S3BlobStore, S3Config};
use support::{BIN, Serve, baleen, fails, init, ok};
use test_service::{Kind, TestService};

const ROUTE: &str = "https://m.example.com/checkout/";
const INDEX: &str = "/v1/apps/shop/channels/production/index";

/// A Garage node and a PostgreSQL, or None (the test skips, saying so).
fn services(test: &str) -> Option<(TestService, TestService)> {
    let garage = TestService::start(Kind::Garage, test)?;
    let postgres = TestService::start(Kind::Postgres, test)?;
    Some((garage, postgres))
}

/// A build: a page large enough to be precompressed, a script shared by every version, and a
/// file of its own.
fn write_build(dir: &Path, variant: &str) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!("<!doctype html><p>{variant}</p>").repeat(100),
    )
    .unwrap();
    std::fs::write(dir.join("assets/app.js"), "console.log('shared')").unwrap();
    std::fs::write(dir.join(format!("assets/{variant}.txt")), variant).unwrap();
}

fn get(base: &str, path: &str) -> Response {
    let r = request(base, "GET", path, &[], None);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r
}

/// A pack once its final build is stored (served immutable, under its sha256).
fn stored_pack(base: &str, name: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let pack = get(base, &format!("/v1/packs/checkout/{name}"));
        if pack
            .header("cache-control")
            .is_some_and(|c| c.contains("immutable"))
        {
            return pack;
        }
        assert!(Instant::now() < deadline, "pack {name} was never stored");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Blob files under `blobs/` (sha256 names) and precompressed copies (`.gzip`).
fn blob_files(blobs: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut plain, mut gzip) = (Vec::new(), Vec::new());
    for shard in std::fs::read_dir(blobs).unwrap() {
        let shard = shard.unwrap().path();
        if shard.file_name().unwrap() == "tmp" || !shard.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&shard).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "gzip") {
                gzip.push(file);
            } else {
                plain.push(file);
            }
        }
    }
    (plain, gzip)
}

/// The embedded install: data directory, admin token.
struct Install {
    data: PathBuf,
    token: String,
}

/// Builds an embedded install with the real binary — two releases of `checkout` with a route,
/// promoted and rolled out, their packs and precompressed copies stored, device reports, a key
/// list — lets `observe` look at the running server, and stops it.
fn embedded_install<T>(
    dir: &Path,
    observe: impl FnOnce(&str, &[(&str, &str)]) -> T,
) -> (Install, T) {
    let data = dir.join("data");
    let token = init(&data, "ci", "admin").trim().to_owned();
    let none = BTreeMap::new();
    let (server, base) = Serve::start(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--gc-interval-secs",
            "0",
            "--pack-wait-ms",
            "60000",
        ],
        &none,
    );
    let env = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", token.as_str()),
    ];
    for (version, variant) in [("1.0.0", "one"), ("1.1.0", "two")] {
        let build = dir.join(format!("dist-{variant}"));
        write_build(&build, variant);
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
                ROUTE,
            ],
            &env,
        ));
    }
    let target = ["--package", "checkout", "--channel", "production"];
    ok(&baleen(
        &[
            &["promote"],
            &target[..],
            &["--version", "1.0.0", "--create-channel"],
        ]
        .concat(),
        &env,
    ));
    ok(&baleen(
        &[
            &["rollout"],
            &target[..],
            &["--version", "1.1.0", "--percent", "25"],
        ]
        .concat(),
        &env,
    ));
    // Devices report; the counters are rows of their own.
    let key = ok(&baleen(
        &["ingest-key", "create", "--app", "shop", "--name", "app"],
        &env,
    ));
    let events = json!({"app": "shop", "channel": "production", "ingest_key": key.trim(),
        "device_id": "migrated-device", "events": [
        {"package": "checkout", "version": "1.1.0", "kind": "installed"},
        {"package": "checkout", "version": "1.0.0", "kind": "opens", "count": 4, "offline_hits": 3, "under_1s": 2},
    ]});
    let posted = request(
        &base,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/json")],
        Some(&serde_json::to_vec(&events).unwrap()),
    );
    assert_eq!(posted.status, 202, "{}", posted.text());
    // Key list version 2: a new root; the server's key keeps the index and release roles.
    let server_public = data.join("keys/signing.public.json");
    let roots = dir.join("root-keys");
    ok(&baleen(
        &[
            "keys",
            "generate",
            "--dir",
            roots.to_str().unwrap(),
            "--name",
            "root",
        ],
        &[],
    ));
    let list = dir.join("keys-v2.json");
    ok(&baleen(
        &[
            "keys",
            "list",
            "--app",
            "shop",
            "--version",
            "2",
            "--root",
            roots.join("root.public.json").to_str().unwrap(),
            "--index",
            server_public.to_str().unwrap(),
            "--release",
            server_public.to_str().unwrap(),
            "--sign-with",
            roots.join("root.private.json").to_str().unwrap(),
            "--out",
            list.to_str().unwrap(),
        ],
        &[],
    ));
    ok(&baleen(
        &["keys", "post", list.to_str().unwrap(), "--app", "shop"],
        &env,
    ));
    // Every pack a device of this channel asks for, built and stored, and the precompressed
    // pages (written by the same background jobs) on disk, before the server stops.
    stored_pack(&base, "1.0.0.zip");
    stored_pack(&base, "1.1.0.zip");
    stored_pack(&base, "1.0.0..1.1.0.zip");
    let deadline = Instant::now() + Duration::from_secs(120);
    while blob_files(&data.join("blobs")).1.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the pages were never precompressed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = observe(&base, &env);
    drop(server);
    (Install { data, token }, seen)
}

/// The scaled servers' config: the bucket and the database, the install's key, a data directory
/// of their own.
fn scaled_config(dir: &Path, install: &Install, pg_url: &str) -> PathBuf {
    let file = dir.join("scaled.toml");
    let key = install.data.join("keys/signing.private.json");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nkey = {:?}\n\n[gc]\ninterval_secs = 0\n\n\
             [storage]\nblobs = \"s3://baleen\"\nmeta = {pg_url:?}\n",
            dir.join("scaled").to_str().unwrap(),
            key.to_str().unwrap(),
        ),
    )
    .unwrap();
    file
}

/// Runs `baleen migrate` with the bucket's settings in the environment.
fn migrate(install: &Install, config: &Path, s3: &BTreeMap<String, String>, json: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["migrate", "--data-dir"])
        .arg(&install.data)
        .arg("--to-config")
        .arg(config)
        .envs(s3)
        .env("RUST_LOG", "warn");
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

fn report(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

fn rows(report: &Value) -> BTreeMap<String, u64> {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_owned(),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Row counts of every table in the database, by a connection of the test's own.
fn pg_rows(url: &str) -> BTreeMap<String, i64> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut out = BTreeMap::new();
        for table in server::migrate::TABLES {
            let row = client
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .await;
            // Tables not created yet (no server ever connected) hold nothing.
            out.insert(table.to_owned(), row.map_or(0, |r| r.get(0)));
        }
        out
    })
}

/// What a device and an operator see of the install, to compare before and after.
#[derive(Debug, PartialEq)]
struct Seen {
    index: (Vec<u8>, String),
    delta: Vec<u8>,
    keys: Vec<u8>,
    manifests: BTreeMap<String, Vec<u8>>,
    blobs: BTreeMap<String, Vec<u8>>,
    page_gzip: Vec<u8>,
    packs: BTreeMap<String, (Vec<u8>, String)>,
    history: Value,
    stats: Value,
    releases: Value,
}

fn look(base: &str, env: &[(&str, &str)]) -> Seen {
    let index = get(base, INDEX);
    let etag = index.header("etag").unwrap().to_owned();
    let signed = index.json();
    let mut manifests = BTreeMap::new();
    let mut blobs = BTreeMap::new();
    let mut page_gzip = Vec::new();
    for which in ["stable", "candidate"] {
        let digest = signed["signed"]["packages"]["checkout"][which]["manifest"]
            .as_str()
            .unwrap_or_else(|| panic!("no {which} manifest in {signed}"))
            .to_owned();
        let manifest = get(base, &format!("/v1/manifests/{digest}"));
        for file in manifest.json()["signed"]["files"]
            .as_object()
            .unwrap()
            .values()
        {
            let sha = file["sha256"].as_str().unwrap().to_owned();
            let blob = get(base, &format!("/v1/blobs/{sha}"));
            assert_eq!(Digest::of(&blob.body).to_string(), sha);
            if blob.body.len() > 1024 {
                let gz = request(
                    base,
                    "GET",
                    &format!("/v1/blobs/{sha}"),
                    &[("Accept-Encoding", "gzip")],
                    None,
                );
                assert_eq!(gz.header("content-encoding"), Some("gzip"), "{sha}");
                page_gzip.extend(gz.body);
            }
            blobs.insert(sha, blob.body);
        }
        manifests.insert(digest, manifest.body);
    }
    let packs = ["1.0.0.zip", "1.1.0.zip", "1.0.0..1.1.0.zip"]
        .into_iter()
        .map(|name| {
            let pack = stored_pack(base, name);
            let etag = pack.header("etag").unwrap().to_owned();
            (name.to_owned(), (pack.body, etag))
        })
        .collect();
    let json_of =
        |args: &[&str]| -> Value { serde_json::from_str(&ok(&baleen(args, env))).unwrap() };
    Seen {
        index: (index.body, etag),
        delta: get(base, &format!("{INDEX}/delta/1")).body,
        keys: get(base, "/v1/apps/shop/keys").body,
        manifests,
        blobs,
        page_gzip,
        packs,
        history: json_of(&[
            "history",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--json",
        ]),
        stats: json_of(&[
            "stats",
            "--app",
            "shop",
            "--channel",
            "production",
            "--json",
        ]),
        releases: json_of(&["releases", "--package", "checkout", "--json"]),
    }
}

fn audit(env: &[(&str, &str)]) -> Vec<Value> {
    let out = ok(&baleen(&["audit", "--limit", "10000", "--json"], env));
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn an_embedded_install_moves_to_s3_and_postgres_and_is_served_alike() {
    let Some((garage, postgres)) = services("migrate::an_embedded_install_moves") else {
        return;
    };
    let pg_url = postgres.var("BALEEN_PG_URL").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (install, (before, audit_before)) =
        embedded_install(dir.path(), |base, env| (look(base, env), audit(env)));
    let config = scaled_config(dir.path(), &install, &pg_url);
    let (plain, gzip) = blob_files(&install.data.join("blobs"));

    let first = report(&migrate(&install, &config, &garage.env, true));
    eprintln!("first migration: {first}");
    assert_eq!(first["metadata"], "copied");
    assert_eq!(first["blobs"]["copied"], plain.len() as u64);
    assert_eq!(first["blobs"]["skipped"], 0);
    assert_eq!(first["blobs"]["variants_copied"], gzip.len() as u64);
    let copied_bytes: u64 = plain.iter().map(|p| p.metadata().unwrap().len()).sum();
    assert_eq!(first["blobs"]["copied_bytes"], copied_bytes);
    let tables = rows(&first);
    for (table, expected) in [
        ("packages", 1),
        ("apps", 1),
        ("releases", 2),
        ("channels", 1),
        ("channel_packages", 1),
        ("indexes", 1),
        ("history", 2),
        ("packs", 3),
        // The opens of 1.0.0; the install of 1.1.0 is a device's row.
        ("release_stats", 1),
        ("tokens", 1),
        ("key_lists", 1),
        ("ingest_keys", 1),
        ("release_devices", 2),
    ] {
        assert_eq!(tables[table], expected, "{table} in {first}");
    }
    // Reading the log may be logged too.
    assert!(tables["audit"] >= audit_before.len() as u64);
    let in_pg = pg_rows(&pg_url);
    for (table, n) in &tables {
        assert_eq!(in_pg[table], *n as i64, "{table}");
    }

    // Run again: everything is there, nothing is copied.
    let second = report(&migrate(&install, &config, &garage.env, true));
    assert_eq!(second["metadata"], "already_copied");
    assert_eq!(second["blobs"]["copied"], 0);
    assert_eq!(second["blobs"]["skipped"], plain.len() as u64);
    assert_eq!(second["blobs"]["variants_copied"], 0);
    assert_eq!(second["blobs"]["variants_skipped"], gzip.len() as u64);
    assert_eq!(rows(&second), tables);
    // And people read what it says.
    let said = ok(&migrate(&install, &config, &garage.env, false));
    assert!(
        said.contains("already holds exactly this install's rows"),
        "{said}"
    );

    // The scaled server serves the same bytes under the same ETags, and takes the same token.
    let (scaled, base) = Serve::start(&["--config", config.to_str().unwrap()], &garage.env);
    let env = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", install.token.as_str()),
    ];
    let after = look(&base, &env);
    assert_eq!(after.index, before.index);
    assert_eq!(after.delta, before.delta);
    assert_eq!(after.keys, before.keys);
    assert_eq!(after.manifests, before.manifests);
    assert_eq!(after.blobs, before.blobs);
    assert_eq!(after.page_gzip, before.page_gzip);
    assert_eq!(after.packs, before.packs);
    assert_eq!(after.history, before.history);
    assert_eq!(after.stats, before.stats);
    assert_eq!(after.releases, before.releases);
    // The audit log kept its entries and their order.
    assert_eq!(audit(&env), audit_before);

    // A change on the scaled server continues the history (its ids past the copied ones).
    ok(&baleen(
        &[
            "complete",
            "--package",
            "checkout",
            "--channel",
            "production",
        ],
        &env,
    ));
    let history = ok(&baleen(
        &[
            "history",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--json",
        ],
        &env,
    ));
    let history: Value = serde_json::from_str(&history).unwrap();
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["complete", "rollout", "promote"]);
    // So does the audit log: the change is the newest entry, the copied ones follow.
    let audit_after = audit(&env);
    assert_eq!(audit_after[0]["action"], "complete", "{audit_after:?}");
    assert_eq!(audit_after[1..], audit_before[..]);
    let index = get(&base, INDEX).json();
    let sequence = before.index.0.clone();
    let old: Value = serde_json::from_slice(&sequence).unwrap();
    assert_eq!(
        index["signed"]["sequence"].as_u64(),
        old["signed"]["sequence"].as_u64().map(|s| s + 1)
    );
    drop(scaled);
    // The data directory of the scaled server holds no blob and no database.
    assert!(!dir.path().join("scaled/blobs").exists());
    assert!(!dir.path().join("scaled/meta.sqlite3").exists());
}

#[test]
fn a_damaged_blob_stops_the_copy_before_any_metadata_and_the_run_after_the_repair_resumes() {
    let Some((garage, postgres)) = services("migrate::a_damaged_blob_stops_the_copy") else {
        return;
    };
    let pg_url = postgres.var("BALEEN_PG_URL").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (install, ()) = embedded_install(dir.path(), |_, _| ());
    let config = scaled_config(dir.path(), &install, &pg_url);
    let (plain, _) = blob_files(&install.data.join("blobs"));

    // One bit of the shared script flips on disk.
    let script = b"console.log('shared')";
    let sha = Digest::of(script).to_string();
    let file = install.data.join("blobs").join(&sha[..2]).join(&sha);
    let mut damaged = script.to_vec();
    damaged[0] ^= 1;
    std::fs::write(&file, &damaged).unwrap();

    let err = fails(&migrate(&install, &config, &garage.env, false));
    assert!(
        err.contains(&format!("blob {sha} ({})", file.display()))
            && err.contains(&format!("have sha256 {}", Digest::of(&damaged)))
            && err.contains("no metadata was copied"),
        "{err}"
    );
    assert!(
        pg_rows(&pg_url).values().all(|n| *n == 0),
        "{:?}",
        pg_rows(&pg_url)
    );
    // The damaged file was not uploaded; the others were.
    let s3 = S3Config::from_env("baleen", |k| garage.var(k)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bucket = runtime.block_on(S3BlobStore::open(&s3)).unwrap();
    let digest = Digest::parse(&sha).unwrap();
    assert_eq!(runtime.block_on(bucket.size(&digest)).unwrap(), None);
    let stored = runtime.block_on(bucket.list()).unwrap();
    assert_eq!(stored.len(), plain.len() - 1);

    // Repaired (from a backup, say), the next run copies only that blob; then a row PostgreSQL
    // cannot take, in the fifth table copied, stops the copy and rolls the first four back.
    std::fs::write(&file, script).unwrap();
    let meta = rusqlite::Connection::open(install.data.join("meta.sqlite3")).unwrap();
    meta.execute("UPDATE channel_packages SET paused = 2", [])
        .unwrap();
    let err = fails(&migrate(&install, &config, &garage.env, false));
    assert!(
        err.contains("channel_packages.paused in meta.sqlite3: 2 is not a boolean (0 or 1)"),
        "{err}"
    );
    assert!(
        pg_rows(&pg_url).values().all(|n| *n == 0),
        "{:?}",
        pg_rows(&pg_url)
    );
    assert_eq!(
        runtime.block_on(bucket.size(&digest)).unwrap(),
        Some(script.len() as u64)
    );

    // Repaired too, the next run copies no blob and all the metadata.
    meta.execute("UPDATE channel_packages SET paused = 0", [])
        .unwrap();
    drop(meta);
    let resumed = report(&migrate(&install, &config, &garage.env, true));
    assert_eq!(resumed["metadata"], "copied");
    assert_eq!(resumed["blobs"]["copied"], 0);
    assert_eq!(resumed["blobs"]["skipped"], plain.len() as u64);
    assert_eq!(pg_rows(&pg_url)["releases"], 2);
    assert_eq!(pg_rows(&pg_url)["channel_packages"], 1);
}

#[test]
fn a_database_holding_other_data_is_refused_and_left_unchanged() {
    let Some((garage, postgres)) = services("migrate::a_database_holding_other_data") else {
        return;
    };
    let pg_url = postgres.var("BALEEN_PG_URL").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (install, ()) = embedded_install(dir.path(), |_, _| ());
    let config = scaled_config(dir.path(), &install, &pg_url);
    // Another install's token is in the database already.
    ok(&baleen(
        &[
            "token", "create", "--meta", &pg_url, "--name", "other", "--scope", "admin",
        ],
        &[],
    ));
    let held = pg_rows(&pg_url);

    let err = fails(&migrate(&install, &config, &garage.env, false));
    assert!(
        err.contains("the PostgreSQL database already holds other data (tokens: 1 row there, 1 row in the data directory, with other contents; audit: ")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(pg_rows(&pg_url), held);
    // Refused before any blob went up.
    let s3 = S3Config::from_env("baleen", |k| garage.var(k)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bucket = runtime.block_on(S3BlobStore::open(&s3)).unwrap();
    assert_eq!(runtime.block_on(bucket.list()).unwrap(), []);

    // A target that is not a scaled one is named as such.
    let files = dir.path().join("files.toml");
    std::fs::write(&files, format!("[storage]\nmeta = {pg_url:?}\n")).unwrap();
    let err = fails(&migrate(&install, &files, &garage.env, false));
    assert!(
        err.contains(
            "blobs = \"files\" keeps blobs in a data directory; migrate copies them to a bucket"
        ),
        "{err}"
    );
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[storage]\nblob = \"s3://baleen\"\n").unwrap();
    let err = fails(&migrate(&install, &typo, &garage.env, false));
    assert!(err.contains("unknown setting \"storage.blob\""), "{err}");
}
