//! The URL paths of the HTTP API, defined once: the server's router uses the patterns, the device
//! library and the `baleen` command build requests with the functions.
//!
//! Patterns use `{param}` placeholders, axum's syntax and also OpenAPI's. The builders take parsed
//! identifiers, and every identifier's grammar allows only characters that are safe in a URL path
//! segment (names are `a-z 0-9 . _ -`, digests lowercase hex, versions semver without build
//! metadata), so nothing is percent-encoded and a built path always matches its pattern.

use std::fmt;

use crate::error::{Error, Result, excerpt};
use crate::{AppId, Channel, Digest, PackageId, ReleaseVersion};

/// `GET`: the signed index of an app's channel.
pub const INDEX: &str = "/v1/apps/{app}/channels/{channel}/index";
/// `GET`: the signed delta from the index at sequence `{from}` to the current one
/// ([`crate::IndexDelta`]); `404` with code `delta_unavailable` when the server cannot tell what
/// changed since then (the device fetches the whole index instead).
pub const INDEX_DELTA: &str = "/v1/apps/{app}/channels/{channel}/index/delta/{from}";
/// `GET`: the chain of an app's signed key lists ([`crate::KeyList`]), oldest first, as a JSON
/// array.
pub const KEYS: &str = "/v1/apps/{app}/keys";
/// The response header of an index or index delta naming the version of the app's key list it
/// was signed under: a device holding an older list fetches [`KEYS`]. A hint only: what the
/// device fetches is verified from its pinned root.
pub const KEYS_HEADER: &str = "baleen-keys";
/// `POST`: the next version of an app's key list, signed by its old and new root keys.
pub const ADMIN_KEYS: &str = "/v1/admin/apps/{app}/keys";
/// `POST`: a signature by a release key added to a published release's manifest.
pub const RELEASE_SIGNATURES: &str =
    "/v1/admin/apps/{app}/packages/{package}/releases/{version}/signatures";
/// `GET`: a signed release manifest by digest.
pub const MANIFEST: &str = "/v1/manifests/{digest}";
/// `GET`: the signed manifest `{digest}` as a [`crate::ReleaseDelta`] from the manifest `{from}`
/// the device holds; `404` with code `delta_unavailable` when the server does not know `{from}`
/// or it belongs to another package (the device fetches the whole manifest instead).
pub const MANIFEST_DELTA: &str = "/v1/manifests/{digest}/delta/{from}";
/// `GET`: a blob by digest.
pub const BLOB: &str = "/v1/blobs/{digest}";
/// `GET`: a full (`{to}.zip`) or diff (`{from}..{to}.zip`) pack; `{name}` is a [`PackName`]
/// with its container's suffix ([`PackFormat`]: `.zip`, or `.bpk` for the compact container).
pub const PACK: &str = "/v1/packs/{package}/{name}";
/// `POST`: device reports (installs, failures, rollbacks, page opens).
pub const EVENTS: &str = "/v1/events";
/// `GET`: liveness.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// `GET`: the API's own OpenAPI document (`docs/openapi.json`).
pub const OPENAPI: &str = "/openapi.json";
/// `POST`: publish a zip as a release.
pub const PUBLISH: &str = "/v1/admin/apps/{app}/packages/{package}/releases";
/// `GET`: a package's releases.
pub const RELEASES: &str = "/v1/admin/packages/{package}/releases";
/// `POST`: a channel change (promote, rollout, pause, resume, complete, rollback).
pub const CHANNEL_CHANGE: &str = "/v1/admin/packages/{package}/channels/{channel}";
/// `GET`: a package's history on a channel.
pub const HISTORY: &str = "/v1/admin/packages/{package}/channels/{channel}/history";
/// `GET`: every package's state on an app's channel.
pub const CHANNEL_STATE: &str = "/v1/admin/apps/{app}/channels/{channel}";
/// `GET`: the audit log.
pub const AUDIT: &str = "/v1/admin/audit";
/// `GET`: the origins an app's packages may claim routes in; `PUT`: declare them.
pub const APP_ORIGINS: &str = "/v1/admin/apps/{app}/origins";
/// `GET`: every token (never a secret); `POST`: make a token.
pub const TOKENS: &str = "/v1/admin/tokens";
/// `DELETE`: revoke a token by name.
pub const TOKEN: &str = "/v1/admin/tokens/{name}";
/// `GET`: an app's ingest keys (never a key); `POST`: make one.
pub const INGEST_KEYS: &str = "/v1/admin/apps/{app}/ingest-keys";
/// `DELETE`: revoke an app's ingest key by name.
pub const INGEST_KEY: &str = "/v1/admin/apps/{app}/ingest-keys/{name}";
/// `GET`: per-release adoption, failures and page-open figures of an app's channel.
pub const STATS: &str = "/v1/admin/apps/{app}/channels/{channel}/stats";
/// `POST`: collect garbage (expired releases, unreferenced blobs and packs), or say what would go.
pub const GC: &str = "/v1/admin/gc";
/// A package's health-gated rollout on a channel: `GET` shows it, `PUT` starts it, `DELETE`
/// stops it.
pub const RAMP: &str = "/v1/admin/packages/{package}/channels/{channel}/ramp";
/// `POST`: evaluate every running ramp now.
pub const RAMPS_EVALUATE: &str = "/v1/admin/ramps/evaluate";

/// The path of the signed index of `app` on `channel` ([`INDEX`]).
pub fn index_path(app: &AppId, channel: &Channel) -> String {
    format!("/v1/apps/{app}/channels/{channel}/index")
}

/// The path of the key chain of `app` ([`KEYS`]).
pub fn keys_path(app: &AppId) -> String {
    format!("/v1/apps/{app}/keys")
}

/// The path where the next key list of `app` is posted ([`ADMIN_KEYS`]).
pub fn admin_keys_path(app: &AppId) -> String {
    format!("/v1/admin/apps/{app}/keys")
}

/// The path where a signature of a release's manifest is posted ([`RELEASE_SIGNATURES`]).
pub fn release_signatures_path(
    app: &AppId,
    package: &PackageId,
    version: &ReleaseVersion,
) -> String {
    format!("/v1/admin/apps/{app}/packages/{package}/releases/{version}/signatures")
}

/// The path of the origins of `app` ([`APP_ORIGINS`]).
pub fn app_origins_path(app: &AppId) -> String {
    format!("/v1/admin/apps/{app}/origins")
}

/// The path of an app's ingest keys ([`INGEST_KEYS`]).
pub fn ingest_keys_path(app: &AppId) -> String {
    format!("/v1/admin/apps/{app}/ingest-keys")
}

/// The path of `app`'s ingest key named `name` ([`INGEST_KEY`]), its name percent-encoded.
pub fn ingest_key_path(app: &AppId, name: &str) -> String {
    encoded(format!("/v1/admin/apps/{app}/ingest-keys/"), name)
}

/// The path of the token named `name` ([`TOKEN`]), its name percent-encoded (token names are
/// free text).
pub fn token_path(name: &str) -> String {
    encoded(String::from("/v1/admin/tokens/"), name)
}

fn encoded(mut path: String, name: &str) -> String {
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path
}

/// The path of the delta from the index at sequence `from` of `app` on `channel`
/// ([`INDEX_DELTA`]).
pub fn index_delta_path(app: &AppId, channel: &Channel, from: u64) -> String {
    format!("/v1/apps/{app}/channels/{channel}/index/delta/{from}")
}

/// The path of the signed manifest whose signed part has this digest ([`MANIFEST`]).
pub fn manifest_path(digest: &Digest) -> String {
    format!("/v1/manifests/{digest}")
}

/// The path of the manifest `digest` as a delta from the manifest `from` ([`MANIFEST_DELTA`]).
pub fn manifest_delta_path(digest: &Digest, from: &Digest) -> String {
    format!("/v1/manifests/{digest}/delta/{from}")
}

/// The path of a blob ([`BLOB`]).
pub fn blob_path(digest: &Digest) -> String {
    format!("/v1/blobs/{digest}")
}

/// The path of a pack of `package` ([`PACK`]).
pub fn pack_path(package: &PackageId, name: &PackName) -> String {
    format!("/v1/packs/{package}/{name}")
}

/// The path of the full pack of `package` at `to`: every blob of the release.
pub fn full_pack_path(package: &PackageId, to: &ReleaseVersion) -> String {
    pack_path(package, &PackName::Full { to: to.clone() })
}

/// The path of the diff pack of `package` from `from` to `to`: the blobs `to` adds, some as
/// patches against blobs of `from`.
pub fn diff_pack_path(package: &PackageId, from: &ReleaseVersion, to: &ReleaseVersion) -> String {
    pack_path(
        package,
        &PackName::Diff {
            from: from.clone(),
            to: to.clone(),
        },
    )
}

/// The path of the compact pack (`.bpk`) of `package` called `name`: the container devices ask
/// for (the same frames as the zip pack, without `pack.json` and zip headers).
pub fn compact_pack_path(package: &PackageId, name: &PackName) -> String {
    format!("/v1/packs/{package}/{}", name.file(PackFormat::Compact))
}

/// The path a zip is published to as a new release of `package` in `app` ([`PUBLISH`]).
pub fn publish_path(app: &AppId, package: &PackageId) -> String {
    format!("/v1/admin/apps/{app}/packages/{package}/releases")
}

/// The path of `package`'s release list ([`RELEASES`]).
pub fn releases_path(package: &PackageId) -> String {
    format!("/v1/admin/packages/{package}/releases")
}

/// The path a change of `package` on `channel` is posted to ([`CHANNEL_CHANGE`]).
pub fn channel_change_path(package: &PackageId, channel: &Channel) -> String {
    format!("/v1/admin/packages/{package}/channels/{channel}")
}

/// The path of `package`'s ramp on `channel` ([`RAMP`]).
pub fn ramp_path(package: &PackageId, channel: &Channel) -> String {
    format!("/v1/admin/packages/{package}/channels/{channel}/ramp")
}

/// The path of `package`'s history on `channel` ([`HISTORY`]).
pub fn history_path(package: &PackageId, channel: &Channel) -> String {
    format!("/v1/admin/packages/{package}/channels/{channel}/history")
}

/// The path of every package's state on an app's channel ([`CHANNEL_STATE`]).
pub fn channel_state_path(app: &AppId, channel: &Channel) -> String {
    format!("/v1/admin/apps/{app}/channels/{channel}")
}

/// The path of the per-release figures of an app's channel ([`STATS`]).
pub fn stats_path(app: &AppId, channel: &Channel) -> String {
    format!("/v1/admin/apps/{app}/channels/{channel}/stats")
}

/// The last segment of a pack's path: which pack of a package it is.
///
/// Exhaustive by definition: a pack holds either a whole release or the difference between two.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PackName {
    /// `{to}.zip`: every blob of release `to`.
    Full {
        /// The release the pack installs.
        to: ReleaseVersion,
    },
    /// `{from}..{to}.zip`: what a device that has `from` lacks of `to`.
    Diff {
        /// The release the device has.
        from: ReleaseVersion,
        /// The release the pack installs.
        to: ReleaseVersion,
    },
}

/// The container of a pack, named by its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PackFormat {
    /// `.zip`: stored entries, `pack.json` naming every blob (format 1, for devices from before
    /// the compact container).
    Zip,
    /// `.bpk`: the compact container (format 2).
    Compact,
}

impl PackFormat {
    /// The suffix naming the container.
    pub fn suffix(self) -> &'static str {
        match self {
            PackFormat::Zip => ".zip",
            PackFormat::Compact => ".bpk",
        }
    }
}

impl PackName {
    /// Parses a pack's file name, `{name}.zip` or `{name}.bpk`: the pack, and its container.
    ///
    /// # Errors
    /// As [`PackName::parse`].
    pub fn parse_file(file: &str) -> Result<(PackName, PackFormat)> {
        match file.strip_suffix(PackFormat::Compact.suffix()) {
            Some(name) => Ok((Self::parse_versions(name)?, PackFormat::Compact)),
            None => Ok((Self::parse(file)?, PackFormat::Zip)),
        }
    }

    /// The file name of this pack in `format`'s container.
    pub fn file(&self, format: PackFormat) -> String {
        match self {
            PackName::Full { to } => format!("{to}{}", format.suffix()),
            PackName::Diff { from, to } => format!("{from}..{to}{}", format.suffix()),
        }
    }

    /// Parses `{to}.zip` or `{from}..{to}.zip`.
    ///
    /// A version never holds `..` (semver identifiers are non-empty), so the first `..` is the
    /// separator; a version may end in `.zip` (`1.0.0-a.zip`), so only the last `.zip` is the
    /// suffix. Whether `from` is older than `to` is the server's question, not the grammar's.
    ///
    /// # Errors
    /// [`Error::InvalidPackName`] without the `.zip` suffix, [`Error::InvalidVersion`] for a
    /// version that does not parse.
    pub fn parse(name: &str) -> Result<PackName> {
        let versions = name
            .strip_suffix(".zip")
            .ok_or_else(|| Error::InvalidPackName {
                name: excerpt(name, 300),
                reason: "expected {to}.zip or {from}..{to}.zip (or .bpk)",
            })?;
        Self::parse_versions(versions)
    }

    fn parse_versions(versions: &str) -> Result<PackName> {
        Ok(match versions.split_once("..") {
            Some((from, to)) => PackName::Diff {
                from: ReleaseVersion::parse(from)?,
                to: ReleaseVersion::parse(to)?,
            },
            None => PackName::Full {
                to: ReleaseVersion::parse(versions)?,
            },
        })
    }

    /// The release the pack installs.
    pub fn to(&self) -> &ReleaseVersion {
        match self {
            PackName::Full { to } | PackName::Diff { to, .. } => to,
        }
    }

    /// The release a diff pack starts from; none for a full pack.
    pub fn from(&self) -> Option<&ReleaseVersion> {
        match self {
            PackName::Full { .. } => None,
            PackName::Diff { from, .. } => Some(from),
        }
    }
}

impl fmt::Display for PackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackName::Full { .. } | PackName::Diff { .. } => {
                f.write_str(&self.file(PackFormat::Zip))
            }
        }
    }
}

impl std::str::FromStr for PackName {
    type Err = Error;
    fn from_str(s: &str) -> Result<PackName> {
        PackName::parse(s)
    }
}

#[cfg(test)]
mod tests;
