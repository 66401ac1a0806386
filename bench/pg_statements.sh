#!/usr/bin/env bash
# guard's large PostgreSQL statements: the batched refresh-token rotation (token
# refresh through HTTP) and the audit sealer (events through AuditLog::emit, sealed in
# batches), each beside the empty axum baseline loaded the same way in the same run.
# These are the statements that outgrow the driver's write buffer, where a socket
# without TCP_NODELAY waits for the peer's delayed acknowledgement. Loopback only;
# every load is bounded in time.
#
#   bash bench/pg_statements.sh                 # builds, then measures
#   SKIP_BUILD=1 DURATION=10s BENCH_RECORDS=/abs/records.jsonl bash bench/pg_statements.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
export BACKEND=postgres
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
PORT="${GUARD_PORT:-18190}"
BASELINE_PORT="${BASELINE_PORT:-18191}"
BIN="${BIN:-$CARGO_TARGET_DIR/release}"
G="http://127.0.0.1:$PORT"
[ -n "${SKIP_BUILD:-}" ] || {
  cargo build --release --quiet -p guard-cli --bin guard --example audit_bench
  cargo build --release --quiet -p guard-bench
}

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_name=guard_pg_statements
BENCH="$BIN/guard-bench"
out=()
[ -n "${BENCH_RECORDS:-}" ] && out=(--append "$BENCH_RECORDS" --backend postgres)

echo "machine: $(nproc) cores, $(uname -r); PostgreSQL and Redis on 127.0.0.1; binaries in $BIN" \
  "($(strings "$BIN/guard" | grep -o -m1 'sqlx-core-[0-9.]*'))"

"$BENCH" baseline --listen "127.0.0.1:$BASELINE_PORT" & baseline=$!
pids+=("$baseline")
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
"$BENCH" load --url "http://127.0.0.1:$BASELINE_PORT" --scenario health --connections 16 --warmup "$WARMUP" \
  --duration "$DURATION" --id pg-statements.baseline "${out[@]}"
kill "$baseline"; wait "$baseline" 2>/dev/null || true

fresh_database
key="$(openssl rand -base64 32)"
(cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=warn DATABASE_URL="$url" GUARD_MASTER_KEY="$key" \
  REDIS_URL="redis://127.0.0.1:6379" REDIS_KEY_PREFIX="guard-pg-statements-$$:" \
  RATE_LIMIT_ENABLED=false BRUTE_FORCE_PROTECTION=false \
  GUARD_BOOTSTRAP_ADMIN_EMAIL=bench@example.com GUARD_BOOTSTRAP_ADMIN_PASSWORD='bench passphrase 42' \
  "$BIN/guard" serve > "$work/guard.log" 2>&1) & server=$!
pids+=("$server")
wait_http "$G/health/ready" || { cat "$work/guard.log"; exit 1; }
for connections in 1 16; do
  "$BENCH" load --url "$G" --scenario refresh --connections "$connections" --warmup "$WARMUP" \
    --duration "$DURATION" --id "pg-statements.refresh.c$connections" "${out[@]}"
done
kill -TERM "$server"; wait "$server" 2>/dev/null || true

fresh_database
echo "ingest through AuditLog::emit (group commit), the sealer running:"
"$BIN/examples/audit_bench" "$url" ingest 10 64
