//! A recorder of a store's file operations, and what a crash at each of them leaves.
//!
//! [`Recorder`] is an [`Fs`] that does every operation on the real file system and logs it. From
//! the log, [`Recorder::crash_image`] rebuilds the files a crash just before operation `k` would
//! leave, under the rules a POSIX file system promises and no more:
//!
//! - a file's contents are durable once the file was fsynced, and only as they were then; a file
//!   created and never fsynced comes back empty;
//! - a name (created, renamed into a directory, removed from it) is durable once its directory
//!   was fsynced; until then the directory's entries are as they were at its last fsync;
//! - a file or directory is there only if every directory above it is.
//!
//! In [`Crash::Torn`] mode the crash also tears the fsync it interrupts: operation `k`, if it is a
//! file's fsync, leaves half of the file's new contents durable.
//!
//! What was on disk when the recorder started counts as durable. Operations outside the recorder's
//! root are logged too (under their absolute paths), so that a file staged elsewhere and renamed
//! in arrives with the contents it was fsynced with, or none; the image holds only the root.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Fs, RealFs};

/// One operation of the log, with paths relative to the recorder's root (absolute outside it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `create_dir_all`: the directories missing on the way to this one.
    CreateDir(PathBuf),
    /// A file created or truncated: empty until fsynced.
    Create(PathBuf),
    /// A file's contents, as they were when fsynced.
    SyncFile(PathBuf, Arc<[u8]>),
    /// A directory's entries made durable.
    SyncDir(PathBuf),
    /// A rename.
    Rename(PathBuf, PathBuf),
    /// A file removed.
    RemoveFile(PathBuf),
    /// A directory removed with everything under it.
    RemoveDirAll(PathBuf),
    /// A point the test names (a database commit, say), with what it wants to remember there.
    Mark(String),
}

/// How a crash treats the operation it interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// Operation `k` never happened.
    Clean,
    /// Operation `k`, if it is a file's fsync, left half of the new contents durable.
    Torn,
}

/// What a crash leaves: every file (with its contents) and directory, by path under the root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// Files and their contents.
    pub files: BTreeMap<PathBuf, Arc<[u8]>>,
    /// Directories (the root excluded).
    pub dirs: Vec<PathBuf>,
}

impl Image {
    /// Writes the image under `dir` (which must be empty or absent).
    pub fn write_to(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for sub in &self.dirs {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for (path, bytes) in &self.files {
            std::fs::write(dir.join(path), bytes)?;
        }
        Ok(())
    }
}

/// An [`Fs`] over the real file system that logs every operation under `root`.
#[derive(Debug)]
pub struct Recorder {
    root: PathBuf,
    initial: Image,
    log: Mutex<Vec<Op>>,
}

impl Recorder {
    /// Records operations under `root`, taking what is there now as durable.
    pub fn new(root: &Path) -> io::Result<Arc<Recorder>> {
        let mut initial = Image::default();
        if root.exists() {
            snapshot(root, Path::new(""), &mut initial)?;
        }
        Ok(Arc::new(Recorder {
            root: root.to_path_buf(),
            initial,
            log: Mutex::new(Vec::new()),
        }))
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Logs a point of the test's own (see [`Op::Mark`]).
    pub fn mark(&self, note: impl Into<String>) {
        self.push(Op::Mark(note.into()));
    }

    /// The log so far.
    pub fn ops(&self) -> Vec<Op> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What a crash just before operation `k` leaves (`k` = the log's length: after the last).
    pub fn crash_image(&self, k: usize, crash: Crash) -> Image {
        let ops = self.ops();
        let mut model = Model::new(&self.initial);
        for op in &ops[..k.min(ops.len())] {
            model.apply(op);
        }
        if crash == Crash::Torn
            && let Some(Op::SyncFile(path, bytes)) = ops.get(k)
        {
            let half: Arc<[u8]> = Arc::from(&bytes[..bytes.len() / 2]);
            model.apply(&Op::SyncFile(path.clone(), half));
        }
        model.image()
    }

    fn push(&self, op: Op) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(op);
    }

    /// How the log names `path`: relative to the root if it lies under it, else absolute (and
    /// so never part of an image).
    fn key(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.root) {
            // Paths are built by the stores from the root and names; `..` never appears in them.
            Ok(relative)
                if relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))) =>
            {
                relative.to_path_buf()
            }
            _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        }
    }

    fn log_at(&self, path: &Path, op: impl FnOnce(PathBuf) -> Op) {
        self.push(op(self.key(path)));
    }
}

impl Fs for Recorder {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)?;
        self.log_at(dir, Op::CreateDir);
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        let file = RealFs.create(path)?;
        self.log_at(path, Op::Create);
        Ok(file)
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        let file = RealFs.create_new(path)?;
        self.log_at(path, Op::Create);
        Ok(file)
    }

    fn sync_file(&self, file: &File, path: &Path) -> io::Result<()> {
        // The contents as the fsync makes them durable, read before anything else can change
        // them (the stores write a file, then fsync it, and never write it again).
        let bytes: Arc<[u8]> = Arc::from(std::fs::read(path)?);
        RealFs.sync_file(file, path)?;
        self.log_at(path, |p| Op::SyncFile(p, bytes));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)?;
        self.log_at(dir, Op::SyncDir);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)?;
        let from = self.key(from);
        self.log_at(to, |to| Op::Rename(from, to));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)?;
        self.log_at(path, Op::RemoveFile);
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.remove_dir_all(dir)?;
        self.log_at(dir, Op::RemoveDirAll);
        Ok(())
    }
}

fn snapshot(root: &Path, relative: &Path, image: &mut Image) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            image.dirs.push(path.clone());
            snapshot(root, &path, image)?;
        } else {
            image
                .files
                .insert(path.clone(), Arc::from(std::fs::read(root.join(&path))?));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(usize),
}

/// The file system as the log leaves it: what the running process sees (`live`), what a crash
/// keeps (`durable` names, and each file's durable contents).
#[derive(Debug)]
struct Model {
    /// Each file's contents as last fsynced; `None`: never (empty after a crash).
    contents: Vec<Option<Arc<[u8]>>>,
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
}

impl Model {
    fn new(initial: &Image) -> Model {
        let mut model = Model {
            contents: Vec::new(),
            live: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        for dir in &initial.dirs {
            model.live.insert(dir.clone(), Node::Dir);
        }
        for (path, bytes) in &initial.files {
            model.contents.push(Some(bytes.clone()));
            model
                .live
                .insert(path.clone(), Node::File(model.contents.len() - 1));
        }
        model.durable = model.live.clone();
        model
    }

    fn new_file(&mut self) -> usize {
        self.contents.push(None);
        self.contents.len() - 1
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::CreateDir(dir) => {
                for ancestor in dir.ancestors() {
                    if !ancestor.as_os_str().is_empty() {
                        self.live.entry(ancestor.to_path_buf()).or_insert(Node::Dir);
                    }
                }
            }
            Op::Create(path) => match self.live.get(path) {
                // Truncated: the old contents are no longer what a crash keeps either.
                Some(Node::File(id)) => self.contents[*id] = None,
                _ => {
                    let id = self.new_file();
                    self.live.insert(path.clone(), Node::File(id));
                }
            },
            Op::SyncFile(path, bytes) => {
                let id = match self.live.get(path) {
                    Some(Node::File(id)) => *id,
                    _ => {
                        let id = self.new_file();
                        self.live.insert(path.clone(), Node::File(id));
                        id
                    }
                };
                self.contents[id] = Some(bytes.clone());
            }
            Op::SyncDir(dir) => {
                let children = |map: &BTreeMap<PathBuf, Node>| -> Vec<PathBuf> {
                    map.keys()
                        .filter(|p| p.parent() == Some(dir.as_path()))
                        .cloned()
                        .collect()
                };
                for gone in children(&self.durable) {
                    self.durable.remove(&gone);
                }
                for path in children(&self.live) {
                    self.durable.insert(path.clone(), self.live[&path]);
                }
            }
            Op::Rename(from, to) => {
                let node = match self.live.remove(from) {
                    Some(node) => node,
                    None => Node::File(self.new_file()),
                };
                // Directories are never renamed by the stores; their entries would move with
                // them, which this model does not follow.
                self.live.insert(to.clone(), node);
            }
            Op::RemoveFile(path) => {
                self.live.remove(path);
            }
            Op::RemoveDirAll(dir) => {
                self.live.retain(|p, _| !p.starts_with(dir));
            }
            Op::Mark(_) => {}
        }
    }

    /// What survives: durable names under the root whose directories all survive, with durable
    /// contents.
    fn image(&self) -> Image {
        let reachable = |path: &Path| {
            path.is_relative()
                && path
                    .ancestors()
                    .skip(1)
                    .filter(|a| !a.as_os_str().is_empty())
                    .all(|a| self.durable.get(a) == Some(&Node::Dir))
        };
        let mut image = Image::default();
        for (path, node) in &self.durable {
            if !reachable(path) {
                continue;
            }
            match node {
                Node::Dir => image.dirs.push(path.clone()),
                Node::File(id) => {
                    let bytes = self.contents[*id]
                        .clone()
                        .unwrap_or_else(|| Arc::from(&[][..]));
                    image.files.insert(path.clone(), bytes);
                }
            }
        }
        image
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    /// A durable write of `name` with `bytes` the way the stores make one.
    fn write_durably(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = fs.create(&tmp).unwrap();
        file.write_all(bytes).unwrap();
        fs.sync_file(&file, &tmp).unwrap();
        fs.rename(&tmp, &dir.join(name)).unwrap();
        fs.sync_dir(dir).unwrap();
    }

    fn file<'a>(image: &'a Image, path: &str) -> Option<&'a [u8]> {
        image.files.get(Path::new(path)).map(|b| &b[..])
    }

    #[test]
    fn a_durable_write_is_old_or_new_at_every_crash_point_and_torn_only_in_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), b"old").unwrap();
        let fs = Recorder::new(dir.path()).unwrap();
        write_durably(&*fs, dir.path(), "state", b"new state");
        let ops = fs.ops();
        assert_eq!(ops.len(), 4, "{ops:?}");
        for k in 0..=ops.len() {
            for crash in [Crash::Clean, Crash::Torn] {
                let image = fs.crash_image(k, crash);
                let state = file(&image, "state");
                let expected: &[u8] = if k == ops.len() { b"new state" } else { b"old" };
                // The rename is durable only with the directory's fsync, the last operation.
                assert_eq!(state, Some(expected), "k = {k}, {crash:?}");
                if let Some(tmp) = file(&image, ".state.tmp") {
                    assert!(b"new state".starts_with(tmp), "k = {k}: {tmp:?}");
                }
            }
        }
        // Torn in the middle of the fsync: half of the temp file, had its name been durable.
        let torn = fs.crash_image(1, Crash::Torn);
        assert_eq!(
            file(&torn, ".state.tmp"),
            None,
            "the temp name was never durable"
        );
    }

    #[test]
    fn unsynced_contents_names_and_directories_are_lost() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Recorder::new(dir.path()).unwrap();
        let sub = dir.path().join("blobs/ab");
        fs.create_dir_all(&sub).unwrap();
        // Contents fsynced and renamed, but no directory fsynced: nothing survives.
        let tmp = dir.path().join("t");
        let mut f = fs.create(&tmp).unwrap();
        f.write_all(b"abc").unwrap();
        fs.sync_file(&f, &tmp).unwrap();
        fs.rename(&tmp, &sub.join("x")).unwrap();
        let end = fs.ops().len();
        assert_eq!(fs.crash_image(end, Crash::Clean), Image::default());
        // The leaf directory synced, but not the ones above it: still nothing.
        fs.sync_dir(&sub).unwrap();
        let image = fs.crash_image(fs.ops().len(), Crash::Clean);
        assert!(image.files.is_empty(), "{image:?}");
        // With every directory synced up to the root, the file is there, whole.
        fs.sync_dir(&dir.path().join("blobs")).unwrap();
        fs.sync_dir(dir.path()).unwrap();
        let image = fs.crash_image(fs.ops().len(), Crash::Clean);
        assert_eq!(file(&image, "blobs/ab/x"), Some(&b"abc"[..]));
        // A file whose name is durable but whose contents were never fsynced comes back empty.
        let unsynced = sub.join("y");
        let mut f = fs.create(&unsynced).unwrap();
        f.write_all(b"lost").unwrap();
        fs.sync_dir(&sub).unwrap();
        let image = fs.crash_image(fs.ops().len(), Crash::Clean);
        assert_eq!(file(&image, "blobs/ab/y"), Some(&b""[..]));
        // A removal is durable with its directory's fsync.
        fs.remove_file(&sub.join("x")).unwrap();
        let removed_at = fs.ops().len();
        fs.sync_dir(&sub).unwrap();
        assert!(file(&fs.crash_image(removed_at, Crash::Clean), "blobs/ab/x").is_some());
        assert!(file(&fs.crash_image(removed_at + 1, Crash::Clean), "blobs/ab/x").is_none());
        // An image written out reads back the same.
        let out = tempfile::tempdir().unwrap();
        let image = fs.crash_image(fs.ops().len(), Crash::Clean);
        image.write_to(out.path()).unwrap();
        assert_eq!(
            Recorder::new(out.path())
                .unwrap()
                .crash_image(0, Crash::Clean)
                .files,
            image.files
        );
        // A file staged outside the root arrives with the contents it was fsynced with; one
        // never fsynced arrives empty; nothing outside the root is in an image.
        let outside = tempfile::tempdir().unwrap();
        for (name, sync) in [("staged", true), ("unsynced", false)] {
            let staged = outside.path().join(name);
            std::fs::write(&staged, b"staged bytes").unwrap();
            if sync {
                fs.sync_path(&staged).unwrap();
            }
            fs.rename(&staged, &sub.join(name)).unwrap();
        }
        fs.sync_dir(&sub).unwrap();
        fs.mark("commit");
        let image = fs.crash_image(fs.ops().len(), Crash::Clean);
        assert_eq!(file(&image, "blobs/ab/staged"), Some(&b"staged bytes"[..]));
        assert_eq!(file(&image, "blobs/ab/unsynced"), Some(&b""[..]));
        assert!(image.files.keys().all(|p| p.is_relative()), "{image:?}");
        assert_eq!(fs.ops().last(), Some(&Op::Mark("commit".into())));
    }
}
