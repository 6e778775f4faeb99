//! The rules of `docs/ARCHITECTURE.md` that keep the data path one-way, checked on the source:
//! which room may import which, and which crate may link which. A rule broken here is a
//! design change to discuss, not a test to loosen.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, with its non-test code: test modules (`tests.rs`, the
/// conformance suite, everything after `#[cfg(test)]`) may reach anywhere.
fn sources(dir: &str) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = repo();
    let mut files = Vec::new();
    walk(&root.join(dir), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.ends_with("tests.rs")
                && !p.components().any(|c| {
                    matches!(
                        c.as_os_str().to_str(),
                        Some("tests" | "conformance" | "proptests")
                    )
                })
                && name != "conformance.rs"
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            let shown = p.strip_prefix(&root).unwrap().display().to_string();
            (shown, code)
        })
        .collect()
}

/// Lines of the rooms under `dir` that name any of `forbidden`.
fn violations(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (file, code) in sources(dir) {
        for (n, line) in code.lines().enumerate() {
            let line = line.trim();
            if line.starts_with("//") {
                continue;
            }
            for f in forbidden {
                if line.contains(f) {
                    found.push(format!("{file}:{}: {line}  (names {f})", n + 1));
                }
            }
        }
    }
    found
}

fn assert_room(dir: &str, forbidden: &[&str]) {
    let found = violations(dir, forbidden);
    assert!(
        found.is_empty(),
        "{dir} reaches where the data path does not let it:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_agent_s_rooms_import_only_what_comes_before_them() {
    assert_room(
        "agent/src/scan",
        &[
            "crate::evaluate",
            "crate::ledger",
            "crate::spool",
            "crate::ship",
            "crate::daemon",
            "crate::cli",
        ],
    );
    assert_room(
        "agent/src/evaluate",
        &[
            "crate::ledger",
            "crate::spool",
            "crate::ship",
            "crate::daemon",
            "crate::cli",
            "crate::check",
            "crate::bake",
        ],
    );
    assert_room(
        "agent/src/spool",
        &[
            "crate::evaluate",
            "crate::ledger",
            "crate::ship",
            "crate::daemon",
            "crate::cli",
        ],
    );
    assert_room(
        "agent/src/ship",
        &[
            "crate::daemon",
            "crate::cli",
            "crate::evaluate",
            "crate::scan",
        ],
    );
    // Nothing reaches back into the command line.
    let found: Vec<String> = violations("agent/src", &["crate::cli"])
        .into_iter()
        .filter(|v| !v.starts_with("agent/src/cli.rs") && !v.starts_with("agent/src/main.rs"))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_collector_s_store_knows_no_api_and_queries_know_no_ingest() {
    assert_room(
        "collector/src/store",
        &[
            "crate::ingest",
            "crate::query",
            "crate::iac",
            "crate::server",
            "crate::status",
            "crate::access",
            "crate::enroll",
            "v1::Host",
            "v1::Import",
            "v1::IacResource",
            "v1::PackerImage",
            "v1::StateInfo",
            "v1::HistoryEvent",
            "v1::Cause",
            "v1::PathSummary",
        ],
    );
    assert_room(
        "collector/src/ingest",
        &["crate::query", "crate::server", "crate::iac"],
    );
    assert_room(
        "collector/src/iac",
        &["crate::query", "crate::ingest", "crate::server"],
    );
    assert_room("collector/src/query", &["crate::ingest", "crate::server"]);
    // The fleet CA signs and records; it serves nobody's queries and reads no stream.
    assert_room(
        "collector/src/enroll",
        &[
            "crate::ingest",
            "crate::query",
            "crate::iac",
            "crate::server",
        ],
    );
    // Who is calling is decided before any room, from the store's tokens only.
    assert_room(
        "collector/src/access",
        &[
            "crate::ingest",
            "crate::query",
            "crate::iac",
            "crate::server",
            "crate::enroll",
        ],
    );
}

#[test]
fn each_binary_links_only_its_program() {
    let manifest = |krate: &str| {
        std::fs::read_to_string(repo().join(krate).join("Cargo.toml")).expect("a manifest")
    };
    // The collector links no CLI and no agent; the formats link no program.
    for (krate, forbidden) in [
        ("collector", &["driftwatch-agent", "driftwatch-cli"][..]),
        (
            "proto",
            &[
                "driftwatch-agent",
                "driftwatch-collector",
                "driftwatch-cli",
                "driftwatch-iac",
            ][..],
        ),
        ("agent", &["driftwatch-collector", "driftwatch-cli"][..]),
    ] {
        let text = manifest(krate);
        for f in forbidden {
            assert!(!text.contains(f), "{krate}/Cargo.toml depends on {f}");
        }
    }
    assert_room("collector/src", &["driftwatch_agent", "driftwatch_cli"]);
    assert_room(
        "proto/src",
        &["driftwatch_agent", "driftwatch_collector", "driftwatch_cli"],
    );
    // The CLI links the server and the agent for `up` only.
    let cli = manifest("cli");
    for dep in ["driftwatch-collector", "driftwatch-agent"] {
        let line = cli
            .lines()
            .find(|l| l.starts_with(dep))
            .unwrap_or_else(|| panic!("cli/Cargo.toml: no {dep}"));
        assert!(line.contains("optional = true"), "{line}");
    }
    let found: Vec<String> = violations("cli/src", &["driftwatch_agent", "driftwatch_collector"])
        .into_iter()
        .filter(|v| !v.starts_with("cli/src/up.rs"))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_forbidden_import_is_caught() {
    // The checker itself: a room that names what it must not is reported with the line.
    let found = violations("collector/src/query", &["crate::store"]);
    assert!(
        found.iter().any(|v| v.contains("collector/src/query/")),
        "{found:?}"
    );
}
