//! Publishing: an uploaded zip becomes an immutable, signed release.
//!
//! Order matters for crash safety: the archive is checked and staged completely, then every blob
//! is moved into the blob store, then the signed manifest and the release row are committed in one
//! transaction, and only then may a channel name the release. A `kill -9` at any point leaves
//! either no release or a complete one; at worst some unreferenced blobs remain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use manifests::{
    AppId, Channel, Digest, FileEntry, HostRequirement, MAX_NOTES_LEN, MAX_REVISION_LEN,
    MAX_ROUTES, PackageId, Prefetch, RelPath, Release, ReleaseVersion, Route, UrlPrefix,
    to_canonical,
};
use serde::{Deserialize, Serialize};

use crate::blob_store::fs::blocking;
use crate::channel::Action;
use crate::error::{Error, Result};
use crate::ingest::{self, mime_for};
use crate::meta_store::{AuditEntry, Inserted, ReleaseRecord};
use crate::service::{Service, now};

/// What a publisher says about a release besides its files.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PublishRequest {
    /// The release's version.
    pub version: String,
    /// Supported host-app versions (default: the previous release's, else any).
    #[serde(default)]
    pub requires: Option<String>,
    /// URL prefixes the package answers for (default: the previous release's; required on the
    /// first publish).
    #[serde(default)]
    pub routes: Vec<String>,
    /// The entry page (default: the previous release's, else `index.html`).
    #[serde(default)]
    pub entry: Option<String>,
    /// Serve the entry page for unknown paths under the routes (single-page apps).
    #[serde(default)]
    pub spa: Option<bool>,
    /// Release notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Source revision the build came from.
    #[serde(default)]
    pub source_revision: Option<String>,
    /// Promote the release to this channel right away.
    #[serde(default)]
    pub channel: Option<String>,
    /// Start from this release's files: the upload then holds only added and changed files
    /// (what `baleen watch` sends).
    #[serde(default)]
    pub base: Option<String>,
    /// With `base`: paths of the base release that the new one no longer has.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Fetch priority for devices, higher first (default: the previous release's, else 0).
    #[serde(default)]
    pub priority: Option<u8>,
    /// When devices may fetch the release before it is opened: a [`Prefetch`] name (default:
    /// the previous release's, else `always`).
    #[serde(default)]
    pub prefetch: Option<String>,
}

impl PublishRequest {
    /// Checks every field that can be checked without the files, by the rules the release will
    /// be held to, so that the command line refuses bad arguments before it zips and uploads a
    /// build, and the server before it stages an upload.
    ///
    /// # Errors
    /// The first field that breaks a rule: a contract error naming the value, or
    /// [`Error::BadRequest`].
    pub fn check(&self) -> Result<()> {
        ReleaseVersion::parse(&self.version)?;
        if let Some(channel) = &self.channel {
            Channel::parse(channel)?;
        }
        if let Some(prefetch) = &self.prefetch {
            Prefetch::parse(prefetch)?;
        }
        if let Some(requires) = &self.requires {
            HostRequirement::parse(requires)?;
        }
        for route in &self.routes {
            UrlPrefix::parse(route)?;
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(manifests::Error::InvalidField {
                field: "routes".into(),
                reason: "more than 64 routes".into(),
            }
            .into());
        }
        if let Some(entry) = &self.entry {
            RelPath::parse(entry)?;
        }
        if let Some(base) = &self.base {
            ReleaseVersion::parse(base)?;
        }
        if self.base.is_none() && !self.removed.is_empty() {
            return Err(Error::BadRequest(
                "removed paths need a base release".into(),
            ));
        }
        for path in &self.removed {
            RelPath::parse(path)?;
        }
        if self.notes.as_ref().is_some_and(|n| n.len() > MAX_NOTES_LEN) {
            return Err(manifests::Error::InvalidField {
                field: "notes".into(),
                reason: "longer than 64 KiB".into(),
            }
            .into());
        }
        if let Some(rev) = &self.source_revision
            && (rev.is_empty() || rev.len() > MAX_REVISION_LEN || rev.chars().any(char::is_control))
        {
            return Err(manifests::Error::InvalidField {
                field: "source_revision".into(),
                reason: "must be 1 to 256 bytes without control characters".into(),
            }
            .into());
        }
        Ok(())
    }
}

/// The result of a publish.
#[derive(Clone, Debug)]
pub struct Published {
    /// The release.
    pub release: ReleaseRecord,
    /// False when the same version with the same content existed (a no-op).
    pub created: bool,
    /// The channel sequence, if the release was promoted.
    pub sequence: Option<u64>,
}

/// Removes a staging directory when dropped, whatever happened.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove staging dir");
        }
    }
}

/// Most origins an app declares.
pub const MAX_ORIGINS: usize = 64;

impl Service {
    /// Declares the origins `app`'s packages may claim routes in; returns them sorted, without
    /// repeats.
    ///
    /// # Errors
    /// [`Error::BadRequest`] or a contract error for a malformed list or origin;
    /// [`Error::Conflict`] when a release of the app has a route outside them.
    pub async fn set_app_origins(
        &self,
        app: &AppId,
        origins: &[String],
        actor: &str,
    ) -> Result<Vec<String>> {
        if origins.is_empty() || origins.len() > MAX_ORIGINS {
            return Err(Error::BadRequest(format!(
                "an app declares 1 to {MAX_ORIGINS} origins, not {}",
                origins.len()
            )));
        }
        for origin in origins {
            manifests::check_origin(origin)?;
        }
        let set: std::collections::BTreeSet<&String> = origins.iter().collect();
        let origins: Vec<String> = set.into_iter().cloned().collect();
        let audit = AuditEntry {
            at: crate::service::now(),
            actor: actor.to_owned(),
            action: "app.origins".into(),
            target: app.to_string(),
            detail: serde_json::json!({ "origins": origins }).to_string(),
        };
        self.meta.set_app_origins(app, &origins, &audit).await?;
        Ok(origins)
    }

    /// Publishes the zip at `zip` as `package` `request.version` of `app`.
    pub async fn publish(
        &self,
        app: &AppId,
        package: &PackageId,
        request: &PublishRequest,
        zip: &Path,
        actor: &str,
    ) -> Result<Published> {
        request.check()?;
        let version = ReleaseVersion::parse(&request.version)?;
        let channel = request.channel.as_deref().map(Channel::parse).transpose()?;
        let prefetch = request
            .prefetch
            .as_deref()
            .map(Prefetch::parse)
            .transpose()?;
        let _guard = self.publish_lock(package.as_str()).await;
        let _alone = self.meta.lock(&format!("publish:{package}"), false).await?;

        if let Some(owner) = self.meta.package_app(package).await?
            && &owner != app
        {
            return Err(Error::Conflict(format!(
                "package {package} belongs to app {owner}, not {app}"
            )));
        }
        let previous = self.meta.releases(package).await?.into_iter().next();

        let staging = Staging(unique_dir(&self.settings.staging_dir)?);
        let (zip_path, staging_path, limits) = (
            zip.to_path_buf(),
            staging.0.clone(),
            self.settings.limits.clone(),
        );
        if request.base.is_none() && !request.removed.is_empty() {
            return Err(Error::BadRequest(
                "removed paths need a base release".into(),
            ));
        }
        // With a base release, an empty upload means "only removals".
        let empty = tokio::fs::metadata(zip)
            .await
            .map(|m| m.len() == 0)
            .unwrap_or(false);
        let ingested = if empty && request.base.is_some() {
            ingest::Ingested::default()
        } else {
            blocking(move || Ok(ingest::ingest_zip(&zip_path, &limits, &staging_path)?)).await?
        };

        // From here until the release is on its channel, the publish relies on stored blobs
        // (the base release's, and those its upload shares with stored ones): no collection
        // removes a blob meanwhile, nor the release before it reaches its channel (`gc`).
        let _blobs_in_use = self.blobs_in_use().await?;
        let mut files: BTreeMap<RelPath, FileEntry> = match &request.base {
            Some(base) => self.base_files(package, base, &request.removed).await?,
            None if !request.removed.is_empty() => {
                return Err(Error::BadRequest(
                    "removed paths need a base release".into(),
                ));
            }
            None => BTreeMap::new(),
        };
        files.extend(ingested.files.iter().map(|(path, staged)| {
            (
                path.clone(),
                FileEntry {
                    sha256: staged.sha256,
                    size: staged.size,
                    mime: mime_for(path),
                },
            )
        }));
        let previous_manifest = previous.as_ref().map(crate::pack::release_of).transpose()?;
        let release = build_release(package, version, files, request, previous_manifest.as_ref())?;
        let content_key = content_key(&release)?;

        if let Some(existing) = self.meta.release(package, &release.version).await? {
            return self.republish(existing, content_key, channel, actor).await;
        }

        let staged: Vec<(PathBuf, Digest)> = unique_blobs(&ingested)
            .into_iter()
            .map(|(d, p)| (p, d))
            .collect();
        self.blobs.put_files(staged).await?;
        let signers = self.release_signers(app).await?;
        let signed = release.sign(&signers.iter().collect::<Vec<_>>())?;
        let record = ReleaseRecord {
            package: package.clone(),
            version: release.version.clone(),
            manifest_digest: signed.digest,
            manifest: signed.bytes,
            content_key,
            requires: release.requires.clone(),
            size_bytes: release.size_bytes(),
            file_count: release.files.len() as u64,
            created_at: release.created_at,
            publisher: actor.to_owned(),
            notes: release.notes.clone(),
            priority: request
                .priority
                .or(previous.as_ref().map(|p| p.priority))
                .unwrap_or(0),
            prefetch: prefetch
                .or(previous.as_ref().map(|p| p.prefetch))
                .unwrap_or_default(),
            routes: release.routes.iter().map(|r| r.prefix.clone()).collect(),
        };
        let audit = AuditEntry {
            at: record.created_at,
            actor: actor.to_owned(),
            action: "publish".into(),
            target: format!("{package}@{}", record.version),
            detail: serde_json::json!({
                "app": app.as_str(),
                "manifest": record.manifest_digest.to_string(),
                "files": record.file_count,
                "size_bytes": record.size_bytes,
            })
            .to_string(),
        };
        match self.meta.insert_release(app, &record, &audit).await? {
            Inserted::New => {}
            // Another replica published the same version between our check and insert.
            Inserted::Existing(existing) => {
                return self.republish(*existing, content_key, channel, actor).await;
            }
        }
        tracing::info!(%package, version = %record.version, files = record.file_count, "published");
        let sequence = match channel {
            Some(channel) => Some(
                self.promote_new(package, &channel, &record.version, actor)
                    .await?,
            ),
            None => None,
        };
        Ok(Published {
            release: record,
            created: true,
            sequence,
        })
    }

    /// The files of `base` without `removed`, for a publish that uploads only what changed.
    async fn base_files(
        &self,
        package: &PackageId,
        base: &str,
        removed: &[String],
    ) -> Result<BTreeMap<RelPath, FileEntry>> {
        let version = ReleaseVersion::parse(base)?;
        let record = self
            .meta
            .release(package, &version)
            .await?
            .ok_or_else(|| Error::NotFound(format!("base release {package}@{version}")))?;
        let mut files = crate::pack::release_of(&record)?.files;
        for path in removed {
            let path = RelPath::parse(path)?;
            if files.remove(&path).is_none() {
                return Err(Error::BadRequest(format!(
                    "removed path {:?} is not in base release {version}",
                    path.as_str()
                )));
            }
        }
        Ok(files)
    }

    async fn republish(
        &self,
        existing: ReleaseRecord,
        content_key: Digest,
        channel: Option<Channel>,
        actor: &str,
    ) -> Result<Published> {
        if existing.content_key != content_key {
            return Err(Error::Conflict(format!(
                "{}@{} is already published with other content; releases are immutable, publish a new version",
                existing.package, existing.version
            )));
        }
        let sequence = match channel {
            Some(channel) => {
                let app = self.meta.package_app(&existing.package).await?;
                let state = match app {
                    Some(app) => {
                        self.meta
                            .channel_package(&app, &channel, &existing.package)
                            .await?
                            .1
                    }
                    None => Default::default(),
                };
                let already = state.stable.as_ref() == Some(&existing.version);
                if already {
                    None
                } else {
                    Some(
                        self.promote_new(&existing.package, &channel, &existing.version, actor)
                            .await?,
                    )
                }
            }
            None => None,
        };
        Ok(Published {
            release: existing,
            created: false,
            sequence,
        })
    }

    async fn promote_new(
        &self,
        package: &PackageId,
        channel: &Channel,
        version: &ReleaseVersion,
        actor: &str,
    ) -> Result<u64> {
        let action = Action::Promote {
            version: version.clone(),
        };
        Ok(self
            .change_channel(package, channel, &action, actor, "published")
            .await?
            .sequence)
    }
}

fn build_release(
    package: &PackageId,
    version: ReleaseVersion,
    files: BTreeMap<RelPath, FileEntry>,
    request: &PublishRequest,
    previous: Option<&Release>,
) -> Result<Release> {
    let entry = match (&request.entry, previous) {
        (Some(entry), _) => RelPath::parse(entry)?,
        (None, Some(p)) if files.contains_key(&p.entry) => p.entry.clone(),
        (None, _) => RelPath::parse("index.html")?,
    };
    if !files.contains_key(&entry) {
        return Err(Error::BadRequest(format!(
            "entry page \"{entry}\" is not in the upload (choose one with --entry)"
        )));
    }
    let spa = request
        .spa
        .unwrap_or_else(|| previous.is_some_and(|p| p.routes.iter().any(|r| r.fallback.is_some())));
    let fallback = spa.then(|| entry.clone());
    let routes: Vec<Route> = if request.routes.is_empty() {
        match previous {
            Some(p) => p
                .routes
                .iter()
                .map(|r| Route {
                    prefix: r.prefix.clone(),
                    fallback: fallback.clone(),
                })
                .collect(),
            None => {
                return Err(Error::BadRequest(
                    "the first release of a package needs at least one route (--route https://host/path/)".into(),
                ));
            }
        }
    } else {
        request
            .routes
            .iter()
            .map(|r| {
                Ok(Route {
                    prefix: UrlPrefix::parse(r)?,
                    fallback: fallback.clone(),
                })
            })
            .collect::<Result<_>>()?
    };
    let requires = match (&request.requires, previous) {
        (Some(r), _) => HostRequirement::parse(r)?,
        (None, Some(p)) => p.requires.clone(),
        (None, None) => HostRequirement::any(),
    };
    let release = Release {
        package: package.clone(),
        version,
        files,
        entry,
        routes,
        requires,
        created_at: now(),
        notes: request.notes.clone().unwrap_or_default(),
        source_revision: request.source_revision.clone(),
    };
    release.validate()?;
    Ok(release)
}

/// What makes two publishes of one version the same release: files, entry, routes and
/// requirement (not the time, notes or publisher).
fn content_key(release: &Release) -> Result<Digest> {
    let key = serde_json::json!({
        "files": release.files,
        "entry": release.entry,
        "routes": release.routes,
        "requires": release.requires,
    });
    Ok(Digest::of(&to_canonical(&key)?))
}

fn unique_blobs(ingested: &ingest::Ingested) -> Vec<(Digest, PathBuf)> {
    let mut seen = BTreeMap::new();
    for staged in ingested.files.values() {
        seen.entry(staged.sha256)
            .or_insert_with(|| staged.staged.clone());
    }
    seen.into_iter().collect()
}

/// A fresh, uniquely named directory under `parent`.
pub(crate) fn unique_dir(parent: &Path) -> Result<PathBuf> {
    for _ in 0..16 {
        let mut name = [0u8; 12];
        getrandom::fill(&mut name).map_err(|e| Error::Internal(format!("random source: {e}")))?;
        let dir = parent.join(format!("up-{}", Digest::of(&name).short()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }
    Err(Error::Internal(
        "could not create a staging directory".into(),
    ))
}
