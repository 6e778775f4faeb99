//! `driftwatch-agent check` on real trees: every kind of edit an operator makes by hand.

use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;

use driftwatch_tests::{TestDir, is_root, item, items};

fn kinds(report: &serde_json::Value) -> Vec<(String, String)> {
    items(report)
        .into_iter()
        .map(|(p, k, _, _)| (p, k))
        .collect()
}

#[test]
fn unchanged_tree_has_no_drift() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let (code, report) = t.check_json(&b, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["drift"], serde_json::json!([]));
    assert_eq!(report["image"]["name"], "test");
    assert_eq!(report["baseline_id"].as_str().unwrap().len(), 64);
    let (code, _) = t.check_json(&b, &["--full-hash"]);
    assert_eq!(code, 0);
}

#[test]
fn rename_over_edit_is_a_content_change_with_a_diff() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    t.write_by_rename(
        "/etc/ssh/sshd_config",
        "# sshd\nPermitRootLogin yes\nPasswordAuthentication no\n",
    );
    let (code, report) = t.check_json(&b, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        kinds(&report),
        [("/etc/ssh/sshd_config".to_owned(), "modified".to_owned())]
    );
    let d = item(&report, "/etc/ssh/sshd_config");
    assert_eq!(d["severity"], "security");
    assert!(d["changed"].as_array().unwrap().contains(&"content".into()));
    let diff = d["diff"].as_str().expect("diff");
    assert!(
        diff.contains("-PermitRootLogin no") && diff.contains("+PermitRootLogin yes"),
        "{diff}"
    );
    assert_ne!(d["expected"]["sha256"], d["actual"]["sha256"]);
}

#[test]
fn in_place_write_and_append_are_detected() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    // Same size, different bytes, same inode.
    fs::write(
        t.at("/etc/nginx/nginx.conf"),
        "worker_processes 4;\nevents {}\n",
    )
    .unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(t.at("/etc/passwd"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"mallory:x:0:0::/root:/bin/bash\n").unwrap();
    let (code, report) = t.check_json(&b, &[]);
    assert_eq!(code, 2);
    let nginx = item(&report, "/etc/nginx/nginx.conf");
    assert_eq!(nginx["changed"], serde_json::json!(["content"]));
    assert_eq!(nginx["severity"], "behavioral");
    let passwd = item(&report, "/etc/passwd");
    assert_eq!(passwd["changed"], serde_json::json!(["size", "content"]));
    assert_eq!(passwd["severity"], "security");
    assert!(passwd["diff"].as_str().unwrap().contains("+mallory"));
}

#[test]
fn chmod_and_new_setuid_bit() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    t.chmod("/etc/nginx/nginx.conf", 0o666);
    t.chmod("/usr/bin/tool", 0o4755);
    let (_, report) = t.check_json(&b, &[]);
    let nginx = item(&report, "/etc/nginx/nginx.conf");
    assert_eq!(nginx["changed"], serde_json::json!(["mode"]));
    assert_eq!(
        (
            nginx["expected"]["mode"].as_str(),
            nginx["actual"]["mode"].as_str()
        ),
        (Some("0644"), Some("0666"))
    );
    let tool = item(&report, "/usr/bin/tool");
    assert_eq!(tool["severity"], "security");
    assert_eq!(tool["reason"], "new setuid bit");
    assert_eq!(tool["actual"]["mode"], "4755");
}

#[test]
fn chown_is_owner_and_group_drift() {
    if !is_root() {
        eprintln!("skipped: chown needs root");
        return;
    }
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    std::os::unix::fs::chown(t.at("/etc/sudoers"), Some(65534), Some(65534)).unwrap();
    let (_, report) = t.check_json(&b, &[]);
    let d = item(&report, "/etc/sudoers");
    assert_eq!(d["changed"], serde_json::json!(["owner", "group"]));
    assert_eq!(d["actual"]["owner"], 65534);
    assert_eq!(d["severity"], "security");
}

#[test]
fn symlink_retarget_and_file_replaced_by_directory() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    fs::remove_file(t.at("/etc/nginx/current.conf")).unwrap();
    std::os::unix::fs::symlink("/tmp/evil.conf", t.at("/etc/nginx/current.conf")).unwrap();
    fs::remove_file(t.at("/etc/motd")).unwrap();
    fs::create_dir(t.at("/etc/motd")).unwrap();
    let (_, report) = t.check_json(&b, &[]);
    let link = item(&report, "/etc/nginx/current.conf");
    assert_eq!(link["changed"], serde_json::json!(["size", "target"]));
    assert_eq!(link["expected"]["target"], "nginx.conf");
    assert_eq!(link["actual"]["target"], "/tmp/evil.conf");
    let motd = item(&report, "/etc/motd");
    assert_eq!(motd["changed"], serde_json::json!(["type"]));
    assert_eq!(
        (
            motd["expected"]["type"].as_str(),
            motd["actual"]["type"].as_str()
        ),
        (Some("file"), Some("directory"))
    );
}

#[test]
fn editing_a_hard_link_changes_every_name() {
    let t = TestDir::new();
    t.populate();
    fs::hard_link(
        t.at("/etc/nginx/nginx.conf"),
        t.at("/etc/nginx/nginx.conf.link"),
    )
    .unwrap();
    let b = t.baseline();
    fs::write(
        t.at("/etc/nginx/nginx.conf.link"),
        "worker_processes 8;\nevents {}\n",
    )
    .unwrap();
    let (_, report) = t.check_json(&b, &[]);
    assert_eq!(
        kinds(&report),
        [
            ("/etc/nginx/nginx.conf".to_owned(), "modified".to_owned()),
            (
                "/etc/nginx/nginx.conf.link".to_owned(),
                "modified".to_owned()
            )
        ]
    );
}

#[test]
fn edit_then_restore_and_touch_are_not_drift() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let original = fs::read(t.at("/etc/sudoers")).unwrap();
    t.write_by_rename("/etc/sudoers", "root ALL=(ALL) NOPASSWD: ALL\n");
    t.write_by_rename("/etc/sudoers", &original);
    t.chmod("/etc/sudoers", 0o644);
    // touch: new mtime, same content.
    let f = fs::File::options()
        .write(true)
        .open(t.at("/etc/passwd"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    let (code, report) = t.check_json(&b, &[]);
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn whitespace_or_comment_only_edit_is_cosmetic() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    t.write_by_rename(
        "/etc/ssh/sshd_config",
        "# sshd, hardened by ops\nPermitRootLogin   no\n\nPasswordAuthentication no\n",
    );
    let (code, report) = t.check_json(&b, &[]);
    assert_eq!(code, 2);
    let d = item(&report, "/etc/ssh/sshd_config");
    assert_eq!(d["severity"], "cosmetic");
    assert!(
        d["diff"]
            .as_str()
            .unwrap()
            .contains("+# sshd, hardened by ops")
    );
}

#[test]
fn added_and_removed_files() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    t.write(
        "/etc/sudoers.d/90-incident",
        "deploy ALL=(ALL) NOPASSWD: ALL\n",
    );
    t.write("/usr/bin/backdoor", "#!/bin/sh\n");
    t.chmod("/usr/bin/backdoor", 0o755);
    fs::remove_file(t.at("/etc/nginx/nginx.conf")).unwrap();
    let (code, report) = t.check_json(&b, &[]);
    assert_eq!(code, 2);
    let added = item(&report, "/etc/sudoers.d/90-incident");
    assert_eq!(
        (added["kind"].as_str(), added["severity"].as_str()),
        (Some("added"), Some("security"))
    );
    assert!(added["expected"].is_null());
    assert!(
        added["diff"].as_str().unwrap().contains("+deploy ALL"),
        "new config files show their content"
    );
    let backdoor = item(&report, "/usr/bin/backdoor");
    assert_eq!(backdoor["reason"], "new executable in a system path");
    let removed = item(&report, "/etc/nginx/nginx.conf");
    assert_eq!(removed["kind"], "removed");
    assert!(removed["actual"].is_null());
    // The new directory is reported too.
    item(&report, "/etc/sudoers.d");
}

#[test]
fn secrets_never_show_content() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    t.write_by_rename("/etc/shadow", "root:$6$other-hash:19000:0:99999:7:::\n");
    let (_, report) = t.check_json(&b, &[]);
    let d = item(&report, "/etc/shadow");
    assert!(d["diff"].is_null());
    let text = report.to_string();
    assert!(
        !text.contains("secret-hash") && !text.contains("other-hash"),
        "secret content leaked: {text}"
    );
    let shown = fs::read(t.path().join("baseline.dwb")).unwrap();
    assert!(!shown.windows(11).any(|w| w == b"secret-hash"));
}

#[test]
fn first_boot_files_are_not_drift_with_default_rules() {
    let t = TestDir::new();
    t.populate();
    t.write("/etc/ssh/ssh_host_ed25519_key", "builder key");
    t.write("/etc/resolv.conf", "nameserver 10.0.0.2\n");
    t.write("/etc/hosts", "127.0.0.1 localhost\n");
    let b = t.baseline();
    t.write_by_rename("/etc/hostname", "ip-10-0-3-7\n");
    t.write_by_rename("/etc/machine-id", "fedcba9876543210fedcba9876543210\n");
    t.write_by_rename("/etc/ssh/ssh_host_ed25519_key", "instance key");
    t.write("/etc/ssh/ssh_host_rsa_key", "instance key");
    t.write_by_rename("/etc/resolv.conf", "nameserver 172.31.0.2\n");
    t.write_by_rename("/etc/hosts", "127.0.0.1 localhost\n10.0.3.7 ip-10-0-3-7\n");
    t.write("/etc/netplan/50-cloud-init.yaml", "network: {}\n");
    let (code, report) = t.check_json(&b, &[]);
    // /etc/netplan is a new directory; its one file is excluded.
    assert_eq!(
        kinds(&report),
        [("/etc/netplan".to_owned(), "added".to_owned())],
        "{report:#}"
    );
    assert_eq!(code, 2);
}

#[test]
fn non_utf8_names_are_recorded_and_escaped() {
    let t = TestDir::new();
    t.populate();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.conf");
    fs::write(t.at("/etc").join(name), "x=1\n").unwrap();
    let b = t.baseline();
    let (code, _) = t.check_json(&b, &[]);
    assert_eq!(code, 0);
    fs::write(t.at("/etc").join(name), "x=2\n").unwrap();
    let (_, report) = t.check_json(&b, &[]);
    assert_eq!(
        kinds(&report),
        [("/etc/caf\\xe9.conf".to_owned(), "modified".to_owned())]
    );
}

#[test]
fn fifos_are_recorded_without_being_opened() {
    let t = TestDir::new();
    t.populate();
    let fifo = t.at("/etc/app.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // Would hang forever if the scanner opened the fifo for reading.
    let b = t.baseline();
    let show = t
        .cmd("driftwatch-agent")
        .args(["baseline", "show", "--json", "--entries"])
        .arg(&b)
        .ok();
    let shown: serde_json::Value = serde_json::from_str(&show).unwrap();
    let entry = shown["entries_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/etc/app.fifo")
        .unwrap()
        .clone();
    assert_eq!(entry["type"], "fifo");
    assert_eq!(t.check_json(&b, &["--full-hash"]).0, 0);
    fs::remove_file(&fifo).unwrap();
    fs::write(&fifo, "now a file").unwrap();
    let (_, report) = t.check_json(&b, &[]);
    assert_eq!(
        item(&report, "/etc/app.fifo")["changed"],
        serde_json::json!(["type"])
    );
}

#[test]
fn unreadable_files_are_reported_not_fatal() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to an unprivileged user");
        return;
    }
    let t = TestDir::new();
    t.populate();
    t.write("/etc/private.conf", "only root may read\n");
    t.chmod("/etc/private.conf", 0o600);
    t.chmod("/etc/shadow", 0o640);
    let outdir = t.path().join("out");
    fs::create_dir(&outdir).unwrap();
    fs::set_permissions(&outdir, fs::Permissions::from_mode(0o777)).unwrap();
    let out = outdir.join("nobody.dwb");
    let stderr = t
        .cmd("driftwatch-agent")
        .args(["baseline", "build", "--root"])
        .arg(t.root())
        .arg("--out")
        .arg(&out)
        .as_nobody()
        .stderr_with_code(0);
    assert!(
        stderr.contains("/etc/private.conf: permission denied"),
        "{stderr}"
    );
    // The entry is there (metadata), without a hash; checking as nobody reports the error again
    // and no drift.
    let check = t
        .cmd("driftwatch-agent")
        .arg("check")
        .arg("--baseline")
        .arg(&out)
        .arg("--root")
        .arg(t.root())
        .args(["--json", "--full-hash"])
        .as_nobody()
        .code(0);
    let report: serde_json::Value = serde_json::from_str(&check).unwrap();
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(errors.contains(&"/etc/private.conf"), "{report:#}");
    // A directory that cannot be listed is an error, not a removal of everything inside it.
    let t2 = TestDir::new();
    t2.populate();
    let b2 = t2.baseline();
    t2.chmod("/etc/ssh", 0o700);
    let check = t2
        .cmd("driftwatch-agent")
        .arg("check")
        .arg("--baseline")
        .arg(&b2)
        .arg("--root")
        .arg(t2.root())
        .arg("--json")
        .as_nobody()
        .code(2);
    let report: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert_eq!(
        kinds(&report),
        [("/etc/ssh".to_owned(), "modified".to_owned())],
        "{report:#}"
    );
    assert!(
        report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "/etc/ssh")
    );
    fs::set_permissions(t2.at("/etc/ssh"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn human_report_is_grouped_by_severity() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    t.write_by_rename("/etc/sudoers", "root ALL=(ALL) NOPASSWD: ALL\n");
    t.write_by_rename("/etc/nginx/nginx.conf", "worker_processes 9;\n");
    let out = t
        .cmd("driftwatch-agent")
        .arg("check")
        .arg("--baseline")
        .arg(&b)
        .arg("--root")
        .arg(t.root())
        .code(2);
    let security = out.find("SECURITY (1)").expect(&out);
    let behavioral = out.find("BEHAVIORAL (1)").expect(&out);
    assert!(security < behavioral, "{out}");
    assert!(
        out.contains("~ /etc/sudoers  modified: size 23 -> 29, content"),
        "{out}"
    );
    assert!(out.contains("+root ALL=(ALL) NOPASSWD: ALL"), "{out}");
}

#[test]
fn package_drift_against_a_real_dpkg_status() {
    let host = match fs::read_to_string("/var/lib/dpkg/status") {
        Ok(s) => s,
        Err(_) => {
            eprintln!("skipped: this machine has no dpkg status file");
            return;
        }
    };
    let t = TestDir::new();
    t.populate();
    t.write("/var/lib/dpkg/status", &host);
    let b = t.baseline();
    assert_eq!(t.check_json(&b, &[]).0, 0);
    // Remove the first installed package, change the second's version, add one.
    let mut stanzas: Vec<String> = host
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let installed: Vec<usize> = (0..stanzas.len())
        .filter(|i| stanzas[*i].contains("Status: install ok installed"))
        .collect();
    let name = |s: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix("Package: "))
            .unwrap()
            .to_owned()
    };
    let removed = name(&stanzas[installed[0]]);
    let changed = name(&stanzas[installed[1]]);
    stanzas[installed[1]] = stanzas[installed[1]]
        .lines()
        .map(|l| {
            if l.starts_with("Version: ") {
                "Version: 99:9.9-dw1".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    stanzas.remove(installed[0]);
    stanzas.push(
        "Package: incident-tool\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n"
            .into(),
    );
    t.write("/var/lib/dpkg/status", stanzas.join("\n\n") + "\n");
    let (code, report) = t.check_json(&b, &[]);
    assert_eq!(code, 2);
    let mut got: Vec<(String, String)> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (removed, "removed".to_owned()),
        (changed.clone(), "version_changed".to_owned()),
        ("incident-tool".to_owned(), "installed".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want, "{:#}", report["packages"]);
    let v = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == changed.as_str())
        .unwrap();
    assert_eq!(v["actual_version"], "99:9.9-dw1");
}

#[test]
fn bad_root_and_missing_baseline_exit_1() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    let err = t
        .cmd("driftwatch-agent")
        .arg("check")
        .arg("--baseline")
        .arg(&b)
        .args(["--root", "/nonexistent/root"])
        .stderr_with_code(1);
    assert!(err.contains("cannot read root /nonexistent/root"), "{err}");
    let err = t
        .cmd("driftwatch-agent")
        .args(["check", "--baseline", "/nonexistent.dwb"])
        .stderr_with_code(1);
    assert!(
        err.contains("cannot read baseline /nonexistent.dwb"),
        "{err}"
    );
}
