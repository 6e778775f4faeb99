#!/usr/bin/env python3
"""daemon.py — benchmark of `driftwatch-agent run` (standalone mode), measured in one run
next to `inotifywait`, the kernel-notification floor.

Three sections, each compared with the issue's targets:

  1. Detection latency — N edits (default 1000) of files under ROOT/etc/app (50 files, default
     rules). For each edit the writer takes t0 = time.monotonic_ns(), rewrites the file in place
     (open O_WRONLY without truncation, one write of a same-length content, close) so that each
     edit is exactly one transition: baseline content A -> B (drifted) -> A (resolved) -> B ...
     Two reader threads of this same process read the agent's stdout and the stdout of
     `inotifywait -m -r -e close_write --format %w%f ROOT/etc` and stamp every line with
     time.monotonic_ns() on arrival; latency = arrival - t0, on the same clock. The next edit
     starts SPACING_MS (5 ms) after both lines arrived, so edits never coalesce. An edit whose
     line has not arrived within 5 s is counted as lost. Target: agent p99 <= inotifywait p99
     + 5 ms, zero lost.
  2. Storm — STORM_FILES files (default 10,000, in 100 directories under ROOT/etc/storm) all
     rewritten as fast as a Python loop goes; time from the first write to the moment the
     agent's events cover every changed path (a correct drift set), events/s, lost = files -
     distinct paths reported; cross-checked against `driftwatch-agent check --json` and the
     agent's /status drift_count (asked on its status socket, STATE/agent.sock, mode 0600).
     Inotify overflows and rescans are read from /metrics (the TCP listener).
  3. Footprint — idle CPU over IDLE_SECONDS (default 60) and RSS (VmRSS now, VmHWM peak)
     (a) with the default rules on this machine (baseline of `/`, agent on `/`), and
     (b) on a SYNTH_N-entry tree (default 200,000; bench/gen-tree.sh + bench/rules-synth.toml).
     Targets: idle CPU < 0.1% of a core; RSS < 20 MB (a), < 80 MB (b).
     CPU is read two ways: utime+stime ticks from /proc/PID/stat (10 ms resolution) and the
     sum of /proc/PID/task/*/schedstat run-time deltas (ns resolution). RSS is printed in MiB
     and compared with the targets in MB (10^6 bytes).

Usage (as root, from anywhere; python3 stdlib only):
    python3 bench/daemon.py
Environment (all optional):
    N=1000              latency edits (plus WARMUP=10 uncounted edits first)
    STORM_FILES=10000   storm size (rounded down to a multiple of 100)
    IDLE_SECONDS=60     idle CPU window (after a 5 s settle)
    SYNTH_N=200000      entries of the synthetic tree (0 skips footprint (b))
    HOST=1              footprint (a) on this machine's `/` (0 skips it)
    SPACING_MS=5        pause between latency edits
    LAT_KIB=0           pad each latency file to about this many KiB of config lines (0: the
                        two-line files); their content is captured, so every event diffs it
    LAT_SECRETS=0       1: the latency files also hold secrets (a password, a URL with
                        credentials, a token), unchanged by the edits: the cost of redaction
                        (issue 12) on every diff
    DW_BIN=PATH         agent binary (default: $CARGO_TARGET_DIR/release/driftwatch-agent, else
                        target/release/driftwatch-agent)
    WORK=DIR            scratch directory (default: a fresh /tmp/dw-bench-XXXX, removed at the end)
    KEEP=1              keep the scratch directory
Smoke run (< 1 min):  N=50 STORM_FILES=500 IDLE_SECONDS=5 SYNTH_N=2000 python3 bench/daemon.py

Every process started here (agents, inotifywait) is stopped in a `finally` block. The machine
may be shared: the load average and the share of CPU used by everything else are printed with
each section, since they move latency figures.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import socket
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DW = os.environ.get("DW_BIN", os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"),
                                           "release", "driftwatch-agent"))

N = int(os.environ.get("N", "1000"))
WARMUP = int(os.environ.get("WARMUP", "10"))
STORM_FILES = max(100, int(os.environ.get("STORM_FILES", "10000")) // 100 * 100)
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "60"))
SYNTH_N = int(os.environ.get("SYNTH_N", "200000"))
HOST = os.environ.get("HOST", "1") != "0"
SPACING_MS = float(os.environ.get("SPACING_MS", "5"))
LAT_KIB = float(os.environ.get("LAT_KIB", "0"))
LAT_SECRETS = os.environ.get("LAT_SECRETS", "0") == "1"
EDIT_TIMEOUT_S = 5.0
LAT_FILES = 50
SETTLE_S = 5.0

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCS = []  # every child we started: stopped in finally
OUT = []  # markdown lines


def say(line=""):
    OUT.append(line)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_times():
    """System-wide (busy, total) jiffies from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    return sum(f) - idle, sum(f)


def proc_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def proc_sched_ns(pid):
    """Run time (ns) of each live thread, from /proc/PID/task/*/schedstat."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out[t] = int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def sched_delta_ns(before, after):
    """CPU ns between two samples: threads alive at both, plus threads born in between (a thread
    that exited in between loses its share; the tick count from /proc/PID/stat does not)."""
    return sum(v - before.get(t, 0) for t, v in after.items())


def proc_mem(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "Threads"):
            out[k] = int(v.split()[0])
    return out


def pct(sorted_vals, p):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, **kw)


def ensure_inotifywait():
    if shutil.which("inotifywait"):
        return
    log("inotifywait missing: installing inotify-tools")
    r = run(["apt-get", "install", "-y", "inotify-tools"], capture_output=True)
    if r.returncode != 0:
        run(["apt-get", "update"], capture_output=True)
        run(["apt-get", "install", "-y", "inotify-tools"], check=True, capture_output=True)


class LineReader(threading.Thread):
    """Reads a pipe with os.read and stamps every complete line with monotonic_ns on arrival."""

    def __init__(self, fd, name):
        super().__init__(name=name, daemon=True)
        self.fd = fd
        self.lines = []  # (arrival_ns, text)
        self.cond = threading.Condition()
        self.eof = False

    def run(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                chunk = b""
            now = time.monotonic_ns()
            if not chunk:
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
            if complete:
                with self.cond:
                    for c in complete:
                        self.lines.append((now, c.decode("utf-8", "replace")))
                    self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket (the agent's status socket)."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Agent:
    def __init__(self, baseline, root, state, log_path, extra=()):
        os.makedirs(state, exist_ok=True)
        self.state = state
        self.log_path = log_path
        self.errlog = open(log_path, "wb")
        cmd = [DW, "run", "--baseline", baseline, "--root", root, "--state-dir", state,
               "--listen", "127.0.0.1:0", *extra]
        log("$ " + " ".join(cmd))
        env = dict(os.environ, DRIFTWATCH_LOG=os.environ.get("DRIFTWATCH_LOG", "info"))
        self.t_spawn = time.monotonic()
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errlog, env=env)
        PROCS.append(self.p)
        self.reader = LineReader(self.p.stdout.fileno(), "agent-stdout")
        self.reader.start()
        self.addr = None
        self.startup_s = None

    def get(self, path):
        """GET from the metrics listener (TCP): /metrics, /healthz."""
        with urllib.request.urlopen(f"http://{self.addr}{path}", timeout=30) as r:
            return r.read().decode()

    def status(self):
        """GET /status from the status socket (drift content: not on TCP)."""
        conn = UnixHTTPConnection(os.path.join(self.state, "agent.sock"))
        try:
            conn.request("GET", "/status")
            r = conn.getresponse()
            body = r.read().decode()
            if r.status != 200:
                raise OSError(f"/status: HTTP {r.status}")
            return json.loads(body)
        finally:
            conn.close()

    def wait_ready(self, timeout=600):
        deadline = time.monotonic() + timeout
        addr_file = os.path.join(self.state, "status.addr")
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"agent exited with {self.p.returncode}; see {self.log_path}:\n"
                                   + open(self.log_path, errors="replace").read()[-3000:])
            if self.addr is None and os.path.exists(addr_file):
                self.addr = open(addr_file).read().strip() or None
            if self.addr:
                try:
                    st = self.status()
                    if st.get("state") != "starting":
                        self.startup_s = time.monotonic() - self.t_spawn
                        return st
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("agent did not become ready in time")

    def metric(self, name):
        """Sum of every sample of a metric family (labels ignored)."""
        total = 0.0
        found = False
        for line in self.get("/metrics").splitlines():
            if line.startswith("#"):
                continue
            key = line.split("{")[0].split(" ")[0]
            if key == name:
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else None

    def events(self):
        """Parsed events so far: (arrival_ns, dict)."""
        with self.reader.cond:
            lines = list(self.reader.lines)
        out = []
        for ts, text in lines:
            try:
                out.append((ts, json.loads(text)))
            except ValueError:
                pass
        return out

    def stop(self):
        stop_proc(self.p)
        self.errlog.close()


def stop_proc(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def event_path(ev):
    item = ev.get("item", {})
    if "path" in item:
        return item["path"]
    for v in item.values():  # tolerate an enum-tagged item, e.g. {"File": {...}}
        if isinstance(v, dict) and "path" in v:
            return v["path"]
    return None


def write_inplace(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def build_baseline(root, out, config=None):
    cmd = [DW, "baseline", "build", "--root", root, "--out", out]
    if config:
        cmd += ["--config", config]
    t = time.monotonic()
    r = run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"baseline build failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return time.monotonic() - t


def fmt_ms(ns):
    return f"{ns / 1e6:.2f}"


def verdict(ok):
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------------------------------------
# 1. Latency


def content(i, v):
    # Same length for both variants: an in-place rewrite is a single write, no truncation.
    head = f"# app config {i:02d}\n"
    if LAT_SECRETS:
        head += ("password = correct-horse-battery-staple\n"
                 "upstream = https://app:s3cr3t@db.internal:5432/app\n"
                 "api_token: 9f86d081884c7d659a2feaa0c55ad015\n")
    pad, n = [], 0
    while len(head) + sum(map(len, pad)) < LAT_KIB * 1024:
        pad.append(f"# section {n}\n[s{n}]\nmax_connections = {100 + n}\nlog_path = /var/log/app/w{n}.log\n"
                   f"timeout_ms = 2500 ; upstream reads\nuser = app\nenabled = true\n")
        n += 1
    # The edited setting is last: the diff's hunk holds its 3 lines of context.
    return (head + "".join(pad) + f"setting_{i:02d} = {'alpha' if v == 0 else 'bravo'}\n").encode()


def latency_files(app):
    """Makes the LAT_FILES edited files in `app` (variant 0 each); returns their paths."""
    os.makedirs(app)
    files = []
    for i in range(LAT_FILES):
        p = os.path.join(app, f"f{i:02d}.conf")
        with open(p, "wb") as f:
            f.write(content(i, 0))
        files.append(p)
    return files


def bench_latency(work):
    say("## 1. Detection latency (write → event), agent vs `inotifywait -m -r`")
    base = os.path.join(work, "lat")
    root = os.path.join(base, "root")
    app = os.path.join(root, "etc", "app")
    files = latency_files(app)
    bl = os.path.join(base, "b.dwb")
    build_baseline(root, bl)

    agent = Agent(bl, root, os.path.join(base, "state"), os.path.join(base, "agent.log"))
    iw_cmd = ["inotifywait", "-m", "-r", "-q", "-e", "close_write", "--format", "%w%f",
              os.path.join(root, "etc")]
    iw_err = open(os.path.join(base, "inotifywait.log"), "w+b")
    log("$ " + " ".join(iw_cmd))
    iw = subprocess.Popen(iw_cmd, stdout=subprocess.PIPE, stderr=iw_err)
    PROCS.append(iw)
    iw_reader = LineReader(iw.stdout.fileno(), "inotifywait-stdout")
    iw_reader.start()
    try:
        agent.wait_ready()
        startup_events = len(agent.events())
        # inotifywait prints nothing when -q; probe until it sees a write (watches established).
        probe = os.path.join(root, "etc", "probe")
        deadline = time.monotonic() + 10
        while True:
            with open(probe, "wb") as f:
                f.write(b"x")
            time.sleep(0.05)
            with iw_reader.cond:
                if any(t.endswith("/probe") for _, t in iw_reader.lines):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("inotifywait did not start")
        time.sleep(0.3)  # let the agent report the probe (a new file under /etc: drifted)

        state = [0] * LAT_FILES
        a_cur = len(agent.reader.lines)
        i_cur = len(iw_reader.lines)
        lat_a, lat_i, lost_a, lost_i, wrong, extra_a, extra_i = [], [], 0, 0, 0, 0, 0
        load0, cpu0 = loadavg(), cpu_times()
        ag_cpu0 = proc_ticks(agent.p.pid)
        t_begin = time.monotonic()
        for k in range(WARMUP + N):
            i = k % LAT_FILES
            state[i] ^= 1
            want = "drifted" if state[i] == 1 else "resolved"
            host_path = files[i]
            dw_path = "/etc/app/" + os.path.basename(host_path)
            data = content(i, state[i])
            t0 = time.monotonic_ns()
            write_inplace(host_path, data)
            deadline = time.monotonic() + EDIT_TIMEOUT_S
            got_a = got_i = None
            while got_a is None or got_i is None:
                # agent
                with agent.reader.cond:
                    while a_cur < len(agent.reader.lines) and got_a is None:
                        ts, text = agent.reader.lines[a_cur]
                        a_cur += 1
                        try:
                            ev = json.loads(text)
                        except ValueError:
                            extra_a += 1
                            continue
                        if event_path(ev) == dw_path:
                            got_a = ts
                            if ev.get("event") != want:
                                wrong += 1
                        else:
                            extra_a += 1
                with iw_reader.cond:
                    while i_cur < len(iw_reader.lines) and got_i is None:
                        ts, text = iw_reader.lines[i_cur]
                        i_cur += 1
                        if text == host_path:
                            got_i = ts
                        else:
                            extra_i += 1
                if got_a is not None and got_i is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Wait on whichever is still missing (both conditions are notified per line).
                cond = agent.reader.cond if got_a is None else iw_reader.cond
                with cond:
                    cond.wait(min(remaining, 0.05))
            if k >= WARMUP:
                if got_a is None:
                    lost_a += 1
                else:
                    lat_a.append(got_a - t0)
                if got_i is None:
                    lost_i += 1
                else:
                    lat_i.append(got_i - t0)
            time.sleep(SPACING_MS / 1000)
        wall = time.monotonic() - t_begin
        ag_cpu = (proc_ticks(agent.p.pid) - ag_cpu0) / CLK_TCK * 1e9
        cpu1 = cpu_times()
        busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1]) * 100
        load1 = loadavg()
        overflows = agent.metric("driftwatch_agent_inotify_overflows_total")
        status = agent.status()
    finally:
        agent.stop()
        stop_proc(iw)
        iw_err.close()

    lat_a.sort()
    lat_i.sort()
    rows = []
    for p in (50, 90, 99):
        rows.append((f"p{p}", pct(lat_a, p), pct(lat_i, p)))
    rows.append(("max", lat_a[-1] if lat_a else float("nan"), lat_i[-1] if lat_i else float("nan")))
    mean_a = sum(lat_a) / len(lat_a) if lat_a else float("nan")
    mean_i = sum(lat_i) / len(lat_i) if lat_i else float("nan")
    say()
    say(f"Tree: {LAT_FILES} files in `{app}` (default rules); {N} measured edits "
        f"(+{WARMUP} warm-up), each an in-place same-length rewrite alternating baseline "
        f"content ↔ other content, so every edit is one transition (drifted/resolved); "
        f"{SPACING_MS:g} ms pause after both lines arrived; timeout {EDIT_TIMEOUT_S:g} s = lost.")
    say()
    say("```")
    say(f"{DW} run --baseline {bl} --root {root} --state-dir {base}/state --listen 127.0.0.1:0")
    say(" ".join(iw_cmd))
    say("```")
    say()
    say("| ms | driftwatch-agent | inotifywait | difference |")
    say("|---|---:|---:|---:|")
    for name, a, i in rows:
        say(f"| {name} | {fmt_ms(a)} | {fmt_ms(i)} | {fmt_ms(a - i)} |")
    say(f"| mean | {fmt_ms(mean_a)} | {fmt_ms(mean_i)} | {fmt_ms(mean_a - mean_i)} |")
    say(f"| lost (of {N}) | {lost_a} | {lost_i} | |")
    say()
    p99d = pct(lat_a, 99) - pct(lat_i, 99)
    say(f"- **p99 difference: {fmt_ms(p99d)} ms** (target ≤ 5 ms) → "
        f"**{verdict(p99d <= 5e6 and lost_a == 0)}**; ratio p99 agent/inotifywait = "
        f"{pct(lat_a, 99) / pct(lat_i, 99):.1f}×, p50 ratio = {pct(lat_a, 50) / pct(lat_i, 50):.1f}×")
    say(f"- lost events: agent {lost_a}, inotifywait {lost_i} (target 0); agent events with an "
        f"unexpected transition: {wrong}; unrelated agent lines: {extra_a}, unrelated inotifywait lines: {extra_i}")
    say(f"- agent: startup to ready {agent.startup_s:.2f} s; {startup_events} events at startup; "
               f"inotify overflows: {overflows}; final drift_count {status.get('drift_count')} "
               f"(probe file + files left on variant B); agent CPU {ag_cpu / 1e9:.2f} s over "
               f"{wall:.1f} s of edits ({ag_cpu / 1e6 / (N + WARMUP):.2f} ms CPU per edit)")
    say(f"- machine during the run: load average {load0} → {load1}; all CPUs busy {busy:.0f}% "
        f"({os.cpu_count()} cores)")
    say()
    return {"p99_diff_ms": p99d / 1e6, "lost": lost_a}


# ---------------------------------------------------------------------------------------------
# 2. Storm


def bench_storm(work):
    say(f"## 2. Storm: {STORM_FILES:,} files changed at once")
    base = os.path.join(work, "storm")
    root = os.path.join(base, "root")
    per_dir = STORM_FILES // 100
    files = []
    for d in range(100):
        dd = os.path.join(root, "etc", "storm", f"d{d:02d}")
        os.makedirs(dd)
        for f in range(per_dir):
            p = os.path.join(dd, f"f{f:04d}.conf")
            with open(p, "wb") as fh:
                fh.write(b"key = aaaa\n")
            files.append(p)
    bl = os.path.join(base, "b.dwb")
    bl_s = build_baseline(root, bl)
    agent = Agent(bl, root, os.path.join(base, "state"), os.path.join(base, "agent.log"))
    want = {"/etc/storm/" + os.path.relpath(p, os.path.join(root, "etc", "storm")) for p in files}
    try:
        agent.wait_ready()
        startup_events = len(agent.events())
        time.sleep(0.5)
        load0, cpu0 = loadavg(), cpu_times()
        t0 = time.monotonic_ns()
        for p in files:
            write_inplace(p, b"key = bbbb\n")
        t_written = time.monotonic_ns()
        # Wait until every changed path is reported, or no progress for 30 s.
        seen = {}
        first_ts = None
        cur = startup_events
        last_progress = time.monotonic()
        done_ts = None
        while True:
            with agent.reader.cond:
                new = agent.reader.lines[cur:]
                cur += len(new)
                if not new:
                    agent.reader.cond.wait(0.2)
            for ts, text in new:
                try:
                    ev = json.loads(text)
                except ValueError:
                    continue
                path = event_path(ev)
                if first_ts is None:
                    first_ts = ts
                seen.setdefault(path, []).append((ts, ev.get("event")))
                last_progress = time.monotonic()
            covered = sum(1 for w in want if w in seen)
            if covered == len(want) and done_ts is None:
                done_ts = max(seen[w][0][0] for w in want)
                break
            if time.monotonic() - last_progress > 30:
                break
        time.sleep(1.0)  # collect stragglers (duplicates, extras)
        for ts, text in agent.reader.lines[cur:]:
            try:
                ev = json.loads(text)
            except ValueError:
                continue
            seen.setdefault(event_path(ev), []).append((ts, ev.get("event")))
        cpu1 = cpu_times()
        load1 = loadavg()
        status = agent.status()
        overflows = agent.metric("driftwatch_agent_inotify_overflows_total")
        rescans = agent.metric("driftwatch_agent_rescans_total")
        evals = agent.metric("driftwatch_agent_evaluations_total")
        mem = proc_mem(agent.p.pid)
        chk = run([DW, "check", "--baseline", bl, "--root", root, "--json"],
                  capture_output=True, text=True)
    finally:
        agent.stop()

    try:
        report = json.loads(chk.stdout)
        check_count = len(report.get("drift", [])) + len(report.get("packages", []))
    except ValueError:
        check_count = None
    reported = {p for p in seen if p in want}
    lost = len(want) - len(reported)
    extras = sorted(p for p in seen if p not in want)
    total_events = sum(len(v) for v in seen.values())
    dups = sum(len(seen[p]) - 1 for p in reported)
    not_drifted = sum(1 for p in reported if seen[p][0][1] != "drifted")
    busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1]) * 100
    say()
    say(f"Tree: {STORM_FILES:,} files in 100 directories under `{root}/etc/storm` (default rules); "
        f"baseline built in {bl_s:.2f} s. Then every file rewritten in place by a Python loop.")
    say()
    say("| figure | value |")
    say("|---|---:|")
    say(f"| writes issued in | {(t_written - t0) / 1e9:.3f} s |")
    if done_ts is not None:
        ttc = (done_ts - t0) / 1e9
        say(f"| **time to correct drift set** (first write → last needed event) | **{ttc:.3f} s** |")
        say(f"| … after the last write | {(done_ts - t_written) / 1e9:.3f} s |")
        say(f"| first event after first write | {(first_ts - t0) / 1e9:.3f} s |")
        say(f"| events/s (distinct paths / time to correct set) | {len(reported) / ttc:,.0f} |")
        if done_ts > first_ts:
            say(f"| events/s (first → last event) | {len(reported) / ((done_ts - first_ts) / 1e9):,.0f} |")
    else:
        say("| **time to correct drift set** | **never (30 s without progress)** |")
    say(f"| **lost** (changed − distinct paths reported) | **{lost}** |")
    say(f"| events total / duplicates / first event not `drifted` / paths outside the storm | "
        f"{total_events} / {dups} / {not_drifted} / {len(extras)} |")
    say(f"| agent /status drift_count | {status.get('drift_count')} |")
    say(f"| `check --json` drift items (exit {chk.returncode}) | {check_count} |")
    say(f"| inotify overflows / rescans (incl. startup) / evaluations | {overflows} / {rescans} / {evals} |")
    say(f"| agent RSS after the storm / peak | {mem.get('VmRSS', 0) / 1024:.1f} MiB / {mem.get('VmHWM', 0) / 1024:.1f} MiB |")
    say()
    ok = lost == 0 and status.get("drift_count") == STORM_FILES and check_count == STORM_FILES
    say(f"- verdict: zero lost and drift set = check = {STORM_FILES:,} → **{verdict(ok)}**")
    if extras:
        say(f"- paths reported outside the storm set: {extras[:5]}")
    say(f"- agent startup to ready {agent.startup_s:.2f} s ({startup_events} events at startup); "
        f"machine: load average {load0} → {load1}, all CPUs busy {busy:.0f}%")
    say()
    say("```")
    say(f"{DW} run --baseline {bl} --root {root} --state-dir {base}/state --listen 127.0.0.1:0")
    say(f"{DW} check --baseline {bl} --root {root} --json")
    say("```")
    say()
    return {"lost": lost, "ok": ok}


# ---------------------------------------------------------------------------------------------
# 3. Footprint


def measure_idle(agent):
    time.sleep(SETTLE_S)
    pid = agent.p.pid
    ev0 = len(agent.reader.lines)
    cpu0 = cpu_times()
    t0, k0, s0 = time.monotonic(), proc_ticks(pid), proc_sched_ns(pid)
    time.sleep(IDLE_SECONDS)
    t1, k1, s1 = time.monotonic(), proc_ticks(pid), proc_sched_ns(pid)
    cpu1 = cpu_times()
    wall = t1 - t0
    mem = proc_mem(pid)
    return {
        "wall": wall,
        "ticks_pct": (k1 - k0) / CLK_TCK / wall * 100,
        "ticks": k1 - k0,
        "sched_pct": sched_delta_ns(s0, s1) / 1e9 / wall * 100,
        "sched_ms": sched_delta_ns(s0, s1) / 1e6,
        "rss": mem.get("VmRSS", 0) / 1024,
        "hwm": mem.get("VmHWM", 0) / 1024,
        "threads": mem.get("Threads"),
        "events": len(agent.reader.lines) - ev0,
        "busy": (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1]) * 100,
        "load": loadavg(),
    }


def footprint_row(label, agent, st, m, rss_target):
    cov = st.get("coverage", {})
    lr = st.get("last_rescan") or {}
    cpu_ok = m["sched_pct"] < 0.1
    rss_ok = m["rss"] * 1024 * 1024 < rss_target * 1e6  # MiB measured, MB (10^6) target
    say(f"| {label} | {lr.get('entries', '?'):,} | {cov.get('watched_dirs', '?'):,} | "
        f"{agent.startup_s:.1f} s | {m['sched_pct']:.4f}% ({m['ticks_pct']:.3f}%) | "
        f"{m['rss']:.1f} MiB | {m['hwm']:.1f} MiB | {m['events']} | "
        f"CPU {verdict(cpu_ok)} ({m['sched_pct'] / 0.1 * 100:.0f}% of budget), "
        f"RSS {verdict(rss_ok)} ({m['rss'] * 1048576 / (rss_target * 1e6) * 100:.0f}% of {rss_target} MB) |")
    return cpu_ok and rss_ok


def bench_footprint(work):
    say(f"## 3. Footprint: idle CPU over {IDLE_SECONDS:g} s (after a {SETTLE_S:g} s settle) and RSS")
    say()
    rows, notes, cmds = [], [], []
    if HOST:
        base = os.path.join(work, "host")
        os.makedirs(base)
        bl = os.path.join(base, "host.dwb")
        bl_s = build_baseline("/", bl)
        cmds.append(f"{DW} baseline build --root / --out {bl}    # {bl_s:.1f} s")
        agent = Agent(bl, "/", os.path.join(base, "state"), os.path.join(base, "agent.log"))
        try:
            st = agent.wait_ready()
            st_events = len(agent.reader.lines)
            m = measure_idle(agent)
            st = agent.status()
        finally:
            agent.stop()
        cmds.append(f"{DW} run --baseline {bl} --root / --state-dir {base}/state --listen 127.0.0.1:0")
        rows.append(("(a) default rules, this host `/`", agent, st, m, 20))
        notes.append(f"(a): {st_events} events at startup, drift_count {st.get('drift_count')}, "
                     f"state `{st.get('state')}`, unwatched dirs {st.get('coverage', {}).get('unwatched_dirs')}, "
                     f"{m['threads']} threads, {m['ticks']} ticks; machine during the idle window: "
                     f"load {m['load']}, all CPUs busy {m['busy']:.0f}%")
    if SYNTH_N > 0:
        base = os.path.join(work, "synth")
        root = os.path.join(base, "root")
        t = time.monotonic()
        r = run(["bash", os.path.join(HERE, "gen-tree.sh"), os.path.join(root, "data"), str(SYNTH_N)],
                capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("gen-tree.sh failed: " + r.stderr)
        gen_s = time.monotonic() - t
        bl = os.path.join(base, "synth.dwb")
        rules = os.path.join(HERE, "rules-synth.toml")
        bl_s = build_baseline(root, bl, rules)
        cmds.append(f"bash {HERE}/gen-tree.sh {root}/data {SYNTH_N}    # {gen_s:.1f} s")
        cmds.append(f"{DW} baseline build --root {root} --config {rules} --out {bl}    # {bl_s:.1f} s, "
                    f"{os.path.getsize(bl) / 1e6:.1f} MB")
        agent = Agent(bl, root, os.path.join(base, "state"), os.path.join(base, "agent.log"))
        try:
            st = agent.wait_ready()
            st_events = len(agent.reader.lines)
            m = measure_idle(agent)
            st = agent.status()
        finally:
            agent.stop()
        cmds.append(f"{DW} run --baseline {bl} --root {root} --state-dir {base}/state --listen 127.0.0.1:0")
        rows.append((f"(b) {SYNTH_N:,}-entry synthetic tree", agent, st, m, 80))
        notes.append(f"(b): {st_events} events at startup, drift_count {st.get('drift_count')}, "
                     f"state `{st.get('state')}`, {m['threads']} threads, {m['ticks']} ticks; machine during "
                     f"the idle window: load {m['load']}, all CPUs busy {m['busy']:.0f}%")
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)
    say("| case | entries | watched dirs | startup → ready | idle CPU, % of a core: schedstat (ticks) | "
        "RSS | peak RSS (VmHWM) | events while idle | verdict |")
    say("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    ok = all([footprint_row(*r) for r in rows])
    say()
    for n in notes:
        say(f"- {n}")
    say("- targets: idle CPU < 0.1% of a core; RSS < 20 MB (a), < 80 MB (b). Verdicts use the "
        "schedstat CPU (ns) and the steady RSS after the idle window; VmHWM is the peak including "
        "the startup comparison.")
    say()
    say("```")
    for c in cmds:
        say(c)
    say("```")
    say()
    return ok


def main():
    sys.setswitchinterval(0.0005)  # reader threads get the GIL back quickly after os.read
    if os.geteuid() != 0:
        print("run as root (the host footprint reads all of /)", file=sys.stderr)
        return 1
    if not os.access(DW, os.X_OK):
        print(f"{DW} missing: cargo build --release -p driftwatch-agent (or set DW_BIN)", file=sys.stderr)
        return 1
    ensure_inotifywait()
    work = os.environ.get("WORK") or tempfile.mkdtemp(prefix="dw-bench-", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    version = subprocess.run([DW, "--version"], capture_output=True, text=True).stdout.strip()
    iwv = subprocess.run(["inotifywait", "--help"], capture_output=True, text=True).stdout.splitlines()[:1]
    kernel = os.uname().release
    t_start = time.monotonic()
    say("# driftwatch-agent daemon benchmark")
    say()
    lat = (f"LAT_KIB={LAT_KIB:g} " if LAT_KIB else "") + ("LAT_SECRETS=1 " if LAT_SECRETS else "")
    say(f"- command: `{lat}N={N} STORM_FILES={STORM_FILES} IDLE_SECONDS={IDLE_SECONDS:g} SYNTH_N={SYNTH_N} "
        f"python3 bench/daemon.py`")
    say(f"- binary: `{DW}` ({version}, built {time.strftime('%Y-%m-%d %H:%M', time.localtime(os.path.getmtime(DW)))}); "
        f"{iwv[0] if iwv else 'inotifywait'}; kernel {kernel}; {os.cpu_count()} cores; "
        f"fs.inotify.max_queued_events = {open('/proc/sys/fs/inotify/max_queued_events').read().strip()}")
    say(f"- load average at start: {loadavg()} (the machine is shared; see each section's figures)")
    say()
    results = {}
    try:
        results["latency"] = bench_latency(work)
        results["storm"] = bench_storm(work)
        results["footprint"] = bench_footprint(work)
    finally:
        for p in PROCS:
            try:
                stop_proc(p)
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        if os.environ.get("KEEP") != "1" and not os.environ.get("WORK"):
            shutil.rmtree(work, ignore_errors=True)
        say(f"_total {time.monotonic() - t_start:.0f} s; load average at end: {loadavg()}_")
        print("\n".join(OUT), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
