//! Networking goes through a [`Fetcher`] the host supplies (OkHttp on Android, URLSession on iOS),
//! so the app's proxy, certificate pinning and cookies apply. A built-in blocking fetcher serves
//! tests and simple hosts (`builtin-fetcher` feature).

#[cfg(feature = "builtin-fetcher")]
pub mod builtin;

/// One HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// The body (empty for `GET`).
    pub body: Vec<u8>,
    /// The most body bytes the caller accepts; a fetcher should stop reading beyond it.
    pub max_bytes: u64,
}

/// One HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    /// The status code.
    pub status: u16,
    /// Response headers (names in any case).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl FetchResponse {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A transport failure (no answer at all): DNS, connect, TLS, timeout, a cut connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// What happened.
    pub message: String,
}

/// Performs HTTP requests for the library. Implementations block; the library calls them from
/// the host's background thread.
pub trait Fetcher: Send + Sync + std::fmt::Debug {
    /// Performs one request.
    ///
    /// When the connection drops in the middle of a body, returning the bytes that arrived
    /// (with the response's headers, `Content-Length` included) lets the library resume the
    /// download with `Range` instead of starting over.
    ///
    /// # Errors
    /// [`FetchError`] when no response arrived; an HTTP error status is a response, not an error.
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError>;
}
