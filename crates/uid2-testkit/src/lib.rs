//! Test harness of uid2-rs.
//!
//! - `uid2-proto-bridge` (a binary): one JSON command on stdin, one JSON answer on stdout, so
//!   that tests written against the official Python SDK can drive the protocol core directly.
//! - `uid2-client-bridge` (a binary): the same for the Rust client SDK (`uid2-client`), so that
//!   the Python conformance tests can check its answers on tokens the official SDK minted.
//! - [`answers`]: reading operator answers (the identities an identity map mapped).
//! - [`pg::PgCluster`]: a throwaway PostgreSQL cluster for the fleet tests.
//! - [`store::HookedStore`]: a real store with a hook before each operation, to refuse it
//!   (an outage) or to change the store underneath it (a concurrent writer).

pub mod answers;
pub mod pg;
pub mod store;
