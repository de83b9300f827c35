//! The `Content-Type` a bundle file is served with, chosen by its extension.
//!
//! A web build is served from the device exactly as its files are named, so the table covers what
//! front-end bundlers emit: pages, scripts, styles, source maps, images, fonts, media, WebAssembly
//! and the odd data file (pdf.js's `.bcmap` and `.pfb`). Textual types carry `; charset=utf-8` so
//! a WebView never guesses an encoding. Anything else is `application/octet-stream`.

use manifests::{MimeType, RelPath};

/// The type for a file with no extension or one the table does not know.
pub const FALLBACK: &str = "application/octet-stream";

/// Lower-case extension (without the dot) → `Content-Type`. Sorted by extension, so a unit test
/// can check that no extension is listed twice.
const TABLE: &[(&str, &str)] = &[
    ("aac", "audio/aac"),
    ("apng", "image/apng"),
    ("avif", "image/avif"),
    ("bcmap", "application/octet-stream"),
    ("bin", "application/octet-stream"),
    ("bmp", "image/bmp"),
    ("cjs", "text/javascript; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("eot", "application/vnd.ms-fontobject"),
    ("flac", "audio/flac"),
    ("gif", "image/gif"),
    ("glb", "model/gltf-binary"),
    ("gltf", "model/gltf+json"),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("ico", "image/x-icon"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json; charset=utf-8"),
    ("jsonld", "application/ld+json; charset=utf-8"),
    ("m4a", "audio/mp4"),
    ("manifest", "application/manifest+json; charset=utf-8"),
    ("map", "application/json; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("pfb", "application/x-font-type1"),
    ("png", "image/png"),
    ("svg", "image/svg+xml; charset=utf-8"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("weba", "audio/webm"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json; charset=utf-8"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xhtml", "application/xhtml+xml; charset=utf-8"),
    ("xml", "application/xml; charset=utf-8"),
    ("yaml", "application/yaml; charset=utf-8"),
    ("yml", "application/yaml; charset=utf-8"),
];

/// The `Content-Type` for `path`, from the lower-cased extension of its file name;
/// `application/octet-stream` when the extension is missing or unknown.
pub fn mime_for(path: &RelPath) -> MimeType {
    let text = path
        .extension()
        .and_then(|ext| {
            TABLE
                .binary_search_by(|(known, _)| (*known).cmp(ext.as_str()))
                .ok()
        })
        .map_or(FALLBACK, |at| TABLE[at].1);
    // Every value of the table is a valid MIME type (the unit test `every_entry_parses` checks
    // them all), so this never fails.
    MimeType::parse(text).expect("the MIME table holds only valid types")
}

#[cfg(test)]
mod tests;
