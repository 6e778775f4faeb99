//! driftwatch's collector: receives every agent's drift stream, stores current drift and
//! history, and answers fleet queries (gRPC and a JSON API). Also the operator CLI
//! (`driftwatch`).

pub mod store;
