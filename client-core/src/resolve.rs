//! Answering the WebView: `resolve(url)` maps a page or asset URL to a file of an installed release,
//! or says "miss" so the host goes to the network.
//!
//! The table is rebuilt after each install or rollback and swapped in atomically (`ArcSwap`), so
//! `resolve` takes no lock, never waits for an install, and never sees half of one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use manifests::{Digest, PackageId, RelPath, Release, ReleaseVersion};

/// A hit: where the bytes are and how to serve them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The file to answer with.
    pub path: PathBuf,
    /// Its `Content-Type`.
    pub mime: String,
    /// Its length in bytes.
    pub size: u64,
    /// The package that answered.
    pub package: PackageId,
    /// The release that answered.
    pub version: ReleaseVersion,
    /// Response headers to send (content type and length, caching, the release).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
struct FileRef {
    sha256: Digest,
    size: u64,
    mime: Arc<str>,
}

/// A verified release compiled for serving: its files by path and its routes. Built once per
/// release and shared by every table that serves it (and by the client's cache of verified
/// releases), so swapping in a new table copies no file list.
#[derive(Debug)]
pub struct Served {
    package: PackageId,
    version: ReleaseVersion,
    entry: String,
    /// Route prefixes without scheme (`m.example.com/checkout/`), with their SPA fallback.
    routes: Vec<(String, Option<String>)>,
    files: HashMap<String, FileRef>,
}

impl Served {
    /// Compiles a verified release.
    pub fn new(release: &Release) -> Served {
        let files = release.files.iter().map(|(path, f)| {
            let file = FileRef {
                sha256: f.sha256,
                size: f.size,
                mime: Arc::from(f.mime.as_str()),
            };
            (path.as_str().to_owned(), file)
        });
        let routes = release.routes.iter().map(|route| {
            let fallback = route.fallback.as_ref().map(|f| f.as_str().to_owned());
            (route.prefix.without_scheme().to_owned(), fallback)
        });
        Served {
            package: release.package.clone(),
            version: release.version.clone(),
            entry: release.entry.as_str().to_owned(),
            routes: routes.collect(),
            files: files.collect(),
        }
    }

    /// Routes that answer no file, for a package the quota evicted.
    fn evicted(package: &PackageId, version: &ReleaseVersion, prefixes: &[String]) -> Served {
        Served {
            package: package.clone(),
            version: version.clone(),
            entry: String::new(),
            routes: prefixes.iter().map(|p| (p.clone(), None)).collect(),
            files: HashMap::new(),
        }
    }

    /// The package.
    pub fn package(&self) -> &PackageId {
        &self.package
    }

    /// The release.
    pub fn version(&self) -> &ReleaseVersion {
        &self.version
    }

    /// Every blob of the release (each once, however many paths share it), with its size.
    pub fn blobs(&self) -> BTreeMap<Digest, u64> {
        self.files.values().map(|f| (f.sha256, f.size)).collect()
    }

    /// Every blob of the release, each once, in the order of the first path (sorted) that uses
    /// it: the order a pack delivers them in (`manifests::Release::blob_order`). Worked out when
    /// an install asks (a sort of the paths), not kept: the served table of a large app would
    /// hold a digest more per file for it.
    pub fn blob_order(&self) -> Vec<Digest> {
        let mut files: Vec<(&str, &Digest)> = self
            .files
            .iter()
            .map(|(path, f)| (path.as_str(), &f.sha256))
            .collect();
        // `RelPath` orders as its string does.
        files.sort_unstable_by_key(|(path, _)| *path);
        let mut seen = std::collections::HashSet::with_capacity(files.len());
        files
            .into_iter()
            .map(|(_, d)| *d)
            .filter(|d| seen.insert(*d))
            .collect()
    }

    /// Its route prefixes, without scheme.
    pub fn route_prefixes(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|(prefix, _)| prefix.clone())
            .collect()
    }
}

#[derive(Debug)]
struct Route {
    /// The prefix without its scheme: `m.example.com/checkout/`.
    prefix: String,
    fallback: Option<String>,
    served: Arc<Served>,
}

/// The routes of every active release, longest prefix first.
#[derive(Debug, Default)]
pub struct Table {
    routes: Vec<Route>,
    blobs: PathBuf,
}

impl Table {
    /// A table of the given compiled active releases, whose blobs live under `blobs`.
    pub fn new(served: impl IntoIterator<Item = Arc<Served>>, blobs: &Path) -> Table {
        let mut table = Table {
            routes: Vec::new(),
            blobs: blobs.to_path_buf(),
        };
        for served in served {
            table.add(served);
        }
        sort(&mut table.routes);
        table
    }

    /// [`Table::new`] from verified releases, compiling each.
    pub fn of_releases<'a>(releases: impl IntoIterator<Item = &'a Release>, blobs: &Path) -> Table {
        Table::new(
            releases.into_iter().map(|r| Arc::new(Served::new(r))),
            blobs,
        )
    }

    fn add(&mut self, served: Arc<Served>) {
        for (prefix, fallback) in &served.routes {
            self.routes.push(Route {
                prefix: prefix.clone(),
                fallback: fallback.clone(),
                served: served.clone(),
            });
        }
    }

    /// Adds routes that answer no file, for packages the quota evicted: `route_of` still finds
    /// them, so a page open counts against the package while its pages come from the network.
    #[must_use]
    pub fn with_evicted<'a>(
        mut self,
        evicted: impl IntoIterator<Item = (&'a PackageId, &'a ReleaseVersion, &'a [String])>,
    ) -> Table {
        for (package, version, prefixes) in evicted {
            self.add(Arc::new(Served::evicted(package, version, prefixes)));
        }
        sort(&mut self.routes);
        self
    }

    /// A route of another package than `package` that overlaps one of `prefixes` (both without
    /// scheme; one holds the other), as `(prefix, taken, owner)`: a URL prefix belongs to one
    /// package of an app. Evicted packages keep their routes.
    pub fn overlapping(
        &self,
        package: &PackageId,
        prefixes: &[String],
    ) -> Option<(String, String, PackageId)> {
        self.routes
            .iter()
            .filter(|r| &r.served.package != package)
            .find_map(|r| {
                prefixes
                    .iter()
                    .find(|p| p.starts_with(&r.prefix) || r.prefix.starts_with(p.as_str()))
                    .map(|p| (p.clone(), r.prefix.clone(), r.served.package.clone()))
            })
    }

    /// The route with the longest prefix of `target` (`host/path`).
    fn route_for(&self, target: &str) -> Option<&Route> {
        self.routes.iter().find(|r| target.starts_with(&r.prefix))
    }

    /// Files reachable through the table.
    pub fn file_count(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        self.routes
            .iter()
            .filter(|r| seen.insert(Arc::as_ptr(&r.served)))
            .map(|r| r.served.files.len())
            .sum()
    }
}

/// Longest prefix first; among equal prefixes, a route with files before an evicted one.
fn sort(routes: &mut [Route]) {
    routes.sort_by(|a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then(a.served.files.is_empty().cmp(&b.served.files.is_empty()))
            .then(a.prefix.cmp(&b.prefix))
    });
}

/// The lock-free resolver.
#[derive(Debug)]
pub struct Resolver {
    table: ArcSwap<Table>,
    custom_scheme: Option<String>,
}

impl Resolver {
    /// A resolver that also accepts `custom_scheme://host/path` (for iOS `WKURLSchemeHandler`,
    /// which cannot intercept `https`) as the same file as `https://host/path`.
    pub fn new(custom_scheme: Option<&str>) -> Resolver {
        Resolver {
            table: ArcSwap::from_pointee(Table::default()),
            custom_scheme: custom_scheme.map(str::to_ascii_lowercase),
        }
    }

    /// Files the current table answers for.
    pub fn file_count(&self) -> usize {
        self.table.load().file_count()
    }

    /// [`Table::overlapping`] on the current table.
    pub fn overlapping(
        &self,
        package: &PackageId,
        prefixes: &[String],
    ) -> Option<(String, String, PackageId)> {
        self.table.load().overlapping(package, prefixes)
    }

    /// Swaps in a new table; resolves already running finish on the old one.
    pub fn publish(&self, table: Table) {
        self.table.store(Arc::new(table));
    }

    /// The package and release whose routes cover `url`, whether or not a file answers it: a
    /// page open that missed is still counted against the release it belongs to.
    pub fn route_of(&self, url: &str) -> Option<(PackageId, ReleaseVersion)> {
        let target = self.target(url)?;
        let table = self.table.load();
        let route = table.route_for(&target)?;
        Some((route.served.package.clone(), route.served.version.clone()))
    }

    /// The file that answers `url`, or `None`: go to the network.
    ///
    /// Never blocks. Query strings and fragments are ignored, percent-escapes decoded, and no
    /// path can leave the store: the decoded path must pass the same rules as a published one.
    pub fn resolve(&self, url: &str) -> Option<Resolved> {
        let target = self.target(url)?;
        let table = self.table.load();
        let route = table.route_for(&target)?;
        let rest = &target[route.prefix.len()..];
        let decoded = percent_decode(rest)?;
        let candidate = if decoded.is_empty() {
            route.served.entry.clone()
        } else if decoded.ends_with('/') {
            format!("{decoded}index.html")
        } else {
            decoded
        };
        let file = match route.served.files.get(&candidate) {
            Some(file) => Some(file),
            None => {
                // Only a page route falls back: an asset that is missing stays missing.
                let last = candidate.rsplit('/').next().unwrap_or("");
                if last.contains('.') {
                    None
                } else {
                    route
                        .fallback
                        .as_ref()
                        .and_then(|f| route.served.files.get(f))
                }
            }
        };
        let file = match file {
            Some(file) => file,
            None => {
                // A path that breaks the path rules was never published: a miss either way.
                let _ = RelPath::parse(&candidate).ok()?;
                return None;
            }
        };
        let hex = file.sha256.to_string();
        let path = table.blobs.join(&hex[..2]).join(&hex);
        Some(Resolved {
            headers: vec![
                ("Content-Type".to_owned(), file.mime.to_string()),
                ("Content-Length".to_owned(), file.size.to_string()),
                ("Cache-Control".to_owned(), "no-cache".to_owned()),
                (
                    "X-Baleen-Release".to_owned(),
                    format!("{}@{}", route.served.package, route.served.version),
                ),
            ],
            path,
            mime: file.mime.to_string(),
            size: file.size,
            package: route.served.package.clone(),
            version: route.served.version.clone(),
        })
    }

    /// `host[:port]/path` of a URL with a supported scheme, without query or fragment, with the
    /// scheme's default port dropped and the host lower-cased.
    fn target(&self, url: &str) -> Option<String> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => Some(":443"),
            "http" => Some(":80"),
            s if self.custom_scheme.as_deref() == Some(s) => None,
            _ => return None,
        };
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let rest = &rest[..end];
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return None;
        }
        let mut host = authority.to_ascii_lowercase();
        if let Some(port) = default_port
            && let Some(stripped) = host.strip_suffix(port)
        {
            host = stripped.to_owned();
        }
        Some(format!("{host}{path}"))
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape, non-UTF-8 result or an encoded `/`,
/// `\` or NUL (which could smuggle a different path past the prefix check).
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if matches!(value, b'/' | b'\\' | 0) {
                return None;
            }
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
