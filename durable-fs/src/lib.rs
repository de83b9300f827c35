//! The file operations that decide what survives a crash, behind one trait.
//!
//! Baleen's stores (the device's and the server's file blob store) make every change durable the
//! same way: write a temp file, fsync it, rename it into place, fsync the directory. Every such
//! operation goes through [`Fs`], so that a test can put a recorder under a store
//! ([`model::Recorder`], feature `model`), record the operations of an install or a publish, and
//! rebuild what a crash at each of them would leave on disk. Reads do not change what survives,
//! so they go to `std::fs` directly.
//!
//! [`RealFs`] is what the stores use in a build that ships.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

#[cfg(feature = "model")]
pub mod model;

/// The operations of a store that change what a crash leaves.
pub trait Fs: Send + Sync + std::fmt::Debug {
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates a file to write (truncating one that exists).
    fn create(&self, path: &Path) -> io::Result<File>;
    /// Creates a file to write; fails if `path` exists.
    fn create_new(&self, path: &Path) -> io::Result<File>;
    /// Makes the contents of `file`, open at `path`, durable.
    fn sync_file(&self, file: &File, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` durable: the names created, renamed into and removed from it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Opens the file at `path` and makes its contents durable.
    fn sync_path(&self, path: &Path) -> io::Result<()> {
        let file = File::open(path)?;
        self.sync_file(&file, path)
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl RealFs {
    /// The real file system as the stores hold it.
    pub fn shared() -> Arc<dyn Fs> {
        Arc::new(RealFs)
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        File::create(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    }

    fn sync_file(&self, file: &File, _: &Path) -> io::Result<()> {
        file.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }
}
