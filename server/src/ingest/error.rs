//! Why an uploaded zip was refused.

use std::io;
use std::path::PathBuf;

/// `Result` with [`IngestError`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// Why [`ingest_zip`](super::ingest_zip) refused an archive, or could not finish.
///
/// Every variant but [`IngestError::Io`] and [`IngestError::StagingNotEmpty`] is the uploader's
/// fault (a 4xx); those two are the server's own. Each has a stable [`IngestError::code`].
/// Entry names in messages are the archive's, cut to 300 characters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Reading the upload or writing to the staging directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and on which file.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The staging directory already holds something; ingest only writes into an empty one, so
    /// that cleaning up after a refusal cannot remove anything it did not write.
    #[error("staging directory {} is not empty", path.display())]
    StagingNotEmpty {
        /// The staging directory.
        path: PathBuf,
    },
    /// The bytes are not a zip archive, or its end record or central directory is truncated or
    /// corrupt.
    #[error("not a readable zip archive: {reason}")]
    NotAZip {
        /// What the zip reader said.
        reason: String,
    },
    /// Bytes come before the first entry: a self-extractor stub, or a file that is also some other
    /// format (a polyglot).
    #[error("{bytes} bytes of other data come before the zip archive")]
    PrependedData {
        /// How many bytes precede the archive.
        bytes: u64,
    },
    /// Bytes come after the end-of-central-directory record and its comment.
    #[error("{bytes} bytes of other data come after the end of the zip archive")]
    TrailingData {
        /// How many bytes follow the archive.
        bytes: u64,
    },
    /// Bytes between the entries belong to no entry: hidden data, or a stored entry that declares
    /// less than it holds.
    #[error("{bytes} bytes at offset {offset} belong to no entry")]
    UnreferencedData {
        /// Where the bytes start.
        offset: u64,
        /// How many there are.
        bytes: u64,
    },
    /// The archive's structures disagree with each other: a local header that does not match its
    /// central-directory entry, a local header that no central entry lists, or a central directory
    /// holding more or fewer headers than its end record counts.
    #[error("inconsistent zip archive: {reason}")]
    InconsistentArchive {
        /// What disagrees.
        reason: String,
    },
    /// More entries than [`Limits::max_entries`](super::Limits::max_entries).
    #[error("archive has {found} entries, more than the limit of {max}")]
    TooManyEntries {
        /// Entries seen (counting stops just past the limit, so this may be a lower bound).
        found: usize,
        /// The limit.
        max: usize,
    },
    /// The end record announces more entries than [`Limits::max_entries`](super::Limits::max_entries);
    /// refused before the central directory is read.
    #[error(
        "archive declares {declared} entries in its end record, more than the limit of {max}; refused before reading them"
    )]
    DeclaresTooManyEntries {
        /// The count the end record (or the ZIP64 end record) gives.
        declared: u64,
        /// The limit.
        max: usize,
    },
    /// Two central-directory entries carry the same name; zip readers disagree on which one wins.
    #[error("entry {name:?} appears more than once")]
    DuplicateEntry {
        /// The repeated name.
        name: String,
    },
    /// An entry's name is not UTF-8 (zip readers would decode it as CP437, each in its own way).
    #[error("entry {index} has a name that is not valid UTF-8: {name:?}")]
    NonUtf8Name {
        /// The entry's position in the central directory.
        index: usize,
        /// The name, decoded lossily.
        name: String,
    },
    /// An entry's name breaks the bundle path rules (`..`, absolute, `\`, a drive letter, a
    /// control character, not NFC, too long or too deep).
    #[error("entry {name:?} has an unsafe path: {source}")]
    UnsafePath {
        /// The entry's name.
        name: String,
        /// The rule broken.
        #[source]
        source: manifests::Error,
    },
    /// Two paths would be one file on a case-insensitive or normalising file system, or a file is
    /// also needed as a directory.
    #[error("{source}")]
    PathCollision {
        /// Which paths, and how they collide.
        #[source]
        source: manifests::Error,
    },
    /// An entry is a symbolic link.
    #[error("entry {name:?} is a symbolic link")]
    Symlink {
        /// The entry's name.
        name: String,
    },
    /// An entry is neither a regular file nor a directory (a device, FIFO or socket), or its mode
    /// and its name disagree on which it is.
    #[error("entry {name:?} is not a regular file or directory (unix mode {mode:#o})")]
    SpecialFile {
        /// The entry's name.
        name: String,
        /// The entry's unix mode.
        mode: u32,
    },
    /// A directory entry that carries data.
    #[error("directory entry {name:?} declares {size} bytes of data")]
    DirectoryWithData {
        /// The entry's name.
        name: String,
        /// The declared size.
        size: u64,
    },
    /// An entry is encrypted.
    #[error("entry {name:?} is encrypted")]
    Encrypted {
        /// The entry's name.
        name: String,
    },
    /// An entry is compressed with something other than Stored or Deflated.
    #[error(
        "entry {name:?} uses compression method {method}; only stored and deflated are accepted"
    )]
    UnsupportedMethod {
        /// The entry's name.
        name: String,
        /// The method, as the zip reader names it.
        method: String,
    },
    /// Two entries share bytes of the archive: an overlapping-entry zip bomb.
    #[error("entries overlap in the archive (an overlapping-entry zip bomb)")]
    OverlappingEntries,
    /// An entry is bigger than [`Limits::max_file_bytes`](super::Limits::max_file_bytes).
    #[error("entry {name:?} declares {size} bytes, more than the limit of {max} per file")]
    FileTooLarge {
        /// The entry's name.
        name: String,
        /// The declared uncompressed size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// All entries together are bigger than
    /// [`Limits::max_total_bytes`](super::Limits::max_total_bytes).
    #[error("entries hold more than {max} bytes in all (at least {total})")]
    TotalTooLarge {
        /// Bytes counted when the limit was crossed.
        total: u64,
        /// The limit.
        max: u64,
    },
    /// An entry expands more than [`Limits::max_ratio`](super::Limits::max_ratio) times.
    #[error(
        "entry {name:?} expands {compressed} bytes to {size} bytes, more than {max_ratio}:1 (a zip bomb)"
    )]
    ZipBomb {
        /// The entry's name.
        name: String,
        /// The declared uncompressed size.
        size: u64,
        /// The compressed size.
        compressed: u64,
        /// The limit.
        max_ratio: u64,
    },
    /// An entry's data does not have the size its header declares.
    #[error("entry {name:?} declares {declared} bytes but {actual}")]
    SizeMismatch {
        /// The entry's name.
        name: String,
        /// The declared size.
        declared: u64,
        /// What was found instead, in words.
        actual: String,
    },
    /// An entry's data does not match its CRC-32.
    #[error(
        "entry {name:?} fails its CRC-32 check (header says {expected:08x}, data has {actual:08x})"
    )]
    CrcMismatch {
        /// The entry's name.
        name: String,
        /// The CRC-32 in the header.
        expected: u32,
        /// The CRC-32 of the data.
        actual: u32,
    },
    /// An entry's data could not be read: a broken deflate stream, or data cut short.
    #[error("entry {name:?} is corrupt: {reason}")]
    CorruptEntry {
        /// The entry's name.
        name: String,
        /// What the reader said.
        reason: String,
    },
    /// The archive holds no file (perhaps only directories).
    #[error("archive holds no file")]
    EmptyArchive,
}

impl IngestError {
    /// A stable, snake_case code for this kind of refusal, for JSON error bodies and tests.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Io { .. } => "io",
            IngestError::StagingNotEmpty { .. } => "staging_not_empty",
            IngestError::NotAZip { .. } => "not_a_zip",
            IngestError::PrependedData { .. } => "prepended_data",
            IngestError::TrailingData { .. } => "trailing_data",
            IngestError::UnreferencedData { .. } => "unreferenced_data",
            IngestError::InconsistentArchive { .. } => "inconsistent_archive",
            IngestError::TooManyEntries { .. } | IngestError::DeclaresTooManyEntries { .. } => {
                "too_many_entries"
            }
            IngestError::DuplicateEntry { .. } => "duplicate_entry",
            IngestError::NonUtf8Name { .. } => "non_utf8_name",
            IngestError::UnsafePath { .. } => "unsafe_path",
            IngestError::PathCollision { .. } => "path_collision",
            IngestError::Symlink { .. } => "symlink",
            IngestError::SpecialFile { .. } => "special_file",
            IngestError::DirectoryWithData { .. } => "directory_with_data",
            IngestError::Encrypted { .. } => "encrypted",
            IngestError::UnsupportedMethod { .. } => "unsupported_method",
            IngestError::OverlappingEntries => "overlapping_entries",
            IngestError::FileTooLarge { .. } => "file_too_large",
            IngestError::TotalTooLarge { .. } => "total_too_large",
            IngestError::ZipBomb { .. } => "zip_bomb",
            IngestError::SizeMismatch { .. } => "size_mismatch",
            IngestError::CrcMismatch { .. } => "crc_mismatch",
            IngestError::CorruptEntry { .. } => "corrupt_entry",
            IngestError::EmptyArchive => "empty_archive",
        }
    }

    /// Whether the uploader is to blame (the archive was refused), as opposed to the server
    /// (reading the upload or writing the staging directory failed): a 4xx rather than a 5xx.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            IngestError::Io { .. } | IngestError::StagingNotEmpty { .. }
        )
    }

    pub(super) fn io(context: impl Into<String>, source: io::Error) -> IngestError {
        IngestError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Cuts an untrusted entry name to at most 300 characters for an error message.
pub(super) fn excerpt(name: &str) -> String {
    const MAX: usize = 300;
    if name.chars().count() <= MAX {
        name.to_owned()
    } else {
        let mut cut: String = name.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}
