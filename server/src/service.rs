//! The server's core: one `Service` holds the stores and the signing key, and carries out
//! publishes and channel changes. The HTTP layer and the CLI only map requests onto it.
//!
//! It keeps no state that matters across requests beyond caches: everything durable is in the
//! `BlobStore` and the `MetaStore`, so replicas can run side by side.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use manifests::{KeyPair, Timestamp};

use crate::blob_store::BlobStore;
use crate::error::{Error, Result};
use crate::ingest::Limits;
use crate::meta_store::MetaStore;

/// Settings of a running service.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a signed index stays valid. Indexes are re-signed when half of it has passed.
    pub index_ttl_secs: u64,
    /// `max-age` of index responses.
    pub index_max_age_secs: u64,
    /// How long this process trusts the channel sequence it read before reading it again (a
    /// change made through another replica shows here after at most this long).
    pub index_cache: Duration,
    /// Largest accepted upload.
    pub max_upload_bytes: u64,
    /// Archive limits.
    pub limits: Limits,
    /// How long a client may take to send a request's headers (slow-loris defence).
    pub header_read_timeout: Duration,
    /// Requests served at once; more get `503` with `Retry-After` at once instead of queueing.
    pub max_concurrent_requests: usize,
    /// Where uploads are staged (on the same file system as the blobs, so moves are renames).
    pub staging_dir: PathBuf,
}

impl Settings {
    /// Defaults with uploads staged under `staging_dir`.
    pub fn new(staging_dir: PathBuf) -> Settings {
        Settings {
            index_ttl_secs: 7 * 24 * 3600,
            index_max_age_secs: 60,
            index_cache: Duration::from_secs(1),
            max_upload_bytes: 256 * 1024 * 1024,
            limits: Limits::default(),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_requests: 4096,
            staging_dir,
        }
    }
}

/// The server's core.
#[derive(Debug)]
pub struct Service {
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) key: KeyPair,
    pub(crate) settings: Settings,
    /// One lock per package, so that publishes of one package run one at a time.
    publish_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Signed indexes and deltas, built when first asked for, by (app, channel).
    pub(crate) documents: crate::documents::Documents,
    /// Pack builds are CPU-heavy: one at a time.
    pub(crate) pack_builds: tokio::sync::Semaphore,
    /// Prometheus metrics.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Permits for requests in flight.
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// `Cache-Control` of index responses, built once.
    pub(crate) index_cache_control: axum::http::HeaderValue,
}

impl Service {
    /// A service over these stores, signing with `key`.
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        key: KeyPair,
        settings: Settings,
    ) -> Result<Service> {
        std::fs::create_dir_all(&settings.staging_dir)
            .map_err(|e| Error::io(format!("creating {}", settings.staging_dir.display()), e))?;
        Ok(Service {
            blobs,
            meta,
            key,
            publish_locks: Mutex::default(),
            documents: crate::documents::Documents::default(),
            pack_builds: tokio::sync::Semaphore::new(1),
            metrics: crate::metrics::Metrics::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                settings.max_concurrent_requests,
            )),
            index_cache_control: axum::http::HeaderValue::from_str(&format!(
                "public, max-age={}",
                settings.index_max_age_secs
            ))
            .unwrap_or(axum::http::HeaderValue::from_static("public, max-age=60")),
            settings,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The metadata store.
    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// The metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The public half of the signing key, to embed in apps.
    pub fn public_key(&self) -> &manifests::PublicKey {
        self.key.public()
    }

    pub(crate) async fn publish_lock(&self, package: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .publish_locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(package.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// The current time, to the second.
pub fn now() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Timestamp::from_unix_secs(secs)
}
