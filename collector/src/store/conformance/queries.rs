//! Cases about fleet queries.

use std::collections::BTreeSet;

use driftwatch_proto::v1;

use super::*;

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

    let detail = store.api().get_host("i-1", &query).unwrap().unwrap();
    let host = detail.host.unwrap();
    assert_eq!((host.host.as_str(), host.drift_count), ("i-1", 4));
    assert_eq!(
        detail.drift,
        [&items[3], &items[1], &items[2], &items[0]].map(wire),
        "security first, then by path"
    );

    let by_name = store.api().get_host("web-1", &query).unwrap().unwrap();
    assert_eq!(by_name.host.unwrap().host, "i-1");
    assert_eq!(
        store.api().get_host("web-2", &query).unwrap(),
        None,
        "an ambiguous hostname"
    );
    assert_eq!(store.api().get_host("nope", &query).unwrap(), None);
    assert_eq!(store.api().get_host("", &query).unwrap(), None);

    let security = host_query(T0, false, filter(Some(Severity::Security), None));
    let detail = store.api().get_host("i-1", &security).unwrap().unwrap();
    assert_eq!(detail.drift, [&items[3], &items[1]].map(wire));
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

    let paths = store.api().list_paths(&ItemFilter::default(), 0).unwrap();
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
    let limited = store.api().list_paths(&ItemFilter::default(), 1).unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].path, "/etc/nginx/nginx.conf");

    let paths_of = |f: ItemFilter| -> Vec<(String, u64)> {
        store
            .api()
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
    let same_other_text = item_with_diff(
        "/etc/nginx/nginx.conf",
        "behavioral",
        "cc",
        Some("--- a\n+++ b\n"),
    );
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

    let causes = store
        .api()
        .list_causes(&ItemFilter::default(), 0, 0)
        .unwrap();
    assert_eq!(causes.len(), 3);
    let top = &causes[0];
    assert_eq!(top.cause, same.cause);
    assert_eq!(top.path, "/etc/nginx/nginx.conf");
    assert_eq!(top.kind, "modified");
    assert_eq!(top.severity, "behavioral");
    assert_eq!(top.changed, ["content"]);
    assert_eq!(top.host_count, 2);
    assert_eq!(top.hosts, ["i-1", "i-2"]);
    assert_eq!(
        top.example,
        Some(wire(&same_other_text)),
        "the example is the first host's item"
    );
    let capped = store
        .api()
        .list_causes_capped(&ItemFilter::default(), 0, 0, 1)
        .unwrap();
    assert_eq!(
        (capped[0].host_count, capped[0].hosts.clone()),
        (2, vec!["i-1".to_owned()]),
        "a cap keeps the count and the first names"
    );
    assert_eq!(capped[0].example, top.example);
    let singles: BTreeSet<_> = causes[1..].iter().map(|c| c.cause.clone()).collect();
    assert_eq!(
        singles,
        BTreeSet::from([different.cause.clone(), sshd.cause.clone()])
    );
    assert!(causes[1..].iter().all(|c| c.host_count == 1));

    let shared = store
        .api()
        .list_causes(&ItemFilter::default(), 2, 0)
        .unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].cause, same.cause);
    assert_eq!(
        store
            .api()
            .list_causes(&ItemFilter::default(), 0, 1)
            .unwrap(),
        shared,
        "a limit keeps the most shared"
    );
    let ssh = store
        .api()
        .list_causes(&filter(None, Some("/etc/ssh/*")), 0, 0)
        .unwrap();
    assert_eq!(ssh.len(), 1);
    assert_eq!(
        (
            ssh[0].cause.as_str(),
            ssh[0].severity.as_str(),
            ssh[0].example.clone()
        ),
        (sshd.cause.as_str(), "security", Some(wire(&sshd)))
    );
    let security = store
        .api()
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
            .api()
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
            item: Some(wire(&a)),
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
        .api()
        .history(&HistoryQuery {
            filter: filter(Some(Severity::Security), None),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(security.len(), 1);
    assert_eq!(security[0].path, "/etc/b.conf");
    assert!(query("i-9", None, None, 0).is_empty());
}

pub fn find_host_names_the_host_get_host_finds(store: &dyn Store) {
    store.hello(&info("i-1", "web-1"), T0).unwrap();
    store.hello(&info("i-2", "web-2"), T0).unwrap();
    store.hello(&info("i-3", "web-2"), T0).unwrap();
    // A hostname that is another host's identity: the identity wins.
    store.hello(&info("i-4", "i-1"), T0).unwrap();
    let find = |name: &str| store.find_host(name).unwrap();
    assert_eq!(find("i-1").as_deref(), Some("i-1"));
    assert_eq!(find("web-1").as_deref(), Some("i-1"));
    assert_eq!(find("web-2"), None, "an ambiguous hostname");
    assert_eq!(find("nope"), None);
    assert_eq!(find(""), None);
    let query = host_query(T0, false, ItemFilter::default());
    for name in ["i-1", "web-1", "web-2", "nope"] {
        let got = store.api().get_host(name, &query).unwrap();
        assert_eq!(
            got.and_then(|d| d.host).map(|h| h.host),
            find(name),
            "{name}"
        );
    }
}

pub fn history_is_ordered_by_receipt_then_by_storage(store: &dyn Store) {
    for (host, name) in [("i-1", "web-1"), ("i-2", "web-2")] {
        store.hello(&info(host, name), T0).unwrap();
    }
    let (a, b, c) = (
        item("/etc/a.conf", "behavioral", "bb"),
        item("/etc/b.conf", "behavioral", "bb"),
        item("/etc/c.conf", "behavioral", "bb"),
    );
    // Received in the same millisecond: i-2's batch, then i-1's, in one group commit; then
    // i-1's next batch, in the same millisecond again, in a commit of its own.
    let group = [
        batch("i-2", "s1", vec![drifted(1, &a), drifted(2, &b)], T0),
        batch("i-1", "s1", vec![drifted(1, &c)], T0),
    ];
    for result in store.apply(&group).unwrap() {
        result.unwrap();
    }
    apply1(store, batch("i-1", "s1", vec![drifted(2, &a)], T0)).unwrap();
    // Stored last but received earlier (a batch that waited behind others): by receipt.
    apply1(store, batch("i-2", "s1", vec![drifted(3, &c)], T0 - 1)).unwrap();

    let keys = |events: Vec<v1::HistoryEvent>| -> Vec<(String, u64)> {
        events.into_iter().map(|e| (e.host, e.seq)).collect()
    };
    let key = |host: &str, seq| (host.to_owned(), seq);
    let expected = [
        key("i-2", 3),
        key("i-2", 1),
        key("i-2", 2),
        key("i-1", 1),
        key("i-1", 2),
    ];
    for _ in 0..3 {
        assert_eq!(
            keys(all_history(store)),
            expected,
            "the same order every time"
        );
    }
    let newest = store
        .api()
        .history(&HistoryQuery {
            limit: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        keys(newest),
        expected[2..],
        "a limit keeps the newest, oldest first"
    );
}
