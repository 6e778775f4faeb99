//! Issue 13: recorded trees that are missing when the agent starts (or deleted, or replaced by
//! a symlink) are watched for and picked up the moment they appear; a huge file's hash never
//! holds up another path's event. The real `driftwatch-agent run` on a temp root.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use driftwatch_tests::{Consumer, TestDir};
use serde_json::Value;

/// Generous: machines are shared and noisy. A healthy agent takes milliseconds.
const PROMPT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(600);

type View = BTreeMap<String, Value>;

fn kind(view: &View, path: &str) -> Option<String> {
    view.get(path)
        .and_then(|i| i["kind"].as_str())
        .map(str::to_owned)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn trees_missing_at_start_are_watched_from_their_ancestor_and_picked_up_when_they_appear() {
    let t = TestDir::new();
    t.populate();
    assert!(!t.at("/root").exists() && !t.at("/usr/local").exists());
    let b = t.baseline();
    let agent = t.start_agent(&b, "");
    agent.assert_quiet(QUIET);
    // Coverage is honest: the missing trees are counted and named, not silently dropped.
    let status = agent.status();
    assert_eq!(status["state"], "watching", "{status:#}");
    let pending = strings(&status["coverage"]["pending_sample"]);
    assert!(
        pending.contains(&"/root/.ssh".to_owned()) && pending.contains(&"/usr/local".to_owned()),
        "{status:#}"
    );
    let pending_dirs = status["coverage"]["pending_dirs"].as_u64().unwrap();
    assert!(
        agent.metrics().contains(&format!(
            "driftwatch_agent_pending_directories {pending_dirs}"
        )),
        "{}",
        agent.metrics()
    );

    // An attacker's key in a new ~/.ssh, written at once (before any watch can be on it).
    let mut c = Consumer::default();
    fs::create_dir_all(t.at("/root/.ssh")).unwrap();
    t.write("/root/.ssh/authorized_keys", "ssh-ed25519 AAAA attacker\n");
    let took = agent.wait_view(&mut c, "the new ~/.ssh and its key", PROMPT, |v| {
        kind(v, "/root/.ssh").as_deref() == Some("added")
            && kind(v, "/root/.ssh/authorized_keys").as_deref() == Some("added")
    });
    assert!(took < PROMPT);
    assert_eq!(c.view["/root/.ssh/authorized_keys"]["severity"], "security");
    // A new tool in a /usr/local made in one go (`mkdir -p`, `install`).
    fs::create_dir_all(t.at("/usr/local/bin")).unwrap();
    t.write("/usr/local/bin/newtool", "#!/bin/sh\necho pwned\n");
    t.chmod("/usr/local/bin/newtool", 0o755);
    agent.wait_view(&mut c, "the new /usr/local/bin/newtool", PROMPT, |v| {
        v.get("/usr/local/bin/newtool")
            .is_some_and(|i| i["severity"] == "security" && i["actual"]["mode"] == "0755")
            && v.contains_key("/usr/local")
            && v.contains_key("/usr/local/bin")
    });
    // Both are watched now: later files arrive through their own watches.
    t.write("/root/.ssh/id_backdoor", "key\n");
    t.write("/usr/local/bin/second", "x\n");
    agent.wait_view(&mut c, "files made after the trees appeared", PROMPT, |v| {
        v.contains_key("/root/.ssh/id_backdoor") && v.contains_key("/usr/local/bin/second")
    });
    let status = agent.status();
    let pending = strings(&status["coverage"]["pending_sample"]);
    assert!(
        !pending.contains(&"/root/.ssh".to_owned()) && !pending.contains(&"/usr/local".to_owned()),
        "{status:#}"
    );
    assert_eq!(
        status["coverage"]["pending_dirs"].as_u64().unwrap(),
        pending_dirs - 2,
        "{status:#}"
    );
    agent.assert_quiet(QUIET);
    // `check` agrees with what the daemon reported.
    let (code, report) = t.check_json(&b, &[]);
    assert_eq!(code, 2);
    let mut checked = driftwatch_tests::drift_paths(&report);
    checked.sort();
    let mut seen: Vec<String> = c.view.keys().cloned().collect();
    seen.sort();
    assert_eq!(checked, seen);
}

#[test]
fn a_deleted_then_recreated_tree_and_one_replaced_by_a_symlink_are_followed() {
    let t = TestDir::new();
    t.populate();
    t.write("/root/.ssh/authorized_keys", "ssh-ed25519 AAAA ops\n");
    t.write("/usr/local/bin/tool", "#!/bin/sh\n");
    let b = t.baseline();
    let agent = t.start_agent(&b, "");
    agent.assert_quiet(QUIET);
    let mut c = Consumer::default();

    // Deleted: its entries are removed, and the tree waits at its parent.
    fs::remove_dir_all(t.at("/root/.ssh")).unwrap();
    agent.wait_view(&mut c, "~/.ssh removed", PROMPT, |v| {
        kind(v, "/root/.ssh").as_deref() == Some("removed")
            && kind(v, "/root/.ssh/authorized_keys").as_deref() == Some("removed")
    });
    let status = agent.status();
    assert!(
        strings(&status["coverage"]["pending_sample"]).contains(&"/root/.ssh".to_owned()),
        "{status:#}"
    );
    // Recreated with another key: the directory is back (resolved), the key changed.
    fs::create_dir(t.at("/root/.ssh")).unwrap();
    t.write("/root/.ssh/authorized_keys", "ssh-ed25519 AAAA attacker\n");
    agent.wait_view(&mut c, "~/.ssh recreated", PROMPT, |v| {
        !v.contains_key("/root/.ssh")
            && v.get("/root/.ssh/authorized_keys").is_some_and(|i| {
                i["kind"] == "modified" && strings(&i["changed"]).contains(&"content".to_owned())
            })
    });
    t.write("/root/.ssh/authorized_keys2", "more\n");
    agent.wait_view(&mut c, "a file in the recreated ~/.ssh", PROMPT, |v| {
        v.contains_key("/root/.ssh/authorized_keys2")
    });

    // Replaced by a symlink: a type change, its entries removed; nothing followed through it.
    fs::remove_dir_all(t.at("/usr/local")).unwrap();
    fs::create_dir(t.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(t.path().join("elsewhere"), t.at("/usr/local")).unwrap();
    agent.wait_view(&mut c, "/usr/local replaced by a symlink", PROMPT, |v| {
        v.get("/usr/local").is_some_and(|i| {
            i["kind"] == "modified"
                && strings(&i["changed"]) == ["type"]
                && i["actual"]["type"] == "symlink"
        }) && kind(v, "/usr/local/bin/tool").as_deref() == Some("removed")
    });
    fs::write(t.path().join("elsewhere/not-followed"), "x").unwrap();
    agent.assert_quiet(QUIET);
    // A directory again: watched again, its new content found.
    fs::remove_file(t.at("/usr/local")).unwrap();
    fs::create_dir_all(t.at("/usr/local/bin")).unwrap();
    t.write("/usr/local/bin/tool", "#!/bin/sh\n");
    t.write("/usr/local/bin/newtool", "#!/bin/sh\n");
    agent.wait_view(&mut c, "/usr/local a directory again", PROMPT, |v| {
        !v.contains_key("/usr/local")
            && !v.contains_key("/usr/local/bin/tool")
            && kind(v, "/usr/local/bin/newtool").as_deref() == Some("added")
    });
    t.write("/usr/local/bin/later", "x\n");
    agent.wait_view(&mut c, "a file in the new /usr/local", PROMPT, |v| {
        v.contains_key("/usr/local/bin/later")
    });
    let status = agent.status();
    assert_eq!(status["state"], "watching", "{status:#}");
    let pending = strings(&status["coverage"]["pending_sample"]);
    assert!(
        !pending.contains(&"/usr/local".to_owned()) && !pending.contains(&"/root/.ssh".to_owned()),
        "{status:#}"
    );
}

#[test]
fn a_huge_sparse_file_holds_up_no_other_event_and_its_hash_follows() {
    let t = TestDir::new();
    t.populate();
    let b = t.baseline();
    // Unthrottled hashing: the hash competes for the CPU with the event path, the worst case
    // for the edit's latency, and completes within the test.
    let agent = t.start_agent(&b, "[hashing]\nrate = \"0\"\n");
    agent.assert_quiet(QUIET);
    let mut c = Consumer::default();

    let huge = fs::File::create(t.at("/usr/bin/huge")).unwrap();
    huge.set_len(10 << 30).unwrap();
    drop(huge);
    let took = agent.wait_view(&mut c, "the huge file, hash pending", PROMPT, |v| {
        v.contains_key("/usr/bin/huge")
    });
    assert!(took < PROMPT);
    let item = c.view["/usr/bin/huge"].clone();
    assert_eq!(item["kind"], "added", "{item:#}");
    assert_eq!(item["actual"]["size"], 10u64 << 30, "{item:#}");
    assert!(item["actual"]["sha256"].is_null(), "{item:#}");
    assert!(
        item["reason"].as_str().unwrap().ends_with("; hash pending"),
        "{item:#}"
    );

    // An edit elsewhere one second later arrives promptly, while the huge file is hashed.
    std::thread::sleep(Duration::from_secs(1));
    let status = agent.status();
    assert_eq!(status["state"], "watching");
    assert!(
        status["hashes_pending"].as_u64().unwrap() >= 1,
        "{status:#}"
    );
    let edited = Instant::now();
    t.write_by_rename("/etc/ssh/sshd_config", "PermitRootLogin yes\n");
    agent.wait_view(&mut c, "the sshd_config edit", PROMPT, |v| {
        v.contains_key("/etc/ssh/sshd_config")
    });
    let latency = edited.elapsed();
    assert!(latency < PROMPT, "the edit took {latency:?}");

    // The hash completes: a follow-up event carries it.
    agent.wait_view(
        &mut c,
        "the huge file's hash",
        Duration::from_secs(300),
        |v| v["/usr/bin/huge"]["actual"]["sha256"].is_string(),
    );
    let item = &c.view["/usr/bin/huge"];
    assert!(
        !item["reason"].as_str().unwrap().contains("pending"),
        "{item:#}"
    );
    assert_eq!(agent.status()["hashes_pending"], 0);
}

#[test]
fn a_touched_large_file_is_reported_with_its_hash_pending_then_resolved_by_the_hash() {
    let t = TestDir::new();
    t.populate();
    // Above the 64 MiB default: hashed in the background once it changes.
    let big = fs::File::create(t.at("/usr/bin/big")).unwrap();
    big.set_len(100 << 20).unwrap();
    drop(big);
    let b = t.baseline();
    let agent = t.start_agent(&b, "[hashing]\nrate = \"0\"\n");
    agent.assert_quiet(QUIET);
    let mut c = Consumer::default();
    // Same content, new mtime: content may have changed until the hash says it did not.
    fs::File::options()
        .write(true)
        .open(t.at("/usr/bin/big"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    agent.wait_view(&mut c, "the touched file, hash pending", PROMPT, |v| {
        v.get("/usr/bin/big").is_some_and(|i| {
            i["kind"] == "modified"
                && strings(&i["changed"]) == ["content"]
                && i["actual"]["sha256"].is_null()
        })
    });
    agent.wait_view(
        &mut c,
        "the hash resolving it",
        Duration::from_secs(120),
        |v| !v.contains_key("/usr/bin/big"),
    );
    agent.assert_quiet(QUIET);
}
