#!/usr/bin/env bash
# Identity benchmarks: password login at saturation and at a fixed 80 % of the Argon2
# ceiling (measured in the same run), GET /v1/me with a session token and with an
# access token, and token refresh; each beside the empty axum baseline measured in the
# same run with the same load generator. Loopback only; every load is bounded in time.
#
#   bash bench/identity.sh                      # SQLite, DURATION=10s, every section
#   BACKEND=postgres bash bench/identity.sh     # PostgreSQL and Redis on 127.0.0.1
#   ONLY=refresh bash bench/identity.sh         # one section: login, me or refresh
#   FLOOD_GUARD=on ONLY=me bash bench/identity.sh   # with the per-address limit checked
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
DURATION="${DURATION:-10s}"
BACKEND="${BACKEND:-sqlite}"
ONLY="${ONLY:-}"
FAMILIES="${FAMILIES:-16}"
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
PORT="${GUARD_PORT:-18090}"
BASELINE_PORT="${BASELINE_PORT:-18091}"
for tool in wrk hey; do
  command -v "$tool" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done
cargo build --release --quiet -p guard-cli --bin guard
cargo build --release --quiet -p guard-bench
BIN="$CARGO_TARGET_DIR/release"
G="http://127.0.0.1:$PORT"

# shellcheck source=bench/lib.sh
source bench/lib.sh

run() { # label connections threads url [script]
  local out="$work/out.wrk" script="$work/run.lua"
  cat "${5:-/dev/null}" "$work/p95.lua" > "$script"
  wrk -t"$3" -c"$2" -d"$DURATION" --latency -s "$script" "$4" > "$out"
  report "$1" "$out"
}

echo "machine: $(nproc) cores, $(uname -r); backend: $BACKEND; load generators on loopback, sharing the cores"
ceiling_line="$("$BENCH" ceiling)"
echo "$ceiling_line"
ceiling="$(echo "$ceiling_line" | sed -E 's/.*ceiling ([0-9.]+) logins.*/\1/')"
"$BENCH" baseline --listen "127.0.0.1:$BASELINE_PORT" & pids+=($!)
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
run "baseline: empty axum handler (wrk c=32)" 32 1 "http://127.0.0.1:$BASELINE_PORT/health"

backend_env=()
if [ "$BACKEND" = postgres ]; then
  database="guard_bench_$$"
  psql -qU postgres -h 127.0.0.1 -c "CREATE DATABASE $database" >/dev/null
  backend_env=(DATABASE_URL="postgres://postgres@127.0.0.1/$database?sslmode=disable" REDIS_URL="redis://127.0.0.1:6379"
    REDIS_KEY_PREFIX="guard-bench-$$:" GUARD_MASTER_KEY="$(openssl rand -base64 32)")
fi
# Limits off: these runs measure sign-in and token throughput, which the login
# rate limit and brute-force protection exist to cut short (bench/login_flood.sh
# measures those). FLOOD_GUARD=on keeps the per-address limit on every request,
# set too high to refuse anything, to measure what the check itself costs.
limits=(RATE_LIMIT_ENABLED=false)
[ "${FLOOD_GUARD:-off}" = on ] && limits=(RATE_LIMIT_ENABLED=true RATE_LIMIT_API=1000000/1s,burst=1000000
  RATE_LIMIT_LOGIN=1000000/1s,burst=1000000)
(cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=warn "${backend_env[@]}" \
  "${limits[@]}" BRUTE_FORCE_PROTECTION=false \
  GUARD_BOOTSTRAP_ADMIN_EMAIL=bench@example.com GUARD_BOOTSTRAP_ADMIN_PASSWORD='bench passphrase 42' \
  "$BIN/guard" serve > "$work/guard.log" 2>&1) & pids+=($!)
wait_http "$G/health/ready" || { cat "$work/guard.log"; exit 1; }
LOGIN_BODY='{"email":"bench@example.com","password":"bench passphrase 42"}'
login() { curl -fs "$G/v1/auth/password/login" -H 'X-Tenant-ID: default' -H 'Content-Type: application/json' -d "$LOGIN_BODY"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

if want login; then
  cat > "$work/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-ID"] = "default"
wrk.body = '$LOGIN_BODY'
LUA
  run "guard: POST /v1/auth/password/login (wrk c=8)" 8 1 "$G/v1/auth/password/login" "$work/login.lua"
  # A fixed arrival rate of 80 % of the ceiling: hey's workers each send at most q
  # requests a second on a ticker, so with latency below 1/q the rate holds.
  workers=4
  rate="$(python3 -c "print(round($ceiling * 0.8 / $workers, 2))")"
  hey -z "$DURATION" -c "$workers" -q "$rate" -m POST -T application/json -H 'X-Tenant-ID: default' \
    -d "$LOGIN_BODY" "$G/v1/auth/password/login" > "$work/hey.out"
  printf '%-52s %9s req/s   p50 %-8s p95 %-9s p99 %-9s statuses %s\n' \
    "guard: POST /v1/auth/password/login (hey, $workers x $rate/s)" \
    "$(awk '/Requests\/sec/ {print $2}' "$work/hey.out")" \
    "$(awk '$1 == "50%" {print $3 * 1000 "ms"}' "$work/hey.out")" \
    "$(awk '$1 == "95%" {print $3 * 1000 "ms"}' "$work/hey.out")" \
    "$(awk '$1 == "99%" {print $3 * 1000 "ms"}' "$work/hey.out")" \
    "$(awk '/^[ \t]*\[[0-9]+\]/ {printf "%s%s ", $1, $2}' "$work/hey.out")"
fi

if want me; then
  SESSION=$(login | field session_token)
  ACCESS=$(login | field access_token)
  for token in SESSION ACCESS; do
    cat > "$work/me.lua" <<LUA
wrk.headers["X-Tenant-ID"] = "default"
wrk.headers["Authorization"] = "Bearer ${!token}"
LUA
    run "guard: GET /v1/me with $(echo $token | tr A-Z a-z) token (wrk c=32)" 32 1 "$G/v1/me" "$work/me.lua"
  done
fi

if want refresh; then
  # FAMILIES sessions, each its own refresh-token family. Each wrk thread keeps a pool
  # of its families' current tokens: a request takes one, its answer puts the next
  # back, so no token is ever in two requests at once (a spent token would end the
  # family).
  threads=2
  tokens=""
  for _ in $(seq 1 "$FAMILIES"); do tokens+="\"$(login | field refresh_token)\","; done
  cat > "$work/refresh.lua" <<LUA
local all = { $tokens }
local per, n = #all / $threads, 0
function setup(thread) thread:set("id", n); n = n + 1 end
function init(args)
  pool = {}
  for i = 1, per do pool[i] = all[id * per + i] end
end
function request()
  -- wrk builds one request per thread before connecting and never sends it: that
  -- one must not take a token out of the pool.
  local token
  if primed then token = table.remove(pool) else primed = true; token = pool and pool[1] or "none" end
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["X-Tenant-ID"] = "default" },
    '{"refresh_token":"' .. token .. '"}')
end
function response(status, headers, body)
  local next = body:match('"refresh_token":"([^"]+)"')
  if next then table.insert(pool, next) end
end
LUA
  run "guard: POST /v1/auth/token/refresh ($FAMILIES families, wrk c=$FAMILIES)" "$FAMILIES" "$threads" \
    "$G/v1/auth/token/refresh" "$work/refresh.lua"
fi
