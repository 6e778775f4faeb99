//! Cases about writes: hellos, batches, replays, snapshots, digests, cached aggregates.

use driftwatch_proto::v1;

use super::*;

pub fn hello_creates_then_updates_the_host(store: &dyn Store) {
    assert_eq!(
        store.hello(&info("i-1", "web-1"), T0).unwrap(),
        StreamState {
            connection: 1,
            ..StreamState::default()
        }
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
            iac: None,
            flags: vec![],
            candidates: vec![],
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
            last_seq: 1,
            connection: 3
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
    assert_eq!(drift_of(store, "i-1"), vec![wire(&a2)]);
    let host = &hosts(store, &host_query(T0, false, ItemFilter::default()))[0];
    assert_eq!(
        host.drifted_since,
        Some(rfc3339(T0 + 1_000)),
        "a change keeps when the path started to drift"
    );
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

    assert_eq!(drift_of(store, "i-1"), vec![wire(&b), wire(&a)]);
    assert!(drift_of(store, "i-2").is_empty());
    assert_eq!(
        store.digest("i-2").unwrap().unwrap().0,
        StreamState {
            connection: 1,
            ..StreamState::default()
        }
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
    assert_eq!(drift_of(store, "i-1"), vec![wire(&b)]);
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
    assert_eq!(drift_of(store, "i-1"), vec![wire(&b2), wire(&a), wire(&d)]);
    let mut derived: Vec<_> = all_history(store)
        .into_iter()
        .filter(|e| e.source == "snapshot")
        .map(|e| {
            assert_eq!(e.seq, 0);
            assert_eq!(
                (&e.observed_at, &e.received_at),
                (&rfc3339(at), &rfc3339(at))
            );
            (
                e.path,
                e.event,
                e.severity,
                e.item.map(|i| i.encode_to_vec()),
            )
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
                Some(b2.encoded.clone())
            ),
            (
                "/etc/c.conf".into(),
                "resolved".into(),
                "cosmetic".into(),
                Some(c.encoded.clone())
            ),
            (
                "/etc/d.conf".into(),
                "drifted".into(),
                "behavioral".into(),
                Some(d.encoded.clone())
            ),
        ],
        "exactly the differences, nothing for the unchanged item"
    );
    let (state, digest) = store.digest("i-1").unwrap().unwrap();
    assert_eq!(
        state,
        StreamState {
            stream_id: "s2".into(),
            last_seq: 7,
            connection: 1
        }
    );
    assert_eq!(digest, set_digest([a.sha256, b2.sha256, d.sha256]));
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
                last_seq: 2,
                connection: 1
            },
            set_digest([])
        )
    );
}

pub fn the_digest_follows_the_current_set(store: &dyn Store) {
    assert_eq!(store.digest("i-1").unwrap(), None);
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    assert_eq!(
        store.digest("i-1").unwrap(),
        Some((
            StreamState {
                connection: 1,
                ..StreamState::default()
            },
            set_digest([])
        ))
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
            last_seq: 2,
            connection: 1
        }
    );
    assert_eq!(first, set_digest([a.sha256, b.sha256]));

    apply1(
        store,
        batch("i-1", "s1", vec![event(3, Transition::Changed, &a2)], T0),
    )
    .unwrap();
    let (_, changed) = store.digest("i-1").unwrap().unwrap();
    assert_ne!(changed, first);
    assert_eq!(changed, set_digest([b.sha256, a2.sha256]));

    apply1(
        store,
        batch("i-1", "s1", vec![event(4, Transition::Resolved, &b)], T0),
    )
    .unwrap();
    assert_eq!(
        store.digest("i-1").unwrap().unwrap().1,
        set_digest([a2.sha256])
    );
}

pub fn many_streams_are_read_at_once_as_one_by_one(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    store.hello(&info("i-2", "web-2"), T0).unwrap();
    let a = item("/etc/a.conf", "behavioral", "bb");
    let b = item("/etc/b.conf", "security", "cc");
    apply1(
        store,
        batch("i-1", "s1", vec![drifted(1, &a), drifted(2, &b)], T0),
    )
    .unwrap();
    let read = |host: &str, digest: bool| StreamRead {
        host: host.into(),
        digest,
    };
    // Twice in one call (two streams of one host), with and without a digest; a host not
    // stored; a host with nothing stored.
    let reads = [
        read("i-1", true),
        read("nope", true),
        read("i-2", true),
        read("i-1", false),
        read("i-2", false),
    ];
    let expected = |host: &str, digest: bool| {
        let state = store.stream_state(host).unwrap()?;
        let digest = digest.then(|| store.digest(host).unwrap().unwrap().1);
        Some(StreamHead { state, digest })
    };
    let one_by_one: Vec<_> = reads.iter().map(|r| expected(&r.host, r.digest)).collect();
    assert_eq!(store.streams(&reads).unwrap(), one_by_one);
    assert_eq!(
        one_by_one[0],
        Some(StreamHead {
            state: StreamState {
                stream_id: "s1".into(),
                last_seq: 2,
                connection: 1
            },
            digest: Some(set_digest([a.sha256, b.sha256])),
        })
    );
    assert_eq!(one_by_one[1], None);
    assert_eq!(one_by_one[2].as_ref().unwrap().digest, Some(set_digest([])));
    assert_eq!(one_by_one[3].as_ref().unwrap().digest, None);

    // Read again after a change: the digest follows (where a backend remembers digests, the
    // version it remembered moved).
    apply1(
        store,
        batch("i-1", "s1", vec![event(3, Transition::Resolved, &a)], T0),
    )
    .unwrap();
    let again = store.streams(&reads[..1]).unwrap();
    assert_eq!(again[0].as_ref().unwrap().state.last_seq, 3);
    assert_eq!(
        again[0].as_ref().unwrap().digest,
        Some(set_digest([b.sha256]))
    );
    assert_eq!(store.streams(&[]).unwrap(), Vec::new());
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
            last_seq: 1,
            connection: 1
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
            last_seq: 1,
            connection: 1
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

/// Checks that what `list_hosts` reports of i-1 for every severity filter (from whatever the
/// backend keeps per host) is what its items give (`get_host`, and a path filter).
fn assert_aggregates(store: &dyn Store, expected: (u64, Option<&str>, Option<Millis>)) {
    for severity in [
        None,
        Some(Severity::Security),
        Some(Severity::Behavioral),
        Some(Severity::Cosmetic),
    ] {
        let summary = |h: &v1::Host| {
            (
                h.drift_count,
                h.max_severity.clone(),
                h.drifted_since.clone(),
            )
        };
        let listed = summary(&hosts(store, &host_query(T0, false, filter(severity, None)))[0]);
        let by_path =
            summary(&hosts(store, &host_query(T0, false, filter(severity, Some("/**"))))[0]);
        let detail = store
            .api()
            .get_host("i-1", &host_query(T0, false, filter(severity, None)))
            .unwrap()
            .unwrap();
        assert_eq!(listed, summary(&detail.host.unwrap()), "{severity:?}");
        assert_eq!(listed, by_path, "{severity:?}");
        if severity.is_none() {
            let (count, worst, since) = expected;
            assert_eq!(
                listed,
                (count, worst.map(String::from), since.map(rfc3339)),
                "all items"
            );
        }
    }
}

pub fn host_aggregates_follow_every_change(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    assert_aggregates(store, (0, None, None));
    let a = item("/etc/a", "security", "bb");
    let b = item("/etc/b", "behavioral", "bb");
    let c = item("/etc/c", "cosmetic", "bb");
    let d = item("/etc/d", "behavioral", "bb");
    let events = vec![
        drifted(1, &a),
        drifted(2, &b),
        drifted(3, &c),
        drifted(4, &d),
    ];
    apply1(store, batch("i-1", "s1", events, T0)).unwrap();
    assert_aggregates(store, (4, Some("security"), Some(T0 + 1_000)));

    // b becomes a security item; it keeps when it started to drift.
    let b2 = item("/etc/b", "security", "cc");
    let events = vec![event(5, Transition::Changed, &b2)];
    apply1(store, batch("i-1", "s1", events, T0)).unwrap();
    assert_aggregates(store, (4, Some("security"), Some(T0 + 1_000)));
    // The oldest item goes: the oldest is now b's.
    let events = vec![event(6, Transition::Resolved, &a)];
    apply1(store, batch("i-1", "s1", events, T0)).unwrap();
    assert_aggregates(store, (3, Some("security"), Some(T0 + 2_000)));
    // The only security item becomes cosmetic, in the same batch as a new behavioral item.
    let b3 = item("/etc/b", "cosmetic", "dd");
    let e = item("/etc/e", "behavioral", "bb");
    let events = vec![event(7, Transition::Changed, &b3), drifted(8, &e)];
    apply1(store, batch("i-1", "s1", events, T0)).unwrap();
    assert_aggregates(store, (4, Some("behavioral"), Some(T0 + 2_000)));

    let c2 = item("/etc/c", "security", "ee");
    let snapshot = Write::Snapshot {
        host: "i-1".into(),
        stream_id: "s2".into(),
        seq: 1,
        items: vec![c2, e.clone()],
        received_at: T0 + 9_000,
    };
    apply1(store, snapshot).unwrap();
    assert_aggregates(store, (2, Some("security"), Some(T0 + 3_000)));

    let events = vec![
        event(2, Transition::Resolved, &c),
        event(3, Transition::Resolved, &e),
    ];
    apply1(store, batch("i-1", "s2", events, T0)).unwrap();
    assert_aggregates(store, (0, None, None));
}
