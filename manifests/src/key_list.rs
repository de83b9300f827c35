//! The key list: which keys an app trusts for each role, signed by the app's root keys (after
//! TUF's root metadata).
//!
//! Three roles: `root` (kept offline; signs key lists), `index` (online, held by the server; signs
//! indexes and their deltas) and `release` (signs release manifests; may be held by the
//! publisher's CI alone, so that a server without it cannot ship new content). The app ships its
//! root public keys and their threshold; the server serves the chain of every key list version.
//!
//! Rotation (TUF §5.3): version N+1 must be signed by a threshold of version N's root keys *and*
//! by a threshold of its own, so that a chain 1→2→3 is followed step by step and a key list a
//! device keeps is only replaced by one its trusted root approved. Devices start from their
//! pinned root: the first version the pinned keys signed (with its own root's approval too), then
//! each next one; versions before it are skipped, versions below the one held never accepted.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{parse_strict, to_canonical_bytes};
use crate::envelope::{check_header, from_value, with_header};
use crate::error::{Error, Result};
use crate::{AppId, KeyId, KeyPair, PublicKey, SignedDocument, TrustedKeys, open, sign_value};

/// The key list format this code reads and writes.
pub const KEY_LIST_FORMAT: u64 = 1;

/// The most keys one key list may name.
pub const MAX_KEYS: usize = 64;

/// The most versions a served chain may hold.
pub const MAX_CHAIN: usize = 1_000;

/// The keys of one role and how many of them must sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// The role's keys, by id (each named in [`KeyList::keys`]).
    pub keyids: BTreeSet<KeyId>,
    /// Distinct keys of the role that must sign.
    pub threshold: u32,
}

/// The roles of a key list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Signs key lists; kept offline.
    pub root: Role,
    /// Signs indexes and index deltas; held by the server.
    pub index: Role,
    /// Signs release manifests.
    pub release: Role,
}

/// Which role a key list names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleName {
    /// See [`Roles::root`].
    Root,
    /// See [`Roles::index`].
    Index,
    /// See [`Roles::release`].
    Release,
}

impl RoleName {
    /// The role's name in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Root => "root",
            RoleName::Index => "index",
            RoleName::Release => "release",
        }
    }
}

/// One version of an app's key list (the signed part).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyList {
    /// The app whose keys these are: a key list of another app is never accepted.
    pub app: AppId,
    /// Starts at 1; each next version is one higher.
    pub version: u64,
    /// Every key a role names, by id, as 64 hex digits.
    pub keys: BTreeMap<KeyId, String>,
    /// The roles.
    pub roles: Roles,
}

impl KeyList {
    /// A key list where one key holds every role (threshold 1): what a server starts with.
    pub fn single(app: AppId, version: u64, key: &PublicKey) -> KeyList {
        let role = || Role {
            keyids: BTreeSet::from([key.id()]),
            threshold: 1,
        };
        KeyList {
            app,
            version,
            keys: BTreeMap::from([(key.id(), key.to_hex())]),
            roles: Roles {
                root: role(),
                index: role(),
                release: role(),
            },
        }
    }

    /// The role's entry.
    pub fn role(&self, name: RoleName) -> &Role {
        match name {
            RoleName::Root => &self.roles.root,
            RoleName::Index => &self.roles.index,
            RoleName::Release => &self.roles.release,
        }
    }

    /// The keys a role trusts and its threshold.
    ///
    /// # Errors
    /// As [`KeyList::validate`].
    pub fn trusted(&self, name: RoleName) -> Result<TrustedKeys> {
        let role = self.role(name);
        let keys = role
            .keyids
            .iter()
            .map(|id| self.public_key(id, name))
            .collect::<Result<Vec<_>>>()?;
        TrustedKeys::new(keys, role.threshold as usize)
            .map_err(|e| invalid(&format!("roles.{}", name.as_str()), &e))
    }

    fn public_key(&self, id: &KeyId, role: RoleName) -> Result<PublicKey> {
        let hex = self.keys.get(id).ok_or_else(|| Error::InvalidField {
            field: format!("roles.{}.keyids", role.as_str()),
            reason: format!("key {id} is not in keys"),
        })?;
        PublicKey::from_hex(hex).map_err(|e| invalid(&format!("keys.{id}"), &e))
    }

    /// Checks the rules a key list must follow: a version from 1; at most [`MAX_KEYS`] keys, each
    /// a valid Ed25519 key under its own id; every role naming known keys with a threshold
    /// between 1 and its number of keys.
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        if self.version == 0 {
            return Err(Error::InvalidField {
                field: "version".into(),
                reason: "versions start at 1".into(),
            });
        }
        if self.keys.len() > MAX_KEYS {
            return Err(Error::InvalidField {
                field: "keys".into(),
                reason: format!("{} keys, at most {MAX_KEYS}", self.keys.len()),
            });
        }
        for (id, hex) in &self.keys {
            let key = PublicKey::from_hex(hex).map_err(|e| invalid(&format!("keys.{id}"), &e))?;
            if key.id() != *id {
                return Err(Error::InvalidField {
                    field: format!("keys.{id}"),
                    reason: format!("the key's id is {}", key.id()),
                });
            }
        }
        for name in [RoleName::Root, RoleName::Index, RoleName::Release] {
            self.trusted(name)?;
        }
        Ok(())
    }

    /// The signed part as a JSON value, with its `_type` and `format` header.
    ///
    /// # Errors
    /// As [`KeyList::validate`]; an invalid key list is never signed.
    pub fn to_signed_value(&self) -> Result<Value> {
        self.validate()?;
        let body = serde_json::to_value(self).map_err(|e| Error::NotCanonical {
            at: format!("$ ({e})"),
            reason: "key list does not serialise to JSON",
        })?;
        with_header(body, "keys", KEY_LIST_FORMAT)
    }

    /// Signs the key list with every key in `keys`.
    ///
    /// # Errors
    /// As [`KeyList::validate`] and [`crate::sign_value`].
    pub fn sign(&self, keys: &[&KeyPair]) -> Result<SignedDocument> {
        sign_value(&self.to_signed_value()?, keys)
    }
}

fn invalid(field: &str, e: &Error) -> Error {
    Error::InvalidField {
        field: field.to_owned(),
        reason: e.to_string(),
    }
}

/// Reads the signed part of a key list without checking signatures: for tools.
///
/// # Errors
/// [`Error::Json`], [`Error::WrongDocumentType`], [`Error::UnsupportedFormat`],
/// [`Error::Schema`] and [`Error::InvalidField`].
pub fn parse_key_list_unverified(signed: &[u8]) -> Result<KeyList> {
    parse_key_list_value(parse_strict(signed)?)
}

fn parse_key_list_value(signed: Value) -> Result<KeyList> {
    check_header(&signed, "keys", KEY_LIST_FORMAT)?;
    let list: KeyList = from_value(signed, "keys")?;
    list.validate()?;
    Ok(list)
}

/// The signed part of an envelope, unverified: for finding a document's version before its
/// signatures are checked against the right keys.
fn peek(envelope: &[u8]) -> Result<KeyList> {
    let value = parse_strict(envelope)?;
    let signed = value.get("signed").cloned().ok_or_else(|| Error::Schema {
        doc: "envelope",
        at: "$.signed".into(),
        reason: "missing".into(),
    })?;
    parse_key_list_value(signed)
}

/// A key list whose chain from the app's pinned root verified.
#[derive(Clone, Debug)]
pub struct TrustedKeyList {
    /// The key list.
    pub list: KeyList,
    /// Its signed envelope, as served.
    pub envelope: Vec<u8>,
}

/// Splits a served chain (a JSON array of signed key lists, oldest first) into its envelopes.
///
/// # Errors
/// [`Error::Json`] or [`Error::Schema`] when it is not an array of at most [`MAX_CHAIN`] objects.
pub fn split_key_chain(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let Value::Array(items) = parse_strict(bytes)? else {
        return Err(Error::Schema {
            doc: "key chain",
            at: "$".into(),
            reason: "expected an array of signed key lists".into(),
        });
    };
    if items.len() > MAX_CHAIN {
        return Err(Error::Schema {
            doc: "key chain",
            at: "$".into(),
            reason: format!("{} key lists, at most {MAX_CHAIN}", items.len()),
        });
    }
    items.iter().map(to_canonical_bytes).collect()
}

/// A chain as served: the envelopes, oldest first, as one JSON array (what [`split_key_chain`]
/// splits).
pub fn join_key_chain(envelopes: &[Vec<u8>]) -> Vec<u8> {
    let mut chain = Vec::with_capacity(envelopes.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
    chain.push(b'[');
    for (i, envelope) in envelopes.iter().enumerate() {
        if i > 0 {
            chain.push(b',');
        }
        chain.extend_from_slice(envelope);
    }
    chain.push(b']');
    chain
}

/// Follows a served chain of key lists from what a device trusts: `held` (the newest key list it
/// accepted before) or, with none, the `pinned` root keys the app ships.
///
/// Versions at or below the one held are skipped. With no key list held, versions the pinned
/// keys did not sign are skipped until the first one they did. From there each version must be
/// exactly one higher than the last accepted and signed by a threshold of the last accepted root
/// role *and* of its own; it must be for `app`. Returns the newest key list accepted, or `None`
/// when the chain holds nothing newer (a chain that ends below the held version is an old one
/// replayed, and changes nothing).
///
/// # Errors
/// The signature errors of [`crate::open`], [`Error::InvalidField`] for a key list for another
/// app or one that skips a version, and the parse errors of [`parse_key_list_unverified`].
pub fn follow_key_chain(
    pinned: &TrustedKeys,
    held: Option<&KeyList>,
    app: &AppId,
    chain: &[Vec<u8>],
) -> Result<Option<TrustedKeyList>> {
    let mut root = match held {
        Some(list) => list.trusted(RoleName::Root)?,
        None => pinned.clone(),
    };
    let mut version = held.map(|l| l.version);
    let mut newest = None;
    for envelope in chain {
        let claimed = peek(envelope)?;
        if version.is_some_and(|v| claimed.version <= v) {
            continue;
        }
        let by_previous = open(envelope, &root);
        if version.is_none() && by_previous.is_err() {
            // Before the pinned root's first key list: not this device's chain yet.
            continue;
        }
        let list = parse_key_list_value(by_previous?.signed)?;
        if list.app != *app {
            return Err(Error::InvalidField {
                field: "app".into(),
                reason: format!("key list for app {}, expected {app}", list.app),
            });
        }
        if let Some(v) = version
            && list.version != v + 1
        {
            return Err(Error::InvalidField {
                field: "version".into(),
                reason: format!(
                    "key list version {} follows {v}: each version must be one higher",
                    list.version
                ),
            });
        }
        // The new root approves itself too: a list its own keys did not sign is never trusted.
        let own = list.trusted(RoleName::Root)?;
        open(envelope, &own)?;
        root = own;
        version = Some(list.version);
        newest = Some(TrustedKeyList {
            list,
            envelope: envelope.clone(),
        });
    }
    Ok(newest)
}

/// What signatures the envelope at `envelope` carries by `role`'s keys: for a server deciding
/// whether a release may go out, and tools showing what is missing.
///
/// # Errors
/// As [`crate::open`].
pub fn check_role(envelope: &[u8], list: &KeyList, role: RoleName) -> Result<()> {
    open(envelope, &list.trusted(role)?).map(|_| ())
}

#[cfg(test)]
mod tests;
