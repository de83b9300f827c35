//! Checking the signed index: one conditional request for the whole app.

use std::path::PathBuf;

use manifests::paths;

use super::{Client, MAX_INDEX_BYTES, lock};
use crate::api::CheckOutcome;
use crate::device::Fetched;
use crate::error::{Error, Result};

impl Client {
    /// Asks the server whether anything is new: one conditional request for the whole app.
    /// Blocks (network).
    ///
    /// # Errors
    /// Network errors; a replayed, expired, forged or misdirected index (nothing changes).
    pub fn check(&self) -> Result<CheckOutcome> {
        let stored = self.stored_index_path();
        let mut headers = Vec::new();
        if let (Some(etag), true) = (lock(&self.core).index_etag(), stored.is_file()) {
            headers.push(("If-None-Match".to_owned(), etag.to_owned()));
        }
        let path = paths::index_path(&self.config.app, &self.config.channel);
        let response = self
            .net
            .request("GET", &path, &headers, Vec::new(), MAX_INDEX_BYTES)?;
        let (bytes, fetched) = match response.status {
            200 => (
                response.body.clone(),
                Fetched::New(response.header("etag").map(Into::into)),
            ),
            304 => (self.read_stored_index()?, Fetched::NotModified),
            status => return Err(Error::Network(format!("GET {path}: HTTP {status}"))),
        };
        self.accept(&bytes, fetched)
    }

    /// The stored index, checked again as if the server had answered `304`: what a device
    /// without a network decides from.
    pub(super) fn check_offline(&self) -> Result<CheckOutcome> {
        self.accept(&self.read_stored_index()?, Fetched::NotModified)
    }

    fn accept(&self, bytes: &[u8], fetched: Fetched) -> Result<CheckOutcome> {
        let changed = fetched != Fetched::NotModified;
        let writer = lock(&self.writer);
        let wall = self.clock.now();
        let observed = lock(&self.core).observe(wall);
        self.commit(&writer, observed)?;
        let (index, change) =
            lock(&self.core).accept_index(bytes, self.releases.trusted(), wall, fetched)?;
        if changed {
            let stored = self.stored_index_path();
            let name = stored
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("index.json");
            crate::store::state::write_durably(self.store.root(), name, bytes)?;
        }
        self.commit(&writer, change)?;
        let updates = lock(&self.core).updates(&index);
        Ok(CheckOutcome {
            sequence: index.sequence,
            changed,
            updates,
        })
    }

    pub(super) fn stored_index_path(&self) -> PathBuf {
        let name = format!("index-{}-{}.json", self.config.app, self.config.channel);
        self.store.root().join(name)
    }

    fn read_stored_index(&self) -> Result<Vec<u8>> {
        std::fs::read(self.stored_index_path())
            .map_err(|e| Error::io("reading the stored index", e))
    }
}
