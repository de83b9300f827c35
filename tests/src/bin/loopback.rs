//! A loopback HTTP server backed by client-core, as a local-server WebView integration runs one:
//! the app's origin is `http://127.0.0.1:PORT`, each request is resolved with the device
//! library's `resolve` (the path put under `--site`) and answered from its local files; a request
//! the package does not hold goes to the network (`--upstream`), delayed by the simulated link
//! (`--latency-ms`, `--down-bytes-per-sec`). Benchmark code for `bench/instant_open.py`: it keeps
//! the DevTools protocol out of the data path.
//!
//! On start it opens (or creates) the device store, installs what the channel's index offers from
//! `--server`, marks each installed package ready, then prints `listening on http://…` and serves
//! until killed.
//!
//! Usage: `loopback --store DIR --server URL --app APP --channel CHANNEL --key PUBLIC_KEY_HEX
//!         --site https://m.example.com [--upstream URL] [--latency-ms N] [--down-bytes-per-sec N]`

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::serve::ListenerExt;
use client_core::fetch::builtin::BuiltinFetcher;
use client_core::{Client, Config};
use manifests::{AppId, Channel, HostVersion, PublicKey};

/// The most a forwarded answer may hold.
const MAX_UPSTREAM_BYTES: u64 = 256 << 20;

#[derive(Debug)]
struct Args {
    store: String,
    server: String,
    app: String,
    channel: String,
    key: String,
    site: String,
    upstream: Option<String>,
    latency_ms: u64,
    down_bytes_per_sec: u64,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        store: String::new(),
        server: String::new(),
        app: String::new(),
        channel: String::new(),
        key: String::new(),
        site: String::new(),
        upstream: None,
        latency_ms: 0,
        down_bytes_per_sec: 0,
    };
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--store" => args.store = value,
            "--server" => args.server = value,
            "--app" => args.app = value,
            "--channel" => args.channel = value,
            "--key" => args.key = value,
            "--site" => args.site = value.trim_end_matches('/').to_owned(),
            "--upstream" => args.upstream = Some(value.trim_end_matches('/').to_owned()),
            "--latency-ms" => args.latency_ms = number()?,
            "--down-bytes-per-sec" => args.down_bytes_per_sec = number()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    for (name, value) in [
        ("--store", &args.store),
        ("--server", &args.server),
        ("--app", &args.app),
        ("--channel", &args.channel),
        ("--key", &args.key),
        ("--site", &args.site),
    ] {
        if value.is_empty() {
            return Err(format!("{name} is required"));
        }
    }
    Ok(args)
}

/// What every request handler shares.
struct Shared {
    client: Client,
    site: String,
    upstream: Option<String>,
    agent: ureq::Agent,
    latency: Duration,
    down_bytes_per_sec: u64,
}

fn open_client(args: &Args) -> Result<Client, String> {
    let config = Config {
        dir: args.store.clone().into(),
        server: args.server.clone(),
        app: AppId::parse(&args.app).map_err(|e| format!("--app: {e}"))?,
        channel: Channel::parse(&args.channel).map_err(|e| format!("--channel: {e}"))?,
        device_id: "loopback".into(),
        host_version: HostVersion::parse("1.0").map_err(|e| e.to_string())?,
        trusted_keys: vec![PublicKey::from_hex(&args.key).map_err(|e| format!("--key: {e}"))?],
        threshold: 1,
        custom_scheme: None,
        max_pending_launches: 1000,
        sequence_floor: 0,
        ingest_key: None,
    };
    let client = Client::open(config, Arc::new(BuiltinFetcher::default()))
        .map_err(|e| format!("opening the store {}: {e}", args.store))?;
    let installed = tests::update_now(&client).map_err(|e| format!("update: {e}"))?;
    for (update, _) in &installed {
        client
            .mark_ready(&update.package)
            .map_err(|e| format!("mark_ready {}: {e}", update.package))?;
    }
    Ok(client)
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let url = format!("{}{path_and_query}", shared.site);
    match shared.client.resolve(&url) {
        Some(hit) => match tokio::fs::read(&hit.path).await {
            Ok(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                for (name, value) in &hit.headers {
                    // The body sets the length; the rest is resolve's.
                    if name.eq_ignore_ascii_case("content-length") {
                        continue;
                    }
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(value),
                    ) {
                        response.headers_mut().insert(name, value);
                    }
                }
                response
            }
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("reading {}: {e}", hit.path.display()),
            ),
        },
        None => forward(shared, path_and_query, request.headers().clone()).await,
    }
}

/// A miss goes to the network: the upstream origin, behind the simulated link.
async fn forward(
    shared: Arc<Shared>,
    path_and_query: String,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(upstream) = shared.upstream.clone() else {
        return plain(StatusCode::NOT_FOUND, "not in the package");
    };
    let started = tokio::time::Instant::now();
    let agent = shared.agent.clone();
    let accept_encoding = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fetched = tokio::task::spawn_blocking(move || {
        let mut request = agent.get(format!("{upstream}{path_and_query}"));
        if let Some(value) = accept_encoding {
            request = request.header("Accept-Encoding", value);
        }
        let response = request.call().map_err(|e| e.to_string())?;
        let status = response.status();
        let kept: Vec<(HeaderName, HeaderValue)> = response
            .headers()
            .iter()
            .filter(|(name, _)| {
                [
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::CACHE_CONTROL,
                    header::VARY,
                ]
                .contains(name)
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_UPSTREAM_BYTES)
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((status, kept, body))
    })
    .await;
    let (status, kept, body) = match fetched {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return plain(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("upstream task: {e}")),
    };
    // The link: one round trip before the headers, then the body at the link's throughput.
    let transfer = if shared.down_bytes_per_sec > 0 {
        Duration::from_secs_f64(body.len() as f64 / shared.down_bytes_per_sec as f64)
    } else {
        Duration::ZERO
    };
    tokio::time::sleep_until(started + shared.latency + transfer).await;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in kept {
        response.headers_mut().insert(name, value);
    }
    response
}

fn run() -> Result<(), String> {
    let args = parse_args(std::env::args().skip(1))?;
    let client = open_client(&args)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let shared = Arc::new(Shared {
        client,
        site: args.site.clone(),
        upstream: args.upstream.clone(),
        agent,
        latency: Duration::from_millis(args.latency_ms),
        down_bytes_per_sec: args.down_bytes_per_sec,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("binding 127.0.0.1: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on http://{addr}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("stdout: {e}"))?;
        // Small answers leave at once rather than waiting for the last segment's ACK.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = axum::Router::new().fallback(handle).with_state(shared);
        axum::serve(listener, app)
            .await
            .map_err(|e| format!("serving: {e}"))
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopback: {e}");
            ExitCode::FAILURE
        }
    }
}
