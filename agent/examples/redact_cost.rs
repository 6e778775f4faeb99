//! What redaction costs per diffed file (issue 12): typical 4 KiB config files, with and
//! without secrets, through the steps a drift item's content takes, next to a plain copy.
//!
//! ```text
//! cargo run --release -p driftwatch-agent --example redact_cost [ROUNDS]
//! ```
//!
//! Prints ns per file and ns per KiB for: copying the content (the floor), finding its
//! secrets, baking it (`baseline build`), preparing both sides of a diff (`redact::prepare`:
//! find on both sides, fill and hash, render), and the whole `evaluate::compare` (which adds
//! the unified diff), each the median of ROUNDS (default 15) timed batches.

use std::hint::black_box;
use std::time::Instant;

use driftwatch_agent::evaluate::{self, RedactKey, redact};
use driftwatch_agent::rules::Rules;
use driftwatch_proto::baseline::{Entry, FileKind};
use sha2::Digest as _;

const FILE_BYTES: usize = 4096;
const BATCH: usize = 2000;

/// A config file of about 4 KiB: comments, sections, settings; `secrets` adds a password,
/// a URL with credentials and a token among them. `variant` changes one setting.
fn config(secrets: bool, variant: u32) -> Vec<u8> {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < FILE_BYTES - 200 {
        match i % 8 {
            0 => out.push_str(&format!(
                "\n# section {i}: tuning for the worker pool\n[s{i}]\n"
            )),
            1 => out.push_str(&format!("max_connections = {}\n", 100 + i)),
            2 => out.push_str("listen_address = 0.0.0.0:8080\n"),
            3 => out.push_str(&format!("log_path = /var/log/app/worker-{i}.log\n")),
            4 => out.push_str("timeout_ms = 2500 ; applies to upstream reads\n"),
            5 => out.push_str(&format!("cache_dir = /var/cache/app/{i}\n")),
            6 => out.push_str("user = app\n"),
            _ => out.push_str("enabled = true\n"),
        }
        i += 1;
    }
    if secrets {
        out.push_str("password = correct-horse-battery-staple\n");
        out.push_str("upstream = https://app:s3cr3t@db.internal:5432/app\n");
        out.push_str("api_token: 9f86d081884c7d659a2feaa0c55ad015\n");
    }
    out.push_str(&format!(
        "setting = {}\n",
        ["alpha", "bravo"][variant as usize % 2]
    ));
    out.into_bytes()
}

fn entry(content: Vec<u8>) -> Entry {
    Entry {
        path: "/etc/app/app.conf".into(),
        kind: FileKind::Regular,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: content.len() as u64,
        sha256: Some(sha2::Sha256::digest(&content).into()),
        target: None,
        xattrs: vec![],
        content: Some(content),
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 1,
        rdev: 0,
    }
}

/// Median ns per call of `f` over `rounds` batches.
fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut per_call: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            start.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[rounds / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let rules = Rules::builtin();
    let key = RedactKey::from_bytes([7; 32]);
    println!("| content | step | ns per file | ns per KiB |");
    println!("|---|---|---:|---:|");
    for secrets in [false, true] {
        let (a, b) = (config(secrets, 0), config(secrets, 1));
        let kib = b.len() as f64 / 1024.0;
        let label = if secrets {
            "4 KiB, 3 secrets"
        } else {
            "4 KiB, no secret"
        };
        let baked = redact::bake(&a, &rules).unwrap_or_else(|| a.clone());
        let (old, new) = (entry(baked.clone()), entry(b.clone()));
        let old_with_sha = Entry {
            sha256: Some(sha2::Sha256::digest(&a).into()),
            ..old.clone()
        };
        let rows: [(&str, f64); 5] = [
            (
                "copy (floor)",
                time(rounds, || {
                    black_box(black_box(&b).to_vec());
                }),
            ),
            (
                "find secrets",
                time(rounds, || {
                    black_box(redact::Redacted::find(black_box(&b), &rules).has_secrets());
                }),
            ),
            (
                "bake (baseline build)",
                time(rounds, || {
                    black_box(redact::bake(black_box(&b), &rules));
                }),
            ),
            (
                "prepare both sides of a diff",
                time(rounds, || {
                    black_box(redact::prepare(
                        Some((black_box(&baked), old_with_sha.sha256)),
                        Some(black_box(&b)),
                        &rules,
                        &key,
                    ));
                }),
            ),
            (
                "evaluate::compare (with the diff)",
                time(rounds, || {
                    black_box(evaluate::compare(
                        &old.path,
                        Some(black_box(&old_with_sha)),
                        Some(black_box(&new)),
                        &rules,
                        &key,
                    ));
                }),
            ),
        ];
        for (step, ns) in rows {
            println!("| {label} | {step} | {ns:.0} | {:.0} |", ns / kib);
        }
    }
}
