#!/usr/bin/env bash
# guard's benchmark harness: GET /health throughput and latency against an empty axum
# handler measured in the same run with the same load generator, idle resident memory,
# and start-to-ready time on an existing SQLite database. Loopback only; every load is
# bounded in time and stops by itself.
#
#   bash bench/run.sh            # DURATION=10s CONNECTIONS=32 by default
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
GUARD_PORT="${GUARD_PORT:-18080}"
BASELINE_PORT="${BASELINE_PORT:-18081}"

if ! command -v wrk >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet -p guard-cli --bin guard
cargo build --release --quiet -p guard-bench
BIN="$CARGO_TARGET_DIR/release"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_http() { # url
  for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "no answer from $1" >&2; return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
load() { # label url
  local out="$work/load.wrk" rps p50 p99
  wrk -t1 -c"$CONNECTIONS" -d2s "$2" >/dev/null                      # warm-up
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$2" > "$out"
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
  p50=$(awk '$1 == "50%" {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  printf '%-28s %12s req/s   p50 %-9s p99 %s\n' "$1" "$rps" "$p50" "$p99"
}

echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -c$CONNECTIONS -d$DURATION on loopback, sharing the cores"
echo

"$BIN/guard-bench" baseline --listen "127.0.0.1:$BASELINE_PORT" & pids+=($!)
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
load "baseline: empty axum handler" "http://127.0.0.1:$BASELINE_PORT/health"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# guard with its defaults: SQLite in ./data, JSON logs to stdout (kept in a file, as an
# operator's log collector would), every request logged.
(cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$GUARD_PORT" "$BIN/guard" serve > "$work/guard.log" 2>&1) & pids+=($!)
wait_http "http://127.0.0.1:$GUARD_PORT/health/ready"
sleep 2
guard_pid=${pids[-1]} # the subshell exec'd env, which exec'd guard: same process
idle_rss=$(rss_kib "$guard_pid")
load "guard: GET /health" "http://127.0.0.1:$GUARD_PORT/health"
load "guard: GET /health/db" "http://127.0.0.1:$GUARD_PORT/health/db"
loaded_rss=$(rss_kib "$guard_pid")
kill -TERM "$guard_pid"; wait "${pids[-1]}" 2>/dev/null || true
echo
printf 'guard resident memory: idle after start %.1f MiB; after the load %.1f MiB\n' \
  "$(echo "$idle_rss / 1024" | bc -l)" "$(echo "$loaded_rss / 1024" | bc -l)"
echo "log lines written during the run: $(wc -l < "$work/guard.log")"

python3 bench/startup.py "$BIN/guard" "$work" 20
