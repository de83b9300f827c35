//! The release console over real HTTP: sign-in and sessions, CSRF, scopes, every action and its
//! effect on the channel as the admin API reads it, the release and comparison pages, figures.
//! The same flows in a real browser are `tests/console/console.test.mjs`.

#![allow(clippy::unwrap_used)]

#[path = "support/counting.rs"]
mod counting;
#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Response, TestServer, build, zip_build};
use serde_json::{Value, json};
use server::meta_store::Scope;

/// One request with the given cookie header and form fields.
fn send(
    s: &TestServer,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<&[(&str, &str)]>,
) -> Response {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if !cookie.is_empty() {
        headers.push(("cookie", cookie));
    }
    let body = form.map(|fields| serde_urlencoded::to_string(fields).unwrap());
    harness::request(
        &s.base,
        method,
        path,
        &headers,
        body.as_deref().map(str::as_bytes),
    )
}

fn set_cookies(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect()
}

/// The value of `name="<field>" value="…"` in a page.
fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

/// A browser's cookie jar of one session.
struct Browser {
    cookie: String,
    csrf: String,
}

fn sign_in(s: &TestServer, token: &str) -> Browser {
    let page = send(s, "GET", "/console/sign-in", "", None);
    assert_eq!(page.status, 200, "{}", page.text());
    let nonce_cookie = set_cookies(&page)
        .into_iter()
        .find(|c| c.starts_with("baleen_sign_in="))
        .unwrap();
    let nonce_cookie = nonce_cookie.split(';').next().unwrap().to_owned();
    let nonce = field(&page.text(), "nonce");
    let r = send(
        s,
        "POST",
        "/console/sign-in",
        &nonce_cookie,
        Some(&[("token", token), ("nonce", &nonce)]),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/console/apps"));
    let session = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("baleen_session="))
        .unwrap();
    let cookie = session.split(';').next().unwrap().to_owned();
    let apps = send(s, "GET", "/console/apps", &cookie, None);
    assert_eq!(apps.status, 200);
    Browser {
        csrf: field(&apps.text(), "csrf"),
        cookie,
    }
}

impl Browser {
    fn get(&self, s: &TestServer, path: &str) -> Response {
        send(s, "GET", path, &self.cookie, None)
    }

    fn act(&self, s: &TestServer, package: &str, fields: &[(&str, &str)]) -> Response {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        send(
            s,
            "POST",
            &format!("/console/apps/shop/channels/production/packages/{package}/actions"),
            &self.cookie,
            Some(&all),
        )
    }
}

/// `checkout` 1.0.0 stable on `shop/production`, 1.1.0 and 1.2.0 published.
fn setup() -> TestServer {
    let s = TestServer::start_with(|settings| settings.ramp_interval = None);
    s.publish_checkout("1.0.0", Some("production"));
    s.publish_checkout("1.1.0", None);
    s.publish_checkout("1.2.0", None);
    s
}

fn state(s: &TestServer) -> Value {
    let r = s.admin_get("/v1/admin/apps/shop/channels/production");
    assert_eq!(r.status, 200);
    r.json()["packages"]["checkout"].clone()
}

fn history_len(s: &TestServer) -> usize {
    s.admin_get("/v1/admin/packages/checkout/channels/production/history")
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn sign_in_gives_a_strict_http_only_session_that_sign_out_ends() {
    let s = setup();
    let r = send(&s, "GET", "/console", "", None);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/console/sign-in"));
    assert_eq!(
        send(&s, "GET", "/console/apps", "", None).header("location"),
        Some("/console/sign-in")
    );

    // A wrong token: the form again, with why.
    let page = send(&s, "GET", "/console/sign-in", "", None);
    let nonce_cookie = set_cookies(&page)[0].split(';').next().unwrap().to_owned();
    let nonce = field(&page.text(), "nonce");
    let wrong = send(
        &s,
        "POST",
        "/console/sign-in",
        &nonce_cookie,
        Some(&[("token", "baleen_0000"), ("nonce", &nonce)]),
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("That token is not known here."));
    assert!(
        set_cookies(&wrong)
            .iter()
            .all(|c| !c.starts_with("baleen_session="))
    );

    // A form this browser was not given (a login CSRF) is refused, even with a good token.
    let forged = send(
        &s,
        "POST",
        "/console/sign-in",
        "",
        Some(&[("token", &s.admin), ("nonce", &nonce)]),
    );
    assert_eq!(forged.status, 403);
    assert!(
        set_cookies(&forged)
            .iter()
            .all(|c| !c.starts_with("baleen_session="))
    );

    let good = send(
        &s,
        "POST",
        "/console/sign-in",
        &nonce_cookie,
        Some(&[("token", &format!(" {} ", s.admin)), ("nonce", &nonce)]),
    );
    assert_eq!(good.status, 303);
    let session = set_cookies(&good)
        .into_iter()
        .find(|c| c.starts_with("baleen_session="))
        .unwrap();
    assert!(session.contains("; Path=/console;"), "{session}");
    assert!(session.contains("; HttpOnly; SameSite=Strict"), "{session}");
    assert!(!session.contains("Secure"), "no TLS here: {session}");
    let max_age: u64 = session
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(max_age, server::service::DEFAULT_CONSOLE_SESSION_SECS);
    let cookie = session.split(';').next().unwrap().to_owned();
    let apps = send(&s, "GET", "/console/apps", &cookie, None);
    assert_eq!(apps.status, 200);
    let html = apps.text();
    assert!(
        html.contains("Signed in as <strong>admin</strong>"),
        "{html}"
    );
    assert!(html.contains("href=\"/console/apps/shop/channels/production\""));
    for (header, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(apps.header(header), Some(value), "{header}");
    }
    assert!(
        apps.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );

    // Sign-out needs the form secret, then ends the session on the server: the same cookie
    // sent again is no longer signed in.
    let csrf = field(&html, "csrf");
    let r = send(
        &s,
        "POST",
        "/console/sign-out",
        &cookie,
        Some(&[("csrf", "x")]),
    );
    assert_eq!(r.status, 403);
    let r = send(
        &s,
        "POST",
        "/console/sign-out",
        &cookie,
        Some(&[("csrf", &csrf)]),
    );
    assert_eq!(r.status, 303);
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("baleen_session=;") && c.contains("Max-Age=0"))
    );
    let after = send(&s, "GET", "/console/apps", &cookie, None);
    assert_eq!(after.status, 303);
    assert_eq!(after.header("location"), Some("/console/sign-in"));
}

#[test]
fn sessions_end_with_their_lifetime_and_with_their_token() {
    let s = TestServer::start_with(|settings| {
        settings.console_session = Duration::from_secs(1);
        settings.ramp_interval = None;
    });
    s.publish_checkout("1.0.0", Some("production"));
    let browser = sign_in(&s, &s.admin);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(browser.get(&s, "/console/apps").status, 303, "expired");

    let release = s.token("release-engineer", Scope::Release, None);
    let browser = sign_in(&s, &release);
    let r = harness::request(
        &s.base,
        "DELETE",
        "/v1/admin/tokens/release-engineer",
        &[("authorization", &format!("Bearer {}", s.admin))],
        None,
    );
    assert_eq!(r.status, 200);
    let r = browser.get(&s, "/console/apps");
    assert_eq!(r.status, 303, "a revoked token's session ends at once");
}

#[test]
fn forged_or_unconfirmed_actions_change_nothing() {
    let s = setup();
    let browser = sign_in(&s, &s.admin);
    let before = (state(&s), history_len(&s));
    let path = "/console/apps/shop/channels/production/packages/checkout/actions";
    let fields = [
        ("action", "promote"),
        ("version", "1.1.0"),
        ("confirm", "production"),
    ];
    // No form secret, a wrong one, or no session: refused.
    let r = send(&s, "POST", path, &browser.cookie, Some(&fields));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("CSRF"));
    let mut wrong = fields.to_vec();
    wrong.push(("csrf", "0123456789abcdef"));
    assert_eq!(
        send(&s, "POST", path, &browser.cookie, Some(&wrong)).status,
        403
    );
    let mut right = fields.to_vec();
    right.push(("csrf", &browser.csrf));
    let r = send(&s, "POST", path, "", Some(&right));
    assert_eq!(r.header("location"), Some("/console/sign-in"));
    // `production` is protected: without its name typed, nothing happens.
    let r = browser.act(
        &s,
        "checkout",
        &[("action", "promote"), ("version", "1.1.0")],
    );
    assert_eq!(r.status, 422);
    assert!(r.text().contains("protected channel: type its name"));
    let r = browser.act(
        &s,
        "checkout",
        &[
            ("action", "promote"),
            ("version", "1.1.0"),
            ("confirm", "staging"),
        ],
    );
    assert_eq!(r.status, 422);
    // Bad input is named.
    let r = browser.act(
        &s,
        "checkout",
        &[
            ("action", "rollout"),
            ("version", "1.1.0"),
            ("percent", "150"),
            ("confirm", "production"),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(r.text().contains("give a percentage from 0 to 100"));
    let r = browser.act(
        &s,
        "checkout",
        &[("action", "explode"), ("confirm", "production")],
    );
    assert_eq!(r.status, 422);
    assert!(r.text().contains("unknown action"));
    assert_eq!((state(&s), history_len(&s)), before);
}

#[test]
fn every_action_works_and_undo_restores_the_state_before_the_last() {
    let s = setup();
    let browser = sign_in(&s, &s.admin);
    let confirm = ("confirm", "production");
    let act = |fields: &[(&str, &str)]| {
        let mut all = fields.to_vec();
        all.push(confirm);
        let r = browser.act(&s, "checkout", &all);
        assert_eq!(r.status, 303, "{:?}: {}", fields, r.text());
        let location = r.header("location").unwrap().to_owned();
        assert!(
            location.starts_with("/console/apps/shop/channels/production?done="),
            "{location}"
        );
        let page = browser.get(&s, &location);
        assert_eq!(page.status, 200);
        state(&s)
    };
    let st = act(&[
        ("action", "rollout"),
        ("version", "1.1.0"),
        ("percent", "5"),
        ("reason", "<script>alert(1)</script>"),
    ]);
    assert_eq!(
        (
            st["candidate"].as_str(),
            st["rollout_basis_points"].as_u64()
        ),
        (Some("1.1.0"), Some(500))
    );
    let page = browser
        .get(&s, "/console/apps/shop/channels/production")
        .text();
    assert!(page.contains("alert(1)"), "the reason is shown");
    assert!(!page.contains("<script>"));
    assert!(page.contains("by <span class=\"actor\">admin</span>"));

    let st = act(&[("action", "rollout"), ("percent", "12.5")]);
    assert_eq!(st["rollout_basis_points"], 1250);
    // Pause needs no confirmation, even on a protected channel.
    let r = browser.act(&s, "checkout", &[("action", "pause")]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(state(&s)["paused"], true);
    let st = act(&[("action", "resume")]);
    assert_eq!(st["paused"], false);
    let st = act(&[("action", "complete")]);
    assert_eq!(
        (st["stable"].as_str(), st["candidate"].as_str()),
        (Some("1.1.0"), None)
    );

    // Undo brings the rollout back whole (candidate and share), as a new signed sequence.
    let sequence = s
        .admin_get("/v1/admin/apps/shop/channels/production")
        .json()["sequence"]
        .as_u64()
        .unwrap();
    let st = act(&[("action", "undo")]);
    assert_eq!(
        (
            st["stable"].as_str(),
            st["candidate"].as_str(),
            st["rollout_basis_points"].as_u64()
        ),
        (Some("1.0.0"), Some("1.1.0"), Some(1250))
    );
    let now = s
        .admin_get("/v1/admin/apps/shop/channels/production")
        .json()["sequence"]
        .as_u64()
        .unwrap();
    assert_eq!(now, sequence + 1);
    // Undo again redoes.
    let st = act(&[("action", "undo")]);
    assert_eq!(
        (st["stable"].as_str(), st["candidate"].as_str()),
        (Some("1.1.0"), None)
    );
    let st = act(&[("action", "rollback")]);
    assert_eq!(st["stable"], "1.0.0");
    let st = act(&[("action", "promote"), ("version", "1.2.0")]);
    assert_eq!(st["stable"], "1.2.0");
    let history = s
        .admin_get("/v1/admin/packages/checkout/channels/production/history")
        .json();
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "promote", "rollback", "undo", "undo", "complete", "resume", "pause", "rollout",
            "rollout", "promote"
        ]
    );
    // The same undo through the API.
    let r = s.change(
        "checkout",
        "production",
        json!({"action": "undo", "reason": "wrong release"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(state(&s)["stable"], "1.0.0");
}

#[test]
fn a_token_sees_and_does_only_what_its_scope_allows() {
    let s = setup();
    let r = s.publish(
        &s.admin,
        "shop",
        "profile",
        "version=1.0.0&channel=production&routes=https://m.example.com/profile/",
        &zip_build(&build("p1")),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let reader = s.token("ci", Scope::Publish, Some("checkout"));
    let browser = sign_in(&s, &reader);
    let page = browser
        .get(&s, "/console/apps/shop/channels/production")
        .text();
    assert!(page.contains("id=\"checkout\""));
    assert!(
        !page.contains("id=\"profile\""),
        "another package is not shown"
    );
    assert!(!page.contains("name=\"action\""), "no action is offered");
    assert!(page.contains("may read checkout but not change it"));
    let r = browser.act(
        &s,
        "checkout",
        &[("action", "pause"), ("confirm", "production")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        browser
            .get(&s, "/console/packages/profile/releases/1.0.0")
            .status,
        403
    );

    let releaser = s.token("profile-releaser", Scope::Release, Some("profile"));
    let browser = sign_in(&s, &releaser);
    let page = browser
        .get(&s, "/console/apps/shop/channels/production")
        .text();
    assert!(page.contains("id=\"profile\"") && !page.contains("id=\"checkout\""));
    let r = browser.act(
        &s,
        "checkout",
        &[("action", "rollback"), ("confirm", "production")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(state(&s)["stable"], "1.0.0");
}

#[test]
fn release_and_comparison_pages_show_files_packs_and_changes() {
    let s = setup();
    s.settle_packs();
    let browser = sign_in(&s, &s.admin);
    let r = browser.get(&s, "/console/packages/checkout/releases/1.1.0");
    assert_eq!(r.status, 200);
    let page = r.text();
    let summary = s.admin_get("/v1/admin/packages/checkout/releases").json();
    let digest = summary
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == "1.1.0")
        .unwrap()["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(page.contains(&digest));
    for file in build("1.1.0") {
        assert!(
            page.contains(&format!("<code>{}</code>", file.0)),
            "{}",
            file.0
        );
    }
    assert!(page.contains("nothing (full pack)"));
    assert!(
        page.contains("<th scope=\"row\">1.0.0</th>"),
        "a diff pack row from 1.0.0"
    );
    assert!(page.contains("https://m.example.com/checkout/"));

    let r = browser.get(&s, "/console/packages/checkout/compare?from=1.0.0&to=1.1.0");
    assert_eq!(r.status, 200);
    let page = r.text();
    let (a, b) = (build("1.0.0"), build("1.1.0"));
    let changed = b
        .iter()
        .filter(|(p, bytes)| a.iter().any(|(q, old)| q == p && old != bytes))
        .count();
    let added = b
        .iter()
        .filter(|(p, _)| !a.iter().any(|(q, _)| q == p))
        .count();
    assert!(
        page.contains(&format!("<th scope=\"row\">Changed</th><td>{changed}</td>")),
        "{page}"
    );
    assert!(
        page.contains(&format!("<th scope=\"row\">Added</th><td>{added}</td>")),
        "{page}"
    );
    assert_eq!(
        browser
            .get(&s, "/console/packages/checkout/compare?from=1.0.0&to=9.9.9")
            .status,
        404
    );
    assert_eq!(
        browser
            .get(&s, "/console/packages/checkout/compare?from=1.0.0")
            .status,
        422
    );
    assert_eq!(
        browser
            .get(&s, "/console/packages/checkout/releases/not-a-version")
            .status,
        422
    );
}

#[test]
fn figures_and_a_ramp_show_on_the_channel_page() {
    let s = TestServer::start_with(|settings| {
        settings.events_per_address_per_minute = 0;
        settings.ramp_interval = None;
    });
    s.publish_checkout("1.0.0", Some("production"));
    s.publish_checkout("1.1.0", None);
    let key = s
        .post_json(
            "/v1/admin/apps/shop/ingest-keys",
            &s.admin,
            &json!({"name": "a"}),
        )
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..40 {
        let failed = i % 10 == 0;
        let events = if failed {
            json!([{"package": "checkout", "version": "1.0.0", "kind": "activated"},
                   {"package": "checkout", "version": "1.0.0", "kind": "failed"}])
        } else {
            json!([{"package": "checkout", "version": "1.0.0", "kind": "activated"},
                   {"package": "checkout", "version": "1.0.0", "kind": "opens", "count": 4, "offline_hits": 4, "under_1s": 3, "paint_ms": [0, 0, 3, 0, 0, 0, 1]}])
        };
        let body = json!({"app": "shop", "channel": "production", "ingest_key": key, "device_id": format!("d{i}"), "events": events});
        let r = harness::request(
            &s.base,
            "POST",
            "/v1/events",
            &[("content-type", "application/json")],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let browser = sign_in(&s, &s.admin);
    let page = browser
        .get(&s, "/console/apps/shop/channels/production")
        .text();
    // 4 of 40 devices failed: 10 %, Wilson 95 % interval 3.96 % to 23.05 %.
    assert!(page.contains("<td>40</td><td>4</td>"), "{page}");
    assert!(
        page.contains("<td>10 %</td><td>4.0 % – 23 %</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>75 %</td><td>100 %</td>"),
        "秒开 and offline rates: {page}"
    );
    assert!(page.contains("<svg class=\"chart\""));
    // 108 opens painted in (200, 300] ms and 36 in (1, 1.5] s: median 267 ms, p90 1,300 ms.
    assert!(page.contains("<td>267 ms</td><td>1300 ms</td>"), "{page}");
    // Adoption: 40 devices activated 1.0.0 today, the day it was published.
    let today = server::console::chart::date_of(server::service::now().unix_secs() / 86_400);
    assert!(
        page.contains(&format!(
            "<th scope=\"row\">1.0.0</th><td>{today}</td><td>40</td><td>0 d</td><td>0 d</td>"
        )),
        "{page}"
    );
    assert!(page.contains("1.0.0: 40 devices by"), "the adoption chart");

    // A ramp started from the console, stopped from the console.
    let r = browser.act(
        &s,
        "checkout",
        &[
            ("action", "rollout"),
            ("version", "1.1.0"),
            ("percent", "1"),
            ("confirm", "production"),
        ],
    );
    assert_eq!(r.status, 303);
    let ramp_path = "/console/apps/shop/channels/production/packages/checkout/ramp";
    let r = send(
        &s,
        "POST",
        ramp_path,
        &browser.cookie,
        Some(&[
            ("csrf", &browser.csrf),
            ("steps", "5, 25, 100"),
            ("min_devices", "50"),
            ("min_step_secs", "0"),
            ("margin", "2"),
            ("confirm", "production"),
        ]),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let ramp = s
        .admin_get("/v1/admin/packages/checkout/channels/production/ramp")
        .json();
    assert_eq!(ramp["state"], "active");
    assert_eq!(ramp["policy"]["steps"], json!([500, 2500, 10000]));
    assert_eq!(ramp["policy"]["margin_basis_points"], 200);
    assert_eq!(ramp["policy"]["auto_rollback"], false);
    let page = browser
        .get(&s, "/console/apps/shop/channels/production")
        .text();
    assert!(page.contains("Health-gated ramp: <span class=\"ramp-state\">active</span>"));
    let r = send(
        &s,
        "POST",
        &format!("{ramp_path}/stop"),
        &browser.cookie,
        Some(&[("csrf", &browser.csrf)]),
    );
    assert_eq!(r.status, 303);
    let ramp = s
        .admin_get("/v1/admin/packages/checkout/channels/production/ramp")
        .json();
    assert_eq!(ramp["state"], "ended");
}

#[test]
fn pause_and_rollback_work_when_the_figures_cannot_be_computed() {
    let store = std::sync::Mutex::new(None);
    let s = TestServer::start_wrapped(|meta| {
        let counting = counting::Counting::new(meta);
        *store.lock().unwrap() = Some(counting.clone());
        counting
    });
    let store = store.lock().unwrap().clone().unwrap();
    s.publish_checkout("1.0.0", Some("production"));
    s.publish_checkout("1.1.0", None);
    let r = s.change(
        "checkout",
        "production",
        json!({"action": "rollout", "version": "1.1.0", "basis_points": 1000}),
    );
    assert_eq!(r.status, 200);
    let browser = sign_in(&s, &s.admin);
    store
        .figures_fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let page = browser.get(&s, "/console/apps/shop/channels/production");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains(
            "Figures cannot be computed now: internal error: the figures are unreachable"
        ),
        "{}",
        page.text()
    );
    assert!(page.text().contains("value=\"pause\""));
    let r = browser.act(&s, "checkout", &[("action", "pause")]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(state(&s)["paused"], true);
    let r = browser.act(
        &s,
        "checkout",
        &[("action", "rollback"), ("confirm", "production")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(state(&s)["candidate"], Value::Null);
}
