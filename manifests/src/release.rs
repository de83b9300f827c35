//! The release manifest: one immutable, signed release of one package.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::envelope::{
    SignedDocument, check_header, check_signatures, from_large_value, open, sign_value, with_header,
};
use crate::error::{Error, Result, excerpt};
use crate::{
    Digest, HostRequirement, KeyPair, PackageId, RelPath, ReleaseVersion, Timestamp, TrustedKeys,
    check_collisions,
};

/// The release manifest format this code writes and reads.
pub const RELEASE_FORMAT: u64 = 1;
/// Most files one release may hold.
pub const MAX_FILES: usize = 100_000;
/// Most route prefixes one release may serve.
pub const MAX_ROUTES: usize = 64;
/// Longest release notes, in bytes.
pub const MAX_NOTES_LEN: usize = 64 * 1024;
/// Longest source revision, in bytes.
pub const MAX_REVISION_LEN: usize = 256;

/// One file of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The sha256 of the file's bytes: the blob that holds them.
    pub sha256: Digest,
    /// The file's length in bytes.
    pub size: u64,
    /// The `Content-Type` the file is served with.
    pub mime: MimeType,
}

/// A URL prefix a package answers for, and its single-page-app fallback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Requests whose URL starts with this prefix are answered from the package.
    pub prefix: UrlPrefix,
    /// The page served for a path under the prefix that names no file (a single-page app's
    /// client-side route); `None` means such a request is a miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<RelPath>,
}

/// A release manifest: what one version of one package holds and how it is served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The package.
    pub package: PackageId,
    /// The release's version, unique within the package.
    pub version: ReleaseVersion,
    /// Every file, by path.
    pub files: BTreeMap<RelPath, FileEntry>,
    /// The page a host opens to show the package.
    pub entry: RelPath,
    /// The URL prefixes the package answers for.
    pub routes: Vec<Route>,
    /// The host-app versions that can run this release.
    pub requires: HostRequirement,
    /// When the release was published.
    pub created_at: Timestamp,
    /// Free-form release notes.
    #[serde(default)]
    pub notes: String,
    /// The source revision (a git commit, a CI build id) the release was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
}

impl Release {
    /// Every blob of the release, each once, in the order of the first path (sorted) that uses
    /// it: the order a pack delivers them in ([`crate::ExpectedPack::order`]).
    pub fn blob_order(&self) -> Vec<Digest> {
        let mut seen = std::collections::HashSet::with_capacity(self.files.len());
        self.files
            .values()
            .map(|f| f.sha256)
            .filter(|d| seen.insert(*d))
            .collect()
    }

    /// Every blob of the release, each once, sorted ([`crate::ExpectedPack::from_blobs`]).
    pub fn sorted_blobs(&self) -> Vec<Digest> {
        let mut blobs: Vec<Digest> = self.files.values().map(|f| f.sha256).collect();
        blobs.sort_unstable();
        blobs.dedup();
        blobs
    }

    /// Checks the rules a release must meet beyond the types of its fields: at least one file and
    /// at most [`MAX_FILES`], no colliding paths, the entry and every fallback among the files,
    /// one to [`MAX_ROUTES`] distinct route prefixes, and bounded notes.
    ///
    /// # Errors
    /// [`Error::InvalidField`] or [`Error::PathCollision`] naming the rule broken.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: String, reason: &str| Error::InvalidField {
            field,
            reason: reason.to_owned(),
        };
        if self.files.is_empty() {
            return Err(invalid("files".into(), "a release holds at least one file"));
        }
        if self.files.len() > MAX_FILES {
            return Err(invalid("files".into(), "more than 100000 files"));
        }
        check_collisions(self.files.keys())?;
        if !self.files.contains_key(&self.entry) {
            return Err(invalid(
                "entry".into(),
                &format!("{:?} is not one of the files", self.entry.as_str()),
            ));
        }
        if self.routes.is_empty() {
            return Err(invalid(
                "routes".into(),
                "a release serves at least one route",
            ));
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(invalid("routes".into(), "more than 64 routes"));
        }
        for (i, route) in self.routes.iter().enumerate() {
            if self.routes[..i].iter().any(|r| r.prefix == route.prefix) {
                return Err(invalid(format!("routes[{i}].prefix"), "listed twice"));
            }
            if let Some(fallback) = &route.fallback
                && !self.files.contains_key(fallback)
            {
                return Err(invalid(
                    format!("routes[{i}].fallback"),
                    &format!("{:?} is not one of the files", fallback.as_str()),
                ));
            }
        }
        if self.notes.len() > MAX_NOTES_LEN {
            return Err(invalid("notes".into(), "longer than 64 KiB"));
        }
        if let Some(rev) = &self.source_revision
            && (rev.is_empty() || rev.len() > MAX_REVISION_LEN || rev.chars().any(char::is_control))
        {
            return Err(invalid(
                "source_revision".into(),
                "must be 1 to 256 bytes without control characters",
            ));
        }
        Ok(())
    }

    /// The sum of all file sizes: what a device stores for this release alone.
    pub fn size_bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// The signed part of the manifest as a JSON value, with its `_type` and `format` header.
    ///
    /// # Errors
    /// As [`Release::validate`]; an invalid release is never signed.
    pub fn to_signed_value(&self) -> Result<Value> {
        self.validate()?;
        let body = serde_json::to_value(self).map_err(|e| Error::NotCanonical {
            at: format!("$ ({e})"),
            reason: "release does not serialise to JSON",
        })?;
        with_header(body, "release", RELEASE_FORMAT)
    }

    /// Signs the manifest with every key in `keys`.
    ///
    /// # Errors
    /// As [`Release::validate`] and [`crate::sign_value`].
    pub fn sign(&self, keys: &[&KeyPair]) -> Result<SignedDocument> {
        sign_value(&self.to_signed_value()?, keys)
    }
}

/// A release manifest whose signatures, digest and contents were checked.
#[derive(Clone, Debug)]
pub struct VerifiedRelease {
    /// The release.
    pub release: Release,
    /// The sha256 of its signed part: the digest an index names.
    pub digest: Digest,
}

/// Parses a signed release manifest, checks its signatures against `trusted`, its digest against
/// `expected` (the digest the index names, when there is one), and its contents.
///
/// # Errors
/// Signature errors as [`crate::open`]; [`Error::DigestMismatch`] if the digest differs;
/// [`Error::WrongDocumentType`] / [`Error::UnsupportedFormat`] / [`Error::Schema`] for a
/// document that is not a release manifest of this format; and the errors of [`Release::validate`].
pub fn verify_release(
    bytes: &[u8],
    trusted: &TrustedKeys,
    expected: Option<&Digest>,
) -> Result<VerifiedRelease> {
    let opened = open(bytes, trusted)?;
    if let Some(expected) = expected
        && *expected != opened.digest
    {
        return Err(Error::DigestMismatch {
            doc: "release manifest",
            expected: *expected,
            actual: opened.digest,
        });
    }
    let release = parse_release_value(opened.signed)?;
    Ok(VerifiedRelease {
        release,
        digest: opened.digest,
    })
}

/// Reads the signed part of a release manifest without checking any signature.
///
/// For tools and fuzzing; a device must use [`verify_release`].
///
/// # Errors
/// As [`verify_release`], less the signature and digest checks.
pub fn parse_release_unverified(signed: &[u8]) -> Result<Release> {
    parse_release_value(crate::parse_strict(signed)?)
}

/// The release of a manifest rebuilt in memory (a release delta's result): its signatures over
/// `message`, the canonical bytes of `signed`, checked as [`verify_release`] checks them, then its
/// contents.
pub(crate) fn verify_rebuilt(
    signed: Value,
    message: &[u8],
    signatures: &[Value],
    trusted: &TrustedKeys,
) -> Result<Release> {
    check_signatures(signatures, message, trusted)?;
    parse_release_value(signed)
}

fn parse_release_value(signed: Value) -> Result<Release> {
    check_header(&signed, "release", RELEASE_FORMAT)?;
    let release: Release = from_large_value(signed, "release")?;
    release.validate()?;
    Ok(release)
}

/// A `Content-Type` value, such as `text/html; charset=utf-8`.
///
/// Printable ASCII only, at most 255 bytes, `type/subtype` with token characters and optional
/// parameters: it goes into response headers on the device, so no line break can hide in it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MimeType(String);

impl MimeType {
    /// Checks a MIME type.
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the problem.
    pub fn parse(text: &str) -> Result<MimeType> {
        let bad = |reason: &str| Error::InvalidField {
            field: format!("mime {:?}", excerpt(text, 80)),
            reason: reason.to_owned(),
        };
        if text.is_empty() || text.len() > 255 {
            return Err(bad("must be 1 to 255 bytes"));
        }
        if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(bad("only printable ASCII is allowed"));
        }
        let essence = text.split(';').next().unwrap_or("");
        let is_token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        match essence.split_once('/') {
            Some((kind, sub)) if is_token(kind) && is_token(sub) => Ok(MimeType(text.to_owned())),
            _ => Err(bad("expected type/subtype")),
        }
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MimeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MimeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MimeType({:?})", self.0)
    }
}

impl Serialize for MimeType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MimeType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MimeType, D::Error> {
        crate::de::parse_str(deserializer, MimeType::parse)
    }
}

/// An absolute `http` or `https` URL prefix ending in `/`, such as `https://m.example.com/checkout/`.
///
/// Lower-case scheme and host, an optional port, a path of plain ASCII characters without `%`,
/// `.` or `..` segments or `//`; no user info, query or fragment. The strict form means a
/// device can match a request against it by plain string comparison.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UrlPrefix(String);

impl UrlPrefix {
    /// Checks a URL prefix.
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the problem.
    pub fn parse(text: &str) -> Result<UrlPrefix> {
        let bad = |reason: &str| Error::InvalidField {
            field: format!("route prefix {:?}", excerpt(text, 120)),
            reason: reason.to_owned(),
        };
        if text.len() > 1024 {
            return Err(bad("longer than 1024 bytes"));
        }
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or_else(|| bad("must start with https:// or http://"))?;
        let slash = rest
            .find('/')
            .ok_or_else(|| bad("must have a path ending in '/'"))?;
        let (authority, path) = rest.split_at(slash);
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !host_ok {
            return Err(bad("host must be lower-case letters, digits, '-' and '.'"));
        }
        if let Some(port) = port {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("port must be 1 to 5 digits"));
            }
            if port.parse::<u32>().map_or(true, |p| p == 0 || p > 65_535) {
                return Err(bad("port must be between 1 and 65535"));
            }
        }
        if !path.ends_with('/') {
            return Err(bad("path must end in '/'"));
        }
        let path_char_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if !path.bytes().all(path_char_ok) {
            return Err(bad(
                "path may hold only letters, digits and -._~!$&'()*+,;=:@/ (no '%', '?', '#')",
            ));
        }
        let inner = path.get(1..path.len() - 1).unwrap_or("");
        if !inner.is_empty()
            && inner
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad("path must not hold empty, '.' or '..' segments"));
        }
        Ok(UrlPrefix(text.to_owned()))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheme (`https` or `http`).
    pub fn scheme(&self) -> &str {
        if self.0.starts_with("https://") {
            "https"
        } else {
            "http"
        }
    }

    /// Everything after `scheme://`: host, optional port and path (`m.example.com/checkout/`).
    pub fn without_scheme(&self) -> &str {
        let skip = self.scheme().len() + 3;
        &self.0[skip..]
    }

    /// The origin: scheme, host and optional port, without a trailing `/`
    /// (`https://m.example.com`).
    pub fn origin(&self) -> &str {
        let skip = self.scheme().len() + 3;
        let slash = self.0[skip..].find('/').map_or(self.0.len(), |i| skip + i);
        &self.0[..slash]
    }

    /// Whether a URL could match both prefixes: one holds the other, segment by segment (both
    /// end in `/`). Devices match without the scheme, so `http://` and `https://` prefixes of the
    /// same host and path overlap too.
    pub fn overlaps(&self, other: &UrlPrefix) -> bool {
        let (a, b) = (self.without_scheme(), other.without_scheme());
        a.starts_with(b) || b.starts_with(a)
    }
}

/// Checks an origin as apps declare them: `https://` or `http://`, a host and an optional port,
/// nothing after (`https://m.example.com`).
///
/// # Errors
/// [`Error::InvalidField`] naming the problem.
pub fn check_origin(text: &str) -> Result<()> {
    let prefix = UrlPrefix::parse(&format!("{text}/")).map_err(|_| Error::InvalidField {
        field: format!("origin {:?}", excerpt(text, 120)),
        reason:
            "must be https:// or http://, a lower-case host and an optional port, nothing after"
                .into(),
    })?;
    if prefix.origin() != text {
        return Err(Error::InvalidField {
            field: format!("origin {:?}", excerpt(text, 120)),
            reason: "must have no path".into(),
        });
    }
    Ok(())
}

impl fmt::Display for UrlPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UrlPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UrlPrefix({:?})", self.0)
    }
}

impl Serialize for UrlPrefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UrlPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<UrlPrefix, D::Error> {
        crate::de::parse_str(deserializer, UrlPrefix::parse)
    }
}
