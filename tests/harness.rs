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
use std::time::{Duration, Instant};

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
    /// A system tool (`curl`), found on the PATH.
    pub fn system(program: &str) -> Cmd {
        Cmd {
            command: Command::new(program),
        }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

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

    /// Sends stdout there instead of capturing it.
    pub fn stdout(mut self, stdout: impl Into<std::process::Stdio>) -> Self {
        self.command.stdout(stdout);
        self
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

/// The paths of a `check --json` report's drift items, in report order.
pub fn drift_paths(report: &serde_json::Value) -> Vec<String> {
    items(report).into_iter().map(|(path, ..)| path).collect()
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

/// A running `driftwatch-agent run`, standalone: its stdout (JSON lines) is collected by a
/// thread; stderr goes to a log file that failure messages print.
pub struct Agent {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
    pub state_dir: PathBuf,
    pub log: PathBuf,
}

impl TestDir {
    /// Writes an agent.toml (plus `extra` TOML) for this root and starts the agent on it.
    pub fn start_agent(&self, baseline: &Path, extra: &str) -> Agent {
        let state_dir = self.path().join("state");
        let config = self.path().join("agent.toml");
        // `extra` holds TOML tables; tests get a 50 ms coalescing window unless they set one.
        fs::write(
            &config,
            format!(
                "baseline = {:?}\nroot = {:?}\nstate_dir = {:?}\nlisten = \"127.0.0.1:0\"\n{}\n{extra}\n",
                baseline,
                self.root(),
                state_dir,
                if extra.contains("[watch]") { "" } else { "[watch]\ncoalesce = \"50ms\"" },
            ),
        )
        .expect("write agent.toml");
        let log = self.path().join(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = fs::remove_file(state_dir.join("status.addr"));
        let mut child = Command::new(bin("driftwatch-agent"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("DRIFTWATCH_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start driftwatch-agent run");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent printed a non-JSON line ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let agent = Agent {
            child,
            events: rx,
            state_dir,
            log,
        };
        agent.wait_ready();
        agent
    }
}

impl Agent {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the agent's status listener says it is watching (or degraded).
    fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(status) = self.try_status()
                && status["state"] != "starting"
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("agent did not become ready; log:\n{}", self.log_text());
    }

    fn try_status(&self) -> std::io::Result<serde_json::Value> {
        let body = driftwatch_agent::telemetry::socket_get(&self.status_socket(), "/status")?;
        serde_json::from_str(&body).map_err(std::io::Error::other)
    }

    /// The agent's status socket (the default one, in its state directory).
    pub fn status_socket(&self) -> PathBuf {
        self.state_dir.join("agent.sock")
    }

    /// The address of the agent's metrics listener (TCP).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        fs::read_to_string(self.state_dir.join("status.addr"))
            .expect("status.addr")
            .trim()
            .parse()
            .expect("an address in status.addr")
    }

    /// The agent's `/status` JSON.
    pub fn status(&self) -> serde_json::Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("status: {e}; log:\n{}", self.log_text()))
    }

    /// The agent's `/metrics` text, from its TCP listener.
    pub fn metrics(&self) -> String {
        driftwatch_agent::telemetry::http_get(self.metrics_addr(), "/metrics").expect("metrics")
    }

    /// Collects events until `n` have arrived (panics after `timeout`).
    pub fn take(&self, n: usize, timeout: std::time::Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => out.push(e),
                Err(_) => panic!(
                    "expected {n} events, got {}: {out:#?}\nlog:\n{}",
                    out.len(),
                    self.log_text()
                ),
            }
        }
        out
    }

    /// Applies events to `consumer` until its view satisfies `done`; returns how long that
    /// took. Panics after `timeout`, naming `what` and showing the view and the log.
    pub fn wait_view(
        &self,
        consumer: &mut Consumer,
        what: &str,
        timeout: std::time::Duration,
        done: impl Fn(&std::collections::BTreeMap<String, serde_json::Value>) -> bool,
    ) -> std::time::Duration {
        let start = std::time::Instant::now();
        while !done(&consumer.view) {
            let left = timeout.saturating_sub(start.elapsed());
            match self.events.recv_timeout(left) {
                Ok(e) => consumer.apply(&[e]),
                Err(_) => panic!(
                    "waited {timeout:?} for {what}; view: {:#?}\nlog:\n{}",
                    consumer.view,
                    self.log_text()
                ),
            }
        }
        start.elapsed()
    }

    /// Collects events until none arrives for `quiet`.
    pub fn drain(&self, quiet: std::time::Duration) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.recv_timeout(quiet) {
            out.push(e);
        }
        out
    }

    /// Asserts that no event arrives within `quiet`.
    pub fn assert_quiet(&self, quiet: std::time::Duration) {
        let extra = self.drain(quiet);
        assert!(extra.is_empty(), "unexpected events: {extra:#?}");
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait for agent");
        assert!(
            status.success(),
            "agent exited {status}; log:\n{}",
            self.log_text()
        );
        status
    }

    /// Sends SIGHUP.
    pub fn hup(&self) {
        self.signal("HUP");
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A consumer of drift events: applies them idempotently by sequence number (a record printed
/// just before a crash is printed again after the restart, with the same number).
#[derive(Default)]
pub struct Consumer {
    seen: std::collections::BTreeMap<u64, serde_json::Value>,
    pub view: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Consumer {
    pub fn apply(&mut self, events: &[serde_json::Value]) {
        for e in events {
            let seq = e["seq"].as_u64().expect("seq");
            if let Some(previous) = self.seen.get(&seq) {
                assert_eq!(
                    previous, e,
                    "sequence number {seq} reused for a different event"
                );
                continue;
            }
            assert!(
                self.seen.keys().next_back().is_none_or(|last| *last < seq),
                "event {seq} arrived after a higher sequence number"
            );
            self.seen.insert(seq, e.clone());
            apply_events(&mut self.view, std::slice::from_ref(e));
        }
    }
}

/// Applies drift events to a consumer's view: path or package name → last item.
pub fn apply_events(
    view: &mut std::collections::BTreeMap<String, serde_json::Value>,
    events: &[serde_json::Value],
) {
    for e in events {
        let item = &e["item"];
        let key = item["path"].as_str().map(str::to_owned).unwrap_or_else(|| {
            format!(
                "package:{}:{}",
                item["name"].as_str().unwrap_or(""),
                item["arch"].as_str().unwrap_or("")
            )
        });
        match e["event"].as_str() {
            Some("resolved") => {
                view.remove(&key);
            }
            Some("drifted") | Some("changed") => {
                view.insert(key, item.clone());
            }
            other => panic!("unknown event kind {other:?} in {e}"),
        }
    }
}

/// `(event, path)` pairs of a list of events.
pub fn summary(events: &[serde_json::Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("?").to_owned(),
                e["item"]["path"]
                    .as_str()
                    .or(e["item"]["name"].as_str())
                    .unwrap_or("?")
                    .to_owned(),
            )
        })
        .collect()
}

/// A port free on loopback now (for a collector that must come back on the same address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A running `driftwatch-collector serve` on a fixed loopback port, with its database and log
/// in `dir`. Restartable on the same port and database.
pub struct Collector {
    child: Option<std::process::Child>,
    pub port: u16,
    pub url: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    /// `--database`: `sqlite://DIR/collector.db` unless started with [`Collector::start_on`].
    pub database: String,
}

impl Collector {
    /// `driftwatch-collector token ARGS` against this collector's database.
    pub fn token_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("driftwatch-collector"));
        cmd.arg("token")
            .args(args)
            .arg("--database")
            .arg(&self.database);
        cmd
    }

    /// A new operator token (`dwt_…`) with this name and role.
    pub fn create_token(&self, name: &str, role: &str) -> String {
        let out = self
            .token_command(&["create", "--name", name, "--role", role])
            .output()
            .expect("token create runs");
        assert!(out.status.success(), "{}", describe(&out));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(token.starts_with("dwt_"), "{token}");
        token
    }

    /// Starts a collector keeping its data in `dir` (created if missing).
    pub fn start(dir: &Path) -> Collector {
        Collector::start_with_env(dir, &[])
    }

    /// Starts a collector with extra `serve` flags (e.g. `--max-connections 50`). A flag given
    /// here replaces the harness's default for it (`--heartbeat 1s`, `--silent-after 5s`).
    pub fn start_with_args(dir: &Path, args: &[&str]) -> Collector {
        Collector::start_with(dir, &[], args)
    }

    /// Starts a collector with extra environment (e.g. a test failpoint).
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Collector {
        Collector::start_with(dir, env, &[])
    }

    /// Starts a collector on `database` (a `postgres://` URL), keeping its log in `dir`.
    pub fn start_on(dir: &Path, database: &str) -> Collector {
        Collector::start_full(dir, &[], &[], Some(database))
    }

    /// [`start_on`](Self::start_on) with extra `serve` flags.
    pub fn start_on_with_args(dir: &Path, database: &str, args: &[&str]) -> Collector {
        Collector::start_full(dir, &[], args, Some(database))
    }

    fn start_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Collector {
        Collector::start_full(dir, env, args, None)
    }

    fn start_full(
        dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        database: Option<&str>,
    ) -> Collector {
        fs::create_dir_all(dir).expect("collector dir");
        let port = free_port();
        let scheme = if args.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        let mut c = Collector {
            child: None,
            port,
            url: format!("{scheme}://127.0.0.1:{port}"),
            dir: dir.to_owned(),
            log: dir.join("collector.log"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            database: database.map_or_else(
                || format!("sqlite://{}", dir.join("collector.db").display()),
                str::to_owned,
            ),
        };
        c.restart();
        c
    }

    /// (Re)starts the process on the same port and database; waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "collector already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("collector log");
        let child = Command::new(bin("driftwatch-collector"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--database")
            .arg(&self.database)
            .args(
                [("--heartbeat", "1s"), ("--silent-after", "5s")]
                    .into_iter()
                    .filter(|(flag, _)| !self.args.iter().any(|a| a == flag))
                    .flat_map(|(flag, value)| [flag, value]),
            )
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DRIFTWATCH_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start driftwatch-collector serve");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let tls = self.url.starts_with("https:");
        while std::time::Instant::now() < deadline {
            // Behind TLS, accepting connections is as far as a plain client can tell.
            let up = if tls {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                self.try_get("/healthz").is_ok()
            };
            if up {
                return;
            }
            assert!(self.alive(), "collector exited; log:\n{}", self.log_text());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("collector did not come up; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the process to exit on its own (e.g. at a failpoint).
    pub fn wait_exit(&mut self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "collector did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.child = None;
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sets the environment of the next restart.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    fn try_get(&self, path: &str) -> std::io::Result<String> {
        driftwatch_agent::telemetry::http_get(
            std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            path,
        )
    }

    /// SIGTERM; waits up to `timeout` for the process to exit (see [`terminate`]).
    pub fn terminate(&mut self, timeout: Duration) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("collector running");
        terminate(&mut child, timeout, &|| self.log_text())
    }

    /// GET on the HTTP side: the status code and the body, whatever the status.
    pub fn get(&self, path: &str) -> (u16, String) {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        let mut response = agent
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.log_text()));
        let body = response.body_mut().read_to_string().expect("a text body");
        (response.status().as_u16(), body)
    }

    /// GET on the HTTP side, parsed as JSON.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let body = self
            .try_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.log_text()));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `driftwatch ARGS --collector URL`.
    pub fn cli(&self) -> Cmd {
        Cmd {
            command: {
                let mut c = Command::new(bin("driftwatch"));
                c.env("DRIFTWATCH_COLLECTOR", &self.url);
                c
            },
        }
    }

    /// `driftwatch hosts --json`.
    pub fn hosts(&self) -> serde_json::Value {
        let out = self.cli().args(["hosts", "--json"]).ok();
        serde_json::from_str(&out).expect("hosts --json is JSON")
    }

    /// The current drift paths of one host, from `driftwatch host H --json`.
    pub fn host_paths(&self, host: &str) -> Vec<String> {
        let out = self.cli().args(["host", host, "--json"]).ok();
        let detail: serde_json::Value = serde_json::from_str(&out).expect("host --json is JSON");
        let mut paths: Vec<String> = detail["drift"]
            .as_array()
            .expect("drift array")
            .iter()
            .filter_map(|i| i["path"].as_str().map(str::to_owned))
            .collect();
        paths.sort();
        paths
    }

    /// Polls until `pred` holds for `driftwatch host H --json`'s paths (panics after `timeout`).
    pub fn wait_host_paths(
        &self,
        host: &str,
        timeout: std::time::Duration,
        pred: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let out = self.cli().args(["host", host, "--json"]).output();
            if out.status.success() {
                let paths = self.host_paths(host);
                if pred(&paths) {
                    return paths;
                }
                if std::time::Instant::now() > deadline {
                    panic!(
                        "host {host} never reached the expected drift set; last: {paths:?}\ncollector log:\n{}",
                        self.log_text()
                    );
                }
            } else if std::time::Instant::now() > deadline {
                panic!(
                    "host {host} never appeared: {}\ncollector log:\n{}",
                    describe(&out),
                    self.log_text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// The history of one host, from `driftwatch history --json`.
pub fn history(c: &Collector, host: &str) -> Vec<serde_json::Value> {
    let out = c
        .cli()
        .args(["history", "--host", host, "--limit", "0", "--json"])
        .ok();
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("history --json is JSON")
        .as_array()
        .expect("an array")
        .clone()
}

/// Checks that a host's stored history holds every transition exactly once (contiguous
/// sequence numbers, no duplicates) and that replaying it gives `expected`.
pub fn assert_history_consistent(c: &Collector, host: &str, expected: &[String]) {
    let events = history(c, host);
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["source"] == "stream")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "duplicate history rows: {seqs:?}");
    if let (Some(first), Some(last)) = (unique.first(), unique.last()) {
        assert_eq!(
            (last - first + 1) as usize,
            unique.len(),
            "history has a gap: {seqs:?}"
        );
    }
    let mut view = std::collections::BTreeMap::new();
    for e in &events {
        let path = e["path"].as_str().unwrap().to_owned();
        match e["event"].as_str().unwrap() {
            "resolved" => {
                view.remove(&path);
            }
            _ => {
                view.insert(path, ());
            }
        }
    }
    let replayed: Vec<String> = view.into_keys().collect();
    assert_eq!(
        replayed, expected,
        "history does not replay to the current set"
    );
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl TestDir {
    /// `driftwatch up` on the root, watching `/etc`, listening on `port`, with `extra` flags;
    /// its data in `data/`, its stdout in `up.out`, its stderr in `up.err`.
    pub fn start_up(&self, port: u16, extra: &[&str]) -> std::process::Child {
        Command::new(bin("driftwatch"))
            .args(["up", "--paths", "/etc", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(self.root())
            .arg("--data-dir")
            .arg(self.path().join("data"))
            .args(extra)
            .env("DRIFTWATCH_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(self.path().join("up.out")).expect("up.out"))
            .stderr(fs::File::create(self.path().join("up.err")).expect("up.err"))
            .spawn()
            .expect("start driftwatch up")
    }

    /// The sample tree, a collector in `collector/` and an agent reporting to it as
    /// `instance_id` (hostname `INSTANCE_ID.test`), once the collector holds the agent's one
    /// drift item: `/etc/motd` changed (cosmetic).
    pub fn fleet_of_one(&self, instance_id: &str) -> (Collector, Agent) {
        self.populate();
        let b = self.baseline();
        let c = Collector::start(&self.path().join("collector"));
        let agent = self.start_agent(&b, &self.collector_config(&c, instance_id));
        self.write_by_rename("/etc/motd", "changed\n");
        c.wait_host_paths(instance_id, Duration::from_secs(30), |p| p == ["/etc/motd"]);
        (c, agent)
    }

    /// Agent configuration (TOML tables) streaming to `collector` as instance `instance_id`
    /// (an identity file shaped like cloud-init's instance data), heartbeating every second.
    pub fn collector_config(&self, collector: &Collector, instance_id: &str) -> String {
        let identity = self.path().join("identity.json");
        fs::write(
            &identity,
            format!(
                r#"{{"v1": {{"instance_id": "{instance_id}", "local_hostname": "{instance_id}.test", "cloud_name": "test"}}}}"#
            ),
        )
        .expect("write identity.json");
        format!(
            "[collector]\nurl = {:?}\nheartbeat = \"1s\"\nidentity_file = {:?}\n",
            collector.url, identity
        )
    }
}

/// Polls `done` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to `child`, then waits up to `timeout` for it to exit: its status and how long it
/// took. Past the timeout it is killed and the test fails with `log()`.
pub fn terminate(
    child: &mut std::process::Child,
    timeout: Duration,
    log: &dyn Fn() -> String,
) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
    let mut status = None;
    wait_for(timeout, || {
        status = child.try_wait().expect("wait for the process");
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running {timeout:?} after SIGTERM; log:\n{}", log());
    };
    (status, started.elapsed())
}

/// A running `driftwatch watch`: its stdout goes to `watch.out` (or where asked), its stderr
/// to `watch.err`.
pub struct WatchClient {
    child: std::process::Child,
    stderr: PathBuf,
}

impl WatchClient {
    /// Starts `driftwatch watch` against `url` (files in `dir`) and waits until its stream is
    /// open (it says so on stderr).
    pub fn start(url: &str, dir: &Path) -> WatchClient {
        let stdout = fs::File::create(dir.join("watch.out")).expect("watch.out");
        WatchClient::start_with_stdout(url, dir, stdout)
    }

    /// [`start`](Self::start) with stdout sent to `stdout` (`watch.out` stays empty).
    pub fn start_with_stdout(
        url: &str,
        dir: &Path,
        stdout: impl Into<std::process::Stdio>,
    ) -> WatchClient {
        let stderr = dir.join("watch.err");
        let child = Command::new(bin("driftwatch"))
            .args(["--collector", url, "watch"])
            .env("DRIFTWATCH_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(fs::File::create(&stderr).expect("watch.err"))
            .spawn()
            .expect("start driftwatch watch");
        let mut watch = WatchClient { child, stderr };
        let watching = wait_for(Duration::from_secs(30), || {
            watch.stderr_text().contains("Watching") || !watch.alive()
        });
        assert!(
            watching && watch.alive(),
            "driftwatch watch did not start: {}",
            watch.stderr_text()
        );
        watch
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the client to exit on its own; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut status = None;
        wait_for(timeout, || {
            status = self.child.try_wait().expect("wait for watch");
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("watch still running: {}", self.stderr_text()))
    }
}

impl Drop for WatchClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PKI made with openssl in `dir`: `ca.pem`/`ca.key`, a server certificate for
/// 127.0.0.1 (`server.pem`/`server.key`), and one client certificate per `(name, extensions)`
/// (`NAME.pem`/`NAME.key`, subject `CN=NAME`; `extensions` in openssl's extfile syntax, e.g.
/// `subjectAltName=URI:driftwatch:host:i-1`). EC P-256 keys, valid two days.
pub fn make_pki(dir: &Path, clients: &[(&str, &str)]) {
    fs::create_dir_all(dir).expect("pki dir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (tests/setup.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca: Vec<&str> = ["req", "-x509"]
        .into_iter()
        .chain(ec)
        .chain([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=driftwatch test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .collect();
    openssl(&ca);
    let server = (
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
    );
    for (name, ext) in std::iter::once(server).chain(clients.iter().copied()) {
        let ext = if name == "server" {
            ext.to_owned()
        } else {
            format!("extendedKeyUsage=clientAuth\n{ext}")
        };
        fs::write(dir.join(format!("{name}.ext")), format!("{ext}\n")).expect("extfile");
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subject = format!("/CN={name}");
        let req: Vec<&str> = ["req"]
            .into_iter()
            .chain(ec)
            .chain(["-keyout", &key, "-out", &csr, "-subj", &subject])
            .collect();
        openssl(&req);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
}

/// A new, empty database on a throwaway PostgreSQL 15 started once per test process (as the
/// collector's store tests start theirs: `initdb`/`pg_ctl` from Debian's `postgresql-15`, as
/// user `postgres` when root, trust on 127.0.0.1, stopped by a watcher once this process is
/// gone): its `postgres://` URL.
pub fn postgres_database() -> String {
    static SERVER: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
    SERVER.get_or_init(Postgres::start).database()
}

/// A throwaway PostgreSQL 15 server of this test process (stopped and removed once the
/// process exits).
pub struct Postgres {
    /// Without a database name.
    pub url: String,
    /// Its directory (`data/`, `server.log`).
    dir: String,
}

impl Postgres {
    /// Starts a new server (see [`postgres_database`] for one shared by a test process).
    pub fn start() -> Postgres {
        let (url, dir) = start_postgres();
        Postgres { url, dir }
    }

    /// A new, empty database on it: its URL.
    pub fn database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "dw_e2e_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let out = Command::new("psql")
            .args(["-X", "-q", "-d", &format!("{}/postgres", self.url), "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "{}", describe(&out));
        format!("{}/{name}", self.url)
    }

    /// Stops the server (`pg_ctl stop -m immediate`: as if it crashed).
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        let port = self.url.rsplit(':').next().expect("a port");
        let options = format!(
            "-p {port} -k {}/s -c listen_addresses=127.0.0.1 -c fsync=off",
            self.dir
        );
        self.pg_ctl(&["-w", "-o", &options, "start"]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", PG_CTL]);
            c
        } else {
            Command::new(PG_CTL)
        };
        let out = cmd
            .args(["-D", &format!("{}/data", self.dir), "-l"])
            .arg(format!("{}/server.log", self.dir))
            .args(args)
            .current_dir("/tmp")
            .stdout(std::process::Stdio::null())
            .output()
            .expect("pg_ctl runs");
        assert!(out.status.success(), "{}", describe(&out));
    }
}

const PG_CTL: &str = "/usr/lib/postgresql/15/bin/pg_ctl";

/// Starts a server: its URL and directory.
fn start_postgres() -> (String, String) {
    const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
    assert!(
        Path::new(PG_BIN).join("initdb").exists(),
        "PostgreSQL 15 is missing: run tests/setup.sh as root"
    );
    let root = is_root();
    let port = free_port();
    let script = format!(
        r#"set -e
dir=$(mktemp -d /tmp/dwpg.XXXXXX)
mkdir "$dir/s"
{PG_BIN}/initdb -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N >"$dir/initdb.log" 2>&1
{PG_BIN}/pg_ctl -D "$dir/data" -l "$dir/server.log" -w -o "-p {port} -k $dir/s -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
nohup sh -c 'while [ -d /proc/{pid} ]; do sleep 1; done; {PG_BIN}/pg_ctl -D "$1/data" -m immediate -w stop; rm -rf "$1"' watcher "$dir" >/dev/null 2>&1 &
echo "$dir"
"#,
        pid = std::process::id(),
    );
    let out = if root {
        Command::new("runuser")
            .args(["-u", "postgres", "--", "sh", "-c", &script])
            .current_dir("/tmp")
            .output()
    } else {
        Command::new("sh").args(["-c", &script]).output()
    }
    .expect("initdb and pg_ctl run");
    assert!(out.status.success(), "{}", describe(&out));
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (format!("postgres://postgres@127.0.0.1:{port}"), dir)
}
