//! Device reports: what happened to releases on devices, and how fast pages opened.
//!
//! A device sends an [`EventBatch`] to `POST /v1/events` when the network allows. Counts only:
//! no URLs, no user data. The server adds them up per release, which gives adoption, failures,
//! rollbacks, the offline-hit rate and the share of opens under one second (秒开率).

use serde::{Deserialize, Serialize};

use crate::canonical::parse_lenient;
use crate::error::{Error, Result};
use crate::{AppId, Channel, PackageId, ReleaseVersion};

/// Most events in one batch.
pub const MAX_EVENTS_PER_BATCH: usize = 1_000;
/// Largest count one event may carry (a day of opens on one device is far below).
pub const MAX_COUNT: u64 = 1_000_000;

/// The upper bounds, in milliseconds, of the buckets opens are counted in by time to first paint
/// ([`Event::paint_ms`]); one more bucket holds the slower opens.
pub const PAINT_MS_BOUNDS: [u64; 10] = [100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000];

/// How many buckets [`Event::paint_ms`] has at most: one per bound and one past the last.
pub const PAINT_BUCKETS: usize = PAINT_MS_BOUNDS.len() + 1;

/// The bucket of an open that painted in `ms`.
pub fn paint_bucket(ms: u64) -> usize {
    PAINT_MS_BOUNDS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(PAINT_MS_BOUNDS.len())
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The release was downloaded, verified and stored.
    Installed,
    /// The release became the one served (pending until the page says it is ready).
    Activated,
    /// The page reported ready: the release passed boot verification.
    Ready,
    /// The release failed on the device (crash, error report, verification).
    Failed,
    /// The device went back to its previous release.
    RolledBack,
    /// Page opens: `count` opens, `offline_hits` of them answered from the device, `under_1s` of
    /// them shown within one second.
    Opens,
}

/// One report about one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The package.
    pub package: PackageId,
    /// The release.
    pub version: ReleaseVersion,
    /// What happened.
    pub kind: EventKind,
    /// How many times (1 for state changes; the number of opens for [`EventKind::Opens`]).
    #[serde(default = "one")]
    pub count: u64,
    /// For opens: how many were served from the device's store.
    #[serde(default)]
    pub offline_hits: u64,
    /// For opens: how many showed the page within one second.
    #[serde(default)]
    pub under_1s: u64,
    /// For opens: how many painted within each bucket of [`PAINT_MS_BOUNDS`] (the first up to
    /// 100 ms, …, the last over 5 s); trailing empty buckets may be left out, and devices older
    /// than this field send none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paint_ms: Vec<u64>,
}

fn one() -> u64 {
    1
}

/// Longest device id a batch may carry, in characters (as JSON Schema's `maxLength` counts).
pub const MAX_DEVICE_ID_CHARS: usize = 128;

/// What a device sends in one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The host app.
    pub app: AppId,
    /// The channel the device follows.
    pub channel: Channel,
    /// The app's ingest key (`bik_…`: public, shipped in the app, rotatable). Optional in the
    /// format so that a server can answer a batch without one with a clear refusal rather than
    /// a schema error; servers refuse batches without a key they know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_key: Option<String>,
    /// The installation's stable id: the server counts devices, not events, so that one
    /// device reporting a failure a million times is one failing device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The reports.
    pub events: Vec<Event>,
}

impl EventBatch {
    /// Checks the rules: a device id of 1 to [`MAX_DEVICE_ID_CHARS`] characters when present, 1 to
    /// [`MAX_EVENTS_PER_BATCH`] events, counts of 1 to [`MAX_COUNT`],
    /// hits and fast opens only on opens and never more than the opens.
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the event.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: String, reason: &str| Error::InvalidField {
            field,
            reason: reason.to_owned(),
        };
        // Any text: the server keeps only a hash of it.
        if let Some(id) = &self.device_id
            && (id.is_empty() || id.chars().count() > MAX_DEVICE_ID_CHARS)
        {
            return Err(invalid("device_id".into(), "must be 1 to 128 characters"));
        }
        if self.events.is_empty() || self.events.len() > MAX_EVENTS_PER_BATCH {
            return Err(invalid("events".into(), "must hold 1 to 1000 events"));
        }
        for (i, e) in self.events.iter().enumerate() {
            let at = |f: &str| format!("events[{i}].{f}");
            if e.count == 0 || e.count > MAX_COUNT {
                return Err(invalid(at("count"), "must be 1 to 1000000"));
            }
            if e.kind == EventKind::Opens {
                if e.offline_hits > e.count || e.under_1s > e.count {
                    return Err(invalid(at("offline_hits"), "more than the opens counted"));
                }
                if e.paint_ms.len() > PAINT_BUCKETS {
                    return Err(invalid(at("paint_ms"), "has more than 11 buckets"));
                }
                let painted = e
                    .paint_ms
                    .iter()
                    .try_fold(0_u64, |sum, n| sum.checked_add(*n));
                if painted.is_none_or(|p| p > e.count) {
                    return Err(invalid(at("paint_ms"), "counts more opens than the event"));
                }
            } else if e.offline_hits != 0 || e.under_1s != 0 || !e.paint_ms.is_empty() {
                return Err(invalid(
                    at("kind"),
                    "only opens carry offline_hits, under_1s and paint_ms",
                ));
            }
        }
        Ok(())
    }
}

/// Parses and validates an event batch.
///
/// A batch is never signed, so its numbers need not be canonical: a count is a whole number
/// however it is written (`12`, `12.0`), as JSON Schema reads it, and fields this version does
/// not know are ignored whatever they hold, so newer devices can add some. Duplicate keys are
/// refused.
///
/// # Errors
/// [`Error::Json`], [`Error::Schema`] and the errors of [`EventBatch::validate`].
pub fn parse_event_batch(bytes: &[u8]) -> Result<EventBatch> {
    let batch: EventBatch =
        serde_path_to_error::deserialize(parse_lenient(bytes)?).map_err(|e| Error::Schema {
            doc: "events",
            at: e.path().to_string(),
            reason: e.into_inner().to_string(),
        })?;
    batch.validate()?;
    Ok(batch)
}
