#!/usr/bin/env bash
# The HTTP scenarios, driven by guard-bench against one backend, each beside the empty
# axum baseline loaded the same way in the same run; the Argon2id ceiling; idle memory
# and start-to-ready time. Loopback only; every load is bounded in time.
#
#   bash bench/suite.sh                       # SQLite
#   BACKEND=postgres bash bench/suite.sh      # PostgreSQL and Redis on 127.0.0.1
#   DURATION=10s WARMUP=2s DECISIONS=200000 BENCH_RECORDS=/abs/records.jsonl
#
# bench/report.sh runs it for both backends and renders BENCHMARKS.md from the records.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
BACKEND="${BACKEND:-sqlite}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
DECISIONS="${DECISIONS:-200000}"
PORT="${GUARD_PORT:-18090}"
BASELINE_PORT="${BASELINE_PORT:-18091}"
BIN="$CARGO_TARGET_DIR/release"
G="http://127.0.0.1:$PORT"
[ -n "${SKIP_BUILD:-}" ] || {
  cargo build --release --quiet -p guard-cli --bin guard --example authz_bench
  cargo build --release --quiet -p guard-bench
}

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_name=guard_suite
BENCH="$BIN/guard-bench"
out=()
[ -n "${BENCH_RECORDS:-}" ] && out=(--append "$BENCH_RECORDS" --backend "$BACKEND")

drive() { # id scenario connections [more guard-bench load options]
  local id="$1" scenario="$2" connections="$3"
  shift 3
  "$BENCH" load --url "$G" --scenario "$scenario" --connections "$connections" --warmup "$WARMUP" \
    --duration "$DURATION" --id "$id" "${out[@]}" "$@"
}
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

echo "machine: $(nproc) cores, $(uname -r); backend: $BACKEND; guard-bench on loopback, sharing the cores"

# The baseline, loaded as guard's /health is.
"$BENCH" baseline --listen "127.0.0.1:$BASELINE_PORT" & baseline=$!
pids+=("$baseline")
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
"$BENCH" load --url "http://127.0.0.1:$BASELINE_PORT" --scenario health --connections 32 --warmup "$WARMUP" \
  --duration "$DURATION" --id baseline.health "${out[@]}"
kill "$baseline"; wait "$baseline" 2>/dev/null || true

ceiling_line="$("$BENCH" ceiling "${out[@]}")"
echo "$ceiling_line"
ceiling="$(echo "$ceiling_line" | sed -E 's/.*ceiling ([0-9.]+) logins.*/\1/')"

# The authorization tenant (100 policies, 570 entities) and the in-process decisions.
echo "in-process decisions:"
"$BIN/examples/authz_bench" "$DECISIONS" "$work/tenant"

backend_env=()
key="$(openssl rand -base64 32)"
start_guard() { # extra environment...
  fresh_database
  launch_guard "$@"
}
launch_guard() { # extra environment... (on the database of the last start_guard)
  backend_env=(DATABASE_URL="$url" GUARD_MASTER_KEY="$key")
  if [ "$BACKEND" = postgres ]; then
    backend_env+=(REDIS_URL="redis://127.0.0.1:6379" REDIS_KEY_PREFIX="guard-suite-$$-${fresh_count:-0}:")
  fi
  # Limits off: these runs measure throughput, which the sign-in limits and
  # brute-force protection exist to cut short (bench/login_flood.sh measures those).
  (cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=warn "${backend_env[@]}" \
    RATE_LIMIT_ENABLED=false BRUTE_FORCE_PROTECTION=false "$@" \
    GUARD_BOOTSTRAP_ADMIN_EMAIL=bench@example.com GUARD_BOOTSTRAP_ADMIN_PASSWORD='bench passphrase 42' \
    "$BIN/guard" serve > "$work/guard.log" 2>&1) & server=$!
  pids+=("$server")
  wait_http "$G/health/ready" || { cat "$work/guard.log"; exit 1; }
}
stop_guard() { kill -TERM "$server"; wait "$server" 2>/dev/null || true; }

start_guard
sleep 2
idle="$(rss_mib "$server")"
echo "resident memory, idle after start: $idle MiB"
record memory.idle "$idle" MiB "VmRSS of guard serve 2 s after /health/ready answered, $BACKEND"
drive health health 32
drive health.db health-db 32
drive me me 32
drive login.saturation login 8
rate="$(python3 -c "print(round($ceiling * 0.8, 1))")"
drive login.fixed-rate login 8 --rate "$rate"
drive refresh refresh 16
drive audit.query.http audit-query 8
drive authorize.cached authorize 16 --tenant-dir "$work/tenant"
drive authorize.batch.cached authorize-batch 1 --tenant-dir "$work/tenant"
loaded="$(rss_mib "$server")"
echo "resident memory after the loads: $loaded MiB"
record memory.after-load "$loaded" MiB "VmRSS of guard serve after every scenario above, $BACKEND"
stop_guard

# Start to ready on the database just used (now existing, with its data).
startup="$(env "${backend_env[@]}" GUARD_PORT="$PORT" python3 bench/startup.py "$BIN/guard" "$work" 20)"
echo "$startup"
record startup.median "$(echo "$startup" | sed -E 's/.*median ([0-9.]+) ms.*/\1/')" ms "$startup"
record startup.max "$(echo "$startup" | sed -E 's/.*max ([0-9.]+) ms.*/\1/')" ms "$startup"

# Idle memory again after a restart on that database: without the first start's own
# work (migrations, hashing the bootstrap administrator's password).
launch_guard
sleep 2
idle="$(rss_mib "$server")"
echo "resident memory, idle after a restart: $idle MiB"
record memory.idle.restart "$idle" MiB "VmRSS of guard serve 2 s after /health/ready answered, restarted on the database of the runs above, $BACKEND"
stop_guard

# Decisions without the cache: a second guard, CACHE_SIZE=0.
start_guard CACHE_SIZE=0
drive authorize.uncached authorize 16 --tenant-dir "$work/tenant"
drive authorize.batch.uncached authorize-batch 1 --tenant-dir "$work/tenant"
stop_guard
