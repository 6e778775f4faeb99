//! The driftwatch host agent.
//!
//! # Rooms, along the data path
//!
//! Drift data goes one way, from a filesystem event to the collector:
//!
//! ```text
//!  fs event (watch) ─► evaluate (scan, rules) ─► ledger ─► spool ─► ship ─► collector
//! ```
//!
//! The daemon drives the whole path; `check` and `baseline build` use its first rooms only.
//!
//! - [`watch`]: inotify watches over the recorded trees (the events), and over the nearest
//!   existing ancestors of those that are not there yet.
//! - [`scan`]: walking and hashing a root into baseline entries, nothing more;
//!   [`scan::throttle`] keeps background hashing polite.
//! - [`packages`]: the package inventory (dpkg, rpm, apk) and its diff.
//! - [`evaluate`]: comparing with the baseline (one path, or a whole root in
//!   [`evaluate::compare`](mod@evaluate::compare)), classifying severity, diffs; the baseline
//!   as evaluation holds it ([`evaluate::baseline`]: entries held compact, the rules it
//!   carries, the image it describes).
//! - [`ledger`]: the current drift set and its transitions (events).
//! - [`spool`]: the durable, crash-safe, bounded on-disk queue of events; it owns its lock and
//!   its release policy ([`spool::shared`]).
//! - [`ship`]: the stream to the collector (hello, batches, heartbeats, snapshots, acks,
//!   reconnects), and who the stream says this host is ([`ship::identity`]).
//! - [`daemon`]: `run`; batches events, is the single writer to ledger and spool, publishes
//!   the status, rescans, hashes large files off the event path, and starts the shipping; one
//!   select loop joins them.
//!
//! Read by all of them:
//!
//! - [`rules`]: the policy that scan, watch and evaluate all read (which trees, excludes, which
//!   attributes count, content capture, severities); top-level for that reason.
//! - [`config`]: the daemon's `agent.toml` and flags.
//! - [`fsutil`]: the one small home for file utilities: crash-safe replacement, paths inside
//!   the root vs on the host, and the baseline load (read, decode, check the signer) that the
//!   commands and the daemon share.
//! - [`errors`]: an error and its sources on one line.
//! - [`telemetry`]: Prometheus metrics, the status socket and the metrics listener.
//! - [`http_client`]: one-request HTTP/1.1 client (metadata service, status socket).
//!
//! The commands, on top: [`cli`] (the command line), [`bake`] (`baseline build`), [`check`]
//! (`check` and `baseline diff`), [`report`] (the drift report, as JSON and for people).
//!
//! # Which room may import which
//!
//! A module imports only modules on a lower level (and its own children), so there is no
//! cycle; `scan` in particular imports neither `evaluate` nor the baseline's entries. Nothing
//! imports the commands but `cli` (and `check` uses `report`); no room reaches back into `cli`.
//! Test code may use `bake` to build a fixture baseline. The graph, from `use crate::…` in
//! non-test code:
//!
//! ```text
//!  level  module           imports
//!  7      cli              anything
//!  6      check            evaluate packages report scan
//!  6      bake             packages rules scan ship::identity (the host name)
//!  5      report           evaluate packages rules scan
//!  5      daemon           config errors evaluate fsutil ledger packages rules scan ship spool
//!                          telemetry watch
//!  4      ship             config errors ledger spool telemetry (and its child identity)
//!  3      telemetry        evaluate (ImageInfo) http_client ledger
//!  2      evaluate         rules scan
//!  2      config           ship::identity (to validate an identity file)
//!  1      scan, watch      fsutil rules
//!  1      ledger, spool    fsutil
//!  1      ship::identity   fsutil http_client
//!  0      rules, fsutil, errors, http_client, packages: nothing
//! ```

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
