#!/usr/bin/env bash
# Identity benchmarks: password login at saturation next to the Argon2 ceiling
# measured in the same run, GET /v1/me with a session token and with an access token,
# and token refresh; each beside the empty axum baseline with the same load
# generator. Loopback only, bounded in time.
#
#   bash bench/identity.sh       # DURATION=10s
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
DURATION="${DURATION:-10s}"
PORT="${GUARD_PORT:-18090}"
BASELINE_PORT="${BASELINE_PORT:-18091}"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin guard --example empty_axum --example argon2_ceiling
BIN="$CARGO_TARGET_DIR/release"
G="http://127.0.0.1:$PORT"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
report() { # label wrk-output
  printf '%-44s %10s req/s   p50 %-9s p95/p99 %s / %s   non-2xx %s\n' "$1" \
    "$(awk '/^Requests\/sec/ {print $2}' "$2")" "$(awk '$1 == "50%" {print $2}' "$2")" \
    "$(awk '$1 == "90%" {print $2}' "$2")" "$(awk '$1 == "99%" {print $2}' "$2")" \
    "$(awk '/Non-2xx/ {print $5}' "$2" | tr -d '\n')"
}
run() { # label connections threads url [script]
  local out="$work/out.wrk" args=(-t"$3" -c"$2" -d"$DURATION" --latency)
  [ -n "${5:-}" ] && args+=(-s "$5")
  wrk "${args[@]}" "$4" > "$out"
  report "$1" "$out"
}

echo "machine: $(nproc) cores, $(uname -r); wrk on loopback, sharing the cores"
"$BIN/examples/argon2_ceiling"
"$BIN/examples/empty_axum" "127.0.0.1:$BASELINE_PORT" & pids+=($!)
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
run "baseline: empty axum handler (c=32)" 32 1 "http://127.0.0.1:$BASELINE_PORT/health"

(cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=warn \
  GUARD_BOOTSTRAP_ADMIN_EMAIL=bench@example.com GUARD_BOOTSTRAP_ADMIN_PASSWORD='bench passphrase 42' \
  "$BIN/guard" serve > "$work/guard.log" 2>&1) & pids+=($!)
wait_http "$G/health/ready"
LOGIN_BODY='{"email":"bench@example.com","password":"bench passphrase 42"}'
login() { curl -fs "$G/v1/auth/password/login" -H 'X-Tenant-ID: default' -H 'Content-Type: application/json' -d "$LOGIN_BODY"; }
SESSION=$(login | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_token"])')
ACCESS=$(login | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

cat > "$work/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-ID"] = "default"
wrk.body = '$LOGIN_BODY'
LUA
run "guard: POST /v1/auth/password/login (c=2)" 2 1 "$G/v1/auth/password/login" "$work/login.lua"
run "guard: POST /v1/auth/password/login (c=8)" 8 1 "$G/v1/auth/password/login" "$work/login.lua"

for token in SESSION ACCESS; do
  cat > "$work/me.lua" <<LUA
wrk.headers["X-Tenant-ID"] = "default"
wrk.headers["Authorization"] = "Bearer ${!token}"
LUA
  run "guard: GET /v1/me with $(echo $token | tr A-Z a-z) token (c=32)" 32 1 "$G/v1/me" "$work/me.lua"
done

# Refresh: each wrk thread holds one connection and its own token family, replacing
# the token with the one each answer returns (a spent token would revoke the family).
THREADS=8
tokens=""
for _ in $(seq 1 $THREADS); do
  tokens+="\"$(login | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')\","
done
cat > "$work/refresh.lua" <<LUA
local tokens = { $tokens }
local n = 0
function setup(thread) n = n + 1; thread:set("token", tokens[n]) end
function request()
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["X-Tenant-ID"] = "default" },
    '{"refresh_token":"' .. token .. '"}')
end
function response(status, headers, body)
  local next = body:match('"refresh_token":"([^"]+)"')
  if next then token = next end
end
LUA
run "guard: POST /v1/auth/token/refresh (c=$THREADS)" $THREADS $THREADS "$G/v1/auth/token/refresh" "$work/refresh.lua"
