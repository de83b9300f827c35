//! Ingest: the trust boundary where an uploaded zip of a web build becomes staged, hashed files.
//!
//! [`ingest_zip`] checks everything before or while it extracts, and refuses rather than
//! sanitises:
//! - the archive opens at offset 0, and every byte of it belongs to an entry, the central
//!   directory or the end record: nothing before (a stub, a polyglot), between or after;
//! - every central-directory header is counted and compared by raw name, since the zip reader's
//!   map keeps only the last of a repeated name; local headers must match their central ones;
//! - names are UTF-8 bundle paths ([`RelPath`]) that do not collide on a case-insensitive,
//!   normalising file system;
//! - entries are regular files or directories, unencrypted, stored or deflated, within
//!   [`Limits`] and not overlapping;
//! - each entry's data has exactly its declared size and CRC-32. Bytes are read through a cap of
//!   the declared size plus one, so a lying header cannot make an entry inflate any further.
//!
//! It never calls the reader's `extract()`, never creates a directory or a symlink, and never
//! allocates from a size an archive declares. Each distinct content is written once, as
//! `staging/<sha256 hex>`, through a temp file that is fsynced and renamed; on any error
//! everything written is removed again.
//!
//! Where to start: [`ingest_zip`]; the refusals are listed in [`IngestError`].

mod directory;
mod error;
mod mime;
mod stage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use manifests::{Digest, Hasher, RelPath, check_collisions};
use zip::read::{ArchiveOffset, Config};
use zip::{CompressionMethod, ZipArchive, ZipReadOptions};

pub use error::{IngestError, Result};
pub use mime::mime_for;

use error::excerpt;
use stage::Stage;

/// Entries smaller than this (uncompressed) are never refused for their compression ratio: small,
/// repetitive text files legitimately compress far better than 1000:1 would allow at that size
/// and cannot hurt anyone.
pub const RATIO_EXEMPT_BYTES: u64 = 64 * 1024;

/// How much an upload may hold. The defaults suit a web build; a caller may tighten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Central-directory entries, directories included.
    pub max_entries: usize,
    /// Uncompressed bytes of one file.
    pub max_file_bytes: u64,
    /// Uncompressed bytes of all files together.
    pub max_total_bytes: u64,
    /// Uncompressed bytes per compressed byte of one entry, for entries of at least
    /// [`RATIO_EXEMPT_BYTES`].
    pub max_ratio: u64,
}

impl Default for Limits {
    /// 20 000 entries, 64 MiB per file, 512 MiB in all, 1000:1.
    fn default() -> Limits {
        Limits {
            max_entries: 20_000,
            max_file_bytes: 64 << 20,
            max_total_bytes: 512 << 20,
            max_ratio: 1000,
        }
    }
}

/// One file of the upload, staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// The sha256 of its bytes.
    pub sha256: Digest,
    /// Its length in bytes.
    pub size: u64,
    /// Where its bytes are: `staging/<sha256 hex>`, shared by every path with the same content.
    pub staged: PathBuf,
}

/// What [`ingest_zip`] staged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ingested {
    /// Every file, by path. Directory entries are not listed: they are implied by the paths.
    pub files: BTreeMap<RelPath, StagedFile>,
    /// The size of all files together (a content shared by several paths counts once per path).
    pub total_bytes: u64,
    /// The bytes written to the staging directory (each distinct content once).
    pub staged_bytes: u64,
}

/// Reads the zip file at `zip`, checks it against `limits` and the rules above, and stages each
/// distinct file content once as `staging/<sha256 hex>`.
///
/// `staging` must be an existing, empty directory that the caller owns. On any error everything
/// this call wrote there is removed; the directory itself is left in place.
///
/// # Errors
/// An [`IngestError`] naming the first problem found and the entry it was found in;
/// [`IngestError::is_refusal`] tells the uploader's faults from the server's.
pub fn ingest_zip(zip: &Path, limits: &Limits, staging: &Path) -> Result<Ingested> {
    let mut stage = Stage::open(staging)?;
    let ingested = ingest(zip, limits, &mut stage)?;
    stage.keep()?;
    tracing::debug!(
        zip = %zip.display(),
        files = ingested.files.len(),
        total_bytes = ingested.total_bytes,
        staged_bytes = ingested.staged_bytes,
        "ingested upload"
    );
    Ok(ingested)
}

/// An entry that passed every check of its header and is to be extracted.
struct Planned {
    index: usize,
    name: String,
    path: RelPath,
    declared: u64,
    crc32: u32,
}

/// What unix mode bits say an entry is.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

fn ingest(zip: &Path, limits: &Limits, stage: &mut Stage) -> Result<Ingested> {
    let file = File::open(zip)
        .map_err(|e| IngestError::io(format!("opening upload {}", zip.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| IngestError::io(format!("reading upload {}", zip.display()), e))?
        .len();
    // The end record's count first: an archive that announces more entries than allowed is
    // refused before the zip reader parses (and allocates for) its central directory.
    if let Some(declared) = directory::declared_entries(&file, len)?
        && declared > limits.max_entries as u64
    {
        return Err(IngestError::DeclaresTooManyEntries {
            declared,
            max: limits.max_entries,
        });
    }
    let mut archive = open(file, zip)?;

    // Counts first: the cheapest refusal, and it bounds every loop below.
    if archive.len() > limits.max_entries {
        return Err(IngestError::TooManyEntries {
            found: archive.len(),
            max: limits.max_entries,
        });
    }
    let second = File::open(zip)
        .map_err(|e| IngestError::io(format!("opening upload {}", zip.display()), e))?;
    let raw = directory::walk(
        second,
        archive.central_directory_start(),
        len,
        limits.max_entries,
    )?;
    if archive.has_duplicate_names() {
        return Err(inconsistent(
            "two entries share a name once their Unicode Path extra fields are applied",
        ));
    }
    if raw.headers != archive.len() {
        return Err(inconsistent(&format!(
            "the central directory holds {} headers but the end record counts {}",
            raw.headers,
            archive.len()
        )));
    }
    let first_header = (0..archive.len())
        .map(|i| archive.by_index_data(i).map(|entry| entry.header_start()))
        .try_fold(u64::MAX, |min, start| start.map(|start| min.min(start)))
        .map_err(|e| not_a_zip(&e))?;
    if first_header != 0 && first_header != u64::MAX {
        return Err(IngestError::PrependedData {
            bytes: first_header,
        });
    }

    let planned = plan(&archive, limits)?;

    // Then the checks that read local headers.
    match archive.has_overlapping_entries() {
        Ok(false) => {}
        Ok(true) => return Err(IngestError::OverlappingEntries),
        Err(e) => return Err(inconsistent(&e.to_string())),
    }
    check_layout(&mut archive, len)?;
    archive
        .validate_header_consistency()
        .map_err(|e| inconsistent(&e.to_string()))?;

    extract(&mut archive, &planned, limits, stage)
}

/// Opens the archive at offset 0. When that fails, says whether it would have opened with data
/// before it (a stub or polyglot), to refuse it with a clearer reason.
fn open(file: File, zip: &Path) -> Result<ZipArchive<BufReader<File>>> {
    let config = Config {
        archive_offset: ArchiveOffset::Known(0),
    };
    let probe = file.try_clone();
    match ZipArchive::with_config(config, BufReader::new(file)) {
        Ok(archive) => Ok(archive),
        Err(e) => {
            let detect = Config {
                archive_offset: ArchiveOffset::Detect,
            };
            if let Ok(probe) = probe
                && let Ok(detected) = ZipArchive::with_config(detect, BufReader::new(probe))
                && detected.offset() > 0
            {
                return Err(IngestError::PrependedData {
                    bytes: detected.offset(),
                });
            }
            tracing::debug!(zip = %zip.display(), error = %e, "upload is not a zip");
            Err(not_a_zip(&e))
        }
    }
}

/// Checks that every byte before the central directory belongs to an entry: its local header,
/// its data, and at most a data descriptor after it. Bytes that belong to none (a stored entry
/// declaring less than it holds, a hidden payload) are refused like data before or after the
/// archive. Entries are known not to overlap.
fn check_layout(archive: &mut ZipArchive<BufReader<File>>, len: u64) -> Result<()> {
    // A data descriptor: an optional signature, the CRC, then 32- or 64-bit sizes.
    const MAX_DESCRIPTOR: u64 = 4 + 4 + 16;
    let mut spans = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(|e| not_a_zip(&e))?;
        let data_start = entry
            .data_start()
            .ok_or_else(|| inconsistent("an entry's data could not be located"))?;
        let end = data_start.saturating_add(entry.compressed_size());
        let slack = if entry.flags().is_using_data_descriptor() {
            MAX_DESCRIPTOR
        } else {
            0
        };
        spans.push((entry.header_start(), end, slack));
    }
    spans.sort_unstable();
    let directory_start = archive.central_directory_start().min(len);
    let mut cursor = 0u64;
    let mut slack = 0u64;
    for (start, end, next_slack) in spans.into_iter().chain([(directory_start, 0, 0)]) {
        if start > cursor.saturating_add(slack) {
            return Err(IngestError::UnreferencedData {
                offset: cursor,
                bytes: start - cursor,
            });
        }
        cursor = end.max(cursor);
        slack = next_slack;
    }
    Ok(())
}

/// Checks every entry's header: name, kind, encryption, method, sizes, ratio; then the paths
/// together. Returns the files to extract, in central-directory order.
fn plan(archive: &ZipArchive<BufReader<File>>, limits: &Limits) -> Result<Vec<Planned>> {
    let mut files: Vec<Planned> = Vec::new();
    let mut dirs: Vec<(String, RelPath)> = Vec::new();
    let mut declared_total = 0u64;
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index).map_err(|e| not_a_zip(&e))?;
        let raw_name = entry.name_raw();
        let Ok(text) = std::str::from_utf8(raw_name) else {
            return Err(IngestError::NonUtf8Name {
                index,
                name: excerpt(&String::from_utf8_lossy(raw_name)),
            });
        };
        let name = excerpt(text);
        let (is_dir, path_text) = match text.strip_suffix('/') {
            Some(dir) => (true, dir),
            None => (false, text),
        };
        let path = RelPath::parse(path_text).map_err(|source| IngestError::UnsafePath {
            name: name.clone(),
            source,
        })?;

        if let Some(mode) = entry.unix_mode() {
            match mode & S_IFMT {
                S_IFLNK => return Err(IngestError::Symlink { name }),
                0 | S_IFREG => {}
                S_IFDIR if is_dir => {}
                _ => return Err(IngestError::SpecialFile { name, mode }),
            }
        }
        if entry.encrypted() {
            return Err(IngestError::Encrypted { name });
        }
        let method = entry.compression();
        if !matches!(
            method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(IngestError::UnsupportedMethod {
                name,
                method: method.to_string(),
            });
        }

        let declared = entry.size();
        let compressed = entry.compressed_size();
        if is_dir {
            if declared != 0 {
                return Err(IngestError::DirectoryWithData {
                    name,
                    size: declared,
                });
            }
            dirs.push((name, path));
            continue;
        }
        if declared > limits.max_file_bytes {
            return Err(IngestError::FileTooLarge {
                name,
                size: declared,
                max: limits.max_file_bytes,
            });
        }
        if method == CompressionMethod::Stored && compressed != declared {
            return Err(IngestError::SizeMismatch {
                name,
                declared,
                actual: format!("stores {compressed} bytes uncompressed"),
            });
        }
        if method == CompressionMethod::Deflated
            && declared >= RATIO_EXEMPT_BYTES
            && declared > compressed.saturating_mul(limits.max_ratio)
        {
            return Err(IngestError::ZipBomb {
                name,
                size: declared,
                compressed,
                max_ratio: limits.max_ratio,
            });
        }
        declared_total = declared_total.saturating_add(declared);
        if declared_total > limits.max_total_bytes {
            return Err(IngestError::TotalTooLarge {
                total: declared_total,
                max: limits.max_total_bytes,
            });
        }
        files.push(Planned {
            index,
            name,
            path,
            declared,
            crc32: entry.crc32(),
        });
    }

    if files.is_empty() {
        return Err(IngestError::EmptyArchive);
    }
    check_collisions(files.iter().map(|f| &f.path))
        .map_err(|source| IngestError::PathCollision { source })?;
    // A directory entry is not staged, but one that names a file's path is still a collision.
    let by_folded: HashMap<String, &str> = files
        .iter()
        .map(|f| (f.path.folded(), f.name.as_str()))
        .collect();
    for (name, dir) in &dirs {
        if let Some(file) = by_folded.get(&dir.folded()) {
            return Err(IngestError::PathCollision {
                source: manifests::Error::PathCollision {
                    first: (*file).to_owned(),
                    second: name.clone(),
                    reason: "a file is also named as a directory",
                },
            });
        }
    }
    Ok(files)
}

/// Streams every planned entry through the caps into the staging directory.
fn extract(
    archive: &mut ZipArchive<BufReader<File>>,
    planned: &[Planned],
    limits: &Limits,
    stage: &mut Stage,
) -> Result<Ingested> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut ingested = Ingested::default();
    let mut staged_digests: HashSet<Digest> = HashSet::new();
    for entry in planned {
        let name = || entry.name.clone();
        // The CRC is checked below, by us, to report it as a CRC mismatch.
        let options = ZipReadOptions::new().ignore_crc32(true);
        let reader = archive
            .by_index_with_options(entry.index, options)
            .map_err(|e| IngestError::CorruptEntry {
                name: name(),
                reason: e.to_string(),
            })?;
        // The deflate stream is not bounded by the declared size: never read more than one byte
        // past it. (`declared` is at most `max_file_bytes`, checked in `plan`.)
        let mut reader = reader.take(entry.declared.saturating_add(1));
        let (mut temp, temp_path) = stage.create_temp(entry.index)?;
        let mut hasher = Hasher::new();
        let mut crc = crc32fast::Hasher::new();
        let mut size = 0u64;
        loop {
            // Up to the declared size, then a one-byte probe that must find the end.
            let want = usize::try_from(entry.declared - size)
                .unwrap_or(usize::MAX)
                .clamp(1, buf.len());
            let n = match reader.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The reader refuses output past the declared size with `InvalidData`.
                Err(e) if size == entry.declared && e.kind() == ErrorKind::InvalidData => {
                    return Err(more_than_declared(entry));
                }
                Err(e) => {
                    return Err(IngestError::CorruptEntry {
                        name: name(),
                        reason: e.to_string(),
                    });
                }
            };
            size += n as u64;
            if size > entry.declared {
                return Err(more_than_declared(entry));
            }
            ingested.total_bytes += n as u64;
            if ingested.total_bytes > limits.max_total_bytes {
                return Err(IngestError::TotalTooLarge {
                    total: ingested.total_bytes,
                    max: limits.max_total_bytes,
                });
            }
            let bytes = &buf[..n];
            hasher.update(bytes);
            crc.update(bytes);
            temp.write_all(bytes)
                .map_err(|e| IngestError::io(format!("writing {}", temp_path.display()), e))?;
        }
        if size < entry.declared {
            return Err(IngestError::SizeMismatch {
                name: name(),
                declared: entry.declared,
                actual: format!("holds only {size}"),
            });
        }
        let actual_crc = crc.finalize();
        if actual_crc != entry.crc32 {
            return Err(IngestError::CrcMismatch {
                name: name(),
                expected: entry.crc32,
                actual: actual_crc,
            });
        }
        let sha256 = hasher.finish();
        let staged = stage.commit(temp, &temp_path, sha256)?;
        if staged_digests.insert(sha256) {
            ingested.staged_bytes += size;
        }
        ingested.files.insert(
            entry.path.clone(),
            StagedFile {
                sha256,
                size,
                staged,
            },
        );
    }
    Ok(ingested)
}

fn more_than_declared(entry: &Planned) -> IngestError {
    IngestError::SizeMismatch {
        name: entry.name.clone(),
        declared: entry.declared,
        actual: "its data holds more".to_owned(),
    }
}

fn not_a_zip(error: &zip::result::ZipError) -> IngestError {
    IngestError::NotAZip {
        reason: error.to_string(),
    }
}

fn inconsistent(reason: &str) -> IngestError {
    IngestError::InconsistentArchive {
        reason: reason.to_owned(),
    }
}
