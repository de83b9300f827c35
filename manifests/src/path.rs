//! Bundle paths: the single definition of a safe relative path, used by the server's ingest and the
//! device's installer and resolver alike.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unicode_normalization::{UnicodeNormalization, is_nfc};

use crate::error::{Error, Result, excerpt};

/// Longest path, in bytes of UTF-8.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest single segment, in bytes of UTF-8 (the common file-system limit).
pub const MAX_SEGMENT_LEN: usize = 255;
/// Deepest nesting.
pub const MAX_DEPTH: usize = 32;

/// A relative path inside a bundle, such as `assets/app.3f2a1b.js`.
///
/// The rules, checked by [`RelPath::parse`]:
/// - UTF-8 in Unicode normalisation form C, at most 1024 bytes;
/// - `/`-separated segments, at most 32 of them and 255 bytes each;
/// - no empty, `.` or `..` segment, so no leading or trailing `/` and no `//`;
/// - no `\`, no `:` (drive letters, alternate data streams), no NUL or other control character.
///
/// A path that passes can be joined under a root directory component by component and never
/// leaves it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    /// Checks `path` against the path rules.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] naming the first rule broken.
    pub fn parse(path: &str) -> Result<RelPath> {
        match path_problem(path) {
            Some(reason) => Err(Error::InvalidPath {
                path: excerpt(path, 300),
                reason,
            }),
            None => Ok(RelPath(path.to_owned())),
        }
    }

    /// Checks raw bytes, such as a zip entry's name, which must first be UTF-8.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] if the bytes are not UTF-8 or break a path rule.
    pub fn from_bytes(bytes: &[u8]) -> Result<RelPath> {
        match std::str::from_utf8(bytes) {
            Ok(path) => RelPath::parse(path),
            Err(_) => Err(Error::InvalidPath {
                path: excerpt(&String::from_utf8_lossy(bytes), 300),
                reason: "not valid UTF-8",
            }),
        }
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments; each is a plain file or directory name.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Everything before the last `/`, or `""` at the top level.
    pub fn parent(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    /// The file name's extension without the dot, lower-cased, if it has one.
    pub fn extension(&self) -> Option<String> {
        let name = self.file_name();
        match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => {
                Some(ext.to_ascii_lowercase())
            }
            _ => None,
        }
    }

    /// The form two paths share when a case-insensitive, normalising file system (APFS, HFS+,
    /// NTFS) would store them as one file: lower-cased and NFC-normalised.
    pub fn folded(&self) -> String {
        fold(&self.0)
    }
}

fn fold(text: &str) -> String {
    // ASCII is its own decomposition and composition: only the case changes.
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    fold_unicode(text)
}

fn fold_unicode(text: &str) -> String {
    text.nfd()
        .collect::<String>()
        .to_lowercase()
        .nfc()
        .collect()
}

fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty path");
    }
    if path.len() > MAX_PATH_LEN {
        return Some("longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return Some("absolute path (leading '/')");
    }
    if path.contains('\\') {
        return Some("backslash is not allowed");
    }
    if path.contains(':') {
        return Some("':' is not allowed (drive letters, alternate streams)");
    }
    if path.chars().any(char::is_control) {
        return Some("control characters are not allowed");
    }
    if !is_nfc(path) {
        return Some("not in Unicode normalisation form C");
    }
    let mut depth = 0;
    for segment in path.split('/') {
        depth += 1;
        match segment {
            "" => return Some("empty segment ('//' or trailing '/')"),
            "." => return Some("'.' segment is not allowed"),
            ".." => return Some("'..' segment is not allowed"),
            s if s.len() > MAX_SEGMENT_LEN => return Some("segment longer than 255 bytes"),
            _ => {}
        }
    }
    if depth > MAX_DEPTH {
        return Some("nested deeper than 32 segments");
    }
    None
}

/// Checks a whole file list for paths that cannot live side by side on a device: two paths equal
/// after case folding and Unicode normalisation, or a file whose path another file needs as a
/// directory (`a` and `a/b`, `A` and `a/b`).
///
/// # Errors
/// [`Error::PathCollision`] naming the first colliding pair, in the order given.
pub fn check_collisions<'a>(paths: impl IntoIterator<Item = &'a RelPath>) -> Result<()> {
    // Folded form -> (original path, whether it is a file, as opposed to a directory it implies).
    let mut seen: HashMap<String, (&'a RelPath, bool)> = HashMap::new();
    for path in paths {
        let folded = path.folded();
        // Every directory this path implies.
        let mut end = 0;
        while let Some(slash) = folded[end..].find('/') {
            end += slash;
            let dir = &folded[..end];
            match seen.get(dir) {
                Some((other, true)) => {
                    return Err(Error::PathCollision {
                        first: other.as_str().to_owned(),
                        second: path.as_str().to_owned(),
                        reason: "a file is also needed as a directory",
                    });
                }
                Some((_, false)) => {}
                None => {
                    seen.insert(dir.to_owned(), (path, false));
                }
            }
            end += 1;
        }
        match seen.get(folded.as_str()) {
            Some((other, true)) => {
                let reason = if other.as_str() == path.as_str() {
                    "the same path twice"
                } else {
                    "equal after case folding and Unicode normalisation"
                };
                return Err(Error::PathCollision {
                    first: other.as_str().to_owned(),
                    second: path.as_str().to_owned(),
                    reason,
                });
            }
            Some((other, false)) => {
                return Err(Error::PathCollision {
                    first: other.as_str().to_owned(),
                    second: path.as_str().to_owned(),
                    reason: "a file is also needed as a directory",
                });
            }
            None => {
                seen.insert(folded, (path, true));
            }
        }
    }
    Ok(())
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({:?})", self.0)
    }
}

impl std::str::FromStr for RelPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<RelPath> {
        RelPath::parse(s)
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RelPath, D::Error> {
        crate::de::parse_str(deserializer, RelPath::parse)
    }
}

#[cfg(test)]
mod fold_tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ascii_folds_as_unicode_does(text in "[ -~]{0,64}") {
            prop_assert_eq!(super::fold(&text), super::fold_unicode(&text));
        }
    }
}
