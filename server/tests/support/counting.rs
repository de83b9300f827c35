//! A metadata store that counts what the server reads through it: calls and rows returned, per
//! method. Rows are what grows with the size of an app, so they measure whether an operation's
//! work does.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use manifests::{AppId, Channel, Digest, PackageEntry, PackageId, ReleaseVersion, Timestamp};
use server::Result;
use server::meta_store::{
    AuditEntry, ChannelCommit, ChannelHead, ChannelPackage, ChannelRow, ChannelState, DeviceReport,
    HistoryEntry, IngestKeyRecord, Inserted, MetaStore, PackRecord, ReleaseRecord, ReleaseStats,
    RetentionFacts, StoredIndex, TokenRecord,
};

#[derive(Debug)]
struct Reads {
    /// Per method: calls and rows returned.
    by_method: BTreeMap<&'static str, (u64, u64)>,
    last_call: Instant,
}

/// Counts reads of the wrapped store.
pub struct Counting {
    inner: Arc<dyn MetaStore>,
    reads: Mutex<Reads>,
    /// When set, the figures (`stats`, `daily_figures`) fail as a store that cannot answer them.
    pub figures_fail: std::sync::atomic::AtomicBool,
    /// How long `channel_head` takes, in milliseconds: a store in trouble.
    pub channel_head_delay_ms: std::sync::atomic::AtomicU64,
    after_write: Mutex<Option<AfterWrite>>,
}

type AfterWrite = Arc<dyn Fn(Result<HashSet<Digest>>) + Send + Sync>;

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting")
            .field("inner", &self.inner)
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

impl Counting {
    pub fn new(inner: Arc<dyn MetaStore>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            reads: Mutex::new(Reads {
                by_method: BTreeMap::new(),
                last_call: Instant::now(),
            }),
            figures_fail: std::sync::atomic::AtomicBool::new(false),
            channel_head_delay_ms: std::sync::atomic::AtomicU64::new(0),
            after_write: Mutex::new(None),
        })
    }

    /// The reads since the last `take`, per method: `(calls, rows)`.
    pub fn take(&self) -> BTreeMap<&'static str, (u64, u64)> {
        std::mem::take(&mut self.reads.lock().unwrap().by_method)
    }

    /// Waits until no call came for `quiet` (the background work after a publish is done).
    pub fn wait_idle(&self, quiet: Duration) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.reads.lock().unwrap().last_call.elapsed() < quiet {
            assert!(Instant::now() < deadline, "the store never went quiet");
            std::thread::yield_now();
        }
    }

    fn count<T>(&self, method: &'static str, rows: usize, value: T) -> T {
        let mut reads = self.reads.lock().unwrap();
        let entry = reads.by_method.entry(method).or_default();
        entry.0 += 1;
        entry.1 += rows as u64;
        reads.last_call = Instant::now();
        value
    }

    fn figures(&self) -> Result<()> {
        if self.figures_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(server::Error::Internal(
                "the figures are unreachable".into(),
            ));
        }
        Ok(())
    }

    async fn write<T>(&self, value: T) -> T {
        self.reads.lock().unwrap().last_call = Instant::now();
        let hook = self.after_write.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook(self.inner.live_digests(&BTreeSet::new()).await);
        }
        value
    }

    /// Calls `hook` after every write with what the store then refers to (its live digests).
    pub fn after_write(&self, hook: impl Fn(Result<HashSet<Digest>>) + Send + Sync + 'static) {
        *self.after_write.lock().unwrap() = Some(Arc::new(hook));
    }
}

#[async_trait]
impl MetaStore for Counting {
    async fn package_app(&self, package: &PackageId) -> Result<Option<AppId>> {
        let r = self.inner.package_app(package).await?;
        Ok(self.count("package_app", usize::from(r.is_some()), r))
    }

    async fn app_packages(&self, app: &AppId) -> Result<Vec<PackageId>> {
        let r = self.inner.app_packages(app).await?;
        Ok(self.count("app_packages", r.len(), r))
    }

    async fn insert_release(
        &self,
        app: &AppId,
        release: &ReleaseRecord,
        audit: &AuditEntry,
    ) -> Result<Inserted> {
        let r = self.inner.insert_release(app, release, audit).await;
        self.write(r).await
    }

    async fn release(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
    ) -> Result<Option<ReleaseRecord>> {
        let r = self.inner.release(package, version).await?;
        Ok(self.count("release", usize::from(r.is_some()), r))
    }

    async fn release_by_manifest(&self, digest: &Digest) -> Result<Option<ReleaseRecord>> {
        let r = self.inner.release_by_manifest(digest).await?;
        Ok(self.count("release_by_manifest", usize::from(r.is_some()), r))
    }

    async fn releases(&self, package: &PackageId) -> Result<Vec<ReleaseRecord>> {
        let r = self.inner.releases(package).await?;
        Ok(self.count("releases", r.len(), r))
    }

    async fn channel_state(&self, app: &AppId, channel: &Channel) -> Result<ChannelState> {
        let r = self.inner.channel_state(app, channel).await?;
        Ok(self.count("channel_state", 1 + r.packages.len(), r))
    }

    async fn channel_package(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
    ) -> Result<(u64, ChannelPackage)> {
        let r = self.inner.channel_package(app, channel, package).await?;
        Ok(self.count("channel_package", 2, r))
    }

    async fn channel_head(&self, app: &AppId, channel: &Channel) -> Result<Option<ChannelHead>> {
        let delay = self
            .channel_head_delay_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let r = self.inner.channel_head(app, channel).await?;
        Ok(self.count("channel_head", usize::from(r.is_some()), r))
    }

    async fn channel_rows(
        &self,
        app: &AppId,
        channel: &Channel,
    ) -> Result<Option<(ChannelHead, Vec<ChannelRow>)>> {
        let r = self.inner.channel_rows(app, channel).await?;
        let rows = r.as_ref().map_or(0, |(_, rows)| 1 + rows.len());
        Ok(self.count("channel_rows", rows, r))
    }

    async fn fill_entries(
        &self,
        app: &AppId,
        channel: &Channel,
        entries: &[(PackageId, PackageEntry)],
    ) -> Result<()> {
        let r = self.inner.fill_entries(app, channel, entries).await;
        self.write(r).await
    }

    async fn channels(&self) -> Result<Vec<(AppId, Channel)>> {
        let r = self.inner.channels().await?;
        Ok(self.count("channels", r.len(), r))
    }

    async fn commit_channel(&self, commit: &ChannelCommit) -> Result<bool> {
        let r = self.inner.commit_channel(commit).await;
        self.write(r).await
    }

    async fn index(&self, app: &AppId, channel: &Channel) -> Result<Option<StoredIndex>> {
        let r = self.inner.index(app, channel).await?;
        Ok(self.count("index", usize::from(r.is_some()), r))
    }

    async fn store_index(&self, app: &AppId, channel: &Channel, index: &StoredIndex) -> Result<()> {
        let r = self.inner.store_index(app, channel, index).await;
        self.write(r).await
    }

    async fn history(
        &self,
        app: &AppId,
        channel: &Channel,
        package: Option<&PackageId>,
    ) -> Result<Vec<HistoryEntry>> {
        let r = self.inner.history(app, channel, package).await?;
        Ok(self.count("history", r.len(), r))
    }

    async fn pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
    ) -> Result<Option<PackRecord>> {
        let r = self.inner.pack(package, from, to).await?;
        Ok(self.count("pack", usize::from(r.is_some()), r))
    }

    async fn insert_pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
        pack: &PackRecord,
    ) -> Result<()> {
        let r = self.inner.insert_pack(package, from, to, pack).await;
        self.write(r).await
    }

    async fn add_stats(
        &self,
        app: &AppId,
        channel: &Channel,
        deltas: &[ReleaseStats],
    ) -> Result<()> {
        let r = self.inner.add_stats(app, channel, deltas).await;
        self.write(r).await
    }

    async fn add_device_reports(
        &self,
        app: &AppId,
        channel: &Channel,
        device: &Digest,
        day: u64,
        reports: &[DeviceReport],
    ) -> Result<()> {
        let r = self
            .inner
            .add_device_reports(app, channel, device, day, reports)
            .await;
        self.write(r).await
    }

    async fn insert_ingest_key(&self, key: &IngestKeyRecord, audit: &AuditEntry) -> Result<()> {
        let r = self.inner.insert_ingest_key(key, audit).await;
        self.write(r).await
    }

    async fn release_facts(
        &self,
        package: &PackageId,
    ) -> Result<Vec<server::meta_store::ReleaseFact>> {
        let r = self.inner.release_facts(package).await?;
        Ok(self.count("release_facts", r.len(), r))
    }

    async fn insert_session(&self, session: &server::meta_store::SessionRecord) -> Result<()> {
        self.inner.insert_session(session).await
    }

    async fn session(&self, id: &Digest) -> Result<Option<server::meta_store::SessionRecord>> {
        let r = self.inner.session(id).await?;
        Ok(self.count("session", usize::from(r.is_some()), r))
    }

    async fn delete_session(&self, id: &Digest) -> Result<()> {
        self.inner.delete_session(id).await
    }

    async fn daily_figures(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
    ) -> Result<Vec<server::meta_store::DayFigure>> {
        self.figures()?;
        self.inner.daily_figures(app, channel, package).await
    }

    async fn ingest_key(&self, hash: &Digest) -> Result<Option<IngestKeyRecord>> {
        let r = self.inner.ingest_key(hash).await?;
        Ok(self.count("ingest_key", usize::from(r.is_some()), r))
    }

    async fn ingest_keys(&self, app: &AppId) -> Result<Vec<IngestKeyRecord>> {
        let r = self.inner.ingest_keys(app).await?;
        Ok(self.count("ingest_keys", r.len(), r))
    }

    async fn revoke_ingest_key(
        &self,
        app: &AppId,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<IngestKeyRecord> {
        let r = self.inner.revoke_ingest_key(app, name, at, audit).await;
        self.write(r).await
    }

    async fn stats(&self, app: &AppId, channel: &Channel) -> Result<Vec<ReleaseStats>> {
        self.figures()?;
        let r = self.inner.stats(app, channel).await?;
        Ok(self.count("stats", r.len(), r))
    }

    async fn put_ramp(
        &self,
        ramp: &server::ramp::RampRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let r = self.inner.put_ramp(ramp, audit).await;
        self.write(r).await
    }

    async fn ramps(&self) -> Result<Vec<server::ramp::RampRecord>> {
        let r = self.inner.ramps().await?;
        Ok(self.count("ramps", r.len(), r))
    }

    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEntry) -> Result<()> {
        let r = self.inner.insert_token(token, audit).await;
        self.write(r).await
    }

    async fn token(&self, hash: &Digest) -> Result<Option<TokenRecord>> {
        let r = self.inner.token(hash).await?;
        Ok(self.count("token", usize::from(r.is_some()), r))
    }

    async fn app_origins(&self, app: &AppId) -> Result<Option<Vec<String>>> {
        let r = self.inner.app_origins(app).await?;
        Ok(self.count("app_origins", usize::from(r.is_some()), r))
    }

    async fn set_app_origins(
        &self,
        app: &AppId,
        origins: &[String],
        audit: &AuditEntry,
    ) -> Result<()> {
        let r = self.inner.set_app_origins(app, origins, audit).await;
        self.write(r).await
    }

    async fn key_lists(&self, app: &AppId) -> Result<Vec<Vec<u8>>> {
        let r = self.inner.key_lists(app).await?;
        Ok(self.count("key_lists", r.len(), r))
    }

    async fn insert_key_list(
        &self,
        app: &AppId,
        version: u64,
        envelope: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool> {
        let r = self
            .inner
            .insert_key_list(app, version, envelope, audit)
            .await;
        self.write(r).await
    }

    async fn set_manifest(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
        manifest: &[u8],
        audit: &AuditEntry,
    ) -> Result<()> {
        let r = self
            .inner
            .set_manifest(package, version, manifest, audit)
            .await;
        self.write(r).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let r = self.inner.tokens().await?;
        Ok(self.count("tokens", r.len(), r))
    }

    async fn revoke_token(
        &self,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<TokenRecord> {
        let r = self.inner.revoke_token(name, at, audit).await;
        self.write(r).await
    }

    async fn token_used(&self, hash: &Digest, at: Timestamp, audit: &AuditEntry) -> Result<()> {
        let r = self.inner.token_used(hash, at, audit).await;
        self.write(r).await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let r = self.inner.audit_log(limit).await?;
        Ok(self.count("audit_log", r.len(), r))
    }

    async fn retention_facts(&self) -> Result<RetentionFacts> {
        let r = self.inner.retention_facts().await?;
        Ok(self.count("retention_facts", r.releases.len(), r))
    }

    async fn delete_releases(
        &self,
        releases: &BTreeSet<(PackageId, ReleaseVersion)>,
        history_mark: u64,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let r = self
            .inner
            .delete_releases(releases, history_mark, audit)
            .await;
        self.write(r).await
    }

    async fn live_digests(
        &self,
        excluding: &BTreeSet<(PackageId, ReleaseVersion)>,
    ) -> Result<HashSet<Digest>> {
        let r = self.inner.live_digests(excluding).await?;
        Ok(self.count("live_digests", r.len(), r))
    }

    async fn last_collection(&self) -> Result<Option<Timestamp>> {
        let r = self.inner.last_collection().await?;
        Ok(self.count("last_collection", usize::from(r.is_some()), r))
    }

    async fn set_last_collection(&self, at: Timestamp) -> Result<()> {
        let r = self.inner.set_last_collection(at).await;
        self.write(r).await
    }
}
