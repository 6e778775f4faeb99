#!/usr/bin/env python3
"""iac.py — benchmark of IaC correlation (issue 5). Each section prints driftwatch next to a
peer measured in the same run, and the ratio.

  1. Import — a raw v4 Terraform state with RESOURCES aws_instance resources (default
     50,000; each with the ~40 attributes the AWS provider writes, secrets included) is
     imported with `driftwatch iac import` into a running collector. Reports the wall time of
     the import (parse on the CLI side, send, one transaction on the collector side), the CLI's
     peak RSS, and the collector's RSS before and after. Peer: Python's json.load of the same
     file in a process of its own (parsing alone, nothing kept or stored).
  2. Correlation queries — `loadgen populate` stores HOSTS hosts (default 10,000; 5 drift items
     each) whose instance ids are in the state, then SAMPLES requests each of
     `/api/v1/iac/status` (every host correlated, flags, ghosts, coverage) and `/api/v1/hosts`
     (the listing, now with `iac` and `flags`) through the collector's JSON API. Peer: the
     nearest raw SQL on the same database file through Python's sqlite3 (hosts LEFT JOIN
     resources on the instance id; the database alone, no server, no flags).

Usage (as root, from the repository; builds the release binaries first):
    python3 bench/iac.py
Environment: RESOURCES=50000 HOSTS=10000 SAMPLES=50 NO_BUILD=1 KEEP=1
Smoke run: RESOURCES=2000 HOSTS=500 SAMPLES=5 python3 bench/iac.py
"""

import importlib.util
import json
import os
import sqlite3
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


c = load("collector_bench", "collector.py")
d = c.d
say, log = d.say, d.log

RESOURCES = int(os.environ.get("RESOURCES", "50000"))
HOSTS = int(os.environ.get("HOSTS", "10000"))
SAMPLES = int(os.environ.get("SAMPLES", "50"))


def instance(i):
    iid = f"i-{i:017x}"
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {
        "module": f"module.svc{i % 50}", "mode": "managed", "type": "aws_instance",
        "name": "node", "each": "map",
        "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
        "instances": [{
            "index_key": f"n{i}", "schema_version": 1,
            "attributes": {
                "ami": "ami-0bench", "arn": f"arn:aws:ec2:eu-west-1:123456789012:instance/{iid}",
                "associate_public_ip_address": False, "availability_zone": "eu-west-1a",
                "credit_specification": [{"cpu_credits": "standard"}], "ebs_block_device": [],
                "get_password_data": False, "iam_instance_profile": "", "id": iid,
                "instance_state": "running", "instance_type": "t3.micro", "key_name": "ops",
                "launch_template": [], "metadata_options": [{"http_endpoint": "enabled",
                "http_tokens": "required", "instance_metadata_tags": "enabled"}],
                "password_data": "SECRET-password", "private_dns":
                f"ip-{ip.replace('.', '-')}.eu-west-1.compute.internal", "private_ip": ip,
                "public_dns": "", "public_ip": "", "root_block_device": [{
                "delete_on_termination": True, "device_name": "/dev/sda1", "encrypted": True,
                "volume_size": 8, "volume_type": "gp3"}], "subnet_id": "subnet-0123456789abcdef0",
                "tags": {"Name": f"node-{i}", "Service": f"svc{i % 50}"},
                "tags_all": {"Name": f"node-{i}", "Service": f"svc{i % 50}", "Env": "prod"},
                "user_data": "7ab9e1ebee7aa7f6ab88b6001c017d19c3e27d14",
                "user_data_base64": None, "user_data_replace_on_change": False,
                "vpc_security_group_ids": ["sg-0123456789abcdef0"],
            },
            "sensitive_attributes": [], "private": "eyJzY2hlbWFfdmVyc2lvbiI6IjEifQ==",
            "dependencies": [],
        }],
    }


def write_state(path):
    with open(path, "w") as f:
        f.write('{"version": 4, "terraform_version": "1.9.5", "serial": 1, '
                '"lineage": "bench-lineage", "outputs": {}, "resources": [\n')
        for i in range(RESOURCES):
            if i:
                f.write(",\n")
            json.dump(instance(i), f)
        f.write("\n]}\n")
    return os.path.getsize(path)


def timed_child(cmd):
    """Runs cmd; returns (seconds, peak RSS KiB of that child alone)."""
    import subprocess
    log("$ " + " ".join(cmd))
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.monotonic() - t
    out, err = p.stdout.read().decode(), p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{err[-3000:]}")
    log(out.strip())
    return secs, usage.ru_maxrss


def bench_import(work, col, state):
    say(f"## 1. Import of a state with {RESOURCES:,} resources")
    size = write_state(state)
    before = d.proc_mem(col.p.pid)
    secs, cli_peak = timed_child([c.CLI, "--collector", col.url, "iac", "import",
                                  "--terraform-state", state, "--name", "bench"])
    after = d.proc_mem(col.p.pid)
    # The peer in a process of its own too (start-up included on both sides).
    peer, peer_peak = timed_child([sys.executable, "-c",
                                   "import json, sys; json.load(open(sys.argv[1]))", state])
    say(f"- state file {size / 2**20:.0f} MiB; load average {d.loadavg()}")
    say("")
    say("| figure | driftwatch | peer: Python json.load | ratio |")
    say("|---|---:|---:|---:|")
    say(f"| time | {secs:.2f} s | {peer:.2f} s | {secs / peer:.2f}x |")
    say(f"| peak RSS (the CLI: parse, convert, send) | {cli_peak / 1024:.0f} MiB | "
        f"{peer_peak / 1024:.0f} MiB | {cli_peak / peer_peak:.2f}x |")
    say(f"| collector RSS before → after (peak) | {before['VmRSS'] / 1024:.0f} → "
        f"{after['VmRSS'] / 1024:.0f} MiB ({after['VmHWM'] / 1024:.0f} MiB) | | |")
    say("")


def get_ms(url):
    t = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    return (time.monotonic() - t) * 1000, body


def raw_sql_ms(db):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    t = time.monotonic()
    rows = conn.execute(
        "SELECT h.host, h.image_id, r.address, r.image_id FROM hosts h "
        "LEFT JOIN iac_resources r ON r.key = h.instance_id").fetchall()
    ms = (time.monotonic() - t) * 1000
    conn.close()
    return ms, len(rows)


def bench_queries(col):
    say(f"## 2. Correlation queries with {HOSTS:,} hosts and {RESOURCES:,} resources in state")
    t = time.monotonic()
    c.loadgen(col, "populate", "--hosts", str(HOSTS), "--items", "5")
    say(f"- {HOSTS:,} hosts populated in {time.monotonic() - t:.0f} s through the ingest API")
    results = {}
    for name, path in [("iac status", "/api/v1/iac/status"), ("hosts", "/api/v1/hosts")]:
        times = []
        for _ in range(SAMPLES):
            ms, body = get_ms(col.url + path)
            times.append(ms)
        times.sort()
        results[name] = (times, body)
    peer = sorted(raw_sql_ms(col.db)[0] for _ in range(SAMPLES))
    status = json.loads(results["iac status"][1])
    say(f"- coverage: {status['coverage']}; ghosts {len(status['ghosts']):,}; "
        f"collector RSS {d.proc_mem(col.p.pid)['VmRSS'] / 1024:.0f} MiB; load average "
        f"{d.loadavg()}")
    say("")
    say("| query | driftwatch p50 ms | p99 ms | raw SQL join p50 ms | p99 ms | p99 ratio |")
    say("|---|---:|---:|---:|---:|---:|")
    pp50, pp99 = d.pct(peer, 50), d.pct(peer, 99)
    for name, (times, _) in results.items():
        p50, p99 = d.pct(times, 50), d.pct(times, 99)
        say(f"| `{name}` (JSON API) | {p50:.1f} | {p99:.1f} | {pp50:.1f} | {pp99:.1f} | "
            f"{p99 / max(pp99, 0.001):.2f}x |")
    say("")


def main():
    if os.environ.get("NO_BUILD") != "1":
        d.run(["cargo", "build", "--release", "-p", "driftwatch-collector", "-p",
               "driftwatch-cli", "--bins", "--example", "loadgen"], check=True, cwd=REPO)
    work = tempfile.mkdtemp(prefix="dw-iac-bench-")
    say(f"# IaC benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores")
    try:
        col = c.Collector(work, "c-iac")
        bench_import(work, col, os.path.join(work, "bench.tfstate"))
        bench_queries(col)
        col.stop()
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
