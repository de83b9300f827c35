//! API tokens: random secrets handed out once, stored only as sha256, each with a scope,
//! optionally bound to one package of one app, optionally expiring, revocable, and with their
//! last use recorded.

use manifests::{AppId, Digest, PackageId, Timestamp};

use crate::error::{Error, Result};
use crate::meta_store::{AuditEntry, MetaStore, Scope, TOKEN_USE_GRANULARITY_SECS, TokenRecord};
use crate::service::{Service, now};

/// The prefix of every token, so that secret scanners can recognise leaked ones.
pub const TOKEN_PREFIX: &str = "baleen_";

/// The longest a token may live when it is given an expiry: ten years.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// `n` random bytes as lowercase hex: the secret of a token, an ingest key or a console session.
///
/// # Errors
/// [`Error::Internal`] when the system's random source fails.
pub fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("random source: {e}")))?;
    Ok(manifests::encode_hex(&bytes))
}

/// A token the caller proved to hold.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's record.
    pub token: TokenRecord,
}

impl Caller {
    fn forbidden(&self, action: &str) -> Error {
        let token = &self.token;
        Error::Forbidden {
            scope: match (&token.app, &token.package) {
                (Some(a), Some(p)) => format!("{} (package {p} of app {a})", token.scope.as_str()),
                (None, Some(p)) => format!("{} (package {p})", token.scope.as_str()),
                (Some(a), None) => format!("{} (app {a})", token.scope.as_str()),
                (None, None) => token.scope.as_str().to_owned(),
            },
            action: action.to_owned(),
        }
    }

    /// Checks that the caller may do `action` with at least `needed` rights, on `package`
    /// when one is concerned.
    ///
    /// # Errors
    /// [`Error::Forbidden`] saying which scope was missing.
    pub fn require(&self, needed: Scope, package: Option<&PackageId>, action: &str) -> Result<()> {
        if !self.token.scope.allows(needed) {
            return Err(self.forbidden(action));
        }
        match (&self.token.package, package) {
            (Some(bound), Some(p)) if bound != p => Err(self.forbidden(action)),
            (Some(_), None) => Err(self.forbidden(action)),
            _ => Ok(()),
        }
    }

    /// Checks that a package-bound caller acts in its own app: `owner` is the app the package
    /// belongs to, or none for a package that does not exist yet, which the caller would create
    /// in `app`; `app_exists` tells whether `app` has any package. A bound token never creates
    /// an app, and creates its package only in the app it names.
    ///
    /// # Errors
    /// [`Error::Forbidden`] naming what the token may not do.
    pub fn require_app(&self, app: &AppId, owner: Option<&AppId>, app_exists: bool) -> Result<()> {
        if self.token.package.is_none() {
            return Ok(());
        }
        let package = self.token.package.as_ref().map(PackageId::as_str);
        let package = package.unwrap_or_default();
        match (owner, &self.token.app) {
            (Some(owner), Some(bound)) if owner != bound => {
                Err(self.forbidden(&format!("act on package {package} of app {owner}")))
            }
            (Some(_), _) => Ok(()),
            (None, _) if !app_exists => Err(self.forbidden(&format!("create app {app}"))),
            (None, Some(bound)) if bound == app => Ok(()),
            (None, _) => Err(self.forbidden(&format!("create package {package} in app {app}"))),
        }
    }

    /// The name recorded as the actor.
    pub fn name(&self) -> &str {
        &self.token.name
    }
}

/// What a new token may do, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    /// A human name, unique, recorded as the actor of what it does.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// The app a package-bound token acts in (found from the package when it exists).
    pub app: Option<AppId>,
    /// The only package it may act on.
    pub package: Option<PackageId>,
    /// Seconds it lives from now, if it expires.
    pub expires_in_secs: Option<u64>,
}

impl TokenSpec {
    /// A token of `scope` bound to nothing, that never expires.
    pub fn unbound(name: &str, scope: Scope) -> TokenSpec {
        TokenSpec {
            name: name.to_owned(),
            scope,
            app: None,
            package: None,
            expires_in_secs: None,
        }
    }
}

/// A token just made: its secret, shown only this once, and its record.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// The secret.
    pub secret: String,
    /// What is stored.
    pub record: TokenRecord,
}

/// Checks a token's name: 1 to 64 characters, none of them a control character.
///
/// # Errors
/// [`Error::BadRequest`] saying so.
pub fn check_token_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "token name must be 1 to 64 characters without control characters".into(),
        ));
    }
    Ok(())
}

/// Creates a token and returns its secret, which is shown only this once.
///
/// # Errors
/// [`Error::BadRequest`] for a bad name, a lifetime out of range or an app without a package;
/// [`Error::NotFound`] for a package bound without an app that does not exist yet;
/// [`Error::Conflict`] for a name in use, or an app that is not the package's.
pub async fn create_token(meta: &dyn MetaStore, spec: &TokenSpec, actor: &str) -> Result<NewToken> {
    let name = &spec.name;
    check_token_name(name)?;
    if let Some(secs) = spec.expires_in_secs
        && !(1..=MAX_TOKEN_LIFETIME_SECS).contains(&secs)
    {
        return Err(Error::BadRequest(format!(
            "token lifetime must be 1 to {MAX_TOKEN_LIFETIME_SECS} seconds, not {secs}"
        )));
    }
    let app = match (&spec.app, &spec.package) {
        (Some(app), None) => {
            return Err(Error::BadRequest(format!(
                "a token names app {app} only together with one of its packages"
            )));
        }
        (app, Some(package)) => match (meta.package_app(package).await?, app) {
            (Some(owner), Some(app)) if &owner != app => {
                return Err(Error::Conflict(format!(
                    "package {package} belongs to app {owner}, not {app}"
                )));
            }
            (Some(owner), _) => Some(owner),
            (None, Some(app)) => Some(app.clone()),
            (None, None) => {
                return Err(Error::NotFound(format!(
                    "package {package} (a token for a package not published yet names its app)"
                )));
            }
        },
        (None, None) => None,
    };
    let token = format!("{TOKEN_PREFIX}{}", random_hex(20)?);
    let created_at = now();
    let record = TokenRecord {
        name: name.clone(),
        hash: Digest::of(token.as_bytes()),
        scope: spec.scope,
        app,
        package: spec.package.clone(),
        created_at,
        expires_at: spec
            .expires_in_secs
            .map(|s| Timestamp::from_unix_secs(created_at.unix_secs().saturating_add(s))),
        revoked_at: None,
        last_used_at: None,
    };
    let audit = AuditEntry {
        at: created_at,
        actor: actor.to_owned(),
        action: "token.create".into(),
        target: name.clone(),
        detail: serde_json::json!({
            "scope": spec.scope.as_str(),
            "app": record.app.as_ref().map(AppId::as_str),
            "package": record.package.as_ref().map(PackageId::as_str),
            "expires_at": record.expires_at,
        })
        .to_string(),
    };
    meta.insert_token(&record, &audit).await?;
    Ok(NewToken {
        secret: token,
        record,
    })
}

/// Revokes the token named `name`: it is refused from then on, by every replica reading the
/// same metadata. Revoking twice keeps the first time.
///
/// # Errors
/// [`Error::NotFound`] when no token has that name.
pub async fn revoke_token(meta: &dyn MetaStore, name: &str, actor: &str) -> Result<TokenRecord> {
    let at = now();
    let audit = AuditEntry {
        at,
        actor: actor.to_owned(),
        action: "token.revoke".into(),
        target: name.to_owned(),
        detail: "{}".into(),
    };
    meta.revoke_token(name, at, &audit).await
}

/// Why `token` is not accepted at `at`, if it is not.
pub fn refusal(token: &TokenRecord, at: Timestamp) -> Option<String> {
    if let Some(revoked) = token.revoked_at {
        return Some(format!("was revoked at {revoked}"));
    }
    match token.expires_at {
        Some(expires) if expires <= at => Some(format!("expired at {expires}")),
        _ => None,
    }
}

impl Service {
    /// Creates a token and returns its secret, which is shown only this once.
    pub async fn create_token(&self, spec: &TokenSpec, actor: &str) -> Result<NewToken> {
        create_token(self.meta.as_ref(), spec, actor).await
    }

    /// Revokes the token named `name`.
    pub async fn revoke_token(&self, name: &str, actor: &str) -> Result<TokenRecord> {
        revoke_token(self.meta.as_ref(), name, actor).await
    }

    /// The caller holding `token`, who wants to `action`. Records the use (the token's
    /// last-used time and a `token.use` audit entry) when the last one recorded is older than
    /// [`TOKEN_USE_GRANULARITY_SECS`].
    ///
    /// # Errors
    /// [`Error::Unauthorized`] for a missing or unknown token, [`Error::TokenRefused`] for a
    /// revoked or expired one.
    pub async fn authenticate(&self, token: Option<&str>, action: &str) -> Result<Caller> {
        let token = token.ok_or(Error::Unauthorized)?;
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Err(Error::Unauthorized);
        }
        self.authenticate_hash(&Digest::of(token.as_bytes()), action)
            .await
    }

    /// As [`Service::authenticate`], for the token whose sha256 is `hash` (a console session
    /// keeps only the hash of the token it was opened with).
    ///
    /// # Errors
    /// As [`Service::authenticate`].
    pub async fn authenticate_hash(&self, hash: &Digest, action: &str) -> Result<Caller> {
        let mut record = self.meta.token(hash).await?.ok_or(Error::Unauthorized)?;
        let at = now();
        if let Some(reason) = refusal(&record, at) {
            return Err(Error::TokenRefused {
                name: record.name,
                reason,
            });
        }
        let stale = record.last_used_at.is_none_or(|last| {
            at.unix_secs() >= last.unix_secs().saturating_add(TOKEN_USE_GRANULARITY_SECS)
        });
        if stale {
            let audit = AuditEntry {
                at,
                actor: record.name.clone(),
                action: "token.use".into(),
                target: record.name.clone(),
                detail: serde_json::json!({ "to": action }).to_string(),
            };
            self.meta.token_used(&record.hash, at, &audit).await?;
            record.last_used_at = Some(at);
        }
        Ok(Caller { token: record })
    }
}
