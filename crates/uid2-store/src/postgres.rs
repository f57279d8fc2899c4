//! PostgreSQL backend (fleet mode).
