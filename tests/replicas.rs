//! Issue 14, parts 3 and 5: collector replicas sharing one PostgreSQL. Two real collectors on
//! one throwaway PostgreSQL 15, one agent given both URLs; the replica it streams to is
//! killed (-9) in the middle of 500 edits, and the survivor ends with exactly the agent's
//! drift set and every transition once in its history. Meanwhile `watch` on the other replica
//! sees what the first ingested, and the state source is followed by one replica at a time.

use std::fs;
use std::time::{Duration, Instant};

use driftwatch_tests::{
    Collector, Postgres, TestDir, WatchClient, assert_history_consistent, drift_paths,
    postgres_database, wait_for,
};

const SETTLE: Duration = Duration::from_secs(60);

/// A Terraform state with no instances (what the lease test follows), at `serial`.
fn state(serial: u64) -> String {
    format!(
        r#"{{"version": 4, "terraform_version": "1.6.0", "serial": {serial}, "lineage": "replicas", "outputs": {{}}, "resources": []}}"#
    )
}

fn imported_serial(c: &Collector) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&c.cli().args(["iac", "status", "--json"]).ok()).unwrap();
    status["states"][0]["serial"].clone()
}

#[test]
fn two_replicas_on_one_postgresql_lose_and_duplicate_nothing_when_one_is_killed() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let database = postgres_database();
    let state_file = t.path().join("fleet.tfstate");
    fs::write(&state_file, state(1)).unwrap();
    let source = format!("fleet={}", state_file.display());
    let serve = ["--state-source", &source, "--state-poll", "200ms"];
    let mut first = Collector::start_on_with_args(&t.path().join("a"), &database, &serve);
    // The first replica takes the state source's lease before the second starts.
    assert!(
        wait_for(SETTLE, || first.log_text().contains("took the lease")),
        "{}",
        first.log_text()
    );
    let second = Collector::start_on_with_args(&t.path().join("b"), &database, &serve);
    assert!(
        wait_for(SETTLE, || second.log_text().contains("stands by")),
        "{}",
        second.log_text()
    );
    assert!(wait_for(SETTLE, || imported_serial(&second) == 1));

    // `watch` on the second replica, while the agent streams to the first.
    let watch_dir = t.path().join("watch");
    fs::create_dir_all(&watch_dir).unwrap();
    let _watch = WatchClient::start(&second.url, &watch_dir);
    let config = t.collector_config(&first, "i-replicated").replace(
        &format!("url = {:?}", first.url),
        &format!("url = [{:?}, {:?}]", first.url, second.url),
    );
    let _agent = t.start_agent(&b, &config);
    second.wait_host_paths("i-replicated", SETTLE, |p| p.is_empty());
    assert!(
        first.log_text().contains("host=i-replicated"),
        "the agent streams to its first URL"
    );

    let edit = |i: usize| {
        t.write(
            &format!("/etc/app/f{:02}.conf", i % 50),
            format!("value = {i}\n"),
        );
    };
    for i in 0..200 {
        edit(i);
    }
    // Ingested through the first replica, seen on the second's live feed.
    let watched = || fs::read_to_string(watch_dir.join("watch.out")).unwrap_or_default();
    assert!(
        wait_for(SETTLE, || watched().contains("/etc/app/f00.conf")),
        "watch on the second replica: {}\nfirst replica's log:\n{}",
        watched(),
        first.log_text()
    );

    first.kill9();
    let killed = Instant::now();
    for i in 200..500 {
        edit(i);
    }
    // A file the agent could only deliver through the second replica.
    t.write("/etc/app/after-the-kill.conf", "late = 1\n");
    second.wait_host_paths("i-replicated", SETTLE, |p| {
        p.iter().any(|p| p == "/etc/app/after-the-kill.conf")
    });
    eprintln!(
        "failover: the first event after the kill stored through the other replica {:?} after it",
        killed.elapsed()
    );

    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    // The new directory and its 51 files.
    assert_eq!(expected.len(), 52, "{expected:?}");
    second.wait_host_paths("i-replicated", SETTLE, |p| p == expected);
    assert_history_consistent(&second, "i-replicated", &expected);
    // The state source's lease moved to the survivor, which follows the file now.
    assert!(
        wait_for(SETTLE, || second.log_text().contains("took the lease")),
        "{}",
        second.log_text()
    );
    fs::write(&state_file, state(2)).unwrap();
    assert!(
        wait_for(SETTLE, || imported_serial(&second) == 2),
        "{}",
        second.log_text()
    );
}

/// Part 4: PostgreSQL stopped under a running collector (as a crash would). `/healthz` says so,
/// agents' streams end with UNAVAILABLE and nothing is acknowledged; once the server is back
/// the collector reconnects by itself and every edit made meanwhile arrives, once.
#[test]
fn postgresql_going_away_is_unavailable_and_everything_arrives_once_it_is_back() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    // A server of its own: this test stops it.
    let pg = Postgres::start();
    let c = Collector::start_on(&t.path().join("collector"), &pg.database());
    let agent = t.start_agent(&b, &t.collector_config(&c, "i-pg-down"));
    c.wait_host_paths("i-pg-down", SETTLE, |p| p.is_empty());
    assert_eq!(c.get("/healthz"), (200, "ok\n".to_owned()));

    pg.stop();
    assert!(
        wait_for(SETTLE, || c.get("/healthz").0 == 503),
        "healthz: {:?}",
        c.get("/healthz")
    );
    assert!(c.get("/healthz").1.contains("database does not answer"));
    t.write(
        "/etc/app/while-down.conf",
        "written = while the database was down\n",
    );
    t.write_by_rename("/etc/ssh/sshd_config", "# sshd\nPermitRootLogin yes\n");
    // The agent's batch meets a database that is gone: its stream ends UNAVAILABLE and it
    // keeps the events in its spool.
    assert!(
        wait_for(SETTLE, || agent.log_text().contains("database failed")),
        "agent log:\n{}\ncollector log:\n{}",
        agent.log_text(),
        c.log_text()
    );
    let out = c.cli().args(["hosts", "--json"]).output();
    assert!(!out.status.success(), "a query without a database fails");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("database"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    pg.restart();
    assert!(wait_for(SETTLE, || c.get("/healthz").0 == 200));
    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    assert!(
        expected.contains(&"/etc/app/while-down.conf".to_owned()),
        "{expected:?}"
    );
    c.wait_host_paths("i-pg-down", SETTLE, |p| p == expected);
    assert_history_consistent(&c, "i-pg-down", &expected);
}
