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

/// Loads a private key file.
pub fn load(path: &Path) -> Result<KeyPair> {
    let bytes = fs::read(path).with_context(|| format!("reading key {}", path.display()))?;
    KeyPair::from_file_bytes(&bytes).with_context(|| format!("key file {}", path.display()))
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
