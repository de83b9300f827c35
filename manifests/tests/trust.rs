//! Signing and verification: every way a document can be refused has its own error.
//! (THREATS.md #2 forged manifest, #3 replay, #5 freeze, #6 mix-and-match, #20 threshold.)

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use manifests::*;
use serde_json::Value;

fn signed_index(keys: &[&KeyPair]) -> SignedDocument {
    let r1 = release("1.0.0", "index.html=<h1>1 app.js=one");
    index(7, release_ref(&r1, keys), None).sign(keys).unwrap()
}

fn verify(bytes: &[u8], trusted: &TrustedKeys) -> Result<VerifiedIndex> {
    verify_index(bytes, trusted, &scope(), now(), 0)
}

fn envelope(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[test]
fn a_signed_index_verifies_and_its_digest_is_the_signed_part() {
    let k = key(1);
    let doc = signed_index(&[&k]);
    let verified = verify(&doc.bytes, &TrustedKeys::single(k.public().clone())).unwrap();
    assert_eq!(verified.index.sequence, 7);
    assert_eq!(verified.digest, doc.digest);
    let signed = envelope(&doc.bytes)["signed"].clone();
    assert_eq!(
        verified.digest,
        Digest::of(&to_canonical_bytes(&signed).unwrap())
    );
}

#[test]
fn layout_does_not_matter_but_content_does() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let doc = signed_index(&[&k]);
    // Pretty-printed and with keys reordered, it still verifies: signatures cover canonical bytes.
    let pretty = serde_json::to_vec_pretty(&envelope(&doc.bytes)).unwrap();
    assert_eq!(verify(&pretty, &trusted).unwrap().digest, doc.digest);
    // Any change to the signed content breaks it.
    let mut changed = envelope(&doc.bytes);
    changed["signed"]["sequence"] = Value::from(8);
    assert_eq!(
        verify(&bytes(&changed), &trusted).unwrap_err().code(),
        "bad_signature"
    );
}

#[test]
fn no_signature_is_refused() {
    let k = key(1);
    let mut doc = envelope(&signed_index(&[&k]).bytes);
    doc["signatures"] = Value::Array(vec![]);
    let err = verify(&bytes(&doc), &TrustedKeys::single(k.public().clone())).unwrap_err();
    assert_eq!(err, Error::Unsigned);
}

#[test]
fn a_signature_by_an_unknown_key_is_refused() {
    let (signer, trusted) = (key(2), key(1));
    let err = verify(
        &signed_index(&[&signer]).bytes,
        &TrustedKeys::single(trusted.public().clone()),
    )
    .unwrap_err();
    assert_eq!(err.code(), "untrusted_signer");
    assert!(err.to_string().contains(&signer.id().to_string()), "{err}");
}

#[test]
fn a_valid_signature_over_other_bytes_is_refused() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let doc = envelope(&signed_index(&[&k]).bytes);
    let r2 = release("2.0.0", "index.html=<h1>2");
    let other = envelope(
        &index(9, release_ref(&r2, &[&k]), None)
            .sign(&[&k])
            .unwrap()
            .bytes,
    );
    let mut spliced = other.clone();
    spliced["signatures"] = doc["signatures"].clone();
    assert_eq!(
        verify(&bytes(&spliced), &trusted).unwrap_err(),
        Error::BadSignature { keyid: k.id() }
    );
}

#[test]
fn one_key_signing_twice_does_not_meet_a_threshold_of_two() {
    let (a, b) = (key(1), key(2));
    let trusted = trust(&[&a, &b], 2);
    let mut doc = envelope(&signed_index(&[&a]).bytes);
    let sig = doc["signatures"][0].clone();
    doc["signatures"] = Value::Array(vec![sig.clone(), sig]);
    assert_eq!(
        verify(&bytes(&doc), &trusted).unwrap_err(),
        Error::DuplicateSignature { keyid: a.id() }
    );
}

#[test]
fn thresholds_count_distinct_trusted_keys() {
    let (a, b, c) = (key(1), key(2), key(3));
    let two_of_two = trust(&[&a, &b], 2);
    assert_eq!(
        verify(&signed_index(&[&a]).bytes, &two_of_two).unwrap_err(),
        Error::ThresholdNotMet {
            valid: 1,
            threshold: 2
        }
    );
    // An extra signature by an untrusted key neither helps nor hurts.
    assert_eq!(
        verify(&signed_index(&[&a, &c]).bytes, &two_of_two).unwrap_err(),
        Error::ThresholdNotMet {
            valid: 1,
            threshold: 2
        }
    );
    assert!(verify(&signed_index(&[&a, &b]).bytes, &two_of_two).is_ok());
    assert!(verify(&signed_index(&[&c, &b, &a]).bytes, &two_of_two).is_ok());
    assert!(TrustedKeys::new([a.public().clone()], 2).is_err());
    assert!(TrustedKeys::new([a.public().clone()], 0).is_err());
    // The same key listed twice is one key.
    assert!(TrustedKeys::new([a.public().clone(), a.public().clone()], 2).is_err());
}

#[test]
fn malformed_signatures_are_refused() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let mut doc = envelope(&signed_index(&[&k]).bytes);
    doc["signatures"][0]["sig"] = Value::from("00");
    assert_eq!(
        verify(&bytes(&doc), &trusted).unwrap_err(),
        Error::MalformedSignature { keyid: k.id() }
    );
    let mut doc = envelope(&signed_index(&[&k]).bytes);
    doc["signatures"][0]["extra"] = Value::from(1);
    assert_eq!(verify(&bytes(&doc), &trusted).unwrap_err().code(), "schema");
    let mut doc = envelope(&signed_index(&[&k]).bytes);
    doc["unsigned_note"] = Value::from("hi");
    assert_eq!(verify(&bytes(&doc), &trusted).unwrap_err().code(), "schema");
    assert_eq!(
        verify(b"{\"signed\":", &trusted).unwrap_err().code(),
        "invalid_json"
    );
}

#[test]
fn a_replayed_older_index_is_refused_and_the_same_one_is_not() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let doc = signed_index(&[&k]);
    assert_eq!(
        verify_index(&doc.bytes, &trusted, &scope(), now(), 8).unwrap_err(),
        Error::Replay { seen: 8, found: 7 }
    );
    assert!(verify_index(&doc.bytes, &trusted, &scope(), now(), 7).is_ok());
}

#[test]
fn an_expired_index_is_refused() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let doc = signed_index(&[&k]);
    let late = t("2026-12-01T06:00:00Z");
    assert_eq!(
        verify_index(&doc.bytes, &trusted, &scope(), late, 0).unwrap_err(),
        Error::Expired {
            expires_at: late,
            now: late
        }
    );
}

#[test]
fn an_index_for_another_channel_is_refused() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let doc = signed_index(&[&k]);
    let staging = IndexScope {
        channel: Channel::parse("staging").unwrap(),
        ..scope()
    };
    let err = verify_index(&doc.bytes, &trusted, &staging, now(), 0).unwrap_err();
    assert_eq!(err.code(), "wrong_index");
    assert_eq!(
        err.to_string(),
        "index is for app shop/production, expected shop/staging"
    );
}

#[test]
fn a_release_manifest_is_not_an_index_and_vice_versa() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let manifest = release("1.0.0", "index.html=x").sign(&[&k]).unwrap();
    assert_eq!(
        verify(&manifest.bytes, &trusted).unwrap_err(),
        Error::WrongDocumentType {
            expected: "index",
            found: "release".into()
        }
    );
    let idx = signed_index(&[&k]);
    assert_eq!(
        verify_release(&idx.bytes, &trusted, None)
            .unwrap_err()
            .code(),
        "wrong_document_type"
    );
}

#[test]
fn a_newer_format_is_refused_with_its_number() {
    let k = key(1);
    let mut value = release("1.0.0", "index.html=x").to_signed_value().unwrap();
    value["format"] = Value::from(2);
    let doc = sign_value(&value, &[&k]).unwrap();
    let err =
        verify_release(&doc.bytes, &TrustedKeys::single(k.public().clone()), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported release format 2 (this code reads format 1)"
    );
}

#[test]
fn a_release_manifest_must_match_the_digest_the_index_names() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let (r1, r2) = (
        release("1.0.0", "index.html=1"),
        release("1.0.1", "index.html=2"),
    );
    let (d1, d2) = (r1.sign(&[&k]).unwrap(), r2.sign(&[&k]).unwrap());
    assert_eq!(
        verify_release(&d1.bytes, &trusted, Some(&d1.digest))
            .unwrap()
            .release,
        r1
    );
    assert_eq!(
        verify_release(&d2.bytes, &trusted, Some(&d1.digest)).unwrap_err(),
        Error::DigestMismatch {
            doc: "release manifest",
            expected: d1.digest,
            actual: d2.digest
        }
    );
}

#[test]
fn signed_documents_name_the_field_at_fault() {
    let k = key(1);
    let trusted = TrustedKeys::single(k.public().clone());
    let mut value = release("1.0.0", "index.html=x").to_signed_value().unwrap();
    value["files"]["index.html"]["sha256"] = Value::from("ABC");
    let err =
        verify_release(&sign_value(&value, &[&k]).unwrap().bytes, &trusted, None).unwrap_err();
    expect_test::expect![[r#"release field files.index.html.sha256: invalid sha256 digest "ABC": expected 64 lowercase hex digits"#]]
        .assert_eq(&err.to_string());

    let mut value = release("1.0.0", "index.html=x").to_signed_value().unwrap();
    value["files"]["../evil.js"] = value["files"]["index.html"].clone();
    let err =
        verify_release(&sign_value(&value, &[&k]).unwrap().bytes, &trusted, None).unwrap_err();
    expect_test::expect![[
        r#"release field files.../evil.js: invalid path "../evil.js": '..' segment is not allowed"#
    ]]
    .assert_eq(&err.to_string());

    let mut value = release("1.0.0", "index.html=x").to_signed_value().unwrap();
    value["entry"] = Value::from("missing.html");
    let err =
        verify_release(&sign_value(&value, &[&k]).unwrap().bytes, &trusted, None).unwrap_err();
    expect_test::expect![[r#"invalid entry: "missing.html" is not one of the files"#]]
        .assert_eq(&err.to_string());
}

#[test]
fn key_files_round_trip_and_check_themselves() {
    let k = key(1);
    let pair = KeyPair::from_file_bytes(&k.to_file_bytes()).unwrap();
    assert_eq!(pair.id(), k.id());
    assert_eq!(
        PublicKey::from_file_bytes(&k.public().to_file_bytes()).unwrap(),
        *k.public()
    );
    assert!(!format!("{k:?}").contains("seed"));

    let mut file: Value = serde_json::from_slice(&k.to_file_bytes()).unwrap();
    file["public"] = Value::from(key(2).public().to_hex());
    let err = KeyPair::from_file_bytes(&bytes(&file)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid key: public key or key id does not match the seed"
    );

    let mut file: Value = serde_json::from_slice(&k.public().to_file_bytes()).unwrap();
    file["keyid"] = Value::from(key(2).id().to_string());
    assert_eq!(
        PublicKey::from_file_bytes(&bytes(&file))
            .unwrap_err()
            .code(),
        "invalid_key"
    );
    // A small-order point is refused as a public key.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    assert_eq!(
        PublicKey::from_bytes(&weak).unwrap_err().code(),
        "invalid_key"
    );
}

#[test]
fn a_prefetch_policy_this_code_does_not_know_still_verifies() {
    // A newer server signs a policy an older device has never heard of: the device must keep
    // reading the index (and every other package in it), seeing the policy as unknown.
    let k = key(1);
    let r1 = release("1.0.0", "index.html=<h1>1");
    let mut value = index(7, release_ref(&r1, &[&k]), None)
        .to_signed_value()
        .unwrap();
    value["packages"]["checkout"]["prefetch"] = Value::from("charging_only");
    let doc = sign_value(&value, &[&k]).unwrap();
    let verified = verify(&doc.bytes, &TrustedKeys::single(k.public().clone())).unwrap();
    let entry = &verified.index.packages[&PackageId::parse("checkout").unwrap()];
    assert_eq!(entry.prefetch, Prefetch::Unknown);
    assert_eq!(entry.priority, 10);

    // What was read as unknown is never signed again under another name.
    let err = verified.index.sign(&[&k]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid packages.checkout.prefetch: a policy this code does not know is read, never written"
    );
}

#[test]
fn a_known_prefetch_policy_is_signed_and_read_back() {
    let k = key(1);
    let r1 = release("1.0.0", "index.html=<h1>1");
    let mut index = index(7, release_ref(&r1, &[&k]), None);
    index
        .packages
        .values_mut()
        .for_each(|e| e.prefetch = Prefetch::WifiOnly);
    let doc = index.sign(&[&k]).unwrap();
    assert!(
        String::from_utf8_lossy(&doc.bytes).contains(r#""prefetch":"wifi_only""#),
        "{}",
        String::from_utf8_lossy(&doc.bytes)
    );
    let verified = verify(&doc.bytes, &TrustedKeys::single(k.public().clone())).unwrap();
    assert_eq!(verified.index, index);
}
