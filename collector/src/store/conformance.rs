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

use std::collections::BTreeSet;
use std::time::Duration;

use driftwatch_proto::v1;

use super::item::set_digest;
use super::{
    Applied, EventRecord, HistoryQuery, HostInfo, HostQuery, ItemFilter, ItemRecord, Millis,
    Severity, Store, StoreError, StreamState, Transition, Write, rfc3339,
};

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
            a_batch_of_another_stream_is_rejected,
            seen_updates_last_seen,
            list_hosts_filters_and_sorts,
            get_host_by_identity_or_unambiguous_hostname,
            list_paths_counts_hosts_per_path,
            list_causes_groups_identical_changes,
            history_filters_by_host_time_path_and_limit,
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

/// A file item shaped like `check --json`'s; `actual` names the file's content.
pub fn item(path: &str, severity: &str, actual: &str) -> ItemRecord {
    let json = format!(
        r#"{{"path":"{path}","kind":"modified","changed":["content"],"severity":"{severity}","reason":"content differs from the baseline","expected":{{"sha256":"aa"}},"actual":{{"sha256":"{actual}"}},"diff":null}}"#
    );
    ItemRecord::parse(json).expect("a valid test item")
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
        identity: v1::HostIdentity {
            host: host.into(),
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
    result
        .as_ref()
        .map(Applied::clone)
        .map_err(|e| format!("{e:?}"))
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

fn hosts(store: &dyn Store, query: &HostQuery) -> Vec<v1::Host> {
    store.list_hosts(query).expect("list_hosts")
}

fn names(hosts: &[v1::Host]) -> Vec<&str> {
    hosts.iter().map(|h| h.host.as_str()).collect()
}

fn drift_of(store: &dyn Store, host: &str) -> Vec<String> {
    store
        .get_host(host, &host_query(T0, false, ItemFilter::default()))
        .expect("get_host")
        .expect("the host exists")
        .drift
}

fn all_history(store: &dyn Store) -> Vec<v1::HistoryEvent> {
    store.history(&HistoryQuery::default()).expect("history")
}

// ---- Cases ----

pub fn hello_creates_then_updates_the_host(store: &dyn Store) {
    assert_eq!(
        store.hello(&info("i-1", "web-1"), T0).unwrap(),
        StreamState::default()
    );
    let listed = hosts(store, &host_query(T0, false, ItemFilter::default()));
    assert_eq!(
        listed,
        vec![v1::Host {
            host: "i-1".into(),
            hostname: "web-1".into(),
            drift_count: 0,
            max_severity: None,
            last_seen: rfc3339(T0),
            status: "online".into(),
            image: "web 2024.06".into(),
            image_id: "ami-0abc".into(),
            baseline_id: "b1".into(),
            agent_version: "0.1.0".into(),
            first_seen: rfc3339(T0),
            drifted_since: None,
            identity_source: "imds".into(),
            last_seq: 0,
        }]
    );

    let mut again = info("i-1", "web-1b");
    again.agent_version = "0.2.0".into();
    again.baseline_id = "b2".into();
    again.image_name = "".into();
    again.image_version = "".into();
    store.hello(&again, T0 + 5_000).unwrap();
    let host = &hosts(store, &host_query(T0 + 5_000, false, ItemFilter::default()))[0];
    assert_eq!(host.hostname, "web-1b");
    assert_eq!(host.agent_version, "0.2.0");
    assert_eq!(host.baseline_id, "b2");
    assert_eq!(host.image, "");
    assert_eq!(host.first_seen, rfc3339(T0), "first_seen stays");
    assert_eq!(host.last_seen, rfc3339(T0 + 5_000));

    let a = item("/etc/a.conf", "behavioral", "bb");
    apply1(store, batch("i-1", "s1", vec![drifted(1, &a)], T0 + 6_000)).unwrap();
    assert_eq!(
        store.hello(&again, T0 + 7_000).unwrap(),
        StreamState {
            stream_id: "s1".into(),
            last_seq: 1
        },
        "a hello reports where the stream stands"
    );
}

pub fn batches_apply_and_replays_are_idempotent(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let a = item("/etc/a.conf", "behavioral", "bb");
    let a2 = item("/etc/a.conf", "behavioral", "cc");
    let b = item("/etc/b.conf", "cosmetic", "bb");
    let first = batch(
        "i-1",
        "s1",
        vec![
            drifted(1, &a),
            drifted(2, &b),
            event(3, Transition::Changed, &a2),
        ],
        T0 + 10_000,
    );
    assert_eq!(done(&apply1(store, first.clone())), Ok(applied(3, 3)));
    assert_eq!(all_history(store).len(), 3);

    assert_eq!(
        done(&apply1(store, first)),
        Ok(applied(3, 0)),
        "a replay stores nothing"
    );
    assert_eq!(all_history(store).len(), 3);

    let overlapping = batch(
        "i-1",
        "s1",
        vec![
            event(3, Transition::Changed, &a2),
            event(4, Transition::Resolved, &b),
        ],
        T0 + 20_000,
    );
    assert_eq!(done(&apply1(store, overlapping)), Ok(applied(4, 1)));
    let history = all_history(store);
    assert_eq!(
        history.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(history.iter().all(|e| e.source == "stream"));
    assert_eq!(drift_of(store, "i-1"), vec![a2.json.clone()]);
}

pub fn a_sequence_gap_is_rejected_and_stores_nothing(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let a = item("/etc/a.conf", "behavioral", "bb");
    let b = item("/etc/b.conf", "behavioral", "bb");
    let c = item("/etc/c.conf", "behavioral", "bb");
    apply1(
        store,
        batch("i-1", "s1", vec![drifted(1, &a), drifted(2, &b)], T0),
    )
    .unwrap();
    let before = (store.digest("i-1").unwrap(), all_history(store));

    let message = rejected(apply1(
        store,
        batch("i-1", "s1", vec![drifted(4, &c)], T0 + 1_000),
    ));
    assert!(
        message.contains("expected") && message.contains('3') && message.contains('4'),
        "the message names the expected and the received sequence numbers: {message}"
    );
    // A gap inside the batch: its first event (which would fit) is not stored either.
    rejected(apply1(
        store,
        batch(
            "i-1",
            "s1",
            vec![drifted(3, &c), event(5, Transition::Resolved, &a)],
            T0 + 2_000,
        ),
    ));
    // Out of order.
    rejected(apply1(
        store,
        batch(
            "i-1",
            "s1",
            vec![drifted(4, &c), drifted(3, &c)],
            T0 + 2_000,
        ),
    ));
    assert_eq!((store.digest("i-1").unwrap(), all_history(store)), before);
}

pub fn a_rejected_write_does_not_affect_the_others(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    store.hello(&info("i-2", "web-2"), T0).unwrap();
    let a = item("/etc/a.conf", "behavioral", "bb");
    let b = item("/etc/b.conf", "security", "bb");
    let results = store
        .apply(&[
            batch("i-1", "s1", vec![drifted(1, &a)], T0 + 1_000),
            batch("i-2", "s1", vec![drifted(2, &a)], T0 + 1_000),
            batch("i-9", "s1", vec![drifted(1, &a)], T0 + 1_000),
            Write::Seen {
                host: "i-1".into(),
                at: T0 + 1_500,
            },
            // Depends on the first write of the same group.
            batch("i-1", "s1", vec![drifted(2, &b)], T0 + 2_000),
        ])
        .unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(done(&results[0]), Ok(applied(1, 1)));
    assert!(matches!(results[1], Err(StoreError::Rejected(_))));
    let unknown = match &results[2] {
        Err(StoreError::Rejected(m)) => m.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert!(unknown.contains("i-9"), "{unknown}");
    assert_eq!(done(&results[3]), Ok(applied(1, 0)));
    assert_eq!(done(&results[4]), Ok(applied(2, 1)));

    assert_eq!(drift_of(store, "i-1"), vec![b.json.clone(), a.json.clone()]);
    assert!(drift_of(store, "i-2").is_empty());
    assert_eq!(
        store.digest("i-2").unwrap().unwrap().0,
        StreamState::default()
    );
    assert_eq!(all_history(store).len(), 2);
    assert_eq!(
        names(&hosts(store, &host_query(T0, false, ItemFilter::default()))),
        ["i-1", "i-2"],
        "a batch for an unknown host creates nothing"
    );
}

pub fn a_resolved_event_removes_the_item(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let a = item("/etc/a.conf", "security", "bb");
    let b = item("/etc/b.conf", "behavioral", "bb");
    apply1(
        store,
        batch("i-1", "s1", vec![drifted(1, &a), drifted(2, &b)], T0),
    )
    .unwrap();
    apply1(
        store,
        batch(
            "i-1",
            "s1",
            vec![event(3, Transition::Resolved, &a)],
            T0 + 1_000,
        ),
    )
    .unwrap();
    assert_eq!(drift_of(store, "i-1"), vec![b.json.clone()]);
    let host = &hosts(store, &host_query(T0, false, ItemFilter::default()))[0];
    assert_eq!(host.drift_count, 1);
    assert_eq!(host.max_severity.as_deref(), Some("behavioral"));
    assert_eq!(host.drifted_since, Some(rfc3339(T0 + 2_000)));
    let last = all_history(store).pop().unwrap();
    assert_eq!(
        (last.seq, last.event.as_str(), last.path.as_str()),
        (3, "resolved", "/etc/a.conf")
    );

    apply1(
        store,
        batch(
            "i-1",
            "s1",
            vec![event(4, Transition::Resolved, &b)],
            T0 + 2_000,
        ),
    )
    .unwrap();
    let host = &hosts(store, &host_query(T0, false, ItemFilter::default()))[0];
    assert_eq!(
        (host.drift_count, &host.max_severity, &host.drifted_since),
        (0, &None, &None)
    );
    assert!(
        hosts(store, &host_query(T0, true, ItemFilter::default())).is_empty(),
        "a clean host is not diverged"
    );
}

pub fn a_snapshot_replaces_the_set_and_records_the_differences(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let a = item("/etc/a.conf", "behavioral", "bb");
    let b = item("/etc/b.conf", "behavioral", "bb");
    let b2 = item("/etc/b.conf", "security", "cc");
    let c = item("/etc/c.conf", "cosmetic", "bb");
    let d = item("/etc/d.conf", "behavioral", "bb");
    apply1(
        store,
        batch(
            "i-1",
            "s1",
            vec![drifted(1, &a), drifted(2, &b), drifted(3, &c)],
            T0 + 5_000,
        ),
    )
    .unwrap();

    let at = T0 + 9_000;
    let snapshot = Write::Snapshot {
        host: "i-1".into(),
        stream_id: "s2".into(),
        seq: 7,
        items: vec![d.clone(), a.clone(), b2.clone()],
        received_at: at,
    };
    assert_eq!(done(&apply1(store, snapshot.clone())), Ok(applied(7, 3)));
    assert_eq!(
        drift_of(store, "i-1"),
        vec![b2.json.clone(), a.json.clone(), d.json.clone()]
    );
    let mut derived: Vec<_> = all_history(store)
        .into_iter()
        .filter(|e| e.source == "snapshot")
        .map(|e| {
            assert_eq!(e.seq, 0);
            assert_eq!(
                (&e.observed_at, &e.received_at),
                (&rfc3339(at), &rfc3339(at))
            );
            (e.path, e.event, e.severity, e.item)
        })
        .collect();
    derived.sort();
    assert_eq!(
        derived,
        vec![
            (
                "/etc/b.conf".into(),
                "changed".into(),
                "security".into(),
                b2.json.clone()
            ),
            (
                "/etc/c.conf".into(),
                "resolved".into(),
                "cosmetic".into(),
                c.json.clone()
            ),
            (
                "/etc/d.conf".into(),
                "drifted".into(),
                "behavioral".into(),
                d.json.clone()
            ),
        ],
        "exactly the differences, nothing for the unchanged item"
    );
    let (state, digest) = store.digest("i-1").unwrap().unwrap();
    assert_eq!(
        state,
        StreamState {
            stream_id: "s2".into(),
            last_seq: 7
        }
    );
    assert_eq!(digest, set_digest(vec![a.sha256, b2.sha256, d.sha256]));
    let host = &hosts(store, &host_query(at, false, ItemFilter::default()))[0];
    assert_eq!(host.drift_count, 3);
    assert_eq!(host.max_severity.as_deref(), Some("security"));
    assert_eq!(
        host.drifted_since,
        Some(rfc3339(T0 + 1_000)),
        "the unchanged item keeps when it drifted"
    );

    assert_eq!(
        done(&apply1(store, snapshot)),
        Ok(applied(7, 0)),
        "the same snapshot again changes nothing"
    );
    assert_eq!(
        done(&apply1(
            store,
            batch("i-1", "s2", vec![event(8, Transition::Resolved, &d)], at)
        )),
        Ok(applied(8, 1)),
        "the snapshot's stream continues after its sequence number"
    );
    rejected(apply1(store, batch("i-1", "s1", vec![drifted(4, &d)], at)));

    let twice = Write::Snapshot {
        host: "i-1".into(),
        stream_id: "s3".into(),
        seq: 1,
        items: vec![a.clone(), a.clone()],
        received_at: at,
    };
    rejected(apply1(store, twice));
    let unknown = Write::Snapshot {
        host: "i-9".into(),
        stream_id: "s1".into(),
        seq: 1,
        items: vec![a.clone()],
        received_at: at,
    };
    rejected(apply1(store, unknown));
    assert_eq!(
        store.digest("i-1").unwrap().unwrap().0.last_seq,
        8,
        "rejected snapshots change nothing"
    );

    let empty = Write::Snapshot {
        host: "i-1".into(),
        stream_id: "s3".into(),
        seq: 2,
        items: vec![],
        received_at: at + 1_000,
    };
    assert_eq!(done(&apply1(store, empty)), Ok(applied(2, 2)));
    assert!(drift_of(store, "i-1").is_empty());
    assert_eq!(
        store.digest("i-1").unwrap().unwrap(),
        (
            StreamState {
                stream_id: "s3".into(),
                last_seq: 2
            },
            set_digest(vec![])
        )
    );
}

pub fn the_digest_follows_the_current_set(store: &dyn Store) {
    assert_eq!(store.digest("i-1").unwrap(), None);
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    assert_eq!(
        store.digest("i-1").unwrap(),
        Some((StreamState::default(), set_digest(vec![])))
    );
    let a = item("/etc/a.conf", "behavioral", "bb");
    let a2 = item("/etc/a.conf", "behavioral", "cc");
    let b = item("/etc/b.conf", "behavioral", "bb");
    apply1(
        store,
        batch("i-1", "s1", vec![drifted(1, &a), drifted(2, &b)], T0),
    )
    .unwrap();
    let (state, first) = store.digest("i-1").unwrap().unwrap();
    assert_eq!(
        state,
        StreamState {
            stream_id: "s1".into(),
            last_seq: 2
        }
    );
    assert_eq!(first, set_digest(vec![a.sha256, b.sha256]));

    apply1(
        store,
        batch("i-1", "s1", vec![event(3, Transition::Changed, &a2)], T0),
    )
    .unwrap();
    let (_, changed) = store.digest("i-1").unwrap().unwrap();
    assert_ne!(changed, first);
    assert_eq!(changed, set_digest(vec![b.sha256, a2.sha256]));

    apply1(
        store,
        batch("i-1", "s1", vec![event(4, Transition::Resolved, &b)], T0),
    )
    .unwrap();
    assert_eq!(
        store.digest("i-1").unwrap().unwrap().1,
        set_digest(vec![a2.sha256])
    );
}

pub fn a_batch_of_another_stream_is_rejected(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let a = item("/etc/a.conf", "behavioral", "bb");
    apply1(store, batch("i-1", "s1", vec![drifted(1, &a)], T0)).unwrap();
    let message = rejected(apply1(store, batch("i-1", "s2", vec![drifted(1, &a)], T0)));
    assert!(message.contains("snapshot"), "{message}");
    assert_eq!(
        store.digest("i-1").unwrap().unwrap().0,
        StreamState {
            stream_id: "s1".into(),
            last_seq: 1
        }
    );
    assert_eq!(all_history(store).len(), 1);

    // A new host adopts the stream of its first batch.
    store.hello(&info("i-2", "web-2"), T0).unwrap();
    apply1(store, batch("i-2", "s9", vec![drifted(1, &a)], T0)).unwrap();
    assert_eq!(
        store.digest("i-2").unwrap().unwrap().0,
        StreamState {
            stream_id: "s9".into(),
            last_seq: 1
        }
    );
}

pub fn seen_updates_last_seen(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let later = T0 + 600_000;
    let silent = &hosts(store, &host_query(later, false, ItemFilter::default()))[0];
    assert_eq!(silent.status, "silent");

    let seen = |at| Write::Seen {
        host: "i-1".into(),
        at,
    };
    assert_eq!(done(&apply1(store, seen(later - 1_000))), Ok(applied(0, 0)));
    let online = &hosts(store, &host_query(later, false, ItemFilter::default()))[0];
    assert_eq!(online.status, "online");
    assert_eq!(online.last_seen, rfc3339(later - 1_000));

    rejected(apply1(
        store,
        Write::Seen {
            host: "i-9".into(),
            at: later,
        },
    ));
}

/// Four hosts: i-1 has a security and a behavioral item, i-2 two behavioral and a cosmetic
/// one, i-4 one behavioral, i-3 none (and is silent).
fn fleet(store: &dyn Store) -> Millis {
    for (host, name) in [
        ("i-1", "web-1"),
        ("i-2", "web-2"),
        ("i-3", "db-1"),
        ("i-4", "app-1"),
    ] {
        store.hello(&info(host, name), T0).unwrap();
    }
    let now = T0 + 600_000;
    let writes = [
        batch(
            "i-1",
            "s1",
            vec![
                drifted(1, &item("/etc/ssh/sshd_config", "security", "bb")),
                drifted(2, &item("/etc/nginx/nginx.conf", "behavioral", "bb")),
            ],
            now - 1_000,
        ),
        batch(
            "i-2",
            "s1",
            vec![
                event_at(
                    1,
                    Transition::Drifted,
                    &item("/etc/nginx/nginx.conf", "behavioral", "bb"),
                    T0 + 3_000,
                ),
                event_at(
                    2,
                    Transition::Drifted,
                    &item("/etc/nginx/conf.d/site.conf", "behavioral", "bb"),
                    T0 + 4_000,
                ),
                event_at(
                    3,
                    Transition::Drifted,
                    &item("/etc/motd", "cosmetic", "bb"),
                    T0 + 5_000,
                ),
            ],
            now - 1_000,
        ),
        batch(
            "i-4",
            "s1",
            vec![event_at(
                1,
                Transition::Drifted,
                &item("/opt/app/config.yml", "behavioral", "bb"),
                T0 + 6_000,
            )],
            now - 1_000,
        ),
    ];
    for result in store.apply(&writes).unwrap() {
        result.unwrap();
    }
    now
}

pub fn list_hosts_filters_and_sorts(store: &dyn Store) {
    let now = fleet(store);
    let list =
        |diverged, severity, path| hosts(store, &host_query(now, diverged, filter(severity, path)));

    let all = list(false, None, None);
    assert_eq!(
        names(&all),
        ["i-1", "i-2", "i-4", "i-3"],
        "worst first, then most drift"
    );
    let counts: Vec<_> = all
        .iter()
        .map(|h| (h.drift_count, h.max_severity.as_deref()))
        .collect();
    assert_eq!(
        counts,
        [
            (2, Some("security")),
            (3, Some("behavioral")),
            (1, Some("behavioral")),
            (0, None)
        ]
    );
    assert_eq!(all[0].drifted_since, Some(rfc3339(T0 + 1_000)));
    assert_eq!(all[1].drifted_since, Some(rfc3339(T0 + 3_000)));
    assert_eq!(all[3].drifted_since, None);
    let status: Vec<_> = all.iter().map(|h| h.status.as_str()).collect();
    assert_eq!(status, ["online", "online", "online", "silent"]);
    assert_eq!(all[0].last_seq, 2);

    assert_eq!(names(&list(true, None, None)), ["i-1", "i-2", "i-4"]);

    let behavioral = list(true, Some(Severity::Behavioral), None);
    assert_eq!(names(&behavioral), ["i-1", "i-2", "i-4"]);
    assert_eq!(
        behavioral[1].drift_count, 2,
        "the cosmetic item does not count"
    );
    let security = list(true, Some(Severity::Security), None);
    assert_eq!(names(&security), ["i-1"]);
    assert_eq!(security[0].drift_count, 1);
    assert_eq!(security[0].drifted_since, Some(rfc3339(T0 + 1_000)));
    let cosmetic = list(false, Some(Severity::Cosmetic), None);
    assert_eq!(
        cosmetic.len(),
        4,
        "cosmetic is the least severity: everything counts"
    );
    assert_eq!(cosmetic[1].drift_count, 3);

    let one_level = list(true, None, Some("/etc/nginx/*"));
    assert_eq!(
        names(&one_level),
        ["i-1", "i-2"],
        "`*` stays within a directory"
    );
    assert!(one_level.iter().all(|h| h.drift_count == 1));
    let deep = list(true, None, Some("/etc/nginx/**"));
    assert_eq!(names(&deep), ["i-2", "i-1"]);
    assert_eq!(deep[0].drift_count, 2);
    assert_eq!(deep[0].drifted_since, Some(rfc3339(T0 + 3_000)));
    assert_eq!(deep[0].max_severity.as_deref(), Some("behavioral"));
    assert_eq!(
        names(&list(false, None, Some("/etc/nginx/**"))),
        ["i-2", "i-1", "i-3", "i-4"],
        "without `diverged`, every host, those without matching items as clean"
    );
    assert_eq!(
        names(&list(true, Some(Severity::Security), Some("/etc/**"))),
        ["i-1"]
    );
    assert_eq!(
        names(&list(true, None, Some("/etc/m*"))),
        ["i-2"],
        "a literal prefix that is not a directory"
    );
    assert_eq!(names(&list(true, None, Some("**/config.yml"))), ["i-4"]);
    assert!(list(true, None, Some("/var/**")).is_empty());
}

pub fn get_host_by_identity_or_unambiguous_hostname(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    store.hello(&info("i-2", "web-2"), T0).unwrap();
    store.hello(&info("i-3", "web-2"), T0).unwrap();
    let items = [
        item("/a/z", "cosmetic", "bb"),
        item("/z/a", "security", "bb"),
        item("/b", "behavioral", "bb"),
        item("/c", "security", "bb"),
    ];
    let events = items
        .iter()
        .enumerate()
        .map(|(i, it)| drifted(i as u64 + 1, it))
        .collect();
    apply1(store, batch("i-1", "s1", events, T0)).unwrap();
    let query = host_query(T0, false, ItemFilter::default());

    let detail = store.get_host("i-1", &query).unwrap().unwrap();
    let host = detail.host.unwrap();
    assert_eq!((host.host.as_str(), host.drift_count), ("i-1", 4));
    assert_eq!(
        detail.drift,
        [&items[3], &items[1], &items[2], &items[0]].map(|i| i.json.clone()),
        "security first, then by path"
    );

    let by_name = store.get_host("web-1", &query).unwrap().unwrap();
    assert_eq!(by_name.host.unwrap().host, "i-1");
    assert_eq!(
        store.get_host("web-2", &query).unwrap(),
        None,
        "an ambiguous hostname"
    );
    assert_eq!(store.get_host("nope", &query).unwrap(), None);
    assert_eq!(store.get_host("", &query).unwrap(), None);

    let security = host_query(T0, false, filter(Some(Severity::Security), None));
    let detail = store.get_host("i-1", &security).unwrap().unwrap();
    assert_eq!(detail.drift, [&items[3], &items[1]].map(|i| i.json.clone()));
    assert_eq!(detail.host.unwrap().drift_count, 2);
}

pub fn list_paths_counts_hosts_per_path(store: &dyn Store) {
    for host in ["i-1", "i-2", "i-3"] {
        store.hello(&info(host, host), T0).unwrap();
    }
    let nginx = item("/etc/nginx/nginx.conf", "behavioral", "bb");
    let nginx_sec = item("/etc/nginx/nginx.conf", "security", "cc");
    let sshd = item("/etc/ssh/sshd_config", "security", "bb");
    let motd = item("/etc/motd", "cosmetic", "bb");
    let writes = [
        batch(
            "i-1",
            "s1",
            vec![
                event_at(1, Transition::Drifted, &nginx, T0 + 1_000),
                event_at(2, Transition::Drifted, &sshd, T0 + 2_000),
            ],
            T0,
        ),
        batch(
            "i-2",
            "s1",
            vec![
                event_at(1, Transition::Drifted, &nginx, T0 + 3_000),
                event_at(2, Transition::Drifted, &motd, T0 + 4_000),
            ],
            T0,
        ),
        batch(
            "i-3",
            "s1",
            vec![event_at(1, Transition::Drifted, &nginx_sec, T0 + 5_000)],
            T0,
        ),
    ];
    for result in store.apply(&writes).unwrap() {
        result.unwrap();
    }

    let paths = store.list_paths(&ItemFilter::default(), 0).unwrap();
    assert_eq!(
        paths,
        vec![
            v1::PathSummary {
                path: "/etc/nginx/nginx.conf".into(),
                hosts: 3,
                max_severity: "security".into(),
                first_observed: rfc3339(T0 + 1_000),
                last_observed: rfc3339(T0 + 5_000),
            },
            v1::PathSummary {
                path: "/etc/motd".into(),
                hosts: 1,
                max_severity: "cosmetic".into(),
                first_observed: rfc3339(T0 + 4_000),
                last_observed: rfc3339(T0 + 4_000),
            },
            v1::PathSummary {
                path: "/etc/ssh/sshd_config".into(),
                hosts: 1,
                max_severity: "security".into(),
                first_observed: rfc3339(T0 + 2_000),
                last_observed: rfc3339(T0 + 2_000),
            },
        ]
    );
    let limited = store.list_paths(&ItemFilter::default(), 1).unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].path, "/etc/nginx/nginx.conf");

    let paths_of = |f: ItemFilter| -> Vec<(String, u64)> {
        store
            .list_paths(&f, 0)
            .unwrap()
            .into_iter()
            .map(|p| (p.path, p.hosts))
            .collect()
    };
    assert_eq!(
        paths_of(filter(None, Some("/etc/ssh/*"))),
        [("/etc/ssh/sshd_config".to_owned(), 1)]
    );
    assert_eq!(
        paths_of(filter(Some(Severity::Security), None)),
        [
            ("/etc/nginx/nginx.conf".to_owned(), 1),
            ("/etc/ssh/sshd_config".to_owned(), 1)
        ]
    );
    assert!(paths_of(filter(None, Some("/usr/**"))).is_empty());
}

pub fn list_causes_groups_identical_changes(store: &dyn Store) {
    for host in ["i-1", "i-2", "i-3"] {
        store.hello(&info(host, host), T0).unwrap();
    }
    let same = item("/etc/nginx/nginx.conf", "behavioral", "cc");
    // The same change, described with a different diff text: still the same cause.
    let same_other_text = ItemRecord::parse(
        same.json
            .replace(r#""diff":null"#, r#""diff":"--- a\n+++ b\n""#),
    )
    .unwrap();
    let different = item("/etc/nginx/nginx.conf", "behavioral", "dd");
    let sshd = item("/etc/ssh/sshd_config", "security", "bb");
    let writes = [
        batch("i-2", "s1", vec![drifted(1, &same)], T0),
        batch(
            "i-1",
            "s1",
            vec![drifted(1, &same_other_text), drifted(2, &sshd)],
            T0,
        ),
        batch("i-3", "s1", vec![drifted(1, &different)], T0),
    ];
    for result in store.apply(&writes).unwrap() {
        result.unwrap();
    }

    let causes = store.list_causes(&ItemFilter::default(), 0, 0).unwrap();
    assert_eq!(causes.len(), 3);
    let top = &causes[0];
    assert_eq!(top.cause, same.cause);
    assert_eq!(top.path, "/etc/nginx/nginx.conf");
    assert_eq!(top.kind, "modified");
    assert_eq!(top.severity, "behavioral");
    assert_eq!(top.changed, ["content"]);
    assert_eq!(top.host_count, 2);
    assert_eq!(top.hosts, ["i-1", "i-2"]);
    assert!(
        top.example == same.json || top.example == same_other_text.json,
        "the example is one item of the group: {}",
        top.example
    );
    let singles: BTreeSet<_> = causes[1..].iter().map(|c| c.cause.clone()).collect();
    assert_eq!(
        singles,
        BTreeSet::from([different.cause.clone(), sshd.cause.clone()])
    );
    assert!(causes[1..].iter().all(|c| c.host_count == 1));

    let shared = store.list_causes(&ItemFilter::default(), 2, 0).unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].cause, same.cause);
    assert_eq!(
        store.list_causes(&ItemFilter::default(), 0, 1).unwrap(),
        shared,
        "a limit keeps the most shared"
    );
    let ssh = store
        .list_causes(&filter(None, Some("/etc/ssh/*")), 0, 0)
        .unwrap();
    assert_eq!(ssh.len(), 1);
    assert_eq!(
        (
            ssh[0].cause.as_str(),
            ssh[0].severity.as_str(),
            ssh[0].example.as_str()
        ),
        (sshd.cause.as_str(), "security", sshd.json.as_str())
    );
    let security = store
        .list_causes(&filter(Some(Severity::Security), None), 0, 0)
        .unwrap();
    assert_eq!(security.len(), 1);
    assert_eq!(security[0].hosts, ["i-1"]);
}

pub fn history_filters_by_host_time_path_and_limit(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    store.hello(&info("i-2", "web-2"), T0).unwrap();
    let a = item("/etc/a.conf", "behavioral", "bb");
    let b = item("/etc/b.conf", "security", "bb");
    let c = item("/etc/c.conf", "cosmetic", "bb");
    apply1(
        store,
        batch(
            "i-1",
            "s1",
            vec![drifted(1, &a), drifted(2, &b)],
            T0 + 10_000,
        ),
    )
    .unwrap();
    apply1(store, batch("i-2", "s1", vec![drifted(1, &a)], T0 + 15_000)).unwrap();
    apply1(store, batch("i-1", "s1", vec![drifted(3, &c)], T0 + 20_000)).unwrap();

    let query = |host: &str, since, path, limit| {
        store
            .history(&HistoryQuery {
                host: host.into(),
                since,
                filter: filter(None, path),
                limit,
            })
            .unwrap()
            .into_iter()
            .map(|e| (e.host, e.seq))
            .collect::<Vec<_>>()
    };
    let key = |host: &str, seq| (host.to_owned(), seq);

    let all = all_history(store);
    assert_eq!(
        all[0],
        v1::HistoryEvent {
            host: "i-1".into(),
            seq: 1,
            event: "drifted".into(),
            observed_at: rfc3339(T0 + 1_000),
            received_at: rfc3339(T0 + 10_000),
            path: "/etc/a.conf".into(),
            severity: "behavioral".into(),
            item: a.json.clone(),
            source: "stream".into(),
        }
    );
    assert_eq!(
        query("", None, None, 0),
        [key("i-1", 1), key("i-1", 2), key("i-2", 1), key("i-1", 3)],
        "oldest first"
    );
    assert_eq!(
        query("i-1", None, None, 0),
        [key("i-1", 1), key("i-1", 2), key("i-1", 3)]
    );
    assert_eq!(
        query("", Some(T0 + 15_000), None, 0),
        [key("i-2", 1), key("i-1", 3)],
        "since is inclusive"
    );
    assert_eq!(
        query("", None, None, 2),
        [key("i-2", 1), key("i-1", 3)],
        "a limit keeps the newest"
    );
    assert_eq!(query("i-1", Some(T0 + 10_000), None, 1), [key("i-1", 3)]);
    assert_eq!(
        query("", None, Some("/etc/a*"), 0),
        [key("i-1", 1), key("i-2", 1)]
    );
    assert_eq!(
        query("", None, Some("/etc/a*"), 1),
        [key("i-2", 1)],
        "the limit counts matching events only"
    );
    let security = store
        .history(&HistoryQuery {
            filter: filter(Some(Severity::Security), None),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(security.len(), 1);
    assert_eq!(security[0].path, "/etc/b.conf");
    assert!(query("i-9", None, None, 0).is_empty());
}
