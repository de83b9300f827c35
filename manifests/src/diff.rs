//! Diff planning: what changes from one release to the next, which blobs a device lacks, and
//! which old file each new one can be patched from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::error::{Error, Result};
use crate::{Digest, FileEntry, RelPath};

/// A release's files, by path.
pub type Files = BTreeMap<RelPath, FileEntry>;

/// One blob the device must obtain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The blob's digest.
    pub sha256: Digest,
    /// Its length in bytes.
    pub size: u64,
    /// The old blob it is most likely to patch well from (a changed file's previous content, or a
    /// renamed file's predecessor), if any.
    pub base: Option<Digest>,
}

/// What turns one release's file list into the next one's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffPlan {
    /// Paths only the new release has.
    pub added: Files,
    /// Paths both have with different content: (old, new).
    pub changed: BTreeMap<RelPath, (FileEntry, FileEntry)>,
    /// Paths only the old release has.
    pub removed: Files,
    /// Paths both have with the same content.
    pub unchanged: BTreeSet<RelPath>,
    /// The blobs the device lacks, each once, in path order of first use.
    pub fetch: Vec<Fetch>,
}

impl DiffPlan {
    /// Bytes of all blobs to fetch, whole.
    pub fn fetch_bytes(&self) -> u64 {
        self.fetch.iter().map(|f| f.size).sum()
    }

    /// Turns `old` into the new file list.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] if `old` is not the list the plan was made from.
    pub fn apply(&self, old: &Files) -> Result<Files> {
        let mismatch = |path: &RelPath, reason| Error::PlanMismatch {
            path: path.to_string(),
            reason,
        };
        let mut files = old.clone();
        for (path, entry) in &self.removed {
            match files.remove(path) {
                Some(found) if found == *entry => {}
                Some(_) => return Err(mismatch(path, "removed file has other content")),
                None => return Err(mismatch(path, "removed file is missing")),
            }
        }
        for (path, (before, after)) in &self.changed {
            match files.get_mut(path) {
                Some(found) if found == before => *found = after.clone(),
                Some(_) => return Err(mismatch(path, "changed file has other content")),
                None => return Err(mismatch(path, "changed file is missing")),
            }
        }
        for path in &self.unchanged {
            if !files.contains_key(path) {
                return Err(mismatch(path, "unchanged file is missing"));
            }
        }
        for (path, entry) in &self.added {
            if files.insert(path.clone(), entry.clone()).is_some() {
                return Err(mismatch(path, "added file already exists"));
            }
        }
        if files.len() != self.unchanged.len() + self.changed.len() + self.added.len() {
            return Err(Error::PlanMismatch {
                path: String::new(),
                reason: "the old list holds files the plan does not know",
            });
        }
        Ok(files)
    }
}

/// Plans the step from `old` (none for a first install) to `new`.
///
/// `held` tells which blobs the device already has besides those of `old` (other packages'
/// files, an interrupted earlier download); a blob already held is not fetched again, and a blob
/// needed by several paths is fetched once. Each fetched blob gets a patch base when one exists:
/// the same path's old content, else the old file whose name matches once content hashes are
/// removed ([`rename_key`]), same directory and extension, closest in size.
pub fn plan_diff(old: Option<&Files>, new: &Files, held: impl Fn(&Digest) -> bool) -> DiffPlan {
    let empty = Files::new();
    let old = old.unwrap_or(&empty);
    let mut plan = DiffPlan::default();
    for (path, entry) in old {
        match new.get(path) {
            None => {
                plan.removed.insert(path.clone(), entry.clone());
            }
            Some(n) if n.sha256 == entry.sha256 && n.size == entry.size && n.mime == entry.mime => {
                plan.unchanged.insert(path.clone());
            }
            Some(n) => {
                plan.changed
                    .insert(path.clone(), (entry.clone(), n.clone()));
            }
        }
    }
    for (path, entry) in new {
        if !old.contains_key(path) {
            plan.added.insert(path.clone(), entry.clone());
        }
    }

    let old_blobs: BTreeSet<&Digest> = old.values().map(|f| &f.sha256).collect();
    let renames = RenameIndex::new(old);
    let mut planned = BTreeSet::new();
    for (path, entry) in new {
        let digest = entry.sha256;
        if old_blobs.contains(&digest) || held(&digest) || !planned.insert(digest) {
            continue;
        }
        let base = match old.get(path) {
            Some(before) => Some(before.sha256),
            None => renames.predecessor(path, entry.size),
        };
        plan.fetch.push(Fetch {
            sha256: digest,
            size: entry.size,
            base,
        });
    }
    plan
}

/// The name a file keeps across builds that rename content-hashed chunks: its path with every
/// hash-like part of the file name replaced by `*` (`assets/index-4f9a2c1e.js` →
/// `assets/index-*.js`, `main.3f2a1b9c.chunk.js` → `main.*.chunk.js`).
///
/// The file name is split at `.`, `-`, `_` and `~`; a part is hash-like when it is at least 6
/// characters of hex holding a digit, at least 8 of letters and digits mixing both, or exactly 8 of
/// upper-case base32 (`A-Z`, `2-7`, as esbuild writes hashes, which may hold no digit at all).
pub fn rename_key(path: &RelPath) -> String {
    let name = path.file_name();
    let mut key = String::with_capacity(path.as_str().len());
    key.push_str(path.parent());
    if !key.is_empty() {
        key.push('/');
    }
    let mut part = String::new();
    for c in name.chars() {
        if matches!(c, '.' | '-' | '_' | '~') {
            push_part(&mut key, &part);
            part.clear();
            key.push(c);
        } else {
            part.push(c);
        }
    }
    push_part(&mut key, &part);
    key
}

fn push_part(key: &mut String, part: &str) {
    if is_hash_like(part) {
        key.push('*');
    } else {
        key.push_str(part);
    }
}

fn is_hash_like(part: &str) -> bool {
    let has_digit = part.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = part.bytes().any(|b| b.is_ascii_alphabetic());
    let all_alnum = part.bytes().all(|b| b.is_ascii_alphanumeric());
    let all_hex = part
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b.to_ascii_lowercase()));
    let base32 = part.len() == 8
        && part
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    (part.len() >= 6 && all_hex && has_digit)
        || (part.len() >= 8 && all_alnum && has_digit && has_alpha)
        || base32
}

/// Old files grouped by [`rename_key`], for finding a renamed file's predecessor.
struct RenameIndex<'a> {
    by_key: HashMap<String, Vec<&'a FileEntry>>,
}

impl<'a> RenameIndex<'a> {
    fn new(old: &'a Files) -> RenameIndex<'a> {
        let mut by_key: HashMap<String, Vec<&'a FileEntry>> = HashMap::new();
        for (path, entry) in old {
            by_key.entry(rename_key(path)).or_default().push(entry);
        }
        RenameIndex { by_key }
    }

    fn predecessor(&self, path: &RelPath, size: u64) -> Option<Digest> {
        self.by_key
            .get(&rename_key(path))?
            .iter()
            .min_by_key(|e| e.size.abs_diff(size))
            .map(|e| e.sha256)
    }
}

impl fmt::Display for DiffPlan {
    /// One line per change and per fetch, for logs and snapshot tests.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for path in self.added.keys() {
            writeln!(f, "add {path}")?;
        }
        for path in self.changed.keys() {
            writeln!(f, "change {path}")?;
        }
        for path in self.removed.keys() {
            writeln!(f, "remove {path}")?;
        }
        for fetch in &self.fetch {
            write!(f, "fetch {} ({} bytes)", fetch.sha256.short(), fetch.size)?;
            if let Some(base) = fetch.base {
                write!(f, " patch from {}", base.short())?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
