//! Device reports in, per-release figures out ([`crate::api::ReleaseReport`] adds the shares).
//!
//! Figures a health gate may act on must not be cheap to fake, so a batch goes through, in
//! order: the per-address rate limit (before the body is parsed), the app's ingest key (a public
//! key shipped in the app, checked against a short-lived cache of the store), the per-device
//! rate limit, then the app, channel and releases it names, which must exist. States
//! (installed, activated, ready, failed, rolled back) count distinct devices: a device that
//! fails a boot a million times is one failing device. Opens count events, at most
//! [`MAX_OPENS_PER_DEVICE_DAY`] per device, release and day.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use manifests::{AppId, Digest, EventBatch, EventKind, PackageId, ReleaseVersion, Timestamp};

use crate::api::{Accepted, RefusedEvent};
use crate::error::{Error, Result};
use crate::meta_store::{
    AuditEntry, DeviceReport, IngestKeyRecord, MAX_OPENS_PER_DEVICE_DAY, MetaStore,
};
use crate::rate_limit::RateLimiter;
use crate::service::{Service, Settings, now};

/// What an ingest key starts with.
pub const INGEST_KEY_PREFIX: &str = "bik_";

/// How long a replica trusts what it read of an ingest key: a revocation made through another
/// replica is refused there after at most this long.
pub const INGEST_KEY_CACHE: Duration = Duration::from_secs(10);

/// Most ingest keys (known or not) a replica remembers.
const INGEST_KEY_CACHE_ENTRIES: usize = 10_000;

/// The ingest key cache and the rate limits of `POST /v1/events`, in memory, per process.
#[derive(Debug)]
pub struct EventGate {
    keys: Mutex<HashMap<Digest, (Option<IngestKeyRecord>, Instant)>>,
    devices: RateLimiter<Digest>,
    addresses: RateLimiter<IpAddr>,
}

impl EventGate {
    /// The gate with `settings`' limits.
    pub fn new(settings: &Settings) -> EventGate {
        let (device, address) = (
            settings.events_per_device_per_minute,
            settings.events_per_address_per_minute,
        );
        EventGate {
            keys: Mutex::default(),
            devices: RateLimiter::new(device, device),
            addresses: RateLimiter::new(address, address),
        }
    }

    /// Takes a token of `address`'s bucket.
    ///
    /// # Errors
    /// [`Error::RateLimited`] with the wait.
    pub fn admit_address(&self, address: IpAddr) -> Result<()> {
        self.addresses
            .admit(&address, Instant::now())
            .map_err(|wait| Error::RateLimited {
                who: "client address",
                retry_after_secs: retry_after(wait),
            })
    }

    fn admit_device(&self, device: &Digest) -> Result<()> {
        self.devices
            .admit(device, Instant::now())
            .map_err(|wait| Error::RateLimited {
                who: "device",
                retry_after_secs: retry_after(wait),
            })
    }

    /// The stored key with this hash, from the cache when read less than [`INGEST_KEY_CACHE`]
    /// ago.
    async fn key(&self, meta: &dyn MetaStore, hash: &Digest) -> Result<Option<IngestKeyRecord>> {
        let at = Instant::now();
        if let Some((key, read)) = self.lock_keys().get(hash)
            && at.saturating_duration_since(*read) < INGEST_KEY_CACHE
        {
            return Ok(key.clone());
        }
        let key = meta.ingest_key(hash).await?;
        let mut keys = self.lock_keys();
        if keys.len() >= INGEST_KEY_CACHE_ENTRIES {
            keys.retain(|_, (_, read)| at.saturating_duration_since(*read) < INGEST_KEY_CACHE);
            if keys.len() >= INGEST_KEY_CACHE_ENTRIES {
                keys.clear();
            }
        }
        keys.insert(*hash, (key.clone(), at));
        Ok(key)
    }

    fn forget(&self, hash: &Digest) {
        self.lock_keys().remove(hash);
    }

    fn lock_keys(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Digest, (Option<IngestKeyRecord>, Instant)>> {
        // A poisoned lock holds only a cache; going on with it is safe.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bucket's wait as `Retry-After`: whole seconds, rounded up, 1 to 60 (a bucket refills at
/// least one token a minute).
fn retry_after(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).clamp(1, 60)
}

/// The hash a device is counted under: of its id within its app, so that no id is stored.
pub fn device_hash(app: &AppId, device_id: &str) -> Digest {
    Digest::of(format!("{app}\n{device_id}").as_bytes())
}

impl Service {
    /// Counts a device's batch: checks its ingest key, the device's rate limit, and that its
    /// app and channel exist; then counts the events naming existing releases of the app and
    /// lists the others as refused, so that a device holding a release that was collected does
    /// not lose its other events (nor send the stale one again).
    ///
    /// # Errors
    /// [`Error::IngestKeyRefused`] for a missing, unknown or revoked key or one of another app;
    /// [`Error::BadRequest`] without a device id; [`Error::RateLimited`];
    /// [`Error::UnknownEventTarget`] for an unknown app or channel, or when no event names a
    /// release that exists.
    pub async fn record_events(&self, batch: &EventBatch) -> Result<Accepted> {
        self.check_ingest_key(batch.ingest_key.as_deref(), &batch.app)
            .await?;
        let Some(device_id) = &batch.device_id else {
            return Err(Error::BadRequest(
                "device_id missing: figures count devices, so a batch names its device".into(),
            ));
        };
        let device = device_hash(&batch.app, device_id);
        self.events.admit_device(&device)?;
        let (app, channel) = (&batch.app, &batch.channel);
        // An app without packages is named as such, whatever else is wrong; it is asked only on
        // the way to a refusal, not for every batch that counts.
        let no_app = || async {
            Ok::<_, Error>(self.meta.app_packages(app).await?.is_empty().then(|| {
                Error::UnknownEventTarget {
                    code: "unknown_app",
                    message: format!("app {app} has no package; events are counted per release"),
                }
            }))
        };
        if self.meta.channel_head(app, channel).await?.is_none() {
            return Err(no_app()
                .await?
                .unwrap_or_else(|| Error::UnknownEventTarget {
                    code: "unknown_channel",
                    message: format!("app {app} has no channel {channel}"),
                }));
        }
        let mut known: BTreeMap<(PackageId, ReleaseVersion), bool> = BTreeMap::new();
        let mut reports: BTreeMap<(PackageId, ReleaseVersion), DeviceReport> = BTreeMap::new();
        let mut refused = Vec::new();
        for (index, event) in batch.events.iter().enumerate() {
            let key = (event.package.clone(), event.version.clone());
            let exists = match known.get(&key) {
                Some(exists) => *exists,
                None => {
                    let exists = self.meta.package_app(&event.package).await?.as_ref() == Some(app)
                        && self
                            .meta
                            .release(&event.package, &event.version)
                            .await?
                            .is_some();
                    known.insert(key.clone(), exists);
                    exists
                }
            };
            if !exists {
                refused.push(RefusedEvent {
                    index,
                    code: "unknown_release".into(),
                    message: format!(
                        "app {app} has no release {}@{}",
                        event.package, event.version
                    ),
                });
                continue;
            }
            let r = reports.entry(key.clone()).or_insert_with(|| DeviceReport {
                package: Some(key.0.clone()),
                version: Some(key.1.clone()),
                ..DeviceReport::default()
            });
            let state = match event.kind {
                EventKind::Installed => "installed",
                EventKind::Activated => "activated",
                EventKind::Ready => "ready",
                EventKind::Failed => "failed",
                EventKind::RolledBack => "rolled_back",
                EventKind::Opens => {
                    // Bounded here already: the store bounds it per day.
                    let room = MAX_OPENS_PER_DEVICE_DAY.saturating_sub(r.opens);
                    let opens = event.count.min(room);
                    r.opens += opens;
                    r.offline_hits += event.offline_hits.min(opens);
                    r.under_1s += event.under_1s.min(opens);
                    let mut paints = [0; manifests::PAINT_BUCKETS];
                    for (bucket, n) in paints.iter_mut().zip(&event.paint_ms) {
                        *bucket = *n;
                    }
                    let paints = crate::meta_store::rows::capped_paints(&paints, opens);
                    for (total, n) in r.paint_ms.iter_mut().zip(paints) {
                        *total += n;
                    }
                    continue;
                }
                _ => continue,
            };
            if !r.states.contains(&state) {
                r.states.push(state);
            }
        }
        if reports.is_empty() {
            if let Some(no_app) = no_app().await? {
                return Err(no_app);
            }
            let message = refused
                .first()
                .map_or_else(|| "no event".to_owned(), |r| r.message.clone());
            return Err(Error::UnknownEventTarget {
                code: "unknown_release",
                message: format!("{message}; no event of the batch names a release of the app"),
            });
        }
        let reports: Vec<DeviceReport> = reports.into_values().collect();
        let day = now().unix_secs() / 86_400;
        self.meta
            .add_device_reports(app, channel, &device, day, &reports)
            .await?;
        Ok(Accepted {
            accepted: batch.events.len() - refused.len(),
            ignored: refused.len(),
            refused,
        })
    }

    /// Checks that `key` is an ingest key of `app` that was not revoked.
    ///
    /// # Errors
    /// [`Error::IngestKeyRefused`] saying why.
    pub async fn check_ingest_key(&self, key: Option<&str>, app: &AppId) -> Result<()> {
        let refuse = |code, message: String| Err(Error::IngestKeyRefused { code, message });
        let Some(key) = key else {
            return refuse(
                "ingest_key_missing",
                format!(
                    "ingest_key missing: an admin makes one with `baleen ingest-key create --app {app}`, which the app ships"
                ),
            );
        };
        if !key.starts_with(INGEST_KEY_PREFIX) || key.len() > 128 {
            return refuse(
                "ingest_key_unknown",
                format!("unknown ingest key (an ingest key starts with {INGEST_KEY_PREFIX})"),
            );
        }
        let Some(record) = self
            .events
            .key(self.meta.as_ref(), &Digest::of(key.as_bytes()))
            .await?
        else {
            return refuse("ingest_key_unknown", "unknown ingest key".into());
        };
        if &record.app != app {
            return refuse(
                "ingest_key_wrong_app",
                format!("the ingest key is app {}'s, not app {app}'s", record.app),
            );
        }
        if let Some(at) = record.revoked_at {
            return refuse(
                "ingest_key_revoked",
                format!(
                    "ingest key {:?} of app {app} was revoked at {at}; ship a newer one",
                    record.name
                ),
            );
        }
        Ok(())
    }

    /// Makes an ingest key for `app` named `name`; returns the key (shown only this once) and
    /// its record.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a bad name; [`Error::Conflict`] for a name the app uses.
    pub async fn create_ingest_key(
        &self,
        app: &AppId,
        name: &str,
        actor: &str,
    ) -> Result<(String, IngestKeyRecord)> {
        create_ingest_key(self.meta.as_ref(), app, name, actor).await
    }

    /// Revokes `app`'s ingest key `name`: this replica refuses it at once, the others within
    /// [`INGEST_KEY_CACHE`].
    ///
    /// # Errors
    /// [`Error::NotFound`] when the app has no key of that name.
    pub async fn revoke_ingest_key(
        &self,
        app: &AppId,
        name: &str,
        actor: &str,
    ) -> Result<IngestKeyRecord> {
        let at = now();
        let audit = AuditEntry {
            at,
            actor: actor.to_owned(),
            action: "ingest_key.revoke".into(),
            target: format!("{app}/{name}"),
            detail: "{}".into(),
        };
        let key = self.meta.revoke_ingest_key(app, name, at, &audit).await?;
        self.events.forget(&key.hash);
        Ok(key)
    }
}

/// Makes an ingest key for `app` in `meta` (also for `baleen serve --demo`, before serving).
///
/// # Errors
/// As [`Service::create_ingest_key`].
pub async fn create_ingest_key(
    meta: &dyn MetaStore,
    app: &AppId,
    name: &str,
    actor: &str,
) -> Result<(String, IngestKeyRecord)> {
    crate::auth::check_token_name(name).map_err(|_| {
        Error::BadRequest(
            "ingest key name must be 1 to 64 characters without control characters".into(),
        )
    })?;
    let key = format!("{INGEST_KEY_PREFIX}{}", crate::auth::random_hex(16)?);
    let created_at: Timestamp = now();
    let record = IngestKeyRecord {
        app: app.clone(),
        name: name.to_owned(),
        hash: Digest::of(key.as_bytes()),
        created_at,
        revoked_at: None,
    };
    let audit = AuditEntry {
        at: created_at,
        actor: actor.to_owned(),
        action: "ingest_key.create".into(),
        target: format!("{app}/{name}"),
        detail: "{}".into(),
    };
    meta.insert_ingest_key(&record, &audit).await?;
    Ok((key, record))
}
