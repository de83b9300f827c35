//! Each app's signing keys by role (`manifests::KeyList`): the chain the server serves, the keys
//! it signs indexes and manifests with, new key lists and publishers' signatures.
//!
//! Version 1 of every app's key list is derived from the server's primary key (root, index and
//! release, threshold 1): an app that ships that key works as before, with nothing stored. Later
//! versions are made offline, signed by the app's old and new root keys, and posted; the server
//! adds its own root signature when it holds a key of the old root (so the first move from its
//! own key to an offline root needs only the new root's signatures), checks the step as a device
//! will, and refuses a list under which it could not sign indexes. A new list moves every channel
//! of the app to a new sequence, so that indexes are signed again under it at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use manifests::{
    AppId, Digest, KeyList, KeyPair, PackageId, ReleaseVersion, RoleName, TrustedKeys,
    follow_key_chain,
};

use crate::error::{Error, Result};
use crate::meta_store::AuditEntry;
use crate::service::{Service, now};

/// An app's key lists as served.
#[derive(Debug)]
pub struct AppKeys {
    /// The newest key list.
    pub list: KeyList,
    /// The chain, oldest first, as the JSON array devices fetch.
    pub chain: Bytes,
    /// The sha256 of [`AppKeys::chain`], its ETag.
    pub digest: Digest,
}

/// The keys of `role` in `list` among `held`.
fn held_in_role<'a>(list: &KeyList, role: RoleName, held: &'a [KeyPair]) -> Vec<&'a KeyPair> {
    let keyids = &list.role(role).keyids;
    held.iter().filter(|k| keyids.contains(&k.id())).collect()
}

/// [`held_in_role`], when they meet the role's threshold.
fn held_signers<'a>(
    list: &KeyList,
    role: RoleName,
    held: &'a [KeyPair],
) -> Option<Vec<&'a KeyPair>> {
    let signers = held_in_role(list, role, held);
    (signers.len() >= list.role(role).threshold as usize).then_some(signers)
}

/// Key lists by app, read once.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    apps: Mutex<HashMap<AppId, Arc<AppKeys>>>,
}

impl KeyCache {
    fn get(&self, app: &AppId) -> Option<Arc<AppKeys>> {
        self.apps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(app)
            .cloned()
    }

    /// Drops what is known of `app`'s key lists (of every app's for `None`): another server may
    /// have stored a new one.
    pub(crate) fn forget(&self, app: Option<&AppId>) {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        match app {
            Some(app) => {
                apps.remove(app);
            }
            None => apps.clear(),
        }
    }

    fn put(&self, app: &AppId, keys: Arc<AppKeys>) {
        self.apps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(app.clone(), keys);
    }
}

impl Service {
    /// The key list version 1 of `app`: the server's primary key in every role.
    fn first_key_list(&self, app: &AppId) -> Result<Vec<u8>> {
        Ok(KeyList::single(app.clone(), 1, self.key.public())
            .sign(&[&self.key])?
            .bytes)
    }

    /// `app`'s key lists: the chain devices fetch and the newest list.
    ///
    /// # Errors
    /// The store failed, or a stored key list no longer follows from the one before (a damaged
    /// store, or a primary key changed under stored lists).
    pub async fn app_keys(&self, app: &AppId) -> Result<Arc<AppKeys>> {
        match self.key_cache.get(app) {
            Some(keys) => Ok(keys),
            None => self.load_app_keys(app).await,
        }
    }

    /// Reads `app`'s key lists from the store, checks the chain as a device pinned to the primary
    /// key would, and keeps it ready to serve.
    async fn load_app_keys(&self, app: &AppId) -> Result<Arc<AppKeys>> {
        let mut envelopes = vec![self.first_key_list(app)?];
        envelopes.extend(self.meta.key_lists(app).await?);
        let pinned = TrustedKeys::single(self.key.public().clone());
        let newest = follow_key_chain(&pinned, None, app, &envelopes)
            .map_err(|e| Error::Internal(format!("the stored key lists of app {app}: {e}")))?
            .ok_or_else(|| Error::Internal(format!("app {app} has no key list")))?;
        let chain = manifests::join_key_chain(&envelopes);
        let keys = Arc::new(AppKeys {
            list: newest.list,
            digest: Digest::of(&chain),
            chain: Bytes::from(chain),
        });
        self.key_cache.put(app, keys.clone());
        Ok(keys)
    }

    /// [`Service::app_keys`] for an app the server knows (one that published): names of apps
    /// that do not exist fill no cache.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown app, and those of [`Service::app_keys`].
    pub async fn known_app_keys(&self, app: &AppId) -> Result<Arc<AppKeys>> {
        if let Some(keys) = self.key_cache.get(app) {
            return Ok(keys);
        }
        if self.meta.app_origins(app).await?.is_none() {
            return Err(Error::NotFound(format!("app {app}")));
        }
        self.app_keys(app).await
    }

    /// Every key the server holds, primary first.
    pub(crate) fn held_keys(&self) -> &[KeyPair] {
        &self.held
    }

    /// The keys the server signs `app`'s indexes with, and the version of the key list that
    /// names them.
    ///
    /// # Errors
    /// [`Error::KeyNotHeld`] when it holds too few of the index role's keys.
    pub(crate) async fn index_signers(&self, app: &AppId) -> Result<(Vec<KeyPair>, u64)> {
        let keys = self.app_keys(app).await?;
        let signers =
            held_signers(&keys.list, RoleName::Index, self.held_keys()).ok_or_else(|| {
                Error::KeyNotHeld(format!(
                    "the server holds too few index keys of app {app} (key list version {}); \
                 start it with --key for one of them",
                    keys.list.version
                ))
            })?;
        Ok((signers.into_iter().cloned().collect(), keys.list.version))
    }

    /// The keys the server signs `app`'s new manifests with: its release keys, or its primary
    /// key when it holds none (the manifest then waits for the publisher's signatures).
    pub(crate) async fn release_signers(&self, app: &AppId) -> Result<Vec<KeyPair>> {
        let keys = self.app_keys(app).await?;
        let held = held_in_role(&keys.list, RoleName::Release, self.held_keys());
        Ok(if held.is_empty() {
            vec![self.key.clone()]
        } else {
            held.into_iter().cloned().collect()
        })
    }

    /// Refuses to send out a release whose manifest devices would refuse: too few signatures by
    /// the app's release keys.
    ///
    /// # Errors
    /// [`Error::ReleaseUnsigned`].
    pub(crate) async fn check_release_signed(
        &self,
        app: &AppId,
        package: &PackageId,
        version: &ReleaseVersion,
        manifest: &[u8],
    ) -> Result<()> {
        let keys = self.app_keys(app).await?;
        manifests::check_role(manifest, &keys.list, RoleName::Release).map_err(|e| {
            Error::ReleaseUnsigned {
                release: format!("{package}@{version}"),
                reason: e.to_string(),
            }
        })
    }

    /// Adds the next version of `app`'s key list: checks it follows from the newest one (with
    /// the server's signature added when it holds an old root key) and that the server can sign
    /// indexes under it, stores it, and moves the app's channels to a new sequence.
    ///
    /// # Errors
    /// [`Error::Contract`] for a list that does not follow (wrong app or version, signatures
    /// missing), [`Error::KeyNotHeld`], [`Error::Conflict`] when another list took the version,
    /// [`Error::NotFound`] for an app that never published.
    pub async fn add_key_list(
        &self,
        app: &AppId,
        envelope: &[u8],
        actor: &str,
    ) -> Result<Arc<AppKeys>> {
        let current = self.known_app_keys(app).await?;
        let mut envelope = envelope.to_vec();
        for key in self.held_keys() {
            if current.list.roles.root.keyids.contains(&key.id()) {
                envelope = manifests::cosign(&envelope, key)
                    .map_err(key_list_refusal)?
                    .bytes;
            }
        }
        let pinned = current.list.trusted(RoleName::Root)?;
        let next = follow_key_chain(
            &pinned,
            Some(&current.list),
            app,
            std::slice::from_ref(&envelope),
        )
        .map_err(key_list_refusal)?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "app {app} has key list version {}; post version {}",
                current.list.version,
                current.list.version + 1
            ))
        })?;
        if held_signers(&next.list, RoleName::Index, self.held_keys()).is_none() {
            return Err(Error::KeyNotHeld(format!(
                "the server holds too few of the new index keys ({} needed); start it with --key \
                 for them before posting this key list",
                next.list.roles.index.threshold
            )));
        }
        let audit = AuditEntry {
            at: now(),
            actor: actor.to_owned(),
            action: "keys.update".into(),
            target: app.to_string(),
            detail: serde_json::json!({
                "version": next.list.version,
                "root": next.list.roles.root.keyids,
                "index": next.list.roles.index.keyids,
                "release": next.list.roles.release.keyids,
            })
            .to_string(),
        };
        if !self
            .meta
            .insert_key_list(app, next.list.version, &next.envelope, &audit)
            .await?
        {
            return Err(Error::Conflict(format!(
                "key list version {} of app {app} was added meanwhile",
                next.list.version
            )));
        }
        let keys = self.load_app_keys(app).await?;
        tracing::info!(%app, version = keys.list.version, "key list updated");
        self.resign_indexes(app).await?;
        Ok(keys)
    }

    /// Adds a signature by one of the app's release keys to a release's manifest.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown release; [`Error::Contract`] for a key outside the
    /// release role or a signature that does not verify.
    pub async fn add_release_signature(
        &self,
        app: &AppId,
        package: &PackageId,
        version: &ReleaseVersion,
        keyid: &manifests::KeyId,
        signature: &[u8; 64],
        actor: &str,
    ) -> Result<Vec<u8>> {
        let keys = self.app_keys(app).await?;
        if self.meta.package_app(package).await?.as_ref() != Some(app) {
            return Err(Error::NotFound(format!("package {package} of app {app}")));
        }
        let release = self
            .meta
            .release(package, version)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release {package}@{version}")))?;
        let key = keys
            .list
            .roles
            .release
            .keyids
            .contains(keyid)
            .then(|| keys.list.trusted(RoleName::Release))
            .transpose()?
            .and_then(|t| t.get(keyid).cloned())
            .ok_or_else(|| {
                Error::SignatureRefused(manifests::Error::UntrustedSigner {
                    signed_by: format!("{keyid} (not a release key of app {app})"),
                })
            })?;
        let signed =
            manifests::add_signature(&release.manifest, &key, signature).map_err(refusal)?;
        if signed.digest != release.manifest_digest {
            return Err(Error::Internal(format!(
                "the manifest of {package}@{version} changed its digest"
            )));
        }
        let audit = AuditEntry {
            at: now(),
            actor: actor.to_owned(),
            action: "release.sign".into(),
            target: format!("{package}@{version}"),
            detail: serde_json::json!({ "app": app.as_str(), "keyid": keyid.to_string() })
                .to_string(),
        };
        self.meta
            .set_manifest(package, version, &signed.bytes, &audit)
            .await?;
        self.manifest_docs
            .forget(&std::collections::BTreeSet::from([release.manifest_digest]));
        Ok(signed.bytes)
    }
}

/// Signature failures as [`Error::SignatureRefused`] (403); anything else as it was.
fn refusal(e: manifests::Error) -> Error {
    match e {
        manifests::Error::Unsigned
        | manifests::Error::BadSignature { .. }
        | manifests::Error::UntrustedSigner { .. }
        | manifests::Error::ThresholdNotMet { .. } => Error::SignatureRefused(e),
        e => Error::Contract(e),
    }
}

/// A key list refused: 403 for its signatures, 409 for the rest (it does not follow from the
/// app's newest, whatever is wrong with it).
fn key_list_refusal(e: manifests::Error) -> Error {
    match refusal(e) {
        Error::Contract(e) => Error::KeyListRefused(e),
        other => other,
    }
}
