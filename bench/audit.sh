#!/usr/bin/env bash
# Audit log benchmarks, each beside a baseline measured in the same run:
#  1. requests that emit an event: PATCH /v1/users/{id} (a user update and its
#     user.updated event, one transaction) against guard built without audit writes
#     (feature guard-store/bench-unaudited, benchmarks only), alternating the two
#     builds, and the empty axum handler;
#  2. ingest, sealing and verification through guard's own code (example audit_bench);
#  3. the first page of a one-day window with 10 million events stored.
# Loopback only; every load is bounded in time.
#
#   bash bench/audit.sh                        # SQLite
#   BACKEND=postgres bash bench/audit.sh       # PostgreSQL on 127.0.0.1
#   ONLY=http|ingest|verify|query bash bench/audit.sh
#   DURATION=10s EVENTS=10000000 VERIFY_EVENTS=1000000
#   BENCH_RECORDS=/abs/records.jsonl           # also append the figures (bench/report.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
DURATION="${DURATION:-10s}"
BACKEND="${BACKEND:-sqlite}"
export BACKEND # audit_bench records its figures under it
ONLY="${ONLY:-}"
EVENTS="${EVENTS:-10000000}"
VERIFY_EVENTS="${VERIFY_EVENTS:-1000000}"
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
PORT="${GUARD_PORT:-18092}"
BASELINE_PORT="${BASELINE_PORT:-18093}"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
BIN="$CARGO_TARGET_DIR/release"
G="http://127.0.0.1:$PORT"

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_name=guard_audit_bench

# The build without audit writes first, copied aside; then the real one, which stays.
# UNAUDITED_BIN names one built already (bench/report.sh builds it once for both
# backends).
if want http; then
  if [ -n "${UNAUDITED_BIN:-}" ]; then
    cp "$UNAUDITED_BIN" "$work/guard-unaudited"
  else
    cargo build --release --quiet --bin guard --features guard-store/bench-unaudited
    cp "$BIN/guard" "$work/guard-unaudited"
  fi
fi
if [ -z "${SKIP_BUILD:-}" ] || [ -z "${UNAUDITED_BIN:-}" ]; then
  cargo build --release --quiet -p guard-cli --bin guard --example audit_bench
  cargo build --release --quiet -p guard-bench
fi
cp "$BIN/guard" "$work/guard-audited"

echo "machine: $(nproc) cores, $(uname -r); backend: $BACKEND; load generator on loopback, sharing the cores"

if want http; then
  "$BENCH" baseline --listen "127.0.0.1:$BASELINE_PORT" & baseline=$!
  pids+=("$baseline")
  wait_http "http://127.0.0.1:$BASELINE_PORT/health"
  cat "$work/p95.lua" > "$work/baseline.lua"
  wrk -t1 -c32 -d"$DURATION" --latency -s "$work/baseline.lua" "http://127.0.0.1:$BASELINE_PORT/health" > "$work/out.wrk"
  report "baseline: empty axum handler (wrk c=32)" "$work/out.wrk"
  record baseline.audit.http "$(awk '/^Requests\/sec/ {print $2}' "$work/out.wrk")" req/s \
    "guard-bench baseline (empty axum handler), GET /health, wrk -t1 -c32 -d$DURATION"
  kill "$baseline"

  key="$(openssl rand -base64 32)"
  throughputs_unaudited="" throughputs_audited=""
  for round in 1 2; do
    for build in unaudited audited; do
      fresh_database
      (cd "$work" && exec env -i GUARD_LISTEN="127.0.0.1:$PORT" LOG_LEVEL=error DATABASE_URL="$url" \
        GUARD_MASTER_KEY="$key" RATE_LIMIT_ENABLED=false BRUTE_FORCE_PROTECTION=false \
        GUARD_BOOTSTRAP_ADMIN_EMAIL=bench@example.com GUARD_BOOTSTRAP_ADMIN_PASSWORD='bench passphrase 42' \
        "$work/guard-$build" serve > "$work/guard.log" 2>&1) & server=$!
      pids+=("$server")
      wait_http "$G/health/ready" || { cat "$work/guard.log"; exit 1; }
      token="$(curl -fs "$G/v1/auth/password/login" -H 'X-Tenant-ID: default' -H 'Content-Type: application/json' \
        -d '{"email":"bench@example.com","password":"bench passphrase 42"}' \
        | python3 -c "import json,sys; print(json.load(sys.stdin)['session_token'])")"
      user="$(curl -fs "$G/v1/users" -H 'X-Tenant-ID: default' -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d '{"email":"target@example.com","password":"a long enough passphrase"}' \
        | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")"
      cat > "$work/patch.lua" <<LUA
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-ID"] = "default"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"display_name":"Bench Target"}'
LUA
      cat "$work/p95.lua" >> "$work/patch.lua"
      wrk -t1 -c16 -d"$DURATION" --latency -s "$work/patch.lua" "$G/v1/users/$user" > "$work/out.wrk"
      report "guard $build: PATCH /v1/users/{id} (wrk c=16, round $round)" "$work/out.wrk"
      rps="$(awk '/^Requests\/sec/ {print $2}' "$work/out.wrk")"
      if [ "$build" = audited ]; then throughputs_audited+=" $rps"; else throughputs_unaudited+=" $rps"; fi
      if [ "$build" = audited ]; then
        # Every answered update left its event, sealed into one intact chain.
        (cd "$work" && env -i DATABASE_URL="$url" GUARD_MASTER_KEY="$key" LOG_LEVEL=error \
          "$work/guard-audited" audit verify --format json) > "$work/verify.json"
        python3 - "$work/verify.json" "$work/out.wrk" <<'PY'
import json, re, sys
report = json.load(open(sys.argv[1]))
wrk = open(sys.argv[2]).read()
requests = int(re.search(r"(\d+) requests in", wrk).group(1))
print(f"  events stored and sealed: {report['records']} for {requests} updates answered; chain intact: {report['intact']}")
PY
      fi
      kill "$server"
      wait "$server" 2>/dev/null || true
    done
  done
  # The cost of the event: the mean of the rounds of each build; negative = slower.
  mean() { echo "$1" | awk '{ for (i = 1; i <= NF; i++) { s += $i; n++ } } END { if (n) printf "%.1f", s / n }'; }
  audited="$(mean "$throughputs_audited")" unaudited="$(mean "$throughputs_unaudited")"
  cost="$(awk -v a="$audited" -v u="$unaudited" 'BEGIN { if (a != "" && u > 0) printf "%+.1f", (a / u - 1) * 100 }')"
  echo "  audited $audited req/s against unaudited $unaudited req/s (mean of the rounds): ${cost:-?} %"
  how="PATCH /v1/users/{id}, wrk -t1 -c16 -d$DURATION, mean of 2 rounds alternating the builds"
  record audit.http.audited "$audited" req/s "guard, $how"
  record audit.http.unaudited "$unaudited" req/s "guard built with guard-store/bench-unaudited, $how"
  record audit.http.cost "$cost" % "audited against unaudited throughput, negative = slower; $how"
fi

fresh_database
if want ingest; then
  echo "ingest through AuditLog::emit (group commit), the sealer running:"
  "$BIN/examples/audit_bench" "$url" ingest 30 64 5000
  "$BIN/examples/audit_bench" "$url" ingest 10 64
fi
if want verify; then
  fresh_database
  echo "append, seal and verify one chain:"
  "$BIN/examples/audit_bench" "$url" verify "$VERIFY_EVENTS"
fi
if want query; then
  fresh_database
  echo "first pages with $EVENTS events stored:"
  "$BIN/examples/audit_bench" "$url" query "$EVENTS" 2>/dev/null
fi
