//! What came from a host reaches the operator's terminal shown, never acted on: a file name
//! that forges a line, content with ESC sequences that would retitle and recolour the
//! terminal. Human output escapes them (exact strings asserted); JSON keeps them exact.

use std::time::Duration;

use driftwatch_tests::{Collector, TestDir, item, wait_for};

/// A name with a newline and a fake drift line (a name holds no `/`: `∕` looks like one); motd
/// content with a title change (OSC 0), a colour and a carriage return.
const FORGED: &str = "/etc/x\n  - ∕etc∕sudoers  removed  [security]";
const MOTD: &str = "Welcome\n\x1b]0;owned\x07\x1b[31mred\rover\n";

fn plant(t: &TestDir) {
    t.write(FORGED, "harmless\n");
    t.write_by_rename("/etc/motd", MOTD);
}

#[test]
fn check_escapes_forged_names_and_escape_sequences_and_json_stays_exact() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    plant(&t);
    let out = t
        .cmd("driftwatch-agent")
        .arg("check")
        .arg("--baseline")
        .arg(&b)
        .arg("--root")
        .arg(t.root())
        .output();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b') && !text.contains('\r') && !text.contains('\x07'),
        "{text:?}"
    );
    assert!(
        text.contains("  + /etc/x\\n  - ∕etc∕sudoers  removed  [security]  added  ["),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("- ∕etc")),
        "{text}"
    );
    assert!(
        text.contains("      +\\e]0;owned\\x07\\e[31mred\\r+over\n"),
        "{text}"
    );

    let (_, report) = t.check_json(&b, &[]);
    assert_eq!(item(&report, FORGED)["path"], FORGED);
    let diff = item(&report, "/etc/motd")["diff"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        diff.contains("+\x1b]0;owned\x07\x1b[31mred\r+over\n"),
        "{diff:?}"
    );
}

#[test]
fn the_fleet_cli_escapes_what_hosts_sent() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let c = Collector::start(&t.path().join("collector"));
    let _agent = t.start_agent(&b, &t.collector_config(&c, "i-0term"));
    plant(&t);
    let shown = wait_for(Duration::from_secs(30), || {
        let out = c.cli().args(["host", "i-0term", "--json"]).output();
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("owned") && text.contains("sudoers")
    });
    assert!(shown, "collector log:\n{}", c.log_text());

    let host = c.cli().args(["host", "i-0term"]).code(0);
    assert!(!host.contains('\x1b') && !host.contains('\r'), "{host:?}");
    assert!(
        host.contains("added /etc/x\\n  - ∕etc∕sudoers  removed  [security]\n"),
        "{host}"
    );
    assert!(
        host.contains("      +\\e]0;owned\\x07\\e[31mred\\r+over\n"),
        "{host}"
    );
    for args in [&["history"][..], &["paths"], &["causes"]] {
        let out = c.cli().args(args).code(0);
        assert!(
            out.contains("/etc/x\\n  - ∕etc∕sudoers") && !out.contains("/etc/x\n"),
            "{args:?}: {out}"
        );
    }
    // JSON is exact.
    let json: serde_json::Value =
        serde_json::from_str(&c.cli().args(["paths", "--json"]).code(0)).unwrap();
    assert!(
        json.as_array().unwrap().iter().any(|p| p["path"] == FORGED),
        "{json:#}"
    );
}
