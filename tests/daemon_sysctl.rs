//! Daemon tests that change kernel limits (root only). They live in their own test binary so
//! nothing else runs while a limit is lowered (cargo runs test binaries one at a time).

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use driftwatch_tests::{TestDir, apply_events, drift_paths, is_root};

/// Tests in one binary run in parallel; these must not overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Sets a sysctl for the duration of a test, restoring it on drop.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Option<Sysctl> {
        let old = fs::read_to_string(path).ok()?;
        fs::write(path, value).ok()?;
        Some(Sysctl { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, self.old.trim());
    }
}

#[test]
fn inotify_overflow_still_ends_with_the_exact_drift_set() {
    if !is_root() {
        eprintln!("skipped: lowering fs.inotify.max_queued_events needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = TestDir::new();
    t.populate();
    for i in 0..400 {
        t.write(&format!("/etc/many/{i:03}.conf"), format!("v = {i}\n"));
    }
    let b = t.baseline();
    let Some(limit) = Sysctl::set("/proc/sys/fs/inotify/max_queued_events", "16") else {
        eprintln!("skipped: cannot write /proc/sys/fs/inotify/max_queued_events here");
        return;
    };
    // The limit applies to inotify instances created from now on: the agent's.
    let agent = t.start_agent(&b, "[watch]\ncoalesce = \"50ms\"\n");
    drop(limit);
    // Freeze the agent so the burst cannot be read as it happens: the queue must overflow.
    agent.signal("STOP");
    for round in 0..3 {
        for i in 0..400 {
            fs::write(
                t.at(&format!("/etc/many/{i:03}.conf")),
                format!("v = {i} r{round}\n"),
            )
            .unwrap();
        }
    }
    for i in 0..100 {
        fs::remove_file(t.at(&format!("/etc/many/{i:03}.conf"))).unwrap();
    }
    agent.signal("CONT");
    let mut view = BTreeMap::new();
    apply_events(&mut view, &agent.drain(Duration::from_secs(3)));
    let (_, report) = t.check_json(&b, &[]);
    let expected = drift_paths(&report);
    assert_eq!(expected.len(), 400);
    assert_eq!(
        view.keys().cloned().collect::<Vec<_>>(),
        expected,
        "log:\n{}",
        agent.log_text()
    );
    let metrics = agent.metrics();
    let overflows: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("driftwatch_agent_inotify_overflows_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        overflows >= 1.0,
        "the burst should have overflowed a 16-event queue:\n{metrics}"
    );
}

#[test]
fn kernel_watch_limit_is_reported_as_degraded_coverage() {
    if !is_root() {
        eprintln!("skipped: lowering fs.inotify.max_user_watches needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = TestDir::new();
    t.populate();
    for i in 0..40 {
        t.write(&format!("/etc/deep/d{i:02}/file.conf"), "a = 1\n");
    }
    let b = t.baseline();
    let in_use = watches_in_use();
    let Some(_limit) = Sysctl::set(
        "/proc/sys/fs/inotify/max_user_watches",
        &(in_use + 10).to_string(),
    ) else {
        eprintln!("skipped: cannot write /proc/sys/fs/inotify/max_user_watches here");
        return;
    };
    let agent = t.start_agent(&b, "[rescan]\ndegraded_interval = \"1s\"\n");
    let status = agent.status();
    assert_eq!(status["state"], "degraded", "{status:#}");
    t.write_by_rename("/etc/deep/d39/file.conf", "a = 2\n");
    let got = agent.drain(Duration::from_secs(4));
    assert!(
        got.iter()
            .any(|e| e["item"]["path"] == "/etc/deep/d39/file.conf"),
        "change in an unwatched directory not found: {got:#?}"
    );
}

/// inotify watches held by this user's processes now (from /proc/*/fdinfo).
fn watches_in_use() -> usize {
    let mut n = 0;
    for proc in fs::read_dir("/proc").into_iter().flatten().flatten() {
        for fd in fs::read_dir(proc.path().join("fdinfo"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = fs::read_to_string(fd.path()) {
                n += text
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count();
            }
        }
    }
    n
}
