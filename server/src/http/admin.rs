//! What front-end teams and release engineers call: publish, channel changes, listings. Every
//! route needs a bearer token of a sufficient scope.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use manifests::{AppId, Channel, PackageId};
use tokio::io::AsyncWriteExt;

use crate::api::{
    self, AuditQuery, ChangeRequest, ChangeResult, PublishQuery, Published, ReleaseReport,
    ReleaseSummary,
};
use crate::auth::{Caller, TokenSpec};
use crate::error::{Error, Result};
use crate::meta_store::Scope;
use crate::publish::{PublishRequest, unique_dir};
use crate::service::Service;

/// The caller of a request that wants to `action` (recorded with the token's use).
async fn caller(service: &Service, headers: &HeaderMap, action: &str) -> Result<Caller> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    service.authenticate(token, action).await
}

/// `POST /v1/admin/apps/{app}/packages/{package}/releases?version=…` with a zip body.
pub async fn publish(
    State(service): State<Arc<Service>>,
    Path((app, package)): Path<(String, String)>,
    query: std::result::Result<Query<PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    // Who asks comes first: a caller without a token learns nothing about the input's rules.
    let caller = caller(&service, &headers, "publish").await?;
    let (app, package) = (AppId::parse(&app)?, PackageId::parse(&package)?);
    let Query(query) = query.map_err(|e| Error::BadRequest(format!("query: {}", e.body_text())))?;
    caller.require(Scope::Publish, Some(&package), "publish")?;
    if caller.token.package.is_some() {
        let owner = service.meta().package_app(&package).await?;
        let app_exists = !service.meta().app_packages(&app).await?.is_empty();
        caller.require_app(&app, owner.as_ref(), app_exists)?;
    }
    if let Some(channel) = &query.channel {
        caller.require(Scope::Release, Some(&package), "publish to a channel")?;
        let channel = Channel::parse(channel)?;
        service
            .check_channel(&app, &channel, query.create_channel.unwrap_or(false))
            .await?;
    }
    let limit = service.settings().max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::TooLarge { limit_bytes: limit });
    }
    let upload_dir = unique_dir(&service.settings().staging_dir)?;
    let result = async {
        let zip = upload_dir.join("upload.zip");
        receive(body, &zip, limit, service.settings().upload_idle_timeout).await?;
        let request = PublishRequest {
            version: query.version.clone(),
            requires: query.requires.clone(),
            routes: query
                .routes
                .as_deref()
                .map(|r| {
                    r.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            entry: query.entry.clone(),
            spa: query.spa,
            notes: query.notes.clone(),
            source_revision: query.source_revision.clone(),
            channel: query.channel.clone(),
            base: query.base.clone(),
            removed: query
                .removed
                .as_deref()
                .map(|r| {
                    r.lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            priority: query.priority,
            prefetch: query.prefetch.clone(),
        };
        service
            .publish(&app, &package, &request, &zip, caller.name())
            .await
    }
    .await;
    if let Err(e) = tokio::fs::remove_dir_all(&upload_dir).await {
        tracing::warn!(dir = %upload_dir.display(), error = %e, "could not remove upload dir");
    }
    let published = match result {
        Ok(published) => published,
        Err(e) => {
            service.metrics().publish("refused");
            return Err(e);
        }
    };
    service.metrics().publish(if published.created {
        "created"
    } else {
        "unchanged"
    });
    if published.created {
        tokio::spawn(
            service
                .clone()
                .build_packs_after_publish(package.clone(), published.release.version.clone()),
        );
    }
    let status = if published.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Published::from(&published))).into_response())
}

/// Streams a request body into a new file, refusing more than `limit` bytes.
async fn receive(
    body: Body,
    path: &std::path::Path,
    limit: u64,
    idle: std::time::Duration,
) -> Result<()> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let mut body = body;
    let mut received: u64 = 0;
    while let Some(frame) = tokio::time::timeout(idle, body.frame())
        .await
        .map_err(|_| {
            Error::Timeout(format!(
                "the upload sent nothing for {} s",
                idle.as_secs_f64()
            ))
        })?
    {
        let frame = frame.map_err(|e| Error::BadRequest(format!("upload interrupted: {e}")))?;
        if let Ok(data) = frame.into_data() {
            received += data.len() as u64;
            if received > limit {
                return Err(Error::TooLarge { limit_bytes: limit });
            }
            file.write_all(&data)
                .await
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
    }
    file.sync_all()
        .await
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
    Ok(())
}

/// `GET /v1/admin/packages/{package}/releases`
pub async fn releases(
    State(service): State<Arc<Service>>,
    Path(package): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let package = PackageId::parse(&package)?;
    caller(&service, &headers, "list releases").await?.require(
        Scope::Publish,
        Some(&package),
        "list releases",
    )?;
    if service.meta().package_app(&package).await?.is_none() {
        return Err(Error::NotFound(format!("package {package}")));
    }
    let releases = service.meta().releases(&package).await?;
    let releases: Vec<ReleaseSummary> = releases.iter().map(ReleaseSummary::from).collect();
    Ok(Json(releases).into_response())
}

/// `POST /v1/admin/packages/{package}/channels/{channel}` with `{"action":"promote",…}`.
pub async fn change(
    State(service): State<Arc<Service>>,
    Path((package, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: std::result::Result<Json<ChangeRequest>, JsonRejection>,
) -> Result<Response> {
    let caller = caller(&service, &headers, "change a channel").await?;
    let (package, channel) = (PackageId::parse(&package)?, Channel::parse(&channel)?);
    let Json(body) = body.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge {
            limit_bytes: 2 * 1024 * 1024,
        },
        _ => Error::BadRequest(format!("request body: {}", e.body_text())),
    })?;
    caller.require(Scope::Release, Some(&package), body.action.name())?;
    if caller.token.package.is_some() {
        let owner = service.meta().package_app(&package).await?;
        if let Some(owner) = &owner {
            caller.require_app(owner, Some(owner), true)?;
        }
    }
    api::check_reason(&body.reason)?;
    if let Some(app) = service.meta().package_app(&package).await? {
        service
            .check_channel(&app, &channel, body.create_channel)
            .await?;
    }
    let outcome = service
        .change_channel(
            &package,
            &channel,
            &body.action,
            caller.name(),
            &body.reason,
        )
        .await?;
    Ok(Json(ChangeResult::from(&outcome)).into_response())
}

/// The caller of a ramp route on `package`, with the release scope (and, for a package-bound
/// token, its app).
async fn ramp_caller(
    service: &Service,
    headers: &HeaderMap,
    package: &PackageId,
    action: &str,
) -> Result<Caller> {
    let caller = caller(service, headers, action).await?;
    caller.require(Scope::Release, Some(package), action)?;
    if caller.token.package.is_some()
        && let Some(owner) = service.meta().package_app(package).await?
    {
        caller.require_app(&owner, Some(&owner), true)?;
    }
    Ok(caller)
}

/// `GET /v1/admin/packages/{package}/channels/{channel}/ramp`
pub async fn ramp(
    State(service): State<Arc<Service>>,
    Path((package, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (package, channel) = (PackageId::parse(&package)?, Channel::parse(&channel)?);
    ramp_caller(&service, &headers, &package, "read a ramp").await?;
    let ramp = service
        .ramp(&package, &channel)
        .await?
        .ok_or_else(|| Error::NotFound(format!("a ramp of {package} on {channel}")))?;
    Ok(Json(ramp).into_response())
}

/// `PUT /v1/admin/packages/{package}/channels/{channel}/ramp` with a `RampRequest`.
pub async fn start_ramp(
    State(service): State<Arc<Service>>,
    Path((package, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: std::result::Result<Json<api::RampRequest>, JsonRejection>,
) -> Result<Response> {
    let (package, channel) = (PackageId::parse(&package)?, Channel::parse(&channel)?);
    let caller = ramp_caller(&service, &headers, &package, "start a ramp").await?;
    let Json(body) =
        body.map_err(|e| Error::BadRequest(format!("request body: {}", e.body_text())))?;
    api::check_reason(&body.reason)?;
    let app = service
        .meta()
        .package_app(&package)
        .await?
        .ok_or_else(|| Error::NotFound(format!("package {package}")))?;
    service.check_channel(&app, &channel, false).await?;
    let ramp = service
        .start_ramp(
            &package,
            &channel,
            body.version.as_ref(),
            body.policy,
            caller.name(),
            &body.reason,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(ramp)).into_response())
}

/// `DELETE /v1/admin/packages/{package}/channels/{channel}/ramp`: the share stays where it is.
pub async fn stop_ramp(
    State(service): State<Arc<Service>>,
    Path((package, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (package, channel) = (PackageId::parse(&package)?, Channel::parse(&channel)?);
    let caller = ramp_caller(&service, &headers, &package, "stop a ramp").await?;
    let ramp = service
        .stop_ramp(&package, &channel, caller.name(), "stopped")
        .await?;
    Ok(Json(ramp).into_response())
}

/// `POST /v1/admin/ramps/evaluate`: every running ramp, evaluated now.
pub async fn evaluate_ramps(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<Response> {
    let caller = caller(&service, &headers, "evaluate the ramps").await?;
    caller.require(Scope::Admin, None, "evaluate the ramps")?;
    let evaluated = service.evaluate_ramps(crate::service::now()).await?;
    Ok(Json(evaluated).into_response())
}

/// `GET /v1/admin/packages/{package}/channels/{channel}/history`
pub async fn history(
    State(service): State<Arc<Service>>,
    Path((package, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (package, channel) = (PackageId::parse(&package)?, Channel::parse(&channel)?);
    caller(&service, &headers, "read history").await?.require(
        Scope::Publish,
        Some(&package),
        "read history",
    )?;
    let app = service
        .meta()
        .package_app(&package)
        .await?
        .ok_or_else(|| Error::NotFound(format!("package {package}")))?;
    let history = service
        .meta()
        .history(&app, &channel, Some(&package))
        .await?;
    let history: Vec<api::HistoryEntry> = history.iter().map(api::HistoryEntry::from).collect();
    Ok(Json(history).into_response())
}

/// `GET /v1/admin/apps/{app}/channels/{channel}`: every package's state on the channel.
pub async fn channel_state(
    State(service): State<Arc<Service>>,
    Path((app, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (app, channel) = (AppId::parse(&app)?, Channel::parse(&channel)?);
    caller(&service, &headers, "read channel state")
        .await?
        .require(Scope::Release, None, "read channel state")?;
    let state = service.meta().channel_state(&app, &channel).await?;
    Ok(Json(api::ChannelState::from(&state)).into_response())
}

/// `GET /v1/admin/audit?limit=N`
pub async fn audit(
    State(service): State<Arc<Service>>,
    query: std::result::Result<Query<AuditQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    caller(&service, &headers, "read the audit log")
        .await?
        .require(Scope::Admin, None, "read the audit log")?;
    let Query(query) = query.map_err(|e| Error::BadRequest(format!("query: {}", e.body_text())))?;
    let limit = query.limit.unwrap_or(100).min(10_000);
    let log = service.meta().audit_log(limit).await?;
    let log: Vec<api::AuditEntry> = log.iter().map(api::AuditEntry::from).collect();
    Ok(Json(log).into_response())
}

/// `GET /v1/admin/apps/{app}/channels/{channel}/stats`
pub async fn stats(
    State(service): State<Arc<Service>>,
    Path((app, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (app, channel) = (AppId::parse(&app)?, Channel::parse(&channel)?);
    caller(&service, &headers, "read statistics")
        .await?
        .require(Scope::Release, None, "read statistics")?;
    let stats = service.meta().stats(&app, &channel).await?;
    let reports: Vec<ReleaseReport> = stats.iter().map(ReleaseReport::from).collect();
    Ok(Json(reports).into_response())
}

/// `GET /v1/admin/tokens`: every token, never a secret.
pub async fn tokens(State(service): State<Arc<Service>>, headers: HeaderMap) -> Result<Response> {
    caller(&service, &headers, "list tokens")
        .await?
        .require(Scope::Admin, None, "list tokens")?;
    let at = crate::service::now();
    let tokens: Vec<api::TokenSummary> = service
        .meta()
        .tokens()
        .await?
        .iter()
        .map(|t| api::TokenSummary::of(t, at))
        .collect();
    Ok(Json(tokens).into_response())
}

/// `POST /v1/admin/tokens` with a `TokenRequest`: a new token, its secret shown only here.
pub async fn create_token(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: std::result::Result<Json<api::TokenRequest>, JsonRejection>,
) -> Result<Response> {
    let caller = caller(&service, &headers, "create a token").await?;
    caller.require(Scope::Admin, None, "create tokens")?;
    let Json(body) =
        body.map_err(|e| Error::BadRequest(format!("request body: {}", e.body_text())))?;
    let spec = TokenSpec {
        name: body.name,
        scope: Scope::parse(&body.scope).ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown scope {:?}; use publish, release or admin",
                body.scope
            ))
        })?,
        app: body.app.as_deref().map(AppId::parse).transpose()?,
        package: body.package.as_deref().map(PackageId::parse).transpose()?,
        expires_in_secs: body.expires_in_secs,
    };
    let made = service.create_token(&spec, caller.name()).await?;
    let answer = api::NewToken {
        token: made.secret,
        summary: api::TokenSummary::of(&made.record, crate::service::now()),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `DELETE /v1/admin/tokens/{name}`: the token is refused from now on.
pub async fn revoke_token(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let caller = caller(&service, &headers, "revoke a token").await?;
    caller.require(Scope::Admin, None, "revoke tokens")?;
    let token = service.revoke_token(&name, caller.name()).await?;
    Ok(Json(api::TokenSummary::of(&token, crate::service::now())).into_response())
}

/// `GET /v1/admin/apps/{app}/ingest-keys`: the app's ingest keys, never a key.
pub async fn ingest_keys(
    State(service): State<Arc<Service>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let app = AppId::parse(&app)?;
    caller(&service, &headers, "list ingest keys")
        .await?
        .require(Scope::Admin, None, "list ingest keys")?;
    let keys: Vec<api::IngestKeySummary> = service
        .meta()
        .ingest_keys(&app)
        .await?
        .iter()
        .map(api::IngestKeySummary::of)
        .collect();
    Ok(Json(keys).into_response())
}

/// `POST /v1/admin/apps/{app}/ingest-keys` with an `IngestKeyRequest`: a new ingest key, shown
/// only here.
pub async fn create_ingest_key(
    State(service): State<Arc<Service>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Json<api::IngestKeyRequest>, JsonRejection>,
) -> Result<Response> {
    let app = AppId::parse(&app)?;
    let caller = caller(&service, &headers, "create an ingest key").await?;
    caller.require(Scope::Admin, None, "create ingest keys")?;
    let Json(body) =
        body.map_err(|e| Error::BadRequest(format!("request body: {}", e.body_text())))?;
    let (key, record) = service
        .create_ingest_key(&app, &body.name, caller.name())
        .await?;
    let answer = api::NewIngestKey {
        key,
        summary: api::IngestKeySummary::of(&record),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `DELETE /v1/admin/apps/{app}/ingest-keys/{name}`: batches carrying the key are refused from
/// now on.
pub async fn revoke_ingest_key(
    State(service): State<Arc<Service>>,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let app = AppId::parse(&app)?;
    let caller = caller(&service, &headers, "revoke an ingest key").await?;
    caller.require(Scope::Admin, None, "revoke ingest keys")?;
    let key = service
        .revoke_ingest_key(&app, &name, caller.name())
        .await?;
    Ok(Json(api::IngestKeySummary::of(&key)).into_response())
}

/// `GET /v1/admin/apps/{app}/origins`
pub async fn origins(
    State(service): State<Arc<Service>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let app = AppId::parse(&app)?;
    caller(&service, &headers, "read an app's origins")
        .await?
        .require(Scope::Publish, None, "read an app's origins")?;
    let origins = service
        .meta()
        .app_origins(&app)
        .await?
        .ok_or_else(|| Error::NotFound(format!("app {app}")))?;
    Ok(Json(api::Origins { origins }).into_response())
}

/// `PUT /v1/admin/apps/{app}/origins` with `{"origins": [...]}`.
pub async fn set_origins(
    State(service): State<Arc<Service>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Json<api::Origins>, JsonRejection>,
) -> Result<Response> {
    let caller = caller(&service, &headers, "declare an app's origins").await?;
    let app = AppId::parse(&app)?;
    caller.require(Scope::Admin, None, "declare an app's origins")?;
    let Json(body) =
        body.map_err(|e| Error::BadRequest(format!("request body: {}", e.body_text())))?;
    let origins = service
        .set_app_origins(&app, &body.origins, caller.name())
        .await?;
    Ok(Json(api::Origins { origins }).into_response())
}

/// `POST /v1/admin/apps/{app}/keys` with the next signed key list.
pub async fn add_key_list(
    State(service): State<Arc<Service>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    let caller = caller(&service, &headers, "change an app's keys").await?;
    let app = AppId::parse(&app)?;
    caller.require(Scope::Admin, None, "change an app's keys")?;
    let keys = service.add_key_list(&app, &body, caller.name()).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::KeyListAdded {
            app: app.to_string(),
            version: keys.list.version,
        }),
    )
        .into_response())
}

/// `POST /v1/admin/apps/{app}/packages/{package}/releases/{version}/signatures` with
/// `{"keyid": …, "sig": …}`.
pub async fn sign_release(
    State(service): State<Arc<Service>>,
    Path((app, package, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: std::result::Result<Json<api::ReleaseSignature>, JsonRejection>,
) -> Result<Response> {
    let caller = caller(&service, &headers, "sign a release").await?;
    let (app, package) = (AppId::parse(&app)?, PackageId::parse(&package)?);
    let version = manifests::ReleaseVersion::parse(&version)?;
    caller.require(Scope::Publish, Some(&package), "sign a release")?;
    let Json(body) =
        body.map_err(|e| Error::BadRequest(format!("request body: {}", e.body_text())))?;
    let keyid = manifests::KeyId::parse(&body.keyid)
        .map_err(|_| Error::BadRequest(format!("keyid {:?} is not a key id", body.keyid)))?;
    let sig = api::decode_signature(&body.sig)?;
    let manifest = service
        .add_release_signature(&app, &package, &version, &keyid, &sig, caller.name())
        .await?;
    let signed_by = signers_of(&manifest)?;
    Ok(Json(api::ReleaseSigned {
        manifest: manifests::Digest::of(&manifests::signed_bytes(&manifest)?).to_string(),
        signed_by,
    })
    .into_response())
}

/// The key ids an envelope's signatures name.
fn signers_of(envelope: &[u8]) -> Result<Vec<String>> {
    let value = manifests::parse_strict(envelope)?;
    Ok(value
        .get("signatures")
        .and_then(serde_json::Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(|e| e.get("keyid").and_then(serde_json::Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// `POST /v1/admin/gc` with `{"dry_run": true}` (and any policy values to replace): collects
/// garbage, or says what would go.
pub async fn gc(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response> {
    let caller = caller(&service, &headers, "collect garbage").await?;
    caller.require(Scope::Admin, None, "collect garbage")?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    if !json {
        return Err(Error::BadRequest(
            "request body: expected `Content-Type: application/json`".into(),
        ));
    }
    // serde would read a struct from an array too (`[]` as every default: a real collection);
    // only an object is a request.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::BadRequest(
            "request body: expected a JSON object, such as {\"dry_run\": true}".into(),
        ));
    }
    let Json(body) = Json::<api::GcRequest>::from_bytes(&body)
        .map_err(|e| Error::BadRequest(format!("request body: {}", e.body_text())))?;
    let policy = body.policy(service.settings().retention);
    policy.check()?;
    // In a task of its own: a client that gives up does not stop a collection part-way.
    let actor = caller.name().to_owned();
    let collected =
        tokio::spawn(async move { service.collect_garbage(body.dry_run, &policy, &actor).await })
            .await
            .map_err(|e| Error::Internal(format!("garbage collection task failed: {e}")))??;
    Ok(Json(api::GcReport::from(&collected)).into_response())
}
