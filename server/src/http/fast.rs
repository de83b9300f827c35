//! The hot read path: the signed index, its deltas and hot blobs, answered from memory without
//! the router.
//!
//! Devices poll the index on every launch, so it is the most requested route by far; right after
//! a publish, the changed files are. When the document asked for is in memory
//! ([`Service::held_index`], [`Service::held_delta`]), or the blob is held
//! ([`crate::hot_blobs`]) and no `Range` is asked for, the connection's service answers at once: the path is matched by hand, the body is the document's
//! pre-encoded bytes (identity or gzip, chosen by `Accept-Encoding`), `If-None-Match` is compared
//! without allocating, and the request is counted on metric handles resolved once (an atomic
//! increment) instead of through a middleware.
//! Everything else (another route, a document not in memory, an overloaded server) goes to the
//! axum [`Router`] unchanged, which answers exactly as before, errors included.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use manifests::{Digest, paths};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tower::ServiceExt;

use super::public::{IMMUTABLE, accepts_gzip, not_modified};
use crate::documents::ServedDocument;
use crate::hot_blobs::HotBlob;
use crate::metrics::{RequestLabels, RouteLabels};
use crate::service::Service;

/// The body of any answer: a document's bytes, or whatever the router answered.
pub type ReadBody = Either<Full<Bytes>, Body>;

/// The routes answered here, in the order of [`HotRoute::slot`].
const HOT_ROUTES: [&str; 3] = [paths::INDEX, paths::INDEX_DELTA, paths::BLOB];
/// The methods answered here.
const HOT_METHODS: [&str; 2] = ["GET", "HEAD"];
/// The statuses answered here.
const HOT_STATUSES: [u16; 2] = [200, 304];

/// One connection's service: the hot path, else the router. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Reads(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    service: Arc<Service>,
    router: Router,
    hot: Hot,
}

/// Metric handles of the hot path, each resolved on first use: counting is then one atomic
/// increment, and the exposition at `/metrics` is the same as for requests the router counts.
#[derive(Debug, Default)]
struct Hot {
    /// By route, method and status (indexes into the `HOT_*` tables).
    requests: [[[OnceLock<Counter>; 2]; 2]; 3],
    /// By route.
    latency: [OnceLock<Histogram>; 3],
}

/// A request the hot path may answer, its names borrowed from the path.
#[derive(Debug, PartialEq, Eq)]
enum HotRoute<'a> {
    Index {
        app: &'a str,
        channel: &'a str,
    },
    Delta {
        app: &'a str,
        channel: &'a str,
        from: u64,
    },
    Blob(Digest),
}

impl HotRoute<'_> {
    fn slot(&self) -> usize {
        match self {
            HotRoute::Index { .. } => 0,
            HotRoute::Delta { .. } => 1,
            HotRoute::Blob(_) => 2,
        }
    }
}

/// Matches `/v1/apps/{app}/channels/{channel}/index`, `…/index/delta/{from}` and
/// `/v1/blobs/{sha256}` the way the router does for the names a cached document or blob can have
/// (no percent-encoding, no empty segment); None for anything else, which the router then
/// answers.
fn hot_route(path: &str) -> Option<HotRoute<'_>> {
    if let Some(digest) = path.strip_prefix("/v1/blobs/") {
        return Digest::parse(digest).ok().map(HotRoute::Blob);
    }
    let rest = path.strip_prefix("/v1/apps/")?;
    let (app, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("channels/")?;
    let (channel, rest) = rest.split_once('/')?;
    if app.is_empty() || channel.is_empty() {
        return None;
    }
    if rest == "index" {
        return Some(HotRoute::Index { app, channel });
    }
    let from = rest.strip_prefix("index/delta/")?;
    if from.contains('/') {
        return None;
    }
    // The same parse as the router's handler: anything else is its error to answer.
    let from = from.parse::<u64>().ok()?;
    Some(HotRoute::Delta { app, channel, from })
}

impl Reads {
    /// The hot path in front of `router`.
    pub fn new(service: Arc<Service>, router: Router) -> Reads {
        Reads(Arc::new(Shared {
            service,
            router,
            hot: Hot::default(),
        }))
    }
}

impl Shared {
    /// Answers a hot request whose document is in memory; None hands it to the router.
    fn answer(&self, request: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        let method = match *request.method() {
            Method::GET => 0,
            Method::HEAD => 1,
            _ => return None,
        };
        let route = hot_route(request.uri().path())?;
        // No in-flight permit: an answer from memory is over before a 503 could be written, and
        // shedding it would refuse the cheapest request while slower ones hold every permit.
        let started = Instant::now();
        let headers = request.headers();
        let mut response = match route {
            HotRoute::Index { app, channel } => {
                let document = self.service.held_index(app, channel)?;
                document_response(&self.service, &document, headers)
            }
            HotRoute::Delta { app, channel, from } => {
                let document = self.service.held_delta(app, channel, from)?;
                document_response(&self.service, &document, headers)
            }
            // A range is read from storage by the router.
            HotRoute::Blob(digest) if !headers.contains_key(header::RANGE) => {
                let blob = self.service.hot_blobs.get(&digest)?;
                blob_response(&blob, headers)
            }
            HotRoute::Blob(_) => return None,
        };
        if method == 1 {
            let length = HeaderValue::from(response.body().len());
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, length);
            *response.body_mut() = Bytes::new();
        }
        self.count(route.slot(), method, response.status(), started);
        Some(response.map(Full::new))
    }

    fn count(&self, route: usize, method: usize, status: StatusCode, started: Instant) {
        let metrics = self.service.metrics();
        let labels = |status: u16| RequestLabels {
            route: HOT_ROUTES[route],
            method: HOT_METHODS[method],
            status,
        };
        match HOT_STATUSES.iter().position(|s| *s == status.as_u16()) {
            Some(i) => self.hot.requests[route][method][i]
                .get_or_init(|| {
                    metrics
                        .requests
                        .get_or_create(&labels(HOT_STATUSES[i]))
                        .clone()
                })
                .inc(),
            None => metrics
                .requests
                .get_or_create(&labels(status.as_u16()))
                .inc(),
        };
        self.hot.latency[route]
            .get_or_init(|| {
                metrics
                    .latency
                    .get_or_create(&RouteLabels {
                        route: HOT_ROUTES[route],
                    })
                    .clone()
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A signed index or delta as an answer: gzip to clients that accept it, identity to the rest,
/// each with its own strong ETag, `Vary: accept-encoding` and the index's short `max-age`; `304`
/// when `If-None-Match` names the representation chosen.
pub(super) fn document_response(
    service: &Service,
    document: &ServedDocument,
    headers: &HeaderMap,
) -> Response<Bytes> {
    let (representation, gzip) = match &document.gzip {
        Some(gz) if accepts_gzip(headers) => (gz, true),
        _ => (&document.identity, false),
    };
    let (full, revalidated) = representation.headers.get_or_init(|| {
        representation_headers(service, &representation.etag, gzip, document.keys_version)
    });
    if not_modified(headers, &representation.etag) {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.headers_mut() = revalidated.clone();
        return response;
    }
    let mut response = Response::new(representation.body.clone());
    *response.headers_mut() = full.clone();
    response
}

/// A held blob as an answer, as the router gives it: its stored gzip representation to clients
/// that accept gzip, the blob itself to the rest (with `Accept-Ranges`), each with its strong
/// ETag, immutable caching and `Vary: accept-encoding`; `304` when `If-None-Match` names the
/// representation chosen.
pub(super) fn blob_response(blob: &HotBlob, headers: &HeaderMap) -> Response<Bytes> {
    let (body, tag, gzip) = match &blob.gzip {
        Some((bytes, tag)) if accepts_gzip(headers) => (bytes, tag, true),
        _ => (&blob.identity, &blob.identity_tag, false),
    };
    let modified = !not_modified(headers, tag);
    let mut response = Response::new(match modified {
        true => body.clone(),
        false => Bytes::new(),
    });
    let h = response.headers_mut();
    h.insert(header::ETAG, tag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if !modified {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    match gzip {
        true => h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
        false => h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    };
    response
}

/// The headers of a `200` and of a `304` with a representation.
fn representation_headers(
    service: &Service,
    etag: &HeaderValue,
    gzip: bool,
    keys_version: u64,
) -> (HeaderMap, HeaderMap) {
    let mut revalidated = HeaderMap::with_capacity(5);
    revalidated.insert(header::ETAG, etag.clone());
    if keys_version > 0 {
        revalidated.insert(
            manifests::paths::KEYS_HEADER,
            HeaderValue::from(keys_version),
        );
    }
    revalidated.insert(header::CACHE_CONTROL, service.index_cache_control.clone());
    revalidated.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let mut full = revalidated.clone();
    full.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if gzip {
        full.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    (full, revalidated)
}

impl hyper::service::Service<Request<Incoming>> for Reads {
    type Response = Response<ReadBody>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        if let Some(response) = self.0.answer(&request) {
            return Answer::Ready(Some(response.map(Either::Left)));
        }
        let router = self.0.router.clone();
        Answer::Routed(Box::pin(async move {
            let response = router.oneshot(request).await?;
            Ok(response.map(Either::Right))
        }))
    }
}

/// The future of [`Reads`]: ready at once on the hot path, the router's otherwise.
pub enum Answer {
    /// Answered from memory; taken on the first poll.
    Ready(Option<Response<ReadBody>>),
    /// Answered by the router.
    Routed(Pin<Box<dyn Future<Output = Result<Response<ReadBody>, Infallible>> + Send>>),
}

impl Future for Answer {
    type Output = Result<Response<ReadBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Ready(response) => Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                // Polled again after completing: hyper never does; answer something valid.
                let mut gone = Response::new(Either::Left(Full::new(Bytes::new())));
                *gone.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                gone
            }))),
            Answer::Routed(future) => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_routes_are_matched_like_the_router_and_the_rest_is_left_to_it() {
        let index = |app, channel| Some(HotRoute::Index { app, channel });
        let delta = |app, channel, from| Some(HotRoute::Delta { app, channel, from });
        let digest = Digest::of(b"a blob");
        for (path, expected) in [
            (
                "/v1/apps/shop/channels/production/index",
                index("shop", "production"),
            ),
            ("/v1/apps/a/channels/b/index/delta/7", delta("a", "b", 7)),
            ("/v1/apps/a/channels/b/index/delta/+7", delta("a", "b", 7)),
            ("/v1/apps/a/channels/b/index/", None),
            ("/v1/apps/a/channels/b/index/delta/", None),
            ("/v1/apps/a/channels/b/index/delta/x", None),
            ("/v1/apps/a/channels/b/index/delta/7/", None),
            ("/v1/apps//channels/b/index", None),
            ("/v1/apps/a/channels//index", None),
            ("/v1/apps/a/b/channels/c/index", None),
            ("/v1/apps/a/channels/b/c/index", None),
            ("/v1/blobs/abc", None),
            (
                format!("/v1/blobs/{digest}").as_str(),
                Some(HotRoute::Blob(digest)),
            ),
            (format!("/v1/blobs/{digest}/").as_str(), None),
            (
                format!("/v1/blobs/{}", digest.to_string().to_uppercase()).as_str(),
                None,
            ),
            ("/healthz", None),
        ] {
            assert_eq!(hot_route(path), expected, "{path}");
        }
    }
}
