//! Ed25519 keys: generation from a seed, key files, key ids and the set of keys a verifier trusts.
//!
//! Randomness never comes from here: the caller draws the 32-byte seed (from the OS) and passes it in.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Digest;
use crate::canonical::{json_error, parse_strict, to_canonical};
use crate::digest::{decode_hex, encode_hex};
use crate::error::{Error, Result};

/// The id of a public key: the sha256 of its 32 raw bytes, in hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(Digest);

impl KeyId {
    /// The id of a raw Ed25519 public key.
    pub fn of(public: &[u8; 32]) -> KeyId {
        KeyId(Digest::of(public))
    }

    /// Parses a key id (64 lowercase hex digits).
    ///
    /// # Errors
    /// [`Error::InvalidDigest`] for anything else.
    pub fn parse(text: &str) -> Result<KeyId> {
        Digest::parse(text).map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KeyId, D::Error> {
        Digest::deserialize(deserializer).map(KeyId)
    }
}

/// A public key that verifies signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

/// The JSON form of a public key file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyFile {
    #[serde(rename = "type")]
    kind: String,
    keyid: KeyId,
    public: String,
}

/// The JSON form of a private key file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPairFile {
    #[serde(rename = "type")]
    kind: String,
    keyid: KeyId,
    public: String,
    seed: String,
}

const PUBLIC_TYPE: &str = "ed25519-public";
const PRIVATE_TYPE: &str = "ed25519-private";

impl PublicKey {
    /// A public key from its 32 raw bytes.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the bytes are not a valid Ed25519 point, or a weak (small-order) one.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::InvalidKey {
            reason: "not a valid Ed25519 public key".to_owned(),
        })?;
        if key.is_weak() {
            return Err(Error::InvalidKey {
                reason: "weak (small-order) Ed25519 public key".to_owned(),
            });
        }
        Ok(PublicKey {
            key,
            id: KeyId::of(bytes),
        })
    }

    /// Parses 64 lowercase hex digits of a raw public key.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for malformed text or an invalid key.
    pub fn from_hex(text: &str) -> Result<PublicKey> {
        let bytes = decode_hex::<32>(text).ok_or_else(|| Error::InvalidKey {
            reason: "public key must be 64 lowercase hex digits".to_owned(),
        })?;
        PublicKey::from_bytes(&bytes)
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The raw key in hex.
    pub fn to_hex(&self) -> String {
        encode_hex(self.key.as_bytes())
    }

    /// Checks a 64-byte signature over `message` (strict verification: no malleable signatures).
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.key.verify_strict(message, &signature).is_ok()
    }

    /// The public key file: `{"keyid":…,"public":…,"type":"ed25519-public"}`, canonical JSON.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let file = PublicKeyFile {
            kind: PUBLIC_TYPE.to_owned(),
            keyid: self.id,
            public: self.to_hex(),
        };
        // Only strings: canonical serialisation cannot fail.
        to_canonical(&file).unwrap_or_default()
    }

    /// Reads a public key file, checking that its key id matches its key.
    ///
    /// # Errors
    /// [`Error::Json`] or [`Error::InvalidKey`].
    pub fn from_file_bytes(bytes: &[u8]) -> Result<PublicKey> {
        let value = parse_strict(bytes)?;
        let file: PublicKeyFile = serde_json::from_value(value).map_err(|e| Error::InvalidKey {
            reason: format!("public key file: {}", json_error(e)),
        })?;
        if file.kind != PUBLIC_TYPE {
            return Err(Error::InvalidKey {
                reason: format!("key type {:?}, expected {PUBLIC_TYPE:?}", file.kind),
            });
        }
        let key = PublicKey::from_hex(&file.public)?;
        if key.id != file.keyid {
            return Err(Error::InvalidKey {
                reason: format!("key id {} does not match the key ({})", file.keyid, key.id),
            });
        }
        Ok(key)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// A signing key pair. Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
    public: PublicKey,
}

impl KeyPair {
    /// The key pair for a 32-byte secret seed. Draw the seed from the operating system's
    /// random source; the same seed always gives the same key.
    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        let signing = SigningKey::from_bytes(seed);
        let verifying = signing.verifying_key();
        KeyPair {
            public: PublicKey {
                id: KeyId::of(verifying.as_bytes()),
                key: verifying,
            },
            signing,
        }
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.public.id
    }

    /// A signature over `message` (Ed25519 is deterministic: same key and message, same bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The private key file (canonical JSON holding the seed). Keep it secret.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let file = KeyPairFile {
            kind: PRIVATE_TYPE.to_owned(),
            keyid: self.public.id,
            public: self.public.to_hex(),
            seed: encode_hex(self.signing.as_bytes()),
        };
        // Only strings: canonical serialisation cannot fail.
        to_canonical(&file).unwrap_or_default()
    }

    /// Reads a private key file, checking that its public key and key id match its seed.
    ///
    /// # Errors
    /// [`Error::Json`] or [`Error::InvalidKey`].
    pub fn from_file_bytes(bytes: &[u8]) -> Result<KeyPair> {
        let value = parse_strict(bytes)?;
        let file: KeyPairFile = serde_json::from_value(value).map_err(|e| Error::InvalidKey {
            reason: format!("private key file: {}", json_error(e)),
        })?;
        if file.kind != PRIVATE_TYPE {
            return Err(Error::InvalidKey {
                reason: format!("key type {:?}, expected {PRIVATE_TYPE:?}", file.kind),
            });
        }
        let seed = decode_hex::<32>(&file.seed).ok_or_else(|| Error::InvalidKey {
            reason: "seed must be 64 lowercase hex digits".to_owned(),
        })?;
        let pair = KeyPair::from_seed(&seed);
        if pair.public.to_hex() != file.public || pair.id() != file.keyid {
            return Err(Error::InvalidKey {
                reason: "public key or key id does not match the seed".to_owned(),
            });
        }
        Ok(pair)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({}, secret hidden)", self.public.id)
    }
}

/// The keys a verifier trusts, and how many distinct ones must sign.
#[derive(Clone, Debug)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, PublicKey>,
    threshold: usize,
}

impl TrustedKeys {
    /// Trusts `keys` and requires `threshold` distinct ones of them to sign.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the threshold is 0 or larger than the number of distinct keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>, threshold: usize) -> Result<TrustedKeys> {
        let keys: BTreeMap<KeyId, PublicKey> = keys.into_iter().map(|k| (k.id, k)).collect();
        if threshold == 0 || threshold > keys.len() {
            return Err(Error::InvalidKey {
                reason: format!(
                    "threshold {threshold} must be between 1 and the {} distinct trusted key(s)",
                    keys.len()
                ),
            });
        }
        Ok(TrustedKeys { keys, threshold })
    }

    /// Trusts one key (threshold 1).
    pub fn single(key: PublicKey) -> TrustedKeys {
        TrustedKeys {
            keys: BTreeMap::from([(key.id, key)]),
            threshold: 1,
        }
    }

    /// The trusted key with this id.
    pub fn get(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// How many distinct trusted keys must sign.
    pub fn threshold(&self) -> usize {
        self.threshold
    }
}
