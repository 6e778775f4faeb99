#!/usr/bin/env bash
# baseline-vs-aide.sh — reproducible benchmark: driftwatch baseline build / check against
# peers, measured in the same run on the same warm corpus.
#
#   rows:   walk+hash (find | xargs -0 -P$(nproc) sha256sum)   <- "walk and hash everything" (the issue's peer)
#           walk+hash (same with openssl dgst -sha256)           <- reference only: SHA-NI-accelerated hashing
#           aide --init                                          <- AIDE as shipped by Debian
#           driftwatch baseline build
#           aide --check                                         (no change since --init)
#           driftwatch check                                     (no change since build)
#   cols:   wall s, CPU s (user+sys), peak RSS — median of RUNS runs each
#   ratios: aide --init / driftwatch build        (target >= 8x)
#           driftwatch build / xargs sha256sum    (target <= 1.5x)
#           aide --check / driftwatch check       (target >= 50x)
#           (reference) driftwatch build / xargs openssl       (no target; see "hash speed" below)
#   SYNTH=1 adds baseline build + check on a 200,000-file synthetic tree (target: peak RSS
#           under 100 MB) and reports the .dwb size.
#
# Usage (from anywhere; run as root so the copy keeps owners and every file is readable):
#   bench/baseline-vs-aide.sh [--fresh] [--no-driftwatch]
#     --fresh           delete and rebuild the corpus (and the synthetic tree)
#     --no-driftwatch   peers only (no driftwatch binary needed, nothing is built)
#   Environment:
#     CORPUS=DIR        corpus directory (default: bench/.corpus); no whitespace in the path
#     RUNS=N            measured runs per command (default 3); the median is reported
#     DW_BIN=PATH       driftwatch-agent binary (default: target/release/driftwatch-agent,
#                       built with `cargo build --release -p driftwatch-agent` if missing)
#     AIDE_WORKERS=N    set AIDE's num_workers (N or "100%"); default: unset, i.e. AIDE's own
#                       default of 1 worker thread, which is what Debian's aide.conf ships
#     SYNTH=1           also measure the synthetic tree (SYNTH_N=200000 files by default)
#
# Corpus: CORPUS/root/usr and CORPUS/root/etc, a `cp -a` of this machine's /usr and /etc
# (~5 GB on a stock Debian 12 dev box). Anyone can rebuild it; the script prints its size and
# file count so results from different machines can be put side by side.
#
# Page cache: before any timing, one untimed pass reads every file of the corpus
# (find | xargs cat > /dev/null), which also pulls all inodes and dentries into cache. The
# script warns if the corpus is bigger than available memory (the cache could not stay warm).
# Every number below is therefore a warm-cache, CPU-bound number, not a disk benchmark.
#
# Measurement: GNU time (`/usr/bin/time -f '%U %S %M'`): CPU = %U + %S, peak RSS = %M (KiB,
# printed as MiB). Wall time is taken around it with bash's $EPOCHREALTIME (microseconds;
# GNU time's %e has only 10 ms resolution, too coarse for a fast no-change check). For
# pipelines (find | xargs sha256sum), CPU includes every process of the pipeline, but peak RSS
# is that of the largest single process, not the sum across parallel workers (that is what
# the kernel's rusage reports). Each column's median
# is taken independently over the RUNS runs.
#
# Other load: the column "other load %" is the share of the machine's CPU capacity
# (wall x nproc) used by anything else while a command ran (system-wide busy+steal time from
# /proc/stat minus the command's own CPU time; "-" for runs under 1 s, where the 10 ms ticks
# are too coarse). Above ~10% the wall times and ratios are suspect (a concurrent build, a
# noisy VM neighbour); the script warns: rerun on a quiet box.
#
# Hash speed: coreutils sha256sum (9.1 on Debian 12) and AIDE (via libmhash) use portable
# SHA-256 code; OpenSSL and most Rust/Go hashers use the CPU's SHA extensions (SHA-NI) when
# present, which is ~5-7x faster per byte. The openssl row shows what a walk+hash costs with
# such a hasher, so the 1.5x target against sha256sum can be read in context.
#
# Logs of every run (stdout/stderr, AIDE reports, raw samples) go to CORPUS/logs/.
# Runtime: ~10 minutes with RUNS=3 on 2 CPUs (AIDE dominates), plus ~1 minute for the corpus.
set -euo pipefail
export LC_ALL=C   # '.' as decimal separator for $EPOCHREALTIME, awk and sort -g

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
DEFAULT_DW_BIN=$REPO_ROOT/target/release/driftwatch-agent

CORPUS=${CORPUS:-$BENCH_DIR/.corpus}
RUNS=${RUNS:-3}
DW_BIN=${DW_BIN:-$DEFAULT_DW_BIN}
AIDE_WORKERS=${AIDE_WORKERS:-}
SYNTH=${SYNTH:-0}
SYNTH_N=${SYNTH_N:-200000}
NPROC=$(nproc)

FRESH=0
WITH_DW=1
for arg in "$@"; do
  case $arg in
    --fresh) FRESH=1 ;;
    --no-driftwatch) WITH_DW=0 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 64 ;;
  esac
done

die() { echo "error: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, got '$RUNS'"
[[ $CORPUS != *[[:space:]]* ]] || die "CORPUS path must not contain whitespace (AIDE config/URLs)"
mkdir -p "$CORPUS"
CORPUS=$(cd "$CORPUS" && pwd)            # absolute: AIDE config and driftwatch get full paths
ROOT=$CORPUS/root                        # the "host" root: ROOT/usr, ROOT/etc
LOGS=$CORPUS/logs
AIDE_DIR=$CORPUS/aide
mkdir -p "$LOGS" "$AIDE_DIR"

# ---------------------------------------------------------------------------------------------
# Tools: GNU time, AIDE (Debian package; --no-install-recommends skips aide-common's cron job
# and mail setup, we only need the binary), python3 for the JSON of `baseline show`.
# ---------------------------------------------------------------------------------------------
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "$@" >"$LOGS/apt.log" 2>&1 ||
    { apt-get update >>"$LOGS/apt.log" 2>&1 && apt-get install -y --no-install-recommends "$@" >>"$LOGS/apt.log" 2>&1; } ||
    die "apt-get install $* failed (see $LOGS/apt.log)"
}
[[ -x /usr/bin/time ]] || { log "installing GNU time"; apt_install time; }
command -v aide >/dev/null || { log "installing aide"; apt_install aide; }
command -v python3 >/dev/null || die "python3 is required"

# ---------------------------------------------------------------------------------------------
# driftwatch binary
# ---------------------------------------------------------------------------------------------
if ((WITH_DW)); then
  if [[ ! -x $DW_BIN ]]; then
    [[ $DW_BIN == "$DEFAULT_DW_BIN" ]] || die "DW_BIN=$DW_BIN is not an executable"
    log "building driftwatch-agent (release)"
    (cd "$REPO_ROOT" && cargo build --release -p driftwatch-agent)
  fi
  [[ -x $DW_BIN ]] || die "no driftwatch-agent at $DW_BIN"
fi

# ---------------------------------------------------------------------------------------------
# Corpus: cp -a /usr /etc. A stamp file marks a complete copy, so an interrupted copy is
# redone instead of silently benchmarking half a tree.
# ---------------------------------------------------------------------------------------------
if ((FRESH)); then
  log "--fresh: removing $ROOT, $CORPUS/synth and old databases"
  rm -rf "$ROOT" "$CORPUS/synth" "$CORPUS/.corpus-complete" "$CORPUS/synth.stamp" \
    "$AIDE_DIR" "$CORPUS"/*.dwb
  mkdir -p "$AIDE_DIR"
fi
if [[ ! -f $CORPUS/.corpus-complete ]]; then
  log "creating corpus: cp -a /usr /etc -> $ROOT (takes a few minutes)"
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  cp -a /usr "$ROOT/usr"
  cp -a /etc "$ROOT/etc"
  date -u +%FT%TZ >"$CORPUS/.corpus-complete"
fi

# counts: regular files, directories, symlinks, other; bytes of regular files
# (%.0f, not %d: Debian's awk is mawk, whose %d saturates at 2^31-1)
corpus_stats() {
  find "$@" -printf '%y %s\n' | awk '
    { n[$1]++ } $1 == "f" { bytes += $2 }
    END { printf "%d %d %d %d %.0f\n", n["f"], n["d"], n["l"], NR - n["f"] - n["d"] - n["l"], bytes }'
}
read -r C_FILES C_DIRS C_LINKS C_OTHER C_BYTES < <(corpus_stats "$ROOT/usr" "$ROOT/etc")

# ---------------------------------------------------------------------------------------------
# AIDE config: root_prefix makes AIDE see CORPUS/root as "/", so its database holds /usr/...
# and /etc/... exactly as driftwatch's baseline does. "/usr/" + "/usr$" select the tree and the
# directory itself without also matching a sibling like /usrfoo (selection lines are regexes).
# ---------------------------------------------------------------------------------------------
AIDE_CONF=$AIDE_DIR/aide.conf
AIDE_DB=$AIDE_DIR/aide.db
AIDE_DB_NEW=$AIDE_DIR/aide.db.new
{
  echo "# generated by bench/baseline-vs-aide.sh — AIDE $(aide --version 2>&1 | awk 'NR==1{print $2}')"
  echo "database_in=file:$AIDE_DB"
  echo "database_out=file:$AIDE_DB_NEW"
  echo "gzip_dbout=no"
  echo "root_prefix=$ROOT"
  if [[ -n $AIDE_WORKERS ]]; then echo "num_workers=$AIDE_WORKERS"; fi
  echo "report_url=stdout"
  echo "DW = sha256+p+u+g+s+m+ftype"
  echo "/usr/ DW"
  echo "/usr\$ DW"
  echo "/etc/ DW"
  echo "/etc\$ DW"
} >"$AIDE_CONF"
aide --config="$AIDE_CONF" --config-check >"$LOGS/aide-config-check.log" 2>&1 ||
  die "AIDE rejected $AIDE_CONF (see $LOGS/aide-config-check.log)"

# ---------------------------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------------------------
declare -A WALL CPU RSS OTHER NOTE  # per row key: median wall s, CPU s, RSS MiB, other load %, note
CLK_TCK=$(getconf CLK_TCK)

# system-wide busy CPU ticks: user+nice+system+irq+softirq+steal (all but idle and iowait)
busy_ticks() { awk '/^cpu / { printf "%.0f\n", $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# measure KEY OK_CODES CMD ARGS...
#   Runs CMD RUNS times under GNU time, stdout to LOGS/KEY.out, stderr to LOGS/KEY.err.
#   OK_CODES is a space-separated list of accepted exit codes; any other code aborts.
#   A nonzero accepted code is recorded as a note on the row (e.g. "exit 2: drift").
#   Each line of LOGS/KEY.samples: wall_s user_s sys_s rss_kib other_load_pct
measure() {
  local key=$1 ok=$2; shift 2
  local samples=$LOGS/$key.samples run rc t b0 b1 t0 t1
  : >"$samples"
  for ((run = 1; run <= RUNS; run++)); do
    t=$LOGS/$key.time
    rc=0
    b0=$(busy_ticks)
    t0=$EPOCHREALTIME
    /usr/bin/time -o "$t" -f '%U %S %M' "$@" >"$LOGS/$key.out" 2>"$LOGS/$key.err" || rc=$?
    t1=$EPOCHREALTIME
    b1=$(busy_ticks)
    if [[ " $ok " != *" $rc "* ]]; then
      echo "error: '$key' exited $rc (accepted: $ok); last lines of $LOGS/$key.err:" >&2
      tail -n 20 "$LOGS/$key.err" >&2
      exit 1
    fi
    ((rc == 0)) || NOTE[$key]="exit $rc"
    # GNU time prints "Command exited with non-zero status N" before the figures on failure.
    tail -n 1 "$t" | awk -v t0="$t0" -v t1="$t1" -v busy=$((b1 - b0)) -v hz="$CLK_TCK" -v np="$NPROC" '{
      wall = t1 - t0; other = busy / hz - ($1 + $2); cap = wall * np
      # /proc/stat counts in 1/CLK_TCK ticks: too coarse under 1 s, record -1 ("not measured")
      load = (wall < 1) ? -1 : (other > 0) ? 100 * other / cap : 0
      printf "%.6f %s %s %s %.1f\n", wall, $1, $2, $3, (load > 100) ? 100 : load }' >>"$samples"
    log "  $key run $run/$RUNS: $(tail -n 1 "$samples" |
      awk '{printf "wall %.3fs cpu %.2fs rss %.1fMiB other load %s", $1, $2 + $3, $4 / 1024, ($5 < 0) ? "-" : $5 "%"}')${NOTE[$key]:+ (${NOTE[$key]})}"
  done
  WALL[$key]=$(awk '{print $1}' "$samples" | median "%.3f")
  CPU[$key]=$(awk '{print $2 + $3}' "$samples" | median)
  RSS[$key]=$(awk '{print $4 / 1024}' "$samples" | median "%.1f")
  OTHER[$key]=$(awk '{print $5}' "$samples" | median "%.0f")
  [[ ${OTHER[$key]} != -* ]] || OTHER[$key]="-"
}

# median [FORMAT] — median of the numbers on stdin (mean of the two middle values for an even
# count), printed with FORMAT (default %.2f)
median() {
  sort -g | awk -v f="${1:-%.2f}" '{ v[NR] = $1 } END {
    if (NR == 0) exit 1
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf f "\n", m }'
}

# ratio A B FORMAT -> A/B, or "n/a"
ratio() {
  awk -v a="${1:-}" -v b="${2:-}" -v f="$3" 'BEGIN {
    if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf f "x\n", a / b }'
}
# verdict VALUE OP TARGET [TARGET_TEXT] -> "meets target (target OP TARGET_TEXT)" or "MISSES ..."
verdict() {
  [[ $1 == n/a ]] && { echo "n/a"; return; }
  awk -v v="${1%x}" -v op="$2" -v t="$3" -v tt="${4:-$3}" 'BEGIN {
    ok = (op == ">=") ? (v >= t) : (op == "<=") ? (v <= t) : (v < t)
    printf "%s (target %s %s)\n", ok ? "meets target" : "MISSES target", op, tt }'
}

# ---------------------------------------------------------------------------------------------
# Header
# ---------------------------------------------------------------------------------------------
MEM_AVAIL_KB=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
echo "# driftwatch baseline build / check vs AIDE and a bare walk+hash"
echo
echo "- date: $(date -u +%FT%TZ), host: $(uname -srm), CPUs: $NPROC ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg); memory available: $((MEM_AVAIL_KB / 1024)) MiB; runs per command: $RUNS (median reported); page cache: warm (untimed read of every file first)"
echo "- $(aide --version 2>&1 | head -n 1), num_workers: ${AIDE_WORKERS:-default (1)}; rule: sha256+p+u+g+s+m+ftype; gzip_dbout=no"
echo "- $(sha256sum --version | head -n 1); $(openssl version 2>/dev/null || echo "openssl: not installed"); xargs -P$NPROC -n 256"
if ((WITH_DW)); then
  echo "- driftwatch-agent: $DW_BIN ($("$DW_BIN" --version 2>/dev/null | head -n 1 || echo "version unknown"))"
fi
echo "- corpus: $ROOT (cp -a of /usr and /etc, made $(cat "$CORPUS/.corpus-complete")): $C_FILES regular files," \
  "$C_DIRS directories, $C_LINKS symlinks, $C_OTHER other; $C_BYTES bytes ($(awk -v b="$C_BYTES" 'BEGIN{printf "%.2f GiB", b / 2^30}'))"
echo

if ((C_BYTES / 1024 > MEM_AVAIL_KB * 8 / 10)); then
  echo "**warning**: the corpus is larger than 80% of available memory; the page cache cannot stay warm," \
    "numbers below include disk reads." >&2
fi

# ---------------------------------------------------------------------------------------------
# Warm the page cache (untimed): read every file once; find also loads every inode/dentry.
# ---------------------------------------------------------------------------------------------
log "warming the page cache (untimed read of the whole corpus)"
find "$ROOT/usr" "$ROOT/etc" -type f -print0 | xargs -0 -P"$NPROC" -n 256 cat >/dev/null

# ---------------------------------------------------------------------------------------------
# Runs, in table order.
# ---------------------------------------------------------------------------------------------
log "walk+hash: find | xargs -0 -P$NPROC -n 256 sha256sum"
# shellcheck disable=SC2016  # $1..$3 expand inside the inner bash
measure xargs "0" bash -c 'find "$1" "$2" -type f -print0 | xargs -0 -P"$3" -n 256 sha256sum >/dev/null' \
  _ "$ROOT/usr" "$ROOT/etc" "$NPROC"

if command -v openssl >/dev/null; then
  log "walk+hash (reference): find | xargs -0 -P$NPROC -n 256 openssl dgst -sha256"
  # shellcheck disable=SC2016
  measure xargs_openssl "0" bash -c 'find "$1" "$2" -type f -print0 | xargs -0 -P"$3" -n 256 openssl dgst -sha256 -r >/dev/null' \
    _ "$ROOT/usr" "$ROOT/etc" "$NPROC"
fi

log "aide --init"
# Every run writes database_out afresh; the last one becomes the database for --check.
measure aide_init "0" aide --config="$AIDE_CONF" --init
mv -f "$AIDE_DB_NEW" "$AIDE_DB"
AIDE_ENTRIES=$(awk '/^Number of entries:/ {print $NF; exit}' "$LOGS/aide_init.out")

DWB=$CORPUS/bench.dwb
if ((WITH_DW)); then
  log "driftwatch baseline build"
  measure dw_build "0" "$DW_BIN" baseline build --root "$ROOT" --config "$BENCH_DIR/rules-usr-etc.toml" --out "$DWB"
fi

log "aide --check (no change)"
# AIDE's exit code is a bitmask: 1 new, 2 removed, 4 changed entries (>= 14: error). Accept
# 0..7 so a surprise difference shows up in the table instead of aborting the run.
measure aide_check "0 1 2 3 4 5 6 7" aide --config="$AIDE_CONF" --check
[[ -z ${NOTE[aide_check]:-} ]] || NOTE[aide_check]+=": differences found, see $LOGS/aide_check.out"

if ((WITH_DW)); then
  log "driftwatch check (no change)"
  measure dw_check "0 2" "$DW_BIN" check --baseline "$DWB" --root "$ROOT" --json
  [[ -z ${NOTE[dw_check]:-} ]] || NOTE[dw_check]+=": drift reported, see $LOGS/dw_check.out"
fi

# ---------------------------------------------------------------------------------------------
# Optional: synthetic 200,000-file tree (peak RSS, baseline size).
# ---------------------------------------------------------------------------------------------
SYNTH_ROOT=$CORPUS/synth
SYNTH_DWB=$CORPUS/synth.dwb
if ((SYNTH && WITH_DW)); then
  if [[ $(cat "$CORPUS/synth.stamp" 2>/dev/null) != "$SYNTH_N" ]]; then
    log "generating synthetic tree: $SYNTH_N files"
    rm -rf "$SYNTH_ROOT" "$CORPUS/synth.stamp"
    "$BENCH_DIR/gen-tree.sh" "$SYNTH_ROOT/data" "$SYNTH_N" >&2
    echo "$SYNTH_N" >"$CORPUS/synth.stamp"
  fi
  read -r S_FILES S_DIRS _ _ S_BYTES < <(corpus_stats "$SYNTH_ROOT/data")
  find "$SYNTH_ROOT/data" -type f -print0 | xargs -0 -n 256 cat >/dev/null
  log "driftwatch baseline build (synthetic)"
  measure synth_build "0" "$DW_BIN" baseline build --root "$SYNTH_ROOT" --config "$BENCH_DIR/rules-synth.toml" --out "$SYNTH_DWB"
  log "driftwatch check (synthetic, no change)"
  measure synth_check "0 2" "$DW_BIN" check --baseline "$SYNTH_DWB" --root "$SYNTH_ROOT" --json
elif ((SYNTH)); then
  log "SYNTH=1 ignored with --no-driftwatch"
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
# Entry count of a baseline via `baseline show FILE --json` (field "entries": a number or a
# list); empty if the command or the field is not there.
dwb_entries() {
  "$DW_BIN" baseline show "$1" --json 2>/dev/null | python3 -c '
import json, sys
try:
    e = json.load(sys.stdin).get("entries")
except Exception:
    sys.exit(0)
if isinstance(e, bool) or e is None:
    sys.exit(0)
print(len(e) if isinstance(e, (list, dict)) else e)
' 2>/dev/null || true
}
human_bytes() { awk -v b="$1" 'BEGIN { printf (b >= 2^20) ? "%.1f MiB" : "%.1f KiB", (b >= 2^20) ? b / 2^20 : b / 2^10 }'; }

TABLE_FMT='| %-45s | %8s | %8s | %12s | %12s | %s\n'
table_head() {
  # shellcheck disable=SC2059
  printf "$TABLE_FMT" "command" "wall s" "CPU s" "peak RSS MiB" "other load %" "note |"
  echo "|-----------------------------------------------|---------:|---------:|-------------:|-------------:|------|"
}
row() { # row KEY LABEL
  # shellcheck disable=SC2059
  if [[ -n ${WALL[$1]:-} ]]; then
    printf "$TABLE_FMT" "$2" "${WALL[$1]}" "${CPU[$1]}" "${RSS[$1]}" "${OTHER[$1]}" "${NOTE[$1]:-} |"
  else
    printf "$TABLE_FMT" "$2" "n/a" "n/a" "n/a" "n/a" "not run |"
  fi
}

echo "## Corpus: /usr + /etc ($C_FILES files, $(human_bytes "$C_BYTES"))"
echo
table_head
row xargs "walk+hash (find \| xargs -P$NPROC sha256sum)"
row xargs_openssl "(ref) walk+hash (xargs -P$NPROC openssl sha256)"
row aide_init "aide --init"
row dw_build "driftwatch baseline build"
row aide_check "aide --check (no change)"
row dw_check "driftwatch check (no change)"
echo

R_INIT=$(ratio "${WALL[aide_init]:-}" "${WALL[dw_build]:-}" "%.1f")
R_HASH=$(ratio "${WALL[dw_build]:-}" "${WALL[xargs]:-}" "%.2f")
R_CHECK=$(ratio "${WALL[aide_check]:-}" "${WALL[dw_check]:-}" "%.1f")
R_AIDE_HASH=$(ratio "${WALL[aide_init]:-}" "${WALL[xargs]:-}" "%.1f")
R_OSSL=$(ratio "${WALL[dw_build]:-}" "${WALL[xargs_openssl]:-}" "%.2f")
# Same ratios on CPU time: less sensitive to other load, but blind to parallelism.
C_INIT=$(ratio "${CPU[aide_init]:-}" "${CPU[dw_build]:-}" "%.1f")
C_HASH=$(ratio "${CPU[dw_build]:-}" "${CPU[xargs]:-}" "%.2f")
C_CHECK=$(ratio "${CPU[aide_check]:-}" "${CPU[dw_check]:-}" "%.1f")
echo "Ratios of median wall time (CPU-time ratio in brackets, for information):"
echo
echo "- \`aide --init / driftwatch build = $R_INIT\` — $(verdict "$R_INIT" ">=" 8) [CPU $C_INIT]"
echo "- \`driftwatch build / xargs sha256sum = $R_HASH\` — $(verdict "$R_HASH" "<=" 1.5) [CPU $C_HASH]"
echo "- \`aide --check / driftwatch check = $R_CHECK\` — $(verdict "$R_CHECK" ">=" 50) [CPU $C_CHECK]"
echo "- (reference) \`driftwatch build / xargs openssl sha256 = $R_OSSL\`"
echo "- (reference) \`aide --init / xargs sha256sum = $R_AIDE_HASH\`"
echo
echo "AIDE database: $(human_bytes "$(stat -c %s "$AIDE_DB")"), ${AIDE_ENTRIES:-?} entries."
if ((WITH_DW)) && [[ -f $DWB ]]; then
  entries=$(dwb_entries "$DWB")
  echo "driftwatch baseline: $(human_bytes "$(stat -c %s "$DWB")"), ${entries:-? (baseline show --json gave no \"entries\")} entries."
fi

if [[ -n ${WALL[synth_build]:-} ]]; then
  echo
  echo "## Synthetic tree: $S_FILES files in $S_DIRS directories, $(human_bytes "$S_BYTES") (bench/gen-tree.sh)"
  echo
  table_head
  row synth_build "driftwatch baseline build"
  row synth_check "driftwatch check (no change)"
  echo
  peak=$(printf '%s\n%s\n' "${RSS[synth_build]}" "${RSS[synth_check]}" | sort -g | tail -n 1)
  # 100 MB = 100e6 bytes = 95.37 MiB
  echo "- peak RSS (max of build, check) = $peak MiB — $(verdict "$peak" "<" 95.37 "100 MB = 95.37 MiB")"
  entries=$(dwb_entries "$SYNTH_DWB")
  echo "- driftwatch baseline: $(human_bytes "$(stat -c %s "$SYNTH_DWB")"), ${entries:-?} entries" \
    "($(awk -v b="$(stat -c %s "$SYNTH_DWB")" -v n="$S_FILES" 'BEGIN{printf "%.1f", b / n}') bytes per file)"
fi

busy=$(for k in "${!OTHER[@]}"; do
  awk -v k="$k" -v o="${OTHER[$k]}" 'BEGIN { if (o != "-" && o > 10) print k " (" o "%)" }'
done)
if [[ -n $busy ]]; then
  echo
  echo "**Warning: other processes used more than 10% of the CPUs during:** $(echo "$busy" | paste -sd, - | sed 's/,/, /g')." \
    "Wall times and ratios are unreliable; rerun on an otherwise idle machine."
fi
echo
echo "Logs: $LOGS"
