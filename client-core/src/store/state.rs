//! The one small state file, [`State`] made durable.
//!
//! It lives in two slots, `state-a.json` and `state-b.json`, each `{"checksum":…,"state":…}` with a
//! generation number. A write goes to the slot not holding the newest valid state (temp file,
//! fsync, rename, fsync dir), so a torn or corrupted slot never loses the other; reading takes the
//! valid slot with the highest generation. Garbage is detected by the checksum and never trusted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::Fs;
use manifests::Digest;
use serde::{Deserialize, Serialize};

use crate::device::State;
use crate::error::{Error, Result};

#[derive(Serialize, Deserialize)]
struct Slot {
    checksum: Digest,
    state: serde_json::Value,
}

/// How the state was found on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// A valid state was read (or there was none yet: a fresh store).
    Clean,
    /// Some slot was torn or corrupted and ignored; the other one was used.
    IgnoredBadSlot,
    /// No slot was valid: the state starts over (installed blobs are kept and reused).
    Reset,
}

/// The two state slots of a store.
#[derive(Debug, Clone)]
pub struct StateFile {
    dir: PathBuf,
    fs: Arc<dyn Fs>,
}

const SLOTS: [&str; 2] = ["state-a.json", "state-b.json"];

impl StateFile {
    /// The slots in `dir`, written through `fs`.
    pub fn new(dir: &Path, fs: Arc<dyn Fs>) -> StateFile {
        StateFile {
            dir: dir.to_path_buf(),
            fs,
        }
    }

    fn read_slot(&self, name: &str) -> Option<std::result::Result<State, ()>> {
        let bytes = match std::fs::read(self.dir.join(name)) {
            Ok(bytes) => bytes,
            Err(_) => return None,
        };
        let parsed = (|| {
            let slot: Slot = serde_json::from_slice(&bytes).ok()?;
            let canonical = manifests::to_canonical_bytes(&slot.state).ok()?;
            if Digest::of(&canonical) != slot.checksum {
                return None;
            }
            serde_json::from_value::<State>(slot.state).ok()
        })();
        Some(parsed.ok_or(()))
    }

    /// Reads the newest valid state.
    pub fn load(&self) -> (State, Recovery) {
        let slots: Vec<Option<std::result::Result<State, ()>>> =
            SLOTS.iter().map(|name| self.read_slot(name)).collect();
        let any_bad = slots.iter().any(|s| matches!(s, Some(Err(()))));
        let best = slots
            .into_iter()
            .flatten()
            .flatten()
            .max_by_key(|s| s.generation);
        match (best, any_bad) {
            (Some(state), false) => (state, Recovery::Clean),
            (Some(state), true) => (state, Recovery::IgnoredBadSlot),
            (None, true) => (State::default(), Recovery::Reset),
            (None, false) => (State::default(), Recovery::Clean),
        }
    }

    /// Writes `state` with the next generation into the older slot; this is the commit point of
    /// every change. Returns the state as written.
    pub fn save(&self, state: &State) -> Result<State> {
        let mut next = state.clone();
        next.generation = state.generation + 1;
        let value = serde_json::to_value(&next)
            .map_err(|e| Error::Invalid(format!("state does not serialise: {e}")))?;
        let canonical = manifests::to_canonical_bytes(&value)?;
        let slot = Slot {
            checksum: Digest::of(&canonical),
            state: value,
        };
        let bytes = serde_json::to_vec(&slot)
            .map_err(|e| Error::Invalid(format!("state does not serialise: {e}")))?;
        let name = SLOTS[(next.generation % 2) as usize];
        write_durably(&*self.fs, &self.dir, name, &bytes)?;
        Ok(next)
    }
}

/// A temp file name no other write of this process uses, so two installs (or a seed and an
/// install) writing the same file at once never write into each other's temp file.
pub(crate) fn unique_temp_name(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".{name}.{}-{n}.tmp", std::process::id())
}

/// Writes `bytes` to `dir/name` through a temp file: fsync the file, rename, fsync the directory.
pub(crate) fn write_durably(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(unique_temp_name(name));
    let dest = dir.join(name);
    let mut file = fs
        .create(&tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| fs.sync_file(&file, &tmp))
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    drop(file);
    fs.rename(&tmp, &dest)
        .map_err(|e| Error::io(format!("replacing {}", dest.display()), e))?;
    sync_dir(fs, dir)
}

/// Makes a directory's entries durable.
pub(crate) fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}
