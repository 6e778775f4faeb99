#!/usr/bin/env bash
# gen-tree.sh DIR [N] — create a deterministic synthetic tree of N small files (default 200000)
# under DIR, for measuring driftwatch's peak RSS and baseline size on a 200,000-entry tree.
#
# Layout: DIR/aNN/bNN/fNNN — leaf directories of 200 files each (1000 leaves for N=200000),
# grouped 100 leaves per top-level directory. File sizes are uniform in 0..8192 bytes; the
# content is binary, sliced from a 1 MiB pseudo-random pool at pseudo-random offsets, with a
# fixed seed: the same N always gives the same bytes, so results are reproducible across
# machines. (Binary content on purpose: like most of /usr, it is hashed but never captured
# as text.) Modes alternate 0644/0755 and mtimes are pinned to a fixed date.
#
# DIR must not exist or be empty. Takes a few seconds for 200,000 files (~800 MB).
set -euo pipefail

usage() { echo "usage: $0 DIR [N]   (N defaults to 200000)" >&2; exit 64; }
[[ $# -ge 1 && $# -le 2 ]] || usage
dir=$1
n=${2:-200000}
[[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || usage

if [[ -e $dir && -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
  echo "gen-tree: $dir exists and is not empty; refusing to mix trees" >&2
  exit 1
fi
mkdir -p "$dir"

python3 - "$dir" "$n" <<'PY'
import os, random, sys

root, n = sys.argv[1], int(sys.argv[2])
FILES_PER_DIR = 200      # files per leaf directory
LEAVES_PER_TOP = 100     # leaf directories per top-level directory
MAX_SIZE = 8192          # sizes are uniform in 0..MAX_SIZE
MTIME = 1700000000       # 2023-11-14T22:13:20Z, fixed so the tree is byte- and stat-reproducible

rnd = random.Random(20240601)
pool = rnd.randbytes((1 << 20) + MAX_SIZE)

made_dirs = set()
for i in range(n):
    leaf, idx = divmod(i, FILES_PER_DIR)
    top, sub = divmod(leaf, LEAVES_PER_TOP)
    d = os.path.join(root, f"a{top:02d}", f"b{sub:02d}")
    if d not in made_dirs:
        os.makedirs(d, exist_ok=True)
        made_dirs.add(d)
    size = rnd.randrange(MAX_SIZE + 1)
    off = rnd.randrange(1 << 20)
    path = os.path.join(d, f"f{idx:03d}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755 if i % 2 else 0o644)
    try:
        os.write(fd, pool[off:off + size])
    finally:
        os.close(fd)
    os.utime(path, (MTIME, MTIME))

# Directory mtimes last (creating files touched them).
for d in made_dirs | {os.path.dirname(d) for d in made_dirs}:
    os.utime(d, (MTIME, MTIME))
print(f"gen-tree: {n} files in {len(made_dirs)} leaf directories under {root}")
PY
