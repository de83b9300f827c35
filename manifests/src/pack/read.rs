//! Reading the pack container under limits: the one reader, run by devices to install and by
//! the server to check every pack before it is stored.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read};

use zip::ZipArchive;
use zip::read::ZipReadOptions;

use super::compact::{self, COMPACT_MAGIC};
use super::{
    Encoding, MAX_PACK_INDEX_BYTES, PACK_DATA_ENTRY, PACK_INDEX_ENTRY, PackBlob, decode_frame,
    decode_patch, max_frame_bytes, parse_pack_index, solid_size,
};
use crate::Digest;
use crate::error::{PackError, excerpt};

/// The end-of-central-directory record: signature, then counts and offsets (22 bytes without
/// a comment).
const END_SIGNATURE: [u8; 4] = *b"PK\x05\x06";
const END_LEN: usize = 22;
/// The zip64 end locator, which would sit just before the end record.
const ZIP64_LOCATOR_SIGNATURE: [u8; 4] = *b"PK\x06\x07";
const ZIP64_LOCATOR_LEN: usize = 20;

/// What the caller expects a pack to bring.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedPack<'a> {
    /// The digest of the target release's manifest.
    pub to_manifest: Digest,
    /// The digest of the starting release's manifest for a diff pack; `None` for a full pack.
    /// Where a diff pack is expected, a full pack of the same target is accepted too: the server
    /// sends one when it is no larger than the diff (a tiny release).
    pub from_manifest: Option<Digest>,
    /// Every blob of the target release, with its size.
    pub blobs: &'a BTreeMap<Digest, u64>,
    /// Every blob of the target release, each once, in the order of the first path (sorted) that
    /// uses it: what a compact pack delivers, in order ([`super::compact`]).
    pub order: &'a [Digest],
    /// Every blob of the starting release, sorted: what a compact diff pack does not deliver,
    /// and what its patches are made against. Empty for a full pack.
    pub from_blobs: &'a [Digest],
}

/// An open pack whose container and index have been checked.
///
/// A pack comes in one of two containers with the same frames: a zip with `pack.json`
/// (format 1, `.zip`) or a compact pack (format 2, `.bpk`, [`super::compact`]); [`PackReader::open`]
/// tells them apart by their first bytes. It checks everything that does not need decoding;
/// [`PackReader::blobs`] then decodes payloads one blob at a time. Every blob comes out at the
/// size the pack gives, but its sha256 is the caller's to check: the pack is not signed, and
/// only the release manifest says what each blob must be.
pub struct PackReader<'a> {
    container: Container<'a>,
    /// Whether it is a full pack.
    full: bool,
    /// The blobs it delivers, with how each travels.
    blobs: Vec<PackBlob>,
    /// The decoded data frame, once a solid blob has been asked for.
    solid: Option<Vec<u8>>,
}

enum Container<'a> {
    Zip(Box<ZipArchive<Cursor<&'a [u8]>>>),
    Compact {
        data: Option<&'a [u8]>,
        patches: BTreeMap<Digest, &'a [u8]>,
    },
}

impl std::fmt::Debug for PackReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackReader")
            .field("full", &self.full)
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

impl<'a> PackReader<'a> {
    /// Opens a pack and checks it against `expected` before decoding any payload. A compact pack
    /// is checked as [`super::compact`] describes; a zip pack:
    ///
    /// - at most `2 + expected.blobs.len()` entries, checked on the end record before the zip
    ///   reader parses the central directory, then again on what it parsed;
    /// - only `pack.json`, `data.zst` (exactly when there are solid blobs) and a
    ///   `patches/<sha256>.zst` for each patched blob; no name twice; every entry stored;
    /// - `pack.json` at most [`MAX_PACK_INDEX_BYTES`], a valid [`PackIndex`] for the expected
    ///   manifests, listing only blobs of the target release at their sizes.
    ///
    /// # Errors
    /// The [`PackError`] naming the first rule broken.
    pub fn open(bytes: &'a [u8], expected: &ExpectedPack<'_>) -> Result<PackReader<'a>, PackError> {
        if bytes.starts_with(&COMPACT_MAGIC) {
            let compact = compact::open(bytes, expected)?;
            return Ok(PackReader {
                container: Container::Compact {
                    data: compact.data,
                    patches: compact.patches,
                },
                full: compact.full,
                blobs: compact.blobs,
                solid: None,
            });
        }
        let max_entries = 2 + expected.blobs.len() as u64;
        check_end(bytes, max_entries)?;
        let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|e| PackError::NotZip {
            reason: e.to_string(),
        })?;
        if archive.len() as u64 > max_entries {
            return Err(PackError::TooManyEntries {
                count: archive.len() as u64,
                max: max_entries,
            });
        }
        if archive.has_duplicate_names() {
            return Err(PackError::DuplicateEntry);
        }
        let mut names = BTreeSet::new();
        for raw in archive.file_names_raw() {
            let name = std::str::from_utf8(raw)
                .ok()
                .filter(|name| named_by_format(name))
                .ok_or_else(|| PackError::UnexpectedEntry {
                    name: excerpt(&String::from_utf8_lossy(raw), 80),
                })?;
            names.insert(name.to_owned());
        }

        let json = read_entry(&mut archive, PACK_INDEX_ENTRY, MAX_PACK_INDEX_BYTES)?;
        let index = parse_pack_index(&json).map_err(PackError::Index)?;
        let from_ok =
            index.from_manifest.is_none() || index.from_manifest == expected.from_manifest;
        if index.to_manifest != expected.to_manifest || !from_ok {
            return Err(PackError::OtherReleases {
                from_manifest: index.from_manifest,
                to_manifest: index.to_manifest,
            });
        }
        for blob in &index.blobs {
            if expected.blobs.get(&blob.sha256) != Some(&blob.size) {
                return Err(PackError::NotInRelease {
                    sha256: blob.sha256,
                    size_bytes: blob.size,
                });
            }
        }

        // Exactly the entries this index names.
        let mut wanted: BTreeSet<String> =
            index.blobs.iter().filter_map(|b| b.patch_entry()).collect();
        wanted.insert(PACK_INDEX_ENTRY.to_owned());
        if index.solid_size() > 0 {
            wanted.insert(PACK_DATA_ENTRY.to_owned());
        }
        if let Some(name) = names.difference(&wanted).next() {
            return Err(PackError::UnexpectedEntry { name: name.clone() });
        }
        if let Some(name) = wanted.difference(&names).next() {
            return Err(PackError::MissingEntry { name: name.clone() });
        }
        Ok(PackReader {
            container: Container::Zip(Box::new(archive)),
            full: index.from_manifest.is_none(),
            blobs: index.blobs,
            solid: None,
        })
    }

    /// Whether this is a full pack (every blob of the target release), which may answer where
    /// a diff pack was asked for.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The blobs the pack delivers, with how each travels.
    pub fn blob_list(&self) -> &[PackBlob] {
        &self.blobs
    }

    /// The same pack in the compact container (the same frames, byte for byte), for a server
    /// that stores zip packs to answer devices that ask for compact ones; a compact pack is
    /// returned as it is.
    ///
    /// # Errors
    /// [`PackError::Write`] when the zip pack does not deliver exactly the blobs a compact pack
    /// to `expected` delivers, in that order for its solid ones; errors reading its entries.
    pub fn to_compact(
        mut self,
        bytes: &[u8],
        expected: &ExpectedPack<'_>,
    ) -> Result<Vec<u8>, PackError> {
        let archive = match &mut self.container {
            Container::Zip(archive) => archive,
            Container::Compact { .. } => return Ok(bytes.to_vec()),
        };
        let by_digest: BTreeMap<Digest, &PackBlob> =
            self.blobs.iter().map(|b| (b.sha256, b)).collect();
        let ordered = compact::delivered(expected, self.full)
            .map(|d| {
                by_digest
                    .get(d)
                    .map(|b| (*b).clone())
                    .ok_or_else(|| PackError::Write {
                        reason: format!("the zip pack lacks delivered blob {d}"),
                    })
            })
            .collect::<Result<Vec<PackBlob>, PackError>>()?;
        if ordered.len() != self.blobs.len() {
            return Err(PackError::Write {
                reason: "the zip pack delivers blobs a compact pack would not".into(),
            });
        }
        let solid_size = solid_size(&ordered);
        let data = if solid_size > 0 {
            Some(read_entry(
                archive,
                PACK_DATA_ENTRY,
                max_frame_bytes(solid_size),
            )?)
        } else {
            None
        };
        compact::write(expected, self.full, &ordered, data.as_deref(), |blob| {
            let name = blob.patch_entry().unwrap_or_default();
            read_entry(archive, &name, max_frame_bytes(blob.size))
        })
    }

    /// Decodes, in index order, each blob for which `wanted` is true, yielding its sha256 and
    /// bytes (exactly the size the index gives; the sha256 is for the caller to check).
    ///
    /// `base` gives the bytes of a patch's base blob, or `None` when the caller does not have it.
    /// `data.zst` is decoded once, at the first solid blob wanted, and kept until the iterator is
    /// dropped.
    ///
    /// # Errors
    /// Each item is [`PackError::MissingBase`], [`PackError::Decode`] naming the entry, or an
    /// error reading the entry; after one, the pack should be given up.
    pub fn blobs<'r, W, B>(&'r mut self, wanted: W, base: B) -> PackBlobs<'r, 'a, W, B>
    where
        W: Fn(&Digest) -> bool,
        B: Fn(&Digest) -> Option<Vec<u8>>,
    {
        PackBlobs {
            reader: self,
            next: 0,
            wanted,
            base,
        }
    }

    fn blob(
        &mut self,
        blob: &PackBlob,
        base: impl Fn(&Digest) -> Option<Vec<u8>>,
    ) -> Result<Vec<u8>, PackError> {
        match &blob.encoding {
            Encoding::Solid { offset } => {
                let solid = self.solid()?;
                usize::try_from(*offset)
                    .ok()
                    .zip(usize::try_from(blob.size).ok())
                    .and_then(|(start, len)| solid.get(start..start.checked_add(len)?))
                    .map(<[u8]>::to_vec)
                    // Unreachable for a validated index, whose solid blobs tile the stream.
                    .ok_or_else(|| PackError::BadEntry {
                        name: PACK_DATA_ENTRY.to_owned(),
                        reason: format!("no bytes for blob {}", blob.sha256),
                    })
            }
            Encoding::Patch { base: base_digest } => {
                let base_bytes = base(base_digest).ok_or(PackError::MissingBase {
                    sha256: blob.sha256,
                    base: *base_digest,
                })?;
                let name = blob.patch_entry().unwrap_or_default();
                let frame = match &mut self.container {
                    Container::Zip(archive) => {
                        Cow::Owned(read_entry(archive, &name, max_frame_bytes(blob.size))?)
                    }
                    // Always there for an opened pack, which has a frame for each patch.
                    Container::Compact { patches, .. } => Cow::Borrowed(
                        *patches
                            .get(&blob.sha256)
                            .ok_or_else(|| PackError::MissingEntry { name: name.clone() })?,
                    ),
                };
                decode_patch(&frame, &base_bytes, blob.size).map_err(|source| PackError::Decode {
                    entry: name,
                    source,
                })
            }
        }
    }

    fn solid(&mut self) -> Result<&[u8], PackError> {
        if self.solid.is_none() {
            let size = solid_size(&self.blobs);
            // Only empty blobs travel solid when there are no solid bytes: there is no frame.
            let bytes = if size == 0 {
                Vec::new()
            } else {
                let frame = match &mut self.container {
                    Container::Zip(archive) => {
                        Cow::Owned(read_entry(archive, PACK_DATA_ENTRY, max_frame_bytes(size))?)
                    }
                    Container::Compact { data, .. } => Cow::Borrowed(data.unwrap_or_default()),
                };
                decode_frame(&frame, size).map_err(|source| PackError::Decode {
                    entry: PACK_DATA_ENTRY.to_owned(),
                    source,
                })?
            };
            self.solid = Some(bytes);
        }
        Ok(self.solid.as_deref().unwrap_or_default())
    }
}

/// The blobs of a pack, decoded one at a time; see [`PackReader::blobs`].
pub struct PackBlobs<'r, 'a, W, B> {
    reader: &'r mut PackReader<'a>,
    next: usize,
    wanted: W,
    base: B,
}

impl<W, B> std::fmt::Debug for PackBlobs<'_, '_, W, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackBlobs")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<W, B> Iterator for PackBlobs<'_, '_, W, B>
where
    W: Fn(&Digest) -> bool,
    B: Fn(&Digest) -> Option<Vec<u8>>,
{
    type Item = Result<(Digest, Vec<u8>), PackError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let blob = self.reader.blobs.get(self.next)?.clone();
            self.next += 1;
            if (self.wanted)(&blob.sha256) {
                let bytes = self.reader.blob(&blob, &self.base);
                return Some(bytes.map(|bytes| (blob.sha256, bytes)));
            }
        }
    }
}

/// Whether `name` has the form of an entry the format names.
fn named_by_format(name: &str) -> bool {
    name == PACK_INDEX_ENTRY
        || name == PACK_DATA_ENTRY
        || name
            .strip_prefix("patches/")
            .and_then(|rest| rest.strip_suffix(".zst"))
            .is_some_and(|digest| Digest::parse(digest).is_ok())
}

/// Checks the end record before the zip reader allocates for the central directory: it must be
/// the last 22 bytes (packs carry no comment), not announce zip64, and count at most
/// `max_entries`. The zip reader then finds this same record, since it searches from the end.
fn check_end(bytes: &[u8], max_entries: u64) -> Result<(), PackError> {
    let not_zip = |reason: &str| PackError::NotZip {
        reason: reason.to_owned(),
    };
    let end = bytes
        .len()
        .checked_sub(END_LEN)
        .and_then(|start| bytes.get(start..))
        .ok_or_else(|| not_zip("shorter than an end-of-central-directory record"))?;
    if end.get(..4) != Some(&END_SIGNATURE[..]) {
        return Err(not_zip(
            "no end-of-central-directory record at the end (cut short, or a comment)",
        ));
    }
    let locator = bytes.len().checked_sub(END_LEN + ZIP64_LOCATOR_LEN);
    if locator.and_then(|at| bytes.get(at..at + 4)) == Some(&ZIP64_LOCATOR_SIGNATURE[..]) {
        return Err(not_zip("zip64 is not used by packs"));
    }
    let u16_at = |at: usize| {
        end.get(at..at + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, |b| u64::from(u16::from_le_bytes(b)))
    };
    // Entries on this disk and in all; the zip reader trusts one or the other.
    let count = u16_at(8).max(u16_at(10));
    if count == 0xffff {
        return Err(not_zip("zip64 is not used by packs"));
    }
    if count > max_entries {
        return Err(PackError::TooManyEntries {
            count,
            max: max_entries,
        });
    }
    Ok(())
}

/// Reads one stored entry of at most `limit_bytes`, checking its local header against the
/// central directory and its CRC.
fn read_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit_bytes: u64,
) -> Result<Vec<u8>, PackError> {
    let bad = |e: &dyn std::fmt::Display| PackError::BadEntry {
        name: name.to_owned(),
        reason: e.to_string(),
    };
    let options = ZipReadOptions::new().enforce_header_consistency(true);
    let entry = archive
        .by_name_with_options(name, options)
        .map_err(|e| match e {
            zip::result::ZipError::FileNotFound => PackError::MissingEntry {
                name: name.to_owned(),
            },
            e => bad(&e),
        })?;
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(PackError::CompressedEntry {
            name: name.to_owned(),
        });
    }
    let too_large = || PackError::EntryTooLarge {
        name: name.to_owned(),
        limit_bytes,
    };
    if entry.size() > limit_bytes {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or_default());
    entry
        .take(limit_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| bad(&e))?;
    if out.len() as u64 > limit_bytes {
        return Err(too_large());
    }
    Ok(out)
}
