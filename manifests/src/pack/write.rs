//! Writing the pack container: the one place that lays out a pack's zip.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;

use super::{MAX_PACK_INDEX_BYTES, PACK_DATA_ENTRY, PACK_INDEX_ENTRY, PackIndex};
use crate::error::PackError;
use crate::{Digest, max_frame_bytes, to_canonical};

/// Writes the zip of a pack: `pack.json`, then `data.zst` when `data` is given, then each patch in
/// the order of `index.blobs`; every entry stored, with a fixed timestamp and mode, so the same
/// inputs always give the same bytes.
///
/// `data` is the zstd frame of the solid blobs back to back, `patches` the patch frame of each
/// blob the index sends as a patch. Frames are not decoded here; [`super::PackReader`] does that.
///
/// # Errors
/// [`PackError::Index`] if the index breaks its rules, [`PackError::Write`] if the payloads do
/// not match it (a missing or extra patch, `data` without solid blobs or the reverse), and
/// [`PackError::EntryTooLarge`] for a payload a reader would refuse.
pub fn write_pack(
    index: &PackIndex,
    data: Option<&[u8]>,
    patches: &BTreeMap<Digest, Vec<u8>>,
) -> Result<Vec<u8>, PackError> {
    index.validate().map_err(PackError::Index)?;
    let solid_size = index.solid_size();
    if data.is_some() != (solid_size > 0) {
        return Err(PackError::Write {
            reason: format!(
                "data.zst given: {}, solid bytes: {solid_size}",
                data.is_some()
            ),
        });
    }
    let mut entries: Vec<(String, &[u8], u64)> = Vec::with_capacity(2 + patches.len());
    let json = to_canonical(index).map_err(PackError::Index)?;
    entries.push((PACK_INDEX_ENTRY.to_owned(), &json, MAX_PACK_INDEX_BYTES));
    if let Some(data) = data {
        entries.push((
            PACK_DATA_ENTRY.to_owned(),
            data,
            max_frame_bytes(solid_size),
        ));
    }
    let mut used = 0;
    for blob in &index.blobs {
        if let Some(name) = blob.patch_entry() {
            let frame = patches.get(&blob.sha256).ok_or_else(|| PackError::Write {
                reason: format!("no patch frame for blob {}", blob.sha256),
            })?;
            used += 1;
            entries.push((name, frame, max_frame_bytes(blob.size)));
        }
    }
    if used != patches.len() {
        return Err(PackError::Write {
            reason: format!("{} patch frames for {used} patched blobs", patches.len()),
        });
    }

    let zip_error = |e: zip::result::ZipError| PackError::Write {
        reason: e.to_string(),
    };
    let io_error = |e: std::io::Error| PackError::Write {
        reason: e.to_string(),
    };
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes, limit_bytes) in entries {
        if bytes.len() as u64 > limit_bytes {
            return Err(PackError::EntryTooLarge { name, limit_bytes });
        }
        zip.start_file(name, options).map_err(zip_error)?;
        zip.write_all(bytes).map_err(io_error)?;
    }
    Ok(zip.finish().map_err(zip_error)?.into_inner())
}
