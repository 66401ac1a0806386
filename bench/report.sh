#!/usr/bin/env bash
# One command for BENCHMARKS.md: every benchmark of every issue, on SQLite and on
# PostgreSQL + Redis, then the report rendered from their records. About an hour on
# 2 cores; loopback only; every load is bounded in time.
#
#   bash bench/report.sh                      # everything, both backends -> BENCHMARKS.md
#   QUICK=1 OUT=/tmp/b.md bash bench/report.sh  # short loads, small data: tries the harness
#   SECTIONS="suite audit" BACKENDS=sqlite bash bench/report.sh
#   RESULTS=DIR                                # keep the records there (default: a new
#                                              # folder under $CARGO_TARGET_DIR/bench-results)
#
# Sections: suite (bench/suite.sh: HTTP scenarios, memory, start-up, in-process
# decisions), limiter, audit (bench/audit.sh), flood (bench/login_flood.sh), backup
# (bench/backup.sh), durability (bench/sqlite_sync.sh: each SQLITE_SYNCHRONOUS level;
# SQLite only).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
BACKENDS="${BACKENDS:-sqlite postgres}"
SECTIONS="${SECTIONS:-suite limiter audit flood backup durability}"
RESULTS="${RESULTS:-$CARGO_TARGET_DIR/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
# A quick run tries the harness: its report is not the record.
if [ "${QUICK:-0}" = 1 ]; then OUT="${OUT:-$RESULTS/BENCHMARKS.md}"; else OUT="${OUT:-BENCHMARKS.md}"; fi
BIN="$CARGO_TARGET_DIR/release"
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ "${QUICK:-0}" = 1 ]; then
  export DURATION=3s WARMUP=1s DECISIONS=20000 EVENTS=200000 USERS=20000 AUDIT_EVENTS=200000
  LIMITER_KEYS_SECONDS="${LIMITER_KEYS_SECONDS:-20}" FLOOD_DURATION="${FLOOD_DURATION:-10s}"
else
  export DURATION="${DURATION:-10s}" WARMUP="${WARMUP:-2s}" FLOOD_DURATION="${FLOOD_DURATION:-60s}"
  LIMITER_KEYS_SECONDS="${LIMITER_KEYS_SECONDS:-600}"
fi
[ -n "${FLOOD_DURATION:-}" ] && export FLOOD_DURATION

# Tools the sections use, from Debian's packages.
missing=()
for tool in wrk bc curl openssl psql redis-cli pg_dump sqlite3; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  packages=()
  for tool in "${missing[@]}"; do
    case "$tool" in
      psql | pg_dump) packages+=(postgresql-client) ;;
      redis-cli) packages+=(redis-tools) ;;
      *) packages+=("$tool") ;;
    esac
  done
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
if want audit; then
  # guard without audit writes (benchmark builds only), for the audit log's cost;
  # built first and copied aside, as the real build below replaces it.
  cargo build --release --quiet -p guard-cli --bin guard --features guard-store/bench-unaudited
  cp "$BIN/guard" "$RESULTS/guard-unaudited"
  export UNAUDITED_BIN="$RESULTS/guard-unaudited"
fi
cargo build --release --quiet -p guard-cli --bin guard --example authz_bench --example limiter --example audit_bench
cargo build --release --quiet -p guard-bench
export SKIP_BUILD=1
export BENCH_RECORDS="$RESULTS/records.jsonl"
echo "results: $RESULTS"

machine() { # started finished
  python3 - "$1" "$2" > "$RESULTS/machine.json" <<'PY'
import json, os, platform, subprocess, sys
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "unknown"
cpu = "unknown"
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
with open("/proc/meminfo") as f:
    kib = int(f.readline().split()[1])
commit = run("git", "rev-parse", "--short", "HEAD")
if run("git", "status", "--porcelain", "--untracked-files=no"):
    commit += " with uncommitted changes"
redis = run("redis-cli", "-h", "127.0.0.1", "INFO", "server")
redis = next((l.split(":", 1)[1] for l in redis.splitlines() if l.startswith("redis_version:")), "unknown")
print(json.dumps({
    "cpu": cpu,
    "cores": str(os.cpu_count()),
    "memory": f"{kib / 1048576:.1f} GiB",
    "kernel": platform.release(),
    "rustc": run("rustc", "--version"),
    "postgres": run("psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"),
    "redis": redis,
    "commit": commit,
    "quick": os.environ.get("QUICK", "0") == "1",
    "started": sys.argv[1],
    "finished": sys.argv[2],
}, indent=2))
PY
}
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# Rerunning some sections into the same results keeps the first part's start.
if [ -s "$RESULTS/records.jsonl" ] && [ -f "$RESULTS/machine.json" ]; then
  started="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["started"])' "$RESULTS/machine.json")"
fi
machine "$started" "(running)"

for backend in $BACKENDS; do
  export BACKEND="$backend"
  echo "== $backend"
  if want suite; then bash bench/suite.sh; fi
  if want limiter; then
    # In memory on both; through Redis with the backend that uses it.
    redis=()
    [ "$backend" = postgres ] && redis=(redis://127.0.0.1:6379)
    "$BIN/examples/limiter" latency "${redis[@]}"
    if [ "$backend" = sqlite ]; then
      "$BIN/examples/limiter" keys 10000 "$LIMITER_KEYS_SECONDS" | tail -n 3
      "$BIN/guard-bench" record --append "$BENCH_RECORDS" --backend "$backend" --id limiter.keys.seconds \
        --value "$LIMITER_KEYS_SECONDS" --unit s --how "limiter keys 10000 $LIMITER_KEYS_SECONDS"
    fi
  fi
  if want audit; then EVENTS="${AUDIT_EVENTS:-10000000}" bash bench/audit.sh; fi
  # A flood answered with server errors is a finding for the report, not the end of it.
  if want flood; then bash bench/login_flood.sh || echo "login flood: server errors (recorded)" >&2; fi
  if want backup; then CROSS=0 bash bench/backup.sh; fi
  if want durability && [ "$backend" = sqlite ]; then bash bench/sqlite_sync.sh; fi
done

machine "$started" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
"$BIN/guard-bench" report --results "$RESULTS" --out "$OUT"
echo "wrote $OUT from $RESULTS/records.jsonl"
