//! The ramp's statistics against published values, and its decisions as a table.

use manifests::Timestamp;

use super::*;

fn close(got: (f64, f64), want: (f64, f64)) {
    assert!(
        (got.0 - want.0).abs() < 5e-4 && (got.1 - want.1).abs() < 5e-4,
        "{got:?}, expected {want:?}"
    );
}

fn h(failed: u64, activated: u64) -> Health {
    Health { activated, failed }
}

fn policy(auto_rollback: bool) -> RampPolicy {
    RampPolicy {
        steps: vec![100, 500, 2_500, 10_000],
        min_devices: 200,
        min_step_secs: 3_600,
        margin_basis_points: 100,
        auto_rollback,
    }
}

const START: u64 = 1_800_000_000;

fn decide_at(p: &RampPolicy, bp: u16, elapsed: u64, c: Health, s: Option<Health>) -> Verdict {
    decide(
        p,
        bp,
        Timestamp::from_unix_secs(START),
        Timestamp::from_unix_secs(START + elapsed),
        c,
        s,
    )
}

#[test]
fn wilson_and_newcombe_intervals_match_the_published_examples() {
    // Newcombe (1998), Statistics in Medicine 17, table II and table I: Wilson intervals.
    close(h(81, 263).wilson(Z_95), (0.2553, 0.3662));
    close(h(15, 148).wilson(Z_95), (0.0624, 0.1605));
    close(h(0, 20).wilson(Z_95), (0.0, 0.1611));
    close(h(1, 29).wilson(Z_95), (0.0061, 0.1718));
    // Newcombe (1998), Statistics in Medicine 17, method 10 (hybrid score), examples (a), (d), (e).
    close(difference(h(56, 70), h(48, 80), Z_95), (0.0524, 0.3339));
    close(difference(h(5, 56), h(0, 29), Z_95), (-0.0381, 0.1926));
    close(difference(h(9, 10), h(3, 10), Z_95), (0.1705, 0.8090));
    // No failure: the low bound is exactly 0; all failing: the high bound exactly 1.
    assert_eq!(h(0, 1_000).wilson(Z_95).0, 0.0);
    assert_eq!(h(7, 7).wilson(Z_95).1, 1.0);
    // No device: nothing is known.
    assert_eq!(h(0, 0).wilson(Z_95), (0.0, 1.0));
    // A stricter quantile widens the interval.
    let (l95, u95) = difference(h(30, 1_000), h(20, 1_000), Z_95);
    let (l999, u999) = difference(h(30, 1_000), h(20, 1_000), Z_999);
    assert!(l999 < l95 && u999 > u95);
}

#[test]
fn a_healthy_candidate_advances_step_by_step_then_completes() {
    let p = policy(true);
    let stable = Some(h(20, 10_000));
    for (from, to) in [(100, 500), (500, 2_500), (2_500, 10_000)] {
        let v = decide_at(&p, from, 3_600, h(2, 1_000), stable);
        assert_eq!(
            v,
            Verdict::Advance {
                basis_points: to,
                reason: v.reason().to_owned()
            }
        );
        assert!(v.reason().contains("not worse than stable"), "{v:?}");
    }
    // A share set by hand between steps goes to the next step above it.
    let v = decide_at(&p, 300, 3_600, h(2, 1_000), stable);
    assert!(
        matches!(
            v,
            Verdict::Advance {
                basis_points: 500,
                ..
            }
        ),
        "{v:?}"
    );
    let v = decide_at(&p, 10_000, 3_600, h(2, 1_000), stable);
    assert_eq!(v.name(), "complete", "{v:?}");
}

#[test]
fn a_small_or_young_or_inconclusive_sample_holds() {
    let p = policy(true);
    let stable = Some(h(100, 10_000)); // 1 %
    // Ten devices, one failing: noisy, neither clearly bad nor enough to go on.
    let v = decide_at(&p, 100, 86_400, h(1, 10), stable);
    assert_eq!(v.name(), "hold", "{v:?}");
    assert!(v.reason().contains("10 of 200 devices"), "{v:?}");
    // Enough devices but the step is too young.
    let v = decide_at(&p, 100, 600, h(2, 1_000), stable);
    assert_eq!(v.name(), "hold", "{v:?}");
    assert!(v.reason().contains("600 of 3600 s"), "{v:?}");
    // Enough of both, but the rate could still be above the margin.
    let v = decide_at(&p, 100, 3_600, h(4, 250), stable);
    assert_eq!(v.name(), "hold", "{v:?}");
    assert!(v.reason().contains("no conclusion yet"), "{v:?}");
}

#[test]
fn a_worse_candidate_pauses_and_a_clearly_worse_one_rolls_back_when_allowed() {
    let stable = Some(h(20, 10_000)); // 0.2 %
    // 3 % against 0.2 %, margin 1 %: worse at 95 % but not at 99.9 %.
    let v = decide_at(&policy(true), 500, 0, h(9, 300), stable);
    assert_eq!(v.name(), "pause", "{v:?}");
    assert!(v.reason().contains("above 1.00 points at 95 %"), "{v:?}");
    // 10 % of 1,000: clearly worse.
    let v = decide_at(&policy(true), 500, 0, h(100, 1_000), stable);
    assert_eq!(v.name(), "rollback", "{v:?}");
    assert!(v.reason().contains("99.9 %"), "{v:?}");
    // The same without auto_rollback only pauses.
    let v = decide_at(&policy(false), 500, 0, h(100, 1_000), stable);
    assert_eq!(v.name(), "pause", "{v:?}");
    // A blatant failure halts before the minimum sample or time.
    let v = decide_at(&policy(false), 100, 0, h(5, 5), stable);
    assert_eq!(v.name(), "pause", "{v:?}");
}

#[test]
fn without_stable_figures_the_candidate_is_held_against_the_margin_alone() {
    let p = policy(true);
    let v = decide_at(&p, 100, 3_600, h(0, 1_000), None);
    assert_eq!(v.name(), "advance", "{v:?}");
    assert!(v.reason().contains("no stable figures"), "{v:?}");
    // A stable release no device reported on counts as none.
    let v = decide_at(&p, 100, 3_600, h(0, 1_000), Some(h(0, 0)));
    assert_eq!(v.name(), "advance", "{v:?}");
    let v = decide_at(&p, 100, 3_600, h(50, 1_000), None);
    assert_eq!(v.name(), "rollback", "{v:?}");
}

#[test]
fn policies_are_checked() {
    assert!(policy(true).check().is_ok());
    // Given in any order, steps are sorted before the check.
    let shuffled = RampPolicy {
        steps: vec![10_000, 100, 2_500, 500],
        ..policy(true)
    };
    assert_eq!(shuffled.checked().unwrap(), policy(true));
    for (steps, margin, words) in [
        (vec![], 100, "0 steps"),
        (vec![500, 100, 10_000], 100, "steps must rise"),
        (vec![100, 100, 10_000], 100, "given twice"),
        (vec![0, 10_000], 100, "first step is 0"),
        (vec![100, 5_000], 100, "must be 10000"),
        (vec![100, 10_000], 10_001, "margin"),
    ] {
        let p = RampPolicy {
            steps,
            margin_basis_points: margin,
            ..policy(true)
        };
        let err = p.check().unwrap_err().to_string();
        assert!(err.contains(words), "{err}");
    }
    for (p, words) in [
        (
            RampPolicy {
                min_devices: MAX_MIN_DEVICES + 1,
                ..policy(true)
            },
            "min_devices",
        ),
        (
            RampPolicy {
                min_step_secs: MAX_MIN_STEP_SECS + 1,
                ..policy(true)
            },
            "a year",
        ),
    ] {
        let err = p.check().unwrap_err().to_string();
        assert!(err.contains(words), "{err}");
    }
}

#[test]
fn whole_numbers_are_read_as_json_schema_reads_integers() {
    let p: RampPolicy = serde_json::from_str(
        r#"{"steps": [100.0, 10000], "min_devices": 5.0, "min_step_secs": 60, "margin_basis_points": 50.0}"#,
    )
    .unwrap();
    assert_eq!(
        (p.steps, p.min_devices, p.margin_basis_points),
        (vec![100, 10_000], 5, 50)
    );
    for bad in [
        r#"{"steps": [100.5, 10000], "min_devices": 5, "min_step_secs": 60, "margin_basis_points": 50}"#,
        r#"{"steps": [70000], "min_devices": 5, "min_step_secs": 60, "margin_basis_points": 50}"#,
        r#"{"steps": [10000], "min_devices": -5, "min_step_secs": 60, "margin_basis_points": 50}"#,
    ] {
        let err = serde_json::from_str::<RampPolicy>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a whole number in range"), "{bad}: {err}");
    }
}

#[test]
fn the_devices_a_margin_needs_are_where_a_clean_sample_starts_to_advance() {
    for margin in [50_u16, 100, 800] {
        let p = RampPolicy {
            margin_basis_points: margin,
            min_devices: 0,
            min_step_secs: 0,
            ..policy(true)
        };
        let n = p.devices_to_conclude();
        let at = |devices: u64| decide_at(&p, 100, 0, h(0, devices), Some(h(0, 1_000_000)));
        assert_eq!(at(n).name(), "advance", "{margin}: {n}");
        assert_eq!(at(n - 1).name(), "hold", "{margin}: {}", n - 1);
    }
    assert_eq!(policy(true).devices_to_conclude(), 381);
}
