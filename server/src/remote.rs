//! The command line's side of the admin API: `baleen publish`, `promote`, `rollout`, … talk to a
//! running server over HTTP with a bearer token.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use zip::write::SimpleFileOptions;

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

    fn answer(&self, what: &str, response: ureq::http::Response<ureq::Body>) -> Result<Value> {
        let status = response.status();
        let text = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("{what}: reading the server's answer"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        match value.pointer("/error/message").and_then(Value::as_str) {
            Some(message) => {
                let code = value
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                bail!("{what}: {message} ({code}, HTTP {})", status.as_u16())
            }
            None => bail!("{what}: HTTP {}: {value}", status.as_u16()),
        }
    }

    /// Uploads a directory (zipped on the fly) or a zip file as a new release.
    pub fn publish(
        &self,
        source: &Path,
        app: &str,
        package: &str,
        query: &[(&str, String)],
        progress: bool,
    ) -> Result<Value> {
        let zip = if source.is_dir() {
            zip_dir(source).with_context(|| format!("zipping {}", source.display()))?
        } else {
            File::open(source).with_context(|| format!("opening {}", source.display()))?
        };
        self.publish_zip(zip, app, package, query, progress)
    }

    /// Uploads an open zip file (an empty file only with a `base` release: removals alone).
    pub fn publish_zip(
        &self,
        mut zip: File,
        app: &str,
        package: &str,
        query: &[(&str, String)],
        progress: bool,
    ) -> Result<Value> {
        let size = zip.seek(std::io::SeekFrom::End(0))?;
        zip.rewind()?;
        let url = format!(
            "{}/v1/admin/apps/{app}/packages/{package}/releases",
            self.base
        );
        let mut request = self
            .agent
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Length", size.to_string())
            .content_type("application/zip");
        for (key, value) in query {
            request = request.query(*key, value);
        }
        let mut reader = Progress::new(zip, size, progress && std::io::stderr().is_terminal());
        let response = request
            .send(ureq::SendBody::from_reader(&mut reader))
            .with_context(|| format!("uploading to {url}"))?;
        reader.finish();
        self.answer("publish", response)
    }

    /// POSTs a JSON body to an admin path.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let bytes = serde_json::to_vec(body)?;
        let response = self
            .agent
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json")
            .send(&bytes[..])
            .with_context(|| format!("calling {url}"))?;
        self.answer(path, response)
    }

    /// GETs an admin path.
    pub fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .get(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("calling {url}"))?;
        self.answer(path, response)
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
    let mut buf = Vec::new();
    for rel in files {
        writer.start_file(rel.as_str(), options)?;
        buf.clear();
        File::open(dir.join(rel))
            .and_then(|mut f| f.read_to_end(&mut buf))
            .with_context(|| format!("reading {rel}"))?;
        writer.write_all(&buf)?;
    }
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

/// A reader that draws a progress bar on standard error.
struct Progress<R> {
    inner: R,
    total: u64,
    done: u64,
    shown: u64,
    draw: bool,
}

impl<R> Progress<R> {
    fn new(inner: R, total: u64, draw: bool) -> Progress<R> {
        Progress {
            inner,
            total,
            done: 0,
            shown: u64::MAX,
            draw,
        }
    }

    fn show(&mut self) {
        if !self.draw {
            return;
        }
        let percent = (self.done * 100).checked_div(self.total).unwrap_or(100);
        if percent == self.shown {
            return;
        }
        self.shown = percent;
        let filled = (percent / 5) as usize;
        eprint!(
            "\rupload [{}{}] {percent:>3}% {:.1}/{:.1} MB",
            "#".repeat(filled),
            " ".repeat(20 - filled),
            self.done as f64 / 1e6,
            self.total as f64 / 1e6
        );
    }

    fn finish(&mut self) {
        if self.draw {
            eprintln!();
        }
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.show();
        Ok(n)
    }
}
