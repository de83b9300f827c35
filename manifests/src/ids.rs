//! Identifiers and versions: newtypes whose constructors refuse bad input, so that no code further
//! on can hold an invalid one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result, excerpt};

/// Longest package id, app id or channel name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Checks the shared rule for names: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
///
/// Lower case only, so that names are also safe as file names on case-insensitive file systems and
/// as URL path segments without escaping.
fn check_name(kind: &'static str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        Some("must not be empty")
    } else if value.len() > MAX_NAME_LEN {
        Some("longer than 64 bytes")
    } else if !value.as_bytes()[0].is_ascii_lowercase() && !value.as_bytes()[0].is_ascii_digit() {
        Some("must start with a lowercase letter or a digit")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only a-z, 0-9, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidId {
            kind,
            value: excerpt(value, 80),
            reason,
        }),
        None => Ok(()),
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `value` against the name rules.
            ///
            /// # Errors
            #[doc = concat!("[`Error::InvalidId`] naming the rule a bad ", $kind, " breaks.")]
            pub fn parse(value: &str) -> Result<$name> {
                check_name($kind, value)?;
                Ok($name(value.to_owned()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<$name> {
                $name::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                crate::de::parse_str(deserializer, $name::parse)
            }
        }
    };
}

name_type!(
    /// One H5 bundle's id, such as `checkout`.
    PackageId,
    "package id"
);
name_type!(
    /// The host mobile app that embeds packages, such as `shop`.
    AppId,
    "app id"
);
name_type!(
    /// A release channel, such as `production` or `staging`.
    Channel,
    "channel"
);

/// A release's semantic version (`1.4.0`, `2.0.0-rc.1`).
///
/// Build metadata (`+build`) is refused: two versions that differ only there have the same
/// precedence, and a release must be identified by its version alone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseVersion(semver::Version);

impl ReleaseVersion {
    /// Parses a strict semantic version without build metadata.
    ///
    /// # Errors
    /// [`Error::InvalidVersion`] with the parser's reason.
    pub fn parse(text: &str) -> Result<ReleaseVersion> {
        let bad = |reason: String| Error::InvalidVersion {
            kind: "release version",
            value: excerpt(text, 80),
            reason,
        };
        if text.len() > 128 {
            return Err(bad("longer than 128 bytes".to_owned()));
        }
        let version = semver::Version::parse(text).map_err(|e| bad(e.to_string()))?;
        if !version.build.is_empty() {
            return Err(bad("build metadata (+...) is not allowed".to_owned()));
        }
        Ok(ReleaseVersion(version))
    }

    /// The underlying semantic version.
    pub fn semver(&self) -> &semver::Version {
        &self.0
    }
}

impl fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReleaseVersion({})", self.0)
    }
}

impl std::str::FromStr for ReleaseVersion {
    type Err = Error;
    fn from_str(s: &str) -> Result<ReleaseVersion> {
        ReleaseVersion::parse(s)
    }
}

impl Serialize for ReleaseVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ReleaseVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ReleaseVersion, D::Error> {
        crate::de::parse_str(deserializer, ReleaseVersion::parse)
    }
}

/// The version of the host mobile app a device runs.
///
/// App stores allow `5`, `5.2` and `5.2.1`; the missing parts count as zero. A pre-release
/// suffix (`5.3.0-beta.2`) is kept and, as in semver, only matches requirements that name it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct HostVersion(semver::Version);

impl HostVersion {
    /// Parses `MAJOR[.MINOR[.PATCH]][-PRE]`.
    ///
    /// # Errors
    /// [`Error::InvalidVersion`] for anything else (four numeric parts included).
    pub fn parse(text: &str) -> Result<HostVersion> {
        let bad = |reason: String| Error::InvalidVersion {
            kind: "host-app version",
            value: excerpt(text, 80),
            reason,
        };
        if text.is_empty() {
            return Err(bad("empty".to_owned()));
        }
        if text.len() > 128 {
            return Err(bad("longer than 128 bytes".to_owned()));
        }
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let parts = core.split('.').count();
        let mut full = core.to_owned();
        if (1..3).contains(&parts) {
            for _ in parts..3 {
                full.push_str(".0");
            }
        }
        if let Some(pre) = pre {
            full.push('-');
            full.push_str(pre);
        }
        let version = semver::Version::parse(&full).map_err(|e| bad(e.to_string()))?;
        if !version.build.is_empty() {
            return Err(bad("build metadata (+...) is not allowed".to_owned()));
        }
        Ok(HostVersion(version))
    }

    /// The version as a full semantic version.
    pub fn semver(&self) -> &semver::Version {
        &self.0
    }
}

impl fmt::Display for HostVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The host-app versions a release supports, as a semver requirement (`>=5.2, <7`; `*` for any).
///
/// Kept as written so that a signed document re-serialises to the same bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HostRequirement {
    text: String,
    req: semver::VersionReq,
}

impl HostRequirement {
    /// Any host-app version.
    pub fn any() -> HostRequirement {
        HostRequirement {
            text: "*".to_owned(),
            req: semver::VersionReq::STAR,
        }
    }

    /// Parses a semver requirement.
    ///
    /// # Errors
    /// [`Error::InvalidVersion`] with the parser's reason.
    pub fn parse(text: &str) -> Result<HostRequirement> {
        let bad = |reason: String| Error::InvalidVersion {
            kind: "host-app requirement",
            value: excerpt(text, 80),
            reason,
        };
        if text.len() > 256 {
            return Err(bad("longer than 256 bytes".to_owned()));
        }
        if text.trim() != text {
            return Err(bad("leading or trailing white space".to_owned()));
        }
        let req = semver::VersionReq::parse(text).map_err(|e| bad(e.to_string()))?;
        Ok(HostRequirement {
            text: text.to_owned(),
            req,
        })
    }

    /// Whether a host app at `version` can run a release with this requirement.
    pub fn matches(&self, version: &HostVersion) -> bool {
        self.req.matches(&version.0)
    }

    /// The requirement as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for HostRequirement {
    fn default() -> HostRequirement {
        HostRequirement::any()
    }
}

impl fmt::Display for HostRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for HostRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostRequirement({:?})", self.text)
    }
}

impl std::str::FromStr for HostRequirement {
    type Err = Error;
    fn from_str(s: &str) -> Result<HostRequirement> {
        HostRequirement::parse(s)
    }
}

impl Serialize for HostRequirement {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HostRequirement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HostRequirement, D::Error> {
        crate::de::parse_str(deserializer, HostRequirement::parse)
    }
}
