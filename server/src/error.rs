//! The server's one error type. Each error knows its HTTP status and a stable code, so the HTTP
//! layer maps it to `{"error":{"code":…,"message":…}}` without knowing where it came from.

use axum::http::StatusCode;

/// `Result` with the server's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the server library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value in a request broke a rule of the contract (bad id, version, path, signature…).
    #[error(transparent)]
    Contract(#[from] manifests::Error),
    /// An uploaded archive was refused.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// A request was malformed in some other way.
    #[error("{0}")]
    BadRequest(String),
    /// No or an unknown token.
    #[error("missing or unknown token")]
    Unauthorized,
    /// A known token that is no longer accepted.
    #[error("token {name:?} {reason}; ask an admin for a new one")]
    TokenRefused {
        /// The token's name.
        name: String,
        /// `was revoked at …` or `expired at …`.
        reason: String,
    },
    /// Reading this needs a token: it was never released to devices.
    #[error("{0}; reading it needs a token")]
    NeedsToken(String),
    /// A signed document (a key list, a release signature) whose signatures do not give it the
    /// authority it claims: by keys the app does not trust for that role, too few, or invalid.
    #[error("{0}")]
    SignatureRefused(manifests::Error),
    /// A key list that does not follow from the app's newest (another app's, a skipped version,
    /// an invalid role): it conflicts with the keys in force.
    #[error("the key list does not follow from the app's newest: {0}")]
    KeyListRefused(manifests::Error),
    /// The token may not do this.
    #[error("token scope {scope} may not {action}")]
    Forbidden {
        /// The token's scope.
        scope: String,
        /// What it tried.
        action: String,
    },
    /// What was asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// No index delta can start from the sequence a device holds; it fetches the full index.
    #[error("no delta of {scope} from {from:?}: {reason}; fetch it whole")]
    DeltaUnavailable {
        /// `app/channel`.
        scope: String,
        /// The sequence asked for, as sent.
        from: String,
        /// Why: which sequences deltas start from, or that there are none.
        reason: String,
    },
    /// A route outside the origins the app declared.
    #[error(
        "route {route} is outside the origins of app {app} ({origins}); an admin adds an origin with `baleen origins --app {app} --set …`"
    )]
    RouteOutsideOrigins {
        /// The route.
        route: String,
        /// The app.
        app: String,
        /// Its origins, comma-separated.
        origins: String,
    },
    /// A route that overlaps one another package of the app claims.
    #[error(
        "route {route} overlaps route {taken} of package {owner}; a URL prefix belongs to one package of an app"
    )]
    RouteTaken {
        /// The route asked for.
        route: String,
        /// The overlapping route.
        taken: String,
        /// The package that claims it.
        owner: String,
    },
    /// A channel the app does not have, named without asking to make it.
    #[error(
        "app {app} has no channel {channel} ({existing}); to make it, pass --create-channel (\"create_channel\": true)"
    )]
    UnknownChannel {
        /// The app.
        app: String,
        /// The channel asked for.
        channel: String,
        /// The app's channels, as `its channels: a, b` or `it has none yet`.
        existing: String,
    },
    /// An event batch without an ingest key, or with one the server refuses for its app.
    #[error("{message}")]
    IngestKeyRefused {
        /// `ingest_key_missing`, `ingest_key_unknown`, `ingest_key_revoked` or
        /// `ingest_key_wrong_app`.
        code: &'static str,
        /// What was wrong and what to do.
        message: String,
    },
    /// An event batch naming an app, channel or release the server does not have.
    #[error("{message}")]
    UnknownEventTarget {
        /// `unknown_app`, `unknown_channel` or `unknown_release`.
        code: &'static str,
        /// What is unknown.
        message: String,
    },
    /// A client or device sent more than its share; it may try again after `retry_after_secs`.
    #[error("too many event batches from this {who}; retry in {retry_after_secs} s")]
    RateLimited {
        /// `device` or `client address`.
        who: &'static str,
        /// The `Retry-After`.
        retry_after_secs: u64,
    },
    /// The request conflicts with what exists (a version published with other content…).
    #[error("{0}")]
    Conflict(String),
    /// A release whose manifest lacks the signatures the app's release role needs, asked to go
    /// out to devices (which would refuse it).
    #[error(
        "release {release} is not signed by the app's release keys ({reason}); sign it with `baleen sign` or publish with --sign-with"
    )]
    ReleaseUnsigned {
        /// `package@version`.
        release: String,
        /// What is missing.
        reason: String,
    },
    /// A key list the server could not sign indexes under: it holds too few of its index keys.
    #[error("{0}")]
    KeyNotHeld(String),
    /// The upload is larger than allowed.
    #[error("upload larger than {limit_bytes} bytes")]
    TooLarge {
        /// The cap.
        limit_bytes: u64,
    },
    /// The pack is being built (or too many requested builds wait); the device takes its next
    /// source now and may ask again after `retry_after_secs`.
    #[error("pack {pack} is not ready; retry in {retry_after_secs} s or fetch the blobs")]
    PackNotReady {
        /// Which pack.
        pack: String,
        /// The `Retry-After`.
        retry_after_secs: u64,
    },
    /// The client sent its request too slowly.
    #[error("{0}")]
    Timeout(String),
    /// Too many requests in flight; the client should retry after a moment.
    #[error("server busy; retry in a moment")]
    Overloaded,
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Meta(#[from] rusqlite::Error),
    /// The PostgreSQL metadata store refused or failed a statement.
    #[error("metadata store: {}", postgres_detail(.0))]
    Postgres(tokio_postgres::Error),
    /// The metadata store cannot be reached for now (restarting, connections lost): the client
    /// retries in a moment.
    #[error("metadata store unavailable ({0}); retry in a moment")]
    MetaUnavailable(String),
    /// File-system or other IO failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The S3-compatible object store holding blobs failed or could not be reached.
    #[error("object store: {context}: {source}")]
    ObjectStore {
        /// What was being done, naming the object.
        context: String,
        /// The object store's error.
        source: object_store::Error,
    },
    /// A setting has a value the service cannot run with; refused at start.
    #[error("setting {setting} = {value}: {reason}")]
    InvalidSetting {
        /// The setting's name, as in [`crate::service::Settings`].
        setting: &'static str,
        /// The refused value.
        value: String,
        /// Why it is refused and what would work.
        reason: String,
    },
    /// A retention policy value a collection cannot run with.
    #[error("{field} {value}: {reason}")]
    InvalidPolicy {
        /// The field, as in [`crate::retention::Retention`] and the request body.
        field: &'static str,
        /// The refused value.
        value: String,
        /// Why, and what would work.
        reason: String,
    },
    /// `baleen migrate` refused an install or a target, or a copy did not verify.
    #[error(transparent)]
    Migrate(#[from] crate::migrate::MigrateError),
    /// An invariant of the server broke; a bug or a damaged data directory.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What PostgreSQL said, where the client's own message ("db error") says nothing.
fn postgres_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Error {
        use tokio_postgres::error::SqlState;
        // A lost connection, or a server shutting down or starting: nothing was committed that
        // the caller did not see committed, and a retry on a fresh connection may succeed.
        let unavailable = match e.code() {
            Some(code) => [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::CONNECTION_FAILURE,
                SqlState::CONNECTION_EXCEPTION,
            ]
            .contains(code),
            None => {
                e.is_closed()
                    || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
            }
        };
        if unavailable {
            Error::MetaUnavailable(e.to_string())
        } else {
            Error::Postgres(e)
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Error {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Error::MetaUnavailable(other.to_string()),
        }
    }
}

impl Error {
    /// Wraps an IO error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an object store error with what was being done.
    pub fn object_store(context: impl Into<String>, source: object_store::Error) -> Error {
        Error::ObjectStore {
            context: context.into(),
            source,
        }
    }

    /// Whether the error means the server's disk (or its database's) is full: a publish or a
    /// change that hits it answers 507 and stores nothing, and serving goes on.
    pub fn is_storage_full(&self) -> bool {
        let full = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        };
        match self {
            Error::Io { source, .. } => full(source),
            Error::Ingest(crate::ingest::IngestError::Io { source, .. }) => full(source),
            Error::Meta(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            Error::Postgres(e) => e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL),
            _ => false,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        if self.is_storage_full() {
            return StatusCode::INSUFFICIENT_STORAGE;
        }
        match self {
            // A failure to write the staging area is ours, not the upload's.
            Error::Ingest(e) if !e.is_refusal() => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Contract(_)
            | Error::Ingest(_)
            | Error::BadRequest(_)
            | Error::InvalidPolicy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unauthorized | Error::TokenRefused { .. } | Error::NeedsToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            Error::IngestKeyRefused { code, .. } if *code == "ingest_key_wrong_app" => {
                StatusCode::FORBIDDEN
            }
            Error::IngestKeyRefused { .. } => StatusCode::UNAUTHORIZED,
            Error::UnknownEventTarget { .. } => StatusCode::NOT_FOUND,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Forbidden { .. } | Error::SignatureRefused(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) | Error::DeltaUnavailable { .. } | Error::UnknownChannel { .. } => {
                StatusCode::NOT_FOUND
            }
            Error::Conflict(_)
            | Error::RouteTaken { .. }
            | Error::ReleaseUnsigned { .. }
            | Error::KeyNotHeld(_)
            | Error::KeyListRefused(_) => StatusCode::CONFLICT,
            Error::RouteOutsideOrigins { .. } => StatusCode::FORBIDDEN,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Overloaded | Error::PackNotReady { .. } | Error::MetaUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Meta(_)
            | Error::Postgres(_)
            | Error::Io { .. }
            | Error::ObjectStore { .. }
            | Error::InvalidSetting { .. }
            | Error::Migrate(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable snake_case code for clients and tests.
    pub fn code(&self) -> &'static str {
        if self.is_storage_full() {
            return "storage_full";
        }
        match self {
            Error::Contract(e) | Error::SignatureRefused(e) | Error::KeyListRefused(e) => e.code(),
            Error::Ingest(e) => e.code(),
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized | Error::NeedsToken(_) => "unauthorized",
            Error::TokenRefused { .. } => "token_refused",
            Error::Forbidden { .. } => "forbidden",
            Error::IngestKeyRefused { code, .. } | Error::UnknownEventTarget { code, .. } => code,
            Error::RateLimited { .. } => "rate_limited",
            Error::NotFound(_) => "not_found",
            Error::UnknownChannel { .. } => "unknown_channel",
            Error::DeltaUnavailable { .. } => "delta_unavailable",
            Error::Conflict(_) => "conflict",
            Error::RouteTaken { .. } => "route_taken",
            Error::ReleaseUnsigned { .. } => "release_unsigned",
            Error::KeyNotHeld(_) => "key_not_held",
            Error::RouteOutsideOrigins { .. } => "route_outside_origins",
            Error::TooLarge { .. } => "too_large",
            Error::Overloaded => "overloaded",
            Error::Timeout(_) => "timeout",
            Error::PackNotReady { .. } => "pack_not_ready",
            Error::Meta(_) | Error::Postgres(_) => "meta_store",
            Error::MetaUnavailable(_) => "meta_unavailable",
            Error::Io { .. } => "io",
            Error::ObjectStore { .. } => "object_store",
            Error::InvalidSetting { .. } => "invalid_setting",
            Error::InvalidPolicy { .. } => "invalid_policy",
            Error::Migrate(e) => e.code(),
            Error::Internal(_) => "internal",
        }
    }
}
