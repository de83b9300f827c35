//! Checking the signed index: one conditional request for the whole app.
//!
//! A device that holds an index asks for the delta from its sequence: what changed, signed, in
//! a few hundred bytes however many packages the app has. When the server cannot answer that
//! (`404`: the device is too far behind, or the server is older), it fetches the whole index. The
//! index the device holds is stored as the server signed it, or — once rebuilt from deltas — as
//! `{"delta": <the last signed delta>, "index": <the rebuilt index>}`, which verifies again from
//! the delta alone.

use std::path::PathBuf;

use manifests::{Index, paths, rebuilt_index_bytes};
use serde_json::Value;

use super::{Client, MAX_INDEX_BYTES, lock};
use crate::api::CheckOutcome;
use crate::device::{Fetched, IndexDoc};
use crate::error::{Error, Result};
use crate::fetch::FetchResponse;

/// The index the device holds, as stored.
enum Stored {
    /// A whole signed index.
    Full(Vec<u8>),
    /// An index rebuilt from deltas, with the last delta.
    Rebuilt { delta: Vec<u8>, index: Vec<u8> },
}

impl Stored {
    fn parse(bytes: Vec<u8>) -> Stored {
        let rebuilt = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
            let delta = serde_json::to_vec(v.get("delta")?).ok()?;
            let index = serde_json::to_vec(v.get("index")?).ok()?;
            Some(Stored::Rebuilt { delta, index })
        });
        rebuilt.unwrap_or(Stored::Full(bytes))
    }

    fn doc(&self) -> IndexDoc<'_> {
        match self {
            Stored::Full(bytes) => IndexDoc::Full(bytes),
            Stored::Rebuilt { delta, index } => IndexDoc::Rebuilt { delta, index },
        }
    }
}

/// What to store after accepting a document.
enum Keep<'a> {
    Nothing,
    Full(&'a [u8]),
    Rebuilt(&'a [u8]),
}

impl Client {
    /// Asks the server whether anything is new: one conditional request for the whole app — the
    /// delta from the index the device holds, or the whole index. Blocks (network).
    ///
    /// # Errors
    /// Network errors; a replayed, expired, forged or misdirected index or delta (nothing
    /// changes).
    pub fn check(&self) -> Result<CheckOutcome> {
        if lock(&self.keys).fetch_first {
            self.refresh_keys()?;
        }
        match self.check_once() {
            // Signed by keys this device does not know yet: a rotation it has not seen.
            Err(Error::Contract(
                e @ (manifests::Error::UntrustedSigner { .. }
                | manifests::Error::ThresholdNotMet { .. }),
            )) => match self.refresh_keys()? {
                true => self.check_once(),
                false => Err(Error::Contract(e)),
            },
            outcome => outcome,
        }
    }

    fn check_once(&self) -> Result<CheckOutcome> {
        let stored = self.read_stored_index().ok().map(Stored::parse);
        // The stored index's signatures are verified once per check, on a copy of the core so
        // that its lock is not held meanwhile; a 304 then checks only scope, sequence and expiry.
        let held = stored.as_ref().and_then(|s| {
            self.snapshot()
                .held_index(s.doc(), &self.index_trusted())
                .ok()
        });
        let etag = lock(&self.core).index_etag().map(str::to_owned);
        if let Some(base) = &held {
            let path =
                paths::index_delta_path(&self.config.app, &self.config.channel, base.sequence);
            let response = self.get_index(&path, etag.as_deref())?;
            match response.status {
                200 => {
                    let etag = response.header("etag").map(Into::into);
                    let doc = IndexDoc::Delta {
                        delta: &response.body,
                        base,
                    };
                    match self.accept(doc, Fetched::New(etag), Keep::Rebuilt(&response.body)) {
                        // A delta that does not fit the index held (another base, or a result
                        // that is not what it was signed for) changes nothing; the whole index,
                        // verified on its own, keeps the device from getting stuck on it.
                        Err(Error::Contract(
                            manifests::Error::DeltaBase { .. }
                            | manifests::Error::DeltaMismatch { .. },
                        )) => {}
                        outcome => return outcome,
                    }
                }
                304 => {
                    return self.accept(IndexDoc::Held(base), Fetched::NotModified, Keep::Nothing);
                }
                // The server cannot tell what changed since then: fetch the whole index.
                404 => {}
                status => return Err(Error::Network(format!("GET {path}: HTTP {status}"))),
            }
        }
        let path = paths::index_path(&self.config.app, &self.config.channel);
        let full_etag = match &stored {
            Some(Stored::Full(_)) => etag.as_deref(),
            _ => None,
        };
        let response = self.get_index(&path, full_etag)?;
        match (response.status, &stored) {
            (200, _) => {
                let etag = response.header("etag").map(Into::into);
                let doc = IndexDoc::Full(&response.body);
                self.accept(doc, Fetched::New(etag), Keep::Full(&response.body))
            }
            (304, Some(stored)) => {
                let doc = held.as_ref().map_or(stored.doc(), IndexDoc::Held);
                self.accept(doc, Fetched::NotModified, Keep::Nothing)
            }
            (status, _) => Err(Error::Network(format!("GET {path}: HTTP {status}"))),
        }
    }

    fn get_index(&self, path: &str, etag: Option<&str>) -> Result<FetchResponse> {
        let headers: Vec<(String, String)> = etag
            .map(|e| ("If-None-Match".to_owned(), e.to_owned()))
            .into_iter()
            .collect();
        let response = self
            .net
            .request("GET", path, &headers, Vec::new(), MAX_INDEX_BYTES)?;
        // The index names a newer key list than the one held: fetch it before verifying.
        let named = response
            .header(paths::KEYS_HEADER)
            .and_then(|v| v.trim().parse::<u64>().ok());
        if named.is_some_and(|v| v > lock(&self.keys).version()) {
            self.refresh_keys()?;
        }
        Ok(response)
    }

    /// The stored index, checked again as if the server had answered `304`: what a device
    /// without a network decides from.
    pub(super) fn check_offline(&self) -> Result<CheckOutcome> {
        let stored = Stored::parse(self.read_stored_index()?);
        self.accept(stored.doc(), Fetched::NotModified, Keep::Nothing)
    }

    fn accept(&self, doc: IndexDoc<'_>, fetched: Fetched, keep: Keep<'_>) -> Result<CheckOutcome> {
        let changed = fetched != Fetched::NotModified;
        let writer = lock(&self.writer);
        let wall = self.clock.now();
        let observed = lock(&self.core).observe(wall);
        self.commit(&writer, observed)?;
        // Verifying (a whole index, or a delta's result) runs on a copy of the core: the writer
        // lock keeps its state from moving, and report_open does not wait on the verification.
        let (index, change) =
            self.snapshot()
                .accept_index(doc, &self.index_trusted(), wall, fetched)?;
        match keep {
            Keep::Nothing => {}
            Keep::Full(bytes) => self.store_index(bytes)?,
            Keep::Rebuilt(delta) => self.store_index(&rebuilt_file(delta, &index)?)?,
        }
        self.commit(&writer, change)?;
        let updates = lock(&self.core).updates(&index);
        Ok(CheckOutcome {
            sequence: index.sequence,
            changed,
            updates,
        })
    }

    fn store_index(&self, bytes: &[u8]) -> Result<()> {
        let stored = self.stored_index_path();
        let name = stored
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("index.json");
        crate::store::state::write_durably(self.store.fs(), self.store.root(), name, bytes)
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

/// `{"delta": …, "index": …}`: a rebuilt index and the signed delta it verifies against.
fn rebuilt_file(delta: &[u8], index: &Index) -> Result<Vec<u8>> {
    let invalid = |e: serde_json::Error| Error::Invalid(format!("storing the rebuilt index: {e}"));
    let delta: Value = serde_json::from_slice(delta).map_err(invalid)?;
    let index: Value = serde_json::from_slice(&rebuilt_index_bytes(index)?).map_err(invalid)?;
    serde_json::to_vec(&serde_json::json!({ "delta": delta, "index": index })).map_err(invalid)
}
