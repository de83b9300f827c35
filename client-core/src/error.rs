//! Errors: a rich internal [`Error`] for logs and tests, and a small public [`BaleenError`] whose
//! variants are the actions a host app can take.

use manifests::{Digest, PackageId, ReleaseVersion};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong on the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A signed document or a downloaded byte failed verification.
    #[error(transparent)]
    Contract(#[from] manifests::Error),
    /// A downloaded blob's bytes are not the ones the signed manifest lists.
    #[error("blob {expected} arrived as {actual} ({context})")]
    BlobMismatch {
        /// What the manifest says.
        expected: Digest,
        /// What arrived.
        actual: Digest,
        /// Where it came from.
        context: String,
    },
    /// A pack did not hold what it should.
    #[error("bad pack: {0}")]
    BadPack(String),
    /// The network failed or the server answered with an error.
    #[error("network: {0}")]
    Network(String),
    /// A response was larger than allowed.
    #[error("{what} is larger than {limit_bytes} bytes")]
    TooLarge {
        /// What was being downloaded.
        what: String,
        /// The cap.
        limit_bytes: u64,
    },
    /// Local storage failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// Something is not there (a package, a release, a state).
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the current state.
    #[error("{0}")]
    Invalid(String),
    /// A release claims a URL prefix that overlaps one another installed package answers for: a
    /// URL prefix belongs to one package of an app, so it is not installed.
    #[error(transparent)]
    RouteTaken(Box<RouteConflict>),
}

/// A release's route that overlaps a route of another installed package.
#[derive(Debug, thiserror::Error)]
#[error(
    "release {package}@{version} claims {route}, which overlaps {taken} of package {owner}; not installed"
)]
pub struct RouteConflict {
    /// The package of the refused release.
    pub package: PackageId,
    /// Its version.
    pub version: ReleaseVersion,
    /// Its route (without scheme).
    pub route: String,
    /// The overlapping route (without scheme).
    pub taken: String,
    /// The package that answers for it.
    pub owner: PackageId,
}

impl Error {
    /// Wraps an IO error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the error means the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
    }
}

/// What the host app should do about an error.
///
/// The text is in `detail`, not `message`: Kotlin exceptions already have a `message`, and a
/// field of that name would not compile in the generated bindings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum BaleenError {
    /// The network failed: retry later. The active release keeps serving.
    #[error("network: {detail}")]
    Network {
        /// What happened, without tokens or user data.
        detail: String,
    },
    /// Something downloaded failed verification: report it; the active release keeps serving.
    #[error("verification: {detail}")]
    Verification {
        /// What failed.
        detail: String,
    },
    /// Local storage failed (often: the disk is full): free space or report it.
    #[error("storage: {detail}")]
    Storage {
        /// What failed.
        detail: String,
    },
    /// Anything else: report it.
    #[error("{detail}")]
    Other {
        /// What happened.
        detail: String,
    },
}

impl From<Error> for BaleenError {
    fn from(e: Error) -> BaleenError {
        let detail = e.to_string();
        match e {
            Error::Network(_) | Error::TooLarge { .. } => BaleenError::Network { detail },
            Error::Contract(_)
            | Error::BlobMismatch { .. }
            | Error::BadPack(_)
            | Error::RouteTaken { .. } => BaleenError::Verification { detail },
            Error::Io { .. } => BaleenError::Storage { detail },
            _ => BaleenError::Other { detail },
        }
    }
}
