use expect_test::{Expect, expect};

use super::*;

#[track_caller]
fn check_json<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    value: &T,
    expect: Expect,
) {
    let text = serde_json::to_string(value).unwrap();
    expect.assert_eq(&text);
    assert_eq!(
        &serde_json::from_str::<T>(&text).unwrap(),
        value,
        "round trip"
    );
}

fn version(v: &str) -> ReleaseVersion {
    ReleaseVersion::parse(v).unwrap()
}

#[test]
fn channel_changes_are_tagged_by_action_with_a_reason() {
    let change = |action| ChangeRequest {
        action,
        reason: "staged".into(),
        create_channel: false,
    };
    check_json(
        &change(Action::Rollout {
            version: Some(version("1.1.0")),
            basis_points: 1250,
        }),
        expect![[
            r#"{"action":"rollout","version":"1.1.0","basis_points":1250,"reason":"staged"}"#
        ]],
    );
    check_json(
        &change(Action::Pause),
        expect![[r#"{"action":"pause","reason":"staged"}"#]],
    );
    check_json(
        &change(Action::Rollback { to: None }),
        expect![[r#"{"action":"rollback","to":null,"reason":"staged"}"#]],
    );
    let bare: ChangeRequest = serde_json::from_str(r#"{"action":"complete"}"#).unwrap();
    assert_eq!(bare.action, Action::Complete);
    assert_eq!(bare.reason, "");
}

#[test]
fn errors_nest_code_and_message() {
    check_json(
        &ErrorBody {
            error: ErrorDetail {
                code: "not_found".into(),
                message: "release 9.0.0 not found".into(),
            },
        },
        expect![[r#"{"error":{"code":"not_found","message":"release 9.0.0 not found"}}"#]],
    );
}

#[test]
fn publish_queries_leave_out_what_is_not_set() {
    let query = PublishQuery {
        version: "1.0.0-dev.1".into(),
        channel: Some("dev".into()),
        spa: Some(true),
        routes: Some("https://m.example.com/a/,https://m.example.com/b/".into()),
        removed: Some("a.js\nb/c d.css".into()),
        ..PublishQuery::default()
    };
    let encoded = query.encode().unwrap();
    expect![[r#"version=1.0.0-dev.1&routes=https%3A%2F%2Fm.example.com%2Fa%2F%2Chttps%3A%2F%2Fm.example.com%2Fb%2F&spa=true&channel=dev&removed=a.js%0Ab%2Fc+d.css"#]]
        .assert_eq(&encoded);
    assert_eq!(
        serde_urlencoded::from_str::<PublishQuery>(&encoded).unwrap(),
        query
    );
}

#[test]
fn reports_add_shares_to_the_counters() {
    let stats = meta_store::ReleaseStats {
        package: Some(PackageId::parse("checkout").unwrap()),
        version: Some(version("1.0.0")),
        activated: 4,
        failed: 1,
        opens: 8,
        offline_hits: 6,
        under_1s: 2,
        paint_ms: [0, 2, 4, 2, 0, 0, 0, 0, 0, 0, 0],
        ..meta_store::ReleaseStats::default()
    };
    check_json(
        &ReleaseReport::from(&stats),
        expect![[
            r#"{"package":"checkout","version":"1.0.0","installed":0,"activated":4,"ready":0,"failed":1,"rolled_back":0,"opens":8,"offline_hits":6,"under_1s":2,"offline_hit_rate":0.75,"under_1s_rate":0.25,"failure_rate":0.25,"failure_rate_interval":[0.04558726029536886,0.6993581599030918],"paint_ms":[0,2,4,2],"open_ms_median":250,"open_ms_p90":420}"#
        ]],
    );
    let none = ReleaseReport::from(&meta_store::ReleaseStats::default());
    assert_eq!(
        (
            none.offline_hit_rate,
            none.under_1s_rate,
            none.failure_rate,
            none.failure_rate_interval
        ),
        (None, None, None, None)
    );
}

#[test]
fn paint_quantiles_interpolate_within_their_bucket() {
    use crate::api::paint_quantile;
    assert_eq!(paint_quantile(&[], 0.5), None);
    assert_eq!(paint_quantile(&[0, 0], 0.5), None);
    // Ten opens, all in (300, 500] ms: the median halfway through it.
    assert_eq!(paint_quantile(&[0, 0, 0, 10], 0.5), Some(400));
    assert_eq!(paint_quantile(&[10], 0.9), Some(90));
    // Past the last bound: the last bound.
    let mut slow = vec![0; manifests::PAINT_BUCKETS];
    slow[manifests::PAINT_BUCKETS - 1] = 3;
    assert_eq!(paint_quantile(&slow, 0.5), Some(5_000));
}
