//! Stopping: SIGTERM to `driftwatch-collector serve` or `driftwatch up` with an agent and a
//! `watch` client connected ends the process within its shutdown timeout, with status 0; the
//! clients are told why, and the agent loses nothing across the restart.

use std::time::Duration;

use driftwatch_tests::{
    Collector, TestDir, WatchClient, assert_history_consistent, drift_paths, terminate,
};

const SETTLE: Duration = Duration::from_secs(30);
/// The shutdown timeout the tests give.
const TIMEOUT: &str = "5s";
/// How long after SIGTERM the process must be gone: the timeout plus a margin for a loaded
/// machine (a bound, not a benchmark).
const EXIT_WITHIN: Duration = Duration::from_secs(5 + 5);

#[test]
fn sigterm_stops_a_collector_with_an_agent_and_a_watch_connected_and_nothing_is_lost() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let mut c = Collector::start_with_args(
        &t.path().join("collector"),
        &["--shutdown-timeout", TIMEOUT],
    );
    let agent = t.start_agent(&b, &t.collector_config(&c, "i-term"));
    t.write_by_rename("/etc/motd", "before the restart\n");
    c.wait_host_paths("i-term", SETTLE, |p| p == ["/etc/motd"]);
    let mut watch = WatchClient::start(&c.url, t.path());

    // A burst in flight when the signal comes: whatever batch the collector holds is
    // committed and acknowledged, the rest is sent again after the restart.
    for i in 0..200 {
        t.write(&format!("/etc/burst/{i:03}.conf"), format!("v = {i}\n"));
    }
    let (status, _) = c.terminate(EXIT_WITHIN);
    let log = c.log_text();
    assert!(status.success(), "the collector exited {status}:\n{log}");
    assert!(log.contains("Collector stopped."), "{log}");

    // The watch client was told why, and ended (an error: its feed stopped).
    let watched = watch.wait_exit(SETTLE);
    let said = watch.stderr_text();
    assert_eq!(watched.code(), Some(1), "{said}");
    assert!(said.contains("the collector is shutting down"), "{said}");

    // The agent noticed, says why, and comes back to the restarted collector with the edits
    // made meanwhile: the drift set and the history are whole.
    t.write_by_rename("/etc/nginx/nginx.conf", "worker_processes 8;\n");
    c.restart();
    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    assert_eq!(
        expected.len(),
        203,
        "motd, nginx.conf, the burst and its directory"
    );
    c.wait_host_paths("i-term", SETTLE, |p| p == expected);
    assert_history_consistent(&c, "i-term", &expected);
    let agent_log = agent.log_text();
    assert!(
        agent_log.contains("the collector is shutting down"),
        "{agent_log}"
    );
}

#[test]
fn sigterm_stops_up_with_a_watch_connected() {
    let t = TestDir::new();
    t.populate();
    let port = driftwatch_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut up = t.start_up(port, &["--shutdown-timeout", TIMEOUT]);
    let log = || {
        let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{}", read("up.out"), read("up.err"))
    };
    // Up once its agent has reported.
    let reported = driftwatch_tests::wait_for(SETTLE, || {
        t.cmd("driftwatch")
            .args(["--collector", &url, "host", "builder"])
            .output()
            .status
            .success()
    });
    assert!(reported, "the agent never reported; {}", log());
    let mut watch = WatchClient::start(&url, t.path());

    let (status, _) = terminate(&mut up, EXIT_WITHIN, &log);
    assert!(status.success(), "up exited {status}; {}", log());
    let watched = watch.wait_exit(SETTLE);
    let said = watch.stderr_text();
    assert_eq!(watched.code(), Some(1), "{said}");
    assert!(said.contains("the collector is shutting down"), "{said}");
}
