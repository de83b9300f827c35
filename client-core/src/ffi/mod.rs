//! The foreign-function face of the library, for Kotlin, Swift and Python through UniFFI.
//!
//! It stays small: one `BaleenClient` object, records of plain fields, one error enum whose
//! variants are what a host can do, and a `HostFetcher` interface the app implements with its
//! own HTTP stack. Everything here converts and delegates; the logic lives in [`crate::Client`].

pub mod c;

use std::collections::HashMap;
use std::sync::Arc;

use manifests::{AppId, Channel, HostVersion, PackageId, PublicKey};

use crate::error::BaleenError;
use crate::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use crate::install::Method;
use crate::plan::{Conditions, Network, Wait};
use crate::{Client, Config, Resolved, Update, UpdateOutcome};

/// How the host sets up a client (also the JSON object the C ABI takes).
#[derive(Debug, Clone, uniffi::Record, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The store's directory (app-private storage).
    pub dir: String,
    /// The server's base URL.
    pub server: String,
    /// The host app id.
    pub app: String,
    /// The channel to follow.
    pub channel: String,
    /// A stable random id of this installation.
    pub device_id: String,
    /// The host app's version.
    pub host_version: String,
    /// Trusted public keys, 64 hex digits each.
    pub public_keys: Vec<String>,
    /// Distinct trusted keys that must sign.
    pub threshold: u32,
    /// A custom URL scheme `resolve` also accepts (iOS).
    #[serde(default)]
    pub custom_scheme: Option<String>,
    /// Launches a new release may take without `mark_ready`.
    pub max_pending_launches: u32,
    /// The lowest index sequence ever acceptable.
    #[serde(default)]
    pub sequence_floor: u64,
    /// The app's ingest key (`bik_…`); without it the device sends no events.
    #[serde(default)]
    #[uniffi(default = None)]
    pub ingest_key: Option<String>,
}

impl TryFrom<ClientConfig> for Config {
    type Error = BaleenError;

    fn try_from(config: ClientConfig) -> Result<Config, BaleenError> {
        let keys = config
            .public_keys
            .iter()
            .map(|k| PublicKey::from_hex(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| other(e.to_string()))?;
        Ok(Config {
            dir: config.dir.into(),
            server: config.server,
            app: AppId::parse(&config.app).map_err(|e| other(e.to_string()))?,
            channel: Channel::parse(&config.channel).map_err(|e| other(e.to_string()))?,
            device_id: config.device_id,
            host_version: HostVersion::parse(&config.host_version)
                .map_err(|e| other(e.to_string()))?,
            trusted_keys: keys,
            threshold: usize::try_from(config.threshold).map_err(|e| other(e.to_string()))?,
            custom_scheme: config.custom_scheme,
            max_pending_launches: config.max_pending_launches,
            sequence_floor: config.sequence_floor,
            ingest_key: config.ingest_key,
        })
    }
}

/// One HTTP request for the host's fetcher.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Request headers.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// Stop reading the body beyond this many bytes.
    pub max_bytes: u64,
}

/// The host fetcher's answer.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Response headers.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// A transport failure reported by the host's fetcher.
#[derive(Debug, Clone, thiserror::Error, uniffi::Error)]
pub enum FetchFailure {
    /// No answer arrived (DNS, connect, TLS, timeout, a cut connection).
    #[error("{detail}")]
    Transport {
        /// What happened (not `message`, which Kotlin exceptions already have).
        detail: String,
    },
}

/// Any other exception the host's fetcher throws (a bug in it, an unexpected runtime error) is a
/// transport failure too: retried later, never a panic.
impl From<uniffi::UnexpectedUniFFICallbackError> for FetchFailure {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> FetchFailure {
        FetchFailure::Transport {
            detail: format!("the host fetcher failed: {}", e.reason),
        }
    }
}

/// The host's HTTP stack (OkHttp, URLSession). Called from the thread that called the client.
#[uniffi::export(with_foreign)]
pub trait HostFetcher: Send + Sync + std::fmt::Debug {
    /// Performs one request.
    fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, FetchFailure>;
}

#[derive(Debug)]
struct HostAdapter(Arc<dyn HostFetcher>);

impl Fetcher for HostAdapter {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let response = self
            .0
            .fetch(HttpRequest {
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request.headers.iter().cloned().collect(),
                body: request.body.clone(),
                max_bytes: request.max_bytes,
            })
            .map_err(|e| FetchError {
                message: e.to_string(),
            })?;
        Ok(FetchResponse {
            status: response.status,
            headers: response.headers.into_iter().collect(),
            body: response.body,
        })
    }
}

/// A file that answers a URL.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ResolvedFile {
    /// The file to answer with.
    pub path: String,
    /// Its `Content-Type`.
    pub mime: String,
    /// Its length.
    pub size: u64,
    /// The package that answered.
    pub package: String,
    /// The release that answered.
    pub version: String,
    /// Response headers.
    pub headers: HashMap<String, String>,
}

impl From<Resolved> for ResolvedFile {
    fn from(r: Resolved) -> ResolvedFile {
        ResolvedFile {
            path: r.path.to_string_lossy().into_owned(),
            mime: r.mime,
            size: r.size,
            package: r.package.to_string(),
            version: r.version.to_string(),
            headers: r.headers.into_iter().collect(),
        }
    }
}

/// A release a package moves to.
#[derive(Debug, Clone, uniffi::Record)]
pub struct UpdateInfo {
    /// The package.
    pub package: String,
    /// The release it runs now.
    pub from: Option<String>,
    /// The release it moves to.
    pub to: String,
    /// Bytes of the whole release.
    pub size_bytes: u64,
}

impl From<&Update> for UpdateInfo {
    fn from(u: &Update) -> UpdateInfo {
        UpdateInfo {
            package: u.package.to_string(),
            from: u.from.as_ref().map(ToString::to_string),
            to: u.to.version.to_string(),
            size_bytes: u.to.size_bytes,
        }
    }
}

/// One package on the device.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PackageInfo {
    /// The package.
    pub package: String,
    /// The release served.
    pub active: Option<String>,
    /// The release kept for rollback.
    pub previous: Option<String>,
    /// Whether the active release awaits `mark_ready`.
    pub pending: bool,
}

/// The network the device is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkType {
    /// Wi-Fi or Ethernet.
    Wifi,
    /// A mobile network.
    Cellular,
    /// No network.
    Offline,
}

/// What the host knows about the device when it asks for an update (also the JSON object the
/// C ABI takes). `docs/mobile.md` shows how Android and iOS fill it.
#[derive(Debug, Clone, Copy, uniffi::Record, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConditions {
    /// The network.
    pub network: NetworkType,
    /// The link is metered (a capped plan, a hotspot).
    pub metered: bool,
    /// The battery's charge, 0 to 100.
    pub battery_percent: u8,
    /// The device is charging.
    pub charging: bool,
    /// Low-power (battery saver) mode is on.
    pub low_power_mode: bool,
    /// Free space for the store, in bytes.
    pub free_space_bytes: u64,
    /// The app is in the foreground (a launch), not a background task.
    pub foreground: bool,
}

impl From<DeviceConditions> for Conditions {
    fn from(c: DeviceConditions) -> Conditions {
        Conditions {
            network: match c.network {
                NetworkType::Wifi => Network::Wifi,
                NetworkType::Cellular => Network::Cellular,
                NetworkType::Offline => Network::Offline,
            },
            metered: c.metered,
            battery_percent: c.battery_percent.min(100),
            charging: c.charging,
            low_power_mode: c.low_power_mode,
            free_space_bytes: c.free_space_bytes,
            foreground: c.foreground,
        }
    }
}

/// Why an update waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// No network.
    Offline,
    /// Waiting for unmetered Wi-Fi.
    Wifi,
    /// Waiting for charge.
    Charge,
    /// Waiting for free space.
    Space,
    /// Deferred by priority: this update's cellular budget went to other packages.
    Priority,
    /// Published "on first use": waits until the user opens it.
    FirstUse,
    /// The store's quota is full of packages used more recently.
    Quota,
}

impl From<Wait> for WaitReason {
    fn from(w: Wait) -> WaitReason {
        match w {
            Wait::Offline => WaitReason::Offline,
            Wait::Wifi => WaitReason::Wifi,
            Wait::Charge => WaitReason::Charge,
            Wait::Space => WaitReason::Space,
            Wait::Priority => WaitReason::Priority,
            Wait::FirstUse => WaitReason::FirstUse,
            Wait::Quota => WaitReason::Quota,
        }
    }
}

/// An update installed.
#[derive(Debug, Clone, uniffi::Record, serde::Serialize)]
pub struct Installation {
    /// The package.
    pub package: String,
    /// The release it ran before.
    pub from: Option<String>,
    /// The release it runs now.
    pub to: String,
    /// How the bytes came: `nothing`, `diff_pack`, `full_pack` or `blobs`.
    pub method: String,
    /// Bytes downloaded for it (manifest, packs, blobs).
    pub downloaded_bytes: u64,
}

/// An update left for later.
#[derive(Debug, Clone, uniffi::Record, serde::Serialize)]
pub struct Waiting {
    /// The package.
    pub package: String,
    /// Why it waits.
    pub reason: WaitReason,
}

/// What `update` did (also the JSON the C ABI hands out).
#[derive(Debug, Clone, uniffi::Record, serde::Serialize)]
pub struct UpdateReport {
    /// Updates installed, in order.
    pub installed: Vec<Installation>,
    /// Updates left for later, with the reason.
    pub waiting: Vec<Waiting>,
}

impl From<&UpdateOutcome> for UpdateReport {
    fn from(outcome: &UpdateOutcome) -> UpdateReport {
        let installed = outcome
            .installed
            .iter()
            .map(|(update, report)| Installation {
                package: update.package.to_string(),
                from: update.from.as_ref().map(ToString::to_string),
                to: update.to.version.to_string(),
                method: match report.method {
                    Method::Nothing => "nothing",
                    Method::DiffPack => "diff_pack",
                    Method::FullPack => "full_pack",
                    Method::Blobs => "blobs",
                }
                .to_owned(),
                downloaded_bytes: report.downloaded_bytes,
            });
        let waiting = outcome.waiting.iter().map(|(package, wait)| Waiting {
            package: package.to_string(),
            reason: (*wait).into(),
        });
        UpdateReport {
            installed: installed.collect(),
            waiting: waiting.collect(),
        }
    }
}

fn other(detail: impl Into<String>) -> BaleenError {
    BaleenError::Other {
        detail: detail.into(),
    }
}

fn package(name: &str) -> Result<PackageId, BaleenError> {
    PackageId::parse(name).map_err(|e| other(e.to_string()))
}

/// The on-device client.
#[derive(Debug, uniffi::Object)]
pub struct BaleenClient {
    inner: Client,
}

#[uniffi::export]
impl BaleenClient {
    /// Opens the store and starts serving what is installed. With no `fetcher`, the built-in one
    /// is used (if the library was built with it). Blocks (disk): call from a background thread.
    #[uniffi::constructor]
    pub fn new(
        config: ClientConfig,
        fetcher: Option<Arc<dyn HostFetcher>>,
    ) -> Result<Arc<BaleenClient>, BaleenError> {
        let core = Config::try_from(config)?;
        let fetcher: Arc<dyn Fetcher> = match fetcher {
            Some(host) => Arc::new(HostAdapter(host)),
            None => builtin()?,
        };
        Ok(Arc::new(BaleenClient {
            inner: Client::open(core, fetcher)?,
        }))
    }

    /// The file answering `url`, or none (go to the network). Never blocks: call it from the
    /// WebView's interception callback.
    pub fn resolve(&self, url: String) -> Option<ResolvedFile> {
        self.inner.resolve(&url).map(ResolvedFile::from)
    }

    /// The bytes answering `url`, or none. Reads the file: call from the interception thread.
    pub fn resolve_bytes(&self, url: String) -> Option<Vec<u8>> {
        let hit = self.inner.resolve(&url)?;
        std::fs::read(hit.path).ok()
    }

    /// What the server offers that the device does not run. Blocks (network).
    pub fn check(&self) -> Result<Vec<UpdateInfo>, BaleenError> {
        Ok(self
            .inner
            .check()?
            .updates
            .iter()
            .map(UpdateInfo::from)
            .collect())
    }

    /// Installs a release shipped inside the app (its signed manifest and full pack, as the
    /// server serves them), verified like a download, so the first launch works offline.
    /// Returns the version activated, or none when the device already runs it or something
    /// newer. Blocks (disk).
    pub fn seed(
        &self,
        manifest: Vec<u8>,
        full_pack: Vec<u8>,
    ) -> Result<Option<String>, BaleenError> {
        Ok(self
            .inner
            .seed(&manifest, &full_pack)?
            .map(|v| v.to_string()))
    }

    /// Limits the bytes the store holds (none: no limit); returns what was evicted now, as
    /// `package` (the whole package) or `package:previous` (its rollback target). Blocks (disk).
    pub fn set_quota_bytes(&self, quota_bytes: Option<u64>) -> Result<Vec<String>, BaleenError> {
        Ok(self
            .inner
            .set_quota_bytes(quota_bytes)?
            .iter()
            .map(|e| match e {
                crate::quota::Eviction::Previous(p) => format!("{p}:previous"),
                crate::quota::Eviction::Package(p) => p.to_string(),
            })
            .collect())
    }

    /// Checks for updates and installs what the device's `conditions` allow now, in the
    /// planner's order; returns what was installed and, for the rest, why it waits (Wi-Fi,
    /// charge, space, priority, first use, quota). Blocks (network, disk): call from a background
    /// thread.
    pub fn update(&self, conditions: DeviceConditions) -> Result<UpdateReport, BaleenError> {
        Ok(UpdateReport::from(&self.inner.update(&conditions.into())?))
    }

    /// The page of `package` works. Blocks (disk).
    pub fn mark_ready(&self, package_id: String) -> Result<(), BaleenError> {
        Ok(self.inner.mark_ready(&package(&package_id)?)?)
    }

    /// The page of `package` failed: roll back, never install that release again. Blocks (disk).
    pub fn report_failure(&self, package_id: String) -> Result<(), BaleenError> {
        Ok(self.inner.report_failure(&package(&package_id)?)?)
    }

    /// Goes back to the previous release. Blocks (disk).
    pub fn rollback(&self, package_id: String) -> Result<(), BaleenError> {
        Ok(self.inner.rollback(&package(&package_id)?)?)
    }

    /// Call once per app launch; returns packages rolled back for never becoming ready.
    /// Blocks (disk).
    pub fn on_launch(&self) -> Result<Vec<String>, BaleenError> {
        Ok(self
            .inner
            .on_launch()?
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Counts a page open. Never blocks on IO.
    pub fn report_open(&self, url: String, ms_to_first_paint: u64) {
        self.inner.report_open(&url, ms_to_first_paint);
    }

    /// Sends queued reports. Blocks (network).
    pub fn flush_events(&self) -> Result<u64, BaleenError> {
        Ok(self.inner.flush_events()? as u64)
    }

    /// Deletes what no kept release needs; returns bytes freed. Blocks (disk).
    pub fn collect_garbage(&self) -> Result<u64, BaleenError> {
        Ok(self.inner.collect_garbage()?)
    }

    /// Packages on the device, for a debug screen.
    pub fn packages(&self) -> Vec<PackageInfo> {
        self.inner
            .status()
            .packages
            .into_iter()
            .map(|p| PackageInfo {
                package: p.package.to_string(),
                active: p.active.map(|v| v.to_string()),
                previous: p.previous.map(|v| v.to_string()),
                pending: p.pending,
            })
            .collect()
    }
}

#[cfg(feature = "builtin-fetcher")]
pub(crate) fn builtin() -> Result<Arc<dyn Fetcher>, BaleenError> {
    Ok(Arc::new(crate::fetch::builtin::BuiltinFetcher::default()))
}

#[cfg(not(feature = "builtin-fetcher"))]
pub(crate) fn builtin() -> Result<Arc<dyn Fetcher>, BaleenError> {
    Err(other(
        "built without the built-in fetcher: pass a HostFetcher",
    ))
}
