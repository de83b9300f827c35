//! A real server on a free loopback port, over a temporary data directory, and a small HTTP
//! client for the tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use manifests::{KeyPair, TrustedKeys};
use server::data_dir::DataDir;
use server::meta_store::sqlite::SqliteMetaStore;
use server::meta_store::{MetaStore, Scope};
use server::service::{Service, Settings};

pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub service: Arc<Service>,
    pub admin: String,
    key: KeyPair,
    restarts: usize,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    runtime: Arc<tokio::runtime::Runtime>,
}

/// The seed of the second key every test server holds (see [`TestServer`]'s start).
pub const NEXT_INDEX_SEED: [u8; 32] = [43; 32];

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    pub fn start_with(tune: impl FnOnce(&mut Settings)) -> TestServer {
        TestServer::start_in(tempfile::tempdir().unwrap(), "admin", tune, |meta| meta)
    }

    /// A server whose metadata store is `wrap`ped (to count what the server reads, say).
    pub fn start_wrapped(
        wrap: impl FnOnce(Arc<dyn MetaStore>) -> Arc<dyn MetaStore>,
    ) -> TestServer {
        TestServer::start_in(tempfile::tempdir().unwrap(), "admin", |_| {}, wrap)
    }

    /// [`TestServer::start_wrapped`] with settings `tune`d.
    pub fn start_tuned_wrapped(
        tune: impl FnOnce(&mut Settings),
        wrap: impl FnOnce(Arc<dyn MetaStore>) -> Arc<dyn MetaStore>,
    ) -> TestServer {
        TestServer::start_in(tempfile::tempdir().unwrap(), "admin", tune, wrap)
    }

    /// Stops the server, lets `between` change its data directory, and starts a new server on it
    /// with the same key.
    pub fn restart(mut self, between: impl FnOnce(&Path)) -> TestServer {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let restarts = self.restarts + 1;
        drop(self);
        between(&dir.path().join("data"));
        let mut s = TestServer::start_in(dir, &format!("admin-{restarts}"), |_| {}, |meta| meta);
        s.restarts = restarts;
        s
    }

    /// A server in `dir` whose metadata store is `wrap`ped and whose file blob store (under
    /// `data/blobs`) makes its durable changes through `blob_fs` (a recorder).
    pub fn start_on(
        dir: tempfile::TempDir,
        wrap: impl FnOnce(Arc<dyn MetaStore>) -> Arc<dyn MetaStore>,
        blob_fs: Arc<dyn durable_fs::Fs>,
    ) -> TestServer {
        TestServer::start_on_fs(dir, "admin", |_| {}, wrap, blob_fs)
    }

    fn start_in(
        dir: tempfile::TempDir,
        admin: &str,
        tune: impl FnOnce(&mut Settings),
        wrap: impl FnOnce(Arc<dyn MetaStore>) -> Arc<dyn MetaStore>,
    ) -> TestServer {
        TestServer::start_on_fs(dir, admin, tune, wrap, durable_fs::RealFs::shared())
    }

    fn start_on_fs(
        dir: tempfile::TempDir,
        admin: &str,
        tune: impl FnOnce(&mut Settings),
        wrap: impl FnOnce(Arc<dyn MetaStore>) -> Arc<dyn MetaStore>,
        blob_fs: Arc<dyn durable_fs::Fs>,
    ) -> TestServer {
        let data = DataDir::new(dir.path().join("data"));
        let key = KeyPair::from_seed(&[42; 32]);
        let mut settings = data.settings();
        // No collection in the background unless a test asks for one.
        settings.gc_interval = None;
        tune(&mut settings);
        // As `DataDir::open` does, with the metadata store wrapped.
        std::fs::create_dir_all(data.root()).unwrap();
        if settings.staging_dir.exists() {
            std::fs::remove_dir_all(&settings.staging_dir).unwrap();
        }
        let blobs =
            server::blob_store::fs::FsBlobStore::open_on(data.root().join("blobs"), blob_fs)
                .unwrap();
        let meta = SqliteMetaStore::open(&data.root().join("meta.sqlite3")).unwrap();
        let service = Arc::new(
            Service::new(Arc::new(blobs), wrap(Arc::new(meta)), key.clone(), settings)
                .unwrap()
                // Held, unused until a key list names it: a rotation's new index key.
                .with_keys(vec![KeyPair::from_seed(&NEXT_INDEX_SEED)]),
        );
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        );
        let listener = runtime
            .block_on(server::http::bind("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let admin = runtime
            .block_on(service.create_token(
                &server::auth::TokenSpec::unbound(admin, Scope::Admin),
                "test",
            ))
            .unwrap()
            .secret;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (svc, rt) = (service.clone(), runtime.clone());
        let thread = std::thread::spawn(move || {
            rt.block_on(server::http::serve(svc, listener, async {
                let _ = stopped.await;
            }))
            .unwrap();
        });
        TestServer {
            base,
            dir,
            service,
            admin,
            key,
            restarts: 0,
            stop: Some(stop),
            thread: Some(thread),
            runtime,
        }
    }

    /// Runs `f` on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Waits until every pack job (fast and final stages) is over.
    pub fn settle_packs(&self) {
        self.runtime.block_on(self.service.pack_builds().settled());
    }

    pub fn trusted(&self) -> TrustedKeys {
        TrustedKeys::single(self.key.public().clone())
    }

    /// A token; one bound to a package acts in app `shop`.
    pub fn token(&self, name: &str, scope: Scope, package: Option<&str>) -> String {
        let package = package.map(|p| manifests::PackageId::parse(p).unwrap());
        let spec = server::auth::TokenSpec {
            name: name.into(),
            scope,
            app: package
                .as_ref()
                .map(|_| manifests::AppId::parse("shop").unwrap()),
            package,
            expires_in_secs: None,
        };
        self.runtime
            .block_on(self.service.create_token(&spec, "test"))
            .unwrap()
            .secret
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Every file under the data directory with its size, except SQLite's journal files, for
    /// "nothing changed" checks.
    pub fn blob_files(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        list(&self.data().join("blobs"), &mut out);
        out.sort();
        out
    }

    pub fn staging_files(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        list(&self.data().join("tmp"), &mut out);
        out
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.base, "GET", path, &[], None)
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(&self.base, "GET", path, headers, None)
    }

    /// GET with the admin token and `headers`.
    pub fn admin_get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let auth = format!("Bearer {}", self.admin);
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        request(&self.base, "GET", path, &all, None)
    }

    pub fn admin_get(&self, path: &str) -> Response {
        let auth = format!("Bearer {}", self.admin);
        request(&self.base, "GET", path, &[("Authorization", &auth)], None)
    }

    /// POSTs JSON. A channel change makes its channel when new (`create_channel`), as tests set
    /// channels up as they go; `an_unknown_channel_is_refused_with_the_app_s_channels` tests the
    /// flag itself, with `request`.
    pub fn post_json(&self, path: &str, token: &str, body: &serde_json::Value) -> Response {
        let auth = format!("Bearer {token}");
        let mut body = body.clone();
        if path.contains("/channels/")
            && let Some(object) = body.as_object_mut()
        {
            object
                .entry("create_channel")
                .or_insert(serde_json::Value::Bool(true));
        }
        let body = serde_json::to_vec(&body).unwrap();
        request(
            &self.base,
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        )
    }

    pub fn change(&self, package: &str, channel: &str, body: serde_json::Value) -> Response {
        self.post_json(
            &format!("/v1/admin/packages/{package}/channels/{channel}"),
            &self.admin,
            &body,
        )
    }

    pub fn publish(
        &self,
        token: &str,
        app: &str,
        package: &str,
        query: &str,
        zip: &[u8],
    ) -> Response {
        let auth = format!("Bearer {token}");
        // A publish to a channel makes it when new, as `post_json` does.
        let create = if query.contains("channel=") && !query.contains("create_channel") {
            "&create_channel=true"
        } else {
            ""
        };
        request(
            &self.base,
            "POST",
            &format!("/v1/admin/apps/{app}/packages/{package}/releases?{query}{create}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/zip"),
            ],
            Some(zip),
        )
    }

    /// Publishes `build(version)` as that version of `shop/checkout` (answering for
    /// `https://m.example.com/checkout/`), `channel` its channel if any, as the admin; asserts
    /// that it was created.
    pub fn publish_checkout(&self, version: &str, channel: Option<&str>) {
        let channel = channel.map(|c| format!("&channel={c}")).unwrap_or_default();
        let r = self.publish(
            &self.admin,
            "shop",
            "checkout",
            &format!("version={version}{channel}&routes=https://m.example.com/checkout/"),
            &zip_build(&build(version)),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }

    pub fn index_bytes(&self, app: &str, channel: &str) -> Vec<u8> {
        let r = self.get(&format!("/v1/apps/{app}/channels/{channel}/index"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.body
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn list(dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            list(&path, out);
        } else {
            out.push((path.display().to_string(), entry.metadata().unwrap().len()));
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The stable error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// One HTTP/1.1 request over a fresh connection, without a client library's retries or redirects.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let url = format!("{base}{path}");
    let mut req = ureq::http::Request::builder().method(method).uri(&url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = match body {
        Some(body) => agent.run(req.body(body.to_vec()).unwrap()),
        None => agent.run(req.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response
        .into_body()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    Response {
        status,
        headers,
        body,
    }
}

/// A zip of `(path, bytes)` entries, deflated.
pub fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A small web build, `variant` changing the script.
pub fn build(variant: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "index.html".into(),
            format!("<!doctype html><script src=app.js></script>{variant}").into_bytes(),
        ),
        (
            "app.js".into(),
            format!("console.log({variant:?});").into_bytes(),
        ),
        ("css/site.css".into(), b"body{margin:0}".to_vec()),
        ("img/logo.png".into(), vec![0x89, b'P', b'N', b'G', 1, 2, 3]),
    ]
}

pub fn zip_build(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    zip(&refs)
}
