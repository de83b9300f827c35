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

/// The number of entries the archive's end record declares (the ZIP64 end record's when the
/// classic one defers to it), read from the end of the file without touching the central
/// directory: so that an upload announcing millions of entries is refused before the zip reader
/// allocates for them. `None` when no end record is found; the zip reader then says why the
/// upload is not a zip.
///
/// The end record is the last one whose comment reaches exactly to the end of the file, as the
/// walk above requires; the count is the larger of "on this disk" and "in all", since readers
/// trust one or the other.
///
/// # Errors
/// [`IngestError::Io`] when reading fails, [`IngestError::InconsistentArchive`] for a ZIP64
/// locator that points outside the file or at something else.
pub(super) fn declared_entries<R: Read + Seek>(mut reader: R, len: u64) -> Result<Option<u64>> {
    const END_LEN: u64 = 22;
    let tail_len = len.min(END_LEN + u64::from(u16::MAX));
    let tail_start = len - tail_len;
    let mut tail = vec![0u8; usize::try_from(tail_len).unwrap_or(0)];
    reader
        .seek(SeekFrom::Start(tail_start))
        .and_then(|_| reader.read_exact(&mut tail))
        .map_err(|e| IngestError::io("reading the end of the archive", e))?;
    let u16_at = |b: &[u8], at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let found = (0..tail.len().saturating_sub(END_LEN as usize - 1))
        .rev()
        .find(|&at| {
            tail[at..at + 4] == END.to_le_bytes()
                && at as u64 + END_LEN + u16_at(&tail, at + 20) == tail_len
        });
    let Some(at) = found else {
        return Ok(None);
    };
    let count = u16_at(&tail, at + 8).max(u16_at(&tail, at + 10));
    if count != u64::from(u16::MAX) {
        return Ok(Some(count));
    }
    // The classic record defers to the ZIP64 one: its locator sits just before.
    let locator = (tail_start + at as u64).checked_sub(20).ok_or_else(|| {
        inconsistent("the end record defers to a ZIP64 end record, but has no locator")
    })?;
    let mut bytes = [0u8; 20];
    reader
        .seek(SeekFrom::Start(locator))
        .and_then(|_| reader.read_exact(&mut bytes))
        .map_err(|e| IngestError::io("reading the ZIP64 locator", e))?;
    if bytes[..4] != ZIP64_LOCATOR.to_le_bytes() {
        return Err(inconsistent(
            "the end record defers to a ZIP64 end record, but has no locator",
        ));
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[8..16]);
    let offset = u64::from_le_bytes(offset);
    if offset.saturating_add(56) > locator {
        return Err(inconsistent("the ZIP64 locator points outside the archive"));
    }
    let mut record = [0u8; 56];
    reader
        .seek(SeekFrom::Start(offset))
        .and_then(|_| reader.read_exact(&mut record))
        .map_err(|e| IngestError::io("reading the ZIP64 end record", e))?;
    if record[..4] != ZIP64_END.to_le_bytes() {
        return Err(inconsistent(
            "the ZIP64 locator does not point at a ZIP64 end record",
        ));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&record[at..at + 8]);
        u64::from_le_bytes(b)
    };
    Ok(Some(u64_at(24).max(u64_at(32))))
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
