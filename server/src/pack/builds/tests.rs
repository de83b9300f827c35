//! The bound on request-started jobs, and joining a job under way.

#![allow(clippy::unwrap_used)]

use super::*;

fn key(from: &str) -> PackKey {
    PackKey::new(
        &PackageId::parse("app").unwrap(),
        Some(&ReleaseVersion::parse(from).unwrap()),
        &ReleaseVersion::parse("9.0.0").unwrap(),
    )
}

fn started(joined: &Joined) -> Option<bool> {
    match joined {
        Joined::Running { started, .. } => Some(*started),
        Joined::Full => None,
    }
}

#[test]
fn requests_start_at_most_the_bound_of_jobs_and_a_publish_is_not_bounded() {
    let builds = Builds::new(2, 2, u64::MAX);
    assert_eq!(
        started(&builds.join_or_start(&key("1.0.0"), true)),
        Some(true)
    );
    assert_eq!(
        started(&builds.join_or_start(&key("2.0.0"), true)),
        Some(true)
    );
    // The bound is reached: a third pack starts nothing.
    assert_eq!(started(&builds.join_or_start(&key("3.0.0"), true)), None);
    assert_eq!(builds.jobs(), 2);
    // Asking again for a pack under way joins its job.
    assert_eq!(
        started(&builds.join_or_start(&key("1.0.0"), true)),
        Some(false)
    );
    // A publish's jobs do not count against the bound.
    assert_eq!(
        started(&builds.join_or_start(&key("4.0.0"), false)),
        Some(true)
    );
    assert_eq!(builds.jobs(), 3);
    // A job that ends makes room for one more request.
    builds.finish(&key("1.0.0"));
    assert_eq!(
        started(&builds.join_or_start(&key("3.0.0"), true)),
        Some(true)
    );
    assert_eq!(started(&builds.join_or_start(&key("5.0.0"), true)), None);
}

#[test]
fn a_waiter_hears_of_each_stage_and_of_the_end() {
    let builds = Builds::new(1, 1, u64::MAX);
    let Joined::Running {
        ready: mut first, ..
    } = builds.join_or_start(&key("1.0.0"), true)
    else {
        panic!("not started")
    };
    let Joined::Running { ready: second, .. } = builds.join_or_start(&key("1.0.0"), true) else {
        panic!("not joined")
    };
    builds.notify(&key("1.0.0"));
    assert!(first.has_changed().unwrap());
    assert!(second.has_changed().unwrap());
    first.borrow_and_update();
    builds.finish(&key("1.0.0"));
    // The end wakes a waiter too: a new value, or a closed channel, which ends `changed()`.
    assert!(!matches!(first.has_changed(), Ok(false)));
    assert_eq!(builds.jobs(), 0);
}

fn pack(len: usize) -> Arc<FastPack> {
    let bytes = vec![7u8; len];
    Arc::new(FastPack {
        digest: manifests::Digest::of(&bytes),
        bytes: bytes.into(),
    })
}

#[test]
fn fast_packs_past_the_memory_budget_are_let_go_oldest_first() {
    let builds = Builds::new(1, 1, 100);
    builds.put_fast(key("1.0.0"), pack(40));
    builds.put_fast(key("2.0.0"), pack(40));
    assert_eq!(builds.fast_bytes(), 80);
    builds.put_fast(key("3.0.0"), pack(40));
    // 120 bytes is over the budget: the pack held longest goes, and is known to be gone.
    assert_eq!(builds.fast_bytes(), 80);
    assert!(builds.fast(&key("1.0.0")).is_none());
    assert!(builds.evicted(&key("1.0.0")));
    assert!(builds.fast(&key("2.0.0")).is_some() && builds.fast(&key("3.0.0")).is_some());
    // Built again, it is held again, and the next oldest goes.
    builds.put_fast(key("1.0.0"), pack(40));
    assert!(!builds.evicted(&key("1.0.0")));
    assert!(builds.evicted(&key("2.0.0")));
    // A pack larger than the budget is still held, alone.
    builds.put_fast(key("4.0.0"), pack(500));
    assert_eq!(builds.fast_bytes(), 500);
    assert!(builds.fast(&key("4.0.0")).is_some());
    // A stored final pack ends both the pack and its eviction.
    builds.forget_fast(&key("4.0.0"));
    builds.forget_fast(&key("2.0.0"));
    assert_eq!(builds.fast_bytes(), 0);
    assert!(!builds.evicted(&key("2.0.0")));
}
