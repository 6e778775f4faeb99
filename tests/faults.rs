//! Faults degrade, never stop (issue 13): a damaged state file is quarantined and rebuilt, a
//! full disk is waited out, a baseline path of any size is refused before it is read. Each
//! scenario runs the real agent against a real collector and ends with the collector's drift
//! set equal to `driftwatch-agent check`'s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use driftwatch_tests::*;

const HOST: &str = "i-faults";
const WAIT: Duration = Duration::from_secs(30);

/// The drift paths `check` finds now (sorted).
fn check_paths(t: &TestDir) -> Vec<String> {
    let (_, report) = t.check_json(&t.path().join("baseline.dwb"), &[]);
    let mut paths = drift_paths(&report);
    paths.sort();
    paths
}

/// Waits until the collector holds exactly what `check` finds.
fn assert_collector_agrees(t: &TestDir, c: &Collector) {
    let expected = check_paths(t);
    c.wait_host_paths(HOST, WAIT, |p| p == expected);
}

/// Starts the agent again on the same state, with `extra` configuration.
fn restart(t: &TestDir, c: &Collector, extra: &str) -> Agent {
    let config = format!("{}{extra}", t.collector_config(c, HOST));
    t.start_agent(&t.path().join("baseline.dwb"), &config)
}

/// The first spool segment that holds records, and the state directory's spool.
fn segment(state: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(state.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.into_iter().next().expect("a spool segment")
}

/// A fleet of one with three drift items (so the spool holds several records), the agent
/// stopped, `corrupt` applied to its state directory, the host changed while it was down, the
/// agent started again: it must run, say what it found, and the collector must end with
/// `check`'s set, and go on following changes.
fn survives(corrupt: impl FnOnce(&Path), says: &str) -> (TestDir, Collector, Agent) {
    let t = TestDir::new();
    let (c, mut agent) = t.fleet_of_one(HOST);
    t.write_by_rename("/etc/ssh/sshd_config", "PermitRootLogin yes\n");
    t.chmod("/etc/sudoers", 0o666);
    c.wait_host_paths(HOST, WAIT, |p| p.len() == 3);
    agent.stop();
    corrupt(&agent.state_dir);
    t.write_by_rename(
        "/etc/ssh/sshd_config",
        "# sshd\nPermitRootLogin no\nPasswordAuthentication no\n",
    );
    t.write_by_rename("/etc/nginx/nginx.conf", "worker_processes 8;\n");
    let mut agent = restart(&t, &c, "");
    assert_collector_agrees(&t, &c);
    assert!(
        agent.alive(),
        "the agent stopped; log:\n{}",
        agent.log_text()
    );
    let status = agent.status();
    let faults = status["faults"].to_string();
    assert!(faults.contains(says), "status faults: {faults}");
    assert!(
        agent.log_text().contains(says),
        "log does not say {says:?}:\n{}",
        agent.log_text()
    );
    // The stream goes on.
    t.write_by_rename("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    assert_collector_agrees(&t, &c);
    let quarantine = agent.state_dir.join("quarantine");
    assert_eq!(fs::read_dir(&quarantine).unwrap().count(), 1);
    (t, c, agent)
}

fn flip(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt as _;
    let file = fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x5a], at).unwrap();
}

#[test]
fn a_flipped_byte_mid_segment_is_quarantined_and_the_collector_gets_a_snapshot() {
    let (_t, c, agent) = survives(
        // Inside the first record's payload: later records check out, so it is damage.
        |state| flip(&segment(state), 8 + 16 + 4),
        "is corrupt (checksum mismatch at byte 8); moved it to",
    );
    let metrics = agent.metrics();
    assert!(
        metrics.contains("driftwatch_agent_spool_quarantined_total 1"),
        "{metrics}"
    );
    assert_eq!(agent.status()["spool"]["quarantined"], 1);
    // Heartbeats tell the collector, which logs it.
    let said = wait_for(WAIT, || {
        c.log_text()
            .contains("The agent quarantined corrupt spool files")
    });
    assert!(said, "collector log:\n{}", c.log_text());
}

#[test]
fn a_segment_with_a_bad_magic_is_quarantined() {
    survives(
        |state| fs::write(segment(state), b"XXXXXXXX").unwrap(),
        "(not a spool segment (bad magic) at byte 0)",
    );
}

#[test]
fn a_garbled_ledger_is_rebuilt_under_a_new_stream() {
    let mut stream = String::new();
    survives(
        |state| {
            stream = fs::read_to_string(state.join("stream-id")).unwrap();
            fs::write(state.join("ledger.pb"), b"garbage, not a ledger").unwrap();
        },
        "ledger.pb is damaged (not a ledger file (bad magic bytes)); moved it to",
    );
    assert!(!stream.is_empty());
}

#[test]
fn a_garbled_legacy_ledger_is_rebuilt() {
    survives(
        |state| {
            fs::remove_file(state.join("ledger.pb")).unwrap();
            fs::write(state.join("ledger.json"), b"\x00garbage").unwrap();
        },
        "ledger.json is damaged (",
    );
}

#[test]
fn a_garbled_stream_id_starts_a_new_stream() {
    survives(
        |state| fs::write(state.join("stream-id"), b"\xff\xfe not an id").unwrap(),
        "stream-id is damaged (not 32 hex digits); moved it to",
    );
}

/// A tmpfs mounted on a directory for the length of a test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(
            is_root(),
            "this test mounts a tmpfs to fill a disk: run it as root (CI does)"
        );
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount: {}", describe(&out));
        Tmpfs(dir.to_owned())
    }

    /// Fills it up (a file `filler` takes every free byte).
    fn fill(&self) {
        use std::io::Write as _;
        let mut f = fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0xa5; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wait_spool_state(agent: &Agent, state: &str) {
    let ok = wait_for(WAIT, || agent.status()["spool"]["state"] == state);
    assert!(
        ok,
        "spool never became {state:?}: {}\nlog:\n{}",
        agent.status()["spool"],
        agent.log_text()
    );
}

const SMALL_SPOOL: &str = "\n[spool]\nmax_size = \"1MiB\"\n";

#[test]
fn a_full_disk_degrades_the_spool_and_loses_nothing() {
    let t = TestDir::new();
    let disk = Tmpfs::mount(&t.path().join("state"), "2m");
    t.populate();
    let b = t.baseline();
    let c = Collector::start(&t.path().join("collector"));
    let mut agent = t.start_agent(
        &b,
        &format!("{}{SMALL_SPOOL}", t.collector_config(&c, HOST)),
    );
    t.write_by_rename("/etc/motd", "changed\n");
    assert_collector_agrees(&t, &c);
    assert_eq!(agent.status()["spool"]["state"], "durable");

    disk.fill();
    for i in 0..40 {
        t.write(&format!("/etc/conf.d/file{i}"), format!("{i}\n"));
        t.write_by_rename("/etc/motd", format!("edit {i}\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_spool_state(&agent, "unavailable: disk full");
    // The stream still works: the collector follows from the agent's memory.
    assert_collector_agrees(&t, &c);
    let human = t
        .cmd("driftwatch-agent")
        .args(["status", "--state-dir"])
        .arg(&agent.state_dir)
        .ok();
    assert!(
        human.contains("spool      unavailable: disk full"),
        "{human}"
    );
    assert!(
        agent
            .metrics()
            .contains("driftwatch_agent_spool_available 0")
    );
    let said = wait_for(WAIT, || {
        c.log_text().contains("The agent's spool is not durable")
    });
    assert!(said, "collector log:\n{}", c.log_text());

    disk.free();
    wait_spool_state(&agent, "durable");
    t.write_by_rename("/etc/hostname", "after\n");
    assert_collector_agrees(&t, &c);
    assert!(agent.alive());
    agent.stop();

    // Nothing was lost: a restart on the state written after the disk filled agrees too.
    t.write_by_rename("/etc/sudoers", "changed while stopped\n");
    let agent = restart(&t, &c, SMALL_SPOOL);
    assert_collector_agrees(&t, &c);
    assert_eq!(agent.status()["faults"], serde_json::json!([]));
    drop(agent);
    drop(disk);
}

#[test]
fn the_agent_starts_on_a_full_disk() {
    let t = TestDir::new();
    let disk = Tmpfs::mount(&t.path().join("state"), "1m");
    t.populate();
    let b = t.baseline();
    t.write_by_rename("/etc/motd", "changed before the start\n");
    let c = Collector::start(&t.path().join("collector"));
    disk.fill();
    let mut agent = t.start_agent(
        &b,
        &format!("{}{SMALL_SPOOL}", t.collector_config(&c, HOST)),
    );
    wait_spool_state(&agent, "unavailable: disk full");
    assert_collector_agrees(&t, &c);
    t.write_by_rename("/etc/hostname", "while full\n");
    assert_collector_agrees(&t, &c);
    disk.free();
    wait_spool_state(&agent, "durable");
    agent.stop();
    let agent = restart(&t, &c, SMALL_SPOOL);
    assert_collector_agrees(&t, &c);
    drop(agent);
    drop(disk);
}

/// Peak RSS (KiB) and output of a command, through `/usr/bin/time`.
fn peak_rss(t: &TestDir, args: &[&str]) -> (u64, String, Duration) {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("peak-rss-kib %M")
        .arg(bin("driftwatch-agent"))
        .args(args)
        .current_dir(t.path())
        .output()
        .expect("run /usr/bin/time");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {stderr}"));
    (rss, stderr, took)
}

#[test]
fn a_baseline_of_any_size_is_refused_before_it_is_read() {
    let t = TestDir::new();
    t.populate();
    let root = t.root();
    let root = root.to_str().unwrap();
    let (rss, stderr, took) = peak_rss(&t, &["check", "--baseline", "/dev/zero", "--root", root]);
    assert!(
        stderr.contains("cannot read baseline /dev/zero: not a regular file (a character device)"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(rss < 64 << 10, "peak RSS {rss} KiB");
    // A 3 GiB file (sparse): refused on its header.
    let big = t.path().join("big.dwb");
    fs::File::create(&big).unwrap().set_len(3 << 30).unwrap();
    let big = big.to_str().unwrap();
    let (rss, stderr, took) = peak_rss(&t, &["check", "--baseline", big, "--root", root]);
    assert!(
        stderr.contains("not a driftwatch baseline file (bad magic bytes)"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(rss < 64 << 10, "peak RSS {rss} KiB");
}
