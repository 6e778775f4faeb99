//! driftwatch's collector: receives every agent's drift stream, stores current drift and
//! history, and answers fleet queries — gRPC, and a JSON API with the same shapes.
//!
//! The data flows one way, each room handing on to the next:
//!
//! ```text
//!  agents ──Ingest/Stream──► ingest ──► ingest::writer (group commit) ──► store (SQLite)
//!                                           │ committed events                 ▲
//!  operators ──Fleet, Iac, /api/v1──► query ◄┴──────── Watch          reads ──┘
//!                                       ▲
//!                      iac (correlation, followed states) ── reads store
//!  agents ──Enrollment/Enroll, Renew──► enroll (fleet CA signs) ──► store (tokens, keys, certificates)
//! ```
//!
//! - [`access`]: who is calling and what they may do, checked before every call.
//! - [`ingest`]: the agents' streams ([`ingest::writer`]: one writer, group commits).
//! - [`store`]: storage behind one trait of domain types ([`store::Store`]), its SQLite
//!   backend and the conformance suite every backend passes.
//! - [`query`]: the fleet queries over gRPC and the JSON API, and the live feed (`Watch`).
//! - [`iac`]: which IaC resource owns each host; states the collector follows itself.
//! - [`enroll`]: the fleet CA: hosts' certificates with a join token, renewals, revocation.
//! - [`status`]: the one place that turns errors into gRPC and HTTP statuses.
//! - [`server`]: one port for all of it, and its lifecycle; [`metrics`]; [`validate`]: `serve`'s
//!   options checked without serving (the systemd unit's `ExecStartPre`).
//!
//! Which room may import which: `store` imports none of the others; `access` imports `store`
//! (tokens); `ingest` imports `store` (and the `Caller` the access check hands it);
//! `iac` imports `store`; `enroll` imports `store` and `access`; `query` imports `store` and `iac`; `status` imports the error types;
//! `server` wires them all. The operator CLI (`driftwatch`) is a crate of its own
//! (`driftwatch-cli`); this crate links no CLI and no agent.

pub mod access;
pub mod enroll;
pub mod iac;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod server;
pub mod status;
pub mod store;
pub mod validate;
