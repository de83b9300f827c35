//! `baleen watch`: publish a folder as a new dev release shortly after it changes, uploading only
//! the files that changed since the last release it published.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use manifests::{AppId, Channel, Digest, Hasher, PackageId};
use notify::{RecursiveMode, Watcher};

use crate::api::PublishQuery;
use crate::remote::{Remote, list_files, zip_files};

/// What to watch and where to publish it.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The build folder.
    pub dir: PathBuf,
    /// The host app.
    pub app: AppId,
    /// The package.
    pub package: PackageId,
    /// The channel each release is promoted to.
    pub channel: Channel,
    /// Route prefixes (needed only if the package has no release yet).
    pub routes: Vec<String>,
    /// The version dev releases are pre-releases of (`0.0.0` gives `0.0.0-dev.<millis>`).
    pub base_version: String,
    /// How long the folder must stay quiet before a publish.
    pub debounce: Duration,
    /// Stop after this many publishes (for tests); `None` runs until interrupted.
    pub max_publishes: Option<usize>,
    /// Print one JSON object per publish instead of a line for people.
    pub json: bool,
}

/// Every file's digest and size, by relative path.
type Snapshot = BTreeMap<String, (Digest, u64)>;

fn snapshot(dir: &Path) -> Result<Snapshot> {
    let mut out = Snapshot::new();
    let mut buf = vec![0u8; 64 * 1024];
    for rel in list_files(dir)? {
        let mut file =
            std::fs::File::open(dir.join(&rel)).with_context(|| format!("reading {rel}"))?;
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {rel}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        out.insert(rel, (hasher.finish(), size));
    }
    Ok(out)
}

/// Watches `options.dir` and publishes on every settled change, printing one line per publish.
pub fn watch(remote: &Remote, options: &WatchOptions) -> Result<()> {
    if !options.dir.is_dir() {
        bail!("{} is not a directory", options.dir.display());
    }
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event.is_ok());
    })
    .context("starting the file watcher")?;
    watcher
        .watch(&options.dir, RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", options.dir.display()))?;

    let mut published: Option<(String, Snapshot)> = None;
    let mut count = 0;
    loop {
        let current = snapshot(&options.dir)?;
        if current.is_empty() {
            eprintln!("watch: {} holds no files; waiting", options.dir.display());
        } else if published.as_ref().map(|(_, s)| s) != Some(&current) {
            let version = publish(remote, options, published.as_ref(), &current)?;
            published = Some((version, current));
            count += 1;
            if options.max_publishes.is_some_and(|max| count >= max) {
                return Ok(());
            }
        }
        // Wait for a change, then for the folder to stay quiet for the debounce time.
        if rx.recv().is_err() {
            bail!("the file watcher stopped");
        }
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < options.debounce {
            match rx.recv_timeout(options.debounce - quiet_since.elapsed()) {
                Ok(_) => quiet_since = Instant::now(),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the file watcher stopped"),
            }
        }
    }
}

fn publish(
    remote: &Remote,
    options: &WatchOptions,
    previous: Option<&(String, Snapshot)>,
    current: &Snapshot,
) -> Result<String> {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // `-dev` marks a dev build, which garbage collection keeps for a shorter time
    // (`retention::is_dev_build`).
    let version = format!("{}-dev.{millis}", options.base_version);
    let mut query = PublishQuery {
        version: version.clone(),
        channel: Some(options.channel.to_string()),
        // The channel of dev releases is named once, when the watch starts: it is made if new.
        create_channel: Some(true),
        routes: (!options.routes.is_empty()).then(|| options.routes.join(",")),
        ..PublishQuery::default()
    };
    let (upload, removed): (Vec<String>, Vec<String>) = match previous {
        None => (current.keys().cloned().collect(), Vec::new()),
        Some((base, before)) => {
            query.base = Some(base.clone());
            let upload = current
                .iter()
                .filter(|(path, entry)| before.get(*path) != Some(entry))
                .map(|(path, _)| path.clone())
                .collect();
            let removed: Vec<String> = before
                .keys()
                .filter(|p| !current.contains_key(*p))
                .cloned()
                .collect();
            if !removed.is_empty() {
                query.removed = Some(removed.join("\n"));
            }
            (upload, removed)
        }
    };
    let zip = zip_files(&options.dir, &upload)?;
    let upload_bytes = zip.metadata().map(|m| m.len()).unwrap_or(0);
    let answer = remote.publish_zip(zip, &options.app, &options.package, &query, false)?;
    if options.json {
        let line = serde_json::json!({
            "published": answer,
            "uploaded_files": upload.len(),
            "uploaded_bytes": upload_bytes,
            "removed_files": removed.len(),
        });
        println!("{line}");
        return Ok(version);
    }
    println!(
        "published {}@{version}: {} files, {} uploaded ({upload_bytes} bytes), {} removed, index sequence {}",
        options.package,
        answer.release.file_count,
        upload.len(),
        removed.len(),
        answer
            .sequence
            .map_or_else(|| "unchanged".to_owned(), |s| s.to_string())
    );
    Ok(version)
}
