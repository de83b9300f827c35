use super::*;

#[test]
fn a_key_gets_its_burst_then_one_token_per_interval() {
    let limiter = RateLimiter::new(60, 3);
    let t0 = Instant::now();
    for _ in 0..3 {
        assert!(limiter.admit(&"a", t0).is_ok());
    }
    let wait = limiter.admit(&"a", t0).unwrap_err();
    assert!(
        wait <= Duration::from_secs(1) && wait > Duration::ZERO,
        "{wait:?}"
    );
    assert!(limiter.admit(&"b", t0).is_ok(), "keys are apart");
    assert!(limiter.admit(&"a", t0 + Duration::from_secs(1)).is_ok());
    assert!(limiter.admit(&"a", t0 + Duration::from_secs(1)).is_err());
}

#[test]
fn memory_stays_bounded_by_evicting_idle_then_oldest_keys() {
    let limiter = RateLimiter::with_max_keys(60, 2, 100);
    let t0 = Instant::now();
    for i in 0..1_000 {
        let _ = limiter.admit(&i, t0 + Duration::from_millis(i));
    }
    assert!(limiter.len() <= 100, "{}", limiter.len());
    // An idle key refilled: forgetting it changes nothing it could do.
    let later = t0 + Duration::from_secs(60);
    assert!(limiter.admit(&5_000, later).is_ok());
    assert!(limiter.len() <= 100);
}

#[test]
fn zero_per_minute_admits_everything() {
    let limiter = RateLimiter::new(0, 1);
    let t0 = Instant::now();
    for _ in 0..100 {
        assert!(limiter.admit(&"a", t0).is_ok());
    }
    assert!(limiter.is_empty());
}
