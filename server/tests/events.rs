//! Device figures that cannot be faked cheaply, through real HTTP: `POST /v1/events` needs the
//! app's ingest key and the device's id, counts states in distinct devices, bounds opens per
//! device and day, limits devices and client addresses, and refuses what names nothing real.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use harness::{Response, TestServer, build, request, zip_build};
use serde_json::{Value, json};

const ROUTE: &str = "routes=https://m.example.com/checkout/";

/// A server with `checkout@1.0.0` of app `shop` on `production`, and an ingest key of `shop`.
fn setup(tune: impl FnOnce(&mut server::service::Settings)) -> (TestServer, String) {
    let s = TestServer::start_with(tune);
    let r = s.publish(
        &s.admin,
        "shop",
        "checkout",
        &format!("version=1.0.0&channel=production&{ROUTE}"),
        &zip_build(&build("1.0.0")),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = ingest_key(&s, "shop", "android-1");
    (s, key)
}

fn ingest_key(s: &TestServer, app: &str, name: &str) -> String {
    let r = s.post_json(
        &format!("/v1/admin/apps/{app}/ingest-keys"),
        &s.admin,
        &json!({ "name": name }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json()["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("bik_"), "{key}");
    key
}

fn post(s: &TestServer, body: &Value) -> Response {
    request(
        &s.base,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/json")],
        Some(&serde_json::to_vec(body).unwrap()),
    )
}

fn batch(key: &str, device: &str, events: Value) -> Value {
    json!({"app": "shop", "channel": "production", "ingest_key": key, "device_id": device,
           "events": events})
}

fn event(version: &str, kind: &str) -> Value {
    json!({"package": "checkout", "version": version, "kind": kind})
}

fn figures(s: &TestServer, version: &str) -> Value {
    let stats = s
        .admin_get("/v1/admin/apps/shop/channels/production/stats")
        .json();
    stats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn one_client_sending_a_million_failures_moves_the_failed_count_by_at_most_one_device() {
    let (s, key) = setup(|_| {});
    let failures: Vec<Value> = (0..1_000)
        .map(|_| json!({"package": "checkout", "version": "1.0.0", "kind": "failed", "count": 1_000_000}))
        .collect();
    let body = serde_json::to_vec(&batch(&key, "attacker", Value::Array(failures))).unwrap();
    let (mut accepted, mut limited) = (0, 0);
    // A million failure events (each claiming a million), as fast as the client can send them.
    for _ in 0..1_000 {
        let r = request(
            &s.base,
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            Some(&body),
        );
        match r.status {
            202 => accepted += 1,
            429 => {
                assert_eq!(r.code(), "rate_limited", "{}", r.text());
                assert!(r.header("retry-after").is_some(), "429 without Retry-After");
                limited += 1;
            }
            other => panic!("HTTP {other}: {}", r.text()),
        }
    }
    assert!(
        accepted >= 1 && limited > 0,
        "{accepted} accepted, {limited} limited"
    );
    assert_eq!(figures(&s, "1.0.0")["failed"], 1, "one failing device");

    // A client that makes up a new device id for every batch is held by its address's limit.
    let (s, key) = setup(|settings| settings.events_per_address_per_minute = 5);
    let mut accepted = 0;
    for i in 0..100 {
        let r = post(
            &s,
            &batch(
                &key,
                &format!("fake-{i}"),
                json!([event("1.0.0", "failed")]),
            ),
        );
        if r.status == 202 {
            accepted += 1;
        } else {
            assert_eq!((r.status, r.code()), (429, "rate_limited".into()));
        }
    }
    assert_eq!(accepted, 5);
    assert_eq!(figures(&s, "1.0.0")["failed"], 5);
}

#[test]
fn states_count_devices_and_opens_are_bounded_per_device_and_day() {
    let (s, key) = setup(|_| {});
    for device in ["a", "b", "c"] {
        for _ in 0..3 {
            let r = post(
                &s,
                &batch(
                    &key,
                    device,
                    json!([event("1.0.0", "installed"), event("1.0.0", "activated"),
                           event("1.0.0", "ready"),
                           {"package": "checkout", "version": "1.0.0", "kind": "opens",
                            "count": 10, "offline_hits": 9, "under_1s": 7}]),
                ),
            );
            assert_eq!(r.status, 202, "{}", r.text());
            assert_eq!(r.json()["accepted"], 4);
        }
    }
    // One device claiming a million opens adds its day's share, 1,000.
    let r = post(
        &s,
        &batch(
            &key,
            "d",
            json!([{"package": "checkout", "version": "1.0.0", "kind": "opens",
                    "count": 1_000_000, "offline_hits": 1_000_000, "under_1s": 0}]),
        ),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let f = figures(&s, "1.0.0");
    assert_eq!(
        [&f["installed"], &f["activated"], &f["ready"], &f["failed"]],
        [&json!(3), &json!(3), &json!(3), &json!(0)],
        "{f}"
    );
    assert_eq!(
        [&f["opens"], &f["offline_hits"], &f["under_1s"]],
        [&json!(90 + 1_000), &json!(81 + 1_000), &json!(63)],
        "{f}"
    );
}

#[test]
fn batches_without_a_valid_key_or_naming_nothing_real_are_refused_with_a_clear_code() {
    let (s, key) = setup(|_| {});
    let fine = json!([event("1.0.0", "installed")]);
    let refused = |body: Value, status: u16, code: &str| {
        let r = post(&s, &body);
        assert_eq!(
            (r.status, r.code()),
            (status, code.to_owned()),
            "{}",
            r.text()
        );
        r.json()["error"]["message"].as_str().unwrap().to_owned()
    };
    // The key: missing, unknown, another app's, revoked.
    let mut no_key = batch(&key, "d", fine.clone());
    no_key.as_object_mut().unwrap().remove("ingest_key");
    let message = refused(no_key, 401, "ingest_key_missing");
    assert!(
        message.contains("baleen ingest-key create --app shop"),
        "{message}"
    );
    refused(
        batch("bik_0000", "d", fine.clone()),
        401,
        "ingest_key_unknown",
    );
    let other = ingest_key(&s, "other", "k");
    refused(
        batch(&other, "d", fine.clone()),
        403,
        "ingest_key_wrong_app",
    );
    // Rotation: a second key works beside the first, which is then revoked.
    let next = ingest_key(&s, "shop", "android-2");
    assert_eq!(post(&s, &batch(&next, "d", fine.clone())).status, 202);
    let r = request(
        &s.base,
        "DELETE",
        "/v1/admin/apps/shop/ingest-keys/android-1",
        &[("Authorization", &format!("Bearer {}", s.admin))],
        None,
    );
    assert_eq!((r.status, &r.json()["state"]), (200, &json!("revoked")));
    refused(batch(&key, "d", fine.clone()), 401, "ingest_key_revoked");
    assert_eq!(post(&s, &batch(&next, "d", fine.clone())).status, 202);
    let keys = s.admin_get("/v1/admin/apps/shop/ingest-keys").json();
    let states: Vec<(&str, &str)> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("android-1", "revoked"), ("android-2", "active")]);
    assert!(!keys.to_string().contains("bik_"), "a listing shows no key");

    // The device id.
    let mut no_device = batch(&next, "d", fine.clone());
    no_device.as_object_mut().unwrap().remove("device_id");
    refused(no_device, 422, "bad_request");

    // The app, channel and releases named.
    let mut other_app = batch(&other, "d", fine.clone());
    other_app["app"] = json!("other");
    let message = refused(other_app, 404, "unknown_app");
    assert!(message.contains("other"), "{message}");
    let mut beta = batch(&next, "d", fine.clone());
    beta["channel"] = json!("beta");
    let message = refused(beta, 404, "unknown_channel");
    assert!(message.contains("beta"), "{message}");
    let message = refused(
        batch(&next, "d", json!([event("9.9.9", "failed")])),
        404,
        "unknown_release",
    );
    assert!(message.contains("checkout@9.9.9"), "{message}");
    // One stale event (a release collected since) does not lose the others.
    let r = post(
        &s,
        &batch(
            &next,
            "e",
            json!([event("9.9.9", "failed"), event("1.0.0", "ready"),
                   {"package": "unknown", "version": "1.0.0", "kind": "installed"}]),
        ),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let answer = r.json();
    assert_eq!(
        (&answer["accepted"], &answer["ignored"]),
        (&json!(1), &json!(2))
    );
    let refused_at: Vec<u64> = answer["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["code"], "unknown_release");
            r["index"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(refused_at, [0, 2]);
    let f = figures(&s, "1.0.0");
    assert_eq!((&f["failed"], &f["ready"]), (&json!(0), &json!(1)), "{f}");

    // The body is small and capped. Sent chunked, with no length declared: the server reads up
    // to the cap and answers 413 while the client has all but a byte written. (A declared
    // length above the cap is answered at once, and a client still writing may see its
    // connection closed before it reads the answer.)
    let answer = {
        use std::io::{Read, Write};
        let limit = server::http::public::EVENTS_BODY_LIMIT;
        let mut stream =
            std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
        let head = "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let mut request = head.as_bytes().to_vec();
        request.extend_from_slice(format!("{:x}\r\n", limit + 1).as_bytes());
        request.extend(std::iter::repeat_n(b' ', limit + 1));
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        // The server may stop reading once past the cap: the answer is what counts.
        let _ = stream.write_all(&request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");
    const { assert!(server::http::public::EVENTS_BODY_LIMIT <= 256 * 1024) };
}

#[test]
fn a_device_is_rate_limited_with_retry_after() {
    let (s, key) = setup(|settings| settings.events_per_device_per_minute = 2);
    let body = batch(&key, "chatty", json!([event("1.0.0", "installed")]));
    assert_eq!(post(&s, &body).status, 202);
    assert_eq!(post(&s, &body).status, 202);
    let r = post(&s, &body);
    assert_eq!(
        (r.status, r.code()),
        (429, "rate_limited".into()),
        "{}",
        r.text()
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(r.text().contains("device"), "{}", r.text());
    // Another device is not held back by this one.
    assert_eq!(
        post(
            &s,
            &batch(&key, "quiet", json!([event("1.0.0", "installed")]))
        )
        .status,
        202
    );
}
