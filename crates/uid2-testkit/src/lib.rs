//! Test harness of uid2-rs.
//!
//! - `uid2-proto-bridge` (a binary): one JSON command on stdin, one JSON answer on stdout, so
//!   that tests written against the official Python SDK can drive the protocol core directly.
//! - [`pg::PgCluster`]: a throwaway PostgreSQL cluster for the fleet tests.

pub mod pg;
