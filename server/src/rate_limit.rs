//! Token buckets in memory, per key (a device, a client address), for the public write route
//! (`POST /v1/events`): each key may send `burst` requests at once and then one every
//! `60 / per_minute` seconds.
//!
//! Per process: behind a load balancer each replica grants its own share. Memory is bounded:
//! past [`MAX_KEYS`] keys, the idle ones (whose bucket refilled) are dropped, then the oldest.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys one limiter remembers.
pub const MAX_KEYS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per key.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_minute: u32,
    burst: u32,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_minute` requests a minute per key, `burst` at once; `per_minute` 0 admits everything.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter<K> {
        Self::with_max_keys(per_minute, burst, MAX_KEYS)
    }

    /// As [`RateLimiter::new`], remembering at most `max_keys` keys.
    pub fn with_max_keys(per_minute: u32, burst: u32, max_keys: usize) -> RateLimiter<K> {
        RateLimiter {
            per_minute,
            burst: burst.max(1),
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key` at `now`: `Ok` when the request may go on, else how long until
    /// the next token.
    ///
    /// # Errors
    /// The wait, when the key's bucket is empty.
    pub fn admit(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        // A poisoned lock holds only counters; going on with them is safe.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            let full = |b: &Bucket| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate >= burst
            };
            buckets.retain(|_, b| !full(b));
            if buckets.len() >= self.max_keys {
                let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                buckets.retain(|_, b| b.at > cut);
            }
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
