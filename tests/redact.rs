//! Secrets never leave the host (issue 12): secrets planted in captured files are absent from
//! the baseline, the agent's state, the collector's database and every output, while the diffs
//! still show which lines changed.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch_tests::{Collector, TestDir, history};

const SETTLE: Duration = Duration::from_secs(30);
/// Every planted secret contains this; nothing else in the tree does.
const NEEDLE: &str = "PLANTED";
const PEM_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCPLANTEDBKcwggSjAgEAAoIBAQC7\nVJTUt9Us8cKjMzEfYyjiWA4R4PLANTED7ujxj0kFEyadPG0Y8iWqDZpWn\n";

fn cert(body: &str) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUeXJ0\n-----END CERTIFICATE-----\n\
         -----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n"
    )
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(read) = fs::read_dir(dir) else {
        return out;
    };
    for entry in read.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_below(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn assert_clean(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE.as_bytes()),
        "a planted secret is in {what}:\n{}",
        String::from_utf8_lossy(bytes)
    );
}

/// The baseline's payload, decompressed (its zstd frame inside the envelope).
fn baseline_payload(file: &Path) -> Vec<u8> {
    let bytes = fs::read(file).expect("read baseline");
    let start = bytes
        .windows(4)
        .position(|w| w == [0x28, 0xb5, 0x2f, 0xfd])
        .expect("a zstd frame in the baseline");
    let mut decoder = zstd::stream::read::Decoder::new(&bytes[start..])
        .expect("zstd decoder")
        .single_frame();
    let mut payload = Vec::new();
    decoder.read_to_end(&mut payload).expect("decompress");
    payload
}

#[test]
fn planted_secrets_are_redacted_in_the_baseline_state_collector_and_every_output() {
    let t = TestDir::new();
    t.populate();
    t.write(
        "/etc/mysql.cnf",
        "[client]\nuser = app\npassword=hunter2-PLANTED\nport = 3306\n",
    );
    t.write("/etc/ssl/certs/site.crt", cert(PEM_BODY));
    t.write(
        "/etc/app/keys.conf",
        "# the deploy user's key id\nid AKIAPLANTED000000000\nregion eu-west-1\n",
    );
    t.write(
        "/etc/app/upstream.conf",
        "upstream = https://app:s3cr3tPLANTED@db.internal:5432/app\ntimeout = 5\n",
    );
    let b = t.baseline();
    let payload = baseline_payload(&b);
    assert!(
        payload.windows(10).any(|w| w == b"[redacted]"),
        "the baseline holds no redaction marker"
    );
    assert_clean("the baseline's payload", &payload);
    assert_clean("the baseline file", &fs::read(&b).unwrap());
    let show = t
        .cmd("driftwatch-agent")
        .args(["baseline", "show", "--entries", "--json"])
        .arg(&b)
        .ok();
    assert_clean("baseline show", show.as_bytes());

    let c = Collector::start(&t.path().join("collector"));
    let mut agent = t.start_agent(&b, &t.collector_config(&c, "i-redact"));
    c.wait_host_paths("i-redact", SETTLE, |p| p.is_empty());

    // The password stays, the port changes: the password line is an unchanged line.
    t.write_by_rename(
        "/etc/mysql.cnf",
        "[client]\nuser = app\npassword=hunter2-PLANTED\nport = 3307\n",
    );
    // The URL's password changes.
    t.write_by_rename(
        "/etc/app/upstream.conf",
        "upstream = https://app:n3wPLANTED@db.internal:5432/app\ntimeout = 5\n",
    );
    // Another private key in the certificate file.
    t.write_by_rename(
        "/etc/ssl/certs/site.crt",
        cert("MIIEvAIBADANBgkqhkiG9w0BAQEFAASCPLANTEDother\n"),
    );
    t.write_by_rename(
        "/etc/app/keys.conf",
        "# the deploy user's key id\nid AKIAPLANTEDNEW000000\nregion eu-west-1\n",
    );
    t.write(
        "/etc/app/new.env",
        "DB_HOST=db\nDB_PASSWORD=added-PLANTED\n",
    );
    let changed = [
        "/etc/app/keys.conf",
        "/etc/app/new.env",
        "/etc/app/upstream.conf",
        "/etc/mysql.cnf",
        "/etc/ssl/certs/site.crt",
    ];
    c.wait_host_paths("i-redact", SETTLE, |p| p == changed);

    let host_json = c.cli().args(["host", "i-redact", "--json"]).ok();
    let detail: serde_json::Value = serde_json::from_str(&host_json).unwrap();
    let diff = |path: &str| -> String {
        detail["drift"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == path)
            .unwrap_or_else(|| panic!("no item for {path}: {detail:#}"))["diff"]
            .as_str()
            .unwrap_or_else(|| panic!("no diff for {path}: {detail:#}"))
            .to_owned()
    };
    let mysql = diff("/etc/mysql.cnf");
    assert!(
        mysql.contains("\n password=[redacted]\n")
            && mysql.contains("-port = 3306")
            && mysql.contains("+port = 3307"),
        "an unchanged secret line is an unchanged line:\n{mysql}"
    );
    let upstream = diff("/etc/app/upstream.conf");
    assert!(
        upstream.contains("-upstream = https://app:[redacted]@db.internal")
            && upstream.contains("+upstream = https://app:[redacted ")
            && upstream.contains(" timeout = 5"),
        "a changed secret is a changed line:\n{upstream}"
    );
    let crt = diff("/etc/ssl/certs/site.crt");
    assert!(
        crt.contains("-[redacted]") && crt.contains("+[redacted "),
        "{crt}"
    );
    let keys = diff("/etc/app/keys.conf");
    assert!(
        keys.contains("-id [redacted]") && keys.contains("+id [redacted "),
        "{keys}"
    );
    assert!(
        diff("/etc/app/new.env").contains("+DB_PASSWORD=[redacted "),
        "{detail:#}"
    );

    // Every output.
    let state = agent.state_dir.clone();
    let (_, check) = t.check_json(&b, &["--state-dir", state.to_str().unwrap()]);
    let outputs = [
        ("check --json", check.to_string()),
        ("driftwatch host --json", host_json),
        ("driftwatch host", c.cli().args(["host", "i-redact"]).ok()),
        (
            "driftwatch paths --json",
            c.cli().args(["paths", "--json"]).ok(),
        ),
        (
            "driftwatch history --json",
            serde_json::Value::from(history(&c, "i-redact")).to_string(),
        ),
        (
            "/api/v1/hosts/i-redact",
            c.api("/api/v1/hosts/i-redact").to_string(),
        ),
        (
            "/api/v1/history",
            c.api("/api/v1/history?host=i-redact").to_string(),
        ),
        ("/api/v1/report", c.get("/api/v1/report").1),
        ("the agent's /status", agent.status().to_string()),
    ];
    for (what, text) in &outputs {
        assert_clean(what, text.as_bytes());
    }
    // check tags a secret as the daemon does, with the state directory's key.
    let check_diff = check["drift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "/etc/app/upstream.conf")
        .map(|i| i["diff"].as_str().unwrap().to_owned())
        .unwrap();
    assert_eq!(check_diff, upstream);

    // Everything on disk, once the agent has stopped (its ledger saved, its spool synced).
    agent.stop();
    let key = state.join("redact.key");
    let meta = fs::metadata(&key).expect("the agent made its redaction key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let mut files = files_below(&state);
    files.extend(files_below(&c.dir));
    files.push(agent.log.clone());
    assert!(
        files.iter().any(|f| f.starts_with(state.join("spool"))),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.ends_with("ledger.pb")), "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with("-wal") || f.to_string_lossy().ends_with(".db")),
        "{files:?}"
    );
    for file in files.iter().filter(|f| **f != key) {
        assert_clean(&file.display().to_string(), &fs::read(file).unwrap());
    }
}
