//! Release deltas: the signed manifest of one release, sent as what changed since a release the
//! device already holds, so that an update of one file costs one file's entry, not the whole
//! manifest.
//!
//! A delta names the manifest it starts from (`from`) and the one it rebuilds (`to`), both by the
//! digest of their signed part, and carries the file entries that changed or arrived, the paths
//! that left, every other field of the new signed part (`release`: the header, entry, routes, …)
//! and the new manifest's signatures. The delta itself is not signed and is never trusted: a
//! device applies it to the manifest it holds, rebuilds the canonical bytes of the new signed
//! part, checks that their sha256 is the digest the signed index names, and then verifies the new
//! manifest's signatures on the result exactly as for a manifest fetched whole
//! ([`crate::verify_release`]). A delta that starts from another manifest, or that rebuilds
//! anything else, is refused before any signature is checked, and the device fetches the whole
//! manifest instead.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::{parse_strict, to_canonical_bytes};
use crate::envelope::{check_header, envelope_bytes, from_value, with_header};
use crate::error::{Error, Result};
use crate::release::verify_rebuilt;
use crate::{Digest, MAX_FILES, TrustedKeys, VerifiedRelease};

/// The release delta format this code writes and reads.
pub const RELEASE_DELTA_FORMAT: u64 = 1;

/// What changed in a package's signed manifest between two releases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDelta {
    /// The digest of the signed part of the manifest the delta applies to.
    pub from: Digest,
    /// The digest of the signed part of the manifest it rebuilds.
    pub to: Digest,
    /// Every field of the new signed part except `files`, as signed.
    pub release: Map<String, Value>,
    /// The entry of each file that changed or arrived, by path, as signed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changed: BTreeMap<String, Value>,
    /// The paths that left.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub removed: BTreeSet<String>,
    /// The signatures of the new manifest's envelope.
    pub signatures: Vec<Value>,
}

/// The parts of a signed manifest a delta is made of or applied to.
struct Parts {
    signatures: Vec<Value>,
    signed: Map<String, Value>,
    files: Map<String, Value>,
    digest: Digest,
}

fn schema(at: &str, reason: &str) -> Error {
    Error::Schema {
        doc: "release delta",
        at: at.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Splits a signed manifest's envelope (not verified: the result of a delta is) into its parts.
fn parts(envelope: &[u8]) -> Result<Parts> {
    let (signatures, signed) = unhashed_parts(envelope)?;
    let digest = Digest::of(&to_canonical_bytes(&Value::Object(signed.clone()))?);
    split_files(signatures, signed, digest)
}

/// The signatures and signed part of an envelope, its digest not computed.
fn unhashed_parts(envelope: &[u8]) -> Result<(Vec<Value>, Map<String, Value>)> {
    let Value::Object(mut envelope) = parse_strict(envelope)? else {
        return Err(schema("$", "the manifest is not an object"));
    };
    let Some(Value::Array(signatures)) = envelope.remove("signatures") else {
        return Err(schema("$.signatures", "the manifest has no signatures"));
    };
    let Some(Value::Object(signed)) = envelope.remove("signed") else {
        return Err(schema("$.signed", "the manifest has no signed part"));
    };
    Ok((signatures, signed))
}

fn split_files(
    signatures: Vec<Value>,
    mut signed: Map<String, Value>,
    digest: Digest,
) -> Result<Parts> {
    let Some(Value::Object(files)) = signed.remove("files") else {
        return Err(schema("$.signed.files", "the manifest lists no files"));
    };
    Ok(Parts {
        signatures,
        signed,
        files,
        digest,
    })
}

impl ReleaseDelta {
    /// The delta that takes the signed manifest `from` to the signed manifest `to` (both
    /// envelopes as served).
    ///
    /// # Errors
    /// Bytes that are not a signed manifest's envelope.
    pub fn between(from: &[u8], to: &[u8]) -> Result<ReleaseDelta> {
        let (from, to) = (parts(from)?, parts(to)?);
        let changed = to
            .files
            .iter()
            .filter(|(path, entry)| from.files.get(*path) != Some(*entry))
            .map(|(path, entry)| (path.clone(), entry.clone()))
            .collect();
        let removed = from
            .files
            .keys()
            .filter(|path| !to.files.contains_key(*path))
            .cloned()
            .collect();
        Ok(ReleaseDelta {
            from: from.digest,
            to: to.digest,
            release: to.signed,
            changed,
            removed,
            signatures: to.signatures,
        })
    }

    /// The canonical JSON of the delta, with its `_type` and `format` header: what the server
    /// serves.
    ///
    /// # Errors
    /// A delta that does not serialise canonically.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_value(self).map_err(|e| Error::NotCanonical {
            at: format!("$ ({e})"),
            reason: "release delta does not serialise to JSON",
        })?;
        to_canonical_bytes(&with_header(body, "release-delta", RELEASE_DELTA_FORMAT)?)
    }

    /// Reads a delta (type, format and fields; nothing in it is trusted yet).
    ///
    /// # Errors
    /// [`Error::Json`], [`Error::WrongDocumentType`], [`Error::UnsupportedFormat`] or
    /// [`Error::Schema`] for bytes that are not a release delta of this format.
    pub fn parse(bytes: &[u8]) -> Result<ReleaseDelta> {
        let value = parse_strict(bytes)?;
        check_header(&value, "release-delta", RELEASE_DELTA_FORMAT)?;
        from_value(value, "release delta")
    }
}

/// Applies a release delta (`delta`, as served) to `base`, the signed manifest the device holds,
/// and returns the envelope of the manifest whose signed part has the digest `expected` (the one
/// the signed index names), in canonical bytes. The result's signatures are not checked here: the
/// caller verifies it as a manifest fetched whole ([`crate::verify_release`]), and trusts nothing
/// before.
///
/// # Errors
/// As [`ReleaseDelta::parse`]; [`Error::ReleaseDeltaBase`] when the delta starts from another
/// manifest than `base`; [`Error::ReleaseDeltaMismatch`] when it leads to another manifest than
/// `expected`, or when what it rebuilds is not that manifest (forged entries or fields);
/// [`Error::InvalidField`] when it changes more files than a release may hold, removes a path
/// `base` lacks, or both changes and removes one path.
pub fn apply_release_delta(delta: &[u8], base: &[u8], expected: &Digest) -> Result<Vec<u8>> {
    let rebuilt = rebuild(ReleaseDelta::parse(delta)?, parts(base)?, expected)?;
    envelope_bytes(&rebuilt.signatures, &rebuilt.message)
}

/// A manifest rebuilt from a release delta whose signatures and contents verified.
#[derive(Clone, Debug)]
pub struct RebuiltRelease {
    /// The canonical bytes of its envelope, as the server signed and serves it whole.
    pub bytes: Vec<u8>,
    /// The verified release.
    pub verified: VerifiedRelease,
}

/// [`apply_release_delta`] and then [`crate::verify_release`] of the result against `trusted`,
/// with the same outcome, but without parsing and writing the rebuilt manifest again: the
/// signatures are checked on the canonical bytes the digest was taken of, and the release is read
/// from the rebuilt value.
///
/// `base_digest` is the digest the caller holds `base` under, verified when it was stored; it is
/// not computed again. A `base` that is not that manifest rebuilds another one and is refused as
/// [`Error::ReleaseDeltaMismatch`].
///
/// # Errors
/// As [`apply_release_delta`] and [`crate::verify_release`].
pub fn rebuild_release(
    delta: &[u8],
    base: &[u8],
    base_digest: &Digest,
    expected: &Digest,
    trusted: &TrustedKeys,
) -> Result<RebuiltRelease> {
    let (signatures, signed) = unhashed_parts(base)?;
    let base = split_files(signatures, signed, *base_digest)?;
    let rebuilt = rebuild(ReleaseDelta::parse(delta)?, base, expected)?;
    let release = verify_rebuilt(
        rebuilt.signed,
        &rebuilt.message,
        &rebuilt.signatures,
        trusted,
    )?;
    Ok(RebuiltRelease {
        bytes: envelope_bytes(&rebuilt.signatures, &rebuilt.message)?,
        verified: VerifiedRelease {
            release,
            digest: *expected,
        },
    })
}

/// The signed part a delta rebuilds, its canonical bytes (whose digest is `expected`) and the
/// new signatures.
struct Rebuilt {
    signed: Value,
    message: Vec<u8>,
    signatures: Vec<Value>,
}

fn rebuild(delta: ReleaseDelta, base: Parts, expected: &Digest) -> Result<Rebuilt> {
    if delta.from != base.digest {
        return Err(Error::ReleaseDeltaBase {
            held: base.digest,
            found: delta.from,
        });
    }
    if delta.to != *expected {
        return Err(Error::ReleaseDeltaMismatch {
            expected: *expected,
            actual: delta.to,
        });
    }
    let invalid = |field: &str, reason: String| Error::InvalidField {
        field: field.to_owned(),
        reason,
    };
    if delta.changed.len() > MAX_FILES {
        return Err(invalid("changed", format!("more than {MAX_FILES} files")));
    }
    if delta.release.contains_key("files") {
        return Err(invalid("release.files", "files come from the base".into()));
    }
    let mut files = base.files;
    for path in &delta.removed {
        if delta.changed.contains_key(path) {
            return Err(invalid("removed", format!("{path:?} is also changed")));
        }
        if files.remove(path).is_none() {
            return Err(invalid("removed", format!("{path:?} is not in the base")));
        }
    }
    files.extend(delta.changed);
    let mut signed = delta.release;
    signed.insert("files".to_owned(), Value::Object(files));
    let signed = Value::Object(signed);
    let message = to_canonical_bytes(&signed)?;
    let actual = Digest::of(&message);
    if actual != *expected {
        return Err(Error::ReleaseDeltaMismatch {
            expected: *expected,
            actual,
        });
    }
    Ok(Rebuilt {
        signed,
        message,
        signatures: delta.signatures,
    })
}

#[cfg(test)]
mod tests;
