//! The on-device store: blobs by sha256, signed manifests, and the state file.
//!
//! ```text
//! <root>/
//!   blobs/ab/abcdef…       file contents, named by their sha256, never changed once written
//!   manifests/<sha256>.json signed release manifests, named by their digest
//!   state-a.json, state-b.json   the trusted state (see `state`)
//!   tmp/                   blobs being written; emptied on open
//!   partial/               bytes of downloads cut short, resumed with `Range`; never trusted
//! ```
//!
//! A blob is written to `tmp/`, fsynced and renamed into place only after its sha256 was checked,
//! so a file under `blobs/` is always complete and correct. Nothing is visible to the resolver
//! until the state file names it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::Fs;
use manifests::Digest;

use crate::error::{Error, Result};

mod batch;
pub mod state;

/// From how many blobs in one fan-out directory [`Store::retain_missing`] lists the directory.
const LIST_DIR_FROM: usize = 4;

/// The names of the regular files in `dir`: none when it does not exist, `None` when it cannot be
/// listed (the caller then looks names up one by one).
fn list_files(dir: &Path) -> Option<HashSet<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(HashSet::new()),
        Err(_) => return None,
    };
    let mut names = HashSet::new();
    for entry in entries {
        let entry = entry.ok()?;
        if entry.file_type().ok()?.is_file() {
            names.insert(entry.file_name().into_string().ok()?);
        }
    }
    Some(names)
}

pub use crate::device::{Evicted, Installed, PackageState, State};
pub use batch::BlobWriter;
pub use state::{Recovery, StateFile};

/// How long the bytes of a cut download are kept for a resume.
const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The store in one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    state_file: StateFile,
    /// Every operation that decides what survives a crash goes through here.
    fs: Arc<dyn Fs>,
}

impl Store {
    /// Opens (creating if needed) a store, clearing downloads left by an interrupted install.
    pub fn open(root: &Path) -> Result<(Store, State, Recovery)> {
        Store::open_on(root, durable_fs::RealFs::shared())
    }

    /// [`Store::open`] with the file operations that make changes durable going through `fs`
    /// (a recorder, in the crash-point tests).
    pub fn open_on(root: &Path, fs: Arc<dyn Fs>) -> Result<(Store, State, Recovery)> {
        for dir in ["blobs", "manifests"] {
            let path = root.join(dir);
            fs.create_dir_all(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs.remove_dir_all(&tmp)
                .map_err(|e| Error::io(format!("clearing {}", tmp.display()), e))?;
        }
        fs.create_dir_all(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let state_file = StateFile::new(root, fs.clone());
        let (state, recovery) = state_file.load();
        Ok((
            Store {
                root: root.to_path_buf(),
                state_file,
                fs,
            },
            state,
            recovery,
        ))
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file operations that make the store's changes durable.
    pub fn fs(&self) -> &dyn Fs {
        &*self.fs
    }

    /// Commits a new state (the commit point of every install, activation and rollback).
    pub fn save(&self, state: &State) -> Result<State> {
        self.state_file.save(state)
    }

    /// Where the bytes of cut downloads wait to be resumed.
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }

    /// Where a blob lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_string();
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }

    /// Whether a blob is stored.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Keeps in `blobs` only those not stored. Where several share a fan-out directory, the
    /// directory is listed once instead of looking up each name: a release of thousands of
    /// files costs a few hundred directory reads, not a lookup per file.
    pub fn retain_missing<V>(&self, blobs: &mut BTreeMap<Digest, V>) {
        let mut by_dir: BTreeMap<String, Vec<(Digest, String)>> = BTreeMap::new();
        for digest in blobs.keys() {
            let hex = digest.to_string();
            by_dir
                .entry(hex[..2].to_owned())
                .or_default()
                .push((*digest, hex));
        }
        let root = self.root.join("blobs");
        for (dir, digests) in by_dir {
            let dir = root.join(&dir);
            let listed = (digests.len() >= LIST_DIR_FROM)
                .then(|| list_files(&dir))
                .flatten();
            for (digest, hex) in digests {
                let stored = match &listed {
                    Some(names) => names.contains(&hex),
                    None => dir.join(&hex).is_file(),
                };
                if stored {
                    blobs.remove(&digest);
                }
            }
        }
    }

    /// Reads a stored blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        std::fs::read(&path).map_err(|e| Error::io(format!("reading blob {digest}"), e))
    }

    /// Stores `bytes` as blob `expected` after checking their sha256. The file is fsynced; call
    /// [`Store::sync_blob_dirs`] once after a batch to make the new names durable.
    ///
    /// # Errors
    /// [`Error::BlobMismatch`] if the bytes are not `expected`, and IO errors.
    pub fn write_blob(&self, expected: &Digest, bytes: &[u8], context: &str) -> Result<()> {
        let actual = Digest::of(bytes);
        if actual != *expected {
            return Err(Error::BlobMismatch {
                expected: *expected,
                actual,
                context: context.to_owned(),
            });
        }
        let dest = self.blob_path(expected);
        if dest.is_file() {
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        self.fs
            .create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let tmp = self
            .root
            .join("tmp")
            .join(state::unique_temp_name(&expected.to_string()));
        let mut file = self
            .fs
            .create(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        file.write_all(bytes)
            .and_then(|()| self.fs.sync_file(&file, &tmp))
            .map_err(|e| Error::io(format!("writing blob {expected}"), e))?;
        drop(file);
        self.fs
            .rename(&tmp, &dest)
            .map_err(|e| Error::io(format!("moving blob {expected} into place"), e))
    }

    /// Makes the names of blobs written since the last call durable.
    pub fn sync_blob_dirs<'a>(&self, digests: impl IntoIterator<Item = &'a Digest>) -> Result<()> {
        let dirs: BTreeSet<PathBuf> = digests
            .into_iter()
            .filter_map(|d| self.blob_path(d).parent().map(Path::to_path_buf))
            .collect();
        for dir in dirs {
            state::sync_dir(self.fs(), &dir)?;
        }
        state::sync_dir(self.fs(), &self.root.join("blobs"))
    }

    fn manifest_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("manifests").join(format!("{digest}.json"))
    }

    /// Stores a signed manifest envelope under its digest (the caller verified it).
    pub fn write_manifest(&self, digest: &Digest, envelope: &[u8]) -> Result<()> {
        if self.manifest_path(digest).is_file() {
            return Ok(());
        }
        state::write_durably(
            self.fs(),
            &self.root.join("manifests"),
            &format!("{digest}.json"),
            envelope,
        )
    }

    /// Reads a stored signed manifest envelope.
    pub fn read_manifest(&self, digest: &Digest) -> Result<Vec<u8>> {
        std::fs::read(self.manifest_path(digest))
            .map_err(|e| Error::io(format!("reading manifest {digest}"), e))
    }

    /// Deletes a stored manifest (one that no longer verifies), so it is fetched again.
    pub fn remove_manifest(&self, digest: &Digest) -> Result<()> {
        match self.fs.remove_file(&self.manifest_path(digest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing manifest {digest}"), e)),
        }
    }

    /// Deletes every blob and manifest for which `keep` says no; returns the bytes freed. `keep`
    /// is asked once per file, just before that file would go, so a caller can protect what an
    /// install claims meanwhile.
    pub fn collect_garbage(&self, keep: impl Fn(&Digest) -> bool) -> Result<u64> {
        let mut freed = 0;
        let blobs = self.root.join("blobs");
        for fan in read_dir(&blobs)? {
            for file in read_dir(&fan)? {
                let keep = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| Digest::parse(n).ok())
                    .is_some_and(|d| keep(&d));
                if !keep {
                    freed += std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                    self.fs
                        .remove_file(&file)
                        .map_err(|e| Error::io(format!("removing {}", file.display()), e))?;
                }
            }
        }
        for file in read_dir(&self.root.join("manifests"))? {
            let keep = file
                .file_stem()
                .and_then(|n| n.to_str())
                .and_then(|n| Digest::parse(n).ok())
                .is_some_and(|d| keep(&d));
            if !keep {
                self.fs
                    .remove_file(&file)
                    .map_err(|e| Error::io(format!("removing {}", file.display()), e))?;
            }
        }
        // Cut downloads older than a day belong to releases that have likely moved on.
        for file in read_dir(&self.partial_dir())? {
            let stale = std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age > PARTIAL_MAX_AGE);
            if stale {
                freed += std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                self.fs
                    .remove_file(&file)
                    .map_err(|e| Error::io(format!("removing {}", file.display()), e))?;
            }
        }
        Ok(freed)
    }

    /// Files left under `tmp/` (none after a clean install or an open).
    pub fn temp_files(&self) -> Result<Vec<PathBuf>> {
        read_dir(&self.root.join("tmp"))
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.map(|e| e.path())
                    .map_err(|e| Error::io(format!("listing {}", dir.display()), e))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("listing {}", dir.display()), e)),
    }
}

#[cfg(test)]
mod tests;
