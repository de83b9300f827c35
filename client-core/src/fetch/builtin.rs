//! A blocking HTTP/1.1 fetcher built on `ureq`, for tests, desktop tools and the C ABI. It speaks
//! plain HTTP only (no TLS, so no certificate checks): the library apps ship is built without it
//! (`--no-default-features`) and uses the host's `HostFetcher`.

use std::io::Read;
use std::time::Duration;

use super::{FetchError, FetchRequest, FetchResponse, Fetcher};

/// The built-in fetcher.
#[derive(Debug, Clone)]
pub struct BuiltinFetcher {
    agent: ureq::Agent,
}

impl Default for BuiltinFetcher {
    fn default() -> BuiltinFetcher {
        BuiltinFetcher::new(Duration::from_secs(30))
    }
}

impl BuiltinFetcher {
    /// A fetcher whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> BuiltinFetcher {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        BuiltinFetcher { agent }
    }
}

impl Fetcher for BuiltinFetcher {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let error = |e: &dyn std::fmt::Display| FetchError {
            message: format!("{} {}: {e}", request.method, request.url),
        };
        let mut builder = ureq::http::Request::builder()
            .method(request.method.as_str())
            .uri(&request.url);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        let http_request = builder.body(request.body.clone()).map_err(|e| error(&e))?;
        let response = self.agent.run(http_request).map_err(|e| error(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let read = response
            .into_body()
            .into_reader()
            .take(request.max_bytes.saturating_add(1))
            .read_to_end(&mut body);
        // A connection cut mid-body still hands over the bytes that arrived: the caller sees
        // fewer bytes than `Content-Length` announced and resumes from there with `Range`.
        if let Err(e) = read
            && body.is_empty()
        {
            return Err(error(&e));
        }
        Ok(FetchResponse {
            status,
            headers,
            body,
        })
    }
}
