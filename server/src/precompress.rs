//! Precompressed representations of text blobs, for devices and browsers that download single
//! files (`Accept-Encoding: gzip`) rather than packs.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use manifests::{MimeType, PackageId, ReleaseVersion};

use crate::error::{Error, Result};
use crate::service::Service;

/// Files smaller than this are sent as they are: the header overhead eats the gain.
pub const MIN_SIZE_BYTES: u64 = 1024;

/// Whether a file of this type is worth compressing (text, scripts, data, SVG, WebAssembly and
/// uncompressed fonts; not images, audio, video, archives or WOFF fonts, which are compressed).
pub fn compressible(mime: &MimeType) -> bool {
    let essence = mime.as_str().split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript"
                | "application/json"
                | "application/manifest+json"
                | "application/xml"
                | "application/wasm"
                | "image/svg+xml"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        )
}

impl Service {
    /// Stores a gzip representation of every compressible blob of a release that has none yet
    /// and shrinks by at least a tenth; returns how many it stored.
    pub async fn precompress(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
    ) -> Result<usize> {
        let record = self
            .meta
            .release(package, version)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release {package}@{version}")))?;
        let release = crate::pack::release_of(&record)?;
        let mut stored = 0;
        let mut done = std::collections::BTreeSet::new();
        for file in release.files.values() {
            if file.size < MIN_SIZE_BYTES || !compressible(&file.mime) || !done.insert(file.sha256)
            {
                continue;
            }
            if self
                .blobs
                .read_variant(&file.sha256, "gzip")
                .await?
                .is_some()
            {
                continue;
            }
            let Some(bytes) = self.blobs.read_all(&file.sha256).await? else {
                return Err(Error::Internal(format!(
                    "blob {} of a release is missing",
                    file.sha256
                )));
            };
            let gz = crate::blob_store::fs::blocking(move || {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
                encoder
                    .write_all(&bytes)
                    .and_then(|()| encoder.finish())
                    .map_err(|e| Error::Internal(format!("gzip: {e}")))
            })
            .await?;
            if (gz.len() as u64) * 10 <= file.size * 9 {
                self.blobs.put_variant(&file.sha256, "gzip", &gz).await?;
                // A held copy of the blob was read without it.
                self.hot_blobs.forget([&file.sha256]);
                stored += 1;
            }
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_compressible_and_compressed_media_is_not() {
        for (mime, expected) in [
            ("text/html; charset=utf-8", true),
            ("text/javascript; charset=utf-8", true),
            ("application/json", true),
            ("image/svg+xml", true),
            ("application/wasm", true),
            ("image/png", false),
            ("font/woff2", false),
            ("application/zip", false),
            ("application/octet-stream", false),
        ] {
            assert_eq!(
                compressible(&MimeType::parse(mime).unwrap()),
                expected,
                "{mime}"
            );
        }
    }
}
