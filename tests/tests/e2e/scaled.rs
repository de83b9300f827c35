//! The scaled setup, end to end: three `baleen serve --config scaled.toml` replicas on one
//! Garage bucket and one PostgreSQL database, nginx in front of them as the CDN edge
//! (`proxy_cache`, round robin with failover), and 1,000 devices (`client-core`, each with a
//! store of its own) updating from one real release of swagger-ui-dist to the next through the
//! edge, while
//!
//! - (a) the replica taking the publish is killed with `SIGKILL` with the upload half sent;
//! - (b) the replica the release is then published on is killed while it builds the release's
//!   packs (another replica answers `503` for the pack: the builder holds its lease);
//! - (c) PostgreSQL restarts while the devices are updating.
//!
//! Every device ends on the new release, having activated nothing else and failed no
//! verification; no index, at the edge or on any replica, ever names a release whose manifest or
//! blobs some live replica does not serve; and the edge's access log shows the requests and
//! bytes the fleet asked of the edge against those that reached the origin.
//!
//! Needs Garage, PostgreSQL, nginx and the real web apps (`BALEEN_WEBAPPS`); without one of them
//! the test says so and does nothing, unless `scripts/test` found it installed
//! (`BALEEN_REQUIRE_GARAGE`, `BALEEN_REQUIRE_POSTGRES`, `BALEEN_REQUIRE_NGINX`).

#[path = "../../../server/src/test_service.rs"]
mod test_service;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use client_core::{BaleenError, Client, Conditions, Config};
use manifests::{AppId, Channel, Digest, HostVersion, Index, KeyPair, PackageId, TrustedKeys};
use test_service::{Kind, TestService};
use tests::{baleen, baleen_bin, files_of, zip_of};

const DEVICES: usize = 1_000;
/// Threads updating devices: a device's update is mostly hashing, unpacking and fsyncs, and
/// the machine has two cores that the replicas, nginx, Garage and PostgreSQL share.
const THREADS: usize = 12;
const PACKAGE: &str = "swagger";
const ROUTE: &str = "https://m.example.com/swagger/";
/// Two adjacent real releases: the one every device starts on, and the one it must end on. The
/// pinned pair with the smallest change (5 of 32 files, 4 MB): every device stores what changed,
/// so the fleet writes 4 GB to disk (the largest pair would double that).
const RELEASES: [&str; 2] = ["5.33.2", "5.33.3"];
/// How often a device that found nothing to install checks again.
const POLL: Duration = Duration::from_secs(2);
/// How long the fleet may take, from the publish of the second release, to end on it.
const FLEET_DEADLINE: Duration = Duration::from_secs(240);
/// The `User-Agent` of the test's own watcher, whose requests the edge figures leave out.
const WATCHER_AGENT: &str = "baleen-scaled-watcher";

/// The unpacked builds of [`RELEASES`], or `None` (after saying so) without `BALEEN_WEBAPPS`.
fn webapps() -> Option<[PathBuf; 2]> {
    let Some(cache) = std::env::var_os("BALEEN_WEBAPPS") else {
        eprintln!(
            "SKIPPED scaled: set BALEEN_WEBAPPS to the cache dir printed by scripts/fetch-webapps.sh swagger-ui-dist"
        );
        return None;
    };
    let dirs = RELEASES.map(|v| PathBuf::from(&cache).join(format!("swagger-ui-dist@{v}/package")));
    for dir in &dirs {
        assert!(
            dir.is_dir(),
            "{} missing: run scripts/fetch-webapps.sh swagger-ui-dist",
            dir.display()
        );
    }
    Some(dirs)
}

/// nginx, from the `PATH` or the sbin directories Debian installs it in; `None` (after saying
/// so) when it is missing and `BALEEN_REQUIRE_NGINX` is unset.
fn nginx_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|bin| bin.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("BALEEN_REQUIRE_NGINX").is_none(),
            "BALEEN_REQUIRE_NGINX is set but no nginx is on the PATH or in /usr/sbin"
        );
        eprintln!(
            "SKIPPED scaled: no nginx (scripts/test installs it; set BALEEN_REQUIRE_NGINX to make this a failure)"
        );
    }
    found
}

/// A port free on the loopback interface now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited with {status}: {}", tail(log));
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {port}: {}",
            tail(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of a log file, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// One `baleen serve` replica on a fixed port (the edge's upstream list names it), with its own
/// data directory; its log goes to a file beside it.
struct Replica {
    name: &'static str,
    port: u16,
    data: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn new(name: &'static str, dir: &Path, config: &Path, env: &[(String, String)]) -> Replica {
        Replica {
            name,
            port: free_port(),
            data: dir.join(name),
            config: config.to_path_buf(),
            env: env.to_vec(),
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "replica {} runs already", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(baleen_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--index-max-age-secs", "1"])
            // A thousand devices report through one edge, one client address to the replicas.
            .args(["--events-per-address-per-minute", "0"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("listening on "),
            "replica {} did not start: {line:?}\n{}",
            self.name,
            tail(&self.log)
        );
        self.child = Some(child);
    }

    /// `SIGKILL`, as a crash or the kernel's OOM killer would.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("the replica runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Bytes of uploads this replica has staged in its data directory.
    fn staged_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        }
        walk(&self.data.join("tmp"))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("replica {} log (tail):\n{}", self.name, tail(&self.log));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// nginx as the CDN edge, in the foreground, with everything (config, cache, temp files, logs)
/// under its own directory; stopped by its process id.
struct Edge {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Edge {
    fn start(nginx: &Path, dir: &Path, upstreams: &[u16]) -> Edge {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let d = dir.display();
        // Run by root, nginx switches its workers to an unprivileged user that cannot enter a
        // private temp dir: keep them root (the test's own files, on loopback only).
        let user = if std::fs::metadata(dir).unwrap().uid() == 0 {
            "user root;"
        } else {
            ""
        };
        let servers: String = upstreams
            .iter()
            // max_fails=0: a replica answering 503 (a pack not built yet, or PostgreSQL away)
            // is healthy and must stay in the rotation; a killed one refuses the connection at
            // once on loopback, and the request goes on to the next.
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=0;\n"))
            .collect();
        let config = format!(
            r#"daemon off;
{user}
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    log_format edge '$msec|$status|$request_method|$request_uri|$bytes_sent|$body_bytes_sent|$upstream_cache_status|$upstream_addr|$upstream_status|$upstream_bytes_received|$request_time|$http_user_agent';
    access_log {d}/access.log edge;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=edge:16m max_size=4g inactive=1h use_temp_path=off;
    upstream origin {{
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_connect_timeout 2s;
        proxy_read_timeout 30s;
        # Failover: a killed replica (refused, reset) or one answering 5xx is skipped.
        proxy_next_upstream error timeout http_502 http_503 http_504;
        proxy_next_upstream_tries 3;
        # The cache: what the origin allows (immutable blobs, packs and manifests; fast packs
        # for their 30 s; the index and its deltas for 1 s, the replicas' --index-max-age-secs,
        # as an operator who wants releases out within seconds sets it), one request at a time per object, revalidated with its ETag, and
        # the last good copy while the origin fails.
        proxy_cache edge;
        proxy_cache_lock on;
        proxy_cache_revalidate on;
        proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
        add_header X-Edge-Cache $upstream_cache_status always;
        location / {{
            proxy_pass http://origin;
        }}
    }}
}}
"#
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let log = dir.join("error.log");
        let mut child = Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(&log)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, "nginx", &mut child, &dir.join("stderr.log"));
        Edge {
            port,
            dir: dir.to_path_buf(),
            child: Some(child),
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A fast shutdown (`SIGTERM` to the master, which stops its workers), then `SIGKILL` if it
    /// lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "nginx error log (tail):\n{}",
                tail(&self.dir.join("error.log"))
            );
        }
        self.stop();
    }
}

/// An HTTP answer as the test reads it.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET url` with `headers`: the answer, or the transport error (a killed replica).
fn get(url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent.get(url).header("User-Agent", WATCHER_AGENT);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.call().map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .read_to_end(&mut body)
        .map_err(|e| format!("GET {url}: body: {e}"))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// (a) Starts publishing `zip` on `replica` over a raw connection, sends half of it, waits until
/// the replica has staged part of the upload, and kills it with `SIGKILL` there: mid-publish.
/// Returns the bytes the replica had staged when it died.
fn publish_and_kill_mid_upload(replica: &mut Replica, token: &str, query: &str, zip: &[u8]) -> u64 {
    let mut stream = TcpStream::connect(("127.0.0.1", replica.port)).unwrap();
    let head = format!(
        "POST /v1/admin/apps/shop/packages/{PACKAGE}/releases?{query} HTTP/1.1\r\n\
         Host: 127.0.0.1:{}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/zip\r\nContent-Length: {}\r\n\r\n",
        replica.port,
        zip.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let half = zip.len() / 2;
    stream.write_all(&zip[..half]).unwrap();
    stream.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let staged = loop {
        let staged = replica.staged_bytes();
        if staged >= 1 << 20 {
            break staged;
        }
        assert!(
            Instant::now() < deadline,
            "replica {} staged only {staged} bytes of the upload: {}",
            replica.name,
            tail(&replica.log)
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        staged < zip.len() as u64,
        "the whole upload arrived before the kill"
    );
    replica.kill9();
    // The rest has nowhere to go, and no answer comes.
    let rest = stream.write_all(&zip[half..]);
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    assert!(
        !answer.contains(" 201 ") && !answer.contains(" 200 "),
        "a killed replica answered the publish: {answer:?} ({rest:?}, {read:?})"
    );
    staged
}

/// Counts what the whole fleet fetched, as the devices saw it.
#[derive(Debug, Default)]
struct FleetNet {
    inner: BuiltinFetcher,
    requests: AtomicU64,
    bytes: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
}

impl Fetcher for FleetNet {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        match self.inner.fetch(request) {
            Ok(response) => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.bytes
                    .fetch_add(response.body.len() as u64, Ordering::Relaxed);
                if response.status >= 500 {
                    self.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                Ok(response)
            }
            Err(e) => {
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

fn device_config(dir: &Path, edge: &str, id: &str, key: &KeyPair, ingest_key: &str) -> Config {
    Config {
        dir: dir.to_path_buf(),
        server: edge.to_owned(),
        app: AppId::parse("shop").unwrap(),
        channel: Channel::parse("production").unwrap(),
        device_id: id.to_owned(),
        host_version: HostVersion::parse("6.0").unwrap(),
        trusted_keys: vec![key.public().clone()],
        threshold: 1,
        custom_scheme: Some("baleen".to_owned()),
        max_pending_launches: 2,
        sequence_floor: 0,
        ingest_key: Some(ingest_key.to_owned()),
    }
}

/// A device store made from `template`'s: blobs are hard links (immutable, named by content,
/// and never written in place: a device writes a new blob to `tmp/` and renames it, and
/// collecting one unlinks only this store's name), everything else is copied.
fn copy_store(template: &Path, to: &Path) {
    fn walk(from: &Path, to: &Path, link: bool) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let (source, dest) = (entry.path(), to.join(entry.file_name()));
            if entry.file_type().unwrap().is_dir() {
                let link = link || entry.file_name() == "blobs";
                walk(&source, &dest, link);
            } else if link {
                std::fs::hard_link(&source, &dest).unwrap();
            } else {
                std::fs::copy(&source, &dest).unwrap();
            }
        }
    }
    walk(template, to, false);
}

/// The fleet's devices, each taken by one thread at a time.
type Slots = Vec<Mutex<Option<Device>>>;

/// One simulated device.
struct Device {
    id: String,
    client: Client,
    /// The highest index sequence it accepted so far.
    sequence: u64,
    updates: u32,
}

/// What the fleet did, shared by the worker threads.
#[derive(Default)]
struct Fleet {
    done: AtomicUsize,
    checks: AtomicUsize,
    /// Update calls that failed with a network error (retried).
    network_errors: AtomicUsize,
    /// Installs by method.
    methods: Mutex<BTreeMap<String, usize>>,
    /// Why an install left a cheaper source, by kind.
    fallbacks: Mutex<BTreeMap<String, usize>>,
    /// Anything a device must never see: another release activated, a verification failure, an
    /// index sequence going back, a storage error.
    violations: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Fleet {
    fn violation(&self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.violations.lock().unwrap().push(what);
    }
}

/// A fallback's kind, so that integrity failures stand out from a pack not built yet.
fn fallback_kind(message: &str) -> String {
    if message.contains("HTTP 503") {
        "pack not ready (503)".to_owned()
    } else if message.contains("HTTP 5") || message.contains("network") || message.contains(": io")
    {
        format!("network: {message}")
    } else {
        format!("OTHER: {message}")
    }
}

/// One update call for device `d`; returns whether it is done (active on the new release).
fn update_device(d: &mut Device, fleet: &Fleet, changed: &BTreeMap<String, Vec<u8>>) -> bool {
    let package = PackageId::parse(PACKAGE).unwrap();
    fleet.checks.fetch_add(1, Ordering::Relaxed);
    match d.client.update(&Conditions::unrestricted()) {
        Ok(outcome) => {
            for (update, report) in &outcome.installed {
                d.updates += 1;
                let to = update.to.version.to_string();
                if to != RELEASES[1]
                    || update.from.as_ref().map(ToString::to_string).as_deref() != Some(RELEASES[0])
                {
                    fleet.violation(format!("{}: installed {:?} -> {to}", d.id, update.from));
                }
                *fleet
                    .methods
                    .lock()
                    .unwrap()
                    .entry(format!("{:?}", report.method))
                    .or_default() += 1;
                let mut fallbacks = fleet.fallbacks.lock().unwrap();
                for f in &report.fallbacks {
                    *fallbacks.entry(fallback_kind(f)).or_default() += 1;
                }
            }
            if !outcome.waiting.is_empty() {
                fleet.violation(format!("{}: waiting {:?}", d.id, outcome.waiting));
            }
        }
        Err(e) => match BaleenError::from(e) {
            BaleenError::Network { .. } => {
                fleet.network_errors.fetch_add(1, Ordering::Relaxed);
            }
            other => fleet.violation(format!("{}: {other}", d.id)),
        },
    }
    let status = d.client.status();
    if status.sequence < d.sequence {
        fleet.violation(format!(
            "{}: index sequence went back from {} to {}",
            d.id, d.sequence, status.sequence
        ));
    }
    d.sequence = status.sequence;
    let active = status.packages[0].active.as_ref().map(ToString::to_string);
    match active.as_deref() {
        Some(v) if v == RELEASES[1] => {}
        Some(v) if v == RELEASES[0] => return false,
        other => {
            fleet.violation(format!("{}: active {other:?}", d.id));
            return false;
        }
    }
    // The page works: the app says so, as it would after opening it.
    if let Err(e) = d.client.mark_ready(&package) {
        fleet.violation(format!("{}: mark_ready: {e}", d.id));
    }
    // What changed is served byte for byte from the device's own store.
    for (path, bytes) in changed {
        let url = format!("{ROUTE}{path}");
        match d.client.resolve(&url) {
            Some(hit) if std::fs::read(&hit.path).ok().as_ref() == Some(bytes) => {}
            Some(_) => fleet.violation(format!("{}: {url} serves other bytes", d.id)),
            None => fleet.violation(format!("{}: {url} does not resolve", d.id)),
        }
    }
    true
}

/// Runs the fleet on `THREADS` threads until every device is on the new release or `stop`.
/// Returns the threads and the devices, to take back once the threads are joined.
fn run_fleet(
    devices: Vec<Device>,
    fleet: &Arc<Fleet>,
    changed: &Arc<BTreeMap<String, Vec<u8>>>,
) -> (Vec<std::thread::JoinHandle<()>>, Arc<Slots>) {
    let count = devices.len();
    let slots: Arc<Slots> = Arc::new(devices.into_iter().map(|d| Mutex::new(Some(d))).collect());
    let now = Instant::now();
    // Every device checks within the first poll interval, spread evenly.
    let due: BinaryHeap<Reverse<(Instant, usize)>> = (0..count)
        .map(|i| Reverse((now + POLL.mul_f64(i as f64 / count as f64), i)))
        .collect();
    let queue = Arc::new(Mutex::new(due));
    let threads = (0..THREADS)
        .map(|_| {
            let (slots, queue, fleet, changed) =
                (slots.clone(), queue.clone(), fleet.clone(), changed.clone());
            std::thread::spawn(move || {
                loop {
                    if fleet.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let next = {
                        let mut queue = queue.lock().unwrap();
                        match queue.peek() {
                            None => None,
                            Some(Reverse((at, _))) if *at > Instant::now() => Some(Err(*at)),
                            Some(_) => queue.pop().map(|Reverse((_, i))| Ok(i)),
                        }
                    };
                    let i = match next {
                        None if fleet.done.load(Ordering::Relaxed) == count => break,
                        None => {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                        Some(Err(at)) => {
                            let wait = at.saturating_duration_since(Instant::now());
                            std::thread::sleep(wait.min(Duration::from_millis(20)));
                            continue;
                        }
                        Some(Ok(i)) => i,
                    };
                    let mut slot = slots[i].lock().unwrap();
                    let device = slot.as_mut().unwrap();
                    if update_device(device, &fleet, &changed) {
                        fleet.done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        queue
                            .lock()
                            .unwrap()
                            .push(Reverse((Instant::now() + POLL, i)));
                    }
                }
            })
        })
        .collect();
    (threads, slots)
}

/// Stops the fleet and the watcher when dropped, so that a failing test leaves no thread polling.
struct StopAll(Arc<Fleet>, Arc<Watch>);

impl Drop for StopAll {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
        self.1.stop.store(true, Ordering::Relaxed);
    }
}

/// What the test's own watcher saw: every index, at the edge and on each replica, checked
/// against what live replicas serve.
#[derive(Default)]
struct Watch {
    /// The highest sequence seen per source.
    sequences: Mutex<BTreeMap<String, u64>>,
    /// (replica, manifest) pairs whose manifest and every blob were served and verified.
    verified: Mutex<BTreeSet<(u16, Digest)>>,
    indexes: AtomicUsize,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Watch {
    fn fail(&self, what: String) {
        eprintln!("WATCH FAILURE: {what}");
        self.failures.lock().unwrap().push(what);
    }

    /// One pass over the sources.
    fn pass(&self, edge: &str, replicas: &[u16], trusted: &TrustedKeys) {
        let index_path = "/v1/apps/shop/channels/production/index";
        let sources = std::iter::once(("edge".to_owned(), edge.to_owned())).chain(
            replicas
                .iter()
                .map(|p| (format!("replica :{p}"), format!("http://127.0.0.1:{p}"))),
        );
        for (name, base) in sources {
            let Ok(answer) = get(&format!("{base}{index_path}"), &[]) else {
                continue; // a replica killed
            };
            match answer.status {
                200 => {}
                503 => continue, // PostgreSQL away
                s => {
                    self.fail(format!("{name}: index answered {s}"));
                    continue;
                }
            }
            let index = match manifests::open(&answer.body, trusted).and_then(|opened| {
                manifests::parse_index_unverified(&serde_json::to_vec(&opened.signed).unwrap())
            }) {
                Ok(index) => index,
                Err(e) => {
                    self.fail(format!("{name}: an index that does not verify: {e}"));
                    continue;
                }
            };
            self.indexes.fetch_add(1, Ordering::Relaxed);
            {
                let mut sequences = self.sequences.lock().unwrap();
                let seen = sequences.entry(name.clone()).or_default();
                if index.sequence < *seen {
                    self.fail(format!(
                        "{name}: index sequence went back from {seen} to {}",
                        index.sequence
                    ));
                }
                *seen = (*seen).max(index.sequence);
            }
            self.check_servable(&name, &index, replicas, trusted);
        }
    }

    /// Every release `index` names is served whole (manifest, every blob) by every live replica.
    fn check_servable(&self, source: &str, index: &Index, replicas: &[u16], trusted: &TrustedKeys) {
        for release in index
            .packages
            .values()
            .flat_map(manifests::PackageEntry::releases)
        {
            for &port in replicas {
                if self
                    .verified
                    .lock()
                    .unwrap()
                    .contains(&(port, release.manifest))
                {
                    continue;
                }
                let base = format!("http://127.0.0.1:{port}");
                match servable(&base, &release.manifest, trusted) {
                    Ok(true) => {
                        self.verified
                            .lock()
                            .unwrap()
                            .insert((port, release.manifest));
                    }
                    Ok(false) => {} // down or unavailable now: asked again next pass
                    Err(e) => self.fail(format!(
                        "index {} from {source} names {PACKAGE}@{} but replica :{port}: {e}",
                        index.sequence, release.version
                    )),
                }
            }
        }
    }
}

/// Whether `base` serves the manifest `digest` and every blob it lists, each verified: `Ok(false)`
/// when the replica is down or unavailable (killed, or PostgreSQL away), an error when something
/// is missing or wrong.
fn servable(base: &str, digest: &Digest, trusted: &TrustedKeys) -> Result<bool, String> {
    let Ok(manifest) = get(&format!("{base}/v1/manifests/{digest}"), &[]) else {
        return Ok(false);
    };
    match manifest.status {
        200 => {}
        503 => return Ok(false),
        s => return Err(format!("manifest {digest} answered {s}")),
    }
    let release = manifests::verify_release(&manifest.body, trusted, Some(digest))
        .map_err(|e| format!("manifest {digest} does not verify: {e}"))?
        .release;
    let blobs: BTreeSet<Digest> = release.files.values().map(|f| f.sha256).collect();
    for blob in blobs {
        let Ok(answer) = get(&format!("{base}/v1/blobs/{blob}"), &[]) else {
            return Ok(false);
        };
        match answer.status {
            200 if Digest::of(&answer.body) == blob => {}
            200 => return Err(format!("blob {blob} has other bytes")),
            503 => return Ok(false),
            s => return Err(format!("blob {blob} answered {s}")),
        }
    }
    Ok(true)
}

/// One line of the edge's access log.
struct Logged {
    at: f64,
    status: u16,
    uri: String,
    bytes_sent: u64,
    cache: String,
    /// Each attempt on the origin: its status and the bytes received from it.
    upstream: Vec<(String, u64)>,
    agent: String,
}

fn read_access_log(path: &Path) -> Vec<Logged> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.splitn(12, '|').collect();
            assert_eq!(f.len(), 12, "unexpected access log line {line:?}");
            let list = |s: &str| -> Vec<String> {
                s.split([',', ':'])
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .collect()
            };
            let statuses = if f[8] == "-" { Vec::new() } else { list(f[8]) };
            let bytes: Vec<u64> = if f[9] == "-" {
                Vec::new()
            } else {
                list(f[9]).iter().map(|b| b.parse().unwrap_or(0)).collect()
            };
            Logged {
                at: f[0].parse().unwrap(),
                status: f[1].parse().unwrap(),
                uri: f[3].to_owned(),
                bytes_sent: f[4].parse().unwrap(),
                cache: f[6].to_owned(),
                upstream: statuses.into_iter().zip(bytes).collect(),
                agent: f[11].to_owned(),
            }
        })
        .collect()
}

fn route_kind(uri: &str) -> &'static str {
    if uri.contains("/index") {
        "index"
    } else if uri.starts_with("/v1/manifests/") {
        "manifest"
    } else if uri.starts_with("/v1/packs/") {
        "pack"
    } else if uri.starts_with("/v1/blobs/") {
        "blob"
    } else {
        "other"
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    requests: u64,
    bytes: u64,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_thousand_devices_update_through_a_cdn_edge_while_replicas_die_and_postgres_restarts() {
    let name = "scaled::a_thousand_devices_update_through_a_cdn_edge_while_replicas_die_and_postgres_restarts";
    let started = Instant::now();
    let Some(builds) = webapps() else { return };
    let Some(nginx) = nginx_bin() else { return };
    let Some(garage) = TestService::start(Kind::Garage, name) else {
        return;
    };
    let Some(mut postgres) = TestService::start(Kind::Postgres, name) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = postgres.var("BALEEN_PG_URL").unwrap();
    let config = dir.path().join("scaled.toml");
    std::fs::write(
        &config,
        format!("[storage]\nblobs = \"s3://baleen\"\nmeta = \"{url}\"\n"),
    )
    .unwrap();
    let env: Vec<(String, String)> = garage.env.clone().into_iter().collect();
    let mut replicas = ["a", "b", "c"].map(|n| Replica::new(n, dir.path(), &config, &env));
    // One signing key, copied into each replica's data directory.
    let keys = replicas[0].data.join("keys");
    baleen(&["keys", "generate", "--dir", keys.to_str().unwrap()], &[]);
    for replica in &replicas[1..] {
        std::fs::create_dir_all(replica.data.join("keys")).unwrap();
        for entry in std::fs::read_dir(&keys).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                replica.data.join("keys").join(entry.file_name()),
            )
            .unwrap();
        }
    }
    let key = KeyPair::from_file_bytes(&std::fs::read(keys.join("signing.private.json")).unwrap())
        .unwrap();
    let trusted = TrustedKeys::new(vec![key.public().clone()], 1).unwrap();
    let token = baleen(
        &[
            "token", "create", "--meta", &url, "--name", "ci", "--scope", "admin",
        ],
        &[],
    )
    .trim()
    .to_owned();
    for replica in &mut replicas {
        replica.start();
    }
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let mut edge = Edge::start(&nginx, &dir.path().join("edge"), &ports);
    let edge_base = edge.base();
    let cli = |replica: &Replica, args: &[&str]| {
        let base = replica.base();
        baleen(args, &[("BALEEN_SERVER", &base), ("BALEEN_TOKEN", &token)])
    };

    let ingest_key = cli(
        &replicas[0],
        &["ingest-key", "create", "--app", "shop", "--name", "fleet"],
    )
    .trim()
    .to_owned();

    // Release 1, published by CI on replica A, installed by one device through the edge; the
    // fleet starts from copies of that device's store.
    let [first, second] = &builds;
    cli(
        &replicas[0],
        &[
            "publish",
            first.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            PACKAGE,
            "--version",
            RELEASES[0],
            "--route",
            ROUTE,
            "--channel",
            "production",
            "--create-channel",
        ],
    );
    let template = dir.path().join("template");
    {
        let client = Client::open(
            device_config(&template, &edge_base, "template", &key, &ingest_key),
            Arc::new(BuiltinFetcher::default()),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.status().packages.is_empty() {
            let outcome = tests::update_now(&client);
            assert!(
                Instant::now() < deadline,
                "the template device never installed {}: {outcome:?}",
                RELEASES[0]
            );
            if client.status().packages.is_empty() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        assert_eq!(tests::active_version(&client), RELEASES[0]);
        client
            .mark_ready(&PackageId::parse(PACKAGE).unwrap())
            .unwrap();
    }
    let stores = dir.path().join("devices");
    let net = Arc::new(FleetNet::default());
    let devices: Vec<Device> = std::thread::scope(|scope| {
        let chunks: Vec<_> = (0..DEVICES)
            .collect::<Vec<_>>()
            .chunks(DEVICES / THREADS + 1)
            .map(<[usize]>::to_vec)
            .map(|chunk| {
                let (template, stores, edge_base, key, net, ingest_key) =
                    (&template, &stores, &edge_base, &key, &net, &ingest_key);
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|i| {
                            let id = format!("device-{i:04}");
                            let store = stores.join(&id);
                            copy_store(template, &store);
                            let client = Client::open(
                                device_config(&store, edge_base, &id, key, ingest_key),
                                net.clone(),
                            )
                            .unwrap();
                            assert_eq!(tests::active_version(&client), RELEASES[0]);
                            Device {
                                id,
                                client,
                                sequence: 0,
                                updates: 0,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let setup = started.elapsed();
    eprintln!("setup (services, replicas, edge, release 1, {DEVICES} device stores): {setup:?}");

    // What changed between the releases: each device must serve these bytes at the end.
    let old: BTreeMap<String, Vec<u8>> = files_of(first).into_iter().collect();
    let new: BTreeMap<String, Vec<u8>> = files_of(second).into_iter().collect();
    let changed: Arc<BTreeMap<String, Vec<u8>>> = Arc::new(
        new.iter()
            .filter(|(path, bytes)| old.get(*path) != Some(*bytes))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect(),
    );
    assert!(!changed.is_empty(), "{} changes nothing", RELEASES[1]);
    eprintln!(
        "{} -> {}: {} of {} files changed, {:.1} MB that every device downloads and stores",
        RELEASES[0],
        RELEASES[1],
        changed.len(),
        new.len(),
        mb(changed.values().map(|b| b.len() as u64).sum())
    );

    // The watcher and the fleet run from here to the end.
    let watch = Arc::new(Watch::default());
    let watcher = {
        let (watch, edge_base, ports, trusted) = (
            watch.clone(),
            edge_base.clone(),
            ports.clone(),
            trusted.clone(),
        );
        std::thread::spawn(move || {
            while !watch.stop.load(Ordering::Relaxed) {
                watch.pass(&edge_base, &ports, &trusted);
                std::thread::sleep(Duration::from_millis(200));
            }
            // One last pass, so the final index is checked on every live replica.
            watch.pass(&edge_base, &ports, &trusted);
        })
    };
    let fleet = Arc::new(Fleet::default());
    let _stop_all = StopAll(fleet.clone(), watch.clone());
    let fleet_started = Instant::now();
    let fleet_epoch = now_epoch();
    let (workers, slots) = run_fleet(devices, &fleet, &changed);
    // Every device checks once before anything happens.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.checks.load(Ordering::Relaxed) < DEVICES {
        assert!(Instant::now() < deadline, "the fleet never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("every device checked once: {:?}", fleet_started.elapsed());

    // (a) Release 2 published on replica A, killed with SIGKILL when half the upload is sent.
    let zip = zip_of(second);
    let checks_before = fleet.checks.load(Ordering::Relaxed);
    let query = format!("version={}&channel=production", RELEASES[1]);
    let staged = publish_and_kill_mid_upload(&mut replicas[0], &token, &query, &zip);
    eprintln!(
        "(a) replica a killed mid-publish with {staged} of {} bytes staged",
        zip.len()
    );
    // No half release anywhere: the survivors know no release 2, and their index is unchanged.
    for replica in &replicas[1..] {
        let listed = cli(replica, &["releases", "--package", PACKAGE, "--json"]);
        assert!(
            !listed.contains(RELEASES[1]),
            "replica {} lists a release the killed publish left: {listed}",
            replica.name
        );
        let index = get(
            &format!("{}/v1/apps/shop/channels/production/index", replica.base()),
            &[],
        )
        .unwrap();
        assert!(
            !String::from_utf8_lossy(&index.body).contains(RELEASES[1]),
            "replica {} serves an index naming {}",
            replica.name,
            RELEASES[1]
        );
    }
    // Devices keep checking against the two survivors for a moment, then A comes back (as its
    // supervisor would restart it) and finds nothing of the killed upload left in its data dir.
    std::thread::sleep(Duration::from_secs(2));
    replicas[0].start();
    eprintln!(
        "(a) the fleet checked {} times while replica a was down; none saw a release 2",
        fleet.checks.load(Ordering::Relaxed) - checks_before
    );
    assert_eq!(
        replicas[0].staged_bytes(),
        0,
        "the killed upload's staging files survived a restart"
    );

    // (b) Release 2 published and promoted by CI on replica B, which is killed while it builds
    // the release's packs: C answers "not ready" for the full pack because B holds its lease.
    let published = Instant::now();
    let published_epoch = now_epoch();
    cli(
        &replicas[1],
        &[
            "publish",
            second.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            PACKAGE,
            "--version",
            RELEASES[1],
            "--channel",
            "production",
        ],
    );
    let publish_took = published.elapsed();
    // B starts its jobs as it answers; give it a moment to take their leases before asking C,
    // which would otherwise take the job itself.
    std::thread::sleep(Duration::from_millis(300));
    let full = format!(
        "{}/v1/packs/{PACKAGE}/{}.zip",
        replicas[2].base(),
        RELEASES[1]
    );
    let bearer = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get(&full, &[("Authorization", &bearer)]).unwrap();
        if answer.status == 503 {
            break;
        }
        assert!(
            answer.status == 200
                && !answer
                    .header("cache-control")
                    .is_some_and(|c| c.contains("immutable")),
            "replica c answered {} for the full pack before b was killed: b built it already?",
            answer.status
        );
        assert!(
            Instant::now() < deadline,
            "b never held the pack job of {}",
            RELEASES[1]
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    replicas[1].kill9();
    let killed_b = published.elapsed();
    eprintln!(
        "(b) release 2 published on b in {publish_took:?}; b killed mid-pack-build {killed_b:?} after the publish began"
    );

    // (c) PostgreSQL restarts while the fleet is updating: once a tenth of it is done.
    let deadline = Instant::now() + FLEET_DEADLINE;
    while fleet.done.load(Ordering::Relaxed) < DEVICES / 10 {
        assert!(
            Instant::now() < deadline,
            "only {} devices updated",
            fleet.done.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let done_before = fleet.done.load(Ordering::Relaxed);
    let restart_from = now_epoch();
    let restarting = Instant::now();
    postgres.restart();
    let restart_took = restarting.elapsed();
    let restart_to = now_epoch();
    let done_after = fleet.done.load(Ordering::Relaxed);
    eprintln!(
        "(c) PostgreSQL restarted in {restart_took:?} with {done_before} devices done before and {done_after} after"
    );
    assert!(
        done_before < DEVICES,
        "the fleet had finished before PostgreSQL restarted"
    );

    // Every device ends on release 2.
    let mut report = Instant::now();
    while fleet.done.load(Ordering::Relaxed) < DEVICES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        if report.elapsed() >= Duration::from_secs(10) {
            report = Instant::now();
            eprintln!(
                "  {:?} after the publish: {} devices done, {} update calls",
                published.elapsed(),
                fleet.done.load(Ordering::Relaxed),
                fleet.checks.load(Ordering::Relaxed)
            );
        }
    }
    let fleet_took = published.elapsed();
    fleet.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let devices: Vec<Device> = slots
        .iter()
        .filter_map(|slot| slot.lock().unwrap().take())
        .collect();
    watch.stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let done = fleet.done.load(Ordering::Relaxed);
    eprintln!(
        "fleet: {done} of {DEVICES} devices on {} {fleet_took:?} after the publish began; {} update calls, {} network errors retried",
        RELEASES[1],
        fleet.checks.load(Ordering::Relaxed),
        fleet.network_errors.load(Ordering::Relaxed)
    );
    eprintln!(
        "installs by method: {:?}; fallbacks: {:?}",
        fleet.methods.lock().unwrap(),
        fleet.fallbacks.lock().unwrap()
    );
    eprintln!(
        "devices saw {} responses ({:.1} MB of bodies), {} of them 5xx, and {} transport errors",
        net.requests.load(Ordering::Relaxed),
        mb(net.bytes.load(Ordering::Relaxed)),
        net.server_errors.load(Ordering::Relaxed),
        net.transport_errors.load(Ordering::Relaxed)
    );
    assert_eq!(devices.len(), DEVICES);
    assert_eq!(
        done,
        DEVICES,
        "{} devices did not reach {} within {FLEET_DEADLINE:?}",
        DEVICES - done,
        RELEASES[1]
    );
    let violations = fleet.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "devices saw: {violations:#?}");
    let integrity: Vec<_> = fleet
        .fallbacks
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("OTHER"))
        .cloned()
        .collect();
    assert!(
        integrity.is_empty(),
        "an install left a source for a reason other than availability: {integrity:?}"
    );
    for d in &devices {
        let status = d.client.status();
        let p = &status.packages[0];
        assert_eq!(
            p.active.as_ref().map(ToString::to_string).as_deref(),
            Some(RELEASES[1]),
            "{}",
            d.id
        );
        assert_eq!(
            p.previous.as_ref().map(ToString::to_string).as_deref(),
            Some(RELEASES[0]),
            "{}",
            d.id
        );
        assert!(!p.pending, "{}: still pending", d.id);
        assert!(status.quarantined.is_empty(), "{}: quarantined", d.id);
        assert_eq!(d.updates, 1, "{}: installed {} times", d.id, d.updates);
        assert_eq!(status.files, new.len(), "{}", d.id);
        assert!(
            d.client.store().temp_files().unwrap().is_empty(),
            "{}: temp files left",
            d.id
        );
        for (path, bytes) in &new {
            let hit = d
                .client
                .resolve(&format!("{ROUTE}{path}"))
                .unwrap_or_else(|| panic!("{}: {path} does not resolve", d.id));
            assert_eq!(hit.size, bytes.len() as u64, "{}: {path}", d.id);
            assert_eq!(hit.version.to_string(), RELEASES[1]);
        }
    }

    // What the devices report: each opens the page once (from its store), then sends its
    // events through the edge. The server counts installs, activations and failures by release.
    let device_responses = net.requests.load(Ordering::Relaxed);
    let flush_epoch = now_epoch();
    std::thread::scope(|scope| {
        for chunk in devices.chunks(DEVICES.div_ceil(THREADS)) {
            scope.spawn(move || {
                for d in chunk {
                    d.client.report_open(&format!("{ROUTE}index.html"), 120);
                    let mut tries = 0;
                    while let Err(e) = d.client.flush_events() {
                        tries += 1;
                        assert!(tries < 20, "{}: events not sent: {e}", d.id);
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            });
        }
    });
    let stats: serde_json::Value = serde_json::from_str(&cli(
        &replicas[2],
        &[
            "stats",
            "--app",
            "shop",
            "--channel",
            "production",
            "--json",
        ],
    ))
    .unwrap();
    eprintln!("the server's stats of the channel: {stats}");
    let count = |version: &str, field: &str| {
        stats
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["version"] == version)
            .map(|r| r[field].as_u64().unwrap())
            .sum::<u64>()
    };
    for field in ["installed", "activated", "ready", "opens", "offline_hits"] {
        assert_eq!(
            count(RELEASES[1], field),
            DEVICES as u64,
            "{field} of {} reported",
            RELEASES[1]
        );
    }
    for report in stats.as_array().unwrap() {
        assert!(
            report["failed"] == 0 && report["rolled_back"] == 0,
            "devices reported failures: {report}"
        );
        assert!(
            report["version"] == RELEASES[1] || report["activated"] == 0,
            "devices reported activating another release: {report}"
        );
    }

    // No index anyone was served named a release that was not whole.
    let failures = watch.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "indexes named releases not served whole: {failures:#?}"
    );
    let sequences = watch.sequences.lock().unwrap().clone();
    let verified = watch.verified.lock().unwrap().clone();
    eprintln!(
        "watcher: {} indexes checked, highest sequences {sequences:?}, {} (replica, release) pairs verified whole",
        watch.indexes.load(Ordering::Relaxed),
        verified.len()
    );
    for replica in [&replicas[0], &replicas[2]] {
        assert!(
            verified.iter().filter(|(p, _)| *p == replica.port).count() >= 2,
            "replica {} was never seen serving both releases whole",
            replica.name
        );
    }

    // The edge's figures: every request of the fleet, and those that reached the origin.
    edge.stop();
    let log = read_access_log(&edge.dir.join("access.log"));
    let fleet_lines: Vec<&Logged> = log
        .iter()
        .filter(|l| l.agent != WATCHER_AGENT && (fleet_epoch..flush_epoch).contains(&l.at))
        .collect();
    let mut edge_total = Tally::default();
    let mut origin_total = Tally::default();
    let mut by_kind: BTreeMap<&str, (Tally, Tally)> = BTreeMap::new();
    let mut by_cache: BTreeMap<String, u64> = BTreeMap::new();
    let mut origin_statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut refused = 0;
    let mut during_restart: BTreeMap<String, u64> = BTreeMap::new();
    for l in &fleet_lines {
        let (edge_kind, origin_kind) = by_kind.entry(route_kind(&l.uri)).or_default();
        edge_total.requests += 1;
        edge_total.bytes += l.bytes_sent;
        edge_kind.requests += 1;
        edge_kind.bytes += l.bytes_sent;
        *by_cache.entry(l.cache.clone()).or_default() += 1;
        let restarting = (restart_from..=restart_to + 1.0).contains(&l.at);
        if restarting {
            *during_restart
                .entry(format!("edge {} {}", route_kind(&l.uri), l.status))
                .or_default() += 1;
        }
        for (status, bytes) in &l.upstream {
            // A refused connection (a killed replica) never reached an origin.
            if *bytes == 0 {
                refused += 1;
                continue;
            }
            *origin_statuses.entry(status.clone()).or_default() += 1;
            if restarting {
                *during_restart
                    .entry(format!("origin {} {status}", route_kind(&l.uri)))
                    .or_default() += 1;
            }
            origin_total.requests += 1;
            origin_total.bytes += bytes;
            origin_kind.requests += 1;
            origin_kind.bytes += bytes;
        }
        assert!(
            l.status != 404 && l.status != 500,
            "the edge answered {} for {}",
            l.status,
            l.uri
        );
    }
    eprintln!(
        "edge: {} requests, {:.1} MB; origin: {} requests, {:.1} MB ({:.2} % of the requests, {:.2} % of the bytes)",
        edge_total.requests,
        mb(edge_total.bytes),
        origin_total.requests,
        mb(origin_total.bytes),
        100.0 * origin_total.requests as f64 / edge_total.requests as f64,
        100.0 * origin_total.bytes as f64 / edge_total.bytes as f64
    );
    for (kind, (e, o)) in &by_kind {
        eprintln!(
            "  {kind:>8}: edge {} requests, {:.2} MB; origin {} requests, {:.2} MB",
            e.requests,
            mb(e.bytes),
            o.requests,
            mb(o.bytes)
        );
    }
    // When each pack of release 2 was first served, counted from the publish on B.
    let mut first_served: BTreeMap<&str, f64> = BTreeMap::new();
    for l in &fleet_lines {
        if l.uri.starts_with("/v1/packs/") && l.status == 200 {
            first_served
                .entry(l.uri.as_str())
                .or_insert(l.at - published_epoch);
        }
    }
    eprintln!("  packs first served (s after the publish began): {first_served:?}");
    eprintln!("  edge cache statuses: {by_cache:?}");
    eprintln!(
        "  origin answers: {origin_statuses:?}; connections refused by killed replicas: {refused}"
    );
    eprintln!("  while PostgreSQL restarted (+1 s): {during_restart:?}");
    assert!(
        edge_total.requests >= device_responses,
        "the edge logged fewer requests than the devices got answers"
    );
    assert!(
        origin_total.requests > 0 && origin_total.requests * 2 < edge_total.requests,
        "the origin saw {} of {} requests",
        origin_total.requests,
        edge_total.requests
    );
    assert!(
        origin_total.bytes * 4 < edge_total.bytes,
        "the origin sent {} of {} bytes",
        origin_total.bytes,
        edge_total.bytes
    );
    let (tested, fleet_ran) = (started.elapsed(), fleet_started.elapsed());

    // Everything stopped, by process id; then the fleet's stores (what changed, on every
    // device) removed, several at a time.
    drop(devices);
    drop(replicas);
    drop(postgres);
    drop(garage);
    let removing = Instant::now();
    let mut stores: Vec<PathBuf> = std::fs::read_dir(&stores)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let per_thread = stores.len().div_ceil(4);
    std::thread::scope(|scope| {
        while !stores.is_empty() {
            let mine = stores.split_off(stores.len().saturating_sub(per_thread));
            scope.spawn(move || {
                for store in mine {
                    std::fs::remove_dir_all(store).unwrap();
                }
            });
        }
    });
    drop(dir);
    eprintln!(
        "scaled: {tested:?} in all ({setup:?} of setup, {fleet_ran:?} from the fleet's start), then {:?} to remove the device stores",
        removing.elapsed()
    );
}
