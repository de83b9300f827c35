//! Crash safety: `kill -9` the real server at many moments of a publish or of a channel change,
//! then check that the data directory holds either no release or a complete one, that no index
//! names a release whose manifest or blobs are missing, and that a channel change is whole or
//! absent; and at many moments of a garbage collection (with a publish racing it), then check that
//! every release kept, and every release and pack stored, is complete, and that the server serves
//! it. `scripts/soak` runs the first with `BALEEN_SOAK_KILLS` kills instead of 40.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use manifests::{Digest, KeyPair, TrustedKeys, verify_index, verify_release};
use server::blob_store::fs::FsBlobStore;
use server::meta_store::MetaStore;
use server::meta_store::sqlite::SqliteMetaStore;
use server::service::{Service, Settings};

const BIN: &str = env!("CARGO_BIN_EXE_baleen");
/// Kills in the normal suite; `scripts/soak` asks for more with `BALEEN_SOAK_KILLS`.
const ITERATIONS: u64 = 40;

fn soak_kills(default: u64) -> u64 {
    std::env::var("BALEEN_SOAK_KILLS").map_or(default, |kills| {
        kills
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("BALEEN_SOAK_KILLS={kills:?} is not a positive number"))
    })
}

fn now() -> manifests::Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    manifests::Timestamp::from_unix_secs(secs)
}

fn start(data: &Path) -> (Child, String) {
    start_with(data, &[])
}

fn start_with(data: &Path, flags: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(flags)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_owned();
    (child, addr)
}

/// A build of 60 files, about 1.5 MB, different for each iteration.
fn build_zip(iteration: u64) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut x = iteration.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    writer.start_file("index.html", options).unwrap();
    writer
        .write_all(format!("<h1>build {iteration}</h1>").as_bytes())
        .unwrap();
    for f in 0..60 {
        writer
            .start_file(format!("assets/chunk-{f}.js"), options)
            .unwrap();
        let bytes: Vec<u8> = (0..25_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// Sends a publish and returns without waiting for the answer.
fn send_publish(addr: &str, token: &str, version: &str, zip: &[u8]) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/admin/apps/shop/packages/checkout/releases?version={version}&channel=production&create_channel=true\
         &routes=https://m.example.com/checkout/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/zip\r\nContent-Length: {}\r\n\r\n",
        zip.len()
    );
    // The server may die while we write: that is the point.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(zip));
    stream
}

/// What [`check_consistent`] saw: the production index's sequence and stable version, and how
/// many releases are stored.
struct Seen {
    sequence: u64,
    stable: Option<String>,
    releases: usize,
}

/// Starts making the release `version` stable on production; the answer is left in the stream.
fn send_promote(addr: &str, token: &str, version: &str) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let body = format!(r#"{{"action":"promote","version":"{version}","reason":"soak"}}"#);
    let request = format!(
        "POST /v1/admin/packages/checkout/channels/production HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The server may die while we write: that is the point.
    let _ = stream.write_all(request.as_bytes());
    stream
}

/// Everything an index names exists and verifies; every stored release is complete. Releases in
/// `verified` were checked before (stored releases never change) and are not read again.
fn check_consistent(
    data: &Path,
    key: &KeyPair,
    rt: &tokio::runtime::Runtime,
    verified: &mut std::collections::BTreeSet<Digest>,
) -> Seen {
    let trusted = &TrustedKeys::single(key.public().clone());
    let meta = SqliteMetaStore::open(&data.join("meta.sqlite3")).unwrap();
    let blob_ok = |digest: &Digest, size: u64| {
        let hex = digest.to_string();
        let bytes = std::fs::read(data.join("blobs").join(&hex[..2]).join(&hex))
            .unwrap_or_else(|e| panic!("blob {hex} missing: {e}"));
        assert_eq!(bytes.len() as u64, size, "blob {hex} size");
        assert_eq!(Digest::of(&bytes), *digest, "blob {hex} content");
    };
    let package = manifests::PackageId::parse("checkout").unwrap();
    let releases = rt.block_on(meta.releases(&package)).unwrap();
    for record in &releases {
        if verified.contains(&record.manifest_digest) {
            continue;
        }
        let release =
            verify_release(&record.manifest, trusted, Some(&record.manifest_digest)).unwrap();
        for file in release.release.files.values() {
            blob_ok(&file.sha256, file.size);
        }
        verified.insert(record.manifest_digest);
    }
    let mut sequence = 0;
    let mut stable = None;
    // The index as a server over this directory signs it on the first request.
    let staging = tempfile::tempdir().unwrap();
    let service = Service::new(
        Arc::new(FsBlobStore::open(data.join("blobs")).unwrap()),
        Arc::new(SqliteMetaStore::open(&data.join("meta.sqlite3")).unwrap()),
        key.clone(),
        Settings::new(staging.path().join("tmp")),
    )
    .unwrap();
    for (app, channel) in rt.block_on(meta.channels()).unwrap() {
        let index = rt.block_on(service.index(&app, &channel)).unwrap().unwrap();
        let scope = manifests::IndexScope { app, channel };
        let signed = verify_index(&index.identity.body, trusted, &scope, now(), 0).unwrap();
        sequence = signed.index.sequence;
        stable = signed
            .index
            .packages
            .get(&package)
            .and_then(|entry| entry.stable.as_ref())
            .map(|r| r.version.to_string());
        for entry in signed.index.packages.values() {
            for named in entry.releases() {
                let record = releases
                    .iter()
                    .find(|r| r.manifest_digest == named.manifest)
                    .unwrap_or_else(|| panic!("index names unknown release {}", named.version));
                assert_eq!(record.version, named.version);
            }
        }
    }
    Seen {
        sequence,
        stable,
        releases: releases.len(),
    }
}

#[test]
fn kill_9_at_any_moment_of_a_publish_leaves_no_release_or_a_complete_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "keys",
        "generate",
        "--dir",
        data.join("keys").to_str().unwrap(),
    ]);
    let token = run(&[
        "token",
        "create",
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "ci",
        "--scope",
        "admin",
    ]);
    let token = token.trim();
    let key =
        KeyPair::from_file_bytes(&std::fs::read(data.join("keys/signing.private.json")).unwrap())
            .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Calibrate: how long do one publish and one channel change take on this machine?
    let (mut server, addr) = start(&data);
    let started = Instant::now();
    let mut stream = send_publish(&addr, token, "0.0.1", &build_zip(0));
    let mut answer = String::new();
    BufReader::new(&mut stream).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let full = started.elapsed();
    let mut stream = send_publish(&addr, token, "0.0.2", &build_zip(u64::MAX));
    let mut answer = String::new();
    BufReader::new(&mut stream).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let started = Instant::now();
    let mut stream = send_promote(&addr, token, "0.0.1");
    let mut answer = String::new();
    BufReader::new(&mut stream).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let change = started.elapsed();
    server.kill().unwrap();
    server.wait().unwrap();

    let iterations = soak_kills(ITERATIONS);
    let mut verified = std::collections::BTreeSet::new();
    let mut published = vec!["0.0.1".to_owned(), "0.0.2".to_owned()];
    let seen = check_consistent(&data, &key, &rt, &mut verified);
    assert_eq!(seen.stable.as_deref(), Some("0.0.1"));
    let (mut complete, mut last_sequence, mut stable) = (seen.releases, seen.sequence, seen.stable);
    let (mut changes, mut changed) = (0, 0);
    for i in 1..=iterations {
        let (mut server, addr) = start(&data);
        // Left-overs of the previous crash are gone once the server is up.
        assert_eq!(
            std::fs::read_dir(data.join("tmp"))
                .map(|d| d.count())
                .unwrap_or(0),
            0,
            "tmp not cleared"
        );
        // Kill at a moment spread over the whole publish or change, a little beyond it too.
        let spread = i as f64 / iterations as f64 * 1.2;
        // Every fourth round changes the channel instead: promote an earlier release.
        let (target, delay, _stream) = if i % 4 == 0 {
            let target = published[(i as usize / 4) % published.len()].clone();
            changes += 1;
            (
                target.clone(),
                change.mul_f64(spread),
                send_promote(&addr, token, &target),
            )
        } else {
            let version = format!("1.0.{i}");
            let stream = send_publish(&addr, token, &version, &build_zip(i));
            (version, full.mul_f64(spread), stream)
        };
        std::thread::sleep(delay.min(Duration::from_secs(5)));
        server.kill().unwrap();
        server.wait().unwrap();

        let seen = check_consistent(&data, &key, &rt, &mut verified);
        assert!(
            seen.sequence >= last_sequence,
            "iteration {i}: sequence went back from {last_sequence} to {}",
            seen.sequence
        );
        last_sequence = seen.sequence;
        // The publish (made stable) or the change is there whole, or not at all.
        assert!(
            seen.stable == stable || seen.stable.as_deref() == Some(target.as_str()),
            "iteration {i}: stable {:?}, was {stable:?}, asked for {target}",
            seen.stable
        );
        if i % 4 == 0 {
            assert_eq!(
                seen.releases, complete,
                "iteration {i}: a change stored a release"
            );
            changed += usize::from(seen.stable != stable);
        } else {
            assert!(
                seen.releases == complete || seen.releases == complete + 1,
                "iteration {i}: {} releases",
                seen.releases
            );
            if seen.releases > complete {
                published.push(target);
            }
        }
        complete = seen.releases;
        stable = seen.stable;
    }
    eprintln!(
        "{iterations} kills over a {full:?} publish or a {change:?} channel change: {complete} \
         releases stored, {changed} of {changes} changes made, all consistent"
    );
    assert!(
        complete > 2 && complete < iterations as usize + 2,
        "kills should land both before and after commit"
    );

    // After all that, the server publishes normally, and a retried version is accepted again.
    let (mut server, addr) = start(&data);
    let mut stream = send_publish(&addr, token, "1.0.1", &build_zip(1));
    let mut answer = String::new();
    BufReader::new(&mut stream).read_line(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 201"),
        "{answer}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    check_consistent(&data, &key, &rt, &mut verified);
}

/// The files of a build: 80 small ones of its own and 20 that every build shares, so that
/// collecting one removes many blob files.
fn small_files(seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "index.html".to_owned(),
        format!("<h1>build {seed}</h1>").into_bytes(),
    )];
    for f in 0..100 {
        let owner = if f < 20 { u64::MAX } else { seed };
        let text = format!("export const part{f} = '{owner}';\n").repeat(10);
        files.push((format!("assets/part-{f}.js"), text.into_bytes()));
    }
    files
}

fn small_build(seed: u64) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (path, bytes) in small_files(seed) {
        writer.start_file(path, options).unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// How many blobs only the build `seed` holds (its page and its own 80 parts) are still stored.
fn own_blobs_left(data: &Path, seed: u64) -> usize {
    small_files(seed)
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || *i > 20)
        .map(|(_, (_, bytes))| Digest::of(bytes).to_string())
        .filter(|hex| data.join("blobs").join(&hex[..2]).join(hex).exists())
        .count()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A request that waits for its answer: the status and body.
fn call(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> (u16, Vec<u8>) {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("Authorization", format!("Bearer {token}"));
    if let Some((kind, _)) = body {
        request = request.header("Content-Type", kind);
    }
    let response = match body {
        Some((_, bytes)) => agent().run(request.body(bytes.to_vec()).unwrap()),
        None => agent().run(request.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().read_to_vec().unwrap();
    (status, body)
}

fn publish_path(version: &str, channel: bool) -> String {
    let channel = if channel {
        "&channel=production&create_channel=true"
    } else {
        ""
    };
    format!(
        "/v1/admin/apps/shop/packages/checkout/releases?version={version}\
         &routes=https://m.example.com/checkout/{channel}"
    )
}

/// Sends a request and returns without waiting for the answer.
fn send(addr: &str, token: &str, path: &str, kind: &str, body: &[u8]) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The server may die while we write: that is the point.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    stream
}

/// What a kill left: every stored release complete (manifest verified, every blob present with
/// its size and sha256), every stored pack present, every release in `kept` stored, and every
/// index naming stored releases. Returns the stored versions and the blob files nothing refers
/// to.
fn check_stored(
    data: &Path,
    key: &KeyPair,
    rt: &tokio::runtime::Runtime,
    kept: &[String],
) -> (Vec<String>, usize) {
    let trusted = &TrustedKeys::single(key.public().clone());
    let meta = SqliteMetaStore::open(&data.join("meta.sqlite3")).unwrap();
    let blob_file = |digest: &Digest| {
        let hex = digest.to_string();
        data.join("blobs").join(&hex[..2]).join(&hex)
    };
    let check_blob = |digest: &Digest, what: &str| {
        let bytes = std::fs::read(blob_file(digest))
            .unwrap_or_else(|e| panic!("{what}: blob {digest} missing: {e}"));
        assert_eq!(Digest::of(&bytes), *digest, "{what}: blob {digest} content");
        bytes.len() as u64
    };
    let package = manifests::PackageId::parse("checkout").unwrap();
    let releases = rt.block_on(meta.releases(&package)).unwrap();
    let mut referenced = std::collections::BTreeSet::new();
    for record in &releases {
        let what = format!("checkout@{}", record.version);
        let verified = verify_release(&record.manifest, trusted, Some(&record.manifest_digest))
            .unwrap_or_else(|e| panic!("{what}: manifest: {e}"));
        for file in verified.release.files.values() {
            assert_eq!(check_blob(&file.sha256, &what), file.size, "{what}: size");
            referenced.insert(file.sha256);
        }
    }
    let versions: Vec<String> = releases.iter().map(|r| r.version.to_string()).collect();
    for version in kept {
        assert!(versions.contains(version), "kept release {version} is gone");
    }
    for pack in rt.block_on(meta.retention_facts()).unwrap().packs {
        check_blob(&pack.digest, &format!("pack to {}", pack.to));
        referenced.insert(pack.digest);
    }
    for (app, channel) in rt.block_on(meta.channels()).unwrap() {
        let rows = rt
            .block_on(meta.channel_rows(&app, &channel))
            .unwrap()
            .unwrap()
            .1;
        for row in rows {
            for named in row.entry.iter().flat_map(|e| e.releases()) {
                assert!(
                    versions.contains(&named.version.to_string()),
                    "{app}/{channel} names {} which is gone",
                    named.version
                );
            }
        }
    }
    let mut unreferenced = 0;
    for shard in std::fs::read_dir(data.join("blobs")).unwrap() {
        let shard = shard.unwrap().path();
        if shard.file_name().unwrap() == "tmp" {
            continue;
        }
        for file in std::fs::read_dir(&shard).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            let hex = name.split('.').next().unwrap();
            if !referenced.contains(&Digest::parse(hex).unwrap()) {
                unreferenced += 1;
            }
        }
    }
    (versions, unreferenced)
}

/// Every stored release's manifest and blobs, and every stored pack, over HTTP.
fn check_served(data: &Path, addr: &str, token: &str, rt: &tokio::runtime::Runtime) {
    let meta = SqliteMetaStore::open(&data.join("meta.sqlite3")).unwrap();
    let package = manifests::PackageId::parse("checkout").unwrap();
    for record in rt.block_on(meta.releases(&package)).unwrap() {
        let (status, manifest) = call(
            addr,
            token,
            "GET",
            &format!("/v1/manifests/{}", record.manifest_digest),
            None,
        );
        assert_eq!(status, 200, "manifest of {}", record.version);
        assert_eq!(manifest, record.manifest);
        let release = server_release(&record);
        for file in release.files.values() {
            let (status, bytes) = call(
                addr,
                token,
                "GET",
                &format!("/v1/blobs/{}", file.sha256),
                None,
            );
            assert_eq!(status, 200, "{}: blob {}", record.version, file.sha256);
            assert_eq!(Digest::of(&bytes), file.sha256);
        }
    }
    for pack in rt.block_on(meta.retention_facts()).unwrap().packs {
        let name = match &pack.from {
            Some(from) => format!("{from}..{}.zip", pack.to),
            None => format!("{}.zip", pack.to),
        };
        let (status, bytes) = call(
            addr,
            token,
            "GET",
            &format!("/v1/packs/checkout/{name}"),
            None,
        );
        assert_eq!(status, 200, "pack {name}");
        assert_eq!(Digest::of(&bytes), pack.digest, "pack {name}");
    }
}

fn server_release(record: &server::meta_store::ReleaseRecord) -> manifests::Release {
    let envelope = manifests::parse_strict(&record.manifest).unwrap();
    let signed = manifests::to_canonical_bytes(&envelope["signed"]).unwrap();
    manifests::parse_release_unverified(&signed).unwrap()
}

#[test]
fn kill_9_at_any_moment_of_a_collection_leaves_every_kept_release_complete() {
    const ROUNDS: u64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "keys",
        "generate",
        "--dir",
        data.join("keys").to_str().unwrap(),
    ]);
    let token = run(&[
        "token",
        "create",
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "ops",
        "--scope",
        "admin",
    ]);
    let token = token.trim();
    let key =
        KeyPair::from_file_bytes(&std::fs::read(data.join("keys/signing.private.json")).unwrap())
            .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Each round promotes one release and publishes two more: the collection removes the
    // previous round's three (the stable release replaced, and two no longer the highest).
    let flags = [
        "--gc-interval-secs",
        "0",
        "--gc-max-age-secs",
        "0",
        "--gc-dev-max-age-secs",
        "0",
        "--gc-history-depth",
        "1",
        "--gc-keep-last",
        "2",
    ];
    let publish_round = |addr: &str, round: u64| {
        for (minor, channel) in [(1, true), (2, false), (3, false)] {
            let version = format!("{round}.{minor}.0");
            let (status, body) = call(
                addr,
                token,
                "POST",
                &publish_path(&version, channel),
                Some(("application/zip", &small_build(round * 10 + minor))),
            );
            assert_eq!(status, 201, "{version}: {}", String::from_utf8_lossy(&body));
        }
        vec![
            format!("{round}.1.0"),
            format!("{round}.2.0"),
            format!("{round}.3.0"),
        ]
    };
    let collect = |addr: &str| {
        let (status, body) = call(
            addr,
            token,
            "POST",
            "/v1/admin/gc",
            Some(("application/json", b"{}")),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };

    // Calibrate: how long does a collection of one round take here?
    let (mut server, addr) = start_with(&data, &flags);
    publish_round(&addr, 0);
    publish_round(&addr, 1);
    let started = Instant::now();
    let report = collect(&addr);
    let full = started.elapsed().max(Duration::from_millis(5));
    assert_eq!(report["releases"].as_array().unwrap().len(), 3, "{report}");
    server.kill().unwrap();
    server.wait().unwrap();

    // Kill moments spread over 0 to 2 collections, in a random order.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("kill moments shuffled with seed {seed}");
    let mut x = seed;
    let mut moments: Vec<u64> = (2..ROUNDS).collect();
    for i in (1..moments.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        moments.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let (mut before, mut during, mut after) = (0, 0, 0);
    let mut previous = vec!["1.1.0".to_owned(), "1.2.0".to_owned(), "1.3.0".to_owned()];
    for (round, moment) in (2..ROUNDS).zip(moments) {
        let (mut server, addr) = start_with(&data, &flags);
        let kept = publish_round(&addr, round);
        // A publish races the collection, half of the time with the files of a release being
        // collected (its blobs found stored, or stored again).
        let racing = small_build((round - 1) * 10 + 2);
        let _publish = (round % 2 == 0).then(|| {
            send(
                &addr,
                token,
                &publish_path(&format!("{round}.0.5"), false),
                "application/zip",
                &racing,
            )
        });
        let _gc = send(&addr, token, "/v1/admin/gc", "application/json", b"{}");
        std::thread::sleep(full.mul_f64(2.0 * (moment - 2) as f64 / (ROUNDS - 2) as f64));
        server.kill().unwrap();
        server.wait().unwrap();

        let (versions, _) = check_stored(&data, &key, &rt, &kept);
        let removed = previous.iter().filter(|v| !versions.contains(v)).count();
        // The racing publish may store the second build's blobs again: count the others'.
        let left = own_blobs_left(&data, (round - 1) * 10 + 1)
            + own_blobs_left(&data, (round - 1) * 10 + 3);
        match (removed, left) {
            (0, _) => before += 1,
            (_, 0) => after += 1,
            _ => during += 1,
        }
        previous = kept;
        if round % 5 == 0 {
            let (mut server, addr) = start_with(&data, &flags);
            check_served(&data, &addr, token, &rt);
            server.kill().unwrap();
            server.wait().unwrap();
        }
    }
    eprintln!(
        "{} kills over a {full:?} collection: {before} before it removed a release, {during} \
         while it removed blobs, {after} after",
        ROUNDS - 2
    );
    assert!(
        before > 0 && during + after > 0,
        "kills should land both before and after the commit"
    );

    // A collection run to its end removes whatever the kills left, and everything kept is
    // served.
    let (mut server, addr) = start_with(&data, &flags);
    collect(&addr);
    let (versions, unreferenced) = check_stored(&data, &key, &rt, &previous);
    assert_eq!(unreferenced, 0, "blobs nothing refers to are left");
    assert_eq!(versions.len(), 3, "{versions:?}");
    check_served(&data, &addr, token, &rt);
    server.kill().unwrap();
    server.wait().unwrap();
}
