//! The HTTP API: maps requests onto [`Service`] calls and nothing more. It holds no state of its
//! own, so any number of replicas can sit behind a load balancer or CDN.
//!
//! See `docs/protocol.md` for requests and responses by example.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use manifests::paths;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::error::{Error, Result};
use crate::service::Service;

mod admin;
mod edge;
mod error;
mod fast;
pub mod openapi;
pub mod public;

/// Every `(method, path)` that [`router`] routes (each `GET` also answers `HEAD`); the paths are
/// [`manifests::paths`], which clients build their requests with.
/// `docs/openapi.json` documents exactly these, as `server/tests/openapi.rs` checks; a new route
/// goes into both this table and `router`.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", paths::INDEX),
    ("GET", paths::INDEX_DELTA),
    ("GET", paths::MANIFEST),
    ("GET", paths::MANIFEST_DELTA),
    ("GET", paths::BLOB),
    ("GET", paths::PACK),
    ("GET", paths::HEALTHZ),
    ("POST", paths::PUBLISH),
    ("GET", paths::RELEASES),
    ("POST", paths::CHANNEL_CHANGE),
    ("GET", paths::HISTORY),
    ("GET", paths::CHANNEL_STATE),
    ("GET", paths::AUDIT),
    ("GET", paths::APP_ORIGINS),
    ("PUT", paths::APP_ORIGINS),
    ("GET", paths::TOKENS),
    ("POST", paths::TOKENS),
    ("DELETE", paths::TOKEN),
    ("GET", paths::INGEST_KEYS),
    ("POST", paths::INGEST_KEYS),
    ("DELETE", paths::INGEST_KEY),
    ("POST", paths::EVENTS),
    ("GET", paths::STATS),
    ("POST", paths::GC),
    ("GET", paths::RAMP),
    ("PUT", paths::RAMP),
    ("DELETE", paths::RAMP),
    ("POST", paths::RAMPS_EVALUATE),
    ("GET", paths::KEYS),
    ("POST", paths::ADMIN_KEYS),
    ("POST", paths::RELEASE_SIGNATURES),
    ("GET", paths::METRICS),
    ("GET", paths::OPENAPI),
];

/// [`ROUTES`] as a list.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    ROUTES.to_vec()
}

/// Every route of the API.
pub fn router(service: Arc<Service>) -> Router {
    let reads = Router::new()
        .route(paths::INDEX, get(public::index))
        .route(paths::INDEX_DELTA, get(public::index_delta))
        .route(paths::MANIFEST, get(public::manifest))
        .route(paths::MANIFEST_DELTA, get(public::manifest_delta))
        .route(paths::BLOB, get(public::blob))
        .route(paths::PACK, get(public::pack))
        .route(paths::HEALTHZ, get(|| async { "ok\n" }))
        .route(paths::RELEASES, get(admin::releases))
        .route(paths::CHANNEL_CHANGE, post(admin::change))
        .route(paths::HISTORY, get(admin::history))
        .route(paths::EVENTS, post(public::events))
        .route(paths::STATS, get(admin::stats))
        .route(paths::METRICS, get(metrics))
        .route(paths::OPENAPI, get(openapi::document))
        .route(paths::CHANNEL_STATE, get(admin::channel_state))
        .route(paths::AUDIT, get(admin::audit))
        .route(
            paths::APP_ORIGINS,
            get(admin::origins).put(admin::set_origins),
        )
        .route(paths::KEYS, get(public::keys))
        .route(paths::ADMIN_KEYS, post(admin::add_key_list))
        .route(paths::RELEASE_SIGNATURES, post(admin::sign_release))
        .route(paths::TOKENS, get(admin::tokens).post(admin::create_token))
        .route(paths::TOKEN, axum::routing::delete(admin::revoke_token))
        .route(
            paths::INGEST_KEYS,
            get(admin::ingest_keys).post(admin::create_ingest_key),
        )
        .route(
            paths::INGEST_KEY,
            axum::routing::delete(admin::revoke_ingest_key),
        )
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ));
    // Uploads may take long on slow links; their size is capped instead. A collection of a large
    // store may take long too; it is admin-only and runs one at a time.
    let uploads = Router::new()
        .route(paths::PUBLISH, post(admin::publish))
        .route(paths::GC, post(admin::gc))
        .route(
            paths::RAMP,
            get(admin::ramp)
                .put(admin::start_ramp)
                .delete(admin::stop_ramp),
        )
        .route(paths::RAMPS_EVALUATE, post(admin::evaluate_ramps));
    let router = reads
        .merge(uploads)
        .merge(crate::console::router())
        .fallback(|| async { Error::NotFound("route".into()) })
        .route_layer(axum::middleware::from_fn_with_state(service.clone(), admit))
        .with_state(service);
    // A span per request costs a tenth of the index route's time: only when someone reads them.
    if tracing::enabled!(tracing::Level::DEBUG) {
        router.layer(tower_http::trace::TraceLayer::new_for_http())
    } else {
        router
    }
}

/// The largest request body of an admin route other than an upload (JSON).
const ADMIN_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Admits a routed request and counts it: answers `503` with `Retry-After` at once when too many
/// requests are in flight, rather than queueing them until every client times out (a thundering
/// herd on launch); otherwise counts the request and its latency under its route pattern.
async fn admit(
    axum::extract::State(service): axum::extract::State<Arc<Service>>,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let upload = matched
        .as_ref()
        .is_some_and(|m| m.as_str() == paths::PUBLISH);
    // A body arrives before the request takes a slot, within a deadline and a cap, so clients
    // trickling bodies hold connections, not slots. Uploads stream to disk under their own cap
    // and idle timeout, and take no slot (their token is checked before the body is read).
    let request = if upload || request.method() == axum::http::Method::GET {
        request
    } else {
        let (parts, body) = request.into_parts();
        let limit = if matched
            .as_ref()
            .is_some_and(|m| m.as_str() == paths::EVENTS)
        {
            public::EVENTS_BODY_LIMIT
        } else {
            ADMIN_BODY_LIMIT
        };
        // A body declared too large is refused from its length, before a byte of it is read.
        let declared = parts
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Error::TooLarge {
                limit_bytes: limit as u64,
            }
            .into_response();
        }
        let read = tokio::time::timeout(
            service.settings().body_read_timeout,
            axum::body::to_bytes(body, limit),
        )
        .await;
        match read {
            Ok(Ok(bytes)) => {
                axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))
            }
            Ok(Err(e)) => {
                let inner = e.into_inner();
                return if inner.is::<http_body_util::LengthLimitError>() {
                    Error::TooLarge {
                        limit_bytes: limit as u64,
                    }
                } else {
                    Error::BadRequest(format!("request body: {inner}"))
                }
                .into_response();
            }
            Err(_) => {
                let mut response = Error::Timeout(format!(
                    "the request body took longer than {} s",
                    service.settings().body_read_timeout.as_secs_f64()
                ))
                .into_response();
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return response;
            }
        }
    };
    let _permit = match upload {
        true => None,
        false => match service.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return Error::Overloaded.into_response(),
        },
    };
    // Static labels: no allocation per request.
    let route = matched
        .and_then(|m| {
            ROUTES
                .iter()
                .find(|(_, path)| *path == m.as_str())
                .map(|(_, path)| *path)
        })
        .unwrap_or("unmatched");
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::POST => "POST",
        _ => "OTHER",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let metrics = service.metrics();
    metrics
        .latency
        .get_or_create(&crate::metrics::RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics`
async fn metrics(
    axum::extract::State(service): axum::extract::State<Arc<Service>>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        service.metrics().encode(),
    )
}

/// The address of the client a request came from (the TCP peer: a proxy in front of the
/// server is one client), set on every request [`serve`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Binds `addr`; port 0 picks a free port (read it with `local_addr`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listening on {addr}"), e))
}

/// Serves the API on `listener` until `shutdown` resolves, re-signing indexes before they expire.
///
/// Connections are served by hyper directly (not `axum::serve`) so that a client that sends its
/// headers too slowly is cut off after [`crate::service::Settings::header_read_timeout`], and so
/// that the index and its deltas in memory are answered before the router (`fast`).
/// On shutdown, requests in flight get up to ten seconds to finish.
pub async fn serve(
    service: Arc<Service>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let refresher = tokio::spawn(refresh_loop(service.clone()));
    let collector = service
        .settings()
        .gc_interval
        .map(|every| tokio::spawn(crate::gc::collect_periodically(service.clone(), every)));
    let ramps = service
        .settings()
        .ramp_interval
        .map(|every| tokio::spawn(crate::ramp::evaluate_periodically(service.clone(), every)));
    let reads = fast::Reads::new(service.clone(), router(service.clone()));
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(service.settings().header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(
        service.settings().max_connections,
    ));
    let write_timeout = service.settings().write_timeout;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Past the cap a connection is closed at once, rather than left in the backlog.
                let Ok(slot) = connections.clone().try_acquire_owned() else {
                    tracing::debug!("connection refused: too many open");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let stream = edge::WriteTimeout::new(stream, write_timeout);
                // The client's address goes with each request, for the per-address limits of
                // the public write route.
                let reads = reads.clone();
                let peer = ClientAddr(peer.ip());
                let service = hyper::service::service_fn(
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(peer);
                        hyper::service::Service::call(&reads, request)
                    },
                );
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("requests still running after 10 s; stopping anyway");
        }
    }
    refresher.abort();
    if let Some(collector) = collector {
        // A collection stopped part-way leaves only unreferenced blobs, for the next one.
        collector.abort();
    }
    if let Some(ramps) = ramps {
        // Each ramp's change is one committed channel change; a pass cut short resumes next time.
        ramps.abort();
    }
    Ok(())
}

async fn refresh_loop(service: Arc<Service>) {
    let period = Duration::from_secs((service.settings().index_ttl_secs / 8).clamp(1, 3600));
    loop {
        match service.refresh_indexes().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(indexes = n, "re-signed indexes before expiry"),
            Err(e) => tracing::error!(error = %e, "re-signing indexes failed"),
        }
        tokio::time::sleep(period).await;
    }
}
