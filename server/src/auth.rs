//! API tokens: random secrets handed out once, stored only as sha256, each with a scope and
//! optionally bound to one package.

use manifests::{Digest, PackageId};

use crate::error::{Error, Result};
use crate::meta_store::{AuditEntry, MetaStore, Scope, TokenRecord};
use crate::service::{Service, now};

/// The prefix of every token, so that secret scanners can recognise leaked ones.
pub const TOKEN_PREFIX: &str = "baleen_";

/// A token the caller proved to hold.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's record.
    pub token: TokenRecord,
}

impl Caller {
    /// Checks that the caller may do `action` with at least `needed` rights, on `package`
    /// when one is concerned.
    ///
    /// # Errors
    /// [`Error::Forbidden`] saying which scope was missing.
    pub fn require(&self, needed: Scope, package: Option<&PackageId>, action: &str) -> Result<()> {
        let forbidden = || Error::Forbidden {
            scope: match &self.token.package {
                Some(p) => format!("{} (package {p})", self.token.scope.as_str()),
                None => self.token.scope.as_str().to_owned(),
            },
            action: action.to_owned(),
        };
        if !self.token.scope.allows(needed) {
            return Err(forbidden());
        }
        match (&self.token.package, package) {
            (Some(bound), Some(p)) if bound != p => Err(forbidden()),
            (Some(_), None) => Err(forbidden()),
            _ => Ok(()),
        }
    }

    /// The name recorded as the actor.
    pub fn name(&self) -> &str {
        &self.token.name
    }
}

/// Creates a token and returns its secret, which is shown only this once.
pub async fn create_token(
    meta: &dyn MetaStore,
    name: &str,
    scope: Scope,
    package: Option<PackageId>,
    actor: &str,
) -> Result<String> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "token name must be 1 to 64 characters without control characters".into(),
        ));
    }
    let mut secret = [0u8; 20];
    getrandom::fill(&mut secret).map_err(|e| Error::Internal(format!("random source: {e}")))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let record = TokenRecord {
        name: name.to_owned(),
        hash: Digest::of(token.as_bytes()),
        scope,
        package: package.clone(),
        created_at: now(),
    };
    let audit = AuditEntry {
        at: record.created_at,
        actor: actor.to_owned(),
        action: "token.create".into(),
        target: name.to_owned(),
        detail: serde_json::json!({
            "scope": scope.as_str(),
            "package": package.as_ref().map(|p| p.as_str()),
        })
        .to_string(),
    };
    meta.insert_token(&record, &audit).await?;
    Ok(token)
}

impl Service {
    /// Creates a token and returns its secret, which is shown only this once.
    pub async fn create_token(
        &self,
        name: &str,
        scope: Scope,
        package: Option<PackageId>,
        actor: &str,
    ) -> Result<String> {
        create_token(self.meta.as_ref(), name, scope, package, actor).await
    }

    /// The caller holding `token`.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] for a missing or unknown token.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller> {
        let token = token.ok_or(Error::Unauthorized)?;
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Err(Error::Unauthorized);
        }
        let record = self
            .meta
            .token(&Digest::of(token.as_bytes()))
            .await?
            .ok_or(Error::Unauthorized)?;
        Ok(Caller { token: record })
    }
}
