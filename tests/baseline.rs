//! Baseline files: build, show, sign, verify, diff, and refusal of bad files.

use std::fs;

use driftwatch_tests::TestDir;

fn refused(t: &TestDir, baseline: &std::path::Path) -> String {
    t.cmd("driftwatch-agent")
        .arg("check")
        .arg("--baseline")
        .arg(baseline)
        .arg("--root")
        .arg(t.root())
        .stderr_with_code(1)
}

#[test]
fn truncated_tampered_and_foreign_files_are_refused() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let bytes = fs::read(&b).unwrap();
    let bad = t.path().join("bad.dwb");
    for len in [0, 5, 8, 40, bytes.len() / 2, bytes.len() - 1] {
        fs::write(&bad, &bytes[..len]).unwrap();
        let err = refused(&t, &bad);
        assert!(
            err.contains("refusing baseline"),
            "truncated at {len}: {err}"
        );
    }
    let mut tampered = bytes.clone();
    let last = tampered.len() - 10;
    tampered[last] ^= 0xff;
    fs::write(&bad, &tampered).unwrap();
    let err = refused(&t, &bad);
    assert!(
        err.contains("corrupt") || err.contains("does not match its recorded id"),
        "{err}"
    );
    fs::write(&bad, b"#!/bin/sh\necho not a baseline\n").unwrap();
    assert!(refused(&t, &bad).contains("not a driftwatch baseline file"));
    let mut future = bytes.clone();
    future[6] = b'7';
    fs::write(&bad, &future).unwrap();
    let err = refused(&t, &bad);
    assert!(err.contains("format version 7 is not supported"), "{err}");
}

#[test]
fn signed_baselines_verify_only_against_their_key() {
    let t = TestDir::new();
    t.populate();
    t.cmd("driftwatch-agent")
        .args(["baseline", "keygen", "--out", "ci"])
        .ok();
    t.cmd("driftwatch-agent")
        .args(["baseline", "keygen", "--out", "other"])
        .ok();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(t.path().join("ci.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let err = t
        .cmd("driftwatch-agent")
        .args(["baseline", "keygen", "--out", "ci"])
        .stderr_with_code(1);
    assert!(err.contains("refusing to overwrite"), "{err}");
    let out = t.path().join("signed.dwb");
    t.cmd("driftwatch-agent")
        .args(["baseline", "build", "--signing-key", "ci.key", "--root"])
        .arg(t.root())
        .arg("--out")
        .arg(&out)
        .ok();
    let ok = t
        .cmd("driftwatch-agent")
        .args(["baseline", "verify"])
        .arg(&out)
        .args(["--public-key", "ci.pub"])
        .ok();
    assert!(ok.contains("OK"), "{ok}");
    let err = t
        .cmd("driftwatch-agent")
        .args(["baseline", "verify"])
        .arg(&out)
        .args(["--public-key", "other.pub"])
        .stderr_with_code(1);
    assert!(err.contains("not by the trusted key"), "{err}");
    let err = t
        .cmd("driftwatch-agent")
        .arg("check")
        .arg("--baseline")
        .arg(&out)
        .arg("--root")
        .arg(t.root())
        .args(["--public-key", "other.pub"])
        .stderr_with_code(1);
    assert!(err.contains("not by the trusted key"), "{err}");
    t.cmd("driftwatch-agent")
        .arg("check")
        .arg("--baseline")
        .arg(&out)
        .arg("--root")
        .arg(t.root())
        .args(["--public-key", "ci.pub"])
        .ok();
    // Unsigned baseline with a key required: refused.
    let unsigned = t.baseline();
    let err = t
        .cmd("driftwatch-agent")
        .args(["baseline", "verify"])
        .arg(&unsigned)
        .args(["--public-key", "ci.pub"])
        .stderr_with_code(1);
    assert!(err.contains("not signed"), "{err}");
    // Keys from openssl work too, when openssl is installed.
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let generated = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out", "ossl.key"])
            .current_dir(t.path())
            .status()
            .unwrap();
        assert!(generated.success());
        let out2 = t.path().join("ossl.dwb");
        t.cmd("driftwatch-agent")
            .args(["baseline", "build", "--signing-key", "ossl.key", "--root"])
            .arg(t.root())
            .arg("--out")
            .arg(&out2)
            .ok();
    }
}

#[test]
fn show_reports_header_and_counts() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let json = t
        .cmd("driftwatch-agent")
        .args(["baseline", "show", "--json"])
        .arg(&b)
        .ok();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["image"]["name"], "test");
    assert_eq!(v["image"]["version"], "1");
    assert_eq!(v["format_version"], 1);
    // etc, etc/ssh, sshd_config, sudoers, nginx, nginx.conf, current.conf, passwd, shadow, motd,
    // usr/bin, tool (hostname and machine-id are excluded).
    assert_eq!(v["entries"], 12, "{v:#}");
    assert!(v["rules"].as_str().unwrap().contains("[scan]"));
    let human = t
        .cmd("driftwatch-agent")
        .args(["baseline", "show"])
        .arg(&b)
        .ok();
    assert!(human.contains("image      test 1"), "{human}");
}

#[test]
fn diff_between_two_image_builds() {
    let t = TestDir::new();
    t.populate();
    let old = t.baseline();
    let old_copy = t.path().join("old.dwb");
    fs::rename(&old, &old_copy).unwrap();
    t.write("/etc/nginx/nginx.conf", "worker_processes auto;\n");
    t.write("/usr/bin/newtool", "#!/bin/sh\n");
    let new = t.baseline();
    let json = t
        .cmd("driftwatch-agent")
        .args(["baseline", "diff", "--json"])
        .arg(&old_copy)
        .arg(&new)
        .code(2);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let paths: Vec<&str> = v["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/etc/nginx/nginx.conf", "/usr/bin/newtool"]);
    t.cmd("driftwatch-agent")
        .args(["baseline", "diff"])
        .arg(&new)
        .arg(&new)
        .code(0);
}

#[test]
fn custom_rules_and_their_errors() {
    let t = TestDir::new();
    t.populate();
    let rules = t.path().join("rules.toml");
    fs::write(
        &rules,
        "version = 1\n[scan]\npaths = [\"/etc\"]\nexclude = [\"/etc/nginx\"]\n",
    )
    .unwrap();
    let out = t.path().join("custom.dwb");
    t.cmd("driftwatch-agent")
        .args(["baseline", "build", "--config"])
        .arg(&rules)
        .arg("--root")
        .arg(t.root())
        .arg("--out")
        .arg(&out)
        .ok();
    // Excluded trees are not watched: changing nginx is not drift; /usr is out of scope.
    t.write("/etc/nginx/nginx.conf", "changed\n");
    t.write("/usr/bin/tool", "changed\n");
    let (code, report) = t.check_json(&out, &[]);
    assert_eq!(code, 0, "{report:#}");

    fs::write(&rules, "version = 3\n[scan]\npaths = [\"etc\"]\n[[severity]]\nlevel = \"urgent\"\npaths = [\"/x\"]\n").unwrap();
    let err = t
        .cmd("driftwatch-agent")
        .args(["rules", "validate"])
        .arg(&rules)
        .stderr_with_code(1);
    assert!(err.contains("3 errors"), "{err}");
    for key in ["version", "scan.paths[0]", "severity[0]"] {
        assert!(
            err.contains(&format!("rules.toml: {key}:")),
            "missing {key}: {err}"
        );
    }
    let default = t.cmd("driftwatch-agent").args(["rules", "default"]).ok();
    let shipped = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/rules.toml"
    ))
    .unwrap();
    assert_eq!(default, shipped);
}
