//! Presets: releases shipped inside the app, installed without a network.

use manifests::ReleaseVersion;

use super::{Client, lock};
use crate::device::{Installed, Source};
use crate::error::Result;
use crate::install;

impl Client {
    /// Installs a release shipped inside the app binary (a *preset*), so that the very first
    /// launch opens pages instantly without a network. `manifest` is the release's signed manifest
    /// (`GET /v1/manifests/{digest}`) and `full_pack` its full pack (`GET
    /// /v1/packs/{package}/{version}.bpk`, or the `.zip` of older builds), both fetched when the
    /// app is built. Both are verified
    /// like any download. The preset becomes active only if the package has no active release, or
    /// an older one; it is not pending, since it shipped with the app. Blocks (disk).
    ///
    /// Returns the version activated, or `None` when the device already runs it or something
    /// newer, or marked it bad.
    ///
    /// # Errors
    /// A bad signature, a pack that does not match the manifest, storage errors; on any of them
    /// nothing changes.
    pub fn seed(&self, manifest: &[u8], full_pack: &[u8]) -> Result<Option<ReleaseVersion>> {
        let (digest, served) = self.releases.verify_any(manifest)?;
        let (package, version) = (served.package().clone(), served.version().clone());
        let preset_wanted = |c: &Client| lock(&c.core).wants_preset(&package, &version, &digest);
        if !preset_wanted(self) {
            return Ok(None);
        }
        let blobs = served.blobs();
        let (_claim, missing) = self.claim(&blobs, digest);
        let label = format!("preset {package}@{version}");
        let wanted = install::Wanted {
            package: &package,
            version: &version,
            manifest: digest,
            blobs: &blobs,
            missing: &missing,
            order: &served.blob_order(),
            from_blobs: &[],
        };
        install::unpack_all(&self.store, full_pack, &label, &wanted)?;
        self.store.write_manifest(&digest, manifest)?;
        let writer = lock(&self.writer);
        if !preset_wanted(self) {
            return Ok(None);
        }
        let installed = Installed {
            version: version.clone(),
            manifest: digest,
        };
        let change = lock(&self.core).activate(&package, installed, Source::Preset);
        self.commit(&writer, change)?;
        Ok(Some(version))
    }
}
