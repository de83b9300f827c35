//! HTTP against the server through the host's [`Fetcher`]: retries with exponential backoff, size
//! caps, a `Content-Length` check, and downloads of immutable objects that resume after a cut.
//!
//! Packs and blobs never change once published (their URLs name their content), so the bytes of
//! a download cut short are kept under `partial/` and the next attempt — in this call, or after
//! the app was killed and restarted — asks only for the rest with `Range`. What a resumed download
//! yields is verified like any other download; a partial file is never trusted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use manifests::Digest;

use crate::error::{Error, Result};
use crate::fetch::{FetchRequest, FetchResponse, Fetcher};

/// HTTP against the server with retries, size caps and status checks.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub(crate) base: String,
    pub(crate) fetcher: Arc<dyn Fetcher>,
    /// Attempts after the first that made no progress.
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
}

impl Net {
    /// Sends a request, retrying transport failures and 5xx with exponential backoff.
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        max_bytes: u64,
    ) -> Result<FetchResponse> {
        let request = self.make(method, path, headers, body, max_bytes);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            self.pause(attempt);
            match self.fetcher.fetch(&request) {
                Ok(response) if response.status >= 500 => {
                    last = format!("{method} {path}: HTTP {}", response.status);
                }
                Ok(response) => {
                    check_size(&response, method, path, max_bytes)?;
                    match declared_length(&response) {
                        Some(n) if n != response.body.len() as u64 => {
                            last = format!("{method} {path}: body cut short");
                        }
                        _ => return Ok(response),
                    }
                }
                Err(e) => last = e.message,
            }
        }
        Err(Error::Network(last))
    }

    /// GETs the immutable object at `path` (a pack or a blob), resuming after a cut: bytes that
    /// arrived are kept in `partial_dir` and later attempts ask for the rest with `Range`, so a
    /// flaky link makes progress instead of starting over. Attempts that bring new bytes do not
    /// count against the retries. The partial file is removed once the object is complete.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when the object is larger than `max_bytes` or longer than announced;
    /// [`Error::Network`] when the retries ran out (the bytes so far stay for the next call);
    /// storage errors for the partial file.
    pub(crate) fn get_resumable(
        &self,
        path: &str,
        max_bytes: u64,
        partial_dir: &Path,
    ) -> Result<Vec<u8>> {
        self.resumable(path, max_bytes, partial_dir, Unavailable::Retry)
    }

    /// GETs a pack like [`Net::get_resumable`], except that `503 Service Unavailable` (the pack
    /// is still being built, or the server sheds load) ends the call at once with
    /// [`Error::Network`]: the caller takes its next source (another pack, or the blobs) now
    /// instead of backing off for a pack that may take minutes; and `404 Not Found` ends it with
    /// [`Error::NotFound`] (a server from before the compact container has no `.bpk`).
    pub(crate) fn get_pack(
        &self,
        path: &str,
        max_bytes: u64,
        partial_dir: &Path,
    ) -> Result<Vec<u8>> {
        self.resumable(path, max_bytes, partial_dir, Unavailable::NextSource)
    }

    fn resumable(
        &self,
        path: &str,
        max_bytes: u64,
        partial_dir: &Path,
        unavailable: Unavailable,
    ) -> Result<Vec<u8>> {
        let part = partial_path(partial_dir, path);
        let mut have = match std::fs::read(&part) {
            Ok(bytes) if bytes.len() as u64 <= max_bytes => bytes,
            _ => Vec::new(),
        };
        let kept = have.len();
        let mut last = String::new();
        let mut failures = 0;
        let mut attempt = 0u32;
        while failures <= self.retries {
            self.pause(failures);
            attempt += 1;
            if attempt > 1_000 {
                // A server that trickles a byte per request must not hold the device forever.
                break;
            }
            let before = have.len();
            let mut headers = Vec::new();
            if before > 0 {
                headers.push(("Range".to_owned(), format!("bytes={before}-")));
            }
            let request = self.make("GET", path, &headers, Vec::new(), max_bytes);
            let outcome = match self.fetcher.fetch(&request) {
                Ok(response)
                    if response.status == 404 && unavailable == Unavailable::NextSource =>
                {
                    return Err(Error::NotFound(format!("GET {path}: HTTP 404")));
                }
                Ok(response)
                    if response.status == 503 && unavailable == Unavailable::NextSource =>
                {
                    Step::GiveUp(format!("GET {path}: HTTP 503 (not ready)"))
                }
                Ok(response) => self.take(path, response, &mut have, max_bytes)?,
                Err(e) => Step::Retry(e.message),
            };
            match outcome {
                Step::Done => {
                    remove_partial(&part);
                    return Ok(have);
                }
                Step::Retry(why) => last = why,
                Step::GiveUp(why) => {
                    last = why;
                    break;
                }
            }
            if have.len() > before {
                failures = 0;
            } else {
                failures += 1;
            }
        }
        if have.len() > kept {
            save_partial(partial_dir, &part, &have)?;
        } else if have.is_empty() {
            remove_partial(&part);
        }
        Err(Error::Network(last))
    }

    /// Adds one response to the bytes so far.
    fn take(
        &self,
        path: &str,
        response: FetchResponse,
        have: &mut Vec<u8>,
        max_bytes: u64,
    ) -> Result<Step> {
        check_size(&response, "GET", path, max_bytes)?;
        let total = match response.status {
            200 => {
                // The whole object: the server ignored the range, or none was asked.
                have.clear();
                have.extend_from_slice(&response.body);
                declared_length(&response)
            }
            206 => {
                let Some((start, total)) = response.header("content-range").and_then(content_range)
                else {
                    have.clear();
                    return Ok(Step::Retry(format!(
                        "GET {path}: 206 without a usable range"
                    )));
                };
                if start != have.len() as u64 {
                    let why = format!(
                        "GET {path}: asked for bytes from {}, got from {start}",
                        have.len()
                    );
                    have.clear();
                    return Ok(Step::Retry(why));
                }
                have.extend_from_slice(&response.body);
                Some(total)
            }
            416 => {
                // The partial bytes do not fit the object: start over.
                have.clear();
                return Ok(Step::Retry(format!("GET {path}: range not satisfiable")));
            }
            status if status >= 500 => {
                return Ok(Step::Retry(format!("GET {path}: HTTP {status}")));
            }
            status => return Err(Error::Network(format!("GET {path}: HTTP {status}"))),
        };
        let got = have.len() as u64;
        match total {
            Some(total) if total > max_bytes => Err(Error::TooLarge {
                what: format!("GET {path}"),
                limit_bytes: max_bytes,
            }),
            Some(total) if got > total => {
                have.clear();
                Err(Error::TooLarge {
                    what: format!("GET {path} (longer than the {total} bytes announced)"),
                    limit_bytes: total,
                })
            }
            Some(total) if got < total => Ok(Step::Retry(format!(
                "GET {path}: body cut short at {got} of {total} bytes"
            ))),
            _ if got > max_bytes => Err(Error::TooLarge {
                what: format!("GET {path}"),
                limit_bytes: max_bytes,
            }),
            _ => Ok(Step::Done),
        }
    }

    fn make(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        max_bytes: u64,
    ) -> FetchRequest {
        FetchRequest {
            method: method.to_owned(),
            url: format!("{}{path}", self.base),
            headers: headers.to_vec(),
            body,
            max_bytes,
        }
    }

    fn pause(&self, failures: u32) {
        if failures > 0 {
            std::thread::sleep(self.backoff * 2u32.saturating_pow(failures - 1));
        }
    }
}

enum Step {
    Done,
    Retry(String),
    /// Stop now; the caller has another source.
    GiveUp(String),
}

/// What a `503` means to a download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unavailable {
    /// Back off and ask again (a blob: there is no other source).
    Retry,
    /// Take the next source now (a pack that is being built).
    NextSource,
}

fn check_size(response: &FetchResponse, method: &str, path: &str, max_bytes: u64) -> Result<()> {
    if response.body.len() as u64 > max_bytes {
        return Err(Error::TooLarge {
            what: format!("{method} {path}"),
            limit_bytes: max_bytes,
        });
    }
    Ok(())
}

fn declared_length(response: &FetchResponse) -> Option<u64> {
    response
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn content_range(value: &str) -> Option<(u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total) = (
        start.trim().parse::<u64>().ok()?,
        end.trim().parse::<u64>().ok()?,
        total.trim().parse::<u64>().ok()?,
    );
    (start <= end && end < total).then_some((start, total))
}

/// Where the bytes of a cut download of `path` wait: named by the sha256 of the path, since the
/// object behind a path never changes.
fn partial_path(dir: &Path, path: &str) -> PathBuf {
    dir.join(format!("{}.part", Digest::of(path.as_bytes())))
}

fn save_partial(dir: &Path, part: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // No fsync: a torn partial file only makes a resumed download fail verification, after which
    // it is fetched again whole.
    std::fs::File::create(part)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| {
            Error::io(
                format!("keeping a partial download in {}", part.display()),
                e,
            )
        })
}

fn remove_partial(part: &Path) {
    // A partial file that cannot be removed is overwritten or ignored later; nothing depends on it.
    let _ = std::fs::remove_file(part);
}

#[cfg(test)]
mod tests;
