//! The storage conformance suite: what every [`Store`] must do, whatever the database.
//!
//! Each case is a public function taking a fresh, empty store; [`conformance_tests!`] turns
//! every case into a `#[test]` for one backend (like quickwit's `metastore_test_suite!`):
//!
//! ```ignore
//! crate::store::conformance::conformance_tests!(fresh_sqlite_store());
//! ```
//!
//! The expression is evaluated once per test and must give something that dereferences to a
//! store (so it can carry the temporary directory or database it lives in).
//!
//! Times are fixed (from [`T0`]), never the clock: every assertion is exact.
//!
//! Cases live in `writes`, `model`, `queries` and `iac`; a new case is a public function there and its name
//! in the macro.

use std::time::Duration;

use driftwatch_proto::v1;

use driftwatch_proto::drift::{self, DriftItem, DriftKind, Facts, FileDrift};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::query::convert;

use super::{
    Applied, EventRecord, HistoryQuery, HostIdentity, HostInfo, HostQuery, ItemFilter, ItemRecord,
    Millis, Result, Severity, Store, StoreError, StreamHead, StreamRead, StreamState, Transition,
    Write, rfc3339,
};

mod credentials;
mod enrollment;
mod iac;
mod model;
mod queries;
mod writes;

pub use credentials::*;
pub use enrollment::*;
pub use iac::*;
pub use model::*;
pub use queries::*;
pub use writes::*;

/// Generates one `#[test]` per conformance case, each on a store made by `$make`.
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::store::conformance::conformance_tests!(@cases $make;
            hello_creates_then_updates_the_host,
            batches_apply_and_replays_are_idempotent,
            a_sequence_gap_is_rejected_and_stores_nothing,
            a_rejected_write_does_not_affect_the_others,
            a_resolved_event_removes_the_item,
            a_snapshot_replaces_the_set_and_records_the_differences,
            the_digest_follows_the_current_set,
            many_streams_are_read_at_once_as_one_by_one,
            a_batch_of_another_stream_is_rejected,
            seen_updates_last_seen,
            host_aggregates_follow_every_change,
            random_groups_keep_the_drift_set_and_its_counts_true,
            list_hosts_filters_and_sorts,
            get_host_by_identity_or_unambiguous_hostname,
            find_host_names_the_host_get_host_finds,
            list_paths_counts_hosts_per_path,
            list_causes_groups_identical_changes,
            history_filters_by_host_time_path_and_limit,
            history_is_ordered_by_receipt_then_by_storage,
            a_state_import_replaces_the_previous_one_and_refuses_older_serials,
            a_failed_state_import_leaves_the_previous_one_whole,
            pulumi_and_cloudformation_stacks_are_stored_and_read_back,
            manifest_imports_add_and_update_images,
            host_facts_carry_the_hello_identity_and_the_generation_moves,
            tokens_are_found_by_hash_until_revoked,
            a_token_expires,
            a_join_token_enrolls_as_many_hosts_as_it_allows_until_it_expires,
            a_token_for_an_image_enrolls_only_hosts_of_that_image,
            an_identity_is_bound_to_its_key_until_revoked,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let store = $make;
                $crate::store::conformance::$case(&*store);
            }
        )*
    };
}
pub(crate) use conformance_tests;

/// The time every case starts from (2023-11-14T22:13:20Z).
pub const T0: Millis = 1_700_000_000_000;
/// Hosts not heard from for this long are silent, in every query of the suite.
pub const SILENT_AFTER: Duration = Duration::from_secs(300);

// ---- Fixtures ----

/// A file item whose content changed; `actual` names the file's content.
pub fn item(path: &str, severity: &str, actual: &str) -> ItemRecord {
    item_with_diff(path, severity, actual, None)
}

pub fn item_with_diff(path: &str, severity: &str, actual: &str, diff: Option<&str>) -> ItemRecord {
    let facts = |content: &str| Facts {
        kind: driftwatch_proto::baseline::FileKind::Regular,
        mode: 0o644,
        owner: 0,
        group: 0,
        size: content.len() as u64,
        sha256: Some(Sha256::digest(content).into()),
        target: None,
        xattrs: vec![],
    };
    ItemRecord::new(&DriftItem::File(Box::new(FileDrift {
        path: path.into(),
        kind: DriftKind::Modified,
        changed: vec![drift::Attr::Content],
        severity: drift::Severity::parse(severity).expect("a severity"),
        reason: "content differs from the baseline".into(),
        expected: Some(facts("aa")),
        actual: Some(facts(actual)),
        diff: diff.map(str::to_owned),
    })))
}

/// An item as queries return it.
pub fn wire(item: &ItemRecord) -> v1::DriftItem {
    v1::DriftItem::decode(item.encoded.as_slice()).expect("an encoded item")
}

/// The digest of a set of items.
pub fn set_digest<const N: usize>(digests: [[u8; 32]; N]) -> [u8; 32] {
    drift::set_digest(&digests)
}

/// An event observed `seq` seconds after [`T0`].
pub fn event(seq: u64, transition: Transition, item: &ItemRecord) -> EventRecord {
    event_at(seq, transition, item, T0 + seq as Millis * 1000)
}

pub fn event_at(
    seq: u64,
    transition: Transition,
    item: &ItemRecord,
    observed_at: Millis,
) -> EventRecord {
    EventRecord {
        seq,
        transition,
        observed_at,
        item: item.clone(),
    }
}

pub fn drifted(seq: u64, item: &ItemRecord) -> EventRecord {
    event(seq, Transition::Drifted, item)
}

pub fn info(host: &str, hostname: &str) -> HostInfo {
    HostInfo {
        host: host.into(),
        identity: HostIdentity {
            source: "imds".into(),
            hostname: hostname.into(),
            cloud: "aws".into(),
            region: "eu-west-1".into(),
            instance_id: host.into(),
            image_id: "ami-0abc".into(),
            tags: [("aws:autoscaling:groupName".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        },
        agent_version: "0.1.0".into(),
        baseline_id: "b1".into(),
        image_name: "web".into(),
        image_version: "2024.06".into(),
        boot_id: "boot-1".into(),
    }
}

pub fn batch(host: &str, stream_id: &str, events: Vec<EventRecord>, received_at: Millis) -> Write {
    Write::Batch {
        host: host.into(),
        stream_id: stream_id.into(),
        events,
        received_at,
    }
}

/// Applies one write and returns its own result.
pub fn apply1(store: &dyn Store, write: Write) -> Result<Applied, StoreError> {
    let mut results = store.apply(&[write]).expect("the group commits");
    assert_eq!(results.len(), 1);
    results.remove(0)
}

/// A write's result in a comparable form (`StoreError` is not `PartialEq`).
pub fn done(result: &Result<Applied, StoreError>) -> Result<Applied, String> {
    match result {
        Ok(applied) => Ok(applied.clone()),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn applied(last_seq: u64, events: u64) -> Applied {
    Applied { last_seq, events }
}

fn rejected(result: Result<Applied, StoreError>) -> String {
    match result {
        Err(StoreError::Rejected(message)) => message,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn filter(severity: Option<Severity>, path: Option<&str>) -> ItemFilter {
    ItemFilter::new(severity, path).expect("a valid filter")
}

fn host_query(now: Millis, diverged: bool, filter: ItemFilter) -> HostQuery {
    HostQuery {
        filter,
        diverged,
        silent_after: SILENT_AFTER,
        now,
    }
}

/// The store's answers as clients get them (`query::convert`), so the cases say what a
/// client sees.
pub trait AsApi: Store {
    fn api(&self) -> Api<'_, Self> {
        Api(self)
    }
}

impl<S: Store + ?Sized> AsApi for S {}

pub struct Api<'a, S: ?Sized>(&'a S);

impl<S: Store + ?Sized> Api<'_, S> {
    pub fn get_host(&self, host: &str, query: &HostQuery) -> Result<Option<v1::HostDetail>> {
        self.0
            .get_host(host, query)?
            .map(convert::host_detail)
            .transpose()
    }

    pub fn list_paths(&self, filter: &ItemFilter, limit: usize) -> Result<Vec<v1::PathSummary>> {
        Ok(self
            .0
            .list_paths(filter, limit)?
            .iter()
            .map(convert::path_summary)
            .collect())
    }

    pub fn list_causes(
        &self,
        filter: &ItemFilter,
        min_hosts: usize,
        limit: usize,
    ) -> Result<Vec<v1::Cause>> {
        self.list_causes_capped(filter, min_hosts, limit, 0)
    }

    pub fn list_causes_capped(
        &self,
        filter: &ItemFilter,
        min_hosts: usize,
        limit: usize,
        max_hosts: usize,
    ) -> Result<Vec<v1::Cause>> {
        self.0
            .list_causes(filter, min_hosts, limit, max_hosts)?
            .into_iter()
            .map(convert::cause)
            .collect()
    }

    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<v1::HistoryEvent>> {
        self.0
            .history(query)?
            .iter()
            .map(convert::history_event)
            .collect()
    }
}

/// The listing as a client decodes it.
/// A row of the history as stored one per event before it was stored one per write (SQLite's
/// version 12, PostgreSQL's version 3): (host, stream, seq, transition, received_at, item,
/// source).
pub type EventRow = (
    &'static str,
    &'static str,
    Option<i64>,
    &'static str,
    i64,
    ItemRecord,
    &'static str,
);

/// Events as an older schema stored them, in the order stored: two hosts, writes of several
/// events and of one, and a snapshot's.
pub fn events_of_old() -> Vec<EventRow> {
    let a = item("/etc/a.conf", "security", "aa");
    let b = item("/etc/b.conf", "cosmetic", "bb");
    vec![
        ("i-1", "s1", Some(1), "drifted", 10, a.clone(), "stream"),
        ("i-1", "s1", Some(2), "changed", 10, b.clone(), "stream"),
        ("i-2", "s9", Some(1), "drifted", 10, b.clone(), "stream"),
        ("i-1", "s1", Some(3), "resolved", 10, a.clone(), "stream"),
        ("i-1", "s1", Some(4), "drifted", 20, a.clone(), "stream"),
        ("i-1", "s2", None, "changed", 30, a, "snapshot"),
        ("i-1", "s2", None, "resolved", 30, b, "snapshot"),
    ]
}

/// The (host, stream, first_seq, events) of the history rows [`events_of_old`] converts to.
pub fn events_of_old_as_rows() -> Vec<(String, String, Option<i64>, i64)> {
    let row = |host: &str, stream: &str, first: Option<i64>, events| {
        (host.to_owned(), stream.to_owned(), first, events)
    };
    vec![
        row("i-1", "s1", Some(1), 2),
        row("i-2", "s9", Some(1), 1),
        row("i-1", "s1", Some(3), 1),
        row("i-1", "s1", Some(4), 1),
        row("i-1", "s2", None, 2),
    ]
}

/// The store reads [`events_of_old`] back as they were stored.
pub fn assert_history_is(store: &dyn Store, rows: &[EventRow]) {
    let history = store
        .history(&HistoryQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let read: Vec<_> = history
        .iter()
        .map(|e| {
            let stored = &rows.iter().find(|r| r.5.subject == e.subject).unwrap().5;
            (
                e.host.as_str(),
                e.seq,
                e.transition.as_str(),
                e.received_at,
                e.subject.as_str(),
                e.severity,
                e.item == stored.encoded,
                e.source.as_str(),
            )
        })
        .collect();
    let expected: Vec<_> = rows
        .iter()
        .map(|(host, _, seq, transition, received_at, item, source)| {
            (
                *host,
                seq.map_or(0, |s| s as u64),
                *transition,
                *received_at,
                item.subject.as_str(),
                item.severity,
                true,
                *source,
            )
        })
        .collect();
    assert_eq!(read, expected);
}

pub fn hosts(store: &dyn Store, query: &HostQuery) -> Vec<v1::Host> {
    let listed = store.list_hosts(query).expect("list_hosts");
    listed
        .into_iter()
        .map(crate::query::listing::host)
        .collect()
}

fn names(hosts: &[v1::Host]) -> Vec<&str> {
    hosts.iter().map(|h| h.host.as_str()).collect()
}

fn drift_of(store: &dyn Store, host: &str) -> Vec<v1::DriftItem> {
    store
        .api()
        .get_host(host, &host_query(T0, false, ItemFilter::default()))
        .expect("get_host")
        .expect("the host exists")
        .drift
}

fn all_history(store: &dyn Store) -> Vec<v1::HistoryEvent> {
    store
        .api()
        .history(&HistoryQuery::default())
        .expect("history")
}
