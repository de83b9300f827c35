//! Our own walk over the raw central directory, for what the zip reader hides.
//!
//! The reader keys entries by name in a map, so a repeated name silently keeps only the last
//! entry and `len()` counts names, not headers. Walking the headers ourselves counts every one,
//! finds a repeated raw name and checks that nothing follows the end record and its comment.

use std::collections::HashSet;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};

use super::error::{IngestError, Result, excerpt};

const CENTRAL_HEADER: u32 = 0x0201_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;

/// What the walk found.
#[derive(Debug)]
pub(super) struct RawDirectory {
    /// Central-directory headers, counted one by one.
    pub(super) headers: usize,
}

/// Walks the central directory that starts at `start` in `reader` (of `len` bytes): counts the
/// headers up to `max_entries`, refuses a repeated raw name, and checks that the end records come
/// right after the headers and end exactly at the end of the file.
///
/// # Errors
/// [`IngestError::TooManyEntries`], [`IngestError::DuplicateEntry`],
/// [`IngestError::TrailingData`], [`IngestError::InconsistentArchive`] for any other surprise,
/// [`IngestError::Io`] when reading fails.
pub(super) fn walk<R: Read + Seek>(
    reader: R,
    start: u64,
    len: u64,
    max_entries: usize,
) -> Result<RawDirectory> {
    let mut reader = BufReader::new(reader);
    reader
        .seek(SeekFrom::Start(start))
        .map_err(|e| IngestError::io("seeking to the central directory", e))?;
    let mut names: HashSet<Vec<u8>> = HashSet::new();
    let mut headers = 0usize;
    let mut pos = start;
    let mut seen_zip64_end = false;
    loop {
        let signature = u32::from_le_bytes(read_array(&mut reader, headers)?);
        match signature {
            CENTRAL_HEADER if !seen_zip64_end => {
                headers += 1;
                if headers > max_entries {
                    return Err(IngestError::TooManyEntries {
                        found: headers,
                        max: max_entries,
                    });
                }
                let fixed: [u8; 42] = read_array(&mut reader, headers)?;
                let name_len = u16::from_le_bytes([fixed[24], fixed[25]]);
                let extra_len = u16::from_le_bytes([fixed[26], fixed[27]]);
                let comment_len = u16::from_le_bytes([fixed[28], fixed[29]]);
                let mut name = vec![0u8; usize::from(name_len)];
                reader
                    .read_exact(&mut name)
                    .map_err(|e| short(e, headers))?;
                let skip = u64::from(extra_len) + u64::from(comment_len);
                // At most 2 × 65535, so it fits.
                reader
                    .seek_relative(skip as i64)
                    .map_err(|e| IngestError::io("reading the central directory", e))?;
                pos += 46 + u64::from(name_len) + skip;
                if names.contains(&name) {
                    return Err(IngestError::DuplicateEntry {
                        name: excerpt(&String::from_utf8_lossy(&name)),
                    });
                }
                names.insert(name);
            }
            ZIP64_END if !seen_zip64_end => {
                seen_zip64_end = true;
                // The size of the rest of the record, after these 12 bytes.
                let rest = u64::from_le_bytes(read_array(&mut reader, headers)?);
                let end = pos.saturating_add(12).saturating_add(rest);
                let skip = i64::try_from(rest)
                    .ok()
                    .filter(|_| end <= len)
                    .ok_or_else(|| inconsistent("the ZIP64 end record runs past the end"))?;
                reader
                    .seek_relative(skip)
                    .map_err(|e| IngestError::io("reading the ZIP64 end record", e))?;
                pos = end;
                if u32::from_le_bytes(read_array(&mut reader, headers)?) != ZIP64_LOCATOR {
                    return Err(inconsistent(
                        "the ZIP64 end record is not followed by its locator",
                    ));
                }
                let _locator: [u8; 16] = read_array(&mut reader, headers)?;
                pos += 20;
            }
            END => {
                let fixed: [u8; 18] = read_array(&mut reader, headers)?;
                let comment_len = u16::from_le_bytes([fixed[16], fixed[17]]);
                let end = pos + 22 + u64::from(comment_len);
                if end > len {
                    return Err(inconsistent("the archive comment runs past the end"));
                }
                if end < len {
                    return Err(IngestError::TrailingData { bytes: len - end });
                }
                return Ok(RawDirectory { headers });
            }
            other => {
                return Err(inconsistent(&format!(
                    "unexpected record {other:#010x} after {headers} central directory headers"
                )));
            }
        }
    }
}

fn read_array<const N: usize, R: Read>(reader: &mut R, headers: usize) -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    reader
        .read_exact(&mut bytes)
        .map_err(|e| short(e, headers))?;
    Ok(bytes)
}

fn short(error: std::io::Error, headers: usize) -> IngestError {
    if error.kind() == ErrorKind::UnexpectedEof {
        inconsistent(&format!(
            "the central directory ends after {headers} headers without an end record"
        ))
    } else {
        IngestError::io("reading the central directory", error)
    }
}

fn inconsistent(reason: &str) -> IngestError {
    IngestError::InconsistentArchive {
        reason: reason.to_owned(),
    }
}
