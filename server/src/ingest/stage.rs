//! The staging directory: each distinct content written once as `<sha256 hex>`, through a temp
//! file that is fsynced and renamed; everything removed again unless the ingest succeeds.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use manifests::Digest;

use super::error::{IngestError, Result};

/// Files written into the staging directory so far. Dropping it without [`Stage::keep`] removes
/// them all (on a refusal, an IO error or a panic alike).
#[derive(Debug)]
pub(super) struct Stage {
    dir: PathBuf,
    /// Staged files, by digest.
    staged: HashSet<Digest>,
    /// Every path written (temp files included) and not yet removed.
    written: Vec<PathBuf>,
    kept: bool,
}

impl Stage {
    /// Takes over `dir`, which must be an existing, empty directory.
    pub(super) fn open(dir: &Path) -> Result<Stage> {
        let mut entries = fs::read_dir(dir).map_err(|e| {
            IngestError::io(format!("opening staging directory {}", dir.display()), e)
        })?;
        if entries.next().is_some() {
            return Err(IngestError::StagingNotEmpty {
                path: dir.to_owned(),
            });
        }
        Ok(Stage {
            dir: dir.to_owned(),
            staged: HashSet::new(),
            written: Vec::new(),
            kept: false,
        })
    }

    /// Creates a new temp file for entry `index`, never one that exists already.
    pub(super) fn create_temp(&mut self, index: usize) -> Result<(File, PathBuf)> {
        let path = self.dir.join(format!(".ingest-{index}.tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| IngestError::io(format!("creating {}", path.display()), e))?;
        self.written.push(path.clone());
        Ok((file, path))
    }

    /// Makes the temp file at `temp` the staged copy of `digest`: fsync and rename, or remove it
    /// when that content is staged already. Returns the staged path.
    pub(super) fn commit(&mut self, file: File, temp: &Path, digest: Digest) -> Result<PathBuf> {
        let staged = self.dir.join(digest.to_string());
        if self.staged.contains(&digest) {
            drop(file);
            fs::remove_file(temp)
                .map_err(|e| IngestError::io(format!("removing {}", temp.display()), e))?;
            self.written.retain(|p| p != temp);
            return Ok(staged);
        }
        // No fsync here: staging is scratch space. The blob store makes each file durable when
        // it takes it (`BlobStore::put_files`), before any release can name it.
        drop(file);
        fs::rename(temp, &staged).map_err(|e| {
            IngestError::io(
                format!("renaming {} to {}", temp.display(), staged.display()),
                e,
            )
        })?;
        for path in &mut self.written {
            if path == temp {
                path.clone_from(&staged);
            }
        }
        self.staged.insert(digest);
        Ok(staged)
    }

    /// Keeps what was staged (durability is the blob store's job, see [`Stage::commit`]).
    pub(super) fn keep(mut self) -> Result<()> {
        self.kept = true;
        Ok(())
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for path in &self.written {
            if let Err(e) = fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "could not remove a staged file"
                );
            }
        }
    }
}
