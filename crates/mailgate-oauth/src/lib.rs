//! OAuth2 access tokens for mail accounts (client credentials flow).
//!
//! - [`cache::TokenCache`]: one token per (client, subject), renewed before it expires, one
//!   request in flight per key however many workers ask; failures remembered briefly.
//! - [`fetch`]: the token request itself and the parsing of the provider's answer.
//! - [`error::TokenError`]: what went wrong, whether a retry can help, and for Microsoft's
//!   `AADSTS` codes the likely cause and the setup step that fixes it ([`aadsts`]).
//! - [`claims`]: reads an access token's claims (`aud`, `tid`, `roles`, …) for diagnosis;
//!   the signature is not verified — the mail server does that.

pub mod aadsts;
pub mod account;
pub mod assertion;
pub mod cache;
pub mod claims;
pub mod error;
pub mod fetch;

pub use cache::{AccessToken, TokenCache};
pub use claims::TokenClaims;
pub use error::TokenError;
