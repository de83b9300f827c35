//! The command line's side of the admin API: `baleen publish`, `promote`, `rollout`, … talk to a
//! running server over HTTP with a bearer token, sending and reading the types of [`crate::api`].

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use manifests::{AppId, Channel, PackageId, paths};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zip::write::SimpleFileOptions;

use crate::api::{
    AuditEntry, ChangeRequest, ChangeResult, ChannelState, ErrorBody, GcReport, GcRequest,
    HistoryEntry, NewToken, Origins, PublishQuery, Published, ReleaseReport, ReleaseSummary,
    TokenRequest, TokenSummary,
};
use crate::channel::Action;

/// A server and the token to talk to it with.
#[derive(Debug, Clone)]
pub struct Remote {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Remote {
    /// A client for the server at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str, token: &str) -> Remote {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Remote {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            agent,
        }
    }

    /// Reads a reply: the typed answer on success, else the server's error as a message that
    /// starts with `what` the user asked for ("rolling out checkout 1.5.0 on production").
    fn answer<T: DeserializeOwned>(
        &self,
        what: &str,
        response: ureq::http::Response<ureq::Body>,
    ) -> Result<T> {
        let status = response.status();
        let text = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("{what}: reading the server's answer"))?;
        if status.is_success() {
            return serde_json::from_str(&text).with_context(|| {
                format!("{what}: unexpected answer from the server: {text:.200}")
            });
        }
        let hint = match status.as_u16() {
            401 => {
                "; the server knows no such token: create one with `baleen token create` \
                 on the server's data directory"
            }
            403 => "; use a token with a wider scope",
            _ => "",
        };
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(ErrorBody { error }) => bail!(
                "{what}: {} ({}, HTTP {}){hint}",
                error.message,
                error.code,
                status.as_u16()
            ),
            Err(_) => bail!("{what}: HTTP {}: {text:.200}{hint}", status.as_u16()),
        }
    }

    /// The error of a request that got no answer: the server could not be reached.
    fn unreachable(&self, what: &str, error: ureq::Error) -> anyhow::Error {
        anyhow!("{what}: cannot reach the server at {}: {error}", self.base)
    }

    /// Uploads a directory (zipped on the fly) or a zip file as a new release.
    pub fn publish(
        &self,
        source: &Path,
        app: &AppId,
        package: &PackageId,
        query: &PublishQuery,
        progress: bool,
    ) -> Result<Published> {
        let zip = if source.is_dir() {
            let files = list_files(source)?;
            if files.is_empty() {
                bail!("{} holds no files", source.display());
            }
            zip_entries(source, &files, progress && std::io::stderr().is_terminal())
                .with_context(|| format!("zipping {}", source.display()))?
        } else {
            File::open(source).with_context(|| format!("opening {}", source.display()))?
        };
        self.publish_zip(zip, app, package, query, progress)
    }

    /// Uploads an open zip file (an empty file only with a `base` release: removals alone).
    pub fn publish_zip(
        &self,
        mut zip: File,
        app: &AppId,
        package: &PackageId,
        query: &PublishQuery,
        progress: bool,
    ) -> Result<Published> {
        let size = zip.seek(std::io::SeekFrom::End(0))?;
        zip.rewind()?;
        let url = format!(
            "{}{}?{}",
            self.base,
            paths::publish_path(app, package),
            query.encode().context("encoding the publish query")?
        );
        let request = self
            .agent
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Length", size.to_string())
            .content_type("application/zip");
        let what = format!("publishing {package} {}", query.version);
        let mut reader = Progress {
            inner: zip,
            bar: Bar::new("upload", size, progress && std::io::stderr().is_terminal()),
        };
        let sent = request.send(ureq::SendBody::from_reader(&mut reader));
        reader.bar.finish();
        let response = sent.map_err(|e| self.unreachable(&what, e))?;
        self.answer(&what, response)
    }

    /// Applies a channel change.
    pub fn change(
        &self,
        package: &PackageId,
        channel: &Channel,
        change: &ChangeRequest,
    ) -> Result<ChangeResult> {
        let what = describe_change(package, channel, &change.action);
        self.post(&what, &paths::channel_change_path(package, channel), change)
    }

    /// Starts a health-gated rollout of `package` on `channel`.
    pub fn start_ramp(
        &self,
        package: &PackageId,
        channel: &Channel,
        request: &crate::api::RampRequest,
    ) -> Result<crate::ramp::RampRecord> {
        self.put(
            &format!("starting a ramp of {package} on {channel}"),
            &paths::ramp_path(package, channel),
            request,
        )
    }

    /// The ramp of `package` on `channel`.
    pub fn ramp(&self, package: &PackageId, channel: &Channel) -> Result<crate::ramp::RampRecord> {
        self.get(
            &format!("reading the ramp of {package} on {channel}"),
            &paths::ramp_path(package, channel),
        )
    }

    /// Stops the ramp of `package` on `channel` (the share stays).
    pub fn stop_ramp(
        &self,
        package: &PackageId,
        channel: &Channel,
    ) -> Result<crate::ramp::RampRecord> {
        self.delete(
            &format!("stopping the ramp of {package} on {channel}"),
            &paths::ramp_path(package, channel),
        )
    }

    /// Evaluates every running ramp now.
    pub fn evaluate_ramps(&self) -> Result<Vec<crate::ramp::RampRecord>> {
        self.post(
            "evaluating the ramps",
            paths::RAMPS_EVALUATE,
            &serde_json::json!({}),
        )
    }

    /// A package's releases, newest first.
    pub fn releases(&self, package: &PackageId) -> Result<Vec<ReleaseSummary>> {
        self.get(
            &format!("listing the releases of {package}"),
            &paths::releases_path(package),
        )
    }

    /// A package's history on a channel, newest first.
    pub fn history(&self, package: &PackageId, channel: &Channel) -> Result<Vec<HistoryEntry>> {
        self.get(
            &format!("reading the history of {package} on {channel}"),
            &paths::history_path(package, channel),
        )
    }

    /// Every package's state on an app's channel.
    pub fn channel_state(&self, app: &AppId, channel: &Channel) -> Result<ChannelState> {
        self.get(
            &format!("reading channel {channel} of app {app}"),
            &paths::channel_state_path(app, channel),
        )
    }

    /// Per-release figures of an app's channel.
    pub fn stats(&self, app: &AppId, channel: &Channel) -> Result<Vec<ReleaseReport>> {
        self.get(
            &format!("reading the figures of app {app} on {channel}"),
            &paths::stats_path(app, channel),
        )
    }

    /// The origins of `app`.
    pub fn origins(&self, app: &AppId) -> Result<Origins> {
        self.get(
            &format!("reading the origins of app {app}"),
            &paths::app_origins_path(app),
        )
    }

    /// Declares the origins of `app`.
    pub fn set_origins(&self, app: &AppId, origins: &Origins) -> Result<Origins> {
        self.put(
            &format!("declaring the origins of app {app}"),
            &paths::app_origins_path(app),
            origins,
        )
    }

    /// Every token the server knows (never a secret).
    pub fn tokens(&self) -> Result<Vec<TokenSummary>> {
        self.get("listing tokens", paths::TOKENS)
    }

    /// Makes a token; the answer holds its secret, shown only this once.
    pub fn create_token(&self, request: &TokenRequest) -> Result<NewToken> {
        self.post(
            &format!("creating token {:?}", request.name),
            paths::TOKENS,
            request,
        )
    }

    /// Revokes the token named `name`.
    pub fn revoke_token(&self, name: &str) -> Result<TokenSummary> {
        self.delete(
            &format!("revoking token {name:?}"),
            &paths::token_path(name),
        )
    }

    /// The ingest keys of `app`.
    pub fn ingest_keys(&self, app: &AppId) -> Result<Vec<crate::api::IngestKeySummary>> {
        self.get(
            &format!("listing the ingest keys of app {app}"),
            &paths::ingest_keys_path(app),
        )
    }

    /// Makes an ingest key for `app`; the answer holds the key, shown only this once.
    pub fn create_ingest_key(
        &self,
        app: &AppId,
        request: &crate::api::IngestKeyRequest,
    ) -> Result<crate::api::NewIngestKey> {
        self.post(
            &format!("creating ingest key {:?} of app {app}", request.name),
            &paths::ingest_keys_path(app),
            request,
        )
    }

    /// Revokes `app`'s ingest key `name`.
    pub fn revoke_ingest_key(
        &self,
        app: &AppId,
        name: &str,
    ) -> Result<crate::api::IngestKeySummary> {
        self.delete(
            &format!("revoking ingest key {name:?} of app {app}"),
            &paths::ingest_key_path(app, name),
        )
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.get(
            "reading the audit log",
            &format!("{}?limit={limit}", paths::AUDIT),
        )
    }

    /// A signed manifest's bytes, by digest.
    pub fn manifest(&self, digest: &manifests::Digest) -> Result<Vec<u8>> {
        let what = format!("reading manifest {digest}");
        let response = self
            .agent
            .get(format!("{}{}", self.base, paths::manifest_path(digest)))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.unreachable(&what, e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .with_context(|| format!("{what}: reading the server's answer"))?;
        if !status.is_success() {
            bail!("{what}: HTTP {}", status.as_u16());
        }
        Ok(bytes)
    }

    /// Adds a release key's signature to a release's manifest.
    pub fn sign_release(
        &self,
        app: &AppId,
        package: &PackageId,
        version: &manifests::ReleaseVersion,
        signature: &crate::api::ReleaseSignature,
    ) -> Result<crate::api::ReleaseSigned> {
        self.post(
            &format!("signing {package} {version}"),
            &paths::release_signatures_path(app, package, version),
            signature,
        )
    }

    /// Posts the next version of an app's key list.
    pub fn add_key_list(&self, app: &AppId, envelope: &[u8]) -> Result<crate::api::KeyListAdded> {
        let what = format!("changing the keys of app {app}");
        let response = self
            .agent
            .post(format!("{}{}", self.base, paths::admin_keys_path(app)))
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json")
            .send(envelope)
            .map_err(|e| self.unreachable(&what, e))?;
        self.answer(&what, response)
    }

    /// Collects garbage on the server, or with `dry_run` asks what would go.
    pub fn gc(&self, request: &GcRequest) -> Result<GcReport> {
        let what = if request.dry_run {
            "asking what garbage collection would remove"
        } else {
            "collecting garbage"
        };
        self.post(what, paths::GC, request)
    }

    /// POSTs `body` as JSON to an API path; `what` says what the user asked for, for errors.
    fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send_json(false, what, path, body)
    }

    /// PUTs `body` as JSON to an API path; `what` says what the user asked for, for errors.
    fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send_json(true, what, path, body)
    }

    fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        put: bool,
        what: &str,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let bytes = serde_json::to_vec(body)?;
        let request = if put {
            self.agent.put(&url)
        } else {
            self.agent.post(&url)
        };
        let response = request
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json")
            .send(&bytes[..])
            .map_err(|e| self.unreachable(what, e))?;
        self.answer(what, response)
    }

    /// DELETEs an API path; `what` says what the user asked for, for errors.
    fn delete<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .delete(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.unreachable(what, e))?;
        self.answer(what, response)
    }

    /// GETs an API path; `what` says what the user asked for, for errors.
    fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .get(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.unreachable(what, e))?;
        self.answer(what, response)
    }
}

/// The server's base URL from what a user typed: `http://host:port` or `https://…` as given
/// (without a trailing `/`), and `host:port` without a scheme as `http://host:port`.
///
/// # Errors
/// Another scheme, no host, or text that is not a URL, with an example of one that works.
pub fn server_url(text: &str) -> Result<String> {
    let example = "such as http://127.0.0.1:8080";
    let trimmed = text.trim();
    let url = match trimmed.split_once("://") {
        Some(("http" | "https", _)) => trimmed.trim_end_matches('/').to_owned(),
        Some((scheme, _)) => bail!(
            "server {text:?}: {scheme}:// is not supported; use an http:// or https:// URL, {example}"
        ),
        None => format!("http://{}", trimmed.trim_end_matches('/')),
    };
    let host = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    let parses = url.parse::<ureq::http::Uri>().is_ok();
    if host.is_empty() || host.contains(char::is_whitespace) || !parses {
        bail!("server {text:?} is not a URL; give one {example}");
    }
    Ok(url)
}

/// What a channel change does, as the user would say it.
fn describe_change(package: &PackageId, channel: &Channel, action: &Action) -> String {
    match action {
        Action::Promote { version } => format!("promoting {package} {version} on {channel}"),
        Action::Rollout {
            version: Some(version),
            ..
        } => format!("rolling out {package} {version} on {channel}"),
        Action::Rollout { version: None, .. } => {
            format!("changing the rollout of {package} on {channel}")
        }
        Action::Pause => format!("pausing the rollout of {package} on {channel}"),
        Action::Resume => format!("resuming the rollout of {package} on {channel}"),
        Action::Complete => format!("completing the rollout of {package} on {channel}"),
        Action::Rollback { to: Some(to) } => {
            format!("rolling back {package} on {channel} to {to}")
        }
        Action::Rollback { to: None } => format!("rolling back {package} on {channel}"),
        Action::Undo => format!("undoing the last change of {package} on {channel}"),
    }
}

/// Zips the regular files under `dir` (paths relative to it, sorted) into an anonymous temp file,
/// returned positioned at its start.
/// Symbolic links and other special files are refused, as the server would refuse them.
pub fn zip_dir(dir: &Path) -> Result<File> {
    let files = list_files(dir)?;
    if files.is_empty() {
        bail!("{} holds no files", dir.display());
    }
    zip_files(dir, &files)
}

/// The regular files under `dir`, as sorted `/`-separated relative paths. Symbolic links and other
/// special files are refused.
pub fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    Ok(files)
}

/// Zips the given files under `dir` into an anonymous temp file, positioned at its start; no
/// files gives an empty file.
pub fn zip_files(dir: &Path, files: &[String]) -> Result<File> {
    zip_entries(dir, files, false)
}

/// [`zip_files`], drawing a progress bar on standard error when `draw` is set.
fn zip_entries(dir: &Path, files: &[String], draw: bool) -> Result<File> {
    let tmp = tempfile()?;
    if files.is_empty() {
        return Ok(tmp);
    }
    let mut writer = zip::ZipWriter::new(tmp);
    // The fastest deflate level: the upload is zipped once and unpacked once, and on a CI
    // runner's link level 1 costs little size for a third of the time of the default level.
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .unix_permissions(0o644);
    // Sizes only for the bar: listing them costs a stat per file.
    let total = if draw {
        files
            .iter()
            .filter_map(|rel| std::fs::metadata(dir.join(rel)).ok())
            .map(|m| m.len())
            .sum()
    } else {
        0
    };
    let mut bar = Bar::new("zip", total, draw);
    let mut buf = Vec::new();
    for rel in files {
        writer.start_file(rel.as_str(), options)?;
        buf.clear();
        File::open(dir.join(rel))
            .and_then(|mut f| f.read_to_end(&mut buf))
            .with_context(|| format!("reading {rel}"))?;
        writer.write_all(&buf)?;
        bar.advance(buf.len() as u64);
    }
    bar.finish();
    let mut file = writer.finish()?;
    file.rewind()?;
    Ok(file)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            bail!(
                "{} is a symbolic link; publish real files only",
                path.display()
            );
        } else if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .map_err(|_| anyhow!("{} is outside {}", path.display(), root.display()))?;
            let rel = rel
                .to_str()
                .ok_or_else(|| anyhow!("{} is not UTF-8", rel.display()))?
                .replace(std::path::MAIN_SEPARATOR, "/");
            out.push(rel);
        } else {
            bail!("{} is not a regular file", path.display());
        }
    }
    Ok(())
}

/// An unnamed temporary file (deleted when closed).
fn tempfile() -> Result<File> {
    let dir = std::env::temp_dir();
    for _ in 0..16 {
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).map_err(|e| anyhow!("random source: {e}"))?;
        let path = dir.join(format!(
            "baleen-upload-{}.zip",
            name.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                // Unlink at once: the open handle keeps the data until the upload is done.
                let _ = std::fs::remove_file(&path);
                return Ok(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    bail!("could not create a temporary file in {}", dir.display())
}

/// A progress bar on standard error, drawn only when asked (when standard error is a terminal).
struct Bar {
    label: &'static str,
    total: u64,
    done: u64,
    shown: u64,
    draw: bool,
}

impl Bar {
    fn new(label: &'static str, total: u64, draw: bool) -> Bar {
        Bar {
            label,
            total,
            done: 0,
            shown: u64::MAX,
            draw,
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if !self.draw {
            return;
        }
        let percent = (self.done * 100)
            .checked_div(self.total)
            .unwrap_or(100)
            .min(100);
        if percent == self.shown {
            return;
        }
        self.shown = percent;
        let filled = (percent / 5) as usize;
        eprint!(
            "\r{:<6} [{}{}] {percent:>3}% {:.1}/{:.1} MB",
            self.label,
            "#".repeat(filled),
            " ".repeat(20 - filled),
            self.done as f64 / 1e6,
            self.total as f64 / 1e6
        );
    }

    fn finish(&mut self) {
        if self.draw && self.shown != u64::MAX {
            eprintln!();
        }
        self.draw = false;
    }
}

/// A reader that advances a progress bar by what is read.
struct Progress<R> {
    inner: R,
    bar: Bar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.advance(n as u64);
        Ok(n)
    }
}

/// The files of a build (a directory or a zip) by path, with their sha256: what a publisher
/// compares a manifest with before signing it.
///
/// # Errors
/// The build cannot be read.
pub fn build_digests(
    source: &Path,
) -> Result<std::collections::BTreeMap<String, manifests::Digest>> {
    let mut out = std::collections::BTreeMap::new();
    let hash = |reader: &mut dyn std::io::Read| -> Result<manifests::Digest> {
        let mut hasher = manifests::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher.finish());
            }
            hasher.update(&buf[..n]);
        }
    };
    if source.is_dir() {
        for path in list_files(source)? {
            let mut file = File::open(source.join(&path))
                .with_context(|| format!("reading {}", source.join(&path).display()))?;
            out.insert(path, hash(&mut file)?);
        }
    } else {
        let file = File::open(source).with_context(|| format!("opening {}", source.display()))?;
        let mut zip = zip::ZipArchive::new(file)
            .with_context(|| format!("reading {} as a zip", source.display()))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i)?;
            if entry.is_dir() {
                continue;
            }
            let name = entry.name()?.into_owned();
            let digest = hash(&mut entry)?;
            out.insert(name, digest);
        }
    }
    Ok(out)
}

/// Signs a published release as a release key holder: reads its manifest, checks that it is the
/// release asked for and that every file in it is the build's own (a server cannot get a
/// publisher to sign content it did not build), and posts the signature.
///
/// # Errors
/// The manifest differs from the build, or a request failed.
pub fn sign_published(
    remote: &Remote,
    app: &AppId,
    package: &PackageId,
    version: &manifests::ReleaseVersion,
    digest: &manifests::Digest,
    key: &manifests::KeyPair,
    build: Option<&Path>,
) -> Result<crate::api::ReleaseSigned> {
    let envelope = remote.manifest(digest)?;
    let signed = manifests::signed_bytes(&envelope).context("the manifest served")?;
    if manifests::Digest::of(&signed) != *digest {
        bail!("the server served another manifest than {digest}; nothing was signed");
    }
    let release = manifests::parse_release_unverified(&signed).context("the manifest served")?;
    if release.package != *package || release.version != *version {
        bail!(
            "manifest {digest} is {}@{}, not {package}@{version}; nothing was signed",
            release.package,
            release.version
        );
    }
    if let Some(build) = build {
        let local = build_digests(build)?;
        for (path, entry) in &release.files {
            match local.get(path.as_str()) {
                Some(d) if *d == entry.sha256 => {}
                Some(_) => bail!(
                    "{path} in manifest {digest} differs from the build's; nothing was signed"
                ),
                None => bail!(
                    "manifest {digest} holds {path}, which the build does not; nothing was signed"
                ),
            }
        }
    }
    let signature = crate::api::ReleaseSignature {
        keyid: key.id().to_string(),
        sig: manifests::encode_hex(&key.sign(&signed)),
    };
    remote.sign_release(app, package, version, &signature)
}
