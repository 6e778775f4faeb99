//! The collector as a systemd service (packaging/systemd/driftwatch-collector.service): the
//! real binary's sd_notify messages read from a real unix datagram socket, as systemd reads
//! them, and `validate`, the unit's `ExecStartPre`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch_tests::{TestDir, bin, free_port, terminate};

/// The next datagram on `socket`, as text without its trailing newline (sd_notify ends each
/// assignment with one); `None` once `until` has passed.
fn next_message(socket: &UnixDatagram, until: Instant) -> Option<String> {
    let left = until.checked_duration_since(Instant::now())?;
    socket
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .expect("set a read timeout");
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("reading the notify socket: {e}"),
    }
}

/// Reads messages until one satisfies `want`; panics with everything read when none does
/// within `timeout`. Returns the messages read before it.
fn wait_message(
    socket: &UnixDatagram,
    timeout: Duration,
    what: &str,
    log: &Path,
    want: impl Fn(&str) -> bool,
) -> Vec<String> {
    let until = Instant::now() + timeout;
    let mut before = Vec::new();
    while let Some(message) = next_message(socket, until) {
        if want(&message) {
            return before;
        }
        before.push(message);
    }
    panic!(
        "no {what} within {timeout:?}; messages: {before:?}\nlog:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Starts `command` as systemd would start a `Type=notify` service with `WatchdogSec=`:
/// `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` set, stderr (logs) to `log`.
fn spawn_notified(
    mut command: Command,
    notify: &Path,
    watchdog_usec: u64,
    log: &Path,
) -> std::process::Child {
    command
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", watchdog_usec.to_string())
        .env_remove("WATCHDOG_PID")
        .env("DRIFTWATCH_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"))
}

#[test]
fn collector_says_ready_then_pings_the_watchdog_then_stopping_on_sigterm() {
    let t = TestDir::new();
    let notify = t.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).expect("bind the notify socket");
    let port = free_port();
    let log = t.path().join("collector.log");
    let mut command = Command::new(bin("driftwatch-collector"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database")
        .arg(format!(
            "sqlite://{}",
            t.path().join("data/collector.db").display()
        ));
    // As systemd sets it for WatchdogSec=400ms: a ping every 200 ms.
    let mut child = spawn_notified(command, &notify, 400_000, &log);

    // READY=1 (only watchdog pings may come before it), and by then it answers.
    let before = wait_message(&socket, Duration::from_secs(30), "READY=1", &log, |m| {
        m == "READY=1"
    });
    assert!(
        before.iter().all(|m| m == "WATCHDOG=1"),
        "before READY=1: {before:?}"
    );
    let health = ureq::get(&format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .expect("the collector answers once it said READY=1")
        .into_body()
        .read_to_string()
        .expect("healthz body");
    assert_eq!(health, "ok\n");

    // The watchdog keeps being pinged: three pings at 200 ms take well under 5 s.
    for _ in 0..3 {
        let other = wait_message(&socket, Duration::from_secs(5), "WATCHDOG=1", &log, |m| {
            m == "WATCHDOG=1"
        });
        assert!(other.is_empty(), "between watchdog pings: {other:?}");
    }

    // SIGTERM: STOPPING=1, then a clean exit within --shutdown-timeout (5 s) and a margin.
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let (status, took) = terminate(&mut child, Duration::from_secs(10), &log_text);
    assert!(status.success(), "exit {status}; log:\n{}", log_text());
    assert!(took < Duration::from_secs(8), "stopping took {took:?}");
    let other = wait_message(&socket, Duration::from_secs(1), "STOPPING=1", &log, |m| {
        m == "STOPPING=1"
    });
    assert!(
        other.iter().all(|m| m == "WATCHDOG=1"),
        "before STOPPING=1: {other:?}"
    );
}

#[test]
fn collector_validate_accepts_what_serve_would_and_lists_every_problem() {
    let t = TestDir::new();
    let database = format!("sqlite://{}", t.path().join("data/c.db").display());
    let out = t
        .cmd("driftwatch-collector")
        .args(["validate", "--database", &database])
        .ok();
    assert_eq!(out, "OK\n");
    // Nothing was created: validating does not open the database.
    assert!(!t.path().join("data").exists());

    // Plaintext off loopback, a missing certificate and a zero heartbeat: all three at once.
    let missing = t.path().join("missing.pem");
    let stderr = t
        .cmd("driftwatch-collector")
        .args(["validate", "--listen", "0.0.0.0:7470", "--heartbeat", "0s"])
        .arg("--database")
        .arg("mysql://db/fleet")
        .stderr_with_code(1);
    assert!(stderr.contains("--listen 0.0.0.0:7470"), "{stderr}");
    assert!(
        stderr.contains("--database: unknown database URL"),
        "{stderr}"
    );
    assert!(stderr.contains("--heartbeat"), "{stderr}");
    let stderr = t
        .cmd("driftwatch-collector")
        .args(["validate", "--database", &database])
        .arg("--tls-cert")
        .arg(&missing)
        .arg("--tls-key")
        .arg(&missing)
        .stderr_with_code(1);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("missing.pem"),
        "{stderr}"
    );
    // The environment the unit's EnvironmentFile sets is read as serve reads it.
    let stderr = t
        .cmd("driftwatch-collector")
        .arg("validate")
        .env("DRIFTWATCH_LISTEN", "10.0.0.1:7470")
        .env("DRIFTWATCH_DATABASE", &database)
        .stderr_with_code(1);
    assert!(stderr.contains("--listen 10.0.0.1:7470"), "{stderr}");
}

#[test]
fn agent_pings_the_watchdog_through_a_long_rescan_and_stops_in_the_middle_of_it() {
    // packaging/systemd/driftwatch-agent.service (WatchdogSec=60, TimeoutStopSec=15s) relies
    // on both: rescans hash on their own thread while the main loop keeps pinging, and a stop
    // cancels a rescan instead of waiting for it.
    let t = TestDir::new();
    let big: Vec<u8> = (0..30u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    t.write("/etc/big.bin", &big);
    let baseline = t.baseline();
    let config = t.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "baseline = {baseline:?}\nroot = {:?}\nstate_dir = {:?}\nlisten = \"\"\n\
             [rescan]\ninterval = \"1s\"\nfull_hash_every = 1\n\
             [hashing]\nrate = \"3MiB\"\n",
            t.root(),
            t.path().join("state"),
        ),
    )
    .unwrap();
    let notify = t.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).expect("bind the notify socket");
    let log = t.path().join("agent.log");
    let mut command = Command::new(bin("driftwatch-agent"));
    command.arg("run").arg("--config").arg(&config);
    let mut child = spawn_notified(command, &notify, 1_000_000, &log);
    wait_message(&socket, Duration::from_secs(30), "READY=1", &log, |m| {
        m == "READY=1"
    });
    let read_at_ready = rchar(child.id());
    // The first periodic rescan starts a second after READY=1 and hashes 30 MiB at 3 MiB/s:
    // about ten seconds. Through five of them, a ping every half second.
    let until = Instant::now() + Duration::from_secs(6);
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    while let Some(message) = next_message(&socket, until) {
        if message == "WATCHDOG=1" {
            longest = longest.max(last.elapsed());
            last = Instant::now();
        }
    }
    longest = longest.max(last.elapsed());
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    // The rescan was reading the file all along (the startup comparison trusted its
    // metadata and read nothing of it), and has not finished.
    let read = rchar(child.id()) - read_at_ready;
    assert!(read > 4 << 20, "read {read} bytes; log:\n{}", log_text());
    assert!(
        !log_text().contains("kind=\"full_hash\""),
        "the full-hash rescan ended before the stop; log:\n{}",
        log_text()
    );
    assert!(
        longest < Duration::from_millis(1500),
        "no watchdog ping for {longest:?} during the rescan; log:\n{}",
        log_text()
    );
    let (status, took) = terminate(&mut child, Duration::from_secs(15), &log_text);
    assert!(status.success(), "exit {status}; log:\n{}", log_text());
    assert!(
        took < Duration::from_secs(5),
        "stopping mid-rescan took {took:?}"
    );
    wait_message(&socket, Duration::from_secs(1), "STOPPING=1", &log, |m| {
        m == "STOPPING=1"
    });
}

/// Bytes a process has read so far (`rchar` in /proc/PID/io).
fn rchar(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rchar in /proc/{pid}/io:\n{io}"))
}
