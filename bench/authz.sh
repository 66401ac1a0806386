#!/usr/bin/env bash
# Authorization benchmarks, each beside a baseline measured in the same run:
#  1. in-process decisions through guard's engine with a tenant of 100 policies and
#     570 entities, and batches of 100 (example authz_bench), beside one permit-all
#     policy decided the same way;
#  2. POST /v1/authorize over HTTP with the same tenant (wrk, 10,000 distinct
#     requests rotating, 64 and 16 connections; once with the decision cache off,
#     CACHE_SIZE=0, and once with it on), beside the empty axum handler;
#  3. POST /v1/authorize/batch with 100 distinct requests, one connection;
#  4. a large tenant: the same policies with LARGE_ENTITIES stored entities
#     (1,000,000 by default; 0 skips it), loaded through PUT /v1/entities 1,000 at a
#     time, then POST /v1/authorize without the decision cache, 16 and 64
#     connections, 10,000 distinct requests spread over the whole tenant — beside the
#     small tenant's figures (CACHE_SIZE=0) of the same run. Each guard's resident
#     memory (RSS) is printed after its load.
# Loopback only; every load is bounded in time (the large load by LOAD_TIMEOUT).
#
#   bash bench/authz.sh                        # SQLite
#   BACKEND=postgres bash bench/authz.sh       # PostgreSQL on 127.0.0.1
#   DURATION=10s DECISIONS=200000 LARGE_ENTITIES=1000000 LOAD_TIMEOUT=1800
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
DURATION="${DURATION:-10s}"
BACKEND="${BACKEND:-sqlite}"
DECISIONS="${DECISIONS:-200000}"
LARGE_ENTITIES="${LARGE_ENTITIES:-1000000}"
LOAD_TIMEOUT="${LOAD_TIMEOUT:-1800}"
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
"$BIN/examples/authz_bench" "$DECISIONS" "$work/tenant" "$LARGE_ENTITIES"
# Resident memory of a process, in MiB.
rss() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

"$BENCH" baseline --listen "127.0.0.1:$BASELINE_PORT" & baseline=$!
pids+=("$baseline")
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
cat "$work/p95.lua" > "$work/baseline.lua"
wrk -t2 -c64 -d"$DURATION" --latency -s "$work/baseline.lua" "http://127.0.0.1:$BASELINE_PORT/health" > "$work/out.wrk"
report "baseline: empty axum handler (wrk t=2 c=64)" "$work/out.wrk"
kill "$baseline"

# The rotating requests (as authz_bench wrote them), as a Lua table wrk sends in turn.
lua_requests() { # requests.json
  python3 - "$1" <<'PY'
import json, sys
print("bodies = {")
for body in json.load(open(sys.argv[1])):
    print("  [[" + json.dumps(body) + "]],")
print("}")
PY
}
lua_requests "$work/tenant/requests.json" > "$work/requests.lua"

key="$(openssl rand -base64 32)"
authorize_lua() { # requests.lua
  cat "$1"; cat <<LUA
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
  cat "$work/p95.lua"
}
start_guard() { # CACHE_SIZE
  fresh_database
  (cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=error DATABASE_URL="$url" \
    GUARD_MASTER_KEY="$key" RATE_LIMIT_ENABLED=false BRUTE_FORCE_PROTECTION=false CACHE_SIZE="$1" \
    GUARD_BOOTSTRAP_ADMIN_EMAIL=bench@example.com GUARD_BOOTSTRAP_ADMIN_PASSWORD='bench passphrase 42' \
    "$BIN/guard" serve > "$work/guard.log" 2>&1) & server=$!
  pids+=("$server")
  wait_http "$G/health/ready" || { cat "$work/guard.log"; exit 1; }
  token="$(curl -fs "$G/v1/auth/password/login" -H 'X-Tenant-ID: default' -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"bench passphrase 42"}' \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['session_token'])")"
  auth=(-H 'X-Tenant-ID: default' -H "Authorization: Bearer $token" -H 'Content-Type: application/json')
}
for cache in 0 10000; do
  start_guard "$cache"
  curl -fs -X PUT "$G/v1/policies" "${auth[@]}" --data-binary "@$work/tenant/policies.json" >/dev/null
  curl -fs -X PUT "$G/v1/entities" "${auth[@]}" --data-binary "@$work/tenant/entities.json" >/dev/null
  # One answer checked by eye in the log of the run: decision and reasons.
  echo "  sample: $(curl -fs "$G/v1/authorize" "${auth[@]}" --data-binary "@$work/tenant/one.json")"

  authorize_lua "$work/requests.lua" > "$work/authorize.lua"
  for connections in 64 16; do
    wrk -t2 -c"$connections" -d"$DURATION" --latency -s "$work/authorize.lua" "$G/v1/authorize" > "$work/out.wrk"
    report "guard POST /v1/authorize, CACHE_SIZE=$cache (wrk t=2 c=$connections)" "$work/out.wrk"
    if [ "$cache" = 0 ] && [ "$connections" = 16 ]; then
      record authz.small.decisions_per_s "$(awk '/^Requests\/sec/ {print $2}' "$work/out.wrk")" "req/s" \
        "POST /v1/authorize, CACHE_SIZE=0, wrk t=2 c=16, 100 policies, 570 entities, 10k distinct requests"
    fi
  done
  echo "  guard resident memory after the load: $(rss "$server") MiB"
  if [ "$cache" = 0 ]; then
    record authz.small.rss "$(rss "$server")" "MiB" "guard serve after the CACHE_SIZE=0 loads, 570 entities"
  fi

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

[ "$LARGE_ENTITIES" -gt 0 ] || exit 0
large="$work/tenant/large"
echo "large tenant: $(ls "$large"/entities-*.json | wc -l) files of up to 1,000 entities, the same 100 policies"
start_guard 0
curl -fs -X PUT "$G/v1/policies" "${auth[@]}" --data-binary "@$work/tenant/policies.json" >/dev/null
started=$(date +%s)
# Two uploads at a time (the machine's cores), each file one all-or-nothing upsert.
export G token
ls "$large"/entities-*.json | timeout "$LOAD_TIMEOUT" xargs -P 2 -I{} sh -c \
  'curl -fsS -o /dev/null -X PUT "$G/v1/entities" -H "X-Tenant-ID: default" -H "Authorization: Bearer $token" -H "Content-Type: application/json" --data-binary "@{}"' \
  || { echo "loading the large tenant failed or took over ${LOAD_TIMEOUT}s"; tail -5 "$work/guard.log"; exit 1; }
loaded=$(( $(date +%s) - started ))
stored="$(python3 - "$large" <<'PY'
import glob, json, sys
print(sum(len(json.load(open(f))) for f in glob.glob(sys.argv[1] + "/entities-*.json")))
PY
)"
echo "  loaded $stored entities through PUT /v1/entities in ${loaded}s; guard resident memory: $(rss "$server") MiB"
record authz.large.load_seconds "$loaded" "s" "PUT /v1/entities of $stored entities, 1,000 a call, two at a time"
echo "  sample: $(curl -fs "$G/v1/authorize" "${auth[@]}" --data-binary "@$large/one.json")"
lua_requests "$large/requests.json" > "$work/large-requests.lua"
authorize_lua "$work/large-requests.lua" > "$work/large-authorize.lua"
for connections in 64 16; do
  wrk -t2 -c"$connections" -d"$DURATION" --latency -s "$work/large-authorize.lua" "$G/v1/authorize" > "$work/out.wrk"
  report "guard POST /v1/authorize, $stored entities, CACHE_SIZE=0 (wrk t=2 c=$connections)" "$work/out.wrk"
  if [ "$connections" = 16 ]; then
    record authz.large.decisions_per_s "$(awk '/^Requests\/sec/ {print $2}' "$work/out.wrk")" "req/s" \
      "POST /v1/authorize, CACHE_SIZE=0, wrk t=2 c=16, 100 policies, $stored entities, 10k distinct requests"
  fi
done
echo "  guard resident memory after the load: $(rss "$server") MiB"
record authz.large.rss "$(rss "$server")" "MiB" "guard serve after the CACHE_SIZE=0 loads, $stored entities"
curl -fs "$G/admin/policy-stats" -H 'X-Tenant-ID: default' -H "Authorization: Bearer $token" \
  | python3 -c "import json,sys; d=json.load(sys.stdin); t=[x for x in d['tenants'] if 'decisions' in x][0]['decisions']; print('  policy-stats:', json.dumps(t))"
kill "$server"
wait "$server" 2>/dev/null || true
