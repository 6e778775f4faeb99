//! The command lines as scripts and new users meet them: exit codes of usage errors, output
//! into a closed pipe, what `history --host` and the JSON API accept, what `hosts` filters
//! list, and how counts read.

use std::process::Output;
use std::time::Duration;

use driftwatch_tests::{TestDir, WatchClient, describe};

const SETTLE: Duration = Duration::from_secs(30);

/// 2 means "drift found" to every script: a usage error must not say that.
#[test]
fn usage_errors_exit_1_and_help_exits_0_on_every_binary() {
    let t = TestDir::new();
    let usage_errors: &[(&str, &[&str])] = &[
        ("driftwatch", &["--no-such-flag"]),
        ("driftwatch", &["hosts", "--limit", "many"]),
        ("driftwatch", &["host"]),
        ("driftwatch", &[]),
        ("driftwatch-agent", &["check", "--no-such-flag"]),
        ("driftwatch-agent", &["check"]),
        ("driftwatch-agent", &["status", "--state-dir"]),
        ("driftwatch-agent", &["frobnicate"]),
        ("driftwatch-collector", &["serve", "--no-such-flag"]),
        (
            "driftwatch-collector",
            &["serve", "--shutdown-timeout", "soon"],
        ),
        ("driftwatch-collector", &[]),
    ];
    for (binary, args) in usage_errors {
        let err = t.cmd(binary).args(*args).stderr_with_code(1);
        assert!(err.contains("--help"), "{binary} {args:?}: {err}");
    }
    for binary in ["driftwatch", "driftwatch-agent", "driftwatch-collector"] {
        for flag in ["--help", "--version"] {
            let out = t.cmd(binary).arg(flag).code(0);
            assert!(out.contains(binary), "{binary} {flag}: {out}");
        }
    }
}

/// Runs `cmd` with its stdout a pipe whose reader is already gone (as after `| head` exits):
/// every write fails with EPIPE.
fn into_closed_pipe(cmd: driftwatch_tests::Cmd) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stdout(writer).output()
}

fn assert_quiet_end(out: &Output, code: i32, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}:\n{}", describe(out));
    assert!(
        !err.contains("panicked") && !err.contains("failed printing") && !err.contains("pipe"),
        "{what}:\n{}",
        describe(out)
    );
}

#[test]
fn check_into_a_closed_pipe_ends_quietly_with_its_exit_code() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let check = |extra: &[&str]| {
        t.cmd("driftwatch-agent")
            .args(["check", "--baseline"])
            .arg(&b)
            .arg("--root")
            .arg(t.root())
            .args(extra)
    };
    assert_quiet_end(&into_closed_pipe(check(&[])), 0, "check, no drift");
    t.write_by_rename("/etc/motd", "changed\n");
    assert_quiet_end(&into_closed_pipe(check(&[])), 2, "check with drift");
    assert_quiet_end(&into_closed_pipe(check(&["--json"])), 2, "check --json");
    let show = t.cmd("driftwatch-agent").args(["baseline", "show"]).arg(&b);
    assert_quiet_end(&into_closed_pipe(show), 0, "baseline show");
    let rules = t.cmd("driftwatch-agent").args(["rules", "default"]);
    assert_quiet_end(&into_closed_pipe(rules), 0, "rules default");
    let help = t.cmd("driftwatch").arg("--help");
    assert_quiet_end(&into_closed_pipe(help), 0, "--help");
}

#[test]
fn fleet_output_into_a_closed_pipe_ends_quietly_with_its_exit_code() {
    let t = TestDir::new();
    let (c, _agent) = t.fleet_of_one("i-cli");
    let commands: &[(&[&str], i32)] = &[
        (&["host", "i-cli"], 0),
        (&["host", "i-cli", "--json"], 0),
        (&["hosts"], 0),
        (&["hosts", "--diverged"], 2),
        (&["paths"], 0),
        (&["causes"], 0),
        (&["history"], 0),
        (&["history", "--json"], 0),
    ];
    for (args, code) in commands {
        let out = into_closed_pipe(c.cli().args(*args));
        assert_quiet_end(&out, *code, &format!("{args:?}"));
    }
    // A live feed ends at its first event nobody reads.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut watch = WatchClient::start_with_stdout(&c.url, t.path(), writer);
    t.write_by_rename("/etc/nginx/nginx.conf", "worker_processes 8;\n");
    let status = watch.wait_exit(SETTLE);
    let err = watch.stderr_text();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn history_takes_a_hostname_as_host_does_and_an_unknown_host_is_an_error() {
    let t = TestDir::new();
    let (c, _agent) = t.fleet_of_one("i-cli");

    // By hostname as by identity; an unknown host is an error, not an empty history.
    let by_id = c.cli().args(["history", "--host", "i-cli", "--json"]).ok();
    let by_name = c
        .cli()
        .args(["history", "--host", "i-cli.test", "--json"])
        .ok();
    assert_eq!(by_id, by_name);
    assert!(by_id.contains("/etc/motd"), "{by_id}");
    let err = c
        .cli()
        .args(["history", "--host", "i-nope"])
        .stderr_with_code(1);
    assert!(err.contains("no host \"i-nope\""), "{err}");
    let (status, body) = c.get("/api/v1/history?host=i-nope");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no host"), "{body}");
    let (status, body) = c.get("/api/v1/history?host=i-cli.test");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/etc/motd"), "{body}");

    // Strictly ordered: by the time received, oldest first.
    let events: serde_json::Value = serde_json::from_str(&by_id).unwrap();
    let received: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["received_at"].as_str().unwrap())
        .collect();
    assert!(received.is_sorted(), "{received:?}");
}

#[test]
fn the_json_api_refuses_a_parameter_it_does_not_take_by_name() {
    let t = TestDir::new();
    let (c, _agent) = t.fleet_of_one("i-cli");

    for (path, name) in [
        ("/api/v1/hosts?image=foo", "image"),
        ("/api/v1/paths?diverged=true", "diverged"),
        ("/api/v1/hosts/i-cli?verbose=1", "verbose"),
        ("/api/v1/hosts?limit=many", "limit"),
    ] {
        let (status, body) = c.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains(name), "{path}: {body}");
    }
    let (status, body) = c.get("/api/v1/hosts?diverged=true&severity=cosmetic&limit=5");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn hosts_filters_list_only_the_hosts_with_matching_drift() {
    let t = TestDir::new();
    let (c, _agent) = t.fleet_of_one("i-cli");

    let elsewhere = c.cli().args(["hosts", "--path", "/var/**"]).ok();
    assert!(elsewhere.contains("No hosts"), "{elsewhere}");
    let security = c
        .cli()
        .args(["hosts", "--severity", "security", "--json"])
        .ok();
    assert_eq!(security.trim(), "[]");
    let cosmetic: serde_json::Value = serde_json::from_str(
        &c.cli()
            .args(["hosts", "--severity", "cosmetic", "--json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(cosmetic[0]["host"], "i-cli", "{cosmetic:#}");
    assert_eq!(cosmetic[0]["drift_count"], 1, "{cosmetic:#}");
}

#[test]
fn a_count_of_one_reads_singular() {
    let t = TestDir::new();
    let (c, _agent) = t.fleet_of_one("i-cli");

    let listing = c.cli().arg("hosts").ok();
    assert!(listing.contains("1 host, 1 with drift."), "{listing}");
    let detail = c.cli().args(["host", "i-cli"]).ok();
    assert!(detail.contains("1 drift item, worst cosmetic"), "{detail}");
}
