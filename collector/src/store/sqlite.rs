//! The SQLite backend (embedded, the default).
