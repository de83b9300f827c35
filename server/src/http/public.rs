//! What devices and CDNs read: indexes, manifests and blobs. No token needed.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use manifests::{AppId, Channel, Digest, PackFormat, PackName, PackageId};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use crate::blob_store::BlobRead;
use crate::documents::ServedDocument;
use crate::error::{Error, Result};
use crate::hot_blobs::HotBlob;
use crate::manifest_docs::{Coding, Encoded};
use crate::pack::{CompactPack, FastPack, PackKey, Servable};
use crate::service::Service;

/// Bytes read from storage per chunk of a streamed body: large enough that a 2 MiB blob takes two
/// trips to the blocking pool rather than five hundred.
const STREAM_CHUNK: usize = 1 << 20;

/// `Cache-Control` of everything addressed by digest.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A digest as a strong ETag.
pub(super) fn etag(digest: &Digest) -> HeaderValue {
    // A digest is hex only, always a valid header value.
    HeaderValue::from_str(&format!("\"{digest}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Whether `If-None-Match` names `tag` (`W/` prefixes ignored, `*` matching anything).
pub(super) fn not_modified(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == "*" || v.as_bytes() == tag.as_bytes())
}

fn parse_digest(text: &str) -> Result<Digest> {
    Digest::parse(text).map_err(|_| Error::NotFound(format!("{text:?}")))
}

/// `GET /v1/apps/{app}/channels/{channel}/index`
pub async fn index(
    State(service): State<Arc<Service>>,
    Path((app, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let index = match service.cached_index(&app, &channel) {
        Some(index) => index,
        None => {
            let (app, channel) = (AppId::parse(&app)?, Channel::parse(&channel)?);
            service
                .index(&app, &channel)
                .await?
                .ok_or_else(|| Error::NotFound(format!("index of {app}/{channel}")))?
        }
    };
    Ok(serve_document(&service, &index, &headers))
}

/// `GET /v1/apps/{app}/keys`: the chain of the app's key lists, with the index's short
/// `max-age` (a new list must reach devices soon) and a strong ETag.
pub async fn keys(
    State(service): State<Arc<Service>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let app = AppId::parse(&app)?;
    let keys = service.known_app_keys(&app).await?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", keys.digest))
        .map_err(|e| Error::Internal(format!("ETag: {e}")))?;
    let mut response = if not_modified(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            keys.chain.clone(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, service.index_cache_control.clone());
    Ok(response)
}

/// `GET /v1/apps/{app}/channels/{channel}/index/delta/{from}`
pub async fn index_delta(
    State(service): State<Arc<Service>>,
    Path((app, channel, from)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let sequence = from.parse::<u64>().ok();
    let delta = match sequence.and_then(|s| service.cached_delta(&app, &channel, s)) {
        Some(delta) => delta,
        None => {
            let (app, channel) = (AppId::parse(&app)?, Channel::parse(&channel)?);
            let Some(sequence) = sequence else {
                return Err(Error::DeltaUnavailable {
                    scope: format!("the index of {app}/{channel}"),
                    from,
                    reason: "not a sequence".into(),
                });
            };
            service.index_delta(&app, &channel, sequence).await?
        }
    };
    Ok(serve_document(&service, &delta, &headers))
}

/// Serves a signed index or delta (see [`super::fast::document_response`]).
fn serve_document(service: &Service, document: &ServedDocument, headers: &HeaderMap) -> Response {
    super::fast::document_response(service, document, headers).map(Body::from)
}

/// `GET /v1/manifests/{sha256}`, zstd or gzip to clients that accept them.
pub async fn manifest(
    State(service): State<Arc<Service>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let digest = parse_digest(&digest)?;
    service.check_manifest_access(&headers, &[&digest]).await?;
    let encoded = service.manifest_document(&digest).await?;
    Ok(serve_encoded(&encoded, &headers))
}

/// `GET /v1/manifests/{sha256}/delta/{from}`: the manifest as a release delta from `from`.
pub async fn manifest_delta(
    State(service): State<Arc<Service>>,
    Path((digest, from)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let digest = parse_digest(&digest)?;
    let from_digest = Digest::parse(&from).map_err(|_| Error::DeltaUnavailable {
        scope: format!("manifest {digest}"),
        from: from.clone(),
        reason: "not a manifest digest".into(),
    })?;
    service
        .check_manifest_access(&headers, &[&digest, &from_digest])
        .await?;
    let encoded = service.manifest_delta(&digest, &from_digest).await?;
    Ok(serve_encoded(&encoded, &headers))
}

/// Serves an immutable encoded document in the smallest coding the client accepts, with
/// `Vary: accept-encoding` and the representation's strong ETag.
fn serve_encoded(encoded: &Encoded, headers: &HeaderMap) -> Response {
    let accepted: Vec<Coding> = [Coding::Zstd, Coding::Gzip]
        .into_iter()
        .filter(|c| c.header().is_some_and(|name| accepts(headers, name)))
        .collect();
    let (coding, body, tag) = encoded.pick(&accepted);
    let vary = HeaderValue::from_static("accept-encoding");
    if not_modified(headers, &tag) {
        let mut response = immutable_not_modified(tag);
        response.headers_mut().insert(header::VARY, vary);
        return response;
    }
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, tag),
            (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
            (header::VARY, vary),
        ],
        body,
    )
        .into_response();
    if let Some(name) = coding.header() {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
    }
    response
}

fn immutable_not_modified(tag: HeaderValue) -> Response {
    (
        StatusCode::NOT_MODIFIED,
        [
            (header::ETAG, tag),
            (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
        ],
    )
        .into_response()
}

/// `GET /v1/blobs/{sha256}`, with `Range` and `If-None-Match`.
pub async fn blob(
    State(service): State<Arc<Service>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let digest = parse_digest(&digest)?;
    let plain =
        !headers.contains_key(header::RANGE) && !headers.contains_key(header::IF_NONE_MATCH);
    if plain && let Some(hot) = hot_blob(&service, &digest).await? {
        return Ok(super::fast::blob_response(&hot, &headers).map(Body::from));
    }
    if headers.get(header::RANGE).is_none()
        && accepts_gzip(&headers)
        && let Some(read) = service.blobs().read_variant(&digest, "gzip").await?
    {
        let tag = HeaderValue::from_str(&format!("\"{digest}.gz\""))
            .map_err(|e| Error::Internal(e.to_string()))?;
        if not_modified(&headers, &tag) {
            let mut response = immutable_not_modified(tag);
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            return Ok(response);
        }
        let mut response = Response::new(Body::from_stream(ReaderStream::with_capacity(
            read.reader,
            STREAM_CHUNK,
        )));
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(read.total_size));
        h.insert(header::ETAG, tag);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        return Ok(response);
    }
    let mut response = serve_blob(&service, &digest, &headers, "application/octet-stream").await?;
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(response)
}

/// The blob, held in memory ([`crate::hot_blobs`]) from now on if it is small enough; None if
/// it is not stored or too big to hold (then it is streamed from storage).
async fn hot_blob(service: &Service, digest: &Digest) -> Result<Option<Arc<HotBlob>>> {
    let hot = &service.hot_blobs;
    if let Some(blob) = hot.get(digest) {
        return Ok(Some(blob));
    }
    if !hot.enabled() {
        return Ok(None);
    }
    let epoch = hot.epoch();
    let blobs = service.blobs();
    match blobs.size(digest).await? {
        Some(size) if hot.admits(size) => {}
        _ => return Ok(None),
    }
    let Some(identity) = blobs.read_all(digest).await? else {
        return Ok(None);
    };
    let gzip = match blobs.read_variant(digest, "gzip").await? {
        Some(read) if hot.admits(read.total_size) => Some(read_to_memory(read).await?),
        _ => None,
    };
    Ok(Some(hot.insert(
        *digest,
        HotBlob::new(digest, Bytes::from(identity), gzip),
        epoch,
    )))
}

/// The bytes of a read.
async fn read_to_memory(read: BlobRead) -> Result<Bytes> {
    if let Some(bytes) = read.in_memory {
        return Ok(bytes);
    }
    let mut bytes =
        Vec::with_capacity(usize::try_from(read.range.end - read.range.start).unwrap_or(0));
    let mut reader = read.reader;
    reader
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::io("reading a blob representation", e))?;
    Ok(Bytes::from(bytes))
}

/// Whether `Accept-Encoding` allows gzip (listed without `q=0`).
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    accepts(headers, "gzip")
}

/// Whether `Accept-Encoding` accepts `coding` by name (or gzip by `*`), with a non-zero weight;
/// zstd only by name, since clients that send `*` have long meant gzip by it.
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            (name.eq_ignore_ascii_case(coding) || (name == "*" && coding == "gzip")) && !q_zero
        })
}

/// `Cache-Control` of a fast pack: the final pack replaces it under the same URL within minutes,
/// so caches keep it briefly and ask again (the ETag, its sha256, tells the two apart).
pub const FAST_PACK_CACHE_CONTROL: &str = "public, max-age=30";

/// `GET /v1/packs/{package}/{to}.zip` (full pack) or `/v1/packs/{package}/{from}..{to}.zip`
/// (diff pack), or the same with `.bpk` for the compact container: the final pack (immutable),
/// else the fast pack (cached briefly), else `503` with `Retry-After` after at most a short wait,
/// the build going on in the background.
pub async fn pack(
    State(service): State<Arc<Service>>,
    Path((package, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let package = PackageId::parse(&package)?;
    let (name, format) = PackName::parse_file(&name).map_err(|e| match e {
        manifests::Error::InvalidPackName { .. } => Error::NotFound(format!("pack {name:?}")),
        other => other.into(),
    })?;
    service
        .check_pack_access(&headers, &package, name.from(), name.to())
        .await?;
    let servable = service
        .servable_pack(&package, name.from(), name.to())
        .await?;
    match (format, servable) {
        (PackFormat::Zip, Servable::Final(record)) => {
            serve_blob(&service, &record.digest, &headers, "application/zip").await
        }
        (PackFormat::Zip, Servable::Fast(fast)) => Ok(serve_fast_pack(&fast, &headers)),
        (PackFormat::Compact, servable) => {
            let key = PackKey::new(&package, name.from(), name.to());
            let compact = service.compact_pack(&key, &servable).await?;
            Ok(serve_compact_pack(&compact, &headers))
        }
    }
}

/// Serves a compact pack from memory (`application/vnd.baleen.pack`, tagged by the zip it comes
/// from), as [`serve_pack_from_memory`] does.
fn serve_compact_pack(pack: &CompactPack, headers: &HeaderMap) -> Response {
    serve_pack_from_memory(
        &pack.bytes,
        pack.tag.clone(),
        "application/vnd.baleen.pack",
        pack.immutable,
        headers,
    )
}

/// Serves a fast zip pack from memory, whole, as [`serve_pack_from_memory`] does.
fn serve_fast_pack(fast: &FastPack, headers: &HeaderMap) -> Response {
    serve_pack_from_memory(
        &fast.bytes,
        etag(&fast.digest),
        "application/zip",
        false,
        headers,
    )
}

/// Serves a pack held in memory with its strong ETag. A final pack (`immutable`) is cached for
/// good and honours `Range`, for a resumed download; a fast pack is cached briefly and served
/// whole, so that a download resumed after the final pack replaced it cannot be stitched from
/// the two.
fn serve_pack_from_memory(
    bytes: &Bytes,
    tag: HeaderValue,
    content_type: &'static str,
    immutable: bool,
    headers: &HeaderMap,
) -> Response {
    let cache = HeaderValue::from_static(if immutable {
        IMMUTABLE
    } else {
        FAST_PACK_CACHE_CONTROL
    });
    if not_modified(headers, &tag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, tag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    let size = bytes.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| immutable)
        .map(|spec| parse_range(spec, size));
    let (status, body) = match &range {
        Some(RangeSpec::Satisfiable(r)) => (
            StatusCode::PARTIAL_CONTENT,
            // Both ends lie within the pack: `parse_range` clamps them to its size.
            bytes.slice(r.start as usize..r.end as usize),
        ),
        Some(RangeSpec::Unsatisfiable) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response();
        }
        Some(RangeSpec::Ignored) | None => (StatusCode::OK, bytes.clone()),
    };
    let len = body.len();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ETAG, tag);
    h.insert(header::CACHE_CONTROL, cache);
    if immutable {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some(RangeSpec::Satisfiable(r)) = &range
        && let Ok(value) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{size}",
            r.start,
            r.end.saturating_sub(1)
        ))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    response
}

/// Serves a stored blob with its digest as strong ETag, `Range` and immutable caching.
async fn serve_blob(
    service: &Service,
    digest: &Digest,
    headers: &HeaderMap,
    content_type: &'static str,
) -> Result<Response> {
    let tag = etag(digest);
    let range_spec = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // A plain GET reads the blob at once; the size comes first only where it decides the answer.
    let size = if range_spec.is_none() && headers.get(header::IF_NONE_MATCH).is_none() {
        None
    } else {
        let Some(size) = service.blobs().size(digest).await? else {
            return Err(Error::NotFound(format!("blob {digest}")));
        };
        if not_modified(headers, &tag) {
            return Ok(immutable_not_modified(tag));
        }
        Some(size)
    };
    let range = match range_spec.zip(size) {
        Some((spec, size)) => match parse_range(spec, size) {
            RangeSpec::Satisfiable(r) => Some(r),
            RangeSpec::Unsatisfiable => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response());
            }
            RangeSpec::Ignored => None,
        },
        None => None,
    };
    let read = service
        .blobs()
        .read(digest, range.clone())
        .await?
        .ok_or_else(|| Error::NotFound(format!("blob {digest}")))?;
    let len = read.range.end - read.range.start;
    let body = match read.in_memory {
        Some(bytes) => Body::from(bytes),
        None => Body::from_stream(ReaderStream::with_capacity(read.reader, STREAM_CHUNK)),
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ETAG, tag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        let value = format!(
            "bytes {}-{}/{}",
            read.range.start,
            read.range.end.saturating_sub(1),
            read.total_size
        );
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).map_err(|e| Error::Internal(e.to_string()))?,
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

/// A `Range` header, as far as this server honours it.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// One satisfiable byte range (end exclusive).
    Satisfiable(Range<u64>),
    /// A well-formed range that lies beyond the end.
    Unsatisfiable,
    /// Malformed or multi-range: answered with the whole body, as RFC 9110 allows.
    Ignored,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` against a body of `size` bytes.
pub fn parse_range(spec: &str, size: u64) -> RangeSpec {
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignored;
    };
    if ranges.contains(',') {
        return RangeSpec::Ignored;
    }
    let Some((start, end)) = ranges.trim().split_once('-') else {
        return RangeSpec::Ignored;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, true) => RangeSpec::Ignored,
        (true, false) => match number(end) {
            None => RangeSpec::Ignored,
            Some(n) if n == 0 || size == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Satisfiable(size.saturating_sub(n)..size),
        },
        (false, _) => {
            let Some(first) = number(start) else {
                return RangeSpec::Ignored;
            };
            let last = if end.trim().is_empty() {
                Some(u64::MAX)
            } else {
                number(end)
            };
            match last {
                Some(last) if last < first => RangeSpec::Ignored,
                Some(_) if first >= size => RangeSpec::Unsatisfiable,
                Some(last) => RangeSpec::Satisfiable(first..last.saturating_add(1).min(size)),
                None => RangeSpec::Ignored,
            }
        }
    }
}

/// The largest event batch accepted, in bytes: 1,000 events of up to about 250 bytes fit; the
/// route needs no token, so its cap is small.
pub const EVENTS_BODY_LIMIT: usize = 256 * 1024;

/// `POST /v1/events`: a device's batch of reports, carrying the app's ingest key and the
/// device's id. The body was read within [`EVENTS_BODY_LIMIT`] and the body deadline on
/// admission (`http::admit`); the client's address is limited before it is parsed.
pub async fn events(
    State(service): State<Arc<Service>>,
    request: axum::extract::Request,
) -> Result<Response> {
    if let Some(super::ClientAddr(address)) = request.extensions().get::<super::ClientAddr>() {
        service.events.admit_address(*address)?;
    }
    let body = axum::body::to_bytes(request.into_body(), EVENTS_BODY_LIMIT)
        .await
        .map_err(|_| Error::TooLarge {
            limit_bytes: EVENTS_BODY_LIMIT as u64,
        })?;
    let batch = manifests::parse_event_batch(&body)?;
    let accepted = service.record_events(&batch).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(accepted)).into_response())
}
