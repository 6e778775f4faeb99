#!/usr/bin/env python3
"""bigfile.py — detection latency of ordinary edits while huge files are being hashed (issue 13).

ROUNDS times (default 5): a new 10 GiB sparse file (`truncate`, BIG_GIB) is created in the
watched ROOT/usr/bin; one second later the benchmark starts editing files under ROOT/etc/app
(50 files, default rules) for WINDOW_S seconds (default 4), one at a time, exactly as
`bench/daemon.py`'s latency section does: t0 = time.monotonic_ns() before an in-place
same-length rewrite, latency = arrival of the edit's event line on the agent's stdout - t0,
next edit SPACING_MS after the line arrived. An edit whose event has not arrived after
EDIT_TIMEOUT_S (120 s) is lost. The huge file is removed at the end of its round.

Hashing runs unthrottled by default (`--hash-rate 0`, HASH_RATE): the hash competes with the
event path for the CPU, the worst case for the edits. BIG_GIB=0 makes empty files instead: the
same edits with nothing to hash, for reference. Run it against two builds (DW_BIN) to compare, e.g. the main
branch's and this one's:

    DW_BIN=/tmp/dw-agent-before python3 bench/bigfile.py
    DW_BIN=target/release/driftwatch-agent python3 bench/bigfile.py

Environment (all optional): ROUNDS=5, BIG_GIB=10, WINDOW_S=4, SPACING_MS=5, HASH_RATE=0, DW_BIN (default
target/release/driftwatch-agent), WORK=DIR, KEEP=1. Python 3 stdlib only; needs no root.
"""

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon as d  # noqa: E402  (the agent wrapper, line reader, percentiles)

ROUNDS = int(os.environ.get("ROUNDS", "5"))
BIG_GIB = int(os.environ.get("BIG_GIB", "10"))
WINDOW_S = float(os.environ.get("WINDOW_S", "4"))
SPACING_MS = float(os.environ.get("SPACING_MS", "5"))
HASH_RATE = os.environ.get("HASH_RATE", "0")
EDIT_TIMEOUT_S = 120.0


def wait_event(agent, cursor, path, timeout):
    """Arrival time of the next event line for `path` after `cursor` (None on timeout)."""
    deadline = time.monotonic() + timeout
    with agent.reader.cond:
        while True:
            while cursor[0] < len(agent.reader.lines):
                ts, text = agent.reader.lines[cursor[0]]
                cursor[0] += 1
                try:
                    if d.event_path(json.loads(text)) == path:
                        return ts
                except ValueError:
                    pass
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            agent.reader.cond.wait(min(left, 0.05))


def main():
    work = os.environ.get("WORK") or tempfile.mkdtemp(prefix="dw-bigfile-", dir="/tmp")
    root = os.path.join(work, "root")
    files = d.latency_files(os.path.join(root, "etc", "app"))
    os.makedirs(os.path.join(root, "usr", "bin"))
    bl = os.path.join(work, "b.dwb")
    d.build_baseline(root, bl)
    agent = d.Agent(bl, root, os.path.join(work, "state"), os.path.join(work, "agent.log"),
                    extra=["--hash-rate", HASH_RATE])
    version = d.subprocess.run([d.DW, "--version"], capture_output=True, text=True).stdout.strip()
    lat, lost, big_first = [], 0, []
    load0 = d.loadavg()
    try:
        agent.wait_ready()
        cursor = [len(agent.reader.lines)]
        state = [0] * d.LAT_FILES
        k = 0
        for r in range(ROUNDS):
            big = os.path.join(root, "usr", "bin", f"huge{r}")
            t_big = time.monotonic_ns()
            with open(big, "wb") as f:
                f.truncate(BIG_GIB << 30)
            time.sleep(1)
            end = time.monotonic() + WINDOW_S
            while time.monotonic() < end:
                i = k % d.LAT_FILES
                k += 1
                state[i] ^= 1
                t0 = time.monotonic_ns()
                d.write_inplace(files[i], d.content(i, state[i]))
                got = wait_event(agent, cursor, "/etc/app/" + os.path.basename(files[i]),
                                 EDIT_TIMEOUT_S)
                if got is None:
                    lost += 1
                else:
                    lat.append(got - t0)
                time.sleep(SPACING_MS / 1000)
            # When the huge file's first event came (its own detection latency).
            seen = [ts for ts, ev in agent.events() if d.event_path(ev) == f"/usr/bin/huge{r}"]
            big_first.append((seen[0] - t_big) if seen else float("nan"))
            os.unlink(big)
        status = agent.status()
    finally:
        agent.stop()
        if os.environ.get("KEEP") != "1" and not os.environ.get("WORK"):
            shutil.rmtree(work, ignore_errors=True)
    lat.sort()
    print(f"# edits while {BIG_GIB} GiB sparse files are hashed ({version}, {d.DW})")
    print(f"ROUNDS={ROUNDS} WINDOW_S={WINDOW_S:g} HASH_RATE={HASH_RATE} edits={len(lat)} lost={lost}; "
          f"load average {load0} -> {d.loadavg()}; hashes_pending at end: "
          f"{status.get('hashes_pending', 'n/a')}")
    print("| ms | p50 | p90 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    print("| edit → event | " + " | ".join(d.fmt_ms(d.pct(lat, p)) for p in (50, 90, 99))
          + f" | {d.fmt_ms(lat[-1]) if lat else 'nan'} |")
    print("huge file created → its first event, ms: "
          + ", ".join(d.fmt_ms(x) for x in big_first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
