//! Packs: what a device downloads to install a release, as one zip.
//!
//! A pack is a zip of *stored* (uncompressed) entries, because every payload inside is already a
//! zstd frame:
//!
//! - `pack.json` — a [`PackIndex`]: from which release to which, what changes, and how each blob the
//!   device lacks travels;
//! - `data.zst` — one zstd frame holding, back to back, every blob that travels whole (compressed
//!   together, so similar files help each other), present when there is at least one;
//! - `patches/<sha256>.zst` — for a blob that travels as a patch: a zstd frame whose reference prefix
//!   is the device's copy of the `base` blob (`zstd --patch-from`).
//!
//! A *full pack* has no `from`; a *diff pack* goes from one release to another. The pack itself
//! is not signed: a device trusts only the sha256 of each resulting blob, which the signed release
//! manifest lists, and checks it before anything is installed.
//!
//! [`write_pack`] is the one writer of the container (the server), [`PackReader`] the one reader
//! (devices, and the server checking each pack before it stores it), and [`decode_frame`] and
//! [`decode_patch`] the one decoder, with its limits [`MAX_WINDOW_LOG`] and [`MAX_CONTENT_BYTES`]
//! that the server's encoder stays within.

use serde::{Deserialize, Serialize};

use crate::canonical::parse_strict;
use crate::error::{Error, Result};
use crate::{Digest, PackageId, RelPath, ReleaseVersion};

mod compact;
mod decode;
mod read;
mod write;

pub use compact::{COMPACT_FORMAT, COMPACT_MAGIC, frame_len};
pub use decode::{
    DecodeError, MAX_CONTENT_BYTES, MAX_WINDOW_LOG, decode_bounded, decode_frame, decode_patch,
    max_frame_bytes,
};
pub use read::{ExpectedPack, PackBlobs, PackReader};
pub use write::write_pack;

/// The pack format this code writes and reads.
pub const PACK_FORMAT: u64 = 1;
/// The name of the pack index entry.
pub const PACK_INDEX_ENTRY: &str = "pack.json";
/// The name of the solid data entry.
pub const PACK_DATA_ENTRY: &str = "data.zst";
/// The largest `pack.json` a pack may carry.
pub const MAX_PACK_INDEX_BYTES: u64 = 16 * 1024 * 1024;

/// How one blob travels in a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "encoding", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Encoding {
    /// Whole, inside `data.zst` at this offset of the decompressed stream.
    Solid {
        /// Byte offset in the decompressed `data.zst`.
        offset: u64,
    },
    /// As a patch against the device's copy of `base`, in `patches/<sha256>.zst`.
    Patch {
        /// The blob the patch applies to.
        base: Digest,
    },
}

/// One blob a pack delivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackBlob {
    /// The sha256 of the resulting blob.
    pub sha256: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// How it travels.
    #[serde(flatten)]
    pub encoding: Encoding,
}

impl PackBlob {
    /// The zip entry holding this blob's patch, for patches.
    pub fn patch_entry(&self) -> Option<String> {
        match self.encoding {
            Encoding::Patch { .. } => Some(format!("patches/{}.zst", self.sha256)),
            Encoding::Solid { .. } => None,
        }
    }
}

/// The `pack.json` of a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackIndex {
    /// Always [`PACK_FORMAT`].
    pub format: u64,
    /// The package.
    pub package: PackageId,
    /// The release the pack starts from; `None` for a full pack.
    pub from: Option<ReleaseVersion>,
    /// The release the pack installs.
    pub to: ReleaseVersion,
    /// The digest of the starting release's manifest.
    pub from_manifest: Option<Digest>,
    /// The digest of the target release's manifest.
    pub to_manifest: Digest,
    /// Paths only the target has.
    pub added: Vec<RelPath>,
    /// Paths whose content changes.
    pub changed: Vec<RelPath>,
    /// Paths only the starting release has.
    pub removed: Vec<RelPath>,
    /// Every blob the pack delivers, in `data.zst` order for solid ones.
    pub blobs: Vec<PackBlob>,
}

impl PackIndex {
    /// Checks the rules beyond field types: the format, `from` and `from_manifest` together,
    /// each blob once, solid blobs back to back from offset 0, and no patch against itself.
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] or [`Error::InvalidField`].
    pub fn validate(&self) -> Result<()> {
        if self.format != PACK_FORMAT {
            return Err(Error::UnsupportedFormat {
                doc: "pack",
                found: self.format,
                supported: PACK_FORMAT,
            });
        }
        let invalid = |field: String, reason: &str| Error::InvalidField {
            field,
            reason: reason.to_owned(),
        };
        if self.from.is_some() != self.from_manifest.is_some() {
            return Err(invalid(
                "from_manifest".into(),
                "must be given exactly when from is",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut next_offset = 0u64;
        for (i, blob) in self.blobs.iter().enumerate() {
            if !seen.insert(blob.sha256) {
                return Err(invalid(format!("blobs[{i}]"), "blob listed twice"));
            }
            match &blob.encoding {
                Encoding::Solid { offset } => {
                    if *offset != next_offset {
                        return Err(invalid(
                            format!("blobs[{i}].offset"),
                            "solid blobs must follow each other from offset 0",
                        ));
                    }
                    next_offset = next_offset
                        .checked_add(blob.size)
                        .ok_or_else(|| invalid(format!("blobs[{i}].size"), "sizes overflow"))?;
                }
                Encoding::Patch { base } => {
                    if *base == blob.sha256 {
                        return Err(invalid(
                            format!("blobs[{i}].base"),
                            "a blob cannot patch itself",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The length of the decompressed `data.zst`.
    pub fn solid_size(&self) -> u64 {
        solid_size(&self.blobs)
    }
}

/// The bytes of the blobs of `blobs` that travel solid: the decoded length of the data frame.
pub(crate) fn solid_size(blobs: &[PackBlob]) -> u64 {
    blobs
        .iter()
        .filter(|b| matches!(b.encoding, Encoding::Solid { .. }))
        .map(|b| b.size)
        .sum()
}

/// Parses and validates a `pack.json`.
///
/// # Errors
/// [`Error::Json`], [`Error::Schema`] and the errors of [`PackIndex::validate`].
pub fn parse_pack_index(bytes: &[u8]) -> Result<PackIndex> {
    let index: PackIndex =
        serde_path_to_error::deserialize(parse_strict(bytes)?).map_err(|e| Error::Schema {
            doc: "pack",
            at: e.path().to_string(),
            reason: e.into_inner().to_string(),
        })?;
    index.validate()?;
    Ok(index)
}

#[cfg(test)]
mod tests;
