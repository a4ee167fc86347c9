//! What an account logs in with, resolved from the store: its password, or an access token
//! from its OAuth client (acting as the account's mailbox where the provider needs that).
//! The spool, the retriever and the diagnosis all resolve credentials here.

use mailgate_core::model::{Account, AuthMethod, OAuthClient, Secret};
use mailgate_store::{Store, Vault};

use crate::cache::{AccessToken, TokenCache};
use crate::error::TokenError;

/// An account's login material.
#[derive(Debug, Clone)]
pub enum Login {
    None,
    Password(Secret),
    Token { token: Box<AccessToken>, client: Box<OAuthClient> },
}

/// Why no login material could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoginError {
    /// Incomplete configuration (no password, no client, no secret): an admin must act.
    #[error("{0}")]
    Config(String),
    /// The store could not be read right now.
    #[error("{0}")]
    Unavailable(String),
    /// The token request failed.
    #[error("no access token from OAuth client '{client}': {error}")]
    Token { client: String, error: TokenError },
}

impl LoginError {
    pub fn is_temporary(&self) -> bool {
        match self {
            LoginError::Config(_) => false,
            LoginError::Unavailable(_) => true,
            LoginError::Token { error, .. } => error.is_temporary(),
        }
    }
}

/// Resolves `account`'s login; `fresh` requests a new token instead of a cached one.
pub async fn resolve(
    store: &dyn Store,
    vault: &Vault,
    tokens: &TokenCache,
    account: &Account,
    fresh: bool,
) -> Result<Login, LoginError> {
    let password = || -> Result<Secret, LoginError> {
        let sealed = account.password.as_ref().ok_or_else(|| LoginError::Config("the account has no password".into()))?;
        vault.open(sealed).map_err(|e| LoginError::Config(format!("{e:#}")))
    };
    match account.auth {
        AuthMethod::None => Ok(Login::None),
        AuthMethod::Plain | AuthMethod::Login => Ok(Login::Password(password()?)),
        AuthMethod::Xoauth2 => {
            let id = account.oauth_client_id.as_deref().ok_or_else(|| LoginError::Config("the account has no OAuth client".into()))?;
            let client = store.get_oauth_client(id).await.map_err(|e| LoginError::Unavailable(format!("OAuth client unavailable: {e}")))?;
            let sealed = client
                .secret
                .as_ref()
                .ok_or_else(|| LoginError::Config(format!("the OAuth client '{}' has no credential yet", client.name)))?;
            let credential = vault.open(sealed).map_err(|e| LoginError::Config(format!("{e:#}")))?;
            let subject = client.token_subject(&account.username);
            let token = if fresh {
                tokens.get_fresh(&client, &credential, subject).await
            } else {
                tokens.get(&client, &credential, subject).await
            };
            match token {
                Ok(token) => Ok(Login::Token { token: Box::new(token), client: Box::new(client) }),
                Err(error) => Err(LoginError::Token { client: client.name, error }),
            }
        }
    }
}
