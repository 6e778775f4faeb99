#!/usr/bin/env bash
# How collector-0.1.db was made: a driftwatch 0.1 collector (commit f58fbc5, schema version 2,
# drift items stored as JSON text) fed by a 0.1 agent that saw a few edits, one of them
# resolved. The test `a_database_of_0_1_is_converted_in_place` opens it with this release.
#
# Usage: make-0.1-db.sh DIR_WITH_0.1_BINARIES
set -euo pipefail
bin=${1:?usage: make-0.1-db.sh DIR_WITH_0.1_BINARIES}
out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/etc/ssh" "$root/etc/nginx" "$root/usr/bin"
printf 'root ALL=(ALL:ALL) ALL\n' >"$root/etc/sudoers"
printf 'worker_processes 2;\nevents {}\n' >"$root/etc/nginx/nginx.conf"
printf 'Welcome\n' >"$root/etc/motd"
printf '#!/bin/sh\necho tool\n' >"$root/usr/bin/tool"
chmod 755 "$root/usr/bin/tool"
"$bin/driftwatch-agent" baseline build --root "$root" --out "$work/baseline.dwb" 2>/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: >"$work/collector.log"
DRIFTWATCH_LOG=info "$bin/driftwatch-collector" serve --listen "127.0.0.1:$port" \
    --database "$work/collector.db" 2>"$work/collector.log" &
collector=$!
until grep -q "127.0.0.1:$port" "$work/collector.log"; do sleep 0.1; done

printf '{"v1": {"instance_id": "i-old", "local_hostname": "web-old", "cloud_name": "aws", "region": "eu-west-1"}}\n' \
    >"$work/identity.json"
cat >"$work/agent.toml" <<TOML
baseline = "$work/baseline.dwb"
root = "$root"
state_dir = "$work/state"
[watch]
coalesce = "50ms"
[collector]
url = "http://127.0.0.1:$port"
heartbeat = "1s"
identity_file = "$work/identity.json"
TOML
: >"$work/agent.log"
DRIFTWATCH_LOG=info "$bin/driftwatch-agent" run --config "$work/agent.toml" 2>"$work/agent.log" &
agent=$!
until grep -q "Agent connected" "$work/collector.log"; do sleep 0.1; done

step() { "$@"; sleep 0.5; }
step sh -c "printf 'root ALL=(ALL:ALL) ALL\nmallory ALL=(ALL) NOPASSWD: ALL\n' >'$root/etc/sudoers'"
step chmod 4755 "$root/usr/bin/tool"
step sh -c "printf 'worker_processes 8;\nevents {}\n' >'$root/etc/nginx/nginx.conf'"
step sh -c "printf 'worker_processes 2;\nevents {}\n' >'$root/etc/nginx/nginx.conf'"
step rm "$root/etc/motd"
sleep 2
"$bin/driftwatch" --collector "http://127.0.0.1:$port" history --json >"$work/history.json"
kill -TERM "$agent"; wait "$agent" || true
kill -TERM "$collector"; wait "$collector" || true
python3 - "$work/collector.db" "$out/collector-0.1.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.execute("PRAGMA journal_mode = DELETE")
db.execute("VACUUM INTO ?", (sys.argv[2],))
PY
python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))), "events")' "$work/history.json"
