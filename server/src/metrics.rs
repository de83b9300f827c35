//! Prometheus metrics, served at `/metrics` in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request: the route pattern (never the raw path, to bound cardinality).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route, such as `/v1/blobs/{digest}`.
    pub route: &'static str,
    /// The method.
    pub method: &'static str,
    /// The status code.
    pub status: u16,
}

/// Labels of a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route.
    pub route: &'static str,
}

/// Labels of an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `created`, `unchanged` or `refused`.
    pub outcome: String,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency, by route.
    pub latency: Family<RouteLabels, Histogram>,
    /// Publishes, by outcome.
    pub publishes: Family<OutcomeLabels, Counter>,
    /// Packs built (fast and final stages).
    pub pack_builds: Counter,
    /// Final packs built: one per pack across the servers sharing a store.
    pub final_pack_builds: Counter,
    /// Seconds spent building packs.
    pub pack_build_seconds: Histogram,
    /// Garbage collections run (dry runs aside).
    pub gc_runs: Counter,
    /// Releases collected.
    pub gc_releases: Counter,
    /// Stored blobs (files and packs) collected.
    pub gc_blobs: Counter,
    /// Bytes freed by collections.
    pub gc_bytes: Counter,
    /// Ramp evaluations, by verdict (`advance`, `complete`, `hold`, `pause`, `rollback`).
    pub ramp_verdicts: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("baleen");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        let publishes = Family::<OutcomeLabels, Counter>::default();
        let pack_builds = Counter::default();
        let pack_build_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the body starts)",
            latency.clone(),
        );
        registry.register(
            "publishes",
            "Publish attempts by outcome",
            publishes.clone(),
        );
        registry.register(
            "pack_builds",
            "Packs built, fast and final stages",
            pack_builds.clone(),
        );
        let final_pack_builds = Counter::default();
        registry.register(
            "pack_final_builds",
            "Final packs built (one server builds each)",
            final_pack_builds.clone(),
        );
        registry.register(
            "pack_build_duration_seconds",
            "Time to build one pack",
            pack_build_seconds.clone(),
        );
        let (gc_runs, gc_releases, gc_blobs, gc_bytes): (Counter, Counter, Counter, Counter) =
            Default::default();
        registry.register(
            "gc_runs",
            "Garbage collections run",
            Counter::clone(&gc_runs),
        );
        registry.register(
            "gc_releases",
            "Releases removed by garbage collection",
            Counter::clone(&gc_releases),
        );
        registry.register(
            "gc_blobs",
            "Stored blobs (files and packs) removed by garbage collection",
            Counter::clone(&gc_blobs),
        );
        registry.register(
            "gc_bytes",
            "Bytes freed by garbage collection",
            Counter::clone(&gc_bytes),
        );
        let ramp_verdicts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "ramp_verdicts",
            "Health-gated rollout evaluations by verdict",
            ramp_verdicts.clone(),
        );
        Metrics {
            registry,
            ramp_verdicts,
            gc_runs,
            gc_releases,
            gc_blobs,
            gc_bytes,
            requests,
            latency,
            publishes,
            pack_builds,
            final_pack_builds,
            pack_build_seconds,
        }
    }
}

impl Metrics {
    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a publish outcome.
    pub fn publish(&self, outcome: &str) {
        self.publishes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
