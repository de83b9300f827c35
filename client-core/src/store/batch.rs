//! Storing many blobs at the cost of few disk waits.
//!
//! An install of a thousand small files spends most of its time waiting for fsyncs, one journal
//! commit each when they come one after another. A [`BlobWriter`] checks and writes each blob to
//! `tmp/` at once and hands it to a few syncer threads, which fsync it and only then rename it
//! into place; their fsyncs overlap, so the file system commits them together, and the caller
//! decodes and hashes the next blob meanwhile. [`BlobWriter::finish`] waits for every blob and
//! syncs the directories once. A file under `blobs/` is still always complete, correct and
//! durable before its name appears; names become durable at `finish`, before the caller's state
//! switch.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use manifests::Digest;

use durable_fs::Fs;

use super::{Store, state};
use crate::error::{Error, Result};

/// How many fsyncs wait at once: waits, not work, so more than the cores is fine; past a few the
/// file system's group commit gains little.
const SYNCERS: usize = 8;

/// A blob written to `tmp/`, waiting for its fsync and rename.
#[derive(Debug)]
struct Staged {
    digest: Digest,
    tmp: PathBuf,
    dest: PathBuf,
    fs: Arc<dyn Fs>,
}

/// Writes a batch of blobs; see the module docs. Dropping it without [`BlobWriter::finish`]
/// still waits for the blobs handed over (each lands complete or not at all).
#[derive(Debug)]
pub struct BlobWriter<'a> {
    store: &'a Store,
    queue: Option<Sender<Staged>>,
    receive: Option<Arc<Mutex<Receiver<Staged>>>>,
    syncers: Vec<JoinHandle<Result<()>>>,
    spawn_failed: bool,
    /// Fan-out directories known to exist.
    dirs: BTreeSet<PathBuf>,
    written: BTreeSet<Digest>,
}

impl Store {
    /// A writer for a batch of blobs (an install's).
    pub fn blob_writer(&self) -> BlobWriter<'_> {
        BlobWriter {
            store: self,
            queue: None,
            receive: None,
            syncers: Vec::new(),
            spawn_failed: false,
            dirs: BTreeSet::new(),
            written: BTreeSet::new(),
        }
    }
}

impl BlobWriter<'_> {
    /// Checks `bytes` against `expected` and writes them; the blob is in place, durably, once
    /// [`BlobWriter::finish`] returns.
    ///
    /// # Errors
    /// [`Error::BlobMismatch`] if the bytes are not `expected` (nothing is written), and IO
    /// errors.
    pub fn write(&mut self, expected: &Digest, bytes: &[u8], context: &str) -> Result<()> {
        let actual = Digest::of(bytes);
        if actual != *expected {
            return Err(Error::BlobMismatch {
                expected: *expected,
                actual,
                context: context.to_owned(),
            });
        }
        if self.written.contains(expected) {
            return Ok(());
        }
        let dest = self.store.blob_path(expected);
        if let Some(dir) = dest.parent()
            && !self.dirs.contains(dir)
        {
            self.store
                .fs
                .create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            self.dirs.insert(dir.to_path_buf());
        }
        let tmp = self
            .store
            .root
            .join("tmp")
            .join(state::unique_temp_name(&expected.to_string()));
        let staged = Staged {
            digest: *expected,
            tmp,
            dest,
            fs: self.store.fs.clone(),
        };
        let written = staged
            .fs
            .create(&staged.tmp)
            .and_then(|mut f| f.write_all(bytes));
        if let Err(e) = written {
            let _ = staged.fs.remove_file(&staged.tmp);
            return Err(Error::io(format!("writing blob {expected}"), e));
        }
        match self.queue() {
            // A syncer's failure is reported by `finish`.
            Some(queue) => {
                // A send fails only when every syncer has gone (panicked): settle inline.
                if let Err(unsent) = queue.send(staged) {
                    settle(unsent.0)?;
                }
            }
            None => settle(staged)?,
        }
        // Counted only once handed over or in place, so a blob that failed is fetched again.
        self.written.insert(*expected);
        Ok(())
    }

    /// The syncers' queue, with one more syncer on each of the first [`SYNCERS`] calls (a
    /// one-blob install starts one thread); `None` if no thread could start (then each blob is
    /// settled inline).
    fn queue(&mut self) -> Option<&Sender<Staged>> {
        if self.syncers.len() < SYNCERS && !self.spawn_failed {
            let receive = match &self.receive {
                Some(receive) => receive.clone(),
                None => {
                    let (send, receive) = channel::<Staged>();
                    let receive = Arc::new(Mutex::new(receive));
                    self.queue = Some(send);
                    self.receive = Some(receive.clone());
                    receive
                }
            };
            let spawned = std::thread::Builder::new()
                .name(format!("baleen-sync-{}", self.syncers.len()))
                .spawn(move || sync_all(&receive));
            match spawned {
                Ok(handle) => self.syncers.push(handle),
                Err(_) => self.spawn_failed = true,
            }
        }
        match self.syncers.is_empty() {
            true => None,
            false => self.queue.as_ref(),
        }
    }

    /// Waits until every blob written is in place, then makes their names durable; returns the
    /// blobs written.
    ///
    /// # Errors
    /// The first IO error of any blob (the others are in place or removed).
    pub fn finish(mut self) -> Result<BTreeSet<Digest>> {
        self.wait()?;
        for dir in &self.dirs {
            state::sync_dir(self.store.fs(), dir)?;
        }
        state::sync_dir(self.store.fs(), &self.store.root.join("blobs"))?;
        Ok(std::mem::take(&mut self.written))
    }

    /// The blobs written so far (some may still be on their way into place).
    pub fn written(&self) -> &BTreeSet<Digest> {
        &self.written
    }

    fn wait(&mut self) -> Result<()> {
        self.queue = None;
        self.receive = None;
        let mut first = Ok(());
        for syncer in self.syncers.drain(..) {
            let result = syncer.join().unwrap_or_else(|_| {
                Err(Error::io(
                    "syncing blobs",
                    std::io::Error::other("a syncer panicked"),
                ))
            });
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

/// A syncer: settles blobs until the queue closes; after an error it goes on (so no temp file
/// is left behind) and reports the first.
fn sync_all(queue: &Mutex<Receiver<Staged>>) -> Result<()> {
    let mut first = Ok(());
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(staged) = next else {
            return first;
        };
        let settled = settle(staged);
        if first.is_ok() {
            first = settled;
        }
    }
}

/// Makes a written temp file durable and renames it into place; removes it on failure.
fn settle(staged: Staged) -> Result<()> {
    let digest = staged.digest;
    let fs = &*staged.fs;
    let synced = fs
        .sync_path(&staged.tmp)
        .map_err(|e| Error::io(format!("syncing blob {digest}"), e))
        .and_then(|()| {
            fs.rename(&staged.tmp, &staged.dest)
                .map_err(|e| Error::io(format!("moving blob {digest} into place"), e))
        });
    if synced.is_err() {
        let _ = fs.remove_file(&staged.tmp);
    }
    synced
}
