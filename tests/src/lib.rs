//! # tests — Baleen end to end
//!
//! A real `baleen serve` process on a free loopback port over a temporary data directory, the
//! real CLI, and `client-core` over real HTTP. The binary comes from `BALEEN_BIN`, else from the
//! Cargo target directory (built on demand). Scenarios live in `tests/e2e/`, one test binary.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::{Client, Config};
use manifests::{AppId, Channel, HostVersion, KeyPair};

/// The URL prefix the test package `checkout` answers for.
pub const ROUTE: &str = "https://m.example.com/checkout/";

/// How many kills a crash test makes: `default` in the normal suite, or `BALEEN_SOAK_KILLS` when
/// `scripts/soak` sets it.
///
/// # Panics
/// When `BALEEN_SOAK_KILLS` is set but is not a positive number.
pub fn soak_kills(default: u64) -> u64 {
    std::env::var("BALEEN_SOAK_KILLS").map_or(default, |kills| {
        kills
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("BALEEN_SOAK_KILLS={kills:?} is not a positive number"))
    })
}

/// A tmpfs of a given size mounted over a directory, unmounted when dropped: a disk that fills up.
#[derive(Debug)]
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts it; `None` (the caller skips its test, and says so) when this process may not
    /// mount, that is when it is not root, unless `BALEEN_REQUIRE_MOUNT=1` (set by
    /// `scripts/test` where a probe mount works), which makes that a failure.
    ///
    /// # Panics
    /// When the mount fails and `BALEEN_REQUIRE_MOUNT=1`.
    pub fn mount(dir: &Path, size_bytes: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk(dir.to_path_buf())),
            failed => {
                let why = match failed {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("BALEEN_REQUIRE_MOUNT").as_deref() != Ok("1"),
                    "mounting a small tmpfs failed: {why}"
                );
                eprintln!("skipped: mounting a small tmpfs needs root ({why})");
                None
            }
        }
    }

    /// Fills the disk with a file at `path`, leaving `free` bytes (rounded to the page).
    pub fn fill(&self, path: &Path, free: u64) {
        let mut file = std::fs::File::create(path).unwrap();
        let chunk = vec![0x5au8; 1 << 16];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        let len = file.metadata().unwrap().len();
        file.set_len(len.saturating_sub(free)).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The `baleen` binary under test.
pub fn baleen_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("BALEEN_BIN") {
            return PathBuf::from(bin);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let bin = target.join("debug").join("baleen");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "server", "--bin", "baleen"])
            .current_dir(&root)
            .status()
            .expect("cargo build of baleen");
        assert!(status.success(), "building baleen failed");
        bin
    })
    .clone()
}

/// Runs `baleen` with arguments and returns its standard output, failing on error.
pub fn baleen(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(baleen_bin());
    cmd.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "baleen {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running server with its data directory, key and admin token.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token.
    pub token: String,
    /// An ingest key of app `shop`, which [`Server::client_config`] gives devices.
    pub ingest_key: String,
    /// The signing key (tests only).
    pub key: KeyPair,
    /// The temporary directory holding data and scratch files.
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Server {
    /// Generates a key and a token, and starts `baleen serve` on a free port.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// [`Server::start`] with extra `baleen serve` arguments.
    pub fn start_with(serve_args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Server::start_in(dir, &data, serve_args)
    }

    /// [`Server::start`] with its data directory at `data` (on a disk of the test's choosing).
    pub fn start_on(data: &Path) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), data, &[])
    }

    fn start_in(dir: tempfile::TempDir, data: &Path, serve_args: &[&str]) -> Server {
        baleen(
            &[
                "keys",
                "generate",
                "--dir",
                data.join("keys").to_str().unwrap(),
            ],
            &[],
        );
        let token = baleen(
            &[
                "token",
                "create",
                "--data-dir",
                data.to_str().unwrap(),
                "--name",
                "e2e",
                "--scope",
                "admin",
            ],
            &[],
        )
        .trim()
        .to_owned();
        let key = KeyPair::from_file_bytes(
            &std::fs::read(data.join("keys/signing.private.json")).unwrap(),
        )
        .unwrap();
        let mut child = Command::new(baleen_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .args(serve_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        let ingest_key = baleen(
            &["ingest-key", "create", "--app", "shop", "--name", "e2e"],
            &[
                ("BALEEN_SERVER", base.as_str()),
                ("BALEEN_TOKEN", token.as_str()),
            ],
        )
        .trim()
        .to_owned();
        Server {
            base,
            token,
            ingest_key,
            key,
            dir,
            child,
        }
    }

    /// A server with `checkout@1.0.0` of app `shop` published to `production` under [`ROUTE`],
    /// built by [`write_build`] with `variant`; returns the server and the build directory.
    pub fn with_first_release(variant: &str) -> (Server, PathBuf) {
        Server::with_first_release_using(variant, &[])
    }

    /// [`Server::with_first_release`] with extra `baleen serve` arguments.
    pub fn with_first_release_using(variant: &str, serve_args: &[&str]) -> (Server, PathBuf) {
        let server = Server::start_with(serve_args);
        let build = server.publish_first_release(variant);
        (server, build)
    }

    /// Publishes `checkout@1.0.0` of app `shop` to `production` under [`ROUTE`], built by
    /// [`write_build`] with `variant`; returns the build directory.
    pub fn publish_first_release(&self, variant: &str) -> PathBuf {
        let build = self.dir.path().join("dist");
        write_build(&build, variant);
        self.publish(
            &build,
            "checkout",
            "1.0.0",
            &["--channel", "production", "--route", ROUTE],
        );
        build
    }

    /// Environment for CLI calls against this server.
    pub fn env(&self) -> [(&str, &str); 2] {
        [
            ("BALEEN_SERVER", self.base.as_str()),
            ("BALEEN_TOKEN", self.token.as_str()),
        ]
    }

    /// Publishes a directory as `package@version` of app `shop`, optionally to a channel (made
    /// when new).
    pub fn publish(
        &self,
        dir: &Path,
        package: &str,
        version: &str,
        extra: &[&str],
    ) -> serde_json::Value {
        let mut args = vec![
            "publish",
            dir.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            package,
            "--version",
            version,
            "--json",
        ];
        args.extend_from_slice(extra);
        // Tests set channels up as they go: a publish to a channel makes it when new.
        if extra.contains(&"--channel") && !extra.contains(&"--create-channel") {
            args.push("--create-channel");
        }
        serde_json::from_str(&baleen(&args, &self.env())).unwrap()
    }

    /// Publishes a small build of `package` (variant: the package's name) as its 1.0.0 to
    /// `production`, served under `https://m.example.com/{package}/`, with `extra` publish flags;
    /// returns the build directory.
    pub fn publish_package(&self, package: &str, extra: &[&str]) -> PathBuf {
        let build = self.dir.path().join(package);
        write_build(&build, package);
        let route = format!("https://m.example.com/{package}/");
        let mut args = vec!["--channel", "production", "--route", route.as_str()];
        args.extend_from_slice(extra);
        self.publish(&build, package, "1.0.0", &args);
        build
    }

    /// `POST`s `zip` as a release of `package` of app `shop` with the publish `query`
    /// (`version=…&channel=…`); the status and the body, whatever they are.
    pub fn upload(&self, package: &str, query: &str, zip: &[u8]) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!(
            "{}/v1/admin/apps/shop/packages/{package}/releases?{query}",
            self.base
        );
        let mut response = agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/zip")
            .send(zip)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// Runs a release command (`promote`, `rollout`, `rollback`, …) on `package`@`production`.
    pub fn release(&self, command: &str, package: &str, extra: &[&str]) -> String {
        let mut args = vec![command, "--package", package, "--channel", "production"];
        args.extend_from_slice(extra);
        baleen(&args, &self.env())
    }

    /// `GET {base}{path}`: the status and the whole body (no size cap), as a device would see it.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        http_get(&format!("{}{path}", self.base))
    }

    /// A client for this server in a fresh store directory.
    pub fn client(&self, store: &Path, device_id: &str, host_version: &str) -> Client {
        Client::open(
            self.client_config(store, device_id, host_version),
            Arc::new(BuiltinFetcher::default()),
        )
        .unwrap()
    }

    /// The configuration [`Server::client`] uses.
    pub fn client_config(&self, store: &Path, device_id: &str, host_version: &str) -> Config {
        Config {
            dir: store.to_path_buf(),
            server: self.base.clone(),
            app: AppId::parse("shop").unwrap(),
            channel: Channel::parse("production").unwrap(),
            device_id: device_id.to_owned(),
            host_version: HostVersion::parse(host_version).unwrap(),
            trusted_keys: vec![self.key.public().clone()],
            threshold: 1,
            custom_scheme: Some("baleen".to_owned()),
            max_pending_launches: 2,
            sequence_floor: 0,
            ingest_key: Some(self.ingest_key.clone()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url`: the status and the whole body; HTTP errors are answers, not failures.
pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    use std::io::Read;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .read_to_end(&mut body)
        .unwrap();
    (status, body)
}

/// Waits (up to a minute) until the server serves `path`, a pack, as its final, immutable bytes
/// rather than the fast pack it serves first: for tests that compare a device's download with
/// the pack's bytes.
pub fn wait_for_final_pack(base: &str, path: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let response = agent.get(&format!("{base}{path}")).call().unwrap();
        let immutable = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("immutable"));
        if response.status().as_u16() == 200 && immutable {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} was not final within a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The active release of the device's first (in these tests, only) package.
pub fn active_version(client: &Client) -> String {
    client.status().packages[0]
        .active
        .as_ref()
        .expect("a release is active")
        .to_string()
}

/// Writes a small web build into `dir` (removing what was there); `variant` changes the script
/// and the hashed chunk name, as real builds do.
pub fn write_build(dir: &Path, variant: &str) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let chunk = format!(
        "assets/app-{}.js",
        &manifests::Digest::of(variant.as_bytes()).to_string()[..8]
    );
    std::fs::write(
        dir.join("index.html"),
        format!("<!doctype html><script src=\"{chunk}\"></script>{variant}"),
    )
    .unwrap();
    let script: String = (0..400)
        .map(|i| format!("function f{i}() {{ return '{variant}' + {i}; }}\n"))
        .collect();
    std::fs::write(dir.join(&chunk), script).unwrap();
    std::fs::write(dir.join("assets/vendor.js"), "/* vendor */\n".repeat(2_000)).unwrap();
    std::fs::write(dir.join("assets/site.css"), "body { margin: 0 }\n").unwrap();
    let mut logo = std::fs::File::create(dir.join("logo.png")).unwrap();
    logo.write_all(&[0x89, b'P', b'N', b'G', 13, 10, 26, 10])
        .unwrap();
}

/// A stored zip of every file under `dir`, as a publisher's CI uploads a build.
pub fn zip_of(dir: &Path) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (path, bytes) in files_of(dir) {
        writer.start_file(path, options).unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// Every file under `dir`, relative path → bytes.
pub fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Runs `client`'s one update call on unmetered Wi-Fi with power and space, so everything the
/// index offers installs now; returns what was installed and how its bytes came.
///
/// # Errors
/// The update's errors.
pub fn update_now(
    client: &client_core::Client,
) -> client_core::Result<Vec<(client_core::Update, client_core::install::Method)>> {
    let outcome = client.update(&client_core::Conditions::unrestricted())?;
    Ok(outcome
        .installed
        .into_iter()
        .map(|(update, report)| (update, report.method))
        .collect())
}
