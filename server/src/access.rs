//! Who may read what without a token: devices read what was released to them, nothing else.
//!
//! A release that was never on a channel (a dev build, a candidate not yet rolled out) is not
//! readable without a token, as a manifest, a manifest delta or a pack; and an anonymous client
//! can only have built the packs a device can ask for: from a release that has been on one of the
//! app's channels to a release on that same channel. Without a token, then, the packs that can
//! be built are bounded by the channels' histories rather than by every pair of releases.
//! (Blobs are read by digest, which only a manifest reveals.)

use std::collections::BTreeSet;

use axum::http::{HeaderMap, header};
use manifests::{Channel, Digest, PackageId, ReleaseVersion};

use crate::error::{Error, Result};
use crate::service::Service;

impl Service {
    /// The releases of `package` each of its app's channels has held, by channel (from the
    /// channels' histories: every release promoted, rolled out or rolled back to).
    async fn released(
        &self,
        package: &PackageId,
    ) -> Result<Vec<(Channel, BTreeSet<ReleaseVersion>)>> {
        let Some(app) = self.meta.package_app(package).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (_, channel) in self
            .meta
            .channels()
            .await?
            .into_iter()
            .filter(|(a, _)| *a == app)
        {
            let history = self.meta.history(&app, &channel, Some(package)).await?;
            let versions: BTreeSet<ReleaseVersion> = history
                .into_iter()
                .flat_map(|h| [h.from_version, h.to_version])
                .flatten()
                .collect();
            if !versions.is_empty() {
                out.push((channel, versions));
            }
        }
        Ok(out)
    }

    /// Checks that the caller may read the pack of `package` from `from` (none: the full pack)
    /// to `to`: with any valid token, always; without one, only if some channel of the app has
    /// held both releases.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] / [`Error::TokenRefused`] for a bad token;
    /// [`Error::NeedsToken`] for a pair no device can ask for.
    pub async fn check_pack_access(
        &self,
        headers: &HeaderMap,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
    ) -> Result<()> {
        if self.token_given(headers, "read a pack").await? {
            return Ok(());
        }
        let released = self.released(package).await?;
        let allowed = released
            .iter()
            .any(|(_, on)| on.contains(to) && from.is_none_or(|f| on.contains(f)));
        if allowed {
            return Ok(());
        }
        let pack = match from {
            Some(from) => format!("{package}@{from}..{to}"),
            None => format!("{package}@{to}"),
        };
        Err(Error::NeedsToken(format!(
            "pack {pack} is not one a device can ask for (both releases on one channel)"
        )))
    }

    /// Checks that the caller may read the manifests with these digests: with any valid token,
    /// always; without one, only manifests of releases some channel has held. An unknown digest
    /// passes (the route answers 404 for it).
    ///
    /// # Errors
    /// As [`Service::check_pack_access`].
    pub async fn check_manifest_access(
        &self,
        headers: &HeaderMap,
        digests: &[&Digest],
    ) -> Result<()> {
        if self.token_given(headers, "read a manifest").await? {
            return Ok(());
        }
        for digest in digests {
            let Some(record) = self.meta.release_by_manifest(digest).await? else {
                continue;
            };
            let released = self.released(&record.package).await?;
            if !released.iter().any(|(_, on)| on.contains(&record.version)) {
                return Err(Error::NeedsToken(format!(
                    "release {}@{} has been on no channel",
                    record.package, record.version
                )));
            }
        }
        Ok(())
    }

    /// Whether the request carries a token, which must then be valid.
    async fn token_given(&self, headers: &HeaderMap, action: &str) -> Result<bool> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(false);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        self.authenticate(token, action).await?;
        Ok(true)
    }
}
