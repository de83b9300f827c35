//! The one error type of the contract.
//!
//! Every variant says what was wrong and where, and has a stable [`Error::code`] that the server puts
//! in its JSON errors and that golden test vectors name, so that a port to another language can check
//! that it refuses the same inputs for the same reasons.

use crate::{DecodeError, Digest, KeyId, Timestamp};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a value, a document or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string did not have the form of a hex sha256 digest.
    #[error("invalid sha256 digest {value:?}: expected 64 lowercase hex digits")]
    InvalidDigest {
        /// The refused text (cut to 80 characters).
        value: String,
    },
    /// An identifier (package, app, channel) was malformed.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidId {
        /// Which kind of identifier.
        kind: &'static str,
        /// The refused text (cut to 80 characters).
        value: String,
        /// What rule it broke.
        reason: &'static str,
    },
    /// A version or version requirement did not parse.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidVersion {
        /// `release version`, `host-app version` or `host-app requirement`.
        kind: &'static str,
        /// The refused text (cut to 80 characters).
        value: String,
        /// What was wrong.
        reason: String,
    },
    /// A bundle path broke one of the path rules.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The refused path (cut to 300 characters).
        path: String,
        /// What rule it broke.
        reason: &'static str,
    },
    /// Two paths of one file list would land on the same file on a case-insensitive or
    /// normalising file system, or one is a file and the other needs it to be a directory.
    #[error("paths {first:?} and {second:?} collide: {reason}")]
    PathCollision {
        /// The path seen first.
        first: String,
        /// The path that collides with it.
        second: String,
        /// How they collide.
        reason: &'static str,
    },
    /// Some other field had a value outside its rules.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field, as a path into the document (`routes[0].prefix`).
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// The bytes were not JSON, or not JSON of the canonical subset.
    #[error("invalid JSON at line {line}, column {column}: {reason}")]
    Json {
        /// 1-based line, 0 when unknown.
        line: usize,
        /// 1-based column, 0 when unknown.
        column: usize,
        /// What was wrong.
        reason: String,
    },
    /// A value cannot be written as canonical JSON (a float, or an integer beyond ±(2^53-1)).
    #[error("cannot write canonical JSON at {at}: {reason}")]
    NotCanonical {
        /// Where in the value, as a path (`$.files["a.js"].size`).
        at: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A document had the wrong shape for its type.
    #[error("{doc} field {at}: {reason}")]
    Schema {
        /// `release` or `index`.
        doc: &'static str,
        /// Where in the document.
        at: String,
        /// What was wrong.
        reason: String,
    },
    /// The signed part says it is another kind of document.
    #[error("expected a signed {expected} document, found {found:?}")]
    WrongDocumentType {
        /// The type asked for.
        expected: &'static str,
        /// The `_type` found.
        found: String,
    },
    /// The document is of a format version this code does not read.
    #[error("unsupported {doc} format {found} (this code reads format {supported})")]
    UnsupportedFormat {
        /// `release` or `index`.
        doc: &'static str,
        /// The format found.
        found: u64,
        /// The format this code reads.
        supported: u64,
    },
    /// A key file or public key was malformed or inconsistent.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What was wrong.
        reason: String,
    },
    /// The envelope holds no signature at all.
    #[error("document is not signed")]
    Unsigned,
    /// A signature was not 64 bytes of lowercase hex.
    #[error("signature by key {keyid} is malformed")]
    MalformedSignature {
        /// The key id the signature claims.
        keyid: KeyId,
    },
    /// The same key id signs twice: it must not count twice towards the threshold.
    #[error("key {keyid} signs more than once")]
    DuplicateSignature {
        /// The repeated key id.
        keyid: KeyId,
    },
    /// A trusted key's signature does not verify over the canonical bytes.
    #[error("signature by trusted key {keyid} does not verify")]
    BadSignature {
        /// The trusted key whose signature failed.
        keyid: KeyId,
    },
    /// No signature comes from a trusted key.
    #[error("no signature by a trusted key (signed by: {signed_by})")]
    UntrustedSigner {
        /// Key ids that did sign, comma-separated.
        signed_by: String,
    },
    /// Fewer distinct trusted keys signed than the threshold asks.
    #[error("{valid} valid signature(s) by distinct trusted keys, {threshold} required")]
    ThresholdNotMet {
        /// Distinct trusted keys with a valid signature.
        valid: usize,
        /// Distinct trusted keys required.
        threshold: usize,
    },
    /// The document's digest is not the one the caller was told to expect.
    #[error("{doc} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What kind of document.
        doc: &'static str,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// An index for another app or channel was served where this one was asked for.
    #[error(
        "index is for app {found_app}/{found_channel}, expected {expected_app}/{expected_channel}"
    )]
    WrongIndex {
        /// The app asked for.
        expected_app: String,
        /// The channel asked for.
        expected_channel: String,
        /// The app in the index.
        found_app: String,
        /// The channel in the index.
        found_channel: String,
    },
    /// The index's sequence is lower than one already seen: an old index is being replayed.
    #[error("index sequence {found} is lower than {seen}, already seen (replayed index)")]
    Replay {
        /// The highest sequence seen before.
        seen: u64,
        /// The sequence of this index.
        found: u64,
    },
    /// The index has expired: a stale index is being served (freeze attack), or the clock is off.
    #[error("index expired at {expires_at} (now {now})")]
    Expired {
        /// When the index expired.
        expires_at: Timestamp,
        /// The time the caller gave.
        now: Timestamp,
    },
    /// An index delta starts from another sequence than the index the device holds.
    #[error("index delta starts from sequence {found}, but the device holds {held}")]
    DeltaBase {
        /// The sequence of the index held.
        held: u64,
        /// The sequence the delta starts from.
        found: u64,
    },
    /// An index rebuilt from a delta is not the one the delta names (another packages digest,
    /// sequence or time): the pieces do not belong together.
    #[error("the index rebuilt at sequence {sequence} is not the one its delta was signed for")]
    DeltaMismatch {
        /// The delta's sequence.
        sequence: u64,
    },
    /// A release delta starts from another manifest than the one the device holds.
    #[error("release delta starts from manifest {found}, but the device holds {held}")]
    ReleaseDeltaBase {
        /// The digest of the manifest held.
        held: Digest,
        /// The digest the delta starts from.
        found: Digest,
    },
    /// A manifest rebuilt from a release delta is not the one wanted: the delta leads elsewhere,
    /// or its entries were forged.
    #[error("the manifest rebuilt from a release delta is {actual}, not {expected}")]
    ReleaseDeltaMismatch {
        /// The digest wanted (the one the index names).
        expected: Digest,
        /// The digest of what the delta rebuilt.
        actual: Digest,
    },
    /// The last segment of a pack's URL path is not a pack name.
    #[error("invalid pack name {name:?}: {reason}")]
    InvalidPackName {
        /// The refused name (cut to 300 characters).
        name: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A diff plan was applied to a file list it was not made from.
    #[error("diff plan does not apply at {path:?}: {reason}")]
    PlanMismatch {
        /// Path where the base differs.
        path: String,
        /// What differs.
        reason: &'static str,
    },
}

impl Error {
    /// A stable, snake_case code for this kind of error, for JSON error bodies and test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidDigest { .. } => "invalid_digest",
            Error::InvalidId { .. } => "invalid_id",
            Error::InvalidVersion { .. } => "invalid_version",
            Error::InvalidPath { .. } => "invalid_path",
            Error::PathCollision { .. } => "path_collision",
            Error::InvalidField { .. } => "invalid_field",
            Error::Json { .. } => "invalid_json",
            Error::NotCanonical { .. } => "not_canonical",
            Error::Schema { .. } => "schema",
            Error::WrongDocumentType { .. } => "wrong_document_type",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::InvalidKey { .. } => "invalid_key",
            Error::Unsigned => "unsigned",
            Error::MalformedSignature { .. } => "malformed_signature",
            Error::DuplicateSignature { .. } => "duplicate_signature",
            Error::BadSignature { .. } => "bad_signature",
            Error::UntrustedSigner { .. } => "untrusted_signer",
            Error::ThresholdNotMet { .. } => "threshold_not_met",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::WrongIndex { .. } => "wrong_index",
            Error::Replay { .. } => "replay",
            Error::DeltaBase { .. } => "delta_base",
            Error::DeltaMismatch { .. } => "delta_mismatch",
            Error::ReleaseDeltaBase { .. } => "release_delta_base",
            Error::ReleaseDeltaMismatch { .. } => "release_delta_mismatch",
            Error::Expired { .. } => "expired",
            Error::PlanMismatch { .. } => "plan_mismatch",
            Error::InvalidPackName { .. } => "invalid_pack_name",
        }
    }
}

/// Why a pack could not be written, or was refused when read.
///
/// Reading refuses a pack as a whole: a device then falls back to another way of fetching the
/// release, and the server does not store it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The bytes are not a zip this reader accepts (truncated, no end record at the very end,
    /// zip64, or a central directory the zip reader refuses).
    #[error("not a zip: {reason}")]
    NotZip {
        /// What was wrong.
        reason: String,
    },
    /// The zip lists more entries than a pack for the expected release can have.
    #[error("{count} zip entries, at most {max} expected")]
    TooManyEntries {
        /// The entries the zip declares.
        count: u64,
        /// The cap: `pack.json`, `data.zst` and one patch per blob of the release.
        max: u64,
    },
    /// An entry the format does not name, or a patch for a blob the index does not list.
    #[error("unexpected entry {name:?}")]
    UnexpectedEntry {
        /// The entry's name (cut to 80 characters).
        name: String,
    },
    /// The central directory lists one name twice.
    #[error("an entry name appears twice in the zip")]
    DuplicateEntry,
    /// An entry the index needs is not in the zip.
    #[error("entry {name} is missing")]
    MissingEntry {
        /// The entry's name.
        name: String,
    },
    /// An entry is compressed by zip; pack entries are stored, their payloads are zstd frames.
    #[error("entry {name} is compressed; pack entries are stored")]
    CompressedEntry {
        /// The entry's name.
        name: String,
    },
    /// An entry is larger than its cap.
    #[error("entry {name} is larger than its limit of {limit_bytes} bytes")]
    EntryTooLarge {
        /// The entry's name.
        name: String,
        /// The cap.
        limit_bytes: u64,
    },
    /// An entry could not be read (bad local header, CRC mismatch, cut short).
    #[error("entry {name}: {reason}")]
    BadEntry {
        /// The entry's name.
        name: String,
        /// What the zip reader said.
        reason: String,
    },
    /// `pack.json` is not a valid pack index.
    #[error("pack.json: {0}")]
    Index(#[source] Error),
    /// The pack goes between other releases than the caller asked for.
    #[error(
        "pack is for other releases (its manifests are {})",
        releases(from_manifest.as_ref(), to_manifest)
    )]
    OtherReleases {
        /// The starting manifest in `pack.json`.
        from_manifest: Option<Digest>,
        /// The target manifest in `pack.json`.
        to_manifest: Digest,
    },
    /// The index lists a blob that is not a file of the target release, or not at that size.
    #[error("blob {sha256} ({size_bytes} bytes) is not a file of the target release")]
    NotInRelease {
        /// The blob.
        sha256: Digest,
        /// The size the index gives.
        size_bytes: u64,
    },
    /// A payload did not decode to what the index says.
    #[error("{entry}: {source}")]
    Decode {
        /// The entry holding the payload (`patches/<sha256>.zst` names the blob).
        entry: String,
        /// What the decoder said.
        #[source]
        source: DecodeError,
    },
    /// The base of a patch is not available to the caller.
    #[error("patch base {base} of blob {sha256} is not on hand")]
    MissingBase {
        /// The blob the patch builds.
        sha256: Digest,
        /// The base it needs.
        base: Digest,
    },
    /// A compact pack's container is malformed at byte `at`.
    #[error("compact pack, at byte {at}: {reason}")]
    BadCompact {
        /// The offset of the fault.
        at: usize,
        /// What was wrong.
        reason: String,
    },
    /// The writer was given payloads that do not match the index.
    #[error("cannot write the pack: {reason}")]
    Write {
        /// What did not match.
        reason: String,
    },
}

fn releases(from: Option<&Digest>, to: &Digest) -> String {
    match from {
        Some(from) => format!("{from}..{to}"),
        None => format!("none..{to}"),
    }
}

impl PackError {
    /// A stable, snake_case code for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            PackError::NotZip { .. } => "pack_not_zip",
            PackError::TooManyEntries { .. } => "pack_too_many_entries",
            PackError::UnexpectedEntry { .. } => "pack_unexpected_entry",
            PackError::DuplicateEntry => "pack_duplicate_entry",
            PackError::MissingEntry { .. } => "pack_missing_entry",
            PackError::CompressedEntry { .. } => "pack_compressed_entry",
            PackError::EntryTooLarge { .. } => "pack_entry_too_large",
            PackError::BadEntry { .. } => "pack_bad_entry",
            PackError::Index(_) => "pack_index",
            PackError::OtherReleases { .. } => "pack_other_releases",
            PackError::NotInRelease { .. } => "pack_not_in_release",
            PackError::Decode { .. } => "pack_decode",
            PackError::MissingBase { .. } => "pack_missing_base",
            PackError::BadCompact { .. } => "pack_bad_compact",
            PackError::Write { .. } => "pack_write",
        }
    }
}

/// Cuts untrusted text that goes into an error message to at most `max` characters.
pub(crate) fn excerpt(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        value.to_owned()
    } else {
        let mut cut: String = value.chars().take(max).collect();
        cut.push('…');
        cut
    }
}
