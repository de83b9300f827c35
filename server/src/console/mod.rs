//! The release console: server-rendered pages at `/console` for release engineers, built into
//! the binary (templates compiled in, one stylesheet, no script, nothing fetched at run time;
//! see `docs/adr/0010-console.md`).
//!
//! Every page reads through the same store and every action goes through the same
//! [`Service`] calls as the admin API, under the scope of the token the browser signed in with
//! ([`session`]): the console offers only what that token may do, and the service refuses the
//! rest anyway. Pages are plain links and forms, so each works with the keyboard alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use manifests::{AppId, Channel, PackageId, ReleaseVersion};
use serde::Deserialize;

use crate::api::ReleaseReport;
use crate::channel::Action;
use crate::error::{Error, Result};
use crate::meta_store::{HistoryEntry, ReleaseRecord, Scope};
use crate::ramp::{RampPolicy, RampRecord, RampState};
use crate::service::Service;

pub mod chart;
pub mod session;

use session::{SESSION_COOKIE, SIGN_IN_COOKIE, Session};

/// The console's stylesheet.
const STYLE: &str = include_str!("../../assets/console.css");

/// The console's routes, under `/console`.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/assets/console.css", get(style))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/apps", get(apps))
        .route("/console/apps/{app}/channels/{channel}", get(channel_page))
        .route(
            "/console/apps/{app}/channels/{channel}/packages/{package}/actions",
            post(channel_action),
        )
        .route(
            "/console/apps/{app}/channels/{channel}/packages/{package}/ramp",
            post(ramp_start),
        )
        .route(
            "/console/apps/{app}/channels/{channel}/packages/{package}/ramp/stop",
            post(ramp_stop),
        )
        .route(
            "/console/packages/{package}/releases/{version}",
            get(release_page),
        )
        .route("/console/packages/{package}/compare", get(compare_page))
}

/// What every page shows around its content.
#[derive(Clone, Debug, Default)]
struct Chrome {
    /// The token's name, when signed in.
    who: Option<String>,
    /// The token's scope, as the user would say it.
    scope: String,
    /// The session's form secret.
    csrf: String,
}

impl Chrome {
    fn of(session: &Session) -> Chrome {
        let token = &session.caller.token;
        let mut scope = token.scope.as_str().to_owned();
        if let Some(p) = &token.package {
            scope = format!("{scope}, package {p} only");
        }
        Chrome {
            who: Some(token.name.clone()),
            scope,
            csrf: session.csrf.clone(),
        }
    }
}

impl From<manifests::Error> for Page {
    fn from(e: manifests::Error) -> Page {
        Page::from(Error::from(e))
    }
}

/// A page, or an error shown as one.
struct Page(Response);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<Error> for Page {
    fn from(e: Error) -> Page {
        let status = e.status();
        let page = ErrorPage {
            chrome: Chrome::default(),
            status: status.as_u16(),
            code: e.code().to_owned(),
            message: e.to_string(),
        };
        Page(html(status, &page))
    }
}

fn html(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => {
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            secure_headers(headers);
            response
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the console could not draw this page: {e}"),
        )
            .into_response(),
    }
}

/// Headers every console answer carries: no script may run, nothing is fetched from elsewhere,
/// no other site may frame a page (clickjacking), and nothing is cached.
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn see_other(to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    secure_headers(response.headers_mut());
    response
}

/// The signed-in session, or a redirect to the sign-in page.
async fn signed_in(service: &Service, headers: &HeaderMap) -> std::result::Result<Session, Page> {
    match service.current_session(headers).await? {
        Some(session) => Ok(session),
        None => Err(Page(see_other("/console/sign-in"))),
    }
}

/// A form's fields (`application/x-www-form-urlencoded`).
fn form<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T> {
    serde_urlencoded::from_bytes(body).map_err(|e| Error::BadRequest(format!("form: {e}")))
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    code: String,
    message: String,
}

async fn home(State(service): State<Arc<Service>>, headers: HeaderMap) -> Result<Response> {
    Ok(match service.current_session(&headers).await? {
        Some(_) => see_other("/console/apps"),
        None => see_other("/console/sign-in"),
    })
}

async fn style() -> Response {
    let mut response = STYLE.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    nonce: String,
    problem: Option<String>,
}

fn sign_in_form(headers: &HeaderMap, status: StatusCode, problem: Option<String>) -> Result<Page> {
    let nonce = crate::auth::random_hex(16)?;
    let mut response = html(
        status,
        &SignInPage {
            chrome: Chrome::default(),
            nonce: nonce.clone(),
            problem,
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(headers, SIGN_IN_COOKIE, &nonce, 3600)?,
    );
    Ok(Page(response))
}

async fn sign_in_page(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> std::result::Result<Page, Page> {
    if service.current_session(&headers).await?.is_some() {
        return Ok(Page(see_other("/console/apps")));
    }
    Ok(sign_in_form(&headers, StatusCode::OK, None)?)
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
    nonce: String,
}

async fn sign_in(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Page, Page> {
    let fields: SignInForm = form(&body)?;
    // The form must come from a page this browser was given (a login CSRF would sign the
    // victim in as the attacker).
    let expected = session::cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same(fields.nonce.as_bytes(), expected.as_bytes()) {
        return Ok(sign_in_form(
            &headers,
            StatusCode::FORBIDDEN,
            Some("This sign-in form has expired; please sign in again.".into()),
        )?);
    }
    match service.open_session(&fields.token).await {
        Ok((secret, record)) => {
            let lifetime = record
                .expires_at
                .unix_secs()
                .saturating_sub(record.created_at.unix_secs());
            let mut response = see_other("/console/apps");
            let set = response.headers_mut();
            set.append(
                header::SET_COOKIE,
                session::set_cookie(&headers, SESSION_COOKIE, &secret, lifetime)?,
            );
            set.append(
                header::SET_COOKIE,
                session::set_cookie(&headers, SIGN_IN_COOKIE, "", 0)?,
            );
            Ok(Page(response))
        }
        Err(e @ (Error::Unauthorized | Error::TokenRefused { .. })) => {
            let problem = match e {
                Error::TokenRefused { name, reason } => format!("Token {name} {reason}."),
                _ => "That token is not known here.".to_owned(),
            };
            Ok(sign_in_form(
                &headers,
                StatusCode::UNAUTHORIZED,
                Some(problem),
            )?)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn sign_out(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Page, Page> {
    let session = signed_in(&service, &headers).await?;
    let fields: CsrfForm = form(&body)?;
    session.check_csrf(fields.csrf.as_deref())?;
    service.meta().delete_session(&session.id).await?;
    let mut response = see_other("/console/sign-in");
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&headers, SESSION_COOKIE, "", 0)?,
    );
    Ok(Page(response))
}

/// One app on the apps page.
struct AppView {
    name: String,
    channels: Vec<String>,
    packages: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/apps.html")]
struct AppsPage {
    chrome: Chrome,
    apps: Vec<AppView>,
}

/// Whether the session may see `package` at all.
fn may_read(session: &Session, package: &PackageId) -> bool {
    session
        .caller
        .require(Scope::Publish, Some(package), "read")
        .is_ok()
}

/// Whether the session may change `package` on a channel.
fn may_release(session: &Session, package: &PackageId) -> bool {
    session
        .caller
        .require(Scope::Release, Some(package), "release")
        .is_ok()
}

async fn apps(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> std::result::Result<Page, Page> {
    let session = signed_in(&service, &headers).await?;
    let mut channels: BTreeMap<AppId, Vec<String>> = BTreeMap::new();
    for (app, channel) in service.meta().channels().await? {
        channels.entry(app).or_default().push(channel.to_string());
    }
    let mut apps = Vec::new();
    for (app, channels) in channels {
        if session
            .caller
            .token
            .app
            .as_ref()
            .is_some_and(|bound| bound != &app)
        {
            continue;
        }
        let packages: Vec<String> = service
            .meta()
            .app_packages(&app)
            .await?
            .into_iter()
            .filter(|p| may_read(&session, p))
            .map(|p| p.to_string())
            .collect();
        if packages.is_empty() {
            continue;
        }
        apps.push(AppView {
            name: app.to_string(),
            channels,
            packages,
        });
    }
    Ok(Page(html(
        StatusCode::OK,
        &AppsPage {
            chrome: Chrome::of(&session),
            apps,
        },
    )))
}

/// One row of a release's figures.
struct FigureRow {
    version: String,
    role: &'static str,
    installed: u64,
    activated: u64,
    failed: u64,
    rolled_back: u64,
    failure: String,
    interval: String,
    opens: u64,
    under_1s: String,
    offline: String,
    open_median: String,
    open_p90: String,
}

/// One history entry as the timeline shows it.
struct HistoryRow {
    at: String,
    action: String,
    change: String,
    actor: String,
    reason: String,
    sequence: u64,
}

/// A release's adoption as the channel page shows it.
struct AdoptionRow {
    version: String,
    published: String,
    devices: u64,
    to_half: String,
    to_nine_tenths: String,
}

/// How many days of adoption the chart shows.
const ADOPTION_DAYS: u64 = 30;
/// How many releases the adoption chart draws (the newest with devices).
const ADOPTION_RELEASES: usize = 6;

/// The adoption chart and table from a package's daily figures: activated devices per release,
/// cumulative by day; for each release, the days from its publish to half and nine-tenths of
/// the devices that have activated it so far.
fn adoption(
    package: &PackageId,
    days: &[crate::meta_store::DayFigure],
    releases: &[crate::meta_store::ReleaseFact],
    today: u64,
) -> (String, Vec<AdoptionRow>) {
    let mut per_release: BTreeMap<&ReleaseVersion, Vec<(u64, u64)>> = BTreeMap::new();
    for d in days.iter().filter(|d| d.figure == "activated") {
        per_release
            .entry(&d.version)
            .or_default()
            .push((d.day, d.count));
    }
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for (version, points) in per_release.iter().rev() {
        let total: u64 = points.iter().map(|p| p.1).sum();
        let published = releases
            .iter()
            .find(|r| &r.version == *version)
            .map(|r| r.created_at.unix_secs() / 86_400);
        let reach = |share: f64| -> String {
            let mut sum = 0;
            for (day, count) in points {
                sum += count;
                if sum as f64 >= share * total as f64 {
                    return match (published, *day) {
                        (_, 0) | (None, _) => "–".to_owned(),
                        (Some(p), d) => format!("{} d", d.saturating_sub(p)),
                    };
                }
            }
            "–".to_owned()
        };
        rows.push(AdoptionRow {
            version: version.to_string(),
            published: published.map_or("collected".to_owned(), chart::date_of),
            devices: total,
            to_half: reach(0.5),
            to_nine_tenths: reach(0.9),
        });
        let dated: Vec<(u64, u64)> = points.iter().filter(|p| p.0 > 0).copied().collect();
        if series.len() < ADOPTION_RELEASES && !dated.is_empty() {
            let before: u64 = points.iter().filter(|p| p.0 == 0).map(|p| p.1).sum();
            let mut sum = before;
            series.push(chart::Series {
                label: version.to_string(),
                points: dated
                    .iter()
                    .map(|(day, count)| {
                        sum += count;
                        (*day, sum)
                    })
                    .collect(),
            });
        }
    }
    let first = series
        .iter()
        .filter_map(|s| s.points.first().map(|p| p.0))
        .min()
        .unwrap_or(today)
        .max(today.saturating_sub(ADOPTION_DAYS - 1));
    for s in &mut series {
        // Days before the window fold into its first day.
        let before = s.points.iter().filter(|p| p.0 < first).map(|p| p.1).max();
        s.points.retain(|p| p.0 >= first);
        if let Some(v) = before
            && s.points.first().is_none_or(|p| p.0 > first)
        {
            s.points.insert(0, (first, v));
        }
    }
    series.retain(|s| !s.points.is_empty());
    let chart = if series.is_empty() {
        String::new()
    } else {
        chart::lines(
            &format!("Devices that activated each release of {package}, by day"),
            &series,
            (first, today.max(first + 1)),
        )
    };
    (chart, rows)
}

/// A ramp as the channel page shows it.
struct RampView {
    state: String,
    steps: String,
    min_devices: u64,
    min_step_secs: u64,
    margin: String,
    auto_rollback: bool,
    last: Option<String>,
    active: bool,
}

/// One package on a channel page.
struct PackageView {
    name: String,
    stable: Option<String>,
    candidate: Option<String>,
    share: String,
    share_number: String,
    paused: bool,
    can_release: bool,
    ramp_active: bool,
    versions: Vec<String>,
    rollback_target: Option<String>,
    undo: Option<String>,
    ramp: Option<RampView>,
    figures: Vec<FigureRow>,
    figures_problem: Option<String>,
    failure_chart: String,
    opens_chart: String,
    adoption_chart: String,
    adoption: Vec<AdoptionRow>,
    history: Vec<HistoryRow>,
}

#[derive(Template)]
#[template(path = "console/channel.html")]
struct ChannelPage {
    chrome: Chrome,
    app: String,
    channel: String,
    protected: bool,
    done: Option<String>,
    packages: Vec<PackageView>,
}

#[derive(Deserialize, Default)]
struct Done {
    done: Option<String>,
    package: Option<String>,
    sequence: Option<u64>,
}

/// What the page says after an action, from the known actions only (nothing of the query is
/// echoed as it came).
fn done_message(done: &Done) -> Option<String> {
    let action = match done.done.as_deref()? {
        "promote" => "Promoted",
        "rollout" => "Rollout share set",
        "pause" => "Rollout paused",
        "resume" => "Rollout resumed",
        "complete" => "Rollout completed",
        "rollback" => "Rolled back",
        "undo" => "Last change undone",
        "ramp" => "Ramp started",
        "ramp_stop" => "Ramp stopped",
        _ => return None,
    };
    let package = done
        .package
        .as_deref()
        .and_then(|p| PackageId::parse(p).ok());
    Some(match (package, done.sequence) {
        (Some(p), Some(s)) => format!("{action}: {p}, index sequence {s}."),
        (Some(p), None) => format!("{action}: {p}."),
        _ => format!("{action}."),
    })
}

fn describe(h: &HistoryEntry) -> String {
    let v = |v: &Option<ReleaseVersion>| v.as_ref().map_or("none".into(), ToString::to_string);
    let share = h
        .rollout_basis_points
        .map(|bp| format!(" at {}", chart::percent(f64::from(bp) / 10_000.0)))
        .unwrap_or_default();
    format!("{} → {}{share}", v(&h.from_version), v(&h.to_version))
}

fn figures(
    stats: &[crate::meta_store::ReleaseStats],
    package: &PackageId,
    stable: Option<&ReleaseVersion>,
    candidate: Option<&ReleaseVersion>,
) -> (Vec<FigureRow>, Vec<chart::IntervalRow>, Vec<(String, f64)>) {
    let mut rows = Vec::new();
    let mut intervals = Vec::new();
    let mut opens = Vec::new();
    let share = |x: Option<f64>| x.map_or("–".to_owned(), chart::percent);
    for s in stats.iter().filter(|s| s.package.as_ref() == Some(package)) {
        let report = ReleaseReport::from(s);
        let Some(version) = &report.version else {
            continue;
        };
        let role = if Some(version) == candidate {
            "candidate"
        } else if Some(version) == stable {
            "stable"
        } else {
            "earlier"
        };
        if let (Some(rate), Some([low, high])) = (report.failure_rate, report.failure_rate_interval)
        {
            intervals.push(chart::IntervalRow {
                label: version.to_string(),
                rate,
                low,
                high,
                accent: role == "candidate",
            });
        }
        if let Some(rate) = report.under_1s_rate {
            opens.push((format!("{version} < 1 s"), rate));
        }
        if let Some(rate) = report.offline_hit_rate {
            opens.push((format!("{version} offline"), rate));
        }
        rows.push(FigureRow {
            version: version.to_string(),
            role,
            installed: report.installed,
            activated: report.activated,
            failed: report.failed,
            rolled_back: report.rolled_back,
            failure: share(report.failure_rate),
            interval: report
                .failure_rate_interval
                .map_or("–".to_owned(), |[l, h]| {
                    format!("{} – {}", chart::percent(l), chart::percent(h))
                }),
            opens: report.opens,
            under_1s: share(report.under_1s_rate),
            offline: share(report.offline_hit_rate),
            open_median: report
                .open_ms_median
                .map_or("–".to_owned(), |ms| format!("{ms} ms")),
            open_p90: report
                .open_ms_p90
                .map_or("–".to_owned(), |ms| format!("{ms} ms")),
        });
    }
    (rows, intervals, opens)
}

fn ramp_view(ramp: &RampRecord) -> RampView {
    let p = &ramp.policy;
    RampView {
        state: ramp.state.name().replace('_', " "),
        steps: p
            .steps
            .iter()
            .map(|bp| chart::percent(f64::from(*bp) / 10_000.0))
            .collect::<Vec<_>>()
            .join(", "),
        min_devices: p.min_devices,
        min_step_secs: p.min_step_secs,
        margin: format!("{} points", f64::from(p.margin_basis_points) / 100.0),
        auto_rollback: p.auto_rollback,
        last: ramp
            .last
            .as_ref()
            .map(|e| format!("{} at {}: {}", e.verdict, e.at, e.reason)),
        active: matches!(ramp.state, RampState::Active | RampState::Paused),
    }
}

async fn channel_page(
    State(service): State<Arc<Service>>,
    Path((app, channel)): Path<(String, String)>,
    Query(done): Query<Done>,
    headers: HeaderMap,
) -> std::result::Result<Page, Page> {
    let session = signed_in(&service, &headers).await?;
    let (app, channel) = (AppId::parse(&app)?, Channel::parse(&channel)?);
    service.check_channel(&app, &channel, false).await?;
    let state = service.meta().channel_state(&app, &channel).await?;
    // Figures may be unavailable (a store that cannot answer them, say): the page still offers
    // every action, pause and roll back first among them.
    let stats = service.meta().stats(&app, &channel).await;
    let ramps = service.meta().ramps().await?;
    let mut packages = Vec::new();
    for (package, current) in &state.packages {
        if !may_read(&session, package) {
            continue;
        }
        let can_release = may_release(&session, package);
        let releases = service.meta().release_facts(package).await?;
        let history = service
            .meta()
            .history(&app, &channel, Some(package))
            .await?;
        let mut versions: Vec<&ReleaseVersion> = releases.iter().map(|r| &r.version).collect();
        versions.sort();
        versions.reverse();
        // Where a rollback without a target goes, as `channel::apply` decides it.
        let rollback_target = if current.candidate.is_some() {
            current.stable.clone()
        } else {
            crate::channel::previous_stable(&history, current.stable.as_ref())
        }
        .map(|v| v.to_string());
        let undo = history
            .first()
            .filter(|h| h.before.is_some())
            .map(|h| format!("{} ({}) by {}", h.action, describe(h), h.actor));
        let (figures, intervals, opens, figures_problem) = match &stats {
            Ok(stats) => {
                let (f, i, o) = figures(
                    stats,
                    package,
                    current.stable.as_ref(),
                    current.candidate.as_ref(),
                );
                (f, i, o, None)
            }
            Err(e) => (Vec::new(), Vec::new(), Vec::new(), Some(e.to_string())),
        };
        let (adoption_chart, adoption) =
            match service.meta().daily_figures(&app, &channel, package).await {
                Ok(days) => adoption(
                    package,
                    &days,
                    &releases,
                    crate::service::now().unix_secs() / 86_400,
                ),
                Err(e) => {
                    tracing::warn!(%package, error = %e, "daily figures unavailable");
                    (String::new(), Vec::new())
                }
            };
        let ramp = ramps
            .iter()
            .find(|r| r.app == app && r.channel == channel && &r.package == package);
        let reference = ramp.and_then(|r| {
            let stable = r.last.as_ref()?.stable?;
            Some(stable.rate() + f64::from(r.policy.margin_basis_points) / 10_000.0)
        });
        let ramp_shown = ramp.map(ramp_view);
        let failure_chart = if intervals.is_empty() {
            String::new()
        } else {
            chart::intervals(
                &format!("Failed boots of {package}, with 95 % intervals"),
                &intervals,
                reference.map(|r| (r, "stable's rate + the ramp's margin")),
            )
        };
        let opens_chart = if opens.is_empty() {
            String::new()
        } else {
            chart::bars(
                &format!("Opens of {package} painted under 1 s, and answered from the device"),
                &opens,
            )
        };
        packages.push(PackageView {
            name: package.to_string(),
            stable: current.stable.as_ref().map(ToString::to_string),
            candidate: current.candidate.as_ref().map(ToString::to_string),
            share: chart::percent(f64::from(current.rollout_basis_points) / 10_000.0),
            share_number: format!("{}", f64::from(current.rollout_basis_points) / 100.0),
            paused: current.paused,
            can_release,
            ramp_active: ramp_shown.as_ref().is_some_and(|r| r.active),
            versions: versions.iter().map(ToString::to_string).collect(),
            rollback_target,
            undo,
            ramp: ramp_shown,
            figures,
            figures_problem,
            failure_chart,
            opens_chart,
            adoption_chart,
            adoption,
            history: history
                .iter()
                .take(50)
                .map(|h| HistoryRow {
                    at: h.at.to_string(),
                    action: h.action.clone(),
                    change: describe(h),
                    actor: h.actor.clone(),
                    reason: h.reason.clone(),
                    sequence: h.sequence,
                })
                .collect(),
        });
    }
    Ok(Page(html(
        StatusCode::OK,
        &ChannelPage {
            chrome: Chrome::of(&session),
            protected: service.settings().is_protected(&channel),
            app: app.to_string(),
            channel: channel.to_string(),
            done: done_message(&done),
            packages,
        },
    )))
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: Option<String>,
    action: String,
    version: Option<String>,
    percent: Option<String>,
    #[serde(default)]
    reason: String,
    confirm: Option<String>,
}

/// A share typed in percent (`12.5`) as basis points.
fn basis_points(text: &str) -> Result<u16> {
    let bad = || {
        Error::BadRequest(format!(
            "share {text:?}: give a percentage from 0 to 100, such as 5 or 12.5"
        ))
    };
    let value: f64 = text
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&value) || (value * 100.0).fract().abs() > 1e-6 {
        return Err(bad());
    }
    Ok((value * 100.0).round() as u16)
}

fn version_field(field: Option<&str>) -> Result<Option<ReleaseVersion>> {
    match field.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => Ok(Some(ReleaseVersion::parse(v)?)),
        None => Ok(None),
    }
}

/// Checks, on a protected channel, that the user typed the channel's name.
fn check_confirmed(service: &Service, channel: &Channel, confirm: Option<&str>) -> Result<()> {
    if service.settings().is_protected(channel) && confirm.map(str::trim) != Some(channel.as_str())
    {
        return Err(Error::BadRequest(format!(
            "{channel} is a protected channel: type its name to confirm this change"
        )));
    }
    Ok(())
}

/// The session and the parsed path of a form posted to a package on a channel, with the form's
/// CSRF secret checked and the caller's release scope required.
async fn acting(
    service: &Service,
    headers: &HeaderMap,
    (app, channel, package): (&str, &str, &str),
    csrf: Option<&str>,
    action: &str,
) -> std::result::Result<(Session, AppId, Channel, PackageId), Page> {
    let session = signed_in(service, headers).await?;
    session.check_csrf(csrf)?;
    let (app, channel, package) = (
        AppId::parse(app)?,
        Channel::parse(channel)?,
        PackageId::parse(package)?,
    );
    session
        .caller
        .require(Scope::Release, Some(&package), action)?;
    if service.meta().package_app(&package).await?.as_ref() != Some(&app) {
        return Err(Error::NotFound(format!("package {package} in app {app}")).into());
    }
    service.check_channel(&app, &channel, false).await?;
    Ok((session, app, channel, package))
}

fn after(
    app: &AppId,
    channel: &Channel,
    done: &str,
    package: &PackageId,
    seq: Option<u64>,
) -> Response {
    let sequence = seq.map(|s| format!("&sequence={s}")).unwrap_or_default();
    see_other(&format!(
        "/console/apps/{app}/channels/{channel}?done={done}&package={package}{sequence}#{package}"
    ))
}

async fn channel_action(
    State(service): State<Arc<Service>>,
    Path((app, channel, package)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Page, Page> {
    let fields: ActionForm = match form(&body) {
        Ok(f) => f,
        Err(e) => {
            // A form missing its fields is refused as a forgery would be when it lacks the
            // secret, and as bad input otherwise.
            let csrf: CsrfForm = form(&body).unwrap_or(CsrfForm { csrf: None });
            signed_in(&service, &headers)
                .await?
                .check_csrf(csrf.csrf.as_deref())?;
            return Err(e.into());
        }
    };
    let (session, app, channel, package) = acting(
        &service,
        &headers,
        (&app, &channel, &package),
        fields.csrf.as_deref(),
        &fields.action,
    )
    .await?;
    let version = version_field(fields.version.as_deref())?;
    let action = match fields.action.as_str() {
        "promote" => Action::Promote {
            version: version.ok_or_else(|| Error::BadRequest("promote needs a version".into()))?,
        },
        "rollout" => Action::Rollout {
            version,
            basis_points: basis_points(fields.percent.as_deref().unwrap_or_default())?,
        },
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "complete" => Action::Complete,
        "rollback" => Action::Rollback { to: version },
        "undo" => Action::Undo,
        other => {
            return Err(Error::BadRequest(format!("unknown action {other:?}")).into());
        }
    };
    if !matches!(action, Action::Pause) {
        check_confirmed(&service, &channel, fields.confirm.as_deref())?;
    }
    crate::api::check_reason(&fields.reason)?;
    let reason = if fields.reason.trim().is_empty() {
        "from the console".to_owned()
    } else {
        fields.reason.trim().to_owned()
    };
    let outcome = service
        .change_channel(&package, &channel, &action, session.caller.name(), &reason)
        .await?;
    Ok(Page(after(
        &app,
        &channel,
        action.name(),
        &package,
        Some(outcome.sequence),
    )))
}

#[derive(Deserialize)]
struct RampForm {
    steps: String,
    min_devices: String,
    min_step_secs: String,
    margin: String,
    auto_rollback: Option<String>,
    #[serde(default)]
    reason: String,
    confirm: Option<String>,
}

fn whole(field: &str, text: &str) -> Result<u64> {
    text.trim()
        .parse()
        .map_err(|_| Error::BadRequest(format!("{field} {text:?}: give a whole number")))
}

async fn ramp_start(
    State(service): State<Arc<Service>>,
    Path((app, channel, package)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Page, Page> {
    let csrf: CsrfForm = form(&body).unwrap_or(CsrfForm { csrf: None });
    let (session, app, channel, package) = acting(
        &service,
        &headers,
        (&app, &channel, &package),
        csrf.csrf.as_deref(),
        "start a ramp",
    )
    .await?;
    let fields: RampForm = form(&body)?;
    check_confirmed(&service, &channel, fields.confirm.as_deref())?;
    crate::api::check_reason(&fields.reason)?;
    let steps = fields
        .steps
        .split([',', ' '])
        .filter(|s| !s.trim().is_empty())
        .map(basis_points)
        .collect::<Result<Vec<u16>>>()?;
    let margin = basis_points(&fields.margin)?;
    let policy = RampPolicy {
        steps,
        min_devices: whole("minimum devices", &fields.min_devices)?,
        min_step_secs: whole("minimum seconds per step", &fields.min_step_secs)?,
        margin_basis_points: margin,
        auto_rollback: fields.auto_rollback.is_some(),
    }
    .checked()?;
    let reason = if fields.reason.trim().is_empty() {
        "from the console".to_owned()
    } else {
        fields.reason.trim().to_owned()
    };
    service
        .start_ramp(
            &package,
            &channel,
            None,
            policy,
            session.caller.name(),
            &reason,
        )
        .await?;
    Ok(Page(after(&app, &channel, "ramp", &package, None)))
}

async fn ramp_stop(
    State(service): State<Arc<Service>>,
    Path((app, channel, package)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Page, Page> {
    let csrf: CsrfForm = form(&body)?;
    let (session, app, channel, package) = acting(
        &service,
        &headers,
        (&app, &channel, &package),
        csrf.csrf.as_deref(),
        "stop a ramp",
    )
    .await?;
    service
        .stop_ramp(
            &package,
            &channel,
            session.caller.name(),
            "stopped from the console",
        )
        .await?;
    Ok(Page(after(&app, &channel, "ramp_stop", &package, None)))
}

/// A file row of a release page.
struct FileRow {
    path: String,
    size: u64,
    mime: String,
    sha256: String,
}

/// A pack row of a release page.
struct PackRow {
    from: String,
    bytes: Option<u64>,
    share: String,
}

#[derive(Template)]
#[template(path = "console/release.html")]
struct ReleasePage {
    chrome: Chrome,
    package: String,
    version: String,
    digest: String,
    requires: String,
    created_at: String,
    publisher: String,
    notes: String,
    source_revision: String,
    entry: String,
    routes: Vec<String>,
    size: u64,
    file_count: u64,
    packs: Vec<PackRow>,
    files: Vec<FileRow>,
    others: Vec<String>,
}

async fn readable_release(
    service: &Service,
    session: &Session,
    package: &str,
    version: &str,
) -> Result<(PackageId, ReleaseRecord, manifests::Release)> {
    let package = PackageId::parse(package)?;
    session
        .caller
        .require(Scope::Publish, Some(&package), "read releases")?;
    let version = ReleaseVersion::parse(version)?;
    let record = service
        .meta()
        .release(&package, &version)
        .await?
        .ok_or_else(|| Error::NotFound(format!("release {version} of {package}")))?;
    let release = crate::meta_store::rows::stored_release(&record.manifest).map_err(|e| {
        Error::Internal(format!(
            "the stored manifest of {package} {version} is unreadable: {e}"
        ))
    })?;
    Ok((package, record, release))
}

async fn release_page(
    State(service): State<Arc<Service>>,
    Path((package, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> std::result::Result<Page, Page> {
    let session = signed_in(&service, &headers).await?;
    let (package, record, release) =
        readable_release(&service, &session, &package, &version).await?;
    let mut others: Vec<ReleaseVersion> = service
        .meta()
        .release_facts(&package)
        .await?
        .into_iter()
        .map(|r| r.version)
        .filter(|v| v != &record.version)
        .collect();
    others.sort();
    others.reverse();
    let mut packs = Vec::new();
    let full = service.meta().pack(&package, None, &record.version).await?;
    let share = |bytes: u64| {
        if record.size_bytes == 0 {
            "–".to_owned()
        } else {
            chart::percent(bytes as f64 / record.size_bytes as f64)
        }
    };
    packs.push(PackRow {
        from: "nothing (full pack)".into(),
        bytes: full.as_ref().map(|p| p.size_bytes),
        share: full.as_ref().map_or("–".into(), |p| share(p.size_bytes)),
    });
    for from in others.iter().filter(|v| **v < record.version) {
        let pack = service
            .meta()
            .pack(&package, Some(from), &record.version)
            .await?;
        packs.push(PackRow {
            from: from.to_string(),
            bytes: pack.as_ref().map(|p| p.size_bytes),
            share: pack.as_ref().map_or("–".into(), |p| share(p.size_bytes)),
        });
    }
    let page = ReleasePage {
        chrome: Chrome::of(&session),
        package: package.to_string(),
        version: record.version.to_string(),
        digest: record.manifest_digest.to_string(),
        requires: record.requires.to_string(),
        created_at: record.created_at.to_string(),
        publisher: record.publisher.clone(),
        notes: record.notes.clone(),
        source_revision: release.source_revision.clone().unwrap_or_default(),
        entry: release.entry.to_string(),
        routes: release
            .routes
            .iter()
            .map(|r| match &r.fallback {
                Some(f) => format!("{} (other paths: {f})", r.prefix),
                None => r.prefix.to_string(),
            })
            .collect(),
        size: record.size_bytes,
        file_count: record.file_count,
        packs,
        files: release
            .files
            .iter()
            .map(|(path, f)| FileRow {
                path: path.to_string(),
                size: f.size,
                mime: f.mime.to_string(),
                sha256: f.sha256.to_string()[..12].to_owned(),
            })
            .collect(),
        others: others.iter().map(ToString::to_string).collect(),
    };
    Ok(Page(html(StatusCode::OK, &page)))
}

/// A changed path in a comparison.
struct ChangeRow {
    path: String,
    change: &'static str,
    from_size: Option<u64>,
    to_size: Option<u64>,
}

#[derive(Template)]
#[template(path = "console/compare.html")]
struct ComparePage {
    chrome: Chrome,
    package: String,
    from: String,
    to: String,
    added: usize,
    removed: usize,
    changed: usize,
    unchanged: usize,
    added_bytes: u64,
    removed_bytes: u64,
    changed_bytes: u64,
    rows: Vec<ChangeRow>,
}

async fn compare_page(
    State(service): State<Arc<Service>>,
    Path(package): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> std::result::Result<Page, Page> {
    #[derive(Deserialize)]
    struct Pair {
        from: String,
        to: String,
    }
    let session = signed_in(&service, &headers).await?;
    let pair: Pair = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|e| Error::BadRequest(format!("compare needs from and to: {e}")))?;
    let (_, from_record, from) = readable_release(&service, &session, &package, &pair.from).await?;
    let (package, to_record, to) = readable_release(&service, &session, &package, &pair.to).await?;
    let paths: BTreeSet<_> = from.files.keys().chain(to.files.keys()).collect();
    let mut page = ComparePage {
        chrome: Chrome::of(&session),
        package: package.to_string(),
        from: from_record.version.to_string(),
        to: to_record.version.to_string(),
        added: 0,
        removed: 0,
        changed: 0,
        unchanged: 0,
        added_bytes: 0,
        removed_bytes: 0,
        changed_bytes: 0,
        rows: Vec::new(),
    };
    for path in paths {
        let (a, b) = (from.files.get(path), to.files.get(path));
        let change = match (a, b) {
            (None, Some(b)) => {
                page.added += 1;
                page.added_bytes += b.size;
                "added"
            }
            (Some(a), None) => {
                page.removed += 1;
                page.removed_bytes += a.size;
                "removed"
            }
            (Some(a), Some(b)) if a.sha256 != b.sha256 || a.mime != b.mime => {
                page.changed += 1;
                page.changed_bytes += b.size;
                "changed"
            }
            _ => {
                page.unchanged += 1;
                continue;
            }
        };
        page.rows.push(ChangeRow {
            path: path.to_string(),
            change,
            from_size: a.map(|f| f.size),
            to_size: b.map(|f| f.size),
        });
    }
    Ok(Page(html(StatusCode::OK, &page)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_typed_in_percent() {
        assert_eq!(basis_points("5").unwrap(), 500);
        assert_eq!(basis_points("12.5 %").unwrap(), 1250);
        assert_eq!(basis_points("100").unwrap(), 10_000);
        assert_eq!(basis_points("0.01").unwrap(), 1);
        for bad in ["", "-1", "100.5", "0.001", "five", "NaN"] {
            assert!(basis_points(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_done_message_names_known_actions_only() {
        let done = Done {
            done: Some("rollback".into()),
            package: Some("checkout".into()),
            sequence: Some(7),
        };
        assert_eq!(
            done_message(&done).as_deref(),
            Some("Rolled back: checkout, index sequence 7.")
        );
        let forged = Done {
            done: Some("<script>".into()),
            ..Done::default()
        };
        assert_eq!(done_message(&forged), None);
        let odd_package = Done {
            done: Some("undo".into()),
            package: Some("go to evil.example".into()),
            sequence: None,
        };
        assert_eq!(
            done_message(&odd_package).as_deref(),
            Some("Last change undone.")
        );
    }
}
