//! mailgate's test kit: what the other crates' tests need besides the code under test.
//!
//! - [`idp`]: [`FakeIdp`], a stand-in for the Microsoft identity platform's v2.0 token endpoint
//!   (client credentials with a secret or a certificate's client assertion, Microsoft's `AADSTS`
//!   error bodies, real-size RS256 tokens) and for Google's token endpoint (service accounts'
//!   JWT bearer grant, opaque `ya29.` tokens), that also answers the test Dovecot's token
//!   introspection; [`IdpAdmin`] drives it over HTTP. The `mailgate-fake-idp` binary runs one
//!   for the test servers.
//! - [`certs`]: [`self_signed_certificate`] (Microsoft certificate credentials, also expired
//!   ones) and [`google_service_account_key`] (a Google key file and its registration), made
//!   with openssl.
//! - [`env`]: [`TestEnv`], the ports, paths and accounts of the real Postfix + Dovecot started by
//!   `scripts/test-env.sh`, and reading delivered mail from their Maildirs.
//! - [`proxy`]: [`TcpProxy`], a loopback TCP proxy a test can switch off ("server unreachable")
//!   and on again.
//! - [`poll`]: [`eventually`], polling with a deadline, because tests never sleep.

pub mod certs;
pub mod env;
pub mod hostile;
pub mod idp;
pub mod mailbox;
pub mod poll;
pub mod proxy;

pub use certs::{TestCertificate, google_service_account_key, self_signed_certificate};
pub use env::TestEnv;
pub use hostile::{HostileServer, Misbehaviour};
pub use idp::{Behaviour, ClientPatch, ClientSpec, FakeIdp, GoogleServiceAccountSpec, IdpAdmin, IdpStats, ROLE_IMAP, ROLE_SMTP, TenantSpec};
pub use poll::eventually;
pub use proxy::TcpProxy;
