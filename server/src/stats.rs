//! Device reports in, per-release counters out ([`crate::api::ReleaseReport`] adds the shares).

use std::collections::BTreeMap;

use manifests::{EventBatch, EventKind, PackageId, ReleaseVersion};

use crate::api::Accepted;
use crate::error::Result;
use crate::meta_store::ReleaseStats;
use crate::service::Service;

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
}
