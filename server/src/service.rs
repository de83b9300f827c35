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
use crate::meta_store::{MetaStore, StoreChange, StoreLock};
use crate::retention::Retention;

/// The shortest index lifetime: an index is re-signed when half of its lifetime is left, and the
/// server can only act on whole seconds.
pub const MIN_INDEX_TTL_SECS: u64 = 2;

/// The longest index lifetime, a year: a device trusts an index that long, so a longer one would
/// let a replayed old index hold devices back for longer.
pub const MAX_INDEX_TTL_SECS: u64 = 365 * 24 * 3600;

/// Settings of a running service.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a signed index stays valid. Indexes are re-signed when half of it has passed.
    pub index_ttl_secs: u64,
    /// `max-age` of index responses (at most half of `index_ttl_secs`).
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
    /// A request holds its slot only once its body has arrived.
    pub max_concurrent_requests: usize,
    /// Connections open at once; past it a new connection is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long a client may take to send a whole request body (other than an upload's); past
    /// it the request is answered `408` and the connection closed.
    pub body_read_timeout: Duration,
    /// How long an upload may go without sending a byte.
    pub upload_idle_timeout: Duration,
    /// How long a response may go without the client taking a byte of it (slow readers); past
    /// it the connection is closed.
    pub write_timeout: Duration,
    /// Where uploads are staged (on the same file system as the blobs, so moves are renames).
    pub staging_dir: PathBuf,
    /// How long a pack request waits for a build under way before it is answered `503` with
    /// `Retry-After` (the device then takes its next source at once).
    pub pack_wait: Duration,
    /// Pack builds at once, per stage: one per core.
    pub pack_build_threads: usize,
    /// Pack build jobs that requests may have queued or running at once; past it, a request for
    /// a pack that is not built gets `503` and starts nothing.
    pub max_requested_pack_builds: usize,
    /// Bytes of fast packs held in memory at most until their final packs are stored; past it
    /// the ones held longest are let go, and a request for one builds it again.
    pub fast_pack_memory_bytes: u64,
    /// Bytes of small blobs held in memory at most ([`crate::hot_blobs`]); 0 holds none.
    pub blob_cache_bytes: u64,
    /// What a collection keeps ([`crate::retention`]).
    pub retention: Retention,
    /// How often `serve` collects garbage with [`Settings::retention`]; none: only when asked.
    pub gc_interval: Option<Duration>,
    /// How often `serve` evaluates the health-gated rollouts ([`crate::ramp`]); `None`: only
    /// when asked.
    pub ramp_interval: Option<Duration>,
    /// Event batches one device may send per minute, and at once; 0: no limit.
    pub events_per_device_per_minute: u32,
    /// Event batches one client address may send per minute, and at once; 0: no limit.
    pub events_per_address_per_minute: u32,
    /// How long a console session lasts after sign-in.
    pub console_session: Duration,
    /// Channels on which the console asks to type the channel's name before a change other than
    /// a pause (the API and the command line take the change as given).
    pub protected_channels: Vec<String>,
}

/// Mebibytes of fast packs held by default (a burst of publishes would otherwise hold every
/// release's fast packs until the slower final builds catch up).
pub const DEFAULT_FAST_PACK_MEMORY_MIB: u64 = 512;

/// How long a console session lasts by default: a working day.
pub const DEFAULT_CONSOLE_SESSION_SECS: u64 = 8 * 3600;

/// Event batches a device may send per minute by default: a device sends one per launch or so.
pub const DEFAULT_EVENTS_PER_DEVICE_PER_MINUTE: u32 = 10;

/// Event batches one client address may send per minute by default: many devices may share an
/// address (a carrier's NAT), so it is well above a device's.
pub const DEFAULT_EVENTS_PER_ADDRESS_PER_MINUTE: u32 = 600;

/// The default interval between periodic collections: six hours.
pub const DEFAULT_GC_INTERVAL_SECS: u64 = 6 * 3600;

/// The longest interval between periodic collections: a year.
pub const MAX_GC_INTERVAL_SECS: u64 = 365 * 24 * 3600;

/// How often `serve` evaluates the health-gated rollouts by default, in seconds.
pub const DEFAULT_RAMP_INTERVAL_SECS: u64 = 60;

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
            max_connections: 16_384,
            body_read_timeout: Duration::from_secs(10),
            upload_idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            staging_dir,
            pack_wait: Duration::from_millis(500),
            pack_build_threads: std::thread::available_parallelism().map_or(1, usize::from),
            max_requested_pack_builds: 16,
            fast_pack_memory_bytes: DEFAULT_FAST_PACK_MEMORY_MIB * 1024 * 1024,
            blob_cache_bytes: crate::hot_blobs::DEFAULT_BLOB_CACHE_MIB * 1024 * 1024,
            retention: Retention::default(),
            gc_interval: Some(Duration::from_secs(DEFAULT_GC_INTERVAL_SECS)),
            ramp_interval: Some(Duration::from_secs(DEFAULT_RAMP_INTERVAL_SECS)),
            events_per_device_per_minute: DEFAULT_EVENTS_PER_DEVICE_PER_MINUTE,
            events_per_address_per_minute: DEFAULT_EVENTS_PER_ADDRESS_PER_MINUTE,
            console_session: Duration::from_secs(DEFAULT_CONSOLE_SESSION_SECS),
            protected_channels: vec!["production".to_owned()],
        }
    }
}

impl Settings {
    /// Whether the console asks for `channel`'s name before a change on it.
    pub fn is_protected(&self, channel: &manifests::Channel) -> bool {
        self.protected_channels
            .iter()
            .any(|c| c == channel.as_str())
    }

    /// Checks that the service can run with these settings, so that a bad value is refused at
    /// start rather than found later by a request that half-succeeds (an index lifetime of 0 s
    /// would let a publish store its release and then fail to sign the channel's index).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] naming the first bad setting and why.
    pub fn check(&self) -> Result<()> {
        let invalid = |setting: &'static str, value: String, reason: &str| {
            Err(Error::InvalidSetting {
                setting,
                value,
                reason: reason.to_owned(),
            })
        };
        if !(MIN_INDEX_TTL_SECS..=MAX_INDEX_TTL_SECS).contains(&self.index_ttl_secs) {
            return invalid(
                "index_ttl_secs",
                self.index_ttl_secs.to_string(),
                &format!(
                    "an index must stay valid from {MIN_INDEX_TTL_SECS} seconds (it is re-signed \
                     when half of its lifetime is left) to {MAX_INDEX_TTL_SECS} seconds (a year; \
                     devices trust an index that long); the default is a week, 604800"
                ),
            );
        }
        if self.max_upload_bytes == 0 {
            return invalid(
                "max_upload_bytes",
                "0".into(),
                "every publish would be refused; the default is 268435456 (256 MiB)",
            );
        }
        if self.header_read_timeout.is_zero() {
            return invalid(
                "header_read_timeout",
                "0s".into(),
                "every connection would be cut off",
            );
        }
        let limits = [
            ("limits.max_entries", self.limits.max_entries as u64),
            ("limits.max_file_bytes", self.limits.max_file_bytes),
            ("limits.max_total_bytes", self.limits.max_total_bytes),
            ("limits.max_ratio", self.limits.max_ratio),
        ];
        for (setting, value) in limits {
            if value == 0 {
                return invalid(setting, "0".into(), "every upload would be refused");
            }
        }
        if let Err(Error::InvalidPolicy {
            field,
            value,
            reason,
        }) = self.retention.check()
        {
            let setting = match field {
                "max_age_secs" => "gc_max_age_secs",
                "dev_max_age_secs" => "gc_dev_max_age_secs",
                "history_depth" => "gc_history_depth",
                _ => "gc_keep_last",
            };
            return invalid(setting, value, &reason);
        }
        if let Some(interval) = self.gc_interval
            && !(1..=MAX_GC_INTERVAL_SECS).contains(&interval.as_secs())
        {
            return invalid(
                "gc_interval_secs",
                interval.as_secs().to_string(),
                &format!(
                    "collect from every second to once a year ({MAX_GC_INTERVAL_SECS}), or pass 0 \
                     to collect only when asked (`baleen gc`)"
                ),
            );
        }
        Ok(())
    }
}

/// The server's core.
#[derive(Debug)]
pub struct Service {
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) key: KeyPair,
    /// Every key held: `key` first, then keys given for rotation.
    pub(crate) held: Vec<KeyPair>,
    /// Each app's key lists.
    pub(crate) key_cache: crate::trust::KeyCache,
    pub(crate) settings: Settings,
    /// One lock per package, so that publishes of one package run one at a time.
    publish_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Signed indexes and deltas, built when first asked for, by (app, channel).
    pub(crate) documents: crate::documents::Documents,
    /// Signed manifests and release deltas, encoded when first asked for.
    pub(crate) manifest_docs: crate::manifest_docs::ManifestDocs,
    /// Pack build jobs and the fast packs they hold.
    pub(crate) packs: crate::pack::Builds,
    /// Prometheus metrics.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Small blobs devices asked for, held in memory.
    pub(crate) hot_blobs: crate::hot_blobs::HotBlobs,
    /// Permits for requests in flight.
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// `Cache-Control` of index responses, built once.
    pub(crate) index_cache_control: axum::http::HeaderValue,
    /// Held shared by whatever makes a stored blob referenced (a publish, from the moment it
    /// relies on stored blobs until its release is on its channel; a pack build, from storing
    /// the pack until it is recorded), and exclusively by a collection while it decides and
    /// removes: no blob is removed while something is about to refer to it ([`crate::gc`]).
    pub(crate) blob_gate: tokio::sync::RwLock<()>,
    /// Collections run one at a time.
    pub(crate) collecting: tokio::sync::Mutex<()>,
    /// Ingest keys and rate limits of `POST /v1/events`.
    pub(crate) events: crate::stats::EventGate,
}

impl Service {
    /// A service over these stores, signing with `key`.
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        key: KeyPair,
        settings: Settings,
    ) -> Result<Service> {
        settings.check()?;
        std::fs::create_dir_all(&settings.staging_dir)
            .map_err(|e| Error::io(format!("creating {}", settings.staging_dir.display()), e))?;
        Ok(Service {
            blobs,
            meta,
            held: vec![key.clone()],
            key,
            key_cache: crate::trust::KeyCache::default(),
            publish_locks: Mutex::default(),
            documents: crate::documents::Documents::default(),
            manifest_docs: crate::manifest_docs::ManifestDocs::default(),
            packs: crate::pack::Builds::new(
                settings.pack_build_threads,
                settings.max_requested_pack_builds,
                settings.fast_pack_memory_bytes,
            ),
            metrics: crate::metrics::Metrics::default(),
            hot_blobs: crate::hot_blobs::HotBlobs::new(settings.blob_cache_bytes),
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                settings.max_concurrent_requests,
            )),
            index_cache_control: axum::http::HeaderValue::from_str(&format!(
                "public, max-age={}",
                // No cache keeps an index past the point where it is signed again.
                settings.index_max_age_secs.min(settings.index_ttl_secs / 2)
            ))
            .unwrap_or(axum::http::HeaderValue::from_static("public, max-age=60")),
            blob_gate: tokio::sync::RwLock::new(()),
            collecting: tokio::sync::Mutex::new(()),
            events: crate::stats::EventGate::new(&settings),
            settings,
        })
    }

    /// Holds `more` keys besides the primary one: the index keys of a rotation, release keys.
    #[must_use]
    pub fn with_keys(mut self, more: Vec<KeyPair>) -> Service {
        for key in more {
            if !self.held.iter().any(|k| k.id() == key.id()) {
                self.held.push(key);
            }
        }
        self
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

    /// One at a time per `name` in this process (a package's publishes, one pack's builds);
    /// [`MetaStore::lock`] orders them across servers.
    pub(crate) async fn publish_lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .publish_locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(name.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Held while something is about to make stored blobs referenced, shared (see
    /// [`Service::blob_gate`] and [`crate::gc`]): this process's gate, and the store's for every
    /// server sharing it.
    pub(crate) async fn blobs_in_use(
        &self,
    ) -> Result<(tokio::sync::RwLockReadGuard<'_, ()>, StoreLock)> {
        let local = self.blob_gate.read().await;
        let shared = self.meta.lock(BLOB_GATE, true).await?;
        Ok((local, shared))
    }

    /// The gate a collection holds alone while it decides and removes blobs.
    pub(crate) async fn blobs_to_remove(
        &self,
    ) -> Result<(tokio::sync::RwLockWriteGuard<'_, ()>, StoreLock)> {
        let local = self.blob_gate.write().await;
        let alone = self.meta.lock(BLOB_GATE, false).await?;
        Ok((local, alone))
    }

    /// Follows the changes other servers sharing the metadata store commit: a channel's new
    /// sequence, served at once (without it, within [`Settings::index_cache`]) with the app's key
    /// lists read again (a key list change moves every channel of the app); a manifest that
    /// gained signatures or was collected, encoded again or no longer served. Does nothing on an
    /// engine one process owns.
    ///
    /// # Errors
    /// When the store cannot start following.
    pub async fn follow_store(self: &Arc<Self>) -> Result<()> {
        let Some(mut changes) = self.meta.changes().await? else {
            return Ok(());
        };
        let service = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                let Some(service) = service.upgrade() else {
                    break;
                };
                match change {
                    StoreChange::Channel {
                        app,
                        channel,
                        sequence,
                    } => {
                        service.key_cache.forget(Some(&app));
                        service.documents.advanced(&app, &channel, sequence);
                    }
                    StoreChange::Manifest(digest) => service
                        .manifest_docs
                        .forget(&std::collections::BTreeSet::from([digest])),
                    // Channel documents need nothing: each is checked against the channel's row
                    // within `index_cache` anyway, and kept while the store cannot be read.
                    StoreChange::Missed => {
                        service.key_cache.forget(None);
                        service.manifest_docs.forget_all();
                    }
                }
            }
        });
        Ok(())
    }
}

/// The store lock behind [`Service::blobs_in_use`] and [`Service::blobs_to_remove`].
const BLOB_GATE: &str = "blob-gate";

/// The current time, to the second.
pub fn now() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Timestamp::from_unix_secs(secs)
}
