//! `GET /openapi.json`: the API document this server was built with, so that tools and people can
//! read the contract from the server they talk to.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use manifests::Digest;

use super::public::{etag, not_modified};

/// `docs/openapi.json`, embedded at build time: the document and the routes ship together.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// `Cache-Control` of the document: any cache may keep it, and revalidates it with its ETag,
/// because an upgraded server answers with another document.
pub const CACHE_CONTROL: &str = "public, no-cache";

/// The ETag: the sha256 of the document's bytes.
static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| etag(&Digest::of(DOCUMENT.as_bytes())));

/// `GET /openapi.json`, with `If-None-Match`.
pub async fn document(headers: HeaderMap) -> Response {
    let tag = ETAG.clone();
    let cache = HeaderValue::from_static(CACHE_CONTROL);
    if not_modified(&headers, &tag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, tag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, tag),
            (header::CACHE_CONTROL, cache),
        ],
        DOCUMENT,
    )
        .into_response()
}
