//! Health-gated rollouts against the real server: simulated fleets report boots through
//! `POST /v1/events` (real HTTP, an ingest key, distinct devices), time is injected into
//! `Service::evaluate_ramps`, and the ramp's moves are read back from the channel, its history
//! and the audit log. The table of decisions is `server::ramp::tests`.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use harness::{TestServer, request};
use manifests::{Channel, PackageId, Timestamp};
use serde_json::{Value, json};
use server::ramp::RampState;

/// `checkout` 1.0.0 stable on `shop/production`, 1.1.0 published; an ingest key; no per-address
/// limit (the whole fleet posts from this one address).
fn setup() -> (TestServer, String) {
    let s = TestServer::start_with(|settings| {
        settings.events_per_address_per_minute = 0;
        settings.ramp_interval = None;
    });
    s.publish_checkout("1.0.0", Some("production"));
    s.publish_checkout("1.1.0", None);
    let r = s.post_json(
        "/v1/admin/apps/shop/ingest-keys",
        &s.admin,
        &json!({ "name": "android-1" }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json()["key"].as_str().unwrap().to_owned();
    (s, key)
}

/// `devices` new devices boot `version`, `failing` of them fail (and roll back).
fn boots(s: &TestServer, key: &str, fleet: &str, version: &str, devices: usize, failing: usize) {
    for i in 0..devices {
        let mut events =
            vec![json!({"package": "checkout", "version": version, "kind": "activated"})];
        if i < failing {
            events.push(
                json!({"package": "checkout", "version": version, "kind": "failed", "count": 1000}),
            );
            events.push(json!({"package": "checkout", "version": version, "kind": "rolled_back"}));
        } else {
            events.push(json!({"package": "checkout", "version": version, "kind": "ready"}));
        }
        let body = json!({"app": "shop", "channel": "production", "ingest_key": key,
                          "device_id": format!("{fleet}-{version}-{i}"), "events": events});
        let r = request(
            &s.base,
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            Some(&serde_json::to_vec(&body).unwrap()),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
}

fn policy(auto_rollback: bool) -> Value {
    json!({"steps": [100, 500, 2500, 10000], "min_devices": 200, "min_step_secs": 3600,
           "margin_basis_points": 100, "auto_rollback": auto_rollback})
}

fn start(s: &TestServer, policy: Value) -> Value {
    let r = request(
        &s.base,
        "PUT",
        "/v1/admin/packages/checkout/channels/production/ramp",
        &[
            ("Authorization", &format!("Bearer {}", s.admin)),
            ("Content-Type", "application/json"),
        ],
        Some(
            &serde_json::to_vec(
                &json!({"version": "1.1.0", "policy": policy, "reason": "ramp test"}),
            )
            .unwrap(),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn state(s: &TestServer) -> Value {
    let r = s.admin_get("/v1/admin/apps/shop/channels/production");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["packages"]["checkout"].clone()
}

/// Evaluates the ramps `secs` after the ramp started; the ramp of checkout afterwards.
fn evaluate(s: &TestServer, at: Timestamp) -> server::ramp::RampRecord {
    let evaluated = s.block_on(s.service.evaluate_ramps(at)).unwrap();
    assert_eq!(evaluated.len(), 1, "{evaluated:?}");
    let ramp = s
        .block_on(s.service.ramp(
            &PackageId::parse("checkout").unwrap(),
            &Channel::parse("production").unwrap(),
        ))
        .unwrap()
        .unwrap();
    assert_eq!(ramp, evaluated[0]);
    ramp
}

fn started(ramp: &Value) -> u64 {
    Timestamp::parse(ramp["step_started_at"].as_str().unwrap())
        .unwrap()
        .unix_secs()
}

#[test]
fn a_good_candidate_ramps_step_by_step_to_stable() {
    let (s, key) = setup();
    boots(&s, &key, "old", "1.0.0", 2_000, 10); // stable: 0.5 %
    let ramp = start(&s, policy(true));
    assert_eq!(ramp["state"], "active");
    assert_eq!(state(&s)["rollout_basis_points"], 100, "{}", state(&s));
    let mut t = started(&ramp);

    // Too few devices yet: it holds.
    boots(&s, &key, "a", "1.1.0", 50, 0);
    let r = evaluate(&s, Timestamp::from_unix_secs(t + 10));
    assert_eq!(r.last.as_ref().unwrap().verdict, "hold", "{r:?}");
    assert!(
        r.last
            .as_ref()
            .unwrap()
            .reason
            .contains("50 of 200 devices"),
        "{r:?}"
    );
    assert_eq!(state(&s)["rollout_basis_points"], 100);

    // Each step: enough healthy devices, then enough time, then the next share.
    for (fleet, next) in [500, 2_500, 10_000].into_iter().enumerate() {
        boots(&s, &key, &format!("f{fleet}"), "1.1.0", 300, 0);
        let young = evaluate(&s, Timestamp::from_unix_secs(t + 10));
        let last = young.last.as_ref().unwrap();
        assert_eq!(last.verdict, "hold", "{young:?}");
        assert!(last.reason.contains("lasted 10 of 3600 s"), "{young:?}");
        t += 3_600 + 20;
        let r = evaluate(&s, Timestamp::from_unix_secs(t));
        assert_eq!(r.last.as_ref().unwrap().verdict, "advance", "{r:?}");
        assert_eq!(state(&s)["rollout_basis_points"], next, "{}", state(&s));
        assert_eq!(r.state, RampState::Active);
        assert_eq!(r.step_started_at, Timestamp::from_unix_secs(t));
    }
    t += 3_600 + 20;
    let r = evaluate(&s, Timestamp::from_unix_secs(t));
    assert_eq!(r.last.as_ref().unwrap().verdict, "complete", "{r:?}");
    assert_eq!(r.state, RampState::Completed);
    let st = state(&s);
    assert_eq!(
        (st["stable"].as_str(), st["candidate"].as_str()),
        (Some("1.1.0"), None),
        "{st}"
    );

    // Every move is in the history under the actor `ramp`, with its figures.
    let history = s
        .admin_get("/v1/admin/packages/checkout/channels/production/history")
        .json();
    let by_ramp: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["actor"] == "ramp")
        .collect();
    assert_eq!(by_ramp.len(), 4, "{history}");
    assert!(
        by_ramp.iter().all(|h| h["reason"]
            .as_str()
            .unwrap()
            .contains("not worse than stable")),
        "{history}"
    );
    // A completed ramp is no longer evaluated.
    assert!(
        s.block_on(
            s.service
                .evaluate_ramps(Timestamp::from_unix_secs(t + 99_999))
        )
        .unwrap()
        .is_empty()
    );
}

#[test]
fn a_bad_candidate_halts_and_rolls_back_and_without_auto_rollback_it_pauses() {
    for auto in [true, false] {
        let (s, key) = setup();
        boots(&s, &key, "old", "1.0.0", 2_000, 10); // 0.5 %
        let ramp = start(&s, policy(auto));
        // 1.1.0 fails on 30 of 300 devices: 10 %.
        boots(&s, &key, "bad", "1.1.0", 300, 30);
        let r = evaluate(&s, Timestamp::from_unix_secs(started(&ramp) + 60));
        let last = r.last.as_ref().unwrap();
        let st = state(&s);
        if auto {
            assert_eq!(last.verdict, "rollback", "{r:?}");
            assert_eq!(r.state, RampState::RolledBack);
            assert_eq!(
                (st["stable"].as_str(), st["candidate"].as_str()),
                (Some("1.0.0"), None),
                "{st}"
            );
        } else {
            assert_eq!(last.verdict, "pause", "{r:?}");
            assert_eq!(r.state, RampState::Paused);
            assert_eq!(st["paused"], true, "{st}");
            assert_eq!(st["rollout_basis_points"], 100, "{st}");
            // Paused, it waits for a person: more evaluations change nothing.
            let again = evaluate(&s, Timestamp::from_unix_secs(started(&ramp) + 99_999));
            assert_eq!(again.last, r.last);
        }
        assert_eq!((last.candidate.activated, last.candidate.failed), (300, 30));
        // The audit log says why, under the actor `ramp`.
        let audit = s.admin_get("/v1/admin/audit?limit=20").json();
        let entry = audit
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["actor"] == "ramp")
            .unwrap_or_else(|| panic!("no audit entry by the ramp: {audit}"));
        let detail = entry["detail"].as_str().unwrap();
        assert!(detail.contains("30/300"), "{detail}");
        // And a metric counts the verdict.
        let metrics = s.get("/metrics").text();
        let name = if auto { "rollback" } else { "pause" };
        assert!(
            metrics.contains(&format!(
                "baleen_ramp_verdicts_total{{outcome=\"{name}\"}} 1"
            )),
            "{metrics}"
        );
    }
}

#[test]
fn a_small_noisy_sample_holds() {
    let (s, key) = setup();
    boots(&s, &key, "old", "1.0.0", 2_000, 20); // 1 %
    let ramp = start(&s, policy(true));
    // Twelve devices, one failing: 8 % of a tiny sample, not clearly anything.
    boots(&s, &key, "few", "1.1.0", 12, 1);
    for hours in [1, 5, 48] {
        let r = evaluate(
            &s,
            Timestamp::from_unix_secs(started(&ramp) + hours * 3_600),
        );
        assert_eq!(r.last.as_ref().unwrap().verdict, "hold", "{r:?}");
        assert_eq!(r.state, RampState::Active);
    }
    assert_eq!(state(&s)["rollout_basis_points"], 100);
    // A device repeating its failure a thousand times is still one failing device.
    boots(&s, &key, "few", "1.1.0", 12, 1);
    let r = evaluate(&s, Timestamp::from_unix_secs(started(&ramp) + 3_600));
    assert_eq!(r.last.as_ref().unwrap().candidate.failed, 1, "{r:?}");
}

#[test]
fn ramps_are_refused_with_a_clear_error_and_a_person_can_take_over() {
    let (s, _key) = setup();
    let put = |body: Value| {
        request(
            &s.base,
            "PUT",
            "/v1/admin/packages/checkout/channels/production/ramp",
            &[
                ("Authorization", &format!("Bearer {}", s.admin)),
                ("Content-Type", "application/json"),
            ],
            Some(&serde_json::to_vec(&body).unwrap()),
        )
    };
    for (body, status, words) in [
        (
            json!({"version": "1.1.0", "policy": {"steps": [500, 500, 10000], "min_devices": 1, "min_step_secs": 0, "margin_basis_points": 100}}),
            422,
            "given twice",
        ),
        (
            json!({"version": "1.1.0", "policy": {"steps": [100, 5000], "min_devices": 1, "min_step_secs": 0, "margin_basis_points": 100}}),
            422,
            "must be 10000",
        ),
        (
            json!({"version": "1.1.0", "policy": {"steps": [10000], "min_devices": 1, "min_step_secs": 0, "margin_basis_points": 100, "speed": 2}}),
            422,
            "speed",
        ),
        (
            json!({"version": "1.1.0", "policy": policy(true), "reason": "é".repeat(1025)}),
            422,
            "1024 characters",
        ),
        (json!({"policy": policy(true)}), 409, "no candidate"),
        (
            json!({"version": "9.9.9", "policy": policy(true)}),
            404,
            "9.9.9",
        ),
    ] {
        let r = put(body);
        assert_eq!(r.status, status, "{}", r.text());
        assert!(r.text().contains(words), "{}", r.text());
    }
    // The same bound on a reason holds for any channel change: 1,024 characters, whatever bytes.
    let r = s.change(
        "checkout",
        "production",
        json!({"action": "rollback", "reason": "é".repeat(1025)}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("1024 characters"), "{}", r.text());
    // Nothing was changed by the refusals.
    assert_eq!(state(&s)["candidate"], Value::Null);
    let r = s.admin_get("/v1/admin/packages/checkout/channels/production/ramp");
    assert_eq!(r.status, 404, "{}", r.text());

    // A release token bound to another package may not ramp this one.
    let other = s.token("other", server::meta_store::Scope::Release, Some("other"));
    let r = request(
        &s.base,
        "PUT",
        "/v1/admin/packages/checkout/channels/production/ramp",
        &[
            ("Authorization", &format!("Bearer {other}")),
            ("Content-Type", "application/json"),
        ],
        Some(&serde_json::to_vec(&json!({"version": "1.1.0", "policy": policy(true)})).unwrap()),
    );
    assert_eq!(r.status, 403, "{}", r.text());

    // A person rolling back by hand ends the ramp; it does not fight back.
    let ramp = start(&s, policy(true));
    let r = s.change(
        "checkout",
        "production",
        json!({"action": "rollback", "reason": "by hand"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = evaluate(&s, Timestamp::from_unix_secs(started(&ramp) + 99_999));
    assert_eq!(r.state, RampState::Ended, "{r:?}");
    assert_eq!(state(&s)["candidate"], Value::Null);

    // Stopped, the share stays where it was.
    start(&s, policy(true));
    let r = request(
        &s.base,
        "DELETE",
        "/v1/admin/packages/checkout/channels/production/ramp",
        &[("Authorization", &format!("Bearer {}", s.admin))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "ended");
    assert_eq!(state(&s)["rollout_basis_points"], 100);
    assert!(
        s.block_on(
            s.service
                .evaluate_ramps(Timestamp::from_unix_secs(started(&ramp) + 99_999))
        )
        .unwrap()
        .is_empty()
    );
}
