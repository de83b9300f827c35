//! The HTTP API: maps requests onto [`Service`] calls and nothing more. It holds no state of its
//! own, so any number of replicas can sit behind a load balancer or CDN.
//!
//! See `docs/protocol.md` for requests and responses by example.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::error::{Error, Result};
use crate::service::Service;

mod admin;
mod error;
pub mod public;

/// Every route of the API.
pub fn router(service: Arc<Service>) -> Router {
    let reads = Router::new()
        .route(
            "/v1/apps/{app}/channels/{channel}/index",
            get(public::index),
        )
        .route("/v1/manifests/{digest}", get(public::manifest))
        .route("/v1/blobs/{digest}", get(public::blob))
        .route("/v1/packs/{package}/{name}", get(public::pack))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/v1/admin/packages/{package}/releases",
            get(admin::releases),
        )
        .route(
            "/v1/admin/packages/{package}/channels/{channel}",
            post(admin::change),
        )
        .route(
            "/v1/admin/packages/{package}/channels/{channel}/history",
            get(admin::history),
        )
        .route(
            "/v1/admin/apps/{app}/channels/{channel}",
            get(admin::channel_state),
        )
        .route("/v1/admin/audit", get(admin::audit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ));
    // Uploads may take long on slow links; their size is capped instead.
    let uploads = Router::new().route(
        "/v1/admin/apps/{app}/packages/{package}/releases",
        post(admin::publish),
    );
    reads
        .merge(uploads)
        .fallback(|| async { Error::NotFound("route".into()) })
        .with_state(service)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Binds `addr`; port 0 picks a free port (see [`Listening::addr`]).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listening on {addr}"), e))
}

/// Serves the API on `listener` until `shutdown` resolves, re-signing indexes before they expire.
pub async fn serve(
    service: Arc<Service>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let refresher = tokio::spawn(refresh_loop(service.clone()));
    let result = axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::io("serving HTTP", e));
    refresher.abort();
    result
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
