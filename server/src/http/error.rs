//! The HTTP face of [`Error`]: a status and `{"error":{"code":…,"message":…}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};

use crate::api::{ErrorBody, ErrorDetail};
use crate::error::Error;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        // Answers a client acts on by waiting, not failures of the server.
        let retry_after_secs = match self {
            Error::Overloaded | Error::MetaUnavailable(_) => Some(1),
            Error::PackNotReady {
                retry_after_secs, ..
            }
            | Error::RateLimited {
                retry_after_secs, ..
            } => Some(retry_after_secs),
            _ => None,
        };
        if matches!(self, Error::Overloaded) {
            tracing::debug!("request shed: too many in flight");
        } else if retry_after_secs.is_some() {
            tracing::debug!(code = self.code(), error = %self, "not ready");
        } else if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let message = if self.is_storage_full() {
            // Which file or table stays in the log; the operator needs to know what to do.
            "the server's storage is full: nothing was stored; free space and retry".to_owned()
        } else if status.is_server_error() && retry_after_secs.is_none() {
            // Internal details (paths, SQL) stay in the log.
            "internal server error; see the server log".to_owned()
        } else {
            self.to_string()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after_secs {
            let headers = response.headers_mut();
            headers.insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
            // A cache must not answer later requests with "not ready".
            headers.insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
        }
        response
    }
}
