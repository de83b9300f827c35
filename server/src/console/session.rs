//! Console sessions: a token given once at sign-in becomes a random session secret in an
//! `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind TLS). Only hashes are stored
//! ([`SessionRecord`]); every request checks the session's expiry and the token again, so a
//! revoked or expired token ends its sessions at once. Every form carries the session's own
//! random CSRF secret, compared in constant time.

use axum::http::{HeaderMap, HeaderValue, header};
use manifests::Digest;

use crate::auth::{Caller, random_hex};
use crate::error::{Error, Result};
use crate::meta_store::SessionRecord;
use crate::service::{Service, now};

/// The session cookie.
pub const SESSION_COOKIE: &str = "baleen_session";
/// The cookie that ties a sign-in form to the browser that asked for it (login CSRF).
pub const SIGN_IN_COOKIE: &str = "baleen_sign_in";
/// The path every console cookie is limited to.
const COOKIE_PATH: &str = "/console";

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// The token it signed in with.
    pub caller: Caller,
    /// The secret its forms carry.
    pub csrf: String,
    /// The hash of its cookie's secret.
    pub id: Digest,
}

impl Session {
    /// Checks a form's CSRF secret.
    ///
    /// # Errors
    /// [`Error::Forbidden`] when it is missing or not this session's.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<()> {
        if given.is_some_and(|g| same(g.as_bytes(), self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(csrf_refused())
        }
    }
}

/// The refusal of a form without the right CSRF secret.
pub fn csrf_refused() -> Error {
    Error::Forbidden {
        scope: "a console form without this session's CSRF secret".into(),
        action: "change anything (reload the page and try again)".into(),
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the browser reached us over TLS (through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: `value` for `max_age_secs` (0 removes the cookie).
pub fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age_secs: u64,
) -> Result<HeaderValue> {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    ))
    .map_err(|e| Error::Internal(format!("cookie header: {e}")))
}

impl Service {
    /// Opens a console session for the holder of `token`: checks the token as the API would,
    /// stores the session and returns its cookie secret.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] or [`Error::TokenRefused`] for a token the API would refuse.
    pub async fn open_session(&self, token: &str) -> Result<(String, SessionRecord)> {
        let caller = self
            .authenticate(Some(token.trim()), "sign in to the console")
            .await?;
        let secret = random_hex(32)?;
        let created_at = now();
        let mut expires_at = created_at.plus_secs(self.settings().console_session.as_secs());
        if let Some(token_expires) = caller.token.expires_at {
            expires_at = expires_at.min(token_expires);
        }
        let record = SessionRecord {
            id: Digest::of(secret.as_bytes()),
            token: caller.token.hash,
            csrf: random_hex(32)?,
            created_at,
            expires_at,
        };
        self.meta().insert_session(&record).await?;
        Ok((secret, record))
    }

    /// The session of the request's cookie, if it has a live one whose token is still accepted.
    ///
    /// # Errors
    /// Store errors only: a missing, unknown or expired session is `None`.
    pub async fn current_session(&self, headers: &HeaderMap) -> Result<Option<Session>> {
        let Some(secret) = cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        if secret.len() != 64 {
            return Ok(None);
        }
        let id = Digest::of(secret.as_bytes());
        let Some(record) = self.meta().session(&id).await? else {
            return Ok(None);
        };
        if record.expires_at <= now() {
            return Ok(None);
        }
        match self
            .authenticate_hash(&record.token, "use the console")
            .await
        {
            Ok(caller) => Ok(Some(Session {
                caller,
                csrf: record.csrf,
                id,
            })),
            Err(Error::Unauthorized | Error::TokenRefused { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; baleen_session=abc ; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "baleen"), None);
        assert_eq!(cookie(&headers, SIGN_IN_COOKIE), None);
    }

    #[test]
    fn secrets_compare_by_every_byte() {
        assert!(same(b"abcd", b"abcd"));
        assert!(!same(b"abcd", b"abce"));
        assert!(!same(b"abcd", b"abc"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn cookies_are_secure_only_behind_tls() {
        let mut headers = HeaderMap::new();
        let plain = set_cookie(&headers, SESSION_COOKIE, "x", 60).unwrap();
        assert_eq!(
            plain,
            "baleen_session=x; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let secure = set_cookie(&headers, SESSION_COOKIE, "x", 60).unwrap();
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
