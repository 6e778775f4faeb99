//! `driftwatch reconcile` end to end (issue 15 part 4): real agents report edits of config
//! files to a real collector, and the CLI turns them into a commit on a new branch of a real
//! git repository holding the image's files — or refuses, saying why, and changes nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch_tests::{Agent, Collector, TestDir};

const SETTLE: Duration = Duration::from_secs(30);

const APP: &str = "listen = 80\nworkers = 2\n";
const APP_NEW: &str = "listen = 8080\nworkers = 2\n";
const DB: &str = "user = app\npassword = hunter2\n";
const SSHD: &str = "# sshd\nPermitRootLogin no\nPasswordAuthentication no\n";
const SSHD_NEW: &str = "# sshd\nPermitRootLogin yes\nPasswordAuthentication no\n";

/// A host of the fleet: its own tree (the image's files), its agent reporting as
/// `instance_id`, an AWS instance.
struct Host {
    dir: TestDir,
    _agent: Agent,
}

fn image_tree(t: &TestDir) {
    t.populate();
    t.write("/etc/app/app.conf", APP);
    t.write("/etc/app/db.conf", DB);
}

fn host(c: &Collector, baseline: &Path, instance_id: &str) -> Host {
    let dir = TestDir::new();
    image_tree(&dir);
    let identity = dir.path().join("identity.json");
    fs::write(
        &identity,
        format!(
            r#"{{"v1": {{"instance_id": "{instance_id}", "cloud_name": "aws", "region": "eu-west-1",
                 "local_hostname": "{instance_id}.internal"}}}}"#
        ),
    )
    .unwrap();
    let config = format!(
        "[collector]\nurl = {:?}\nheartbeat = \"1s\"\nidentity_file = {:?}\n",
        c.url, identity
    );
    let agent = dir.start_agent(baseline, &config);
    Host { dir, _agent: agent }
}

/// `git -C repo ARGS`, asserting success; its stdout.
fn git(repo: &Path, args: &[&str]) -> String {
    driftwatch_tests::Cmd::system("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .ok()
}

/// The team's configuration repository: the image's files under `files/`, committed on
/// `main`.
fn config_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("config-repo");
    fs::create_dir_all(repo.join("files/etc/app")).unwrap();
    fs::create_dir_all(repo.join("files/etc/ssh")).unwrap();
    fs::write(repo.join("files/etc/app/app.conf"), APP).unwrap();
    fs::write(repo.join("files/etc/app/db.conf"), DB).unwrap();
    fs::write(repo.join("files/etc/ssh/sshd_config"), SSHD).unwrap();
    fs::write(repo.join("files/etc/motd"), "Welcome\n").unwrap();
    fs::write(repo.join("README"), "the image's files\n").unwrap();
    git(&repo, &["init", "--quiet", "--initial-branch=main"]);
    for (key, value) in [
        ("user.name", "Team"),
        ("user.email", "team@example.com"),
        ("commit.gpgsign", "false"),
    ] {
        git(&repo, &["config", key, value]);
    }
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "the image's files"]);
    repo
}

fn state(dir: &Path) -> PathBuf {
    let instance = |index: u32, id: &str| {
        format!(
            r#"{{"index_key": {index}, "schema_version": 1, "attributes": {{"id": "{id}",
                "ami": "ami-1", "instance_state": "running"}}}}"#
        )
    };
    let file = dir.join("terraform.tfstate");
    fs::write(
        &file,
        format!(
            r#"{{"version": 4, "terraform_version": "1.9.5", "serial": 1, "lineage": "reconcile",
  "outputs": {{}}, "resources": [
    {{"mode": "managed", "type": "aws_instance", "name": "web", "each": "list",
      "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
      "instances": [{}, {}]}}]}}"#,
            instance(0, "i-web1"),
            instance(1, "i-web2")
        ),
    )
    .unwrap();
    file
}

struct Fleet {
    t: TestDir,
    c: Collector,
    _web1: Host,
    _web2: Host,
    repo: PathBuf,
}

/// Two hosts of one image, owned by `aws_instance.web[0]` and `[1]`. Both changed
/// `/etc/app/app.conf` the same way (one cause); `i-web1` also opened root logins in
/// `sshd_config`, changed the user next to a password in `db.conf`, and a binary; `i-web2`
/// added `/etc/app/extra.conf` and removed `/etc/motd`.
fn fleet() -> Fleet {
    let t = TestDir::new();
    image_tree(&t);
    let baseline = t.baseline();
    let c = Collector::start(&t.path().join("collector"));
    let web1 = host(&c, &baseline, "i-web1");
    let web2 = host(&c, &baseline, "i-web2");
    c.cli()
        .args(["iac", "import", "--terraform-state"])
        .arg(state(t.path()))
        .args(["--name", "prod"])
        .ok();
    web1.dir.write_by_rename("/etc/app/app.conf", APP_NEW);
    web2.dir.write_by_rename("/etc/app/app.conf", APP_NEW);
    web2.dir.write("/etc/app/extra.conf", "extra = 1\n");
    fs::remove_file(web2.dir.at("/etc/motd")).unwrap();
    web1.dir.write_by_rename("/etc/ssh/sshd_config", SSHD_NEW);
    web1.dir
        .write_by_rename("/etc/app/db.conf", "user = app2\npassword = hunter2\n");
    web1.dir
        .write_by_rename("/usr/bin/tool", "#!/bin/sh\necho changed\n");
    c.wait_host_paths("i-web1", SETTLE, |p| {
        p == [
            "/etc/app/app.conf",
            "/etc/app/db.conf",
            "/etc/ssh/sshd_config",
            "/usr/bin/tool",
        ]
    });
    c.wait_host_paths("i-web2", SETTLE, |p| {
        p == ["/etc/app/app.conf", "/etc/app/extra.conf", "/etc/motd"]
    });
    let owned = driftwatch_tests::wait_for(SETTLE, || {
        c.hosts()
            .as_array()
            .unwrap()
            .iter()
            .all(|h| !h["iac"].is_null())
    });
    assert!(owned, "IaC never linked the hosts: {}", c.hosts());
    let repo = config_repo(t.path());
    Fleet {
        t,
        c,
        _web1: web1,
        _web2: web2,
        repo,
    }
}

impl Fleet {
    /// `driftwatch reconcile --repo REPO --map /etc=files/etc ARGS`.
    fn reconcile(&self, args: &[&str]) -> driftwatch_tests::Cmd {
        self.c
            .cli()
            .args(["reconcile", "--repo"])
            .arg(&self.repo)
            .args(["--map", "/etc=files/etc"])
            .args(args)
    }

    fn branches(&self) -> Vec<String> {
        git(&self.repo, &["branch", "--format=%(refname:short)"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn show(&self, rev_path: &str) -> String {
        git(&self.repo, &["show", rev_path])
    }
}

#[test]
fn drift_becomes_a_reviewed_commit_and_nothing_else_changes() {
    let f = fleet();
    let head = git(&f.repo, &["rev-parse", "HEAD"]);

    // --dry-run: the patch on stdout, what is left out on stderr, nothing changed.
    let out = f.reconcile(&["--host", "i-web1", "--dry-run"]).output();
    assert_eq!(out.status.code(), Some(2), "db.conf is refused: {out:?}");
    let patch = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        patch.contains("--- a/files/etc/ssh/sshd_config\n+++ b/files/etc/ssh/sshd_config\n")
            && patch.contains("-PermitRootLogin no\n+PermitRootLogin yes\n")
            && patch.contains("-listen = 80\n+listen = 8080\n"),
        "{patch}"
    );
    assert!(
        !patch.contains("db.conf") && !patch.contains("hunter2"),
        "{patch}"
    );
    assert!(
        stderr.contains(
            "/etc/app/db.conf -> files/etc/app/db.conf: its diff touches a redacted secret"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("/usr/bin/tool: outside every --map"),
        "{stderr}"
    );
    assert_eq!(f.branches(), ["main"]);
    assert_eq!(git(&f.repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&f.repo, &["status", "--porcelain"]), "");
    // The patch is one git applies as it is.
    let patch_file = f.t.path().join("reconcile.patch");
    fs::write(&patch_file, &patch).unwrap();
    git(&f.repo, &["apply", "--check", patch_file.to_str().unwrap()]);

    // --cause: one change of two hosts, applied once, both named.
    let causes: serde_json::Value =
        serde_json::from_str(&f.c.cli().args(["causes", "--json"]).ok()).unwrap();
    let cause = causes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/etc/app/app.conf")
        .unwrap_or_else(|| panic!("no cause for app.conf: {causes}"));
    assert_eq!(cause["host_count"], 2);
    let id = cause["cause"].as_str().unwrap();
    let out = f
        .reconcile(&["--cause", &id[..10], "--branch", "reconcile/app", "--json"])
        .ok();
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    let commit = result["commit"].as_str().unwrap();
    assert_eq!(result["branch"], "reconcile/app");
    assert_eq!(result["changes"].as_array().unwrap().len(), 1, "{result}");
    assert_eq!(git(&f.repo, &["rev-parse", "reconcile/app"]).trim(), commit);
    assert_eq!(f.show("reconcile/app:files/etc/app/app.conf"), APP_NEW);
    assert_eq!(
        git(&f.repo, &["rev-parse", "reconcile/app^"]),
        head,
        "the branch starts at HEAD"
    );
    let message = git(&f.repo, &["log", "-1", "--format=%B", "reconcile/app"]);
    assert!(
        message.starts_with("driftwatch: reconcile /etc/app/app.conf as changed on 2 hosts\n\n"),
        "{message}"
    );
    for says in [
        "files/etc/app/app.conf (modify, from /etc/app/app.conf, behavioral)",
        "host i-web1 (i-web1.internal): resource aws_instance.web[0]; changed by unknown; observed 20",
        "host i-web2 (i-web2.internal): resource aws_instance.web[1]; changed by unknown; observed 20",
        "Hosts: i-web1, i-web2\n",
        "Resources: aws_instance.web[0], aws_instance.web[1]\n",
        &format!("Collector: {}\n", f.c.url),
    ] {
        assert!(message.contains(says), "{says:?} not in:\n{message}");
    }
    // Only that file changed; the checkout did not move.
    assert_eq!(
        git(&f.repo, &["diff", "--name-only", "main", "reconcile/app"]),
        "files/etc/app/app.conf\n"
    );
    assert_eq!(git(&f.repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&f.repo, &["symbolic-ref", "--short", "HEAD"]), "main\n");
    assert_eq!(
        fs::read_to_string(f.repo.join("files/etc/app/app.conf")).unwrap(),
        APP
    );

    // --host: what can be committed is, the refused secret is not, and the exit code says so.
    let out = f
        .reconcile(&["--host", "i-web1", "--branch", "reconcile/web1"])
        .code(2);
    assert!(
        out.contains("Committed 2 files on the new branch reconcile/web1"),
        "{out}"
    );
    assert_eq!(f.show("reconcile/web1:files/etc/ssh/sshd_config"), SSHD_NEW);
    assert_eq!(f.show("reconcile/web1:files/etc/app/app.conf"), APP_NEW);
    assert_eq!(f.show("reconcile/web1:files/etc/app/db.conf"), DB);
    let message = git(&f.repo, &["log", "-1", "--format=%B", "reconcile/web1"]);
    assert!(
        message.starts_with("driftwatch: reconcile 2 files drifted on i-web1\n"),
        "{message}"
    );
    assert!(
        message.contains("Left out:\n  /etc/app/db.conf: its diff touches a redacted secret"),
        "{message}"
    );

    // --resource: only the hosts that resource owns; an added file is created, a removed one
    // removed, in a patch git applies.
    let patch = f
        .reconcile(&["--resource", "aws_instance.web[1]", "--dry-run"])
        .ok();
    assert!(
        patch.contains("+listen = 8080\n") && !patch.contains("sshd_config"),
        "{patch}"
    );
    assert!(
        patch.contains(
            "diff --git a/files/etc/app/extra.conf b/files/etc/app/extra.conf\nnew file mode 100644\n--- /dev/null\n+++ b/files/etc/app/extra.conf\n@@ -0,0 +1 @@\n+extra = 1\n"
        ),
        "{patch}"
    );
    assert!(
        patch.contains("deleted file mode 100644\n--- a/files/etc/motd\n+++ /dev/null\n@@ -1 +0,0 @@\n-Welcome\n"),
        "{patch}"
    );
    fs::write(&patch_file, &patch).unwrap();
    git(&f.repo, &["apply", "--check", patch_file.to_str().unwrap()]);
    f.reconcile(&[
        "--resource",
        "aws_instance.web[1]",
        "--branch",
        "reconcile/web2",
    ])
    .ok();
    assert_eq!(
        git(
            &f.repo,
            &["diff", "--name-status", "main", "reconcile/web2"]
        ),
        "M\tfiles/etc/app/app.conf\nA\tfiles/etc/app/extra.conf\nD\tfiles/etc/motd\n"
    );
    assert_eq!(
        f.show("reconcile/web2:files/etc/app/extra.conf"),
        "extra = 1\n"
    );

    // Nothing a repository can take.
    f.reconcile(&["--host", "i-web1", "--path", "/usr/bin", "--dry-run"])
        .code(3);
}

#[test]
fn a_repository_that_moved_on_or_is_dirty_is_refused_and_left_alone() {
    let f = fleet();
    // Someone changed sshd_config in the repository since the image was built.
    fs::write(
        f.repo.join("files/etc/ssh/sshd_config"),
        "# sshd, hardened\nPermitRootLogin no\nPasswordAuthentication no\n",
    )
    .unwrap();
    git(&f.repo, &["commit", "--quiet", "-am", "harden sshd"]);
    let head = git(&f.repo, &["rev-parse", "HEAD"]);
    let out = f
        .reconcile(&["--host", "i-web1", "--path", "/etc/ssh", "--branch", "nope"])
        .code(2);
    assert!(
        out.contains(
            "/etc/ssh/sshd_config -> files/etc/ssh/sshd_config: files/etc/ssh/sshd_config no longer matches the baseline the drift was measured against (sha256 "
        ),
        "{out}"
    );
    assert_eq!(f.branches(), ["main"], "nothing to commit, no branch");
    assert_eq!(git(&f.repo, &["rev-parse", "HEAD"]), head);

    // Uncommitted changes: refused before anything is written.
    fs::write(f.repo.join("README"), "edited\n").unwrap();
    let stderr = f
        .reconcile(&["--host", "i-web2", "--branch", "dirty"])
        .stderr_with_code(1);
    assert!(
        stderr.contains("the repository has uncommitted changes (README)"),
        "{stderr}"
    );
    assert_eq!(f.branches(), ["main"]);

    // An existing branch is never moved.
    fs::write(f.repo.join("README"), "the image's files\n").unwrap();
    let stderr = f
        .reconcile(&["--host", "i-web2", "--branch", "main"])
        .stderr_with_code(1);
    assert!(
        stderr.contains("a branch named \"main\" already exists"),
        "{stderr}"
    );
    assert_eq!(git(&f.repo, &["rev-parse", "main"]), head);
}
