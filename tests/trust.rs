//! Trust end to end: identities bound to client certificates, what each credential may do,
//! and anti-entropy that repairs what was lost or overwritten. Real certificates (openssl),
//! real processes, real sockets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use driftwatch_tests::{Agent, Collector, TestDir, make_pki, wait_for};

const SETTLE: Duration = Duration::from_secs(30);

/// A CA; agent certificates for hosts `i-0tls` and `i-0spoof`; a CN-only client certificate;
/// operators of each role.
fn fleet_pki(dir: &Path) -> impl Fn(&str) -> String + use<> {
    make_pki(
        dir,
        &[
            ("agent", "subjectAltName=URI:driftwatch:host:i-0tls"),
            ("spoof", "subjectAltName=URI:driftwatch:host:i-0spoof"),
            ("reader", "subjectAltName=URI:driftwatch:operator:reader"),
            (
                "operator",
                "subjectAltName=URI:driftwatch:operator:operator",
            ),
        ],
    );
    let dir = dir.to_owned();
    move |f: &str| dir.join(f).display().to_string()
}

fn mtls_collector(t: &TestDir, p: &impl Fn(&str) -> String) -> Collector {
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
    assert!(c.url.starts_with("https://"));
    c
}

/// Agent configuration over mTLS with the certificate `name.pem`.
fn agent_config(
    t: &TestDir,
    c: &Collector,
    host: &str,
    p: &impl Fn(&str) -> String,
    name: &str,
) -> String {
    t.collector_config(c, host)
        + &format!(
            "ca = {:?}\ncert = {:?}\nkey = {:?}\n",
            p("ca.pem"),
            p(&format!("{name}.pem")),
            p(&format!("{name}.key"))
        )
}

/// `driftwatch` with the client certificate `name` (none for "").
fn cli_as(c: &Collector, p: &impl Fn(&str) -> String, name: &str) -> driftwatch_tests::Cmd {
    let cmd = c.cli().env("DRIFTWATCH_CA", p("ca.pem"));
    if name.is_empty() {
        cmd
    } else {
        cmd.env("DRIFTWATCH_CERT", p(&format!("{name}.pem")))
            .env("DRIFTWATCH_KEY", p(&format!("{name}.key")))
    }
}

/// `curl` GET over mTLS with the certificate `name`: (HTTP status, body).
fn curl_as(c: &Collector, p: &impl Fn(&str) -> String, name: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(p("ca.pem"))
        .args([
            "--cert",
            &p(&format!("{name}.pem")),
            "--key",
            &p(&format!("{name}.key")),
        ])
        .arg(format!("{}{path}", c.url))
        .output()
        .expect("curl runs (tests/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl {path}: {}", String::from_utf8_lossy(&out.stderr))),
        body.to_owned(),
    )
}

fn wait_host_has(c: &Collector, p: &impl Fn(&str) -> String, host: &str, path: &str) {
    let ok = wait_for(SETTLE, || {
        let out = cli_as(c, p, "reader")
            .args(["host", host, "--json"])
            .output();
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(path)
    });
    assert!(
        ok,
        "{path} never showed on {host}; collector log:\n{}",
        c.log_text()
    );
}

/// The sample tree baked, an mTLS collector, and host i-0tls's agent streaming to it with its
/// own certificate, once the collector shows that host's `/etc/motd` edit.
fn mtls_fleet(t: &TestDir) -> (impl Fn(&str) -> String + use<>, Collector, Agent) {
    t.populate();
    let b = t.baseline();
    let p = fleet_pki(&t.path().join("pki"));
    let c = mtls_collector(t, &p);
    let agent = t.start_agent(&b, &agent_config(t, &c, "i-0tls", &p, "agent"));
    t.write_by_rename("/etc/motd", "over mTLS\n");
    wait_host_has(&c, &p, "i-0tls", "/etc/motd");
    (p, c, agent)
}

#[test]
fn agents_and_operators_speak_mtls_and_a_peer_without_a_certificate_is_refused() {
    let t = TestDir::new();
    let (p, c, _agent) = mtls_fleet(&t);
    // Without a client certificate the handshake fails; without the CA the server is not
    // trusted. Both are errors that say so, never an answer.
    let no_cert = cli_as(&c, &p, "").args(["hosts"]).stderr_with_code(1);
    assert!(no_cert.contains("error"), "{no_cert}");
    let no_ca = c.cli().args(["hosts"]).stderr_with_code(1);
    assert!(no_ca.contains("error"), "{no_ca}");
}

#[test]
fn a_spoofing_agent_is_refused_and_the_real_hosts_drift_is_untouched() {
    let t = TestDir::new();
    let (p, c, _real) = mtls_fleet(&t);

    // A second agent, holding the certificate of host i-0spoof, says it is i-0tls: on its
    // own, undrifted tree, its snapshot would wipe i-0tls's drift.
    let spoofer = TestDir::new();
    spoofer.populate();
    let sb = spoofer.baseline();
    let spoof = spoofer.start_agent(&sb, &agent_config(&spoofer, &c, "i-0tls", &p, "spoof"));
    let refused = wait_for(SETTLE, || {
        c.log_text()
            .contains("Refused a hello for another host than the client certificate's")
    });
    assert!(
        refused,
        "the spoofing hello was not refused; log:\n{}",
        c.log_text()
    );
    let log = c.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("Refused a hello"))
        .expect("the refusal line");
    assert!(
        line.contains("i-0spoof") && line.contains("i-0tls"),
        "{line}"
    );
    assert!(
        wait_for(SETTLE, || spoof
            .log_text()
            .contains("a hello as host i-0tls is refused")),
        "the spoofing agent was not told why; its log:\n{}",
        spoof.log_text()
    );
    // Counted, and nothing changed: i-0tls keeps its drift, i-0spoof does not exist.
    let (code, metrics) = curl_as(&c, &p, "reader", "/metrics");
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("driftwatch_collector_identity_refused_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let detail = cli_as(&c, &p, "reader")
        .args(["host", "i-0tls", "--json"])
        .ok();
    assert!(detail.contains("/etc/motd"), "{detail}");
    let hosts = cli_as(&c, &p, "reader").args(["hosts", "--json"]).ok();
    assert!(!hosts.contains("i-0spoof"), "{hosts}");
}

#[test]
fn each_certificate_gets_exactly_its_rights_over_grpc_and_http() {
    let t = TestDir::new();
    let (p, c, _agent) = mtls_fleet(&t);

    // An agent's certificate opens its agent stream and nothing else.
    let denied = cli_as(&c, &p, "agent").args(["hosts"]).stderr_with_code(1);
    assert!(
        denied.contains("opens that host's agent stream and nothing else"),
        "{denied}"
    );
    for path in ["/api/v1/hosts", "/metrics"] {
        let (code, body) = curl_as(&c, &p, "agent", path);
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("agent stream"), "{body}");
    }
    // A reader reads, over gRPC and HTTP, and cannot import.
    cli_as(&c, &p, "reader").args(["hosts"]).ok();
    let (code, body) = curl_as(&c, &p, "reader", "/api/v1/hosts");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("i-0tls"), "{body}");
    let state = write_state(t.path());
    let import = cli_as(&c, &p, "reader")
        .args(["iac", "import", "--terraform-state"])
        .arg(&state)
        .args(["--name", "prod"])
        .stderr_with_code(1);
    assert!(import.contains("needs role operator"), "{import}");
    // An operator imports.
    cli_as(&c, &p, "operator")
        .args(["iac", "import", "--terraform-state"])
        .arg(&state)
        .args(["--name", "prod"])
        .ok();
    // An operator's certificate is no agent's.
    let (code, _) = curl_as(&c, &p, "operator", "/api/v1/hosts");
    assert_eq!(code, 200);
}

/// A minimal Terraform state with one instance.
fn write_state(dir: &Path) -> PathBuf {
    let path = dir.join("terraform.tfstate");
    std::fs::write(
        &path,
        r#"{"version": 4, "terraform_version": "1.9.0", "serial": 1, "lineage": "l",
            "resources": [{"mode": "managed", "type": "aws_instance", "name": "web",
            "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
            "instances": [{"attributes": {"id": "i-0tls", "ami": "ami-1"}}]}]}"#,
    )
    .expect("write state");
    path
}

/// Rows deleted from the collector's database behind its back come back from the agent's
/// heartbeat digest, without any new event on the host.
#[test]
fn drift_lost_from_the_store_is_restored_within_a_few_heartbeats() {
    let t = TestDir::new();
    let (c, _agent) = t.fleet_of_one("i-0entropy");
    let db = c.dir.join("collector.db");
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1])\n\
             n = db.execute(\"DELETE FROM items WHERE host = 'i-0entropy'\").rowcount\n\
             db.commit()\n\
             print(n)",
        )
        .arg(&db)
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_host_paths("i-0entropy", Duration::from_secs(15), |p| {
        p == ["/etc/motd"]
    });
    assert!(
        c.log_text().contains("drift set digest differs"),
        "{}",
        c.log_text()
    );
}

/// A second agent with the same identity replaces the host's drift set and goes away: the
/// live agent's older stream is ended at its next heartbeat (the newest connection of a host
/// is its stream), and it reconnects and puts its own set back.
#[test]
fn a_superseded_stream_cannot_silence_the_live_agent() {
    let t = TestDir::new();
    let (c, _real) = t.fleet_of_one("i-0live");
    let other = TestDir::new();
    other.populate();
    let ob = other.baseline();
    let mut intruder = other.start_agent(&ob, &other.collector_config(&c, "i-0live"));
    // Its (empty) snapshot lands.
    assert!(
        wait_for(SETTLE, || c.log_text().lines().any(|l| l
            .contains("Snapshot replaced the host's drift set")
            && l.contains("items=0"))),
        "{}",
        c.log_text()
    );
    intruder.stop();
    c.wait_host_paths("i-0live", Duration::from_secs(15), |p| p == ["/etc/motd"]);
    assert!(
        c.log_text()
            .contains("a newer connection of host i-0live replaced this stream"),
        "{}",
        c.log_text()
    );
}

/// `curl` GET with a bearer token ("" for none): (HTTP status, body).
fn curl_token(c: &Collector, token: &str, path: &str) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]);
    if !token.is_empty() {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd
        .arg(format!("{}{path}", c.url))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().expect("an HTTP status"),
        body.to_owned(),
    )
}

#[test]
fn operator_tokens_get_exactly_their_rights_and_a_revoked_one_is_refused() {
    let t = TestDir::new();
    let c = Collector::start_with_args(&t.path().join("collector"), &["--require-auth"]);
    let reader = c.create_token("dashboards", "reader");
    let operator = c.create_token("ci", "operator");
    let admin = c.create_token("ana", "admin");
    let as_token = |token: &str| c.cli().env("DRIFTWATCH_TOKEN", token);
    let state = write_state(t.path());
    let import = |token: &str| {
        as_token(token)
            .args(["iac", "import", "--terraform-state"])
            .arg(&state)
            .args(["--name", "prod"])
    };

    // No credential: refused, with how to get one; health stays open for load balancers.
    let anonymous = c
        .cli()
        .env("HOME", t.path())
        .args(["hosts"])
        .stderr_with_code(1);
    assert!(
        anonymous.contains("requires a credential") && anonymous.contains("token create"),
        "{anonymous}"
    );
    let (code, body) = curl_token(&c, "", "/api/v1/hosts");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("--token"), "{body}");
    assert_eq!(curl_token(&c, "", "/healthz").0, 200);

    // A reader reads over gRPC and HTTP, and may not import.
    as_token(&reader).args(["hosts"]).ok();
    assert_eq!(curl_token(&c, &reader, "/api/v1/hosts").0, 200);
    assert_eq!(curl_token(&c, &reader, "/metrics").0, 200);
    let denied = import(&reader).stderr_with_code(1);
    assert!(
        denied.contains("has role reader") && denied.contains("needs role operator"),
        "{denied}"
    );
    // An operator and an admin import, and each import records who made it.
    import(&operator).ok();
    let status = as_token(&reader).args(["iac", "status"]).ok();
    assert!(status.contains("by ci (operator)"), "{status}");
    import(&admin).ok();
    let (code, body) = curl_token(&c, &reader, "/api/v1/iac/status");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""imported_by":"ana (admin)""#), "{body}");
    // A token from nowhere, and a malformed header.
    let forged = format!("dwt_{}", "A".repeat(43));
    let unknown = as_token(&forged).args(["hosts"]).stderr_with_code(1);
    assert!(unknown.contains("unknown, expired or revoked"), "{unknown}");
    assert_eq!(curl_token(&c, "not-ours", "/api/v1/hosts").0, 401);

    // Expired: refused once its time is up.
    let out = c
        .token_command(&[
            "create", "--name", "brief", "--role", "reader", "--ttl", "1s",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", driftwatch_tests::describe(&out));
    let brief = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    std::thread::sleep(Duration::from_millis(1500));
    let expired = as_token(&brief).args(["hosts"]).stderr_with_code(1);
    assert!(expired.contains("unknown, expired or revoked"), "{expired}");

    // Revoked: refused from the next call on.
    let out = c.token_command(&["revoke", "dashboards"]).output().unwrap();
    assert!(out.status.success(), "{}", driftwatch_tests::describe(&out));
    let revoked = as_token(&reader).args(["hosts"]).stderr_with_code(1);
    assert!(revoked.contains("unknown, expired or revoked"), "{revoked}");
    assert_eq!(curl_token(&c, &reader, "/api/v1/hosts").0, 401);
    let again = c.token_command(&["revoke", "dashboards"]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));

    // Listed without secrets; the database holds only hashes.
    let out = c.token_command(&["list", "--json"]).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<(&str, &str, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["role"].as_str().unwrap(),
                t["revoked_at"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("dashboards", "reader", true),
            ("ci", "operator", false),
            ("ana", "admin", false),
            ("brief", "reader", false)
        ]
    );
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&c.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("collector.db") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let text = String::from_utf8_lossy(&stored);
    for secret in [&reader, &operator, &admin] {
        assert!(
            !text.contains(&secret[4..]),
            "a token's secret is in the database"
        );
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("dwt_"));
    // A bad role is a usage error.
    let bad = c
        .token_command(&["create", "--name", "x", "--role", "root"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("reader, operator, admin"));
}

/// On loopback without --require-auth nothing is asked (`driftwatch up`, a first try), but a
/// credential that is presented must be good.
#[test]
fn on_loopback_nothing_is_asked_but_a_bad_token_is_still_refused() {
    let t = TestDir::new();
    let c = Collector::start(&t.path().join("collector"));
    c.cli().env("HOME", t.path()).args(["hosts"]).ok();
    assert_eq!(curl_token(&c, "", "/api/v1/hosts").0, 200);
    let bad = c
        .cli()
        .env("DRIFTWATCH_TOKEN", format!("dwt_{}", "B".repeat(43)))
        .args(["hosts"])
        .stderr_with_code(1);
    assert!(bad.contains("unknown, expired or revoked"), "{bad}");
    // The token file under the user's config directory is read.
    let config = t.path().join("config");
    std::fs::create_dir_all(config.join("driftwatch")).unwrap();
    let good = c.create_token("file", "reader");
    std::fs::write(config.join("driftwatch/token"), format!("{good}\n")).unwrap();
    c.cli().env("XDG_CONFIG_HOME", &config).args(["hosts"]).ok();
    std::fs::write(config.join("driftwatch/token"), "dwt_nope\n").unwrap();
    let from_file = c
        .cli()
        .env("XDG_CONFIG_HOME", &config)
        .args(["hosts"])
        .stderr_with_code(1);
    assert!(
        from_file.contains("unknown, expired or revoked"),
        "{from_file}"
    );
}
