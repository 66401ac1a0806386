#!/usr/bin/env bash
# The operations guide's login load test, against rate limits and brute-force
# protection at their defaults: 100 virtual users (wrk, 100 connections from
# 127.0.0.1) post sign-ins with wrong passwords for rotating accounts to
# /v1/auth/password/login with X-Tenant-ID, while legitimate users sign in from other
# loopback addresses (127.0.0.2 …) every LEGIT_EVERY seconds (below their own limit). Prints the attackers' status codes,
# the legitimate users' results, the headers of a refused answer, and the blocked-IP
# list. Loopback only; bounded by DURATION.
#
#   bash bench/login_flood.sh                      # SQLite, DURATION=60s
#   BACKEND=postgres bash bench/login_flood.sh     # PostgreSQL and Redis on 127.0.0.1
#   FLOOD_DURATION=30s                             # the flood's length (before DURATION)
#   BENCH_RECORDS=/abs/records.jsonl               # also append the figures (bench/report.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
# FLOOD_DURATION first: bench/report.sh sets DURATION for its other, shorter loads.
DURATION="${FLOOD_DURATION:-${DURATION:-60s}}"
BACKEND="${BACKEND:-sqlite}"
PORT="${GUARD_PORT:-18092}"
LEGIT_USERS="${LEGIT_USERS:-8}"
LEGIT_EVERY="${LEGIT_EVERY:-8}"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [ -z "${SKIP_BUILD:-}" ]; then # bench/report.sh has built them
  cargo build --release --quiet -p guard-cli --bin guard
  cargo build --release --quiet -p guard-bench
fi
BIN="$CARGO_TARGET_DIR/release"
BASELINE_PORT="${BASELINE_PORT:-18093}"
G="http://127.0.0.1:$PORT"

# shellcheck source=bench/lib.sh
source bench/lib.sh

env_common=(GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=warn)
if [ "$BACKEND" = postgres ]; then
  database="guard_flood_$$"
  psql -qU postgres -h 127.0.0.1 -c "CREATE DATABASE $database" >/dev/null
  env_common+=(DATABASE_URL="postgres://postgres@127.0.0.1/$database?sslmode=disable" REDIS_URL="redis://127.0.0.1:6379"
    REDIS_KEY_PREFIX="guard-flood-$$:" GUARD_MASTER_KEY="$(openssl rand -base64 32)")
fi
guard() { (cd "$work" && env -i "${env_common[@]}" "$BIN/guard" "$@"); }
for n in $(seq 1 "$LEGIT_USERS"); do
  echo "legit passphrase $n" | guard user create "user$n@example.com" --password-stdin >/dev/null
done
(cd "$work" && exec env -i "${env_common[@]}" "$BIN/guard" serve > "$work/guard.log" 2>&1) & pids+=($!)
wait_http "$G/health/ready" || { cat "$work/guard.log"; exit 1; }

cat > "$work/flood.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-ID"] = "default"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; n = 0 end
function request()
  n = n + 1
  local body = string.format('{"email":"victim%d@example.com","password":"guess %d"}', n % 1000, n)
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + count end
  end
  local line = "attacker statuses:"
  for status, count in pairs(total) do line = line .. string.format(" %d=%d", status, count) end
  io.write(line .. "\n")
  io.write(string.format("attacker requests/s %.0f, p99 %.2fms\n", summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000))
end
LUA

legit() { # a sign-in every LEGIT_EVERY seconds per legitimate user, each from its own address, until told to stop
  local n="$1" ok=0 other=0
  while [ ! -e "$work/stop" ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --interface "127.0.0.$((n + 1))" "$G/v1/auth/password/login" \
      -H 'X-Tenant-ID: default' -H 'Content-Type: application/json' \
      -d "{\"email\":\"user$n@example.com\",\"password\":\"legit passphrase $n\"}")
    if [ "$code" = 200 ]; then ok=$((ok + 1)); else other=$((other + 1)); echo "user$n got $code"; fi
    sleep "$LEGIT_EVERY"
  done
  echo "legit user$n (127.0.0.$((n + 1))): $ok signed in, $other refused"
}
echo "machine: $(nproc) cores, $(uname -r); backend: $BACKEND; defaults: login 10/1m,burst=5 per address and account, block after 10 failures a minute"
"$BENCH" baseline --listen "127.0.0.1:$BASELINE_PORT" & pids+=($!)
wait_http "http://127.0.0.1:$BASELINE_PORT/health"
wrk -t2 -c100 -d10s --latency "http://127.0.0.1:$BASELINE_PORT/health" > "$work/baseline.out"
baseline_rps="$(awk '/^Requests\/sec/ {print $2}' "$work/baseline.out")"
printf 'baseline (empty axum, wrk -t2 -c100, 10 s): %s requests/s, p99 %s\n' \
  "$baseline_rps" "$(awk '$1 == "99%" {print $2}' "$work/baseline.out")"
record baseline.flood "$baseline_rps" req/s "guard-bench baseline (empty axum handler), GET /health, wrk -t2 -c100 -d10s"
for n in $(seq 1 "$LEGIT_USERS"); do legit "$n" > "$work/legit$n.out" & pids+=($!); done
wrk -t2 -c100 -d"$DURATION" --latency -s "$work/flood.lua" "$G/v1/auth/password/login" > "$work/wrk.out"
touch "$work/stop"; sleep "$((LEGIT_EVERY + 1))"
grep -E "^attacker" "$work/wrk.out"
cat "$work"/legit*.out
echo "a refused attacker request:"
curl -s -D - -o "$work/body.json" "$G/v1/auth/password/login" -H 'X-Tenant-ID: default' -H 'Content-Type: application/json' \
  -d '{"email":"victim1@example.com","password":"guess"}' | grep -iE '^(HTTP|retry-after|ratelimit|content-type)'
cat "$work/body.json"; echo
echo "a rate-limited request (7 quick wrong sign-ins from 127.0.0.250; the 6th and 7th are over the burst of 5):"
for _ in 1 2 3 4 5 6; do
  curl -s -o /dev/null --interface 127.0.0.250 "$G/v1/auth/password/login" -H 'X-Tenant-ID: default' \
    -H 'Content-Type: application/json' -d '{"email":"someone@example.com","password":"guess"}'
done
curl -s -D - -o "$work/body.json" --interface 127.0.0.250 "$G/v1/auth/password/login" -H 'X-Tenant-ID: default' \
  -H 'Content-Type: application/json' -d '{"email":"someone@example.com","password":"guess"}' | grep -iE '^(HTTP|retry-after|ratelimit)'
cat "$work/body.json"; echo
echo "guard security blocked-ips list:"
guard security blocked-ips list

# The records (bench/report.sh), before the verdict below.
how="wrk -t2 -c100 -d$DURATION, wrong passwords for 1,000 rotating accounts from 127.0.0.1, limits at their defaults"
# "attacker requests/s N, p99 Xms", written by flood.lua's done().
record flood.attacker.throughput "$(sed -nE 's/^attacker requests\/s ([0-9.]+),.*/\1/p' "$work/wrk.out")" req/s "$how"
record flood.attacker.p99 "$(sed -nE 's/^attacker requests\/s .*, p99 ([0-9.]+)ms.*/\1/p' "$work/wrk.out")" ms "$how"
# "attacker statuses: 200=.. 429=..": the 5xx answers, summed (0 without any).
record flood.5xx "$({ grep -E '^attacker statuses:' "$work/wrk.out" | grep -oE ' 5[0-9]{2}=[0-9]+' || true; } \
  | awk -F= '{ s += $2 } END { print s + 0 }')" count "5xx answers to the attacker; $how"
# "legit userN (127.0.0.M): OK signed in, OTHER refused", one line per legitimate user.
legit_totals="$(cat "$work"/legit*.out | sed -nE 's/^legit user[0-9]+ .*: ([0-9]+) signed in, ([0-9]+) refused$/\1 \2/p' \
  | awk '{ ok += $1; all += $1 + $2 } END { print ok + 0, all + 0 }')"
how_legit="$LEGIT_USERS users signing in every ${LEGIT_EVERY}s, each from its own loopback address, during the flood"
record flood.legit.signed_in "${legit_totals% *}" count "$how_legit"
record flood.legit.attempts "${legit_totals#* }" count "$how_legit"

server_errors=$(grep -oE ' 5[0-9]{2}=[0-9]+' "$work/wrk.out" || true)
[ -z "$server_errors" ] || { echo "server errors under load:$server_errors"; exit 1; }
