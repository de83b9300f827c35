//! Device reports in, adoption and page-open figures out.

use std::collections::BTreeMap;

use manifests::{AppId, Channel, EventBatch, EventKind, PackageId, ReleaseVersion};
use serde::Serialize;

use crate::error::Result;
use crate::meta_store::ReleaseStats;
use crate::service::Service;

/// What the server did with a batch.
#[derive(Clone, Debug, Serialize)]
pub struct Accepted {
    /// Events counted.
    pub accepted: usize,
    /// Events naming a package or release the server does not know (not counted).
    pub ignored: usize,
}

/// One release's figures as shown to release engineers.
#[derive(Clone, Debug, Serialize)]
pub struct ReleaseReport {
    /// The raw counters.
    #[serde(flatten)]
    pub counts: ReleaseStats,
    /// Opens answered from the device, as a share of opens (none before the first open).
    pub offline_hit_rate: Option<f64>,
    /// Opens shown within one second, as a share of opens: the 秒开率.
    pub under_1s_rate: Option<f64>,
    /// Failures per activation.
    pub failure_rate: Option<f64>,
}

impl From<ReleaseStats> for ReleaseReport {
    fn from(counts: ReleaseStats) -> ReleaseReport {
        let share = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        ReleaseReport {
            offline_hit_rate: share(counts.offline_hits, counts.opens),
            under_1s_rate: share(counts.under_1s, counts.opens),
            failure_rate: share(counts.failed, counts.activated),
            counts,
        }
    }
}

impl Service {
    /// Adds a device's batch to the counters of the releases it names; events about unknown
    /// packages or releases of other apps are ignored, not refused, so one stale entry does not
    /// lose the rest.
    pub async fn record_events(&self, batch: &EventBatch) -> Result<Accepted> {
        let mut deltas: BTreeMap<(PackageId, ReleaseVersion), ReleaseStats> = BTreeMap::new();
        let mut known: BTreeMap<(PackageId, ReleaseVersion), bool> = BTreeMap::new();
        let mut ignored = 0;
        for event in &batch.events {
            let key = (event.package.clone(), event.version.clone());
            let exists = match known.get(&key) {
                Some(exists) => *exists,
                None => {
                    let app = self.meta.package_app(&event.package).await?;
                    let exists = app.as_ref() == Some(&batch.app)
                        && self
                            .meta
                            .release(&event.package, &event.version)
                            .await?
                            .is_some();
                    known.insert(key.clone(), exists);
                    exists
                }
            };
            if !exists {
                ignored += 1;
                continue;
            }
            let d = deltas.entry(key.clone()).or_insert_with(|| ReleaseStats {
                package: Some(key.0.clone()),
                version: Some(key.1.clone()),
                ..ReleaseStats::default()
            });
            match event.kind {
                EventKind::Installed => d.installed += event.count,
                EventKind::Activated => d.activated += event.count,
                EventKind::Ready => d.ready += event.count,
                EventKind::Failed => d.failed += event.count,
                EventKind::RolledBack => d.rolled_back += event.count,
                EventKind::Opens => {
                    d.opens += event.count;
                    d.offline_hits += event.offline_hits;
                    d.under_1s += event.under_1s;
                }
                _ => {}
            }
        }
        let deltas: Vec<ReleaseStats> = deltas.into_values().collect();
        self.meta
            .add_stats(&batch.app, &batch.channel, &deltas)
            .await?;
        Ok(Accepted {
            accepted: batch.events.len() - ignored,
            ignored,
        })
    }

    /// Per-release figures of a channel.
    pub async fn stats(&self, app: &AppId, channel: &Channel) -> Result<Vec<ReleaseReport>> {
        Ok(self
            .meta
            .stats(app, channel)
            .await?
            .into_iter()
            .map(ReleaseReport::from)
            .collect())
    }
}
