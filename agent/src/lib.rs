//! The driftwatch host agent.
//!
//! - [`rules`]: the rules file (what to record, excludes, content capture, severities).
//! - [`scan`]: walking and hashing a root into baseline entries (and [`scan::throttle`]: hashing
//!   rate limit and low priority for rescans).
//! - [`spool`]: the durable, crash-safe, bounded on-disk queue of drift events; its lock and
//!   release policy ([`spool::shared`]).
//! - [`packages`]: the package inventory (dpkg, rpm, apk) and its diff.
//! - [`evaluate`]: comparing entries with the baseline; drift items, severity, diffs; the
//!   whole-root comparison ([`evaluate::compare`]) and the baseline's entries held compact
//!   ([`evaluate::baseline`]).
//! - [`bake`]: `baseline build`.
//! - [`fsutil`]: crash-safe file replacement, paths inside the root vs on the host, and the
//!   baseline load (read, decode, check the signer) that commands and daemon share.
//! - [`check`]: `check` and `baseline diff`.
//! - [`report`]: the drift report, as JSON and for people.
//! - [`config`]: the daemon's `agent.toml` and flags.
//! - [`watch`]: inotify watches over the recorded trees.
//! - [`ledger`]: the current drift set and its transitions (events).
//! - [`daemon`]: `run`, the daemon tying watcher, evaluation, ledger and spool together.
//! - [`telemetry`]: Prometheus metrics and the local status listener.
//! - [`http_client`]: one-request HTTP/1.1 client (metadata service, status listener).
//! - [`ship`]: the stream to the collector (hello, batches, heartbeats, snapshots, acks), and
//!   who the stream says this host is ([`ship::identity`]: cloud-init, instance metadata,
//!   machine-id).
//! - [`errors`]: an error and its sources on one line.
//! - [`cli`]: the command line.

pub mod bake;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod errors;
pub mod evaluate;
pub mod fsutil;
pub mod http_client;
pub mod ledger;
pub mod packages;
pub mod report;
pub mod rules;
pub mod scan;
pub mod ship;
pub mod spool;
pub mod telemetry;
pub mod watch;
