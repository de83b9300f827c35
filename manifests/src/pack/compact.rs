//! The compact pack container (format 2, `.bpk`): the zstd frames of a zip pack, without the
//! zip and without `pack.json`.
//!
//! A zip pack names every blob it carries (its sha256, size, encoding and patch base) and every
//! changed path, although the two signed manifests the device already holds say all of that: for
//! a release of a few hundred changed files, `pack.json` and the zip headers came to 46 KB around
//! a few hundred KB of frames. A compact pack keeps only what the manifests do not say, which
//! blobs travel as patches and against which base:
//!
//! ```text
//! "BLNP" 0x02 flags                  magic, format, flags (bit 0: a diff pack; the rest zero)
//! to_manifest[32] [from_manifest[32]] the manifests' sha256 (from_manifest for a diff pack)
//! tags                                varints over the delivered blobs, in order (below)
//! data frame                          the solid blobs back to back, when they hold any byte
//! patch frames                        one per patched blob, in order
//! ```
//!
//! The *delivered blobs* follow from the manifests alone: every blob of the target release, in the
//! order of the first path (sorted) that uses it, less, for a diff pack, the blobs of the starting
//! release. That is the server's build order (`manifests::plan_diff`'s fetch list), so the data
//! frame is the zip pack's `data.zst` byte for byte. A tag `2n` (n ≥ 1) says the next n blobs
//! travel solid (two runs never follow each other); a tag `2k + 1` says the next blob is a patch
//! against blob k of the starting release, its blobs sorted by sha256. Varints are LEB128, never
//! longer than needed. The zstd frames carry their own lengths, so nothing else is needed to find
//! where each ends ([`frame_len`]), and the pack must end exactly after the last one.
//!
//! Nothing here is signed or trusted, as in a zip pack: every blob's sha256 is checked against
//! the signed manifest before it is stored.

use std::collections::BTreeMap;

use super::{Encoding, ExpectedPack, PackBlob, max_frame_bytes};
use crate::Digest;
use crate::error::PackError;

/// The first bytes of a compact pack.
pub const COMPACT_MAGIC: [u8; 4] = *b"BLNP";
/// The compact container's format number, the byte after the magic.
pub const COMPACT_FORMAT: u8 = 2;

const FLAG_DIFF: u8 = 1;
/// The zstd frame magic, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A compact pack split into its parts, checked against what the caller expects.
#[derive(Debug)]
pub(super) struct Compact<'a> {
    /// Whether it is a full pack (every blob of the target release).
    pub(super) full: bool,
    /// The delivered blobs, in order, with how each travels.
    pub(super) blobs: Vec<PackBlob>,
    /// The data frame, when solid blobs hold any byte.
    pub(super) data: Option<&'a [u8]>,
    /// Each patched blob's frame.
    pub(super) patches: BTreeMap<Digest, &'a [u8]>,
}

/// The blobs a pack to `expected` delivers, in order: a full pack's when `full`, else a diff
/// pack's (see the module docs).
pub(super) fn delivered<'e>(
    expected: &'e ExpectedPack<'_>,
    full: bool,
) -> impl Iterator<Item = &'e Digest> + 'e {
    expected
        .order
        .iter()
        .filter(move |d| full || expected.from_blobs.binary_search(d).is_err())
}

/// Splits and checks a compact pack: the header against `expected`, the tags against the
/// delivered blobs, each frame's length (within [`max_frame_bytes`] of what it decodes to), and
/// nothing after the last frame. Frames are not decoded here.
pub(super) fn open<'a>(
    bytes: &'a [u8],
    expected: &ExpectedPack<'_>,
) -> Result<Compact<'a>, PackError> {
    let mut at = Cursor { bytes, pos: 0 };
    if at.take(4)? != COMPACT_MAGIC {
        return Err(bad(0, "not a compact pack (no BLNP magic)".into()));
    }
    let format = at.byte()?;
    if format != COMPACT_FORMAT {
        return Err(bad(
            4,
            format!("format {format}, this reader knows {COMPACT_FORMAT}"),
        ));
    }
    let flags = at.byte()?;
    if flags & !FLAG_DIFF != 0 {
        return Err(bad(5, format!("unknown flags {flags:#04x}")));
    }
    let to_manifest = at.digest()?;
    let from_manifest = if flags & FLAG_DIFF != 0 {
        Some(at.digest()?)
    } else {
        None
    };
    // A full pack answers for a diff when it is no larger (a tiny release).
    let from_ok = from_manifest.is_none() || from_manifest == expected.from_manifest;
    if to_manifest != expected.to_manifest || !from_ok {
        return Err(PackError::OtherReleases {
            from_manifest,
            to_manifest,
        });
    }
    let full = from_manifest.is_none();

    let mut blobs = Vec::new();
    let mut solid_size = 0u64;
    let mut after_run = false;
    let mut pending = delivered(expected, full).peekable();
    while pending.peek().is_some() {
        let tag_at = at.pos;
        let tag = at.varint()?;
        if tag % 2 == 0 {
            let run = tag / 2;
            if run == 0 || after_run {
                return Err(bad(tag_at, format!("solid run tag {tag} is not canonical")));
            }
            for _ in 0..run {
                let sha256 = *pending
                    .next()
                    .ok_or_else(|| bad(tag_at, format!("a run of {run} passes the last blob")))?;
                let size = size_of(expected, &sha256)?;
                blobs.push(PackBlob {
                    sha256,
                    size,
                    encoding: Encoding::Solid { offset: solid_size },
                });
                solid_size = solid_size.saturating_add(size);
            }
            after_run = true;
        } else {
            let k = usize::try_from(tag / 2).unwrap_or(usize::MAX);
            let base = match expected.from_blobs.get(k) {
                Some(base) if !full => *base,
                _ => {
                    return Err(bad(
                        tag_at,
                        format!("patch base {k} is not a blob of the starting release"),
                    ));
                }
            };
            let sha256 = *pending
                .next()
                .ok_or_else(|| bad(tag_at, "a patch tag after the last blob".into()))?;
            let size = size_of(expected, &sha256)?;
            blobs.push(PackBlob {
                sha256,
                size,
                encoding: Encoding::Patch { base },
            });
            after_run = false;
        }
    }

    let data = if solid_size > 0 {
        Some(at.frame(max_frame_bytes(solid_size))?)
    } else {
        None
    };
    let mut patches = BTreeMap::new();
    for blob in &blobs {
        if let Encoding::Patch { .. } = blob.encoding {
            patches.insert(blob.sha256, at.frame(max_frame_bytes(blob.size))?);
        }
    }
    if at.pos != bytes.len() {
        return Err(bad(
            at.pos,
            format!("{} bytes after the last frame", bytes.len() - at.pos),
        ));
    }
    Ok(Compact {
        full,
        blobs,
        data,
        patches,
    })
}

/// Writes a compact pack whose blobs travel as `blobs` says (in delivered order), with the
/// frames given: the data frame when solid blobs hold any byte, and each patched blob's frame
/// from `patch`.
///
/// # Errors
/// [`PackError::Write`] when `blobs` is not the delivered list of `expected` in order, a solid
/// blob is not where the data frame has it, or a patch base is not a blob of the starting
/// release; `patch`'s error.
pub(super) fn write(
    expected: &ExpectedPack<'_>,
    full: bool,
    blobs: &[PackBlob],
    data: Option<&[u8]>,
    mut patch: impl FnMut(&PackBlob) -> Result<Vec<u8>, PackError>,
) -> Result<Vec<u8>, PackError> {
    let fail = |reason: String| PackError::Write { reason };
    let from_manifest = if full {
        None
    } else {
        Some(
            expected
                .from_manifest
                .ok_or_else(|| fail("a diff pack needs the starting release's manifest".into()))?,
        )
    };
    let mut out = Vec::with_capacity(80 + data.map_or(0, <[u8]>::len));
    out.extend_from_slice(&COMPACT_MAGIC);
    out.push(COMPACT_FORMAT);
    out.push(if full { 0 } else { FLAG_DIFF });
    out.extend_from_slice(expected.to_manifest.as_bytes());
    if let Some(from) = from_manifest {
        out.extend_from_slice(from.as_bytes());
    }

    let mut order = delivered(expected, full);
    let mut run = 0u64;
    let mut offset = 0u64;
    let mut frames = Vec::new();
    for blob in blobs {
        if order.next() != Some(&blob.sha256) {
            return Err(fail(format!(
                "blob {} is not the next delivered blob",
                blob.sha256
            )));
        }
        match blob.encoding {
            Encoding::Solid { offset: at } => {
                if at != offset {
                    return Err(fail(format!(
                        "solid blob {} is at {at} of the data, not {offset}",
                        blob.sha256
                    )));
                }
                offset += blob.size;
                run += 1;
            }
            Encoding::Patch { base } => {
                let k = expected
                    .from_blobs
                    .binary_search(&base)
                    .ok()
                    .filter(|_| !full)
                    .ok_or_else(|| {
                        fail(format!("patch base {base} is not in the starting release"))
                    })?;
                push_run(&mut out, &mut run);
                put_varint(&mut out, 2 * k as u64 + 1);
                frames.push(patch(blob)?);
            }
        }
    }
    push_run(&mut out, &mut run);
    if order.next().is_some() {
        return Err(fail("the pack lacks delivered blobs".into()));
    }
    match (data, offset > 0) {
        (Some(data), true) => out.extend_from_slice(data),
        (None, false) => {}
        (given, _) => {
            return Err(fail(format!(
                "data frame given: {}, solid bytes: {offset}",
                given.is_some()
            )));
        }
    }
    for frame in frames {
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

fn push_run(out: &mut Vec<u8>, run: &mut u64) {
    if *run > 0 {
        put_varint(out, 2 * *run);
        *run = 0;
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn size_of(expected: &ExpectedPack<'_>, sha256: &Digest) -> Result<u64, PackError> {
    // The delivered list comes from the caller's own manifest; a blob it lacks is the caller's
    // inconsistency, reported as for a zip pack naming it.
    expected
        .blobs
        .get(sha256)
        .copied()
        .ok_or(PackError::NotInRelease {
            sha256: *sha256,
            size_bytes: 0,
        })
}

fn bad(at: usize, reason: String) -> PackError {
    PackError::BadCompact { at, reason }
}

/// A reading position in a compact pack.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PackError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let slice = end
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| bad(self.pos, format!("cut short: {n} more bytes expected")))?;
        self.pos += n;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, PackError> {
        Ok(self.take(1)?[0])
    }

    fn digest(&mut self) -> Result<Digest, PackError> {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.take(32)?);
        Ok(Digest::from_bytes(bytes))
    }

    /// A LEB128 varint of at most 64 bits, never longer than needed.
    fn varint(&mut self) -> Result<u64, PackError> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(bad(start, "varint overflows 64 bits".into()));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return Err(bad(start, "varint is longer than needed".into()));
                }
                return Ok(value);
            }
        }
        Err(bad(start, "varint overflows 64 bits".into()))
    }

    /// One zstd frame of at most `limit` bytes.
    fn frame(&mut self, limit: u64) -> Result<&'a [u8], PackError> {
        let start = self.pos;
        let rest = self.bytes.get(start..).unwrap_or_default();
        let len = frame_len(rest).map_err(|reason| bad(start, reason))?;
        if len as u64 > limit {
            return Err(bad(
                start,
                format!("a frame of {len} bytes, at most {limit} expected"),
            ));
        }
        self.take(len)
    }
}

/// The length of the zstd frame that `bytes` starts with, found from its header and block
/// headers without decoding (as libzstd's `ZSTD_findFrameCompressedSize`).
///
/// # Errors
/// A reason when `bytes` does not start with a whole zstd frame (skippable frames included).
pub fn frame_len(bytes: &[u8]) -> Result<usize, String> {
    let cut = || "a zstd frame is cut short".to_owned();
    if bytes.get(..4) != Some(&ZSTD_MAGIC[..]) {
        return Err("no zstd frame here".into());
    }
    let descriptor = *bytes.get(4).ok_or_else(cut)?;
    if descriptor & 0x08 != 0 {
        return Err("a zstd frame header sets its reserved bit".into());
    }
    let single_segment = descriptor & 0x20 != 0;
    let size_field = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let dictionary_field = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let mut pos = 5 + usize::from(!single_segment) + dictionary_field + size_field;
    loop {
        let header = bytes.get(pos..pos + 3).ok_or_else(cut)?;
        let header = u32::from(header[0]) | u32::from(header[1]) << 8 | u32::from(header[2]) << 16;
        let size = (header >> 3) as usize;
        let content = match (header >> 1) & 3 {
            0 | 2 => size,
            1 => 1,
            _ => return Err("a zstd block of the reserved type".into()),
        };
        pos = pos + 3 + content;
        if pos > bytes.len() {
            return Err(cut());
        }
        if header & 1 != 0 {
            break;
        }
    }
    if descriptor & 0x04 != 0 {
        pos += 4;
    }
    if pos > bytes.len() {
        return Err(cut());
    }
    Ok(pos)
}
