//! Crash safety of publishing: `kill -9` the real server at many moments of a publish, then check
//! that the data directory holds either no release or a complete one, and that no index names a
//! release whose manifest or blobs are missing.

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
const ITERATIONS: u64 = 40;

fn now() -> manifests::Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    manifests::Timestamp::from_unix_secs(secs)
}

fn start(data: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
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

/// Everything an index names exists and verifies; every stored release is complete.
fn check_consistent(data: &Path, key: &KeyPair, rt: &tokio::runtime::Runtime) -> (u64, usize) {
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
        let verified =
            verify_release(&record.manifest, trusted, Some(&record.manifest_digest)).unwrap();
        for file in verified.release.files.values() {
            blob_ok(&file.sha256, file.size);
        }
    }
    let mut sequence = 0;
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
        let verified = verify_index(&index.identity.body, trusted, &scope, now(), 0).unwrap();
        sequence = verified.index.sequence;
        for entry in verified.index.packages.values() {
            for named in entry.releases() {
                let record = releases
                    .iter()
                    .find(|r| r.manifest_digest == named.manifest)
                    .unwrap_or_else(|| panic!("index names unknown release {}", named.version));
                assert_eq!(record.version, named.version);
            }
        }
    }
    (sequence, releases.len())
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

    // Calibrate: how long does one publish take on this machine?
    let (mut server, addr) = start(&data);
    let started = Instant::now();
    let mut stream = send_publish(&addr, token, "0.0.1", &build_zip(0));
    let mut answer = String::new();
    BufReader::new(&mut stream).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let full = started.elapsed();
    server.kill().unwrap();
    server.wait().unwrap();

    let mut complete = 1;
    let mut last_sequence = check_consistent(&data, &key, &rt).0;
    for i in 1..=ITERATIONS {
        let (mut server, addr) = start(&data);
        // Left-overs of the previous crash are gone once the server is up.
        assert_eq!(
            std::fs::read_dir(data.join("tmp"))
                .map(|d| d.count())
                .unwrap_or(0),
            0,
            "tmp not cleared"
        );
        let zip = build_zip(i);
        let version = format!("1.0.{i}");
        let _stream = send_publish(&addr, token, &version, &zip);
        // Kill at a moment spread over the whole publish, a little beyond it too.
        let delay = full.mul_f64(i as f64 / ITERATIONS as f64 * 1.2);
        std::thread::sleep(delay.min(Duration::from_secs(5)));
        server.kill().unwrap();
        server.wait().unwrap();

        let (sequence, releases) = check_consistent(&data, &key, &rt);
        assert!(
            sequence >= last_sequence,
            "sequence went back from {last_sequence} to {sequence}"
        );
        last_sequence = sequence;
        assert!(
            releases == complete || releases == complete + 1,
            "iteration {i}: {releases} releases"
        );
        complete = releases;
    }
    eprintln!(
        "{ITERATIONS} kills over a {full:?} publish: {complete} releases completed, all consistent"
    );
    assert!(
        complete > 1 && complete <= ITERATIONS as usize,
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
    check_consistent(&data, &key, &rt);
}
