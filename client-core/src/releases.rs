//! Verified releases, each signed manifest verified once per process.
//!
//! Activation, eviction, the quota and garbage collection all need the release behind a stored
//! manifest. Reading and verifying it again each time cost disk IO under the client's lock; here
//! a manifest is verified the first time it is read or downloaded and kept as an `Arc<Release>`.
//! The map's lock is held only to look up or insert, never across IO or verification.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use manifests::{Digest, PackageId, Release, ReleaseVersion, TrustedKeys, verify_release};

use crate::error::{Error, Result};
use crate::store::{Installed, Store};

/// The cache.
#[derive(Debug)]
pub(crate) struct Releases {
    trusted: TrustedKeys,
    verified: Mutex<HashMap<Digest, Arc<Release>>>,
}

impl Releases {
    pub(crate) fn new(trusted: TrustedKeys) -> Releases {
        Releases {
            trusted,
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Digest, Arc<Release>>> {
        // The map holds only verified values, so a panic elsewhere cannot leave it inconsistent.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keys manifests must be signed with.
    pub(crate) fn trusted(&self) -> &TrustedKeys {
        &self.trusted
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
    ) -> Result<Arc<Release>> {
        if let Some(release) = self.map().get(digest) {
            return Ok(release.clone());
        }
        let release = verify_release(bytes, &self.trusted, Some(digest))?.release;
        if release.package != *package || release.version != *version {
            return Err(Error::BadPack(format!(
                "manifest {digest} is {}@{}, expected {package}@{version}",
                release.package, release.version
            )));
        }
        let release = Arc::new(release);
        self.map().insert(*digest, release.clone());
        Ok(release)
    }

    /// Verifies `bytes` as a manifest of any release (a preset names its own), keeps it, and
    /// returns its digest with it.
    ///
    /// # Errors
    /// A bad signature.
    pub(crate) fn verify_any(&self, bytes: &[u8]) -> Result<(Digest, Arc<Release>)> {
        let verified = verify_release(bytes, &self.trusted, None)?;
        let release = Arc::new(verified.release);
        self.map().insert(verified.digest, release.clone());
        Ok((verified.digest, release))
    }

    /// The verified release, if it was verified before.
    pub(crate) fn cached(&self, digest: &Digest) -> Option<Arc<Release>> {
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
    ) -> Result<Arc<Release>> {
        if let Some(release) = self.cached(&installed.manifest) {
            return Ok(release);
        }
        let bytes = store.read_manifest(&installed.manifest)?;
        self.verify(&bytes, &installed.manifest, package, &installed.version)
    }

    /// The blobs of a release verified before (empty for one never seen, which holds nothing
    /// the quota or the collector could count).
    pub(crate) fn blobs(&self, installed: &Installed) -> BTreeMap<Digest, u64> {
        self.cached(&installed.manifest)
            .map(|r| blob_sizes(&r))
            .unwrap_or_default()
    }
}

/// Every blob of `release` (each once, however many paths share it), with its size.
pub(crate) fn blob_sizes(release: &Release) -> BTreeMap<Digest, u64> {
    release.files.values().map(|f| (f.sha256, f.size)).collect()
}
