//! # manifests — the contract both sides of Baleen share
//!
//! Everything the server and the device must agree on lives here exactly once: identifiers and
//! safe bundle paths, the release manifest and the channel index, canonical JSON and digests,
//! Ed25519 signing and verification with thresholds, diff planning, rollout buckets, host-app
//! targeting, the pack container with its zstd decoder, and the URL paths of the HTTP API
//! ([`paths`]).
//!
//! It is pure code, like quinn-proto: bytes and values in, values out. It does no file-system or
//! network IO, has no async, no global state, and never reads the clock or a random source: `now`
//! and key seeds come in as arguments. That keeps it deterministic, fuzzable and portable.
//!
//! Where to start: [`verify_index`] and [`verify_release`] are what a device calls on what it
//! downloads; [`Release::sign`] and [`Index::sign`] are what the server calls; [`plan_diff`]
//! and [`select`] decide what moves. Golden vectors for every format live in `tests/data/`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod canonical;
mod de;
mod diff;
mod digest;
mod envelope;
mod error;
mod events;
mod ids;
mod index;
mod index_delta;
mod key_list;
mod keys;
mod pack;
mod path;
pub mod paths;
mod release;
mod release_delta;
pub mod rollout;
mod target;
mod time;

pub use canonical::{
    MAX_SAFE_INTEGER, canonicalize, parse_strict, to_canonical, to_canonical_bytes,
};
pub use diff::{DiffPlan, Fetch, Files, plan_diff, rename_key};
pub use digest::{Digest, Hasher, decode_hex, encode_hex};
pub use envelope::{Opened, SignedDocument, add_signature, cosign, open, sign_value, signed_bytes};
pub use error::{Error, PackError, Result};
pub use events::{
    Event, EventBatch, EventKind, MAX_COUNT, MAX_DEVICE_ID_CHARS, MAX_EVENTS_PER_BATCH,
    PAINT_BUCKETS, PAINT_MS_BOUNDS, paint_bucket, parse_event_batch,
};
pub use ids::{
    AppId, Channel, HostRequirement, HostVersion, MAX_NAME_LEN, PackageId, ReleaseVersion,
};
pub use index::{
    Candidate, FULL_ROLLOUT, INDEX_FORMAT, Index, IndexScope, MAX_OLDER, MAX_PACKAGES,
    PackageEntry, Prefetch, ReleaseRef, VerifiedIndex, check_index, parse_index_unverified,
    verify_index,
};
pub use index_delta::{
    INDEX_DELTA_FORMAT, IndexDelta, apply_index_delta, packages_digest, rebuilt_index_bytes,
    verify_rebuilt_index,
};
pub use key_list::{
    KEY_LIST_FORMAT, KeyList, MAX_CHAIN, MAX_KEYS, Role, RoleName, Roles, TrustedKeyList,
    check_role, follow_key_chain, join_key_chain, parse_key_list_unverified, split_key_chain,
};
pub use keys::{KeyId, KeyPair, PublicKey, TrustedKeys};
pub use pack::{
    COMPACT_FORMAT, COMPACT_MAGIC, DecodeError, Encoding, ExpectedPack, MAX_CONTENT_BYTES,
    MAX_PACK_INDEX_BYTES, MAX_WINDOW_LOG, PACK_DATA_ENTRY, PACK_FORMAT, PACK_INDEX_ENTRY, PackBlob,
    PackBlobs, PackIndex, PackReader, decode_bounded, decode_frame, decode_patch, frame_len,
    max_frame_bytes, parse_pack_index, write_pack,
};
pub use path::{MAX_DEPTH, MAX_PATH_LEN, MAX_SEGMENT_LEN, RelPath, check_collisions};
pub use paths::{PackFormat, PackName};
pub use release::{
    FileEntry, MAX_FILES, MAX_NOTES_LEN, MAX_REVISION_LEN, MAX_ROUTES, MimeType, RELEASE_FORMAT,
    Release, Route, UrlPrefix, VerifiedRelease, check_origin, parse_release_unverified,
    verify_release,
};
pub use release_delta::{
    RELEASE_DELTA_FORMAT, RebuiltRelease, ReleaseDelta, apply_release_delta, rebuild_release,
};
pub use target::{Reason, Selection, select, select_all};
pub use time::Timestamp;

#[cfg(test)]
mod tests;
