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
    let builds = Builds::new(2, 2);
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
    let builds = Builds::new(1, 1);
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
