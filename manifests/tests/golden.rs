//! Golden vectors: the files under `tests/data/` pin every format and every shared function, so a
//! change that would make an old device or a port in another language disagree fails here.
//!
//! Generated files are rewritten with `UPDATE_EXPECT=1` only when a change is intended; files of a
//! shipped format version must keep verifying forever.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use expect_test::expect_file;
use manifests::*;
use serde_json::{Value, json};

fn data(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn canonical_json_cases() {
    let cases = data("canonical-json.json");
    for case in cases["valid"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let canonical = canonicalize(input.as_bytes()).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            case["canonical"].as_str().unwrap(),
            "{input}"
        );
    }
    for case in cases["invalid"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let err = canonicalize(input.as_bytes()).expect_err(input);
        assert_eq!(err.code(), "invalid_json", "{input}: {err}");
    }
}

#[test]
fn path_cases() {
    let cases = data("paths.json");
    for path in cases["valid"].as_array().unwrap() {
        let path = path.as_str().unwrap();
        assert_eq!(RelPath::parse(path).unwrap().as_str(), path);
    }
    for case in cases["invalid"].as_array().unwrap() {
        let path = case["path"].as_str().unwrap();
        let err = RelPath::parse(path).expect_err(path);
        assert_eq!(err.code(), "invalid_path", "{path:?}");
    }
    let list = |v: &Value| -> Vec<RelPath> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| RelPath::parse(p.as_str().unwrap()).unwrap())
            .collect()
    };
    for case in cases["collisions"].as_array().unwrap() {
        let err = check_collisions(&list(case)).expect_err(&case.to_string());
        assert_eq!(err.code(), "path_collision");
    }
    for case in cases["compatible"].as_array().unwrap() {
        check_collisions(&list(case)).unwrap();
    }
}

#[test]
fn signature_vectors() {
    let mut vectors = Vec::new();
    for (n, message) in [(1u8, &b""[..]), (1, b"baleen"), (2, b"{\"a\":1}")] {
        let k = key(n);
        let seed = Digest::of(format!("baleen test key {n}").as_bytes());
        vectors.push(json!({
            "seed": seed.to_string(),
            "public": k.public().to_hex(),
            "keyid": k.id().to_string(),
            "message_utf8": String::from_utf8(message.to_vec()).unwrap(),
            "signature": k.sign(message).iter().map(|b| format!("{b:02x}")).collect::<String>(),
        }));
    }
    expect_file!["data/signature-vectors.json"].assert_eq(&pretty(&Value::Array(vectors.clone())));
    // And the other way round: every stored vector verifies.
    for v in data("signature-vectors.json").as_array().unwrap() {
        let public = PublicKey::from_hex(v["public"].as_str().unwrap()).unwrap();
        assert_eq!(public.id().to_string(), v["keyid"].as_str().unwrap());
        let sig_hex = v["signature"].as_str().unwrap();
        let mut sig = [0u8; 64];
        for (i, byte) in sig.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&sig_hex[2 * i..2 * i + 2], 16).unwrap();
        }
        assert!(public.verifies(v["message_utf8"].as_str().unwrap().as_bytes(), &sig));
    }
}

#[test]
fn test_key_files() {
    let k = key(1);
    expect_file!["data/keys/test-key-1.private.json"]
        .assert_eq(&(String::from_utf8(k.to_file_bytes()).unwrap() + "\n"));
    expect_file!["data/keys/test-key-1.public.json"]
        .assert_eq(&(String::from_utf8(k.public().to_file_bytes()).unwrap() + "\n"));
}

#[test]
fn bucket_vectors() {
    let package = PackageId::parse("checkout").unwrap();
    let mut vectors = Vec::new();
    for device in [
        "",
        "device-1",
        "device-2",
        "a1b2c3d4-e5f6-4711-8899-aabbccddeeff",
        "设备",
    ] {
        for version in ["1.0.0", "1.4.0", "2.0.0-rc.1"] {
            let v = ReleaseVersion::parse(version).unwrap();
            vectors.push(json!({
                "device_id": device,
                "package": package.as_str(),
                "version": version,
                "bucket": rollout::bucket(device, &package, &v),
            }));
        }
    }
    expect_file!["data/bucket-vectors.json"].assert_eq(&pretty(&Value::Array(vectors)));
    for v in data("bucket-vectors.json").as_array().unwrap() {
        let package = PackageId::parse(v["package"].as_str().unwrap()).unwrap();
        let version = ReleaseVersion::parse(v["version"].as_str().unwrap()).unwrap();
        assert_eq!(
            u64::from(rollout::bucket(
                v["device_id"].as_str().unwrap(),
                &package,
                &version
            )),
            v["bucket"].as_u64().unwrap()
        );
    }
}

fn golden_release() -> Release {
    release(
        "1.4.0",
        "index.html=<h1>checkout</h1> assets/index-4f9a2c1e.js=app assets/index-77aa01bc.css=css \
         img/logo.png=png",
    )
}

#[test]
fn release_manifest_v1() {
    let k = key(1);
    let doc = golden_release().sign(&[&k]).unwrap();
    expect_file!["data/release-v1.json"].assert_eq(&(String::from_utf8(doc.bytes).unwrap() + "\n"));

    let stored = std::fs::read(format!(
        "{}/tests/data/release-v1.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let verified = verify_release(&stored, &TrustedKeys::single(k.public().clone()), None).unwrap();
    assert_eq!(verified.release, golden_release());
    assert_eq!(verified.digest, doc.digest);
}

fn golden_index() -> Index {
    let k = key(1);
    let stable = release_ref(&golden_release(), &[&k]);
    let candidate = release_ref(&release("1.5.0", "index.html=<h1>checkout-1.5</h1>"), &[&k]);
    let mut index = index(42, stable, Some((candidate, 2_500)));
    let old = Release {
        requires: HostRequirement::parse(">=4, <5.2").unwrap(),
        ..release("1.2.3", "index.html=<h1>old</h1>")
    };
    index
        .packages
        .values_mut()
        .for_each(|e| e.older = vec![release_ref(&old, &[&k])]);
    let search = Release {
        package: PackageId::parse("search").unwrap(),
        ..release("0.9.0", "index.html=<h1>search</h1>")
    };
    index.packages.insert(
        search.package.clone(),
        PackageEntry {
            priority: 0,
            prefetch: Prefetch::default(),
            stable: Some(release_ref(&search, &[&k])),
            candidate: None,
            older: Vec::new(),
        },
    );
    index
}

#[test]
fn index_v1_with_a_staged_candidate() {
    let k = key(1);
    let doc = golden_index().sign(&[&k]).unwrap();
    expect_file!["data/index-v1-staged.json"]
        .assert_eq(&(String::from_utf8(doc.bytes).unwrap() + "\n"));

    let stored = std::fs::read(format!(
        "{}/tests/data/index-v1-staged.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let verified = verify_index(
        &stored,
        &TrustedKeys::single(k.public().clone()),
        &scope(),
        now(),
        41,
    )
    .unwrap();
    assert_eq!(verified.index, golden_index());
    let checkout = &verified.index.packages[&PackageId::parse("checkout").unwrap()];
    assert_eq!(
        checkout.candidate.as_ref().unwrap().rollout_basis_points,
        2_500
    );

    // Which devices get what, pinned for ports: by host version and device id.
    let mut table = BTreeMap::new();
    for host in ["4.1", "5.2", "6.0.1", "7.0"] {
        for device in (1..=12).map(|n| format!("device-{n}")) {
            let host_version = HostVersion::parse(host).unwrap();
            let chosen = select_all(&verified.index, &host_version, &device)
                .into_iter()
                .map(|(p, s)| format!("{p}={} ({:?})", s.release.version, s.reason))
                .collect::<Vec<_>>()
                .join(", ");
            table.insert(format!("host {host} {device}"), chosen);
        }
    }
    assert!(
        table.values().any(|s| s.contains("1.5.0 (Candidate)")),
        "some device is in the 25 % rollout"
    );
    expect_file!["data/index-v1-staged.selections.json"].assert_eq(&pretty(&json!(table)));
}
