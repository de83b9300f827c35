//! The embedded default: blobs as files under `blobs/ab/abcdef…`, written atomically
//! (temp file, fsync, rename, fsync the directory, and the root too when the directory is new).
//! Every operation that decides what survives a crash goes through a [`durable_fs::Fs`], so the
//! crash-point tests can record them and rebuild what a crash at each would leave.

use std::collections::BTreeMap;
use std::io::{SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use durable_fs::Fs;
use manifests::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{BlobRead, BlobStore, StoredBlob};
use crate::error::{Error, Result};

/// Blobs in a directory of the local file system.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    fs: Arc<dyn Fs>,
}

impl FsBlobStore {
    /// Opens (creating if needed) a blob directory, and removes the temp files that writes
    /// interrupted by a crash left in its `tmp/`. One process owns a blob directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsBlobStore> {
        FsBlobStore::open_on(root, durable_fs::RealFs::shared())
    }

    /// [`FsBlobStore::open`] with the durable file operations going through `fs` (a recorder,
    /// in the crash-point tests).
    pub fn open_on(root: impl Into<PathBuf>, fs: Arc<dyn Fs>) -> Result<FsBlobStore> {
        let root = root.into();
        let tmp = root.join("tmp");
        fs.create_dir_all(&tmp)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&tmp)
            .map_err(|e| Error::io(format!("listing {}", tmp.display()), e))?
        {
            let path = entry
                .map_err(|e| Error::io(format!("listing {}", tmp.display()), e))?
                .path();
            let gone = if path.is_dir() {
                fs.remove_dir_all(&path)
            } else {
                fs.remove_file(&path)
            };
            gone.map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(dir = %tmp.display(), files = removed, "removed temp files left by an interrupted run");
        }
        Ok(FsBlobStore { root, fs })
    }

    /// Every blob and representation under the two-hex-digit directories.
    fn list_all(&self) -> Result<Vec<StoredBlob>> {
        let mut found: BTreeMap<Digest, StoredBlob> = BTreeMap::new();
        let listing = |dir: &Path| {
            std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))
        };
        for shard in listing(&self.root)? {
            let shard =
                shard.map_err(|e| Error::io(format!("listing {}", self.root.display()), e))?;
            let name = shard.file_name();
            let Some(prefix) = name.to_str().filter(|n| {
                n.len() == 2
                    && n.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            }) else {
                continue;
            };
            if !shard.path().is_dir() {
                continue;
            }
            for file in listing(&shard.path())? {
                let file = file.map_err(|e| Error::io(format!("listing {prefix}"), e))?;
                let name = file.file_name();
                let Some(name) = name.to_str() else { continue };
                let (hex, encoding) = match name.split_once('.') {
                    Some((hex, encoding)) if check_encoding(encoding).is_ok() => {
                        (hex, Some(encoding))
                    }
                    Some(_) => continue,
                    None => (name, None),
                };
                let Ok(digest) = Digest::parse(hex) else {
                    continue;
                };
                if !hex.starts_with(prefix) {
                    continue;
                }
                let size = match file.metadata() {
                    Ok(m) if m.is_file() => m.len(),
                    Ok(_) => continue,
                    // Removed since it was listed.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("reading {name}"), e)),
                };
                let blob = found.entry(digest).or_insert_with(|| StoredBlob {
                    digest,
                    size_bytes: None,
                    variants: Vec::new(),
                });
                match encoding {
                    Some(encoding) => blob.variants.push((encoding.to_owned(), size)),
                    None => blob.size_bytes = Some(size),
                }
            }
        }
        Ok(found.into_values().collect())
    }

    fn remove_all(&self, blob: &StoredBlob) -> Result<()> {
        let remove = |path: PathBuf| match self.fs.remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        };
        for (encoding, _) in &blob.variants {
            check_encoding(encoding)?;
            remove(self.variant_path(&blob.digest, encoding))?;
        }
        remove(self.path_of(&blob.digest))
    }

    /// The file a blob is stored in.
    pub(crate) fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_string();
        self.root.join(&hex[..2]).join(&hex)
    }

    /// The file a representation of a blob is stored in.
    pub(crate) fn variant_path(&self, digest: &Digest, encoding: &str) -> PathBuf {
        let hex = digest.to_string();
        self.root.join(&hex[..2]).join(format!("{hex}.{encoding}"))
    }

    /// Writes bytes to a temp file and moves them to `dest` durably.
    fn write_atomically(&self, bytes: &[u8], dest: &Path) -> Result<()> {
        let (tmp, mut file) = tempfile_in(&*self.fs, &self.root.join("tmp"))?;
        let written = file
            .write_all(bytes)
            .and_then(|()| self.fs.sync_file(&file, &tmp))
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e));
        drop(file);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let mut new_dir = false;
        let moved = written.and_then(|()| {
            new_dir = self.create_shard(&dir)?;
            self.fs
                .rename(&tmp, dest)
                .map_err(|e| Error::io(format!("moving {} into place", dest.display()), e))
        });
        if moved.is_err() {
            // A full disk must not keep what it half wrote.
            let _ = self.fs.remove_file(&tmp);
        }
        moved?;
        self.sync_shard(&dir, new_dir)
    }

    /// Moves `from` to the blob's place and makes both the file and its directory entry durable.
    fn install(&self, from: &Path, digest: &Digest) -> Result<()> {
        let dest = self.path_of(digest);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let new_dir = self.create_shard(&dir)?;
        self.fs
            .sync_path(from)
            .map_err(|e| Error::io(format!("syncing {}", from.display()), e))?;
        self.fs
            .rename(from, &dest)
            .map_err(|e| Error::io(format!("moving blob {digest} into place"), e))?;
        self.sync_shard(&dir, new_dir)
    }

    /// Creates a two-hex-digit directory if it is missing; true if it was.
    fn create_shard(&self, dir: &Path) -> Result<bool> {
        if dir.is_dir() {
            return Ok(false);
        }
        self.fs
            .create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(true)
    }

    /// Makes the names in a two-hex-digit directory durable, and the directory's own name when
    /// it is new: without that, a crash could take the directory, and the blobs in it, away.
    fn sync_shard(&self, dir: &Path, new: bool) -> Result<()> {
        sync_dir(&*self.fs, dir)?;
        match new {
            true => sync_dir(&*self.fs, &self.root),
            false => Ok(()),
        }
    }
}

/// Content codings are file-name suffixes here, so only plain lower-case names are allowed.
pub(super) fn check_encoding(encoding: &str) -> Result<()> {
    if encoding.is_empty()
        || encoding.len() > 16
        || !encoding.bytes().all(|b| b.is_ascii_lowercase())
    {
        return Err(Error::Internal(format!("bad content coding {encoding:?}")));
    }
    Ok(())
}

impl FsBlobStore {
    /// Moves staged files into place: each file is fsynced (several at once, since a flush waits
    /// on the device, not the CPU), renamed, and then every directory touched is fsynced once.
    fn install_many(&self, files: Vec<(PathBuf, Digest)>) -> Result<()> {
        let mut todo = Vec::with_capacity(files.len());
        for (staged, digest) in files {
            if self.path_of(&digest).exists() {
                self.fs
                    .remove_file(&staged)
                    .map_err(|e| Error::io(format!("removing {}", staged.display()), e))?;
            } else {
                todo.push((staged, digest));
            }
        }
        let workers = 8.min(todo.len().max(1));
        let chunk = todo.len().div_ceil(workers).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    let fs = &*self.fs;
                    scope.spawn(move || {
                        for (staged, _) in part {
                            fs.sync_path(staged).map_err(|e| {
                                Error::io(format!("syncing {}", staged.display()), e)
                            })?;
                        }
                        Ok::<(), Error>(())
                    })
                })
                .collect();
            for handle in handles {
                handle
                    .join()
                    .map_err(|_| Error::Internal("a sync thread panicked".into()))??;
            }
            Ok::<(), Error>(())
        })?;
        let mut dirs = std::collections::BTreeSet::new();
        for (staged, digest) in &todo {
            let dest = self.path_of(digest);
            let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
            if dirs.insert(dir.clone()) {
                self.create_shard(&dir)?;
            }
            self.fs
                .rename(staged, &dest)
                .map_err(|e| Error::io(format!("moving blob {digest} into place"), e))?;
        }
        for dir in &dirs {
            sync_dir(&*self.fs, dir)?;
        }
        if !dirs.is_empty() {
            sync_dir(&*self.fs, &self.root)?;
        }
        Ok(())
    }
}

/// Makes a directory's entries durable.
pub(crate) fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put_file(&self, staged: &Path, digest: &Digest) -> Result<()> {
        let this = self.clone();
        let staged = staged.to_path_buf();
        let digest = *digest;
        blocking(move || {
            if this.path_of(&digest).exists() {
                return this
                    .fs
                    .remove_file(&staged)
                    .map_err(|e| Error::io(format!("removing {}", staged.display()), e));
            }
            this.install(&staged, &digest)
        })
        .await
    }

    async fn put_files(&self, files: Vec<(PathBuf, Digest)>) -> Result<()> {
        let this = self.clone();
        blocking(move || this.install_many(files)).await
    }

    async fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.path_of(&digest).exists() {
            return Ok(digest);
        }
        let this = self.clone();
        let bytes = bytes.to_vec();
        blocking(move || {
            this.write_atomically(&bytes, &this.path_of(&digest))?;
            Ok(digest)
        })
        .await
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.path_of(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading blob {digest}"), e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<BlobRead>> {
        if range.is_none() {
            // Most blobs are small: one trip to the blocking pool reads them whole.
            let (path, digest) = (self.path_of(digest), *digest);
            match blocking(move || read_whole(&path, &digest)).await? {
                Whole::Missing => return Ok(None),
                Whole::Read(bytes) => return Ok(Some(BlobRead::from_memory(bytes.into()))),
                Whole::Large => {}
            }
        }
        let mut file = match tokio::fs::File::open(self.path_of(digest)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening blob {digest}"), e)),
        };
        let total_size = file
            .metadata()
            .await
            .map_err(|e| Error::io(format!("reading blob {digest}"), e))?
            .len();
        let range = match range {
            Some(r) => r.start.min(total_size)..r.end.min(total_size),
            None => 0..total_size,
        };
        if range.start > 0 {
            file.seek(SeekFrom::Start(range.start))
                .await
                .map_err(|e| Error::io(format!("seeking blob {digest}"), e))?;
        }
        let len = range.end.saturating_sub(range.start);
        Ok(Some(BlobRead {
            total_size,
            range,
            reader: Box::pin(file.take(len)),
            in_memory: None,
        }))
    }

    async fn put_variant(&self, digest: &Digest, encoding: &str, bytes: &[u8]) -> Result<()> {
        check_encoding(encoding)?;
        let (this, dest, bytes) = (
            self.clone(),
            self.variant_path(digest, encoding),
            bytes.to_vec(),
        );
        blocking(move || this.write_atomically(&bytes, &dest)).await
    }

    async fn read_variant(&self, digest: &Digest, encoding: &str) -> Result<Option<BlobRead>> {
        check_encoding(encoding)?;
        let file = match tokio::fs::File::open(self.variant_path(digest, encoding)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening {encoding} of blob {digest}"), e)),
        };
        let total_size = file
            .metadata()
            .await
            .map_err(|e| Error::io(format!("reading {encoding} of blob {digest}"), e))?
            .len();
        Ok(Some(BlobRead {
            total_size,
            range: 0..total_size,
            reader: Box::pin(file.take(total_size)),
            in_memory: None,
        }))
    }

    async fn list(&self) -> Result<Vec<StoredBlob>> {
        let this = self.clone();
        blocking(move || this.list_all()).await
    }

    async fn remove(&self, blobs: &[StoredBlob]) -> Result<()> {
        let (this, blobs) = (self.clone(), blobs.to_vec());
        blocking(move || blobs.iter().try_for_each(|blob| this.remove_all(blob))).await
    }

    async fn read_all(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path_of(digest)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading blob {digest}"), e)),
        }
    }
}

/// Creates a new, uniquely named file in `dir`.
pub(crate) fn tempfile_in(fs: &dyn Fs, dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    for _ in 0..16 {
        let mut name = [0u8; 12];
        getrandom::fill(&mut name).map_err(|e| Error::Internal(format!("random source: {e}")))?;
        let path = dir.join(format!("{}.tmp", Digest::of(&name).short()));
        match fs.create_new(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        }
    }
    Err(Error::Internal(format!(
        "could not create a temp file in {}",
        dir.display()
    )))
}

/// Blobs up to this size are read whole, in one call, when all of one is asked for; larger ones
/// are streamed.
const READ_WHOLE_MAX: u64 = 8 << 20;

/// What [`read_whole`] found.
enum Whole {
    Missing,
    Large,
    Read(Vec<u8>),
}

/// Reads a blob file whole if it is at most [`READ_WHOLE_MAX`] bytes.
fn read_whole(path: &Path, digest: &Digest) -> Result<Whole> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Whole::Missing),
        Err(e) => return Err(Error::io(format!("opening blob {digest}"), e)),
    };
    let size = file
        .metadata()
        .map_err(|e| Error::io(format!("reading blob {digest}"), e))?
        .len();
    if size > READ_WHOLE_MAX {
        return Ok(Whole::Large);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
    Ok(Whole::Read(bytes))
}

/// Runs blocking file-system work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}
