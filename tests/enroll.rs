//! Enrollment end to end: agents get their certificates from the collector's fleet CA with a
//! join token, renew them without it, and lose them to a revocation. Real certificates, real
//! processes, real sockets.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_tests::{Agent, Collector, TestDir, describe, make_pki, wait_for};

const SETTLE: Duration = Duration::from_secs(30);

/// A collector that enrolls hosts with the test CA, issuing certificates valid `validity`.
fn enrolling_collector(t: &TestDir, pki: &Path, validity: &str) -> Collector {
    let p = |f: &str| pki.join(f).display().to_string();
    Collector::start_with_args(
        &t.path().join("collector"),
        &[
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--enroll-ca-cert",
            &p("ca.pem"),
            "--enroll-ca-key",
            &p("ca.key"),
            "--enroll-cert-validity",
            validity,
        ],
    )
}

/// `driftwatch` as the admin `token`.
fn admin(c: &Collector, pki: &Path, token: &str) -> driftwatch_tests::Cmd {
    c.cli()
        .env("DRIFTWATCH_CA", pki.join("ca.pem"))
        .env("DRIFTWATCH_TOKEN", token)
}

/// A join token from `driftwatch enroll token create ARGS`.
fn join_token(c: &Collector, pki: &Path, admin_token: &str, args: &[&str]) -> String {
    let out = admin(c, pki, admin_token)
        .args(["enroll", "token", "create"])
        .args(args)
        .output();
    assert!(out.status.success(), "{}", describe(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("dwj_"), "{token}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shown once"),
        "{}",
        describe(&out)
    );
    token
}

/// Starts an agent for host `host` on `t`'s tree (baked once) that enrolls with `token`.
fn enrolling_agent(t: &TestDir, c: &Collector, pki: &Path, host: &str, token: &str) -> Agent {
    let token_file = t.path().join("join-token");
    fs::write(&token_file, format!("{token}\n")).unwrap();
    let b = t.path().join("baseline.dwb");
    let b = if b.exists() { b } else { t.baseline() };
    t.start_agent(
        &b,
        &(t.collector_config(c, host)
            + &format!(
                "ca = {:?}\n[enroll]\ntoken_file = {:?}\n",
                pki.join("ca.pem"),
                token_file
            )),
    )
}

fn enrolled(c: &Collector, pki: &Path, admin_token: &str) -> Vec<serde_json::Value> {
    let out = admin(c, pki, admin_token)
        .args(["enroll", "list", "--json"])
        .code(0);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn wait_host_has(c: &Collector, pki: &Path, token: &str, host: &str, path: &str) {
    let ok = wait_for(SETTLE, || {
        let out = admin(c, pki, token).args(["host", host, "--json"]).output();
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(path)
    });
    assert!(
        ok,
        "{path} never showed on {host}; collector log:\n{}",
        c.log_text()
    );
}

#[test]
fn an_agent_enrolls_with_a_join_token_renews_without_it_and_is_cut_off_by_a_revocation() {
    let t = TestDir::new();
    t.populate();
    let pki = t.path().join("pki");
    make_pki(&pki, &[]);
    let c = enrolling_collector(&t, &pki, "30s");
    let ana = c.create_token("ana", "admin");
    let token = join_token(
        &c,
        &pki,
        &ana,
        &["--ttl", "1h", "--uses", "1", "--name", "web"],
    );

    let agent = enrolling_agent(&t, &c, &pki, "i-0enr", &token);
    t.write_by_rename("/etc/motd", "enrolled\n");
    wait_host_has(&c, &pki, &ana, "i-0enr", "/etc/motd");

    // The key was made on the host, private; the certificate names exactly this host.
    let enroll_dir = agent.state_dir.join("enroll");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&enroll_dir.join("host.key")), 0o600);
    assert_eq!(mode(&enroll_dir), 0o700);
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(enroll_dir.join("host.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("URI:driftwatch:host:i-0enr"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(pki.join("ca.pem"))
        .arg(enroll_dir.join("host.crt"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", describe(&verify));

    let hosts = enrolled(&c, &pki, &ana);
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["host"], "i-0enr");
    assert_eq!(hosts[0]["token"], "web");
    let tokens = admin(&c, &pki, &ana)
        .args(["enroll", "token", "list"])
        .code(0);
    assert!(tokens.contains("web") && tokens.contains("1/1"), "{tokens}");

    // The enrolled certificate opens the host's stream and nothing else.
    let curl = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(enroll_dir.join("host.crt"))
        .arg("--key")
        .arg(enroll_dir.join("host.key"))
        .arg(format!("{}/api/v1/hosts", c.url))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "403",
        "{}",
        describe(&curl)
    );

    // Renewal: two thirds into a 30 s validity the agent asks for a new certificate with the
    // one it has, and keeps streaming.
    let renewed = wait_for(Duration::from_secs(60), || {
        agent.log_text().contains("Renewed the host certificate")
    });
    assert!(renewed, "never renewed; agent log:\n{}", agent.log_text());
    assert!(enrolled(&c, &pki, &ana)[0]["certificates"].as_u64() >= Some(2));
    t.write_by_rename("/etc/issue", "after renewal\n");
    wait_host_has(&c, &pki, &ana, "i-0enr", "/etc/issue");

    // Revoked: the open stream ends at its next heartbeat, and every reconnection is refused.
    let out = admin(&c, &pki, &ana)
        .args(["enroll", "revoke", "i-0enr"])
        .stderr_with_code(0);
    assert!(out.contains("revoked"), "{out}");
    let cut = wait_for(SETTLE, || {
        c.log_text()
            .contains("Ending the stream of a revoked certificate")
            && agent.log_text().contains("was revoked")
    });
    assert!(
        cut,
        "agent log:\n{}\ncollector log:\n{}",
        agent.log_text(),
        c.log_text()
    );
    t.write_by_rename("/etc/nginx/nginx.conf", "revoked\n");
    std::thread::sleep(Duration::from_secs(2));
    let shown = admin(&c, &pki, &ana)
        .args(["host", "i-0enr", "--json"])
        .code(0);
    assert!(!shown.contains("/etc/nginx/nginx.conf"), "{shown}");

    // Enrolling again takes a new join token (the used one has no uses left).
    fs::remove_file(enroll_dir.join("host.crt")).unwrap();
    let used_up = wait_for(SETTLE, || agent.log_text().contains("has no uses left"));
    assert!(used_up, "agent log:\n{}", agent.log_text());
    let again = join_token(&c, &pki, &ana, &["--name", "again"]);
    fs::write(t.path().join("join-token"), format!("{again}\n")).unwrap();
    wait_host_has(&c, &pki, &ana, "i-0enr", "/etc/nginx/nginx.conf");
}

#[test]
fn a_join_token_past_its_ttl_or_image_and_an_identity_enrolled_by_another_key_are_refused() {
    let t = TestDir::new();
    t.populate();
    let pki = t.path().join("pki");
    make_pki(&pki, &[]);
    let c = enrolling_collector(&t, &pki, "1h");
    let ana = c.create_token("ana", "admin");
    let token = join_token(&c, &pki, &ana, &["--uses", "5"]);
    let _first = enrolling_agent(&t, &c, &pki, "i-0one", &token);
    t.write_by_rename("/etc/motd", "first\n");
    wait_host_has(&c, &pki, &ana, "i-0one", "/etc/motd");

    // Another machine claiming the same identity, with its own key.
    let other = TestDir::new();
    other.populate();
    let impostor = enrolling_agent(&other, &c, &pki, "i-0one", &token);
    let taken = wait_for(SETTLE, || {
        impostor
            .log_text()
            .contains("already enrolled with another key")
    });
    assert!(taken, "agent log:\n{}", impostor.log_text());
    assert!(
        impostor
            .log_text()
            .contains("driftwatch enroll revoke i-0one")
    );
    drop(impostor);

    // A token for another image.
    let web = join_token(&c, &pki, &ana, &["--image", "web-2026"]);
    let wrong = TestDir::new();
    wrong.populate();
    let agent = enrolling_agent(&wrong, &c, &pki, "i-0img", &web);
    let refused = wait_for(SETTLE, || {
        agent.log_text().contains("is for hosts of image web-2026")
    });
    assert!(refused, "agent log:\n{}", agent.log_text());
    drop(agent);

    // A token past its TTL.
    let short = join_token(&c, &pki, &ana, &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let late = TestDir::new();
    late.populate();
    let agent = enrolling_agent(&late, &c, &pki, "i-0late", &short);
    let expired = wait_for(SETTLE, || agent.log_text().contains("expired"));
    assert!(expired, "agent log:\n{}", agent.log_text());
    drop(agent);

    // None of them enrolled; a reader cannot manage enrollment.
    let hosts: Vec<String> = enrolled(&c, &pki, &ana)
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hosts, ["i-0one"]);
    let reader = c.create_token("dash", "reader");
    let denied = admin(&c, &pki, &reader)
        .args(["enroll", "token", "create"])
        .stderr_with_code(1);
    assert!(denied.contains("needs role admin"), "{denied}");
    let metrics = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(pki.join("ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {ana}")])
        .arg(format!("{}/metrics", c.url))
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for line in [
        "driftwatch_collector_certificates_issued_total{kind=\"enroll\"} 1",
        "driftwatch_collector_enrollments_refused_total{reason=\"identity_taken\"}",
        "driftwatch_collector_enrollments_refused_total{reason=\"wrong_image\"}",
        "driftwatch_collector_enrollments_refused_total{reason=\"token_expired\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}
