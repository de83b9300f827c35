//! The signature envelope: `{"signatures":[{"keyid":…,"sig":…}],"signed":{…}}`.
//!
//! Signatures are Ed25519 over the canonical bytes of `signed`; the sha256 of those bytes is the
//! document's identity ([`Digest`]), so adding a signature never changes what a document is.
//! Verification checks the signatures before anything in `signed` is interpreted.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::canonical::{parse_strict, to_canonical_bytes};
use crate::digest::{decode_hex, encode_hex};
use crate::error::{Error, Result};
use crate::{Digest, KeyId, KeyPair, TrustedKeys};

/// A signed document as served: its envelope bytes and the digest of its signed part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDocument {
    /// The canonical JSON bytes of the whole envelope.
    pub bytes: Vec<u8>,
    /// The sha256 of the canonical bytes of the signed part: the document's identity.
    pub digest: Digest,
}

/// The signed part of an envelope whose signatures verified.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The signed value.
    pub signed: Value,
    /// The sha256 of its canonical bytes.
    pub digest: Digest,
}

/// Signs `signed` with every key in `keys` and wraps it in an envelope.
///
/// # Errors
/// [`Error::NotCanonical`] if `signed` cannot be written as canonical JSON, and
/// [`Error::InvalidKey`] if `keys` is empty or names one key twice.
pub fn sign_value(signed: &Value, keys: &[&KeyPair]) -> Result<SignedDocument> {
    if keys.is_empty() {
        return Err(Error::InvalidKey {
            reason: "at least one signing key is needed".to_owned(),
        });
    }
    let mut ids = BTreeSet::new();
    let message = to_canonical_bytes(signed)?;
    let mut signatures = Vec::with_capacity(keys.len());
    for key in keys {
        if !ids.insert(key.id()) {
            return Err(Error::InvalidKey {
                reason: format!("key {} given twice", key.id()),
            });
        }
        let mut entry = Map::new();
        entry.insert("keyid".to_owned(), Value::String(key.id().to_string()));
        entry.insert(
            "sig".to_owned(),
            Value::String(encode_hex(&key.sign(&message))),
        );
        signatures.push(Value::Object(entry));
    }
    let mut envelope = Map::new();
    envelope.insert("signatures".to_owned(), Value::Array(signatures));
    envelope.insert("signed".to_owned(), signed.clone());
    Ok(SignedDocument {
        bytes: to_canonical_bytes(&Value::Object(envelope))?,
        digest: Digest::of(&message),
    })
}

/// Parses an envelope and checks its signatures against `trusted`.
///
/// Refuses, with distinct errors: no signature ([`Error::Unsigned`]), one key id twice
/// ([`Error::DuplicateSignature`]), a malformed signature ([`Error::MalformedSignature`]), a
/// trusted key's signature that does not verify ([`Error::BadSignature`]), no trusted signer
/// ([`Error::UntrustedSigner`]) and too few distinct trusted signers ([`Error::ThresholdNotMet`]).
/// Signatures by keys not in `trusted` are ignored (a new key may be rolling out).
///
/// # Errors
/// The above, and [`Error::Json`] / [`Error::Schema`] for a malformed envelope.
pub fn open(bytes: &[u8], trusted: &TrustedKeys) -> Result<Opened> {
    let envelope = parse_strict(bytes)?;
    let schema = |at: &str, reason: &str| Error::Schema {
        doc: "envelope",
        at: at.to_owned(),
        reason: reason.to_owned(),
    };
    let Value::Object(mut envelope) = envelope else {
        return Err(schema("$", "expected an object"));
    };
    if let Some(key) = envelope
        .keys()
        .find(|k| *k != "signed" && *k != "signatures")
    {
        return Err(schema(&format!("$.{key}"), "unknown field"));
    }
    let signed = envelope
        .remove("signed")
        .ok_or_else(|| schema("$.signed", "missing"))?;
    if !signed.is_object() {
        return Err(schema("$.signed", "expected an object"));
    }
    let Some(Value::Array(signatures)) = envelope.remove("signatures") else {
        return Err(schema("$.signatures", "expected an array"));
    };
    if signatures.is_empty() {
        return Err(Error::Unsigned);
    }
    let message = to_canonical_bytes(&signed)?;
    check_signatures(&signatures, &message, trusted)?;
    Ok(Opened {
        digest: Digest::of(&message),
        signed,
    })
}

/// Checks an envelope's `signatures` over `message`, the canonical bytes of its signed part, with
/// the rules and errors of [`open`] (less those of the envelope's shape).
pub(crate) fn check_signatures(
    signatures: &[Value],
    message: &[u8],
    trusted: &TrustedKeys,
) -> Result<()> {
    let schema = |at: &str, reason: &str| Error::Schema {
        doc: "envelope",
        at: at.to_owned(),
        reason: reason.to_owned(),
    };
    if signatures.is_empty() {
        return Err(Error::Unsigned);
    }
    let mut parsed: Vec<(KeyId, Option<[u8; 64]>)> = Vec::with_capacity(signatures.len());
    let mut seen = BTreeSet::new();
    for (i, entry) in signatures.iter().enumerate() {
        let at = format!("$.signatures[{i}]");
        let Value::Object(entry) = entry else {
            return Err(schema(&at, "expected an object"));
        };
        if entry.len() != 2 {
            return Err(schema(&at, "expected exactly the fields keyid and sig"));
        }
        let (Some(Value::String(keyid)), Some(Value::String(sig))) =
            (entry.get("keyid"), entry.get("sig"))
        else {
            return Err(schema(&at, "keyid and sig must be strings"));
        };
        let keyid = KeyId::parse(keyid).map_err(|_| schema(&at, "keyid is not a key id"))?;
        if !seen.insert(keyid) {
            return Err(Error::DuplicateSignature { keyid });
        }
        parsed.push((keyid, decode_hex::<64>(sig)));
    }

    let mut valid = 0;
    for (keyid, sig) in &parsed {
        let Some(sig) = sig else {
            return Err(Error::MalformedSignature { keyid: *keyid });
        };
        if let Some(key) = trusted.get(keyid) {
            if !key.verifies(message, sig) {
                return Err(Error::BadSignature { keyid: *keyid });
            }
            valid += 1;
        }
    }
    if valid == 0 {
        let signed_by: Vec<String> = parsed.iter().map(|(id, _)| id.to_string()).collect();
        return Err(Error::UntrustedSigner {
            signed_by: signed_by.join(", "),
        });
    }
    if valid < trusted.threshold() {
        return Err(Error::ThresholdNotMet {
            valid,
            threshold: trusted.threshold(),
        });
    }
    Ok(())
}

/// The canonical bytes of the envelope `{"signatures": signatures, "signed": signed}`, given the
/// canonical bytes of `signed`: canonical JSON sorts `signatures` before `signed` and has no
/// white space, so the signed part's bytes are written once, not again.
pub(crate) fn envelope_bytes(signatures: &[Value], signed: &[u8]) -> Result<Vec<u8>> {
    let signatures = to_canonical_bytes(&Value::Array(signatures.to_vec()))?;
    let mut out = Vec::with_capacity(signatures.len() + signed.len() + 28);
    out.extend_from_slice(b"{\"signatures\":");
    out.extend_from_slice(&signatures);
    out.extend_from_slice(b",\"signed\":");
    out.extend_from_slice(signed);
    out.push(b'}');
    Ok(out)
}

/// Checks the `_type` and `format` fields every signed document carries.
pub(crate) fn check_header(signed: &Value, doc: &'static str, format: u64) -> Result<()> {
    let found = signed.get("_type").and_then(Value::as_str).unwrap_or("");
    if found != doc {
        return Err(Error::WrongDocumentType {
            expected: doc,
            found: found.to_owned(),
        });
    }
    match signed.get("format").and_then(Value::as_u64) {
        Some(f) if f == format => Ok(()),
        Some(found) => Err(Error::UnsupportedFormat {
            doc,
            found,
            supported: format,
        }),
        None => Err(Error::Schema {
            doc,
            at: "format".to_owned(),
            reason: "missing or not an integer".to_owned(),
        }),
    }
}

/// Adds the `_type` and `format` header to a document body.
pub(crate) fn with_header(body: Value, doc: &'static str, format: u64) -> Result<Value> {
    let Value::Object(mut map) = body else {
        return Err(Error::NotCanonical {
            at: "$".to_owned(),
            reason: "a signed document must be an object",
        });
    };
    map.insert("_type".to_owned(), Value::String(doc.to_owned()));
    map.insert("format".to_owned(), Value::from(format));
    Ok(Value::Object(map))
}

/// Deserialises a document body, naming the field at fault on error.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    signed: Value,
    doc: &'static str,
) -> Result<T> {
    tracked(without_header(signed), doc)
}

/// [`from_value`] for the large documents (release manifests, indexes): read plainly first,
/// since tracking the path of every field costs more than reading the document, and again with
/// tracking only to name the field at fault once the plain read failed. Small documents skip the
/// plain read: a second deserialiser per type costs the shipped library more than it saves them.
pub(crate) fn from_large_value<T: serde::de::DeserializeOwned>(
    signed: Value,
    doc: &'static str,
) -> Result<T> {
    let signed = without_header(signed);
    if let Ok(value) = T::deserialize(&signed) {
        return Ok(value);
    }
    tracked(signed, doc)
}

fn without_header(mut signed: Value) -> Value {
    if let Value::Object(map) = &mut signed {
        map.remove("_type");
        map.remove("format");
    }
    signed
}

fn tracked<T: serde::de::DeserializeOwned>(signed: Value, doc: &'static str) -> Result<T> {
    serde_path_to_error::deserialize(signed).map_err(|e| Error::Schema {
        doc,
        at: e.path().to_string(),
        reason: e.into_inner().to_string(),
    })
}

/// The canonical bytes a signature of this envelope covers (its `signed` part), unverified: what
/// a key holder signs after checking the document.
///
/// # Errors
/// [`Error::Json`] / [`Error::Schema`] for a malformed envelope.
pub fn signed_bytes(envelope: &[u8]) -> Result<Vec<u8>> {
    let value = parse_strict(envelope)?;
    let signed = value
        .get("signed")
        .filter(|s| s.is_object())
        .ok_or_else(|| Error::Schema {
            doc: "envelope",
            at: "$.signed".to_owned(),
            reason: "missing or not an object".to_owned(),
        })?;
    to_canonical_bytes(signed)
}

/// Adds a signature by `key` (a 64-byte Ed25519 signature over [`signed_bytes`]) to an envelope,
/// after checking it verifies. A key that signed already is replaced; the document's digest does
/// not change.
///
/// # Errors
/// [`Error::BadSignature`] when the signature does not verify, and the errors of
/// [`signed_bytes`].
pub fn add_signature(
    envelope: &[u8],
    key: &crate::PublicKey,
    signature: &[u8; 64],
) -> Result<SignedDocument> {
    let message = signed_bytes(envelope)?;
    if !key.verifies(&message, signature) {
        return Err(Error::BadSignature { keyid: key.id() });
    }
    let Value::Object(mut map) = parse_strict(envelope)? else {
        return Err(Error::Schema {
            doc: "envelope",
            at: "$".to_owned(),
            reason: "expected an object".to_owned(),
        });
    };
    let keyid = Value::String(key.id().to_string());
    let mut signatures = match map.remove("signatures") {
        Some(Value::Array(s)) => s,
        _ => Vec::new(),
    };
    signatures.retain(|s| s.get("keyid") != Some(&keyid));
    let mut entry = Map::new();
    entry.insert("keyid".to_owned(), keyid);
    entry.insert("sig".to_owned(), Value::String(encode_hex(signature)));
    signatures.push(Value::Object(entry));
    map.insert("signatures".to_owned(), Value::Array(signatures));
    Ok(SignedDocument {
        bytes: to_canonical_bytes(&Value::Object(map))?,
        digest: Digest::of(&message),
    })
}

/// Adds `key`'s signature to an envelope (see [`add_signature`]).
///
/// # Errors
/// As [`signed_bytes`].
pub fn cosign(envelope: &[u8], key: &KeyPair) -> Result<SignedDocument> {
    let signature = key.sign(&signed_bytes(envelope)?);
    add_signature(envelope, key.public(), &signature)
}
