//! Release deltas: built, applied, verified, and every way a hostile delta is refused.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::{
    FileEntry, HostRequirement, KeyPair, MimeType, PackageId, RelPath, Release, ReleaseVersion,
    Route, Timestamp, TrustedKeys, UrlPrefix, verify_release,
};

fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32])
}

fn trusted() -> TrustedKeys {
    TrustedKeys::single(key(1).public().clone())
}

/// A release `version` of files `path=content`.
fn release(version: &str, files: &[(&str, &str)]) -> Release {
    Release {
        package: PackageId::parse("cart").unwrap(),
        version: ReleaseVersion::parse(version).unwrap(),
        files: files
            .iter()
            .map(|(path, content)| {
                let entry = FileEntry {
                    sha256: Digest::of(content.as_bytes()),
                    size: content.len() as u64,
                    mime: MimeType::parse("text/html").unwrap(),
                };
                (RelPath::parse(path).unwrap(), entry)
            })
            .collect(),
        entry: RelPath::parse("index.html").unwrap(),
        routes: vec![Route {
            prefix: UrlPrefix::parse("https://shop.example/cart/").unwrap(),
            fallback: None,
        }],
        requires: HostRequirement::any(),
        created_at: Timestamp::from_unix_secs(1_800_000_000),
        notes: format!("release {version}"),
        source_revision: None,
    }
}

/// The signed envelopes of 1.0.0 and 1.1.0 (one file changed, one added, one removed).
fn pair() -> (Vec<u8>, Vec<u8>, Digest) {
    let old = release(
        "1.0.0",
        &[("index.html", "a"), ("app.js", "b"), ("old.css", "c")],
    );
    let new = release(
        "1.1.0",
        &[("index.html", "a"), ("app.js", "B"), ("new.css", "d")],
    );
    let old = old.sign(&[&key(1)]).unwrap();
    let new = new.sign(&[&key(1)]).unwrap();
    (old.bytes, new.bytes, new.digest)
}

fn delta_value(from: &[u8], to: &[u8]) -> Value {
    parse_strict(&ReleaseDelta::between(from, to).unwrap().to_bytes().unwrap()).unwrap()
}

fn apply(delta: &Value, base: &[u8], expected: &Digest) -> Result<Vec<u8>> {
    apply_release_delta(&to_canonical_bytes(delta).unwrap(), base, expected)
}

#[test]
fn a_delta_rebuilds_the_exact_signed_manifest_and_it_verifies() {
    let (old, new, digest) = pair();
    let delta = ReleaseDelta::between(&old, &new).unwrap();
    assert_eq!(
        delta.changed.keys().collect::<Vec<_>>(),
        ["app.js", "new.css"]
    );
    assert_eq!(delta.removed.iter().collect::<Vec<_>>(), ["old.css"]);
    let bytes = delta.to_bytes().unwrap();
    let rebuilt = apply_release_delta(&bytes, &old, &digest).unwrap();
    assert_eq!(rebuilt, new);
    let verified = verify_release(&rebuilt, &trusted(), Some(&digest)).unwrap();
    assert_eq!(verified.release.version.to_string(), "1.1.0");
}

#[test]
fn a_delta_between_equal_manifests_changes_no_file() {
    let (old, _, _) = pair();
    let delta = ReleaseDelta::between(&old, &old).unwrap();
    assert!(delta.changed.is_empty() && delta.removed.is_empty());
    let digest = parts(&old).unwrap().digest;
    assert_eq!(
        apply_release_delta(&delta.to_bytes().unwrap(), &old, &digest).unwrap(),
        old
    );
}

#[test]
fn a_delta_for_another_base_is_refused() {
    let (old, new, digest) = pair();
    let other = release("0.9.0", &[("index.html", "z")])
        .sign(&[&key(1)])
        .unwrap();
    let delta = delta_value(&other.bytes, &new);
    let err = apply(&delta, &old, &digest).unwrap_err();
    assert_eq!(err.code(), "release_delta_base", "{err}");
}

#[test]
fn a_delta_to_another_manifest_than_the_index_names_is_refused() {
    let (old, new, _) = pair();
    let delta = delta_value(&old, &new);
    let err = apply(&delta, &old, &Digest::of(b"another")).unwrap_err();
    assert_eq!(err.code(), "release_delta_mismatch", "{err}");
}

#[test]
fn forged_entries_or_fields_do_not_rebuild_the_signed_manifest() {
    let (old, new, digest) = pair();
    let forged_entry = {
        let mut d = delta_value(&old, &new);
        d["changed"]["app.js"]["sha256"] = Value::String(Digest::of(b"evil").to_string());
        d
    };
    let forged_field = {
        let mut d = delta_value(&old, &new);
        d["release"]["entry"] = Value::String("app.js".into());
        d
    };
    let kept_file = {
        let mut d = delta_value(&old, &new);
        d["removed"] = Value::Array(Vec::new());
        d
    };
    for delta in [forged_entry, forged_field, kept_file] {
        let err = apply(&delta, &old, &digest).unwrap_err();
        assert_eq!(err.code(), "release_delta_mismatch", "{err}");
    }
}

#[test]
fn a_rebuilt_manifest_with_a_forged_signature_fails_verification() {
    let (old, new, digest) = pair();
    let mut delta = delta_value(&old, &new);
    let forged = release("1.1.0", &[("index.html", "x")])
        .sign(&[&key(1)])
        .unwrap();
    let forged = parse_strict(&forged.bytes).unwrap();
    delta["signatures"] = forged["signatures"].clone();
    // The signed part is right, so it rebuilds; its signatures are not, so it never verifies.
    let rebuilt = apply(&delta, &old, &digest).unwrap();
    let err = verify_release(&rebuilt, &trusted(), Some(&digest)).unwrap_err();
    assert_eq!(err.code(), "bad_signature", "{err}");
    let other_key = TrustedKeys::single(key(2).public().clone());
    let err = verify_release(
        &apply(&delta_value(&old, &new), &old, &digest).unwrap(),
        &other_key,
        None,
    )
    .unwrap_err();
    assert_eq!(err.code(), "untrusted_signer", "{err}");
}

#[test]
fn malformed_deltas_are_refused_with_the_field_at_fault() {
    let (old, new, digest) = pair();
    let check = |edit: &dyn Fn(&mut Value), code: &str| {
        let mut delta = delta_value(&old, &new);
        edit(&mut delta);
        let err = apply(&delta, &old, &digest).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    };
    check(&|d| d["_type"] = "release".into(), "wrong_document_type");
    check(&|d| d["format"] = 2.into(), "unsupported_format");
    check(&|d| d["extra"] = 1.into(), "schema");
    check(
        &|d| d["release"]["files"] = Value::Object(Map::new()),
        "invalid_field",
    );
    check(
        &|d| d["removed"] = vec!["nowhere.js"].into(),
        "invalid_field",
    );
    check(&|d| d["removed"] = vec!["app.js"].into(), "invalid_field");
    let err = apply_release_delta(b"{\"not\":", &old, &digest).unwrap_err();
    assert_eq!(err.code(), "invalid_json", "{err}");
}

#[test]
fn an_oversize_delta_is_refused_before_it_is_applied() {
    let (old, new, digest) = pair();
    let mut delta = delta_value(&old, &new);
    let entry = delta["changed"]["app.js"].clone();
    let many: Map<String, Value> = (0..=MAX_FILES)
        .map(|i| (format!("f{i}.js"), entry.clone()))
        .collect();
    delta["changed"] = Value::Object(many);
    let err = apply(&delta, &old, &digest).unwrap_err();
    assert_eq!(err.code(), "invalid_field", "{err}");
    assert!(err.to_string().contains("more than"), "{err}");
}

/// `rebuild_release` of a delta in JSON form against `base` held as `base_digest`.
fn rebuild(
    delta: &Value,
    base: &[u8],
    base_digest: &Digest,
    expected: &Digest,
    trusted: &TrustedKeys,
) -> Result<RebuiltRelease> {
    rebuild_release(
        &to_canonical_bytes(delta).unwrap(),
        base,
        base_digest,
        expected,
        trusted,
    )
}

#[test]
fn rebuilding_and_verifying_at_once_agrees_with_applying_and_then_verifying() {
    let (old, new, digest) = pair();
    let old_digest = parts(&old).unwrap().digest;
    let delta = delta_value(&old, &new);
    let rebuilt = rebuild(&delta, &old, &old_digest, &digest, &trusted()).unwrap();
    assert_eq!(rebuilt.bytes, new);
    assert_eq!(rebuilt.verified.digest, digest);
    let whole = verify_release(&new, &trusted(), Some(&digest)).unwrap();
    assert_eq!(rebuilt.verified.release, whole.release);

    // Whatever the two-step way refuses, this refuses with the same error.
    let forged_signatures = {
        let mut d = delta.clone();
        let other = release("1.1.0", &[("index.html", "x")])
            .sign(&[&key(1)])
            .unwrap();
        d["signatures"] = parse_strict(&other.bytes).unwrap()["signatures"].clone();
        d
    };
    let forged_entry = {
        let mut d = delta.clone();
        d["changed"]["app.js"]["size"] = 7.into();
        d
    };
    let unsigned = {
        let mut d = delta.clone();
        d["signatures"] = Value::Array(Vec::new());
        d
    };
    let cases = [
        (&forged_signatures, &trusted(), "bad_signature"),
        (
            &delta,
            &TrustedKeys::single(key(2).public().clone()),
            "untrusted_signer",
        ),
        (&forged_entry, &trusted(), "release_delta_mismatch"),
        (&unsigned, &trusted(), "unsigned"),
    ];
    for (delta, keys, code) in cases {
        let two_step = apply(delta, &old, &digest)
            .and_then(|bytes| verify_release(&bytes, keys, Some(&digest)).map(drop));
        let at_once = rebuild(delta, &old, &old_digest, &digest, keys).map(drop);
        assert_eq!(two_step.unwrap_err().code(), code);
        assert_eq!(at_once.unwrap_err().code(), code);
    }
}

#[test]
fn a_base_held_under_another_digest_rebuilds_nothing() {
    let (old, new, digest) = pair();
    let old_digest = parts(&old).unwrap().digest;
    let delta = delta_value(&old, &new);
    // The digest the device holds the base under is not that of the delta's base.
    let err = rebuild(&delta, &old, &Digest::of(b"x"), &digest, &trusted()).unwrap_err();
    assert_eq!(err.code(), "release_delta_base", "{err}");
    // The base's bytes are not the manifest of the digest it is held under.
    let other = release(
        "1.0.0",
        &[("index.html", "a"), ("app.js", "b"), ("other.css", "c")],
    )
    .sign(&[&key(1)])
    .unwrap();
    let err = rebuild(&delta, &other.bytes, &old_digest, &digest, &trusted()).unwrap_err();
    assert!(
        ["release_delta_mismatch", "invalid_field"].contains(&err.code()),
        "{err}"
    );
}
