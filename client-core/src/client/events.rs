//! Page opens and device events, counted in memory and sent in batches.

use manifests::{EventBatch, paths};

use super::{Client, lock};
use crate::error::{Error, Result};

impl Client {
    /// Counts a page open for the open-rate figures: was it answered offline, and did it show
    /// within one second. Never blocks on IO.
    pub fn report_open(&self, url: &str, ms_to_first_paint: u64) {
        // A page of an installed package that was not answered offline still counts, as a miss.
        let (release, offline) = match self.resolver.resolve(url) {
            Some(hit) => ((hit.package, hit.version), true),
            None => match self.resolver.route_of(url) {
                Some(route) => (route, false),
                None => return,
            },
        };
        lock(&self.core).record_open(release, offline, ms_to_first_paint);
    }

    /// Sends queued events and open counters to the server with the app's ingest key and the
    /// device's id; on a network failure, a busy server or a rate limit they stay queued, and
    /// what the server refuses (a revoked key, an unknown release) is dropped, as sending it
    /// again would be refused again. Without an ingest key nothing is sent (and the queue is
    /// emptied). Blocks (network).
    ///
    /// # Errors
    /// Network errors.
    pub fn flush_events(&self) -> Result<usize> {
        let events = {
            let writer = lock(&self.writer);
            let (usage, events) = lock(&self.core).take_events(self.clock.now());
            // Usage steers the planner; losing it is harmless, so a failed write is not fatal.
            if let Some(usage) = usage {
                let _ = self.commit(&writer, usage);
            }
            events
        };
        if events.is_empty() {
            return Ok(0);
        }
        let Some(ingest_key) = self.config.ingest_key.clone() else {
            return Ok(0);
        };
        let batch = EventBatch {
            app: self.config.app.clone(),
            channel: self.config.channel.clone(),
            ingest_key: Some(ingest_key),
            device_id: Some(self.config.device_id.clone()),
            events,
        };
        let body = serde_json::to_vec(&batch).map_err(|e| Error::Invalid(e.to_string()))?;
        let headers = [("Content-Type".to_owned(), "application/json".to_owned())];
        let result = self
            .net
            .request("POST", paths::EVENTS, &headers, body, 64 * 1024)
            .and_then(|r| match r.status {
                202 => Ok(Sent::Counted),
                // Refused for good: sending it again would be refused again.
                400..=499 if r.status != 408 && r.status != 429 => Ok(Sent::Refused(r.status)),
                s => Err(Error::Network(format!("POST /v1/events: HTTP {s}"))),
            });
        match result {
            Ok(Sent::Counted) => Ok(batch.events.len()),
            Ok(Sent::Refused(status)) => Err(Error::Invalid(format!(
                "POST /v1/events: HTTP {status}; {} events dropped",
                batch.events.len()
            ))),
            Err(e) => {
                lock(&self.core).requeue(batch.events);
                Err(e)
            }
        }
    }
}

/// What became of a batch the server answered.
enum Sent {
    Counted,
    Refused(u16),
}
