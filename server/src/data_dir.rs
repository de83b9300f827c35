//! The embedded default's data directory:
//!
//! ```text
//! baleen-data/
//!   keys/signing.private.json   the index and manifest signing key (see `baleen keys generate`)
//!   blobs/ab/abcdef…            file contents and packs by sha256 (`….gzip`: precompressed);
//!                               absent when they live in a bucket (`--blobs s3://…`)
//!   blobs/tmp/                  blobs being written; emptied at startup
//!   meta.sqlite3                packages, releases, channels, history, tokens, audit log;
//!                               absent when they live in PostgreSQL (`--meta postgres://…`)
//!   tmp/                        uploads being staged; emptied at startup
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use manifests::KeyPair;

use crate::blob_store::BlobStore;
use crate::blob_store::fs::FsBlobStore;
use crate::error::{Error, Result};
use crate::meta_store::MetaStore;
use crate::meta_store::sqlite::SqliteMetaStore;
use crate::service::{Service, Settings};

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A data directory at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The default signing key's path.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("keys").join("signing.private.json")
    }

    /// Default settings for this directory.
    pub fn settings(&self) -> Settings {
        Settings::new(self.root.join("tmp"))
    }

    /// Opens the stores (creating them if needed), clears what interrupted uploads and blob
    /// writes left (a crash leaves nothing else behind but unreferenced blobs, which garbage
    /// collection removes), and returns a service signing with `key`.
    pub fn open(&self, key: KeyPair, settings: Settings) -> Result<Service> {
        self.open_with_blobs(key, settings, None)
    }

    /// Opens the directory as [`DataDir::open`] does, with its blobs in `blobs` (an S3 bucket,
    /// say) in place of its own `blobs/` when given.
    pub fn open_with_blobs(
        &self,
        key: KeyPair,
        settings: Settings,
        blobs: Option<Arc<dyn BlobStore>>,
    ) -> Result<Service> {
        self.open_with_stores(key, settings, blobs, None)
    }

    /// Opens the directory with its blobs in `blobs` and its metadata in `meta` (PostgreSQL,
    /// say) in place of its own when given. The directory then keeps the key and the staging
    /// area only.
    pub fn open_with_stores(
        &self,
        key: KeyPair,
        settings: Settings,
        blobs: Option<Arc<dyn BlobStore>>,
        meta: Option<Arc<dyn MetaStore>>,
    ) -> Result<Service> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| Error::io(format!("creating data dir {}", self.root.display()), e))?;
        let tmp = &settings.staging_dir;
        if tmp.exists() {
            std::fs::remove_dir_all(tmp)
                .map_err(|e| Error::io(format!("clearing {}", tmp.display()), e))?;
        }
        let blobs = match blobs {
            Some(blobs) => blobs,
            None => Arc::new(FsBlobStore::open(self.root.join("blobs"))?),
        };
        let meta = match meta {
            Some(meta) => meta,
            None => Arc::new(SqliteMetaStore::open(&self.root.join("meta.sqlite3"))?),
        };
        Service::new(blobs, meta, key, settings)
    }
}
