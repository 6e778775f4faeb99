#!/usr/bin/env python3
"""collector.py — benchmark of the fleet side: agent → collector → query, and the collector
under many agents. Each section runs driftwatch next to a peer in the same run and prints a
ratio.

  1. End-to-end detection latency — N edits (default 1000) of files under ROOT/etc/app, with a
     real agent streaming to a real collector over gRPC on loopback. For each edit the writer
     takes t0 = time.monotonic_ns(), rewrites the file in place, and waits for (a) the event
     on `driftwatch watch --json` — the fleet query API's server stream, which publishes an
     event once it is committed, i.e. visible to every query — and (b) the line of
     `inotifywait -m -r` on the same tree (the kernel's floor). One watch process for the whole
     run (never a CLI process per sample). Target: p99 < 50 ms.
  2. Ingest — `loadgen ingest`: AGENTS simulated agents (default 10,000), each on its own gRPC
     connection (all of them within AGENTS/5,000 s; a connection reset in that rush is tried
     again after a growing pause, as an agent does, and counted), hello then heartbeats every
     5 s; SENDERS of them (default 200) also send
     batches of BATCH events (default 50) as fast as they are acknowledged. Reports events/s
     acknowledged (= committed), connections held and the collector's peak RSS. Peer: the same
     rows inserted by Python's sqlite3 into tables with the collector's indexes, one transaction
     per batch (what a collector without group commit does), on the same disk, synchronous=FULL:
     batches of SENDERS hosts in turn, each its own sequence over its own 50 paths, as the
     senders send them. Also printed: the same peer with every row of one host (the peer before
     2026-12-04: every page it writes stays hot), and that with only the keys (the peer of the
     first measurements). Targets: >= 20,000
     events/s, >= 5,000 agents connected, >= 2x the peer, 10,000 agents under 500 MiB.
  3. Fleet queries — `loadgen populate` stores HOSTS hosts x ITEMS items (default 10,000 x 50)
     through the ingest API, waits for the collector to go idle (WAL checkpoint), then `loadgen
     query` times (after 5 untimed queries of each kind) `hosts --diverged`, `hosts --diverged
     --severity security`, `host X`, `paths --path '/etc/ssh/**'`, `paths` and `causes --hosts
     5` through the gRPC API. Peer: the nearest raw SQL on the same database file through
     Python's sqlite3 (the database alone, no server). Targets: p99 < 50 ms; `hosts --diverged`
     p99 < 20 ms; `paths` and `causes --hosts 5` (no filter) p99 < 50 ms.
  4. The access check (with 3): the same fleet queried anonymously and with a reader token
     (`driftwatch-collector token create`), alternating, two runs each.
  5. Enrollment rate — a collector with a fleet CA (`--enroll-ca-cert/--enroll-ca-key`, TLS)
     and one join token; `loadgen enroll` makes ENROLL keys and CSRs (untimed: each host makes
     its own), then enrolls them CONCURRENCY at a time, each on its own TLS connection, as
     agents do; certificates issued per second (signed, recorded, fsynced). Peer: the hand-made
     PKI's loop, `openssl x509 -req -CA … -copy_extensions copy` over the same CSRs, one
     process per certificate (ENROLL_PEER of them).
  6. PostgreSQL (issue 14) — on a throwaway PostgreSQL 15 with default durability: the ingest
     of 2 on SQLite, on PostgreSQL through one collector and through two replicas (loadgen's
     agents split between them); the queries of 3 on both backends; failover: a real agent
     with both replicas' URLs, the one it streams to killed -9 ROUNDS times (default 10, 31 s
     apart so that each starts from a stable connection), time until an edit made right after
     the kill is stored through the other.

Usage (as root, from the repository; builds the release binaries first):
    python3 bench/collector.py
Environment: N=1000 AGENTS=10000 SENDERS=200 BATCH=50 SECONDS=30 HOSTS=10000 ITEMS=50
    SAMPLES=200 SECTIONS=1,2,3 (add 4 for the access check's cost, run after 3; 5 for
    enrollment; 6 for PostgreSQL) ROUNDS=10 ENROLL=2000 CONCURRENCY=16 ENROLL_PEER=200
    KEEP=1 (keep the scratch directory) NO_BUILD=1 (use the
    release binaries as they are)
Smoke run: N=50 AGENTS=200 SENDERS=20 SECONDS=5 HOSTS=500 SAMPLES=20 python3 bench/collector.py
"""

import importlib.util
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
spec = importlib.util.spec_from_file_location("daemon_bench", os.path.join(HERE, "daemon.py"))
d = importlib.util.module_from_spec(spec)
spec.loader.exec_module(d)

REL = os.path.join(REPO, "target", "release")
AGENT = os.path.join(REL, "driftwatch-agent")
COLLECTOR = os.path.join(REL, "driftwatch-collector")
CLI = os.path.join(REL, "driftwatch")
LOADGEN = os.path.join(REL, "examples", "loadgen")

N = int(os.environ.get("N", "1000"))
AGENTS = int(os.environ.get("AGENTS", "10000"))
SENDERS = int(os.environ.get("SENDERS", "200"))
BATCH = int(os.environ.get("BATCH", "50"))
SECONDS = int(os.environ.get("SECONDS", "30"))
HOSTS = int(os.environ.get("HOSTS", "10000"))
ITEMS = int(os.environ.get("ITEMS", "50"))
SAMPLES = int(os.environ.get("SAMPLES", "200"))
SECTIONS = set(os.environ.get("SECTIONS", "1,2,3").split(","))
ENROLL = int(os.environ.get("ENROLL", "2000"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "16"))
ENROLL_PEER = int(os.environ.get("ENROLL_PEER", "200"))
say, log = d.say, d.log


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Collector:
    def __init__(self, work, name, extra=(), ca=None, database=None, port=None):
        """A collector on `work/name` (reopening the database a previous one left there);
        with `ca`, it serves TLS (`extra` names its certificate) and `ca` verifies it; with
        `database` (a postgres:// URL), on that database instead of SQLite; with `port`, on
        that port (a restarted replica)."""
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.port}"
        self.db = os.path.join(self.dir, "collector.db")
        self.log = open(os.path.join(self.dir, "collector.log"), "ab")
        cmd = [COLLECTOR, "serve", "--listen", f"127.0.0.1:{self.port}",
               "--database", database or f"sqlite://{self.db}", *extra]
        log("$ " + " ".join(cmd))
        env = dict(os.environ, RUST_LOG="warn")
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        d.PROCS.append(self.p)
        deadline = time.monotonic() + 30
        import ssl
        import urllib.request
        context = ssl.create_default_context(cafile=ca) if ca else None
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1, context=context).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("collector did not come up")

    def stop(self):
        d.stop_proc(self.p)


def loadgen(collector, *args, urls=None):
    """`loadgen` against `collector` (its memory reported), or against every URL of `urls`
    (replicas; the first collector's memory reported)."""
    cmd = [LOADGEN, "--collector", urls or collector.url, "--collector-pid",
           str(collector.p.pid), *args]
    r = d.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen failed:\n{r.stderr[-3000:]}")
    # Every failure line (an agent that failed says why), then the tail of the rest.
    failures = [l for l in r.stderr.splitlines() if "failed" in l]
    sys.stderr.write("".join(f"{l}\n" for l in failures[:50]) + r.stderr[-2000:])
    lines = r.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


# ---------------------------------------------------------------------------------------------


def bench_e2e(work):
    say("## 1. End-to-end latency: file write → committed, visible to fleet queries")
    base = os.path.join(work, "e2e")
    root = os.path.join(base, "root")
    app = os.path.join(root, "etc", "app")
    files = d.latency_files(app)
    bl = os.path.join(base, "b.dwb")
    d.DW = AGENT
    d.build_baseline(root, bl)
    identity = os.path.join(base, "identity.json")
    with open(identity, "w") as f:
        json.dump({"v1": {"instance_id": "i-bench", "local_hostname": "bench"}}, f)
    c = Collector(work, "c-e2e")
    agent = d.Agent(bl, root, os.path.join(base, "state"), os.path.join(base, "agent.log"),
                    extra=["--collector", c.url, "--identity-file", identity,
                           "--heartbeat", "1s"])
    agent.wait_ready()
    watch = subprocess.Popen([CLI, "--collector", c.url, "watch", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    d.PROCS.append(watch)
    w = d.LineReader(watch.stdout.fileno(), "watch")
    w.start()
    d.ensure_inotifywait()
    ino = subprocess.Popen(["inotifywait", "-m", "-r", "-q", "-e", "close_write",
                            "--format", "%w%f", os.path.join(root, "etc")],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    d.PROCS.append(ino)
    r = d.LineReader(ino.stdout.fileno(), "inotifywait")
    r.start()
    time.sleep(2.0)
    lat_dw, lat_ino, lost = [], [], 0
    state = [0] * len(files)
    for k in range(d.WARMUP + N):
        i = k % len(files)
        state[i] ^= 1
        nw, ni = len(w.lines), len(r.lines)
        t0 = time.monotonic_ns()
        d.write_inplace(files[i], d.content(i, state[i]))
        deadline = time.monotonic() + d.EDIT_TIMEOUT_S
        got_w = got_i = None
        while time.monotonic() < deadline and (got_w is None or got_i is None):
            with w.cond:
                for ts, text in w.lines[nw:]:
                    if f"f{i:02d}.conf" in text:
                        got_w = ts
                        break
                if got_w is None:
                    w.cond.wait(0.005)
            with r.cond:
                for ts, text in r.lines[ni:]:
                    if text.endswith(f"f{i:02d}.conf"):
                        got_i = ts
                        break
        if k < d.WARMUP:
            continue
        if got_w is None:
            lost += 1
        else:
            lat_dw.append(got_w - t0)
        if got_i is not None:
            lat_ino.append(got_i - t0)
        time.sleep(d.SPACING_MS / 1000)
    lat_dw.sort()
    lat_ino.sort()
    p50, p99 = d.pct(lat_dw, 50), d.pct(lat_dw, 99)
    i50, i99 = d.pct(lat_ino, 50), d.pct(lat_ino, 99)
    say(f"- edits: {N} (after {d.WARMUP} warm-up), lost: {lost}, load average {d.loadavg()}")
    say("")
    say("| | p50 ms | p99 ms |")
    say("|---|---|---|")
    say(f"| `inotifywait -m -r` (kernel floor) | {d.fmt_ms(i50)} | {d.fmt_ms(i99)} |")
    say(f"| driftwatch: agent → collector → committed → `watch` | {d.fmt_ms(p50)} | {d.fmt_ms(p99)} |")
    say("")
    say(f"- p99 ratio driftwatch / inotifywait: {p99 / max(i99, 1):.1f}x; "
        f"target p99 < 50 ms: {d.verdict(p99 < 50e6 and lost == 0)}")
    for p in (watch, ino):
        d.stop_proc(p)
    agent.stop()
    c.stop()


def naive_sqlite_ingest(path, seconds, batch, indexed, hosts, per_batch=False):
    """The peer: one transaction (and fsync) per batch. `hosts`: the batches come from that
    many hosts in turn, each its own sequence over its own 50 paths: with SENDERS hosts, the
    rows the load generator's senders send; with 1, every row is of one host, which keeps every
    page the peer writes hot (the peer of the measurements before 2026-12-04). `indexed`: with
    the collector's indexes too (a host's history, everyone's history by time, items by path
    and change); without: only the keys, as the peer of the first measurements had.
    `per_batch`: the history as the collector stores it since 2026-12-04 (schema 13), one row per
    batch holding its events (a JSON list), with the same keys and indexes per row."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, host TEXT, stream_id TEXT, seq INTEGER,"
               " transition TEXT, observed_at INTEGER, received_at INTEGER, subject TEXT,"
               " severity INTEGER, source TEXT, json TEXT, UNIQUE(host, stream_id, seq))")
    db.execute("CREATE TABLE items (host TEXT, subject TEXT, severity INTEGER, json TEXT,"
               " PRIMARY KEY (host, subject)) WITHOUT ROWID")
    if per_batch:
        db.execute("CREATE TABLE history (id INTEGER PRIMARY KEY, host TEXT, stream_id TEXT,"
                   " first_seq INTEGER, received_at INTEGER, source TEXT, events INTEGER,"
                   " chunk TEXT, UNIQUE(host, stream_id, first_seq))")
        db.execute("CREATE INDEX history_host_received ON history (host, received_at)")
        db.execute("CREATE INDEX history_received ON history (received_at)")
    if indexed:
        db.execute("CREATE INDEX events_host_received ON events (host, received_at)")
        db.execute("CREATE INDEX events_received ON events (received_at)")
        db.execute("CREATE INDEX items_subject ON items (subject, severity, host)")
    item = json.dumps({"path": "/etc/nginx/conf.d/file-001.conf", "kind": "modified",
                       "changed": ["size", "content"], "severity": "behavioral",
                       "reason": "configuration or binary changed",
                       "expected": {"sha256": "0" * 64}, "actual": {"sha256": "1" * 64},
                       "diff": "--- a\n+++ b\n@@ -1 +1 @@\n-workers = 4\n+workers = 1\n"})
    names = [f"host-{i:05d}" for i in range(hosts)]
    seqs = [0] * hosts
    turn, n, start = 0, 0, time.monotonic()
    while time.monotonic() - start < seconds:
        h = turn % hosts
        turn += 1
        host = names[h]
        db.execute("BEGIN")
        chunk = []
        for _ in range(batch):
            seqs[h] += 1
            seq = seqs[h]
            subject = f"/etc/app/file-{seq % 50:03d}.conf"
            if per_batch:
                chunk.append([seq, "changed", 0, subject, 1, item])
            else:
                db.execute("INSERT INTO events VALUES (NULL,?,?,?,?,?,?,?,?,?,?)",
                           (host, "s", seq, "changed", 0, 0, subject, 1, "stream", item))
            db.execute("INSERT OR REPLACE INTO items VALUES (?,?,?,?)",
                       (host, subject, 1, item))
        if per_batch:
            db.execute("INSERT INTO history VALUES (NULL,?,?,?,?,?,?,?)",
                       (host, "s", seqs[h] - batch + 1, 0, "stream", batch, json.dumps(chunk)))
        db.execute("COMMIT")
        n += batch
    return n / (time.monotonic() - start)


def bench_ingest(work):
    say("## 2. Ingest: simulated agents over real gRPC connections into SQLite")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    c = Collector(work, "c-ingest")
    res = loadgen(c, "ingest", "--agents", str(AGENTS), "--senders", str(SENDERS),
                  "--batch", str(BATCH), "--duration", f"{SECONDS}s")
    c.stop()
    peer_seconds = min(SECONDS, 15)
    peer = naive_sqlite_ingest(os.path.join(work, "naive-indexed.db"), peer_seconds, BATCH,
                               True, SENDERS)
    one_host = naive_sqlite_ingest(os.path.join(work, "naive-one-host.db"), peer_seconds, BATCH,
                                   True, 1)
    keys_only = naive_sqlite_ingest(os.path.join(work, "naive.db"), peer_seconds, BATCH,
                                    False, 1)
    per_batch = naive_sqlite_ingest(os.path.join(work, "naive-per-batch.db"), peer_seconds,
                                    BATCH, True, SENDERS, per_batch=True)
    eps = res["events_per_second"]
    say(f"- {res['agents']} agents connected ({res['connected']} held, "
        f"{res['failed_agents']} failed, {res.get('connect_retries', 0)} connect retries during the "
        f"ramp), {res['senders']} sending batches of {res['batch']}, "
        f"{res['seconds']:.0f} s steady state, load average {d.loadavg()}")
    say("")
    say("| | events/s |")
    say("|---|---|")
    say(f"| driftwatch collector (gRPC, group commit, synchronous=FULL) | {eps:,.0f} |")
    say(f"| peer: Python sqlite3, one transaction per batch, synchronous=FULL, the collector's "
        f"indexes, the senders' rows ({SENDERS} hosts in turn) | {peer:,.0f} |")
    say(f"| the same peer with every row of one host (the peer before 2026-12-04) | "
        f"{one_host:,.0f} |")
    say(f"| the one-host peer with only the keys (the first measurements' peer) | "
        f"{keys_only:,.0f} |")
    say(f"| the senders' peer storing the history as the collector does: one row per batch "
        f"(same keys and indexes per row) | {per_batch:,.0f} |")
    say("")
    rss = res["collector_peak_rss_mib"]
    say(f"- ratio driftwatch / peer: {eps / max(peer, 1):.2f}x (one-host peer: "
        f"{eps / max(one_host, 1):.2f}x, keys-only peer: {eps / max(keys_only, 1):.2f}x, "
        f"one-row-per-batch peer: {eps / max(per_batch, 1):.2f}x); "
        f"collector peak RSS {rss:.1f} MiB with {res['connected']} agents")
    say(f"- targets: >= 20,000 events/s {d.verdict(eps >= 20000)}; >= 5,000 agents "
        f"{d.verdict(res['connected'] >= 5000 and res['failed_agents'] == 0)}; ingest >= 2x the "
        f"peer {d.verdict(eps >= 2 * peer)}; 10,000 agents under 500 MiB peak RSS "
        f"{d.verdict(res['connected'] >= 10000 and res['failed_agents'] == 0 and rss < 500)}")


def raw_sql_times(db, samples):
    """The peer: the nearest raw SQL through Python's sqlite3 on the same file."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    queries = {
        "hosts_diverged": "SELECT host, COUNT(*), MIN(severity), MIN(observed_at) FROM items "
                          "GROUP BY host ORDER BY MIN(severity), COUNT(*) DESC",
        "hosts_diverged_security": "SELECT host, COUNT(*) FROM items WHERE severity = 0 "
                                   "GROUP BY host ORDER BY COUNT(*) DESC",
        "host": "SELECT item FROM items WHERE host = ? ORDER BY severity, subject",
        "paths_glob": "SELECT subject, COUNT(*), MIN(severity) FROM items "
                      "WHERE subject GLOB '/etc/ssh/*' GROUP BY subject ORDER BY COUNT(*) DESC",
        "paths": "SELECT subject, COUNT(*), MIN(severity), MIN(observed_at), MAX(observed_at) "
                 "FROM items GROUP BY subject ORDER BY COUNT(*) DESC",
        # Every change with its host count and its first five hosts, as `causes --hosts 5`.
        "causes": "SELECT cause, COUNT(*), MIN(severity), (SELECT group_concat(host) FROM "
                  "(SELECT host FROM items i WHERE i.subject = o.subject AND i.cause = o.cause "
                  "ORDER BY host LIMIT 5)) FROM items o GROUP BY subject, cause "
                  "ORDER BY COUNT(*) DESC",
    }
    out = {}
    for name, sql in queries.items():
        times = []
        for s in range(samples):
            t = time.monotonic_ns()
            args = (f"i-{(s * 7919) % HOSTS:017x}",) if "?" in sql else ()
            con.execute(sql, args).fetchall()
            times.append(time.monotonic_ns() - t)
        times.sort()
        out[name] = (d.pct(times, 50) / 1e6, d.pct(times, 99) / 1e6)
    return out


def dirty_kib():
    """Page cache not yet written back to disk, system-wide (Dirty + Writeback), KiB."""
    fields = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    return sum(int(fields[k].split()[0]) for k in ("Dirty", "Writeback"))


def settle(pid, db, limit_s=120):
    """Waits until the collector has been idle (< 2 % of a core, its database file no longer
    growing) for two seconds and the kernel has written the bulk load back (< 16 MiB dirty):
    after a bulk load the collector is still checkpointing the WAL into the database file and
    the kernel flushing it, which is not what a query on a stored fleet competes with. Returns
    the seconds waited."""
    t = time.monotonic()
    quiet = 0
    while time.monotonic() - t < limit_s and quiet < 2:
        before = (d.proc_ticks(pid), os.path.getsize(db))
        time.sleep(1)
        after = (d.proc_ticks(pid), os.path.getsize(db))
        idle = after[0] - before[0] <= 2 and after[1] == before[1] and dirty_kib() < 16 << 10
        quiet = quiet + 1 if idle else 0
    return time.monotonic() - t


def bench_queries(work):
    say(f"## 3. Fleet queries with {HOSTS:,} hosts x {ITEMS} drift items")
    c = Collector(work, "c-query")
    t = time.monotonic()
    loadgen(c, "populate", "--hosts", str(HOSTS), "--items", str(ITEMS))
    populate_s = time.monotonic() - t
    settled_s = settle(c.p.pid, c.db)
    res = loadgen(c, "query", "--samples", str(SAMPLES), "--hosts", str(HOSTS))
    rss = d.proc_mem(c.p.pid)
    peer = raw_sql_times(c.db, SAMPLES)
    c.stop()
    say(f"- populated through the ingest API in {populate_s:.0f} s, collector idle "
        f"{settled_s:.0f} s later; {SAMPLES} samples per query after 5 untimed; collector RSS "
        f"{rss['VmRSS'] / 1024:.0f} MiB; load average {d.loadavg()}")
    say("")
    say("| query | rows | driftwatch p50 ms | p99 ms | raw SQL p50 ms | p99 ms | p99 ratio |")
    say("|---|---|---|---|---|---|---|")
    labels = {
        "hosts_diverged": "`hosts --diverged`",
        "hosts_diverged_security": "`hosts --diverged --severity security`",
        "host": "`host X`",
        "paths_glob": "`paths --path '/etc/ssh/**'`",
        "paths": "`paths`",
        "causes": "`causes --hosts 5`",
    }
    worst = 0
    for name, label in labels.items():
        r = res[name]
        pp50, pp99 = peer[name]
        worst = max(worst, r["p99_ms"])
        say(f"| {label} | {r['rows']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {pp50:.1f} | "
            f"{pp99:.1f} | {r['p99_ms'] / max(pp99, 0.001):.2f}x |")
    say("")
    say(f"- target p99 < 50 ms for every query: {d.verdict(worst < 50)}")
    p99 = {name: res[name]["p99_ms"] for name in labels}
    say(f"- target `hosts --diverged` p99 < 20 ms: {p99['hosts_diverged']:.1f} ms "
        f"{d.verdict(p99['hosts_diverged'] < 20)}")
    say(f"- target `paths` and `causes --hosts 5` without a filter p99 < 50 ms (counts kept on "
        f"write): {p99['paths']:.1f} / {p99['causes']:.1f} ms "
        f"{d.verdict(max(p99['paths'], p99['causes']) < 50)}")
    if "4" in SECTIONS:
        bench_access(work)


def bench_access(work):
    """Section 4: the access check's cost on the query path. The same populated fleet, queried
    anonymously (the check finds no credential and lets the call through, as on loopback) and
    with a reader token (looked up by its SHA-256 in the database on every call), alternating."""
    say("")
    say("## 4. The access check on the query path: anonymous vs a reader token")
    c = Collector(work, "c-query")
    r = d.run([COLLECTOR, "token", "create", "--name", "bench", "--role", "reader",
               "--database", f"sqlite://{c.db}"], capture_output=True, text=True, check=True)
    token = r.stdout.strip()
    runs = {"anonymous": [], "token": []}
    for _ in range(2):
        for kind in runs:
            extra = ["--token", token] if kind == "token" else []
            runs[kind].append(loadgen(c, "query", "--samples", str(SAMPLES), "--hosts",
                                      str(HOSTS), *extra))
    c.stop()
    say(f"- {SAMPLES} samples per query and run, two runs each, alternating; load average "
        f"{d.loadavg()}")
    say("")
    say("| query | anonymous p50 / p99 ms | reader token p50 / p99 ms | p50 ratio |")
    say("|---|---|---|---|")
    labels = {"hosts_diverged": "`hosts --diverged`", "host": "`host X`",
              "paths_glob": "`paths --path '/etc/ssh/**'`"}
    for name, label in labels.items():
        def fmt(kind):
            return "; ".join(f"{r[name]['p50_ms']:.2f} / {r[name]['p99_ms']:.2f}"
                             for r in runs[kind])
        p50 = [sum(r[name]["p50_ms"] for r in runs[k]) / 2 for k in runs]
        say(f"| {label} | {fmt('anonymous')} | {fmt('token')} | {p50[1] / max(p50[0], 1e-9):.2f}x |")


def make_pki(dir):
    """A P-256 CA and a server certificate for 127.0.0.1, with openssl."""
    os.makedirs(dir, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    d.run(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
           "-subj", "/CN=bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd=dir, check=True,
          capture_output=True)
    d.run(["openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
           "-subj", "/CN=server"], cwd=dir, check=True, capture_output=True)
    with open(os.path.join(dir, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    d.run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"],
          cwd=dir, check=True, capture_output=True)


def bench_enroll(work):
    """Section 5: certificates issued per second by enrollment, vs openssl signing the same
    CSRs one process each (a hand-made PKI's loop)."""
    say("")
    say("## 5. Enrollment rate: certificates issued per second")
    pki = os.path.join(work, "pki")
    make_pki(pki)
    p = lambda f: os.path.join(pki, f)  # noqa: E731
    c = Collector(work, "c-enroll", ["--tls-cert", p("server.pem"), "--tls-key", p("server.key"),
                                     "--enroll-ca-cert", p("ca.pem"), "--enroll-ca-key",
                                     p("ca.key")], ca=p("ca.pem"))
    admin = d.run([COLLECTOR, "token", "create", "--name", "bench", "--role", "admin",
                   "--database", f"sqlite://{c.db}"], capture_output=True, text=True,
                  check=True).stdout.strip()
    join = d.run([CLI, "--collector", c.url, "--ca", p("ca.pem"), "--token", admin, "enroll",
                  "token", "create", "--uses", str(ENROLL), "--ttl", "1h"],
                 capture_output=True, text=True, check=True).stdout.strip()
    csrs = os.path.join(work, "csrs")
    os.makedirs(csrs, exist_ok=True)
    r = loadgen(c, "enroll", "--hosts", str(ENROLL), "--concurrency", str(CONCURRENCY),
                "--token", join, "--ca", p("ca.pem"), "--csr-dir", csrs)
    c.stop()
    with open(os.path.join(work, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    started = time.monotonic()
    for i in range(ENROLL_PEER):
        d.run(["openssl", "x509", "-req", "-in", os.path.join(csrs, f"csr-{i}.pem"), "-CA",
               p("ca.pem"), "-CAkey", p("ca.key"), "-set_serial", str(1000 + i), "-days", "30",
               "-copy_extensions", "copy", "-extfile", os.path.join(work, "client.ext"),
               "-out", os.path.join(csrs, f"cert-{i}.pem")], check=True, capture_output=True)
    peer = ENROLL_PEER / (time.monotonic() - started)
    say(f"- driftwatch: {r['issued']} enrollments, {CONCURRENCY} at a time, each on its own TLS "
        f"connection: {r['per_second']:.0f} certificates/s ({r['seconds']:.2f} s); load average "
        f"{d.loadavg()}")
    say(f"- peer (openssl x509 -req, one process per certificate, {ENROLL_PEER}): "
        f"{peer:.0f} certificates/s")
    say(f"- ratio driftwatch / peer: {r['per_second'] / max(peer, 1e-9):.1f}x")


class Postgres:
    """A throwaway PostgreSQL 15 (Debian's, as `tests/setup.sh` installs it), started as the
    tests start theirs (initdb and pg_ctl as the postgres user, a private port and socket
    directory), with the server's default durability: fsync on, synchronous_commit on (every
    acknowledged batch flushed, as SQLite's synchronous=FULL)."""

    BIN = "/usr/lib/postgresql/15/bin"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dwpg-bench-", dir="/tmp")
        self.port = free_port()
        os.makedirs(os.path.join(self.dir, "s"))
        d.run(["chown", "-R", "postgres", self.dir], check=True)
        self.as_postgres([f"{self.BIN}/initdb", "-D", f"{self.dir}/data", "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        self.as_postgres([f"{self.BIN}/pg_ctl", "-D", f"{self.dir}/data", "-l",
                          f"{self.dir}/server.log", "-w", "-o",
                          f"-p {self.port} -k {self.dir}/s -c listen_addresses=127.0.0.1 "
                          "-c max_connections=300", "start"])
        self.url = f"postgres://postgres@127.0.0.1:{self.port}"

    def as_postgres(self, cmd):
        r = d.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True,
                  cwd="/tmp")
        if r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed:\n{r.stdout}{r.stderr}")

    def database(self, name):
        d.run(["psql", "-X", "-q", "-d", f"{self.url}/postgres", "-c",
               f"CREATE DATABASE {name}"], check=True)
        return f"{self.url}/{name}"

    def stop(self):
        self.as_postgres([f"{self.BIN}/pg_ctl", "-D", f"{self.dir}/data", "-m", "fast", "-w",
                          "stop"])
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


PEER_ITEM = json.dumps({"path": "/etc/nginx/conf.d/file-001.conf", "kind": "modified",
                        "changed": ["size", "content"], "severity": "behavioral",
                        "reason": "configuration or binary changed",
                        "expected": {"sha256": "0" * 64}, "actual": {"sha256": "1" * 64},
                        "diff": "--- a\n+++ b\n@@ -1 +1 @@\n-workers = 4\n+workers = 1\n"})


def naive_postgres_ingest(url, sessions, batches, batch, hosts, per_batch=False):
    """The PostgreSQL peer: `sessions` psql connections at once (as many as the collector's
    writers), each sending `batches` transactions of `batch` events, the hosts in turn (each
    session its own `hosts`, each host its own sequence over 50 paths). A transaction per
    batch, committed with the server's default durability (synchronous_commit on): a COPY of
    the batch's events into `events` (a row per event, the collector's keys and indexes before
    its schema 4) and one multi-row upsert of the items (the collector's key and path index).
    `per_batch`: the history as the collector stores it since its schema 4, one row per batch
    holding its events (a JSON list). psql reads its script from a file: no driver in between.
    Returns events/s over the sessions' wall time."""
    schema = """
CREATE TABLE events (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, host TEXT COLLATE "C",
    stream_id TEXT, seq BIGINT, transition TEXT, observed_at BIGINT, received_at BIGINT,
    subject TEXT COLLATE "C", severity BIGINT, source TEXT, json TEXT,
    UNIQUE (host, stream_id, seq));
CREATE INDEX events_host_received ON events (host, received_at);
CREATE INDEX events_received ON events (received_at);
CREATE TABLE history (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host TEXT COLLATE "C", stream_id TEXT, first_seq BIGINT, received_at BIGINT, source TEXT,
    events BIGINT, chunk TEXT, UNIQUE (host, stream_id, first_seq));
CREATE INDEX history_host_received ON history (host, received_at);
CREATE INDEX history_received ON history (received_at);
CREATE TABLE items (host TEXT COLLATE "C", subject TEXT COLLATE "C", severity BIGINT,
    json TEXT, PRIMARY KEY (host, subject));
CREATE INDEX items_subject ON items (subject, severity, host);
"""
    d.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", schema], check=True)
    item = PEER_ITEM.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    quoted = PEER_ITEM.replace("'", "''")
    scripts = []
    for k in range(sessions):
        names = [f"peer-{k}-{i:05d}" for i in range(hosts)]
        seqs = [0] * hosts
        lines = []
        for b in range(batches):
            h = b % hosts
            host = names[h]
            lines.append("BEGIN;")
            rows, chunk, subjects = [], [], []
            for _ in range(batch):
                seqs[h] += 1
                seq = seqs[h]
                subject = f"/etc/app/file-{seq % 50:03d}.conf"
                if subject not in subjects:
                    subjects.append(subject)
                if per_batch:
                    chunk.append([seq, "changed", 0, subject, 1, PEER_ITEM])
                else:
                    rows.append(f"{host}\ts\t{seq}\tchanged\t0\t0\t{subject}\t1\tstream\t{item}")
            if per_batch:
                lines.append("INSERT INTO history (host, stream_id, first_seq, received_at, "
                             f"source, events, chunk) VALUES ('{host}', 's', "
                             f"{seqs[h] - batch + 1}, 0, 'stream', {batch}, "
                             f"'{json.dumps(chunk).replace(chr(39), chr(39) * 2)}');")
            else:
                lines.append("COPY events (host, stream_id, seq, transition, observed_at, "
                             "received_at, subject, severity, source, json) FROM STDIN;")
                lines.extend(rows)
                lines.append("\\.")
            values = ", ".join(f"('{host}', '{s}', 1, '{quoted}')" for s in subjects)
            lines.append(f"INSERT INTO items VALUES {values} ON CONFLICT (host, subject) DO "
                         "UPDATE SET severity = excluded.severity, json = excluded.json;")
            lines.append("COMMIT;")
        path = os.path.join(tempfile.gettempdir(), f"dw-pg-peer-{os.getpid()}-{k}.sql")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        scripts.append(path)
    start = time.monotonic()
    procs = [subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f",
                               path], stdout=subprocess.DEVNULL) for path in scripts]
    failed = [p.wait() for p in procs]
    elapsed = time.monotonic() - start
    for path in scripts:
        os.remove(path)
    if any(failed):
        raise RuntimeError("the PostgreSQL peer failed")
    return sessions * batches * batch / elapsed


# The collector's PostgreSQL writers (collector/src/store/postgres.rs WRITERS).
PG_WRITERS = 4


def ingest_args():
    return ("ingest", "--agents", str(AGENTS), "--senders", str(SENDERS), "--batch",
            str(BATCH), "--duration", f"{SECONDS}s")


def bench_postgres(work):
    say("## 6. PostgreSQL: ingest with one and two replicas, fleet queries, failover")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pg = Postgres()
    try:
        # Ingest: the same load on SQLite, PostgreSQL through one collector, and through two
        # replicas (agents split between them).
        c = Collector(work, "c6-sqlite")
        sqlite = loadgen(c, *ingest_args())
        c.stop()
        c = Collector(work, "c6-pg1", database=pg.database("ingest1"))
        one = loadgen(c, *ingest_args())
        c.stop()
        db = pg.database("ingest2")
        a = Collector(work, "c6-pg2a", database=db)
        b = Collector(work, "c6-pg2b", database=db)
        two = loadgen(a, *ingest_args(), urls=f"{a.url},{b.url}")
        a.stop()
        b.stop()
        say(f"- {AGENTS} agents, {SENDERS} sending batches of {BATCH}, {SECONDS} s steady "
            f"state each; load average {d.loadavg()}")
        say("")
        say("| | events/s | agents held | failed | collector peak RSS MiB |")
        say("|---|---|---|---|---|")
        for label, r in (("SQLite, one collector", sqlite),
                         ("PostgreSQL, one collector", one),
                         ("PostgreSQL, two replicas (RSS: one of them)", two)):
            say(f"| {label} | {r['events_per_second']:,.0f} | {r['connected']} | "
                f"{r['failed_agents']} | {r['collector_peak_rss_mib']:.0f} |")
        say("")
        ratio = two["events_per_second"] / max(sqlite["events_per_second"], 1)
        say(f"- two replicas on PostgreSQL / one collector on SQLite: {ratio:.2f}x; target "
            f">= 1x: {d.verdict(ratio >= 1)}")

        # The bare peer (issue 17): psql sessions storing the same rows, as many at once as
        # the collector's writers, sized to run about as long as the ingest runs.
        batches = max(200, int(one["events_per_second"] * min(SECONDS, 15) / BATCH / PG_WRITERS))
        peer = naive_postgres_ingest(pg.database("peer"), PG_WRITERS, batches, BATCH, SENDERS)
        per_batch = naive_postgres_ingest(pg.database("peer_batch"), PG_WRITERS, batches, BATCH,
                                          SENDERS, per_batch=True)
        say("")
        say("| PostgreSQL ingest against a bare peer | events/s |")
        say("|---|---|")
        say(f"| driftwatch collector on PostgreSQL (the run above) | "
            f"{one['events_per_second']:,.0f} |")
        say(f"| peer: {PG_WRITERS} psql sessions, a transaction per batch, COPY of its events "
            f"(a row each, the collector's keys and indexes before schema 4) and one multi-row "
            f"upsert of its items, {SENDERS} hosts per session in turn | {peer:,.0f} |")
        say(f"| the same peer storing the history one row per batch (the collector's layout "
            f"since schema 4) | {per_batch:,.0f} |")
        say("")
        ratio = one["events_per_second"] / max(peer, 1)
        say(f"- collector / peer: {ratio:.2f}x; target >= 2x: {d.verdict(ratio >= 2)}")
        say(f"- collector / one-row-per-batch peer: "
            f"{one['events_per_second'] / max(per_batch, 1):.2f}x")

        # Fleet queries: the same fleet on each backend.
        results = {}
        for backend in ("sqlite", "postgres"):
            database = pg.database("queries") if backend == "postgres" else None
            c = Collector(work, f"c6-q-{backend}", database=database)
            loadgen(c, "populate", "--hosts", str(HOSTS), "--items", str(ITEMS))
            if backend == "sqlite":
                settle(c.p.pid, c.db)
            else:
                # Settled as autovacuum leaves a fleet's database between bursts: vacuumed
                # (index-only scans need the visibility map) and analyzed. Left to autovacuum's
                # timing, the glob query's plan depended on whether it had run (p50 16 or 120 ms).
                d.run(["psql", "-X", "-q", "-d", database, "-c", "VACUUM ANALYZE"], check=True)
            results[backend] = loadgen(c, "query", "--samples", str(SAMPLES), "--hosts",
                                       str(HOSTS))
            c.stop()
        say("")
        say(f"Fleet queries, {HOSTS:,} hosts x {ITEMS} items, {SAMPLES} samples each:")
        say("")
        say("| query | SQLite p50 ms | p99 ms | PostgreSQL p50 ms | p99 ms | p99 ratio PG / SQLite |")
        say("|---|---|---|---|---|---|")
        for name in ("hosts_diverged", "hosts_diverged_security", "host", "paths_glob"):
            s, p = results["sqlite"][name], results["postgres"][name]
            say(f"| `{name}` | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {p['p50_ms']:.1f} | "
                f"{p['p99_ms']:.1f} | {p['p99_ms'] / max(s['p99_ms'], 0.001):.2f}x |")

        bench_failover(work, pg)
    finally:
        pg.stop()


STABLE_AFTER_S = 30


def bench_failover(work, pg):
    """Kills (-9) the replica a real agent streams to, edits a file at once, and times until
    that edit is stored through the other replica (read back with `driftwatch host`);
    restarts the killed one on its port, and goes the other way. ROUNDS times."""
    rounds = int(os.environ.get("ROUNDS", "10"))
    base = os.path.join(work, "failover")
    root = os.path.join(base, "root")
    app = os.path.join(root, "etc", "app")
    os.makedirs(app)
    for i in range(3):
        with open(os.path.join(app, f"seed{i}.conf"), "w") as f:
            f.write("seed\n")
    bl = os.path.join(base, "b.dwb")
    d.DW = AGENT
    d.build_baseline(root, bl)
    identity = os.path.join(base, "identity.json")
    with open(identity, "w") as f:
        json.dump({"v1": {"instance_id": "i-failover", "local_hostname": "failover"}}, f)
    db = pg.database("failover")
    reps = [Collector(work, "c6-fa", database=db), Collector(work, "c6-fb", database=db)]
    agent = d.Agent(bl, root, os.path.join(base, "state"), os.path.join(base, "agent.log"),
                    extra=["--collector", f"{reps[0].url},{reps[1].url}", "--identity-file",
                           identity, "--heartbeat", "1s"])
    agent.wait_ready()

    def stored(c, path):
        r = subprocess.run([CLI, "--collector", c.url, "host", "i-failover", "--json"],
                           capture_output=True, text=True)
        return r.returncode == 0 and path in r.stdout

    # Settle on the first replica.
    deadline = time.monotonic() + 60
    while not stored(reps[1], "\"/etc/app\"") and time.monotonic() < deadline:
        with open(os.path.join(app, "warm.conf"), "w") as f:
            f.write("warm\n")
        time.sleep(0.2)
    times = []
    on = 0
    for k in range(rounds):
        name = f"after-kill-{k}.conf"
        victim, survivor = reps[on], reps[1 - on]
        os.kill(victim.p.pid, 9)
        victim.p.wait()
        t0 = time.monotonic()
        with open(os.path.join(app, name), "w") as f:
            f.write(f"round = {k}\n")
        while not stored(survivor, name):
            if time.monotonic() - t0 > 60:
                raise RuntimeError(f"round {k}: the edit never reached the survivor")
            time.sleep(0.01)
        times.append(time.monotonic() - t0)
        # The killed replica comes back on its port; the agent stays where it is.
        reps[on] = Collector(work, "c6-fa" if on == 0 else "c6-fb", database=db,
                             port=victim.port)
        on = 1 - on
        # The agent resets its reconnection backoff once a connection has stayed up for 30 s
        # (agent/src/ship/mod.rs STABLE_AFTER): rounds closer than that measure the backoff
        # doubling (rounds 2 s apart: 0.2, 0.5, 1, 1.8, 3, 7, 12, 25 s), not a failover.
        time.sleep(STABLE_AFTER_S + 1)
    agent.stop()
    for c in reps:
        c.stop()
    times.sort()
    say("")
    say(f"Failover, {rounds} rounds (kill -9 the replica the agent streams to, edit at once, "
        f"until `driftwatch host` on the other shows the edit; polled every 10 ms):")
    say("")
    say(f"- median {times[len(times) // 2] * 1000:.0f} ms, worst {times[-1] * 1000:.0f} ms "
        f"(the agent's first reconnection waits its backoff, 200 ms ±20 %)")


def main():
    if os.environ.get("NO_BUILD") != "1":
        d.run(["cargo", "build", "--release", "-p", "driftwatch-agent", "-p",
               "driftwatch-collector", "-p", "driftwatch-cli", "--bins", "--example", "loadgen"],
              check=True, cwd=REPO)
    work = tempfile.mkdtemp(prefix="dw-collector-bench-")
    say(f"# collector benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores")
    try:
        if "1" in SECTIONS:
            bench_e2e(work)
        if "2" in SECTIONS:
            bench_ingest(work)
        if "3" in SECTIONS:
            bench_queries(work)
        if "5" in SECTIONS:
            bench_enroll(work)
        if "6" in SECTIONS:
            bench_postgres(work)
    finally:
        for p in d.PROCS:
            d.stop_proc(p)
        if os.environ.get("KEEP") != "1":
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        print("\n".join(d.OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
