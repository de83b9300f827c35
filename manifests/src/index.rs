//! The index: per app and channel, one signed document naming the current release(s) of every
//! package, so that a device asks one question on launch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{
    SignedDocument, check_header, from_large_value, open, sign_value, with_header,
};
use crate::error::{Error, Result};
use crate::{
    AppId, Channel, Digest, HostRequirement, KeyPair, PackageId, ReleaseVersion, Timestamp,
    TrustedKeys,
};

/// The index format this code writes and reads.
pub const INDEX_FORMAT: u64 = 1;
/// A full rollout, in basis points (hundredths of a percent).
pub const FULL_ROLLOUT: u16 = 10_000;
/// Most packages one index may list.
pub const MAX_PACKAGES: usize = 10_000;
/// Most older releases one package entry may list for old host apps.
pub const MAX_OLDER: usize = 64;

/// A release as an index names it: enough for a device to choose it and fetch its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    /// The release's version.
    pub version: ReleaseVersion,
    /// The digest of the release's signed manifest.
    pub manifest: Digest,
    /// The host-app versions that can run it (copied from the manifest).
    pub requires: HostRequirement,
    /// The sum of its file sizes, so a device can plan for free space before fetching.
    pub size_bytes: u64,
}

/// A release being rolled out to part of the devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The candidate release.
    #[serde(flatten)]
    pub release: ReleaseRef,
    /// The share of devices that get it, in basis points: 0 to 10 000 (100 %).
    pub rollout_basis_points: u16,
}

/// When a device may download a package before it is opened, as its publisher chose.
///
/// Written as snake_case text (`"wifi_only"`) and left out of an index entry when it is
/// [`Prefetch::Always`], so indexes of packages without a policy are the bytes they always were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Prefetch {
    /// Whenever the device's conditions allow: what devices did before policies existed.
    #[default]
    Always,
    /// Only over an unmetered network (Wi-Fi).
    WifiOnly,
    /// Never ahead of time: only once the package is opened.
    OnFirstUse,
    /// A policy newer than this code, read from an index a newer server signed.
    ///
    /// It parses, so one package's new policy does not make a device refuse the whole index
    /// and stop updating. A device should treat it as [`Prefetch::OnFirstUse`]: a policy it does
    /// not know may restrict downloads, and fetching on open costs nothing the page would not
    /// cost online. It is never written: [`Index::sign`] refuses it.
    #[serde(other)]
    Unknown,
}

impl Prefetch {
    /// Every policy a publisher may set, as written.
    pub const NAMES: [&'static str; 3] = ["always", "wifi_only", "on_first_use"];

    /// Parses a policy a publisher set: `always`, `wifi_only` or `on_first_use`.
    ///
    /// # Errors
    /// [`Error::InvalidField`] for any other text, including `unknown`.
    pub fn parse(text: &str) -> Result<Prefetch> {
        match text {
            "always" => Ok(Prefetch::Always),
            "wifi_only" => Ok(Prefetch::WifiOnly),
            "on_first_use" => Ok(Prefetch::OnFirstUse),
            _ => Err(Error::InvalidField {
                field: "prefetch".into(),
                reason: format!(
                    "{:?} is not a policy; expected always, wifi_only or on_first_use",
                    crate::error::excerpt(text, 80)
                ),
            }),
        }
    }

    /// The policy as written in an index.
    pub fn as_str(self) -> &'static str {
        match self {
            Prefetch::Always => "always",
            Prefetch::WifiOnly => "wifi_only",
            Prefetch::OnFirstUse => "on_first_use",
            Prefetch::Unknown => "unknown",
        }
    }

    /// Whether this is the default, [`Prefetch::Always`] (left out of an index entry).
    pub fn is_default(&self) -> bool {
        *self == Prefetch::Always
    }
}

impl std::fmt::Display for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Prefetch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Prefetch> {
        Prefetch::parse(s)
    }
}

/// What one channel offers of one package.
///
/// `priority` and `prefetch` are the publisher's, taken from one release: the stable one, or
/// the candidate when there is no stable release. Devices in a rollout therefore follow the
/// stable release's policy until the candidate becomes stable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageEntry {
    /// Fetch order hint for devices: higher first. 0 by default.
    #[serde(default)]
    pub priority: u8,
    /// When devices may fetch the package before it is opened. Left out when
    /// [`Prefetch::Always`].
    #[serde(default, skip_serializing_if = "Prefetch::is_default")]
    pub prefetch: Prefetch,
    /// The release every device gets, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<ReleaseRef>,
    /// A release being rolled out to part of the devices, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Candidate>,
    /// Earlier releases, newest first, for host apps too old for the stable release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub older: Vec<ReleaseRef>,
}

/// The index of one app's channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The host app.
    pub app: AppId,
    /// The channel.
    pub channel: Channel,
    /// Grows by at least one with every change; a device refuses a lower one than it has seen.
    pub sequence: u64,
    /// When the index was signed.
    pub issued_at: Timestamp,
    /// After this, a device does not install new content from this index.
    pub expires_at: Timestamp,
    /// Every package of the app on this channel.
    pub packages: BTreeMap<PackageId, PackageEntry>,
}

impl Index {
    /// Checks the rules beyond field types: sequence ≥ 1, expiry after issue, at most
    /// [`MAX_PACKAGES`] packages; per package at least one release, a rollout within 0..=10 000,
    /// at most [`MAX_OLDER`] older releases listed newest first, and no version listed twice.
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: String, reason: String| Error::InvalidField { field, reason };
        if self.sequence == 0 {
            return Err(invalid("sequence".into(), "must be at least 1".into()));
        }
        if self.expires_at <= self.issued_at {
            return Err(invalid(
                "expires_at".into(),
                format!(
                    "{} is not after issued_at {}",
                    self.expires_at, self.issued_at
                ),
            ));
        }
        if self.packages.len() > MAX_PACKAGES {
            return Err(invalid(
                "packages".into(),
                "more than 10000 packages".into(),
            ));
        }
        for (id, entry) in &self.packages {
            let at = |field: &str| format!("packages.{id}.{field}");
            if entry.stable.is_none() && entry.candidate.is_none() && entry.older.is_empty() {
                return Err(invalid(at("stable"), "the package lists no release".into()));
            }
            if let Some(candidate) = &entry.candidate
                && candidate.rollout_basis_points > FULL_ROLLOUT
            {
                return Err(invalid(
                    at("candidate.rollout_basis_points"),
                    format!("{} is above 10000", candidate.rollout_basis_points),
                ));
            }
            if entry.older.len() > MAX_OLDER {
                return Err(invalid(at("older"), "more than 64 older releases".into()));
            }
            if entry.older.windows(2).any(|w| w[0].version <= w[1].version) {
                return Err(invalid(
                    at("older"),
                    "must be listed newest first, each version once".into(),
                ));
            }
            let mut versions: Vec<&ReleaseVersion> = entry.releases().map(|r| &r.version).collect();
            versions.sort();
            if let Some(pair) = versions.windows(2).find(|w| w[0] == w[1]) {
                return Err(invalid(
                    at("version"),
                    format!("{} is listed twice", pair[0]),
                ));
            }
        }
        Ok(())
    }

    /// The signed part of the index as a JSON value, with its `_type` and `format` header.
    ///
    /// # Errors
    /// As [`Index::validate`], and [`Error::InvalidField`] for a [`Prefetch::Unknown`] policy;
    /// an invalid index is never signed.
    pub fn to_signed_value(&self) -> Result<Value> {
        self.validate()?;
        if let Some(id) = self
            .packages
            .iter()
            .find(|(_, e)| e.prefetch == Prefetch::Unknown)
            .map(|(id, _)| id)
        {
            return Err(Error::InvalidField {
                field: format!("packages.{id}.prefetch"),
                reason: "a policy this code does not know is read, never written".into(),
            });
        }
        let body = serde_json::to_value(self).map_err(|e| Error::NotCanonical {
            at: format!("$ ({e})"),
            reason: "index does not serialise to JSON",
        })?;
        with_header(body, "index", INDEX_FORMAT)
    }

    /// Signs the index with every key in `keys`.
    ///
    /// # Errors
    /// As [`Index::validate`] and [`crate::sign_value`].
    pub fn sign(&self, keys: &[&KeyPair]) -> Result<SignedDocument> {
        sign_value(&self.to_signed_value()?, keys)
    }
}

impl PackageEntry {
    /// Every release the entry names: candidate, stable, then older ones.
    pub fn releases(&self) -> impl Iterator<Item = &ReleaseRef> {
        self.candidate
            .as_ref()
            .map(|c| &c.release)
            .into_iter()
            .chain(self.stable.as_ref())
            .chain(self.older.iter())
    }
}

/// Which index a device expects: the app it is and the channel it follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexScope {
    /// The host app.
    pub app: AppId,
    /// The channel.
    pub channel: Channel,
}

/// An index whose signatures, scope, sequence and expiry were checked.
#[derive(Clone, Debug)]
pub struct VerifiedIndex {
    /// The index.
    pub index: Index,
    /// The sha256 of its signed part.
    pub digest: Digest,
}

/// Parses a signed index and checks, in this order: signatures against `trusted`; that it is an
/// index of this format; its contents; that it is for `scope` (no mix-and-match of another app's
/// or channel's index); that its sequence is not below `highest_seen` (no replay of an old
/// index; an equal sequence is the same index fetched again); and that it has not expired at
/// `now` (no freeze on stale content).
///
/// # Errors
/// Signature errors as [`crate::open`], then [`Error::WrongDocumentType`],
/// [`Error::UnsupportedFormat`], [`Error::Schema`], [`Error::InvalidField`],
/// [`Error::WrongIndex`], [`Error::Replay`] and [`Error::Expired`].
pub fn verify_index(
    bytes: &[u8],
    trusted: &TrustedKeys,
    scope: &IndexScope,
    now: Timestamp,
    highest_seen: u64,
) -> Result<VerifiedIndex> {
    let opened = open(bytes, trusted)?;
    let index = parse_index_value(opened.signed)?;
    check_index(&index, scope, now, highest_seen)?;
    Ok(VerifiedIndex {
        index,
        digest: opened.digest,
    })
}

/// The checks of [`verify_index`] after the signatures and contents, on an index whose
/// signatures were verified before (as a device's stored index): for `scope`, a sequence not
/// below `highest_seen`, unexpired at `now`.
///
/// # Errors
/// [`Error::WrongIndex`], [`Error::Replay`] and [`Error::Expired`].
pub fn check_index(
    index: &Index,
    scope: &IndexScope,
    now: Timestamp,
    highest_seen: u64,
) -> Result<()> {
    let document = Freshness {
        app: &index.app,
        channel: &index.channel,
        sequence: index.sequence,
        expires_at: index.expires_at,
    };
    document.check(scope, now, highest_seen)
}

/// What an index document says of where and when it holds: the same checks for whole indexes and
/// deltas.
pub(crate) struct Freshness<'a> {
    pub(crate) app: &'a AppId,
    pub(crate) channel: &'a Channel,
    pub(crate) sequence: u64,
    pub(crate) expires_at: Timestamp,
}

impl Freshness<'_> {
    /// For `scope`, a sequence not below `highest_seen`, unexpired at `now`, in that order.
    pub(crate) fn check(
        &self,
        scope: &IndexScope,
        now: Timestamp,
        highest_seen: u64,
    ) -> Result<()> {
        if *self.app != scope.app || *self.channel != scope.channel {
            return Err(Error::WrongIndex {
                expected_app: scope.app.to_string(),
                expected_channel: scope.channel.to_string(),
                found_app: self.app.to_string(),
                found_channel: self.channel.to_string(),
            });
        }
        if self.sequence < highest_seen {
            return Err(Error::Replay {
                seen: highest_seen,
                found: self.sequence,
            });
        }
        if self.expires_at <= now {
            return Err(Error::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }
}

/// Reads the signed part of an index without checking signatures, scope, sequence or expiry.
///
/// For tools and fuzzing; a device must use [`verify_index`].
///
/// # Errors
/// As [`verify_index`], less those checks.
pub fn parse_index_unverified(signed: &[u8]) -> Result<Index> {
    parse_index_value(crate::parse_strict(signed)?)
}

fn parse_index_value(signed: Value) -> Result<Index> {
    check_header(&signed, "index", INDEX_FORMAT)?;
    let index: Index = from_large_value(signed, "index")?;
    index.validate()?;
    Ok(index)
}
