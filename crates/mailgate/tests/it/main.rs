//! Integration tests of mailgate against real Postfix and Dovecot (started by scripts/test.sh)
//! and the test kit's stand-in for Microsoft's token endpoint.

mod api;
mod check;
mod credentials;
mod crash;
mod helpers;
mod hostile;
mod multinode;
mod openapi;
mod retrieve;
mod send;
mod ui;
