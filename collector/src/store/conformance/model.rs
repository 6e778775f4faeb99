//! A model-based property test of writes: random groups of batches, snapshots, heartbeats,
//! replays, gaps and writes of other streams, applied to the store and to a plain model of what
//! they mean. After every group the results, each host's drift set and its cached aggregates
//! (counts, worst severity, `drifted_since`, per severity) must be the model's, and the cached
//! aggregates must be what the items give when counted afresh (a listing filtered by path
//! counts the items themselves). The paths and changes listed over the case's own paths (counts
//! kept on write where a backend keeps them) must be what the model's items give counted
//! afresh, with every filter and with host names capped.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::*;

/// Hosts, subjects and contents are drawn from small sets, so writes collide.
const HOSTS: usize = 3;
const SUBJECTS: usize = 5;

#[derive(Clone, Debug)]
enum Op {
    /// A batch of `events` (subject, transition 0–2, severity 0–2, content), of the host's
    /// stream or (`other`) of a new one; `skew` 1 replays the host's last two events first,
    /// 2 leaves a gap.
    Batch {
        host: usize,
        other: bool,
        skew: u8,
        events: Vec<(usize, u8, u8, u8)>,
    },
    /// A snapshot of a new stream at `seq` with `items` (subject, severity, content); `twice`
    /// lists its first item twice (rejected).
    Snapshot {
        host: usize,
        seq: u64,
        twice: bool,
        items: Vec<(usize, u8, u8)>,
    },
    Seen {
        host: usize,
    },
    /// A write for a host that never said hello.
    Unknown,
}

fn op() -> impl Strategy<Value = Op> {
    let event = (0..SUBJECTS, 0..3u8, 0..3u8, 0..3u8);
    prop_oneof![
        6 => (0..HOSTS, prop::bool::weighted(0.1), prop::sample::select(vec![0u8, 0, 0, 1, 2]),
              prop::collection::vec(event, 1..6))
            .prop_map(|(host, other, skew, events)| Op::Batch { host, other, skew, events }),
        2 => (0..HOSTS, 1..5u64, prop::bool::weighted(0.1),
              prop::collection::vec((0..SUBJECTS, 0..3u8, 0..3u8), 0..5))
            .prop_map(|(host, seq, twice, items)| Op::Snapshot { host, seq, twice, items }),
        1 => (0..HOSTS).prop_map(|host| Op::Seen { host }),
        1 => Just(Op::Unknown),
    ]
}

/// A host as the model sees it.
#[derive(Clone, Default)]
struct Host {
    stream_id: String,
    last_seq: u64,
    /// Subject → (severity, digest, observed_at, the item).
    items: BTreeMap<String, (Severity, [u8; 32], Millis, ItemRecord)>,
}

/// The model: hosts, a clock, and a counter for new stream ids.
struct Model {
    prefix: String,
    hosts: Vec<Host>,
    clock: Millis,
    streams: u64,
}

impl Model {
    fn host(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    fn tick(&mut self) -> Millis {
        self.clock += 1_000;
        self.clock
    }

    /// Turns `op` into a write, and applies it to the model: the result the store must give.
    fn write(&mut self, op: &Op) -> (Write, Result<Applied, ()>) {
        let severity = |s: u8| ["security", "behavioral", "cosmetic"][s as usize];
        let prefix = self.prefix.clone();
        let subject = |s: usize| format!("/{prefix}/f{s}");
        let at = self.tick();
        match op {
            Op::Unknown => (
                batch(&format!("{}-unknown", self.prefix), "s", vec![], at),
                Err(()),
            ),
            Op::Seen { host } => {
                let write = Write::Seen {
                    host: self.host(*host),
                    at,
                };
                let last_seq = self.hosts[*host].last_seq;
                (
                    write,
                    Ok(Applied {
                        last_seq,
                        events: 0,
                    }),
                )
            }
            Op::Batch {
                host,
                other,
                skew,
                events,
            } => {
                self.streams += 1;
                let h = &self.hosts[*host];
                let stream_id = if *other || h.stream_id.is_empty() {
                    format!("s{}", self.streams)
                } else {
                    h.stream_id.clone()
                };
                let first = match skew {
                    1 => h.last_seq.saturating_sub(1).max(1),
                    2 => h.last_seq + 2,
                    _ => h.last_seq + 1,
                };
                let records: Vec<EventRecord> = events
                    .iter()
                    .zip(first..)
                    .map(|(&(s, t, sev, content), seq)| {
                        let transition = [
                            Transition::Drifted,
                            Transition::Changed,
                            Transition::Resolved,
                        ][t as usize];
                        let record = item(&subject(s), severity(sev), &format!("c{content}"));
                        event_at(seq, transition, &record, at - 500 + seq as Millis)
                    })
                    .collect();
                let write = batch(&self.host(*host), &stream_id, records.clone(), at);
                let h = &mut self.hosts[*host];
                if !h.stream_id.is_empty() && h.stream_id != stream_id {
                    return (write, Err(()));
                }
                let new: Vec<&EventRecord> =
                    records.iter().filter(|e| e.seq > h.last_seq).collect();
                if new.first().is_some_and(|e| e.seq != h.last_seq + 1) {
                    return (write, Err(()));
                }
                for e in &new {
                    let subject = e.item.subject.clone();
                    match e.transition {
                        Transition::Resolved => {
                            h.items.remove(&subject);
                        }
                        _ => {
                            let since = h.items.get(&subject).map_or(e.observed_at, |c| c.2);
                            let current = (e.item.severity, e.item.sha256, since, e.item.clone());
                            h.items.insert(subject, current);
                        }
                    }
                }
                h.stream_id = stream_id;
                h.last_seq += new.len() as u64;
                let applied = Applied {
                    last_seq: h.last_seq,
                    events: new.len() as u64,
                };
                (write, Ok(applied))
            }
            Op::Snapshot {
                host,
                seq,
                twice,
                items,
            } => {
                self.streams += 1;
                let stream_id = format!("s{}", self.streams);
                let mut records: BTreeMap<String, ItemRecord> = BTreeMap::new();
                for &(s, sev, content) in items {
                    records.insert(
                        subject(s),
                        item(&subject(s), severity(sev), &format!("c{content}")),
                    );
                }
                let mut listed: Vec<ItemRecord> = records.values().cloned().collect();
                if *twice && !listed.is_empty() {
                    listed.push(listed[0].clone());
                }
                let write = Write::Snapshot {
                    host: self.host(*host),
                    stream_id: stream_id.clone(),
                    seq: *seq,
                    items: listed,
                    received_at: at,
                };
                if *twice && !records.is_empty() {
                    return (write, Err(()));
                }
                let h = &mut self.hosts[*host];
                let mut events = 0;
                for (subject, record) in &records {
                    let since = match h.items.get(subject) {
                        Some(c) if c.1 == record.sha256 => continue,
                        Some(c) => c.2,
                        None => at,
                    };
                    let current = (record.severity, record.sha256, since, record.clone());
                    h.items.insert(subject.clone(), current);
                    events += 1;
                }
                let before = h.items.len();
                h.items.retain(|subject, _| records.contains_key(subject));
                events += (before - h.items.len()) as u64;
                h.stream_id = stream_id;
                h.last_seq = *seq;
                (
                    write,
                    Ok(Applied {
                        last_seq: *seq,
                        events,
                    }),
                )
            }
        }
    }
}

/// (count, worst severity, drifted_since) as a listing shows them.
type Summary = (u64, Option<String>, Option<String>);

/// A host's items of `severity` or worse, summed up.
fn summary(host: &Host, severity: Option<Severity>) -> Summary {
    let items: Vec<_> = host
        .items
        .values()
        .filter(|c| severity.is_none_or(|s| c.0 <= s))
        .collect();
    (
        items.len() as u64,
        items
            .iter()
            .map(|c| c.0)
            .min()
            .map(|s| s.as_str().to_owned()),
        items.iter().map(|c| c.2).min().map(rfc3339),
    )
}

/// The model's paths and changes among items of `severity` or worse, as `paths` and `causes`
/// list them (most hosts first; a change's hosts sorted, the first host's item its example).
fn counted(model: &Model, severity: Option<Severity>) -> (Vec<v1::PathSummary>, Vec<v1::Cause>) {
    struct Path {
        hosts: u64,
        worst: Severity,
        first: Millis,
        last: Millis,
    }
    struct Change<'a> {
        worst: Severity,
        /// (host, its item)
        hosts: Vec<(String, &'a ItemRecord)>,
    }
    let mut paths: BTreeMap<&str, Path> = BTreeMap::new();
    let mut changes: BTreeMap<&str, Change<'_>> = BTreeMap::new();
    for (i, host) in model.hosts.iter().enumerate() {
        for (subject, (sev, _, since, record)) in &host.items {
            if severity.is_some_and(|s| *sev > s) {
                continue;
            }
            let path = paths.entry(subject).or_insert(Path {
                hosts: 0,
                worst: *sev,
                first: *since,
                last: *since,
            });
            path.hosts += 1;
            path.worst = path.worst.min(*sev);
            path.first = path.first.min(*since);
            path.last = path.last.max(*since);
            let change = changes.entry(&record.cause).or_insert(Change {
                worst: *sev,
                hosts: Vec::new(),
            });
            change.worst = change.worst.min(*sev);
            change.hosts.push((model.host(i), record));
        }
    }
    let mut paths: Vec<v1::PathSummary> = paths
        .into_iter()
        .map(|(subject, p)| v1::PathSummary {
            path: subject.to_owned(),
            hosts: p.hosts,
            max_severity: p.worst.as_str().to_owned(),
            first_observed: rfc3339(p.first),
            last_observed: rfc3339(p.last),
        })
        .collect();
    paths.sort_by(|a, b| b.hosts.cmp(&a.hosts).then_with(|| a.path.cmp(&b.path)));
    let mut causes: Vec<v1::Cause> = changes
        .into_iter()
        .map(|(cause, mut change)| {
            change.hosts.sort_by(|a, b| a.0.cmp(&b.0));
            let first = change.hosts[0].1;
            v1::Cause {
                cause: cause.to_owned(),
                path: first.subject.clone(),
                kind: first.kind.to_owned(),
                severity: change.worst.as_str().to_owned(),
                changed: first.changed.iter().map(|c| c.to_string()).collect(),
                host_count: change.hosts.len() as u64,
                hosts: change.hosts.iter().map(|(name, _)| name.clone()).collect(),
                example: Some(wire(first)),
            }
        })
        .collect();
    causes.sort_by(|a, b| {
        b.host_count
            .cmp(&a.host_count)
            .then_with(|| a.path.cmp(&b.path))
            .then_with(|| a.cause.cmp(&b.cause))
    });
    (paths, causes)
}

fn check(store: &dyn Store, model: &Model) -> std::result::Result<(), TestCaseError> {
    let glob = format!("/{}/**", model.prefix);
    for severity in [
        None,
        Some(Severity::Security),
        Some(Severity::Behavioral),
        Some(Severity::Cosmetic),
    ] {
        let (paths, causes) = counted(model, severity);
        let mine = filter(severity, Some(&glob));
        let listed = store.api().list_paths(&mine, 0).expect("list_paths");
        prop_assert_eq!(&listed, &paths, "paths, {:?}", severity);
        for cap in [0, 1] {
            let listed = store
                .api()
                .list_causes_capped(&mine, 0, 0, cap)
                .expect("list_causes");
            let mut expected = causes.clone();
            if cap > 0 {
                expected.iter_mut().for_each(|c| c.hosts.truncate(cap));
            }
            prop_assert_eq!(listed, expected, "causes capped at {}, {:?}", cap, severity);
        }
    }
    for severity in [
        None,
        Some(Severity::Security),
        Some(Severity::Behavioral),
        Some(Severity::Cosmetic),
    ] {
        let listed = hosts(store, &host_query(T0, false, filter(severity, None)));
        let counted = hosts(store, &host_query(T0, false, filter(severity, Some("/**"))));
        for (i, host) in model.hosts.iter().enumerate() {
            let name = model.host(i);
            let find = |hosts: &[v1::Host]| -> Summary {
                hosts
                    .iter()
                    .find(|h| h.host == name)
                    .map(|h| {
                        (
                            h.drift_count,
                            h.max_severity.clone(),
                            h.drifted_since.clone(),
                        )
                    })
                    .unwrap_or((0, None, None))
            };
            let expected = summary(host, severity);
            prop_assert_eq!(&find(&listed), &expected, "{} cached, {:?}", name, severity);
            prop_assert_eq!(
                &find(&counted),
                &expected,
                "{} counted, {:?}",
                name,
                severity
            );
        }
    }
    for (i, host) in model.hosts.iter().enumerate() {
        // Most serious first, then by subject.
        let mut current: Vec<_> = host.items.iter().collect();
        current.sort_by_key(|(subject, c)| (c.0, *subject));
        let expected: Vec<v1::DriftItem> = current.iter().map(|(_, c)| wire(&c.3)).collect();
        prop_assert_eq!(
            drift_of(store, &model.host(i)),
            expected,
            "the drift set of {}",
            model.host(i)
        );
    }
    Ok(())
}

pub fn random_groups_keep_the_drift_set_and_its_counts_true(store: &dyn Store) {
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0);
    let groups = prop::collection::vec(prop::collection::vec(op(), 1..8), 1..8);
    runner
        .run(&groups, |groups| {
            // Every case (and every shrinking step) has hosts of its own.
            case.set(case.get() + 1);
            let mut model = Model {
                prefix: format!("m{}", case.get()),
                hosts: vec![Host::default(); HOSTS],
                clock: T0,
                streams: 0,
            };
            for i in 0..HOSTS {
                store.hello(&info(&model.host(i), "web"), T0).unwrap();
            }
            for group in &groups {
                let (writes, expected): (Vec<Write>, Vec<Result<Applied, ()>>) =
                    group.iter().map(|op| model.write(op)).unzip();
                let results = store.apply(&writes).expect("the group commits");
                let results: Vec<Result<Applied, ()>> = results
                    .into_iter()
                    .map(|r| match r {
                        Ok(applied) => Ok(applied),
                        Err(StoreError::Rejected(_)) => Err(()),
                        Err(e) => panic!("a database error: {e}"),
                    })
                    .collect();
                prop_assert_eq!(results, expected, "the results of {:?}", group);
                check(store, &model)?;
            }
            Ok(())
        })
        .unwrap();
}
