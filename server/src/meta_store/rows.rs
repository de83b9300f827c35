//! What the SQL engines (SQLite, PostgreSQL) store in text columns and decide from their rows,
//! written once: route ownership, the releases a channel row names, the routes and blobs of a
//! stored manifest.

use std::collections::BTreeSet;

use manifests::{AppId, Digest, PackageEntry, UrlPrefix};

use super::{PackageChange, ReleaseRecord};
use crate::error::{Error, Result};
use crate::ramp::RampRecord;

/// The route prefixes a stored signed manifest lists.
pub(crate) fn manifest_routes(manifest: &[u8]) -> manifests::Result<Vec<UrlPrefix>> {
    Ok(stored_release(manifest)?
        .routes
        .into_iter()
        .map(|r| r.prefix)
        .collect())
}

/// The blobs a stored signed manifest lists, each once.
pub(crate) fn manifest_blobs(manifest: &[u8]) -> manifests::Result<BTreeSet<Digest>> {
    Ok(stored_release(manifest)?
        .files
        .values()
        .map(|f| f.sha256)
        .collect())
}

/// The release a stored signed manifest holds (its signatures were checked when it was stored).
pub(crate) fn stored_release(manifest: &[u8]) -> manifests::Result<manifests::Release> {
    let envelope = manifests::parse_strict(manifest)?;
    let signed = envelope.get("signed").cloned().unwrap_or_default();
    manifests::parse_release_unverified(&manifests::to_canonical_bytes(&signed)?)
}

/// A manifest whose blobs must be known before any blob is removed, unreadable: the collection
/// stops rather than guess.
pub(crate) fn unreadable_blobs(package: &str, version: &str, e: manifests::Error) -> Error {
    Error::Internal(format!(
        "release {package}@{version}: stored manifest unreadable ({e}); its blobs are unknown, \
         so no blob is removed"
    ))
}

/// The versions a package's row on a channel names: stable, candidate and its index entry's.
pub(crate) fn named_versions(
    stable: Option<String>,
    candidate: Option<String>,
    entry: Option<String>,
) -> Result<BTreeSet<String>> {
    let mut out: BTreeSet<String> = stable.into_iter().chain(candidate).collect();
    if let Some(text) = entry {
        let entry: PackageEntry = serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("stored index entry {text:.80}: {e}")))?;
        out.extend(entry.releases().map(|r| r.version.to_string()));
    }
    Ok(out)
}

/// The versions a channel change names: a commit stores it only if every one exists (a
/// collection may have removed one since the change was decided).
pub(crate) fn versions_named_by(change: &PackageChange) -> BTreeSet<String> {
    let state = &change.state;
    let mut named: BTreeSet<String> = state
        .stable
        .iter()
        .chain(&state.candidate)
        .map(ToString::to_string)
        .collect();
    if let Some(entry) = &change.entry {
        named.extend(entry.releases().map(|r| r.version.to_string()));
    }
    named
}

/// Routes as stored: a JSON list of prefixes.
pub(crate) fn routes_json(routes: &[UrlPrefix]) -> String {
    let list: Vec<&str> = routes.iter().map(UrlPrefix::as_str).collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// Reads stored routes.
pub(crate) fn parse_routes(text: &str) -> Result<Vec<UrlPrefix>> {
    let list: Vec<String> = serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("stored routes {text:?}: {e}")))?;
    Ok(list
        .iter()
        .map(|r| UrlPrefix::parse(r))
        .collect::<manifests::Result<_>>()?)
}

/// Origins as stored: a JSON list.
pub(crate) fn origins_json(origins: &[String]) -> Result<String> {
    serde_json::to_string(origins).map_err(|e| Error::Internal(e.to_string()))
}

/// Reads stored origins.
pub(crate) fn parse_origins(app: &AppId, text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("stored origins of app {app}: {e}")))
}

/// The origins an app's first release declares: those of its routes.
pub(crate) fn declared_by(release: &ReleaseRecord) -> Vec<String> {
    let set: BTreeSet<String> = release
        .routes
        .iter()
        .map(|r| r.origin().to_owned())
        .collect();
    set.into_iter().collect()
}

/// Route ownership: refuses a route of `release` outside `origins`, or overlapping a route of
/// another package of the app (`others`: its owner and stored routes, per release).
pub(crate) fn check_routes(
    app: &AppId,
    release: &ReleaseRecord,
    origins: &[String],
    others: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    if let Some(outside) = release
        .routes
        .iter()
        .find(|r| !origins.iter().any(|o| o == r.origin()))
    {
        return Err(Error::RouteOutsideOrigins {
            route: outside.to_string(),
            app: app.to_string(),
            origins: origins.join(", "),
        });
    }
    for (owner, routes) in others {
        for taken in parse_routes(&routes)? {
            if let Some(route) = release.routes.iter().find(|r| r.overlaps(&taken)) {
                return Err(Error::RouteTaken {
                    route: route.to_string(),
                    taken: taken.to_string(),
                    owner,
                });
            }
        }
    }
    Ok(())
}

/// Refuses new origins that would leave a stored release's route outside them (`releases`:
/// package, version and stored routes).
pub(crate) fn check_new_origins(
    app: &AppId,
    origins: &[String],
    releases: impl IntoIterator<Item = (String, String, String)>,
) -> Result<()> {
    for (package, version, routes) in releases {
        if let Some(route) = parse_routes(&routes)?
            .into_iter()
            .find(|r| !origins.iter().any(|o| o == r.origin()))
        {
            return Err(Error::Conflict(format!(
                "release {package}@{version} of app {app} has route {route}, outside the new \
                 origins; keep its origin"
            )));
        }
    }
    Ok(())
}

/// An index entry as stored: JSON.
pub(crate) fn entry_json(entry: &PackageEntry) -> Result<String> {
    serde_json::to_string(entry)
        .map_err(|e| Error::Internal(format!("index entry does not serialise: {e}")))
}

/// What a device's opens row holds: the day (since the epoch) its counts are of, and the opens,
/// offline hits and fast opens counted for that day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DayOpens {
    pub day: u64,
    pub opens: u64,
    pub offline_hits: u64,
    pub under_1s: u64,
}

/// Adds `report`'s opens to a device's row (`stored`, none for its first) on `day`, bounded by
/// [`super::MAX_OPENS_PER_DEVICE_DAY`]: returns the row to store and what the release's figures
/// gain. A row of an earlier day starts again from zero. Hits and fast opens never exceed the
/// opens counted.
pub(crate) fn capped_opens(
    stored: Option<DayOpens>,
    day: u64,
    report: &super::DeviceReport,
) -> (DayOpens, DayOpens) {
    let mut row = match stored {
        Some(row) if row.day == day => row,
        _ => DayOpens {
            day,
            ..DayOpens::default()
        },
    };
    let opens = report
        .opens
        .min(super::MAX_OPENS_PER_DEVICE_DAY.saturating_sub(row.opens));
    let added = DayOpens {
        day,
        opens,
        offline_hits: report.offline_hits.min(opens),
        under_1s: report.under_1s.min(opens),
    };
    row.opens += added.opens;
    row.offline_hits += added.offline_hits;
    row.under_1s += added.under_1s;
    (row, added)
}

/// The figures of `release_days` that a release's totals sum: the states (devices, each once per
/// release) and the opens by paint-time bucket, as an SQL list (the opens, hits and fast opens
/// have their totals in `release_stats`).
pub(crate) const COUNTED_FIGURES: &str = "'installed', 'activated', 'ready', 'failed', \
     'rolled_back', 'paint_0', 'paint_1', 'paint_2', 'paint_3', 'paint_4', 'paint_5', 'paint_6', \
     'paint_7', 'paint_8', 'paint_9', 'paint_10'";

/// The `release_days` figure of paint-time bucket `i`.
pub(crate) fn paint_figure(i: usize) -> String {
    format!("paint_{i}")
}

/// `paints` (opens by paint-time bucket) cut down to `counted` opens when the opens were capped,
/// each bucket in proportion, so that a device's share of the figures stays bounded.
pub(crate) fn capped_paints(
    paints: &[u64; manifests::PAINT_BUCKETS],
    counted: u64,
) -> [u64; manifests::PAINT_BUCKETS] {
    let total: u64 = paints.iter().sum();
    if total <= counted {
        return *paints;
    }
    paints.map(|n| (u128::from(n) * u128::from(counted) / u128::from(total)) as u64)
}

/// Adds distinct-device counts (`(package, version, state, devices)`, as the engines read them
/// from `release_devices`) to the event counters read from `release_stats`, and sorts the
/// result as both engines answer it.
pub(crate) fn add_device_counts(
    stats: &mut Vec<super::ReleaseStats>,
    counts: Vec<(manifests::PackageId, manifests::ReleaseVersion, String, u64)>,
) {
    for (package, version, state, devices) in counts {
        let at = match stats.iter().position(|s| {
            s.package.as_ref() == Some(&package) && s.version.as_ref() == Some(&version)
        }) {
            Some(at) => at,
            None => {
                stats.push(super::ReleaseStats {
                    package: Some(package),
                    version: Some(version),
                    ..super::ReleaseStats::default()
                });
                stats.len() - 1
            }
        };
        let s = &mut stats[at];
        match state.as_str() {
            "installed" => s.installed += devices,
            "activated" => s.activated += devices,
            "ready" => s.ready += devices,
            "failed" => s.failed += devices,
            "rolled_back" => s.rolled_back += devices,
            other => {
                if let Some(i) = other
                    .strip_prefix("paint_")
                    .and_then(|i| i.parse::<usize>().ok())
                    .filter(|i| *i < manifests::PAINT_BUCKETS)
                {
                    s.paint_ms[i] += devices;
                }
            }
        }
    }
    stats.sort_by(|a, b| (&a.package, &b.version).cmp(&(&b.package, &a.version)));
}

/// A ramp as its row's `record` text (JSON).
pub(crate) fn ramp_text(ramp: &RampRecord) -> Result<String> {
    serde_json::to_string(ramp).map_err(|e| Error::Internal(format!("encoding a ramp: {e}")))
}

/// The ramp a row's `record` text holds.
pub(crate) fn ramp_of(text: &str) -> Result<RampRecord> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("a stored ramp is unreadable: {e}")))
}

/// A package's channel state as a history row's `before_state` text (JSON).
pub(crate) fn state_text(state: &super::ChannelPackage) -> Result<String> {
    serde_json::to_string(state)
        .map_err(|e| Error::Internal(format!("encoding a channel state: {e}")))
}

/// The channel state a history row's `before_state` text holds.
pub(crate) fn state_of(text: &str) -> Result<super::ChannelPackage> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("a stored channel state is unreadable: {e}")))
}
