//! Verified releases, each signed manifest verified once per process.
//!
//! Activation, eviction, the quota and garbage collection all need what a stored manifest says.
//! Reading and verifying it again each time cost disk IO under the client's lock; here a manifest
//! is verified the first time it is read or downloaded and kept compiled for serving
//! ([`Served`]), shared with the resolver's table, so a release the device serves costs its file
//! list once. The map's lock is held only to look up or insert, never across IO or verification;
//! releases the device no longer keeps are dropped at garbage collection.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use manifests::{
    Digest, PackageId, Release, ReleaseVersion, TrustedKeys, rebuild_release, verify_release,
};

use crate::error::{Error, Result};
use crate::resolve::Served;
use crate::store::{Installed, Store};

/// The cache.
#[derive(Debug)]
pub(crate) struct Releases {
    trusted: Mutex<TrustedKeys>,
    verified: Mutex<HashMap<Digest, Arc<Served>>>,
}

impl Releases {
    pub(crate) fn new(trusted: TrustedKeys) -> Releases {
        Releases {
            trusted: Mutex::new(trusted),
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Digest, Arc<Served>>> {
        // The map holds only verified values, so a panic elsewhere cannot leave it inconsistent.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep(&self, digest: Digest, release: &Release) -> Arc<Served> {
        let served = Arc::new(Served::new(release));
        self.map().insert(digest, served.clone());
        served
    }

    /// Verifies `bytes` as the manifest `digest` of `package@version` and keeps the release.
    ///
    /// # Errors
    /// A bad signature, another digest, or a manifest of another release.
    pub(crate) fn verify(
        &self,
        bytes: &[u8],
        digest: &Digest,
        package: &PackageId,
        version: &ReleaseVersion,
    ) -> Result<Arc<Served>> {
        if let Some(served) = self.cached(digest) {
            return Ok(served);
        }
        let release = verify_release(bytes, &self.trusted(), Some(digest))?.release;
        self.keep_expected(*digest, &release, package, version)
    }

    /// Rebuilds the manifest `expected` of `package@version` from a release delta against `base`,
    /// the stored manifest `base_digest`, verifies it as [`Releases::verify`] does, keeps the
    /// release, and returns it with the rebuilt manifest's bytes.
    ///
    /// # Errors
    /// A delta that does not rebuild that manifest, and the errors of [`Releases::verify`].
    pub(crate) fn rebuild(
        &self,
        delta: &[u8],
        base: &[u8],
        base_digest: &Digest,
        expected: &Digest,
        package: &PackageId,
        version: &ReleaseVersion,
    ) -> Result<(Vec<u8>, Arc<Served>)> {
        let rebuilt = rebuild_release(delta, base, base_digest, expected, &self.trusted())?;
        let served = self.keep_expected(*expected, &rebuilt.verified.release, package, version)?;
        Ok((rebuilt.bytes, served))
    }

    fn keep_expected(
        &self,
        digest: Digest,
        release: &Release,
        package: &PackageId,
        version: &ReleaseVersion,
    ) -> Result<Arc<Served>> {
        if release.package != *package || release.version != *version {
            return Err(Error::BadPack(format!(
                "manifest {digest} is {}@{}, expected {package}@{version}",
                release.package, release.version
            )));
        }
        Ok(self.keep(digest, release))
    }

    /// Verifies `bytes` as a manifest of any release (a preset names its own), keeps it, and
    /// returns its digest with it.
    ///
    /// # Errors
    /// A bad signature.
    pub(crate) fn verify_any(&self, bytes: &[u8]) -> Result<(Digest, Arc<Served>)> {
        let verified = verify_release(bytes, &self.trusted(), None)?;
        Ok((
            verified.digest,
            self.keep(verified.digest, &verified.release),
        ))
    }

    /// The verified release, if it was verified before.
    pub(crate) fn cached(&self, digest: &Digest) -> Option<Arc<Served>> {
        self.map().get(digest).cloned()
    }

    /// The stored release `installed` of `package`, read and verified on first use.
    ///
    /// # Errors
    /// A missing or unreadable manifest, or one that does not verify.
    pub(crate) fn stored(
        &self,
        store: &Store,
        package: &PackageId,
        installed: &Installed,
    ) -> Result<Arc<Served>> {
        if let Some(served) = self.cached(&installed.manifest) {
            return Ok(served);
        }
        let bytes = store.read_manifest(&installed.manifest)?;
        self.verify(&bytes, &installed.manifest, package, &installed.version)
    }

    /// The blobs of a release verified before (empty for one never seen, which holds nothing
    /// the quota could count).
    pub(crate) fn blobs(&self, installed: &Installed) -> BTreeMap<Digest, u64> {
        self.cached(&installed.manifest)
            .map(|served| served.blobs())
            .unwrap_or_default()
    }

    /// Drops every release `keep` says no to.
    pub(crate) fn retain(&self, keep: impl Fn(&Digest) -> bool) {
        self.map().retain(|digest, _| keep(digest));
    }

    /// The keys manifests must be signed with.
    pub(crate) fn trusted(&self) -> TrustedKeys {
        self.trusted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Moves to other release keys: every manifest is verified again under them.
    pub(crate) fn set_trusted(&self, trusted: TrustedKeys) {
        *self
            .trusted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = trusted;
        self.map().clear();
    }
}
