//! The wall clock, injected so that tests can drive expiry and usage with a fake one.

use std::time::SystemTime;

use manifests::Timestamp;

/// Tells the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current wall-clock time (which may be wrong: the device core bounds it).
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp::from_unix_secs(secs)
    }
}
