//! The app's signing keys by role: the pinned root the app ships, and the newest key list that
//! follows from it (`manifests::follow_key_chain`), kept on disk as the chain this device verified.
//! New versions are followed from the list held, never from the pinned keys again: once a device
//! moved past a root, what that root signs later (it may have leaked) counts for nothing.
//!
//! With no key list held, the pinned keys act in every role (a server's own key list, version 1,
//! says the same). The first check fetches the chain; afterwards it is fetched again when an
//! index names a newer key list (`Baleen-Keys`, a hint: what arrives is verified from the pinned
//! root) or when an index or manifest fails verification against the keys held. A new list
//! replaces the index and release keys at once: manifests are verified again under it, and a
//! package whose manifest its release keys did not sign is quarantined (a revoked publisher key).

use manifests::{
    AppId, KeyList, RoleName, TrustedKeys, follow_key_chain, join_key_chain, paths, split_key_chain,
};

use super::{Client, lock};
use crate::error::{Error, Result};

/// Largest key chain accepted.
const MAX_CHAIN_BYTES: u64 = 1024 * 1024;

/// The keys in force.
#[derive(Clone, Debug)]
pub(crate) struct KeyState {
    /// The newest key list accepted, if any.
    pub(crate) held: Option<KeyList>,
    /// The chain this device verified, as kept on disk.
    chain: Vec<Vec<u8>>,
    /// The keys indexes must be signed with.
    pub(crate) index: TrustedKeys,
    /// True until a chain was fetched (or the server said it has none) in this process, when
    /// none is held: a fresh device learns of revoked keys before it trusts the pinned ones.
    pub(crate) fetch_first: bool,
}

impl KeyState {
    /// The state for `held` (verified as `chain`), or the pinned keys in every role.
    fn new(
        pinned: &TrustedKeys,
        held: Option<KeyList>,
        chain: Vec<Vec<u8>>,
    ) -> Result<(KeyState, TrustedKeys)> {
        let (index, release) = match &held {
            Some(list) => (
                list.trusted(RoleName::Index)?,
                list.trusted(RoleName::Release)?,
            ),
            None => (pinned.clone(), pinned.clone()),
        };
        let fetch_first = held.is_none();
        Ok((
            KeyState {
                held,
                chain,
                index,
                fetch_first,
            },
            release,
        ))
    }

    /// The version of the key list held (0 for none).
    pub(crate) fn version(&self) -> u64 {
        self.held.as_ref().map_or(0, |l| l.version)
    }
}

/// The file the chain of `app` is kept in, in the store's root.
fn file_name(app: &AppId) -> String {
    format!("keys-{app}.json")
}

/// Reads the stored chain and follows it from the pinned keys; a chain that no longer verifies
/// is ignored (the next check fetches one).
pub(crate) fn load(
    root: &std::path::Path,
    pinned: &TrustedKeys,
    app: &AppId,
) -> Result<(KeyState, TrustedKeys)> {
    let chain = std::fs::read(root.join(file_name(app)))
        .ok()
        .and_then(|bytes| split_key_chain(&bytes).ok())
        .unwrap_or_default();
    match follow_key_chain(pinned, None, app, &chain).ok().flatten() {
        Some(held) => KeyState::new(pinned, Some(held.list), chain),
        None => KeyState::new(pinned, None, Vec::new()),
    }
}

impl Client {
    /// The keys indexes must be signed with now.
    pub(super) fn index_trusted(&self) -> TrustedKeys {
        lock(&self.keys).index.clone()
    }

    /// Fetches the app's key chain and, when it leads from the pinned root to a newer key list
    /// than the one held, stores it and moves to its keys. True when the keys changed.
    ///
    /// # Errors
    /// Network errors, and a chain that does not verify (nothing changes).
    pub(super) fn refresh_keys(&self) -> Result<bool> {
        let path = paths::keys_path(&self.config.app);
        let response = self
            .net
            .request("GET", &path, &[], Vec::new(), MAX_CHAIN_BYTES)?;
        match response.status {
            200 => {}
            // A server without key lists: the pinned keys stay in every role.
            404 => {
                lock(&self.keys).fetch_first = false;
                return Ok(false);
            }
            status => return Err(Error::Network(format!("GET {path}: HTTP {status}"))),
        }
        let chain = split_key_chain(&response.body)?;
        // From the list held, never from the pinned keys again: a device that moved past a root
        // trusts nothing that root signs later (it may have leaked).
        let (held, mut kept) = {
            let keys = lock(&self.keys);
            (keys.held.clone(), keys.chain.clone())
        };
        let held_version = held.as_ref().map_or(0, |l| l.version);
        let Some(newest) = follow_key_chain(&self.pinned, held.as_ref(), &self.config.app, &chain)?
        else {
            // Nothing newer (or an old chain replayed): what is held stays.
            lock(&self.keys).fetch_first = false;
            return Ok(false);
        };
        // What is kept is the chain this device verified: the one it held, then the versions it
        // accepted now, so that it verifies again from the pinned keys at the next start.
        for envelope in chain {
            let version = manifests::signed_bytes(&envelope)
                .and_then(|signed| manifests::parse_key_list_unverified(&signed))
                .map(|l| l.version)?;
            if version > held_version && version <= newest.list.version {
                kept.push(envelope);
            }
        }
        let file = join_key_chain(&kept);
        let writer = lock(&self.writer);
        crate::store::state::write_durably(
            self.store.fs(),
            self.store.root(),
            &file_name(&self.config.app),
            &file,
        )?;
        let (state, release) = KeyState::new(&self.pinned, Some(newest.list), kept)?;
        *lock(&self.keys) = KeyState {
            fetch_first: false,
            ..state
        };
        self.releases.set_trusted(release);
        drop(writer);
        // Every kept manifest again, under the new release keys.
        let quarantined = self.verify_stored()?;
        lock(&self.quarantined).extend(quarantined);
        Ok(true)
    }
}
