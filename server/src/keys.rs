//! Signing keys on disk: generation from the operating system's random source, and loading.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use manifests::KeyPair;

/// Where `keys generate` writes a key pair, and what it wrote.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The private key file (mode 0600 on Unix).
    pub private: PathBuf,
    /// The public key file, to embed in apps.
    pub public: PathBuf,
    /// The key's id.
    pub keyid: String,
}

/// Generates a key pair into `dir` as `NAME.private.json` and `NAME.public.json`.
///
/// Refuses to overwrite an existing key: losing a signing key strands every device that trusts it.
pub fn generate(dir: &Path, name: &str) -> Result<GeneratedKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("reading the operating system's random source: {e}"))?;
    let pair = KeyPair::from_seed(&seed);
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let private = dir.join(format!("{name}.private.json"));
    let public = dir.join(format!("{name}.public.json"));
    if private.exists() || public.exists() {
        bail!(
            "{} or {} already exists; refusing to overwrite a signing key",
            private.display(),
            public.display()
        );
    }
    write_new(&private, &pair.to_file_bytes(), true)?;
    write_new(&public, &pair.public().to_file_bytes(), false)?;
    Ok(GeneratedKey {
        private,
        public,
        keyid: pair.id().to_string(),
    })
}

/// Loads a private key file, refusing one that others than its owner may read: a signing key
/// that leaked is revoked by a new key list, but one left readable is as good as leaked.
pub fn load(path: &Path) -> Result<KeyPair> {
    check_private(path)?;
    let bytes = fs::read(path).with_context(|| format!("reading key {}", path.display()))?;
    KeyPair::from_file_bytes(&bytes).with_context(|| format!("key file {}", path.display()))
}

/// Refuses a private key file readable or writable by its group or by others.
fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .with_context(|| format!("reading key {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "key {} is accessible to its group or others (mode {:o}); a private key must be \
                 readable by its owner only: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Loads a public key file (or the public half of a private key file, checked like [`load`]).
pub fn load_public(path: &Path) -> Result<manifests::PublicKey> {
    let bytes = fs::read(path).with_context(|| format!("reading key {}", path.display()))?;
    match manifests::PublicKey::from_file_bytes(&bytes) {
        Ok(key) => Ok(key),
        Err(public_error) => match KeyPair::from_file_bytes(&bytes) {
            Ok(_) => Ok(load(path)?.public().clone()),
            Err(_) => Err(public_error).with_context(|| format!("key file {}", path.display())),
        },
    }
}

/// The keys and threshold of one role of a key list being made.
#[derive(Debug)]
pub struct RoleSpec {
    /// Public key files.
    pub keys: Vec<PathBuf>,
    /// How many must sign (default: 1).
    pub threshold: u32,
}

/// Makes version `version` of `app`'s key list from public key files, signed by `signers`.
pub fn make_key_list(
    app: &manifests::AppId,
    version: u64,
    roles: [&RoleSpec; 3],
    signers: &[KeyPair],
) -> Result<Vec<u8>> {
    let mut keys = std::collections::BTreeMap::new();
    let mut role = |spec: &RoleSpec| -> Result<manifests::Role> {
        let mut keyids = std::collections::BTreeSet::new();
        for path in &spec.keys {
            let key = load_public(path)?;
            keyids.insert(key.id());
            keys.insert(key.id(), key.to_hex());
        }
        Ok(manifests::Role {
            keyids,
            threshold: spec.threshold,
        })
    };
    let roles = manifests::Roles {
        root: role(roles[0])?,
        index: role(roles[1])?,
        release: role(roles[2])?,
    };
    let list = manifests::KeyList {
        app: app.clone(),
        version,
        keys,
        roles,
    };
    let signers: Vec<&KeyPair> = signers.iter().collect();
    Ok(list
        .sign(&signers)
        .context("signing the key list (root keys must sign it)")?
        .bytes)
}

fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
