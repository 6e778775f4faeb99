//! A small harness for end-to-end tests: a unique temp directory per test, a fake root inside
//! it, and a command wrapper whose failures dump the command, its status, stdout and stderr.
//!
//! The binaries under test are the ones `cargo build --workspace` put next to this test
//! executable's directory (`target/<profile>/`); the README's test command builds them first.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of a workspace binary, e.g. `bin("driftwatch-agent")`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests (the README's test command does)",
        path.display()
    );
    path
}

/// Whether the tests run as root (some scenarios need it, some need to drop it).
pub fn is_root() -> bool {
    // SAFETY-free: geteuid via /proc is enough here.
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A temp directory holding a fake root (`root/`) and scratch files.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("driftwatch-test-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
        fs::create_dir(dir.path().join("root")).expect("mkdir root");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The fake root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A path inside the fake root, e.g. `t.at("/etc/passwd")`.
    pub fn at(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    /// Writes a file inside the root, creating directories.
    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.at(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir -p");
        fs::write(&p, content).expect("write");
        p
    }

    /// Replaces a file the way `sed -i` and editors save: write a temp file, rename over.
    pub fn write_by_rename(&self, path: &str, content: impl AsRef<[u8]>) {
        let p = self.at(path);
        let tmp = p.with_extension("dwtmp");
        fs::write(&tmp, content).expect("write tmp");
        let mode = fs::metadata(&p).map(|m| m.permissions()).ok();
        if let Some(mode) = mode {
            fs::set_permissions(&tmp, mode).expect("chmod tmp");
        }
        fs::rename(&tmp, &p).expect("rename over");
    }

    pub fn chmod(&self, path: &str, mode: u32) {
        fs::set_permissions(self.at(path), fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A command of a workspace binary.
    pub fn cmd(&self, binary: &str) -> Cmd {
        let mut command = Command::new(bin(binary));
        command
            .current_dir(self.path())
            .env("DRIFTWATCH_LOG", "warn");
        Cmd { command }
    }

    /// A sample tree: a few config files, a binary dir, a symlink.
    pub fn populate(&self) {
        self.write(
            "/etc/ssh/sshd_config",
            "# sshd\nPermitRootLogin no\nPasswordAuthentication no\n",
        );
        self.write("/etc/sudoers", "root ALL=(ALL:ALL) ALL\n");
        self.write("/etc/nginx/nginx.conf", "worker_processes 2;\nevents {}\n");
        self.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
        self.write("/etc/shadow", "root:$6$secret-hash:19000:0:99999:7:::\n");
        self.write("/etc/hostname", "builder\n");
        self.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        self.write("/etc/motd", "Welcome\n");
        self.write("/usr/bin/tool", "#!/bin/sh\necho tool\n");
        self.chmod("/usr/bin/tool", 0o755);
        std::os::unix::fs::symlink("nginx.conf", self.at("/etc/nginx/current.conf"))
            .expect("symlink");
    }

    /// Builds a baseline of the root with the default rules; returns its path.
    pub fn baseline(&self) -> PathBuf {
        let out = self.path().join("baseline.dwb");
        self.cmd("driftwatch-agent")
            .args([
                "baseline",
                "build",
                "--image-name",
                "test",
                "--image-version",
                "1",
                "--root",
            ])
            .arg(self.root())
            .arg("--out")
            .arg(&out)
            .ok();
        out
    }

    /// Runs `check --json` against a baseline; returns the exit code and the parsed report.
    pub fn check_json(&self, baseline: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
        let out = self
            .cmd("driftwatch-agent")
            .arg("check")
            .arg("--baseline")
            .arg(baseline)
            .arg("--root")
            .arg(self.root())
            .arg("--json")
            .args(extra)
            .output();
        let code = out.status.code().unwrap_or(-1);
        assert!(code == 0 || code == 2, "check failed:\n{}", describe(&out));
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check --json printed invalid JSON ({e}):\n{}",
                describe(&out)
            )
        });
        (code, report)
    }
}

/// A command wrapper whose assertions print everything needed to debug a failure.
pub struct Cmd {
    command: Command,
}

impl Cmd {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Runs as user `nobody` (needs root; a test that uses this checks `is_root()` first).
    pub fn as_nobody(self) -> Self {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        command
            .arg(self.command.get_program())
            .args(self.command.get_args());
        if let Some(dir) = self.command.get_current_dir() {
            command.current_dir(dir);
        }
        for (k, v) in self.command.get_envs() {
            if let Some(v) = v {
                command.env(k, v);
            }
        }
        Cmd { command }
    }

    pub fn output(mut self) -> Output {
        self.command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.command))
    }

    /// Runs and asserts exit code 0; returns stdout.
    pub fn ok(self) -> String {
        self.code(0)
    }

    /// Runs and asserts the exit code; returns stdout.
    pub fn code(mut self, expected: i32) -> String {
        let out = self
            .command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.command));
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{:?} exited {:?}, expected {expected}:\n{}",
            self.command,
            out.status.code(),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts the exit code, returns stderr.
    pub fn stderr_with_code(mut self, expected: i32) -> String {
        let out = self
            .command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.command));
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{:?}:\n{}",
            self.command,
            describe(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Status, stdout and stderr of a finished command.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The drift items of a `check --json` report, as (path, kind, severity, changed).
pub fn items(report: &serde_json::Value) -> Vec<(String, String, String, Vec<String>)> {
    report["drift"]
        .as_array()
        .expect("drift array")
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap_or_default().to_owned(),
                d["kind"].as_str().unwrap_or_default().to_owned(),
                d["severity"].as_str().unwrap_or_default().to_owned(),
                d["changed"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// The single drift item at `path`, panicking with the report when there is not exactly one.
pub fn item<'a>(report: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    let found: Vec<&serde_json::Value> = report["drift"]
        .as_array()
        .expect("drift")
        .iter()
        .filter(|d| d["path"] == path)
        .collect();
    assert_eq!(found.len(), 1, "expected one item for {path} in {report:#}");
    found[0]
}
