#!/usr/bin/env bash
# Authorization benchmarks, each beside a baseline measured in the same run:
#  1. in-process decisions through guard's engine with a tenant of 100 policies and
#     570 entities, and batches of 100 (example authz_bench), beside one permit-all
#     policy decided the same way;
#  2. POST /v1/authorize over HTTP with the same tenant (wrk, 10,000 distinct
#     requests rotating, 64 and 16 connections; once with the decision cache off,
#     CACHE_SIZE=0, and once with it on), beside the empty axum handler;
#  3. POST /v1/authorize/batch with 100 distinct requests, one connection.
# Loopback only; every load is bounded in time.
#
#   bash bench/authz.sh                        # SQLite
#   BACKEND=postgres bash bench/authz.sh       # PostgreSQL on 127.0.0.1
#   DURATION=10s DECISIONS=200000
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
DURATION="${DURATION:-10s}"
BACKEND="${BACKEND:-sqlite}"
DECISIONS="${DECISIONS:-200000}"
PORT="${GUARD_PORT:-18094}"
BASELINE_PORT="${BASELINE_PORT:-18095}"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
BIN="$CARGO_TARGET_DIR/release"
G="http://127.0.0.1:$PORT"

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_name=guard_authz_bench

cargo build --release --quiet -p guard-cli --bin guard --example authz_bench
cargo build --release --quiet -p guard-bench

echo "machine: $(nproc) cores, $(uname -r); backend: $BACKEND; load generator on loopback, sharing the cores"
echo "in process:"
"$BIN/examples/authz_bench" "$DECISIONS" "$work/tenant"

"$BENCH" baseline --listen "127.0.0.1:$BASELINE_PORT" & baseline=$!
pids+=("$baseline")
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
cat "$work/p95.lua" > "$work/baseline.lua"
wrk -t2 -c64 -d"$DURATION" --latency -s "$work/baseline.lua" "http://127.0.0.1:$BASELINE_PORT/health" > "$work/out.wrk"
report "baseline: empty axum handler (wrk t=2 c=64)" "$work/out.wrk"
kill "$baseline"

# The rotating requests, as a Lua table wrk sends in turn.
python3 - "$work/tenant" > "$work/requests.lua" <<'PY'
import json, sys
actions = ["read", "edit", "share"]
print("bodies = {")
for n in range(10000):
    body = {"principal": {"type": "Bench::User", "id": f"u{(n * 7) % 200}"},
            "action": {"type": "Bench::Action", "id": actions[n % 3]},
            "resource": {"type": "Bench::Doc", "id": f"doc{(n * 13) % 300}"},
            "context": {"mfa": n % 4 != 0, "hour": n % 24}}
    print("  [[" + json.dumps(body) + "]],")
print("}")
PY

key="$(openssl rand -base64 32)"
for cache in 0 10000; do
  fresh_database
  (cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=error DATABASE_URL="$url" \
    GUARD_MASTER_KEY="$key" RATE_LIMIT_ENABLED=false BRUTE_FORCE_PROTECTION=false CACHE_SIZE="$cache" \
    GUARD_BOOTSTRAP_ADMIN_EMAIL=bench@example.com GUARD_BOOTSTRAP_ADMIN_PASSWORD='bench passphrase 42' \
    "$BIN/guard" serve > "$work/guard.log" 2>&1) & server=$!
  pids+=("$server")
  wait_http "$G/health/ready" || { cat "$work/guard.log"; exit 1; }
  token="$(curl -fs "$G/v1/auth/password/login" -H 'X-Tenant-ID: default' -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"bench passphrase 42"}' \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['session_token'])")"
  auth=(-H 'X-Tenant-ID: default' -H "Authorization: Bearer $token" -H 'Content-Type: application/json')
  curl -fs -X PUT "$G/v1/policies" "${auth[@]}" --data-binary "@$work/tenant/policies.json" >/dev/null
  curl -fs -X PUT "$G/v1/entities" "${auth[@]}" --data-binary "@$work/tenant/entities.json" >/dev/null
  # One answer checked by eye in the log of the run: decision and reasons.
  echo "  sample: $(curl -fs "$G/v1/authorize" "${auth[@]}" --data-binary "@$work/tenant/one.json")"

  { cat "$work/requests.lua"; cat <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-ID"] = "default"
wrk.headers["Authorization"] = "Bearer $token"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter % #bodies) + 1])
end
LUA
    cat "$work/p95.lua"; } > "$work/authorize.lua"
  for connections in 64 16; do
    wrk -t2 -c"$connections" -d"$DURATION" --latency -s "$work/authorize.lua" "$G/v1/authorize" > "$work/out.wrk"
    report "guard POST /v1/authorize, CACHE_SIZE=$cache (wrk t=2 c=$connections)" "$work/out.wrk"
  done

  { cat <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-ID"] = "default"
wrk.headers["Authorization"] = "Bearer $token"
local f = io.open("$work/tenant/batch.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
    cat "$work/p95.lua"; } > "$work/batch.lua"
  wrk -t1 -c1 -d"$DURATION" --latency -s "$work/batch.lua" "$G/v1/authorize/batch" > "$work/out.wrk"
  report "guard POST /v1/authorize/batch of 100, CACHE_SIZE=$cache (wrk c=1)" "$work/out.wrk"
  curl -fs "$G/admin/policy-stats" -H 'X-Tenant-ID: default' -H "Authorization: Bearer $token" \
    | python3 -c "import json,sys; d=json.load(sys.stdin); t=[x for x in d['tenants'] if 'decisions' in x][0]['decisions']; print('  policy-stats:', json.dumps(t))"
  kill "$server"
  wait "$server" 2>/dev/null || true
done
