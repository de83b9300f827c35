//! The JSON of the admin API and of the public routes that answer in JSON: every request body and
//! query, and every response, as plain serde types shared by the server (`http`) and the
//! `baleen` command (`remote`).
//!
//! These are the wire format, kept apart from the storage rows of [`crate::meta_store`]: a
//! column can be added or renamed without changing what clients see, and the other way round.
//! `docs/openapi.json` documents each type under the schema name given in its doc comment.

use std::collections::BTreeMap;

use manifests::{AppId, Digest, HostRequirement, PackageId, Prefetch, ReleaseVersion, Timestamp};
use serde::{Deserialize, Serialize};

use crate::channel::Action;
use crate::meta_store;
use crate::retention::Retention;

/// Publish parameters, in the query string of `POST PUBLISH` (the body is the zip).
///
/// Values stay text here: the server parses them, so a bad one is refused with the contract's
/// own error code (`invalid_version`, `invalid_id`, …) rather than as a malformed query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishQuery {
    /// The release's version.
    pub version: String,
    /// Supported host-app versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<String>,
    /// Route prefixes, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<String>,
    /// The entry page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Serve the entry page for unknown paths under the routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spa: Option<bool>,
    /// Release notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The source revision of the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
    /// Promote the release to this channel right away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Make `channel` if the app has no channel of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_channel: Option<bool>,
    /// A release to start from; the upload holds only added and changed files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// With `base`: removed paths, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
    /// Fetch priority for devices, 0 to 255, higher first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// When devices may fetch the release before it is opened: `always`, `wifi_only` or
    /// `on_first_use` ([`manifests::Prefetch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<String>,
}

impl PublishQuery {
    /// The query as `key=value&…`, percent-encoded.
    ///
    /// # Errors
    /// Never for this type's fields; the signature follows the encoder's.
    pub fn encode(&self) -> Result<String, serde_urlencoded::ser::Error> {
        serde_urlencoded::to_string(self)
    }
}

/// A published release as the API lists it (schema `ReleaseRecord`). The signed manifest itself
/// is served at [`manifests::paths::MANIFEST`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    /// The package.
    pub package: PackageId,
    /// The version.
    pub version: ReleaseVersion,
    /// The digest of the signed manifest's signed part.
    pub manifest_digest: Digest,
    /// A digest of files, entry, routes and requirement: two publishes of one version are the
    /// same release exactly when these match.
    pub content_key: Digest,
    /// Supported host-app versions.
    pub requires: HostRequirement,
    /// Sum of file sizes.
    pub size_bytes: u64,
    /// Number of files.
    pub file_count: u64,
    /// Publication time.
    pub created_at: Timestamp,
    /// Who published it (token name).
    pub publisher: String,
    /// Release notes.
    pub notes: String,
    /// Fetch priority for devices, higher first.
    pub priority: u8,
    /// When devices may fetch the release before it is opened.
    pub prefetch: Prefetch,
}

impl From<&meta_store::ReleaseRecord> for ReleaseSummary {
    fn from(r: &meta_store::ReleaseRecord) -> ReleaseSummary {
        ReleaseSummary {
            package: r.package.clone(),
            version: r.version.clone(),
            manifest_digest: r.manifest_digest,
            content_key: r.content_key,
            requires: r.requires.clone(),
            size_bytes: r.size_bytes,
            file_count: r.file_count,
            created_at: r.created_at,
            publisher: r.publisher.clone(),
            notes: r.notes.clone(),
            priority: r.priority,
            prefetch: r.prefetch,
        }
    }
}

/// The answer to a publish (schema `Published`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The release.
    pub release: ReleaseSummary,
    /// False when the same version with the same content existed (a no-op).
    pub created: bool,
    /// The channel's new index sequence, if the publish promoted the release.
    pub sequence: Option<u64>,
}

impl From<&crate::publish::Published> for Published {
    fn from(p: &crate::publish::Published) -> Published {
        Published {
            release: ReleaseSummary::from(&p.release),
            created: p.created,
            sequence: p.sequence,
        }
    }
}

/// The body of `POST CHANNEL_CHANGE` (schema `ChannelChange`): the action, tagged by `action`,
/// plus why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Why, kept in the channel's history.
    #[serde(default)]
    pub reason: String,
    /// Make the channel if the app has no channel of that name (without it, an unknown channel
    /// is refused with the app's channels listed, so a typo does not make a new channel).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_channel: bool,
}

/// Most characters of a reason given for a channel change or a ramp (schema `Reason`).
pub const MAX_REASON_CHARS: usize = 1024;

/// Checks a reason's length.
///
/// # Errors
/// [`Error::BadRequest`] beyond [`MAX_REASON_CHARS`] characters.
pub fn check_reason(reason: &str) -> crate::error::Result<()> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(crate::error::Error::BadRequest(format!(
            "reason longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(())
}

/// The body of `PUT RAMP` (schema `RampRequest`): start a health-gated rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampRequest {
    /// The candidate to ramp; the channel's current candidate when omitted.
    #[serde(default)]
    pub version: Option<manifests::ReleaseVersion>,
    /// How to ramp it.
    pub policy: crate::ramp::RampPolicy,
    /// Why, kept in the history and the audit log.
    #[serde(default)]
    pub reason: String,
}

/// What one channel says of one package (schema `ChannelPackage`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPackage {
    /// The release every device gets.
    pub stable: Option<ReleaseVersion>,
    /// A release being rolled out.
    pub candidate: Option<ReleaseVersion>,
    /// The candidate's rollout in basis points; 0 without a candidate.
    pub rollout_basis_points: u16,
    /// Whether the rollout is paused (its share may not change until resumed).
    pub paused: bool,
}

impl From<&meta_store::ChannelPackage> for ChannelPackage {
    fn from(p: &meta_store::ChannelPackage) -> ChannelPackage {
        ChannelPackage {
            stable: p.stable.clone(),
            candidate: p.candidate.clone(),
            rollout_basis_points: p.rollout_basis_points,
            paused: p.paused,
        }
    }
}

/// The answer to a channel change (schema `ChangeOutcome`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeResult {
    /// The new index's sequence.
    pub sequence: u64,
    /// The package's new state on the channel.
    pub state: ChannelPackage,
}

impl From<&crate::channel::ChangeOutcome> for ChangeResult {
    fn from(o: &crate::channel::ChangeOutcome) -> ChangeResult {
        ChangeResult {
            sequence: o.sequence,
            state: ChannelPackage::from(&o.state),
        }
    }
}

/// Every package's state on an app's channel (schema `ChannelState`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// The sequence of the channel's current index; 0 before the first.
    pub sequence: u64,
    /// Per package.
    pub packages: BTreeMap<PackageId, ChannelPackage>,
}

impl From<&meta_store::ChannelState> for ChannelState {
    fn from(s: &meta_store::ChannelState) -> ChannelState {
        ChannelState {
            sequence: s.sequence,
            packages: s
                .packages
                .iter()
                .map(|(id, p)| (id.clone(), ChannelPackage::from(p)))
                .collect(),
        }
    }
}

/// One change in a channel's history (schema `HistoryEntry`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When.
    pub at: Timestamp,
    /// Which package.
    pub package: PackageId,
    /// What: `promote`, `rollout`, `pause`, `resume`, `complete` or `rollback`.
    pub action: String,
    /// The version before the change (stable or candidate, as the action concerns).
    pub from_version: Option<ReleaseVersion>,
    /// The version after.
    pub to_version: Option<ReleaseVersion>,
    /// The candidate's share after the change; none when no candidate remains.
    pub rollout_basis_points: Option<u16>,
    /// Who (token name).
    pub actor: String,
    /// Why, as the operator said.
    pub reason: String,
    /// The index sequence the change produced.
    pub sequence: u64,
}

impl From<&meta_store::HistoryEntry> for HistoryEntry {
    fn from(h: &meta_store::HistoryEntry) -> HistoryEntry {
        HistoryEntry {
            at: h.at,
            package: h.package.clone(),
            action: h.action.clone(),
            from_version: h.from_version.clone(),
            to_version: h.to_version.clone(),
            rollout_basis_points: h.rollout_basis_points,
            actor: h.actor.clone(),
            reason: h.reason.clone(),
            sequence: h.sequence,
        }
    }
}

/// The query of `GET AUDIT`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Most entries to return (default 100, at most 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One write to the audit log (schema `AuditEntry`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: Timestamp,
    /// Who (token name, or `cli` for local commands).
    pub actor: String,
    /// What (`publish`, `promote`, `token.create`…).
    pub action: String,
    /// On what (`checkout@1.4.0`, `shop/production/checkout`…).
    pub target: String,
    /// Details as JSON text.
    pub detail: String,
}

impl From<&meta_store::AuditEntry> for AuditEntry {
    fn from(a: &meta_store::AuditEntry) -> AuditEntry {
        AuditEntry {
            at: a.at,
            actor: a.actor.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            detail: a.detail.clone(),
        }
    }
}

/// The origins an app's packages may claim routes in (schema `Origins`), as read and declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origins {
    /// `https://host[:port]` or `http://host[:port]`, no path.
    pub origins: Vec<String>,
}

/// A signature of a release's manifest by a release key (schema `ReleaseSignature`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSignature {
    /// The signing key's id.
    pub keyid: String,
    /// 128 hex digits: the Ed25519 signature over the manifest's signed part.
    pub sig: String,
}

/// A signature sent as 128 lowercase hex digits ([`ReleaseSignature::sig`]) as its 64 bytes.
///
/// # Errors
/// [`crate::Error::BadRequest`] for anything else.
pub fn decode_signature(text: &str) -> crate::error::Result<[u8; 64]> {
    manifests::decode_hex::<64>(text)
        .ok_or_else(|| crate::Error::BadRequest("sig must be 128 lowercase hex digits".into()))
}

/// A key list accepted (schema `KeyListAdded`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyListAdded {
    /// The app.
    pub app: String,
    /// The key list's version, now the newest.
    pub version: u64,
}

/// A signature accepted (schema `ReleaseSigned`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSigned {
    /// The manifest's digest (unchanged by signatures).
    pub manifest: String,
    /// The ids of every key that signed it now.
    pub signed_by: Vec<String>,
}

/// A request to make a token (schema `TokenRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// A unique name, recorded as the actor of what the token does.
    pub name: String,
    /// `publish`, `release` or `admin`.
    pub scope: String,
    /// The app a package-bound token acts in (default: the package's app, if it exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The only package the token may act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Seconds from now until the token expires (default: never).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    pub expires_in_secs: Option<u64>,
}

/// A whole number as JSON Schema reads an integer: `1000` and `1000.0` alike; a fraction, a
/// negative number or one beyond `T` (or beyond 2^53 when written with a fraction part) is none.
pub(crate) fn whole<T: TryFrom<u64>>(number: &serde_json::Number) -> Option<T> {
    let n = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=9.0e15).contains(f))
            // Whole and below 2^53: the cast is exact.
            .map(|f| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = f as u64;
                n
            })
    })?;
    T::try_from(n).ok()
}

fn not_whole<E: serde::de::Error>(number: &serde_json::Number) -> E {
    E::custom(format!("{number} is not a whole number in range"))
}

/// Deserializes a whole number as [`whole`] reads it.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>, T: TryFrom<u64>>(
    deserializer: D,
) -> Result<T, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    whole(&number).ok_or_else(|| not_whole(&number))
}

/// Deserializes whole numbers as [`whole`] reads them.
pub(crate) fn whole_numbers<'de, D: serde::Deserializer<'de>, T: TryFrom<u64>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Vec::<serde_json::Number>::deserialize(deserializer)?
        .iter()
        .map(|number| whole(number).ok_or_else(|| not_whole(number)))
        .collect()
}

/// Deserializes an optional whole number as [`whole`] reads it.
fn optional_whole_number<'de, D: serde::Deserializer<'de>, T: TryFrom<u64>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        Some(number) => whole(&number).map(Some).ok_or_else(|| not_whole(&number)),
        None => Ok(None),
    }
}

/// What is known of a token; never its secret (schema `TokenSummary`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSummary {
    /// Its name.
    pub name: String,
    /// `publish`, `release` or `admin`.
    pub scope: String,
    /// The app it is bound to.
    pub app: Option<AppId>,
    /// The package it is bound to.
    pub package: Option<PackageId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// When it was last accepted (to the minute).
    pub last_used_at: Option<Timestamp>,
    /// `active`, `expired` or `revoked`, as of the answer.
    pub state: String,
}

impl TokenSummary {
    /// The summary of `token` as of `at`.
    pub fn of(token: &meta_store::TokenRecord, at: Timestamp) -> TokenSummary {
        let state = if token.revoked_at.is_some() {
            "revoked"
        } else if crate::auth::refusal(token, at).is_some() {
            "expired"
        } else {
            "active"
        };
        TokenSummary {
            name: token.name.clone(),
            scope: token.scope.as_str().to_owned(),
            app: token.app.clone(),
            package: token.package.clone(),
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            last_used_at: token.last_used_at,
            state: state.to_owned(),
        }
    }
}

/// A token just made (schema `NewToken`): the secret is shown only in this answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    /// The secret, `baleen_…`.
    pub token: String,
    /// The token as stored.
    #[serde(flatten)]
    pub summary: TokenSummary,
}

/// One release's figures on a channel as devices reported them, with shares (schema
/// `ReleaseReport`). A share is none while its denominator is 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleaseReport {
    /// The package.
    pub package: Option<PackageId>,
    /// The release.
    pub version: Option<ReleaseVersion>,
    /// Installs reported.
    pub installed: u64,
    /// Activations reported.
    pub activated: u64,
    /// Boot verifications passed.
    pub ready: u64,
    /// Failures reported.
    pub failed: u64,
    /// Rollbacks on devices reported.
    pub rolled_back: u64,
    /// Page opens.
    pub opens: u64,
    /// Opens answered from the device.
    pub offline_hits: u64,
    /// Opens shown within one second.
    pub under_1s: u64,
    /// `offline_hits / opens`.
    pub offline_hit_rate: Option<f64>,
    /// `under_1s / opens`: the share of opens shown within one second.
    pub under_1s_rate: Option<f64>,
    /// `failed / activated`.
    pub failure_rate: Option<f64>,
    /// The 95 % Wilson interval of the failed-boot rate, `[low, high]`, in devices (failing
    /// ones among those that activated): how far the true rate may be from `failure_rate`
    /// with this many devices. None with no device.
    pub failure_rate_interval: Option<[f64; 2]>,
    /// Opens counted by time to first paint, per bucket of `manifests::PAINT_MS_BOUNDS` (up to
    /// 100 ms, …, over 5 s), from devices that report it.
    pub paint_ms: Vec<u64>,
    /// The median time to first paint in milliseconds, estimated from `paint_ms` (linear within
    /// a bucket; 5 000 for one past the last bound). None without paint times.
    pub open_ms_median: Option<u64>,
    /// The 90th percentile of the time to first paint, estimated the same way.
    pub open_ms_p90: Option<u64>,
}

/// The `q` quantile (0 to 1) of opens counted per paint-time bucket, in milliseconds: linear
/// within the bucket it falls in, the last bound for one past it. None when nothing is counted.
pub fn paint_quantile(paints: &[u64], q: f64) -> Option<u64> {
    let total: u64 = paints.iter().sum();
    if total == 0 {
        return None;
    }
    let target = q * total as f64;
    let mut below = 0_u64;
    let bounds = manifests::PAINT_MS_BOUNDS;
    for (i, n) in paints.iter().enumerate() {
        if *n > 0 && (below + n) as f64 >= target {
            let Some(high) = bounds.get(i) else {
                return bounds.last().copied();
            };
            let low = if i == 0 { 0 } else { bounds[i - 1] };
            let within = (target - below as f64) / *n as f64;
            return Some(low + ((high - low) as f64 * within).round() as u64);
        }
        below += n;
    }
    bounds.last().copied()
}

impl From<&meta_store::ReleaseStats> for ReleaseReport {
    fn from(s: &meta_store::ReleaseStats) -> ReleaseReport {
        let share = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        ReleaseReport {
            package: s.package.clone(),
            version: s.version.clone(),
            installed: s.installed,
            activated: s.activated,
            ready: s.ready,
            failed: s.failed,
            rolled_back: s.rolled_back,
            opens: s.opens,
            offline_hits: s.offline_hits,
            under_1s: s.under_1s,
            offline_hit_rate: share(s.offline_hits, s.opens),
            under_1s_rate: share(s.under_1s, s.opens),
            failure_rate: share(s.failed, s.activated),
            failure_rate_interval: {
                let health = crate::ramp::Health {
                    activated: s.activated,
                    failed: s.failed,
                };
                (health.devices() > 0).then(|| {
                    let (low, high) = health.wilson(crate::ramp::Z_95);
                    [low, high]
                })
            },
            paint_ms: {
                let used = s.paint_ms.iter().rposition(|n| *n > 0).map_or(0, |i| i + 1);
                s.paint_ms[..used].to_vec()
            },
            open_ms_median: paint_quantile(&s.paint_ms, 0.5),
            open_ms_p90: paint_quantile(&s.paint_ms, 0.9),
        }
    }
}

/// The answer to a device's event batch (schema `Accepted`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Events counted (a state a device reported before is counted once; opens past a
    /// device's daily share are not added).
    pub accepted: usize,
    /// Events refused, each listed in `refused` (not counted).
    pub ignored: usize,
    /// Why each refused event was refused; the device drops them rather than send them again.
    #[serde(default)]
    pub refused: Vec<RefusedEvent>,
}

/// One event of an accepted batch that was not counted (schema `RefusedEvent`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedEvent {
    /// Its place in the batch's `events`, from 0.
    pub index: usize,
    /// `unknown_release` (the package is not the app's, or the release does not exist, or was
    /// collected).
    pub code: String,
    /// What is unknown.
    pub message: String,
}

/// A request to make an ingest key (schema `IngestKeyRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestKeyRequest {
    /// A name unique in the app, such as the app version that ships it (`android-5.3`).
    pub name: String,
}

/// What is known of an ingest key (schema `IngestKeySummary`); the key itself is shown once,
/// when it is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestKeySummary {
    /// The app it reports for.
    pub app: AppId,
    /// Its name.
    pub name: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// `active` or `revoked`.
    pub state: String,
}

impl IngestKeySummary {
    /// The summary of `key`.
    pub fn of(key: &meta_store::IngestKeyRecord) -> IngestKeySummary {
        IngestKeySummary {
            app: key.app.clone(),
            name: key.name.clone(),
            created_at: key.created_at,
            revoked_at: key.revoked_at,
            state: if key.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            }
            .to_owned(),
        }
    }
}

/// A new ingest key (schema `NewIngestKey`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIngestKey {
    /// The key, `bik_…`, to ship in the app's configuration.
    pub key: String,
    /// The key as stored.
    #[serde(flatten)]
    pub summary: IngestKeySummary,
}

/// The body of `POST GC` (schema `GcRequest`): a dry run or not, and the server's retention
/// policy with any of its values replaced for this collection. Unknown fields are refused, so
/// that a misspelt `dry_run` never turns a dry run into a real one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Only say what would go; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Replaces [`Retention::max_age_secs`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    pub max_age_secs: Option<u64>,
    /// Replaces [`Retention::dev_max_age_secs`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    pub dev_max_age_secs: Option<u64>,
    /// Replaces [`Retention::history_depth`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    pub history_depth: Option<u64>,
    /// Replaces [`Retention::keep_last`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    pub keep_last: Option<u64>,
}

impl GcRequest {
    /// `server`'s policy with this request's values in place of its own.
    pub fn policy(&self, server: Retention) -> Retention {
        Retention {
            max_age_secs: self.max_age_secs.unwrap_or(server.max_age_secs),
            dev_max_age_secs: self.dev_max_age_secs.unwrap_or(server.dev_max_age_secs),
            history_depth: self.history_depth.unwrap_or(server.history_depth),
            keep_last: self.keep_last.unwrap_or(server.keep_last),
        }
    }
}

/// What a collection removed, or would remove (schema `GcReport`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Nothing was changed: the figures say what would go.
    pub dry_run: bool,
    /// The policy applied.
    pub policy: Retention,
    /// The releases removed, by package and version.
    pub releases: Vec<CollectedRelease>,
    /// How many releases stay.
    pub releases_kept: u64,
    /// How many built packs were removed with their releases.
    pub packs: u64,
    /// How many stored blobs (files and packs) were removed because nothing refers to them.
    pub blobs: u64,
    /// The bytes they took, precompressed copies included.
    pub blob_bytes: u64,
}

/// A release a collection removed (schema `CollectedRelease`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectedRelease {
    /// The package.
    pub package: PackageId,
    /// The version.
    pub version: ReleaseVersion,
    /// When it was published.
    pub created_at: Timestamp,
    /// When a channel last held it; none if no channel ever did.
    pub last_on_channel_at: Option<Timestamp>,
    /// Sum of its file sizes (shared files included).
    pub size_bytes: u64,
    /// Number of files.
    pub file_count: u64,
    /// Whether it is a dev build, held to the shorter maximum age.
    pub dev_build: bool,
}

impl From<&crate::gc::Collected> for GcReport {
    fn from(c: &crate::gc::Collected) -> GcReport {
        GcReport {
            dry_run: c.dry_run,
            policy: c.policy,
            releases: c
                .releases
                .iter()
                .map(|e| CollectedRelease {
                    package: e.package.clone(),
                    version: e.version.clone(),
                    created_at: e.created_at,
                    last_on_channel_at: e.last_on_channel_at,
                    size_bytes: e.size_bytes,
                    file_count: e.file_count,
                    dev_build: e.dev_build,
                })
                .collect(),
            releases_kept: c.releases_kept as u64,
            packs: c.packs as u64,
            blobs: c.blobs,
            blob_bytes: c.blob_bytes,
        }
    }
}

/// Every error answer (schema `Error`): `{"error":{"code":…,"message":…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable snake_case code, for programs.
    pub code: String,
    /// What was wrong and where, for people.
    pub message: String,
}

#[cfg(test)]
mod tests;
