use std::ops::Deref;
use std::time::Instant;

use super::*;
use crate::store::conformance::{self, AsApi, T0, apply1, batch, done, drifted, hosts, info, item};
use crate::store::{ItemRecord, Transition};

/// A store on a new file in a temporary directory, removed after the store is closed.
struct TempStore {
    store: SqliteStore,
    dir: tempfile::TempDir,
}

impl Deref for TempStore {
    type Target = SqliteStore;

    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

fn temp_store() -> TempStore {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("collector.db")).unwrap();
    TempStore { store, dir }
}

conformance::conformance_tests!(temp_store());

/// Brings a new database's schema to `version`, as a collector of that version left it.
fn schema_at(tx: &rusqlite::Transaction<'_>, version: usize) {
    for migration in &schema::MIGRATIONS[..version] {
        match migration {
            schema::Migration::Sql(sql) => tx.execute_batch(sql).unwrap(),
            schema::Migration::Code(migrate) => migrate(tx).unwrap(),
        }
    }
    tx.pragma_update(None, "user_version", version as i64)
        .unwrap();
}

#[test]
fn reopening_keeps_everything() {
    let TempStore { store, dir } = temp_store();
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let a = item("/etc/a.conf", "security", "bb");
    let b = item("/etc/b.conf", "behavioral", "bb");
    apply1(
        &store,
        batch(
            "i-1",
            "s1",
            vec![drifted(1, &a), drifted(2, &b)],
            T0 + 1_000,
        ),
    )
    .unwrap();
    let query = HostQuery {
        now: T0 + 2_000,
        silent_after: Duration::from_secs(60),
        ..Default::default()
    };
    let before = (
        hosts(&store, &query),
        store.api().get_host("i-1", &query).unwrap(),
        store.digest("i-1").unwrap(),
        store.api().history(&HistoryQuery::default()).unwrap(),
        // The changes, counted in memory: counted again at open.
        store
            .api()
            .list_causes(&ItemFilter::default(), 0, 0)
            .unwrap(),
    );
    let path = store.path().to_owned();
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    let after = (
        hosts(&store, &query),
        store.api().get_host("i-1", &query).unwrap(),
        store.digest("i-1").unwrap(),
        store.api().history(&HistoryQuery::default()).unwrap(),
        store
            .api()
            .list_causes(&ItemFilter::default(), 0, 0)
            .unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(before.0[0].drift_count, 2);
    assert_eq!(before.4.len(), 2);
    // The stream continues where it stood.
    assert_eq!(
        done(&apply1(
            &store,
            batch("i-1", "s1", vec![drifted(3, &a)], T0 + 3_000)
        )),
        Ok(Applied {
            last_seq: 3,
            events: 1
        })
    );
    drop(dir);
}

#[test]
fn a_newer_schema_is_refused() {
    let TempStore { store, dir } = temp_store();
    let path = store.path().to_owned();
    drop(store);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::NewerSchema { found, supported }) => {
            assert_eq!((found, supported), (99, schema::MIGRATIONS.len() as i64));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    drop(dir);
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_with_context() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::Database(message)) => {
            assert!(message.contains("not a database"), "{message}")
        }
        other => panic!("expected a database error, got {other:?}"),
    }
}

#[test]
fn queries_do_not_wait_for_a_write_in_progress() {
    let store = temp_store();
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let writer = lock(&store.writer);
    writer
        .conn
        .execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO hosts (host, first_seen, last_seen) VALUES ('i-2', 0, 0);",
        )
        .unwrap();
    let started = Instant::now();
    let hosts = hosts(&*store, &HostQuery::default());
    assert!(
        started.elapsed() < BUSY_TIMEOUT / 2,
        "the reader waited for the writer"
    );
    assert_eq!(hosts.len(), 1, "uncommitted rows are not seen");
    writer.conn.execute_batch("ROLLBACK").unwrap();
}

/// Ingest groups run without SQLite's foreign-key checks (every write reads its host's row
/// first, so an unknown host is still refused); every other write has them back.
#[test]
fn foreign_keys_are_unchecked_only_in_ingest_groups() {
    let store = temp_store();
    let checked = |store: &SqliteStore| -> bool {
        lock(&store.writer)
            .conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap()
    };
    assert!(checked(&store));
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let a = item("/etc/a.conf", "behavioral", "bb");
    let results = store
        .apply(&[
            batch("i-1", "s1", vec![drifted(1, &a)], T0),
            batch("i-9", "s1", vec![drifted(1, &a)], T0),
        ])
        .unwrap();
    assert!(done(&results[0]).is_ok());
    match &results[1] {
        Err(StoreError::Rejected(message)) => {
            assert!(message.contains("unknown host"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!checked(&store));
    store.hello(&info("i-2", "web-2"), T0).unwrap();
    assert!(checked(&store));
    let orphan = lock(&store.writer).conn.execute(
        "INSERT INTO items (host, subject, subject_kind, kind, severity, cause, changed,
             observed_at, sha256) VALUES ('i-9', '/etc/x', 'path', 'added', 0, 'c', '[]', 0, x'')",
        [],
    );
    assert!(
        orphan.unwrap_err().to_string().contains("FOREIGN KEY"),
        "the keys are checked again"
    );
}

/// A write that fails part-way (a database error after its first modification) is undone
/// alone: the group is applied again with savepoints.
/// Makes storing an item of `/etc/poison` fail with a database error, part-way through its write.
fn poison_items(store: &SqliteStore) {
    lock(&store.writer)
        .conn
        .execute_batch(
            "CREATE TEMP TRIGGER poison BEFORE INSERT ON items WHEN NEW.subject = '/etc/poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned item'); END;",
        )
        .unwrap();
}

/// The writer remembers the items it wrote, so as not to read them back (`recent`); a write
/// rolled back must be forgotten with it, or the next change would move the item's counts from
/// a severity it never had. Both roll-backs: the group's (a later write fails part-way) and a
/// write's own savepoint.
#[test]
fn a_write_rolled_back_is_not_remembered() {
    use conformance::event;
    let store = temp_store();
    for host in ["i-1", "i-2"] {
        store.hello(&info(host, host), T0).unwrap();
    }
    poison_items(&store);
    let version = |severity, content| item("/etc/a", severity, content);
    let poison = item("/etc/poison", "behavioral", "p");
    // The host's items per severity; the path's hosts, and per severity.
    type Counts = ((i64, i64, i64), (i64, i64, i64, i64));
    let counts = |store: &SqliteStore| -> Counts {
        let writer = lock(&store.writer);
        let host = writer
            .conn
            .query_row(
                "SELECT n_security, n_behavioral, n_cosmetic FROM hosts WHERE host = 'i-1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let path = writer
            .conn
            .query_row(
                "SELECT hosts, n_security, n_behavioral, n_cosmetic FROM subject_counts
                 WHERE subject = '/etc/a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        (host, path)
    };
    apply1(
        &*store,
        batch(
            "i-1",
            "s1",
            vec![drifted(1, &version("behavioral", "v1"))],
            T0,
        ),
    )
    .unwrap();

    // The group is undone once (i-2's write fails part-way), then applied write by write.
    let results = store
        .apply(&[
            batch(
                "i-1",
                "s1",
                vec![event(2, Transition::Changed, &version("security", "v2"))],
                T0,
            ),
            batch("i-2", "s1", vec![drifted(1, &poison)], T0),
        ])
        .unwrap();
    assert!(results[0].is_ok() && results[1].is_err(), "{results:?}");
    assert_eq!(counts(&store), ((1, 0, 0), (1, 1, 0, 0)));

    // The write itself fails part-way: its savepoint is rolled back.
    let results = store
        .apply(&[batch(
            "i-1",
            "s1",
            vec![
                event(3, Transition::Changed, &version("cosmetic", "v3")),
                drifted(4, &poison),
            ],
            T0,
        )])
        .unwrap();
    assert!(results[0].is_err(), "{results:?}");
    apply1(
        &*store,
        batch(
            "i-1",
            "s1",
            vec![event(3, Transition::Changed, &version("behavioral", "v4"))],
            T0,
        ),
    )
    .unwrap();
    assert_eq!(counts(&store), ((0, 1, 0), (1, 0, 1, 0)));
}

#[test]
fn a_write_failing_part_way_is_undone_alone() {
    let store = temp_store();
    for host in ["i-1", "i-2", "i-3"] {
        store.hello(&info(host, host), T0).unwrap();
    }
    poison_items(&store);
    let fine = item("/etc/fine", "behavioral", "bb");
    let poison = item("/etc/poison", "behavioral", "bb");
    let results = store
        .apply(&[
            batch("i-1", "s1", vec![drifted(1, &fine)], T0),
            batch(
                "i-2",
                "s1",
                vec![drifted(1, &fine), drifted(2, &poison)],
                T0,
            ),
            batch("i-3", "s1", vec![drifted(1, &fine)], T0),
            batch("i-9", "s1", vec![drifted(1, &fine)], T0),
        ])
        .unwrap();
    assert_eq!(
        done(&results[0]),
        Ok(Applied {
            last_seq: 1,
            events: 1
        })
    );
    match &results[1] {
        Err(StoreError::Database(message)) => assert!(message.contains("poisoned"), "{message}"),
        other => panic!("expected a database error, got {other:?}"),
    }
    assert_eq!(
        done(&results[2]),
        Ok(Applied {
            last_seq: 1,
            events: 1
        })
    );
    assert!(matches!(results[3], Err(StoreError::Rejected(_))));

    let history = store.api().history(&HistoryQuery::default()).unwrap();
    let hosts: Vec<_> = history.iter().map(|e| e.host.as_str()).collect();
    assert_eq!(hosts, ["i-1", "i-3"], "nothing of i-2's batch stays");
    assert_eq!(
        store.digest("i-2").unwrap().unwrap().0,
        StreamState {
            connection: 1,
            ..StreamState::default()
        }
    );
}

#[test]
fn a_transaction_left_open_does_not_block_the_next_write() {
    let store = temp_store();
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    // What a panic inside a write could leave behind.
    lock(&store.writer)
        .conn
        .execute_batch("BEGIN; UPDATE hosts SET hostname = 'half-done'")
        .unwrap();
    apply1(
        &*store,
        batch(
            "i-1",
            "s1",
            vec![drifted(1, &item("/etc/a", "cosmetic", "bb"))],
            T0,
        ),
    )
    .unwrap();
    let host = &hosts(&*store, &HostQuery::default())[0];
    assert_eq!((host.hostname.as_str(), host.drift_count), ("web-1", 1));
}

/// The background thread copies the WAL into the database file: the writer's own checkpoint
/// would not run before 256 MiB of WAL.
#[test]
fn checkpoints_run_off_the_writer() {
    let store = temp_store();
    let file_size = || std::fs::metadata(store.path()).unwrap().len();
    let before = file_size();
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let events = (1..=500)
        .map(|seq| {
            drifted(
                seq,
                &item(&format!("/etc/app/{seq}.conf"), "behavioral", "bb"),
            )
        })
        .collect();
    apply1(&*store, batch("i-1", "s1", events, T0)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while file_size() < before + 256 * 1024 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint: the database file stays at {} bytes",
            file_size()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn prefix_upper_bounds() {
    use query::prefix_upper_bound as bound;
    assert_eq!(bound(""), None);
    assert_eq!(bound("/etc/"), Some("/etc0".into()));
    assert_eq!(bound("/etc/m"), Some("/etc/n".into()));
    assert_eq!(bound("a\u{10FFFF}"), Some("b".into()));
    assert_eq!(bound("\u{10FFFF}"), None);
    assert_eq!(
        bound("a\u{D7FF}"),
        Some("a\u{E000}".into()),
        "surrogates are skipped"
    );
}

#[test]
fn storing_history_builds_no_temporary_btree_and_still_checks_its_values() {
    let store = temp_store();
    let writer = lock(&store.writer);
    let opcodes: Vec<String> = writer
        .conn
        .prepare(&format!("EXPLAIN {}", history::INSERT_CHUNK))
        .unwrap()
        .query_map(rusqlite::params!["h", "s", 1, 0, "stream", 1, b""], |r| {
            r.get::<_, String>(1)
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(opcodes.iter().any(|op| op == "Insert"), "{opcodes:?}");
    assert!(
        !opcodes.iter().any(|op| op == "OpenEphemeral"),
        "{opcodes:?}"
    );
    for (first_seq, source, events) in [(1, "bogus", 1), (0, "stream", 1), (1, "stream", 0)] {
        let err = writer
            .conn
            .execute(
                history::INSERT_CHUNK,
                rusqlite::params!["h", "s", first_seq, 0, source, events, b""],
            )
            .unwrap_err();
        assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
    }
}

/// The plans behind the performance targets: path filters narrow through `items_subject`
/// and never read the table (nor sort it again), a change's hosts are one range of it, a
/// host's history reads its own index range in order.
#[test]
fn queries_use_their_indexes() {
    let store = temp_store();
    let writer = lock(&store.writer);
    let plan = |sql: &str| -> String {
        let mut stmt = writer
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        rows.join("; ")
    };
    let filter = ItemFilter::new(Some(Severity::Behavioral), Some("/etc/ssh/**")).unwrap();
    for sql in query::item_scans(&filter) {
        let plan = plan(&sql.replace('?', "'x'"));
        assert!(
            plan.contains("COVERING INDEX items_subject")
                && plan.contains("subject>")
                && !plan.contains("TEMP B-TREE"),
            "{sql}: {plan}"
        );
    }
    let hosts = plan(
        &query::CAUSE_HOSTS
            .replace("?1", "'x'")
            .replace("?2", "'x'")
            .replace("?3", "5"),
    );
    assert!(
        hosts.contains("COVERING INDEX items_subject (subject=? AND cause=?)")
            && !hosts.contains("TEMP B-TREE"),
        "{hosts}"
    );
    let (history, _) = query::history_sql(&HistoryQuery {
        host: "i-1".into(),
        since: Some(0),
        ..Default::default()
    });
    let plan = plan(&history.replace('?', "'x'"));
    assert!(
        plan.contains("INDEX history_host_received") && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
}

/// Measures ingest and query latency at the scale of the targets (10,000 hosts × 50 items):
/// `cargo test -p driftwatch-collector --release -- --ignored --nocapture scale`.
#[test]
#[ignore = "a benchmark: minutes in a debug build"]
fn scale() {
    const HOSTS: usize = 10_000;
    const ITEMS: usize = 50;
    const BATCH: usize = 10;
    const GROUP: usize = 100;
    let store = temp_store();
    let started = Instant::now();
    for h in 0..HOSTS {
        store
            .hello(&info(&format!("i-{h:05}"), &format!("web-{h}")), T0)
            .unwrap();
    }
    println!("{HOSTS} hellos: {:?}", started.elapsed());

    let item_of = |h: usize, i: usize, version: usize| -> ItemRecord {
        let severity = match i % 10 {
            0 => "security",
            3 | 6 => "cosmetic",
            _ => "behavioral",
        };
        let path = format!("/etc/svc{}/conf{i}.conf", (h + i) % 40);
        item(&path, severity, &format!("v{}", (h + version) % 7))
    };
    // Every host gets ITEMS drifted items, then as many changes, BATCH events at a time and
    // GROUP batches (of different hosts) per commit.
    let mut seq = vec![0u64; HOSTS];
    let mut ingest = |version: usize, transition: Transition| {
        let started = Instant::now();
        let mut events = 0;
        let mut group = Vec::with_capacity(GROUP);
        for chunk in 0..ITEMS / BATCH {
            for (h, host_seq) in seq.iter_mut().enumerate() {
                let batch_events = (0..BATCH)
                    .map(|k| {
                        *host_seq += 1;
                        let i = chunk * BATCH + k;
                        let at = T0 + *host_seq as Millis * 1_000;
                        conformance::event_at(*host_seq, transition, &item_of(h, i, version), at)
                    })
                    .collect();
                events += BATCH;
                group.push(batch(&format!("i-{h:05}"), "s1", batch_events, T0));
                if group.len() == GROUP {
                    for result in store.apply(&group).unwrap() {
                        result.unwrap();
                    }
                    group.clear();
                }
            }
        }
        let rate = events as f64 / started.elapsed().as_secs_f64();
        println!(
            "{events} {transition:?} events: {:?}, {rate:.0}/s",
            started.elapsed()
        );
    };
    ingest(0, Transition::Drifted);
    ingest(1, Transition::Changed);

    let now = T0 + 100_000;
    let host_query = |severity, path: Option<&str>| HostQuery {
        filter: ItemFilter::new(severity, path).unwrap(),
        diverged: true,
        silent_after: Duration::from_secs(300),
        now,
    };
    let measure = |name: &str, f: &dyn Fn() -> usize| {
        let mut times: Vec<Duration> = (0..50)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(f());
                started.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "{name}: {} rows, p50 {:?}, p99 {:?}",
            f(),
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    };
    measure("list_hosts diverged security", &|| {
        store
            .list_hosts(&host_query(Some(Severity::Security), None))
            .unwrap()
            .len()
    });
    measure("list_hosts diverged path", &|| {
        store
            .list_hosts(&host_query(None, Some("/etc/svc1/*")))
            .unwrap()
            .len()
    });
    measure("get_host", &|| {
        store
            .api()
            .get_host("i-04242", &host_query(None, None))
            .unwrap()
            .map_or(0, |d| d.drift.len())
    });
    measure("list_paths glob", &|| {
        let filter = ItemFilter::new(None, Some("/etc/svc1/**")).unwrap();
        store.api().list_paths(&filter, 0).unwrap().len()
    });
    measure("list_paths all", &|| {
        store
            .api()
            .list_paths(&ItemFilter::default(), 100)
            .unwrap()
            .len()
    });
    measure("list_causes glob", &|| {
        let filter = ItemFilter::new(None, Some("/etc/svc1/**")).unwrap();
        store.api().list_causes(&filter, 0, 100).unwrap().len()
    });
    measure("list_causes all", &|| {
        store
            .api()
            .list_causes(&ItemFilter::default(), 0, 100)
            .unwrap()
            .len()
    });
    measure("history host", &|| {
        let query = HistoryQuery {
            host: "i-04242".into(),
            limit: 100,
            ..Default::default()
        };
        store.api().history(&query).unwrap().len()
    });
}

/// The host listing comes from the in-memory mirror; a refresh that fails after a commit
/// must not leave it showing the old row.
#[test]
fn a_failed_listing_refresh_rebuilds_the_mirror() {
    let store = temp_store();
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    // A commit the mirror missed: the row changes behind its back, and the refresh that
    // should have followed fails (a connection without the table).
    lock(&store.writer)
        .conn
        .execute_batch("UPDATE hosts SET hostname = 'web-renamed'")
        .unwrap();
    assert_eq!(
        hosts(&*store, &HostQuery::default())[0].hostname,
        "web-1",
        "the listing reads the mirror, not the table"
    );
    let unrelated = Connection::open_in_memory().unwrap();
    store.hosts.refresh(&unrelated, ["i-1"]);
    assert!(store.hosts.is_stale());
    let hosts = hosts(&*store, &HostQuery::default());
    assert_eq!(hosts[0].hostname, "web-renamed");
    assert!(!store.hosts.is_stale());
}

/// A database written by 0.1 (schema version 2, drift items as JSON text; made by a real 0.1
/// collector and agent, `testdata/make-0.1-db.sh`) is converted in place: the same hosts,
/// current items and history, now typed, with digests over their encodings.
#[test]
fn a_database_of_0_1_is_converted_in_place() {
    use driftwatch_proto::drift::{Attr, DriftItem};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/store/sqlite/testdata/collector-0.1.db"
        ),
        &path,
    )
    .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let query = HostQuery {
        now: T0,
        silent_after: Duration::from_secs(60),
        ..Default::default()
    };
    let detail = store
        .api()
        .get_host("i-old", &query)
        .unwrap()
        .expect("the host");
    let items: Vec<DriftItem> = detail
        .drift
        .iter()
        .map(|i| DriftItem::try_from(i.clone()).expect("a valid item"))
        .collect();
    let files: Vec<_> = items
        .iter()
        .map(|i| match i {
            DriftItem::File(f) => f,
            DriftItem::Package(p) => panic!("no package drifted: {p:?}"),
        })
        .collect();
    let paths: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(paths, ["/etc/sudoers", "/usr/bin/tool", "/etc/motd"]);
    assert!(
        files[0]
            .diff
            .as_deref()
            .is_some_and(|d| d.contains("+mallory ALL=(ALL) NOPASSWD: ALL")),
        "{:?}",
        files[0]
    );
    assert_eq!(files[1].changed, [Attr::Mode]);
    assert_eq!(files[1].actual.as_ref().unwrap().mode, 0o4755);

    let (state, digest) = store.digest("i-old").unwrap().unwrap();
    assert_eq!(state.last_seq, 5);
    let digests: Vec<[u8; 32]> = items.iter().map(DriftItem::digest).collect();
    assert_eq!(digest, driftwatch_proto::drift::set_digest(&digests));

    let history = store.api().history(&HistoryQuery::default()).unwrap();
    let seen: Vec<(u64, &str, &str)> = history
        .iter()
        .map(|e| (e.seq, e.event.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "drifted", "/etc/sudoers"),
            (2, "drifted", "/usr/bin/tool"),
            (3, "drifted", "/etc/nginx/nginx.conf"),
            (4, "resolved", "/etc/nginx/nginx.conf"),
            (5, "drifted", "/etc/motd"),
        ]
    );
    for e in &history {
        DriftItem::try_from(e.item.clone().expect("an item")).expect("a valid item");
    }
    let causes = store
        .api()
        .list_causes(&ItemFilter::default(), 0, 0)
        .unwrap();
    assert_eq!(causes.len(), 3);
    assert!(
        causes
            .iter()
            .all(|c| c.example.is_some() && c.cause.len() == 32)
    );
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::MIGRATIONS.len() as i64);
    // Version 9 counted the converted items' paths (and version 11 kept them).
    let rows = |sql: &str| -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = conn.prepare(sql).unwrap();
        let width = stmt.column_count();
        stmt.query_map([], |r| (0..width).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let subjects = rows("SELECT * FROM subject_counts ORDER BY subject");
    assert!(!subjects.is_empty());
    assert_eq!(
        subjects,
        rows(
            "SELECT subject, count(*), sum(severity = 0), sum(severity = 1), sum(severity = 2),
                    min(observed_at), max(observed_at)
             FROM items GROUP BY subject ORDER BY subject"
        )
    );
}

/// Version 10 widens `iac_states.kind`: a version-9 database keeps its states and resources,
/// and takes Pulumi and CloudFormation stacks afterwards (issue 15).
#[test]
fn a_version_9_database_migrates_to_10_and_keeps_its_states() {
    use driftwatch_proto::v1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        schema_at(&tx, 9);
        tx.execute_batch(
            "INSERT INTO iac_states (name, source, kind, lineage, serial, imported_at)
                 VALUES ('prod', 'prod.tfstate', 'state', 'L1', 7, 1);
             INSERT INTO iac_resources VALUES ('prod', 'aws_instance.a', 'aws_instance',
                 'instance', 'i-1', 'a', 'ami-1', '10.0.0.1', '', '', 'running', '', '');",
        )
        .unwrap();
        let refused = tx.execute(
            "INSERT INTO iac_states (name, source, kind, imported_at)
                 VALUES ('dev', 'dev.json', 'pulumi', 1)",
            [],
        );
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("CHECK constraint failed")
        );
        tx.commit().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let data = store.iac().unwrap();
    assert_eq!(data.states.len(), 1);
    assert_eq!(
        (data.states[0].kind.as_str(), data.states[0].serial),
        ("state", Some(7))
    );
    assert_eq!(data.resources.len(), 1);
    assert_eq!(data.resources[0].1.key, "i-1");
    let pulumi = v1::ImportStateRequest {
        name: "web/dev".into(),
        source: "dev.json".into(),
        kind: "pulumi".into(),
        resources: vec![v1::IacResource {
            address: "urn:pulumi:dev::web::aws:ec2/instance:Instance::a".into(),
            r#type: "aws:ec2/instance:Instance".into(),
            role: "instance".into(),
            key: "i-2".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    store
        .import_state(&crate::iac::state_import(pulumi), T0)
        .unwrap();
    // The check still refuses what no version allows.
    let err = lock(&store.writer)
        .conn
        .execute(
            "INSERT INTO iac_states (name, source, kind, imported_at) VALUES ('x', 'x', 'bogus', 1)",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
    drop(store);
    let version: i64 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::MIGRATIONS.len() as i64);
}

/// The database quotes the hosts' root-only files: its files are private from creation, and
/// ones left readable by others are tightened at open (see the module's "File modes").
#[test]
fn the_database_files_are_created_private_and_loose_ones_are_tightened() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a/b");
    create_private_dir(&data).unwrap();
    assert_eq!(mode(&data), 0o700);
    let path = data.join("collector.db");
    let store = SqliteStore::open(&path).unwrap();
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    let files = database_files(&path);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    drop(store);
    for file in &files {
        if file.exists() {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let _store = SqliteStore::open(&path).unwrap();
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

/// Version 13 stores the history one row per write: version 12's rows (one per event) are
/// converted, consecutive events of one write into one row, and read back as they were.
#[test]
fn a_version_12_history_is_converted_to_one_row_per_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let rows = conformance::events_of_old();
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        schema_at(&tx, 12);
        tx.execute_batch(
            "INSERT INTO hosts (host, first_seen, last_seen) VALUES ('i-1', 0, 0), ('i-2', 0, 0);",
        )
        .unwrap();
        for (host, stream, seq, transition, received_at, item, source) in &rows {
            tx.execute(
                "INSERT INTO events (host, stream_id, seq, transition, observed_at, received_at,
                     subject, severity, source, item)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![
                    host,
                    stream,
                    seq,
                    transition,
                    received_at,
                    item.subject,
                    item.severity.index() as i64,
                    source,
                    item.encoded
                ],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let stored: Vec<(String, String, Option<i64>, i64)> = lock(&store.writer)
        .conn
        .prepare("SELECT host, stream_id, first_seq, events FROM history ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(stored, conformance::events_of_old_as_rows());
    conformance::assert_history_is(&store, &rows);
    let events_left: i64 = lock(&store.writer)
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events_left, 0);
}
