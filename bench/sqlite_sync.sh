#!/usr/bin/env bash
# What each SQLITE_SYNCHRONOUS level costs: guard on a fresh SQLite file for each of
# normal, full (the default) and extra, driven with token refresh (a write per request:
# the new refresh token, the old one revoked, the audit record), with 16 connections
# for throughput and with one for the latency of a lone commit; beside the empty axum
# baseline loaded in the same run. Loopback only; every load is bounded in time.
#
#   bash bench/sqlite_sync.sh                  # DURATION=10s WARMUP=2s
#   LEVELS="normal full" DURATION=5s bash bench/sqlite_sync.sh
#   BENCH_RECORDS=/abs/records.jsonl           # also append the figures (bench/report.sh)
#
# The database lives under $CARGO_TARGET_DIR (a disk), not in /tmp, which may be a
# tmpfs where fsync costs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
LEVELS="${LEVELS:-normal full extra}"
PORT="${GUARD_PORT:-18090}"
BASELINE_PORT="${BASELINE_PORT:-18091}"
BIN="$CARGO_TARGET_DIR/release"
G="http://127.0.0.1:$PORT"
[ -n "${SKIP_BUILD:-}" ] || {
  cargo build --release --quiet -p guard-cli --bin guard
  cargo build --release --quiet -p guard-bench
}

# shellcheck source=bench/lib.sh
source bench/lib.sh
BENCH="$BIN/guard-bench"
# SQLite only: the setting means nothing to PostgreSQL.
export BACKEND=sqlite
out=()
[ -n "${BENCH_RECORDS:-}" ] && out=(--append "$BENCH_RECORDS" --backend sqlite)
data="$(mktemp -d "$CARGO_TARGET_DIR/sqlite-sync-bench.XXXXXX")"
trap 'cleanup; rm -rf "$data"' EXIT
filesystem="$(df -T "$data" | awk 'NR == 2 {print $2 " on " $1}')"

drive() { # id scenario connections
  "$BENCH" load --url "$G" --scenario "$2" --connections "$3" --warmup "$WARMUP" --duration "$DURATION" \
    --id "$1" "${out[@]}"
}

echo "machine: $(nproc) cores, $(uname -r); database on $filesystem; guard-bench on loopback, sharing the cores"
"$BENCH" baseline --listen "127.0.0.1:$BASELINE_PORT" & baseline=$!
pids+=("$baseline")
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
"$BENCH" load --url "http://127.0.0.1:$BASELINE_PORT" --scenario health --connections 32 --warmup "$WARMUP" \
  --duration "$DURATION" --id durability.baseline.health "${out[@]}"
kill "$baseline"; wait "$baseline" 2>/dev/null || true

key="$(openssl rand -base64 32)"
for level in $LEVELS; do
  rm -rf "$data/db"
  (cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=warn DATABASE_URL="sqlite://$data/db/guard.db" \
    SQLITE_SYNCHRONOUS="$level" GUARD_MASTER_KEY="$key" RATE_LIMIT_ENABLED=false BRUTE_FORCE_PROTECTION=false \
    GUARD_BOOTSTRAP_ADMIN_EMAIL=bench@example.com GUARD_BOOTSTRAP_ADMIN_PASSWORD='bench passphrase 42' \
    "$BIN/guard" serve > "$work/guard.log" 2>&1) & server=$!
  pids+=("$server")
  wait_http "$G/health/ready" || { cat "$work/guard.log"; exit 1; }
  echo "SQLITE_SYNCHRONOUS=$level"
  drive "durability.refresh.$level" refresh 16
  drive "durability.refresh-one.$level" refresh 1
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
done
