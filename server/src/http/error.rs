//! The HTTP face of [`Error`]: a status and `{"error":{"code":…,"message":…}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};

use crate::api::{ErrorBody, ErrorDetail};
use crate::error::Error;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if matches!(self, Error::Overloaded) {
            tracing::debug!("request shed: too many in flight");
        } else if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let message = if status.is_server_error() {
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
        if matches!(self, Error::Overloaded) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
