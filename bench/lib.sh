# shellcheck shell=bash
# Shared by the benchmark scripts (sourced from the repository root): a scratch
# directory, background processes and a throw-away database, all removed on exit,
# and waiting for an HTTP endpoint to answer.
work="$(mktemp -d)"
pids=()
database=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$database" ] && psql -qU postgres -h 127.0.0.1 -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
# Sets url to an empty database of $BACKEND, dropping the previous one (call it in the
# script's own shell, not a subshell, so that cleanup knows which to drop).
fresh_database() {
  if [ "${BACKEND:-sqlite}" = postgres ]; then
    [ -n "$database" ] && psql -qU postgres -h 127.0.0.1 -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
    fresh_count=$(( ${fresh_count:-0} + 1 ))
    database="${bench_name:-guard_bench}_$$_$fresh_count"
    psql -qU postgres -h 127.0.0.1 -c "CREATE DATABASE $database" >/dev/null
    url="postgres://postgres@127.0.0.1/$database?sslmode=disable"
  else
    rm -rf "$work/data"
    url="sqlite://$work/data/guard.db"
  fi
}
wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

# guard-bench (crates/bench: cargo build --release -p guard-bench): the baseline server
# (guard-bench baseline --listen ADDR), the Argon2id ceiling and the records.
BENCH="${BENCH:-${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}/release/guard-bench}"
# record ID VALUE UNIT [HOW]: appends one figure to $BENCH_RECORDS, the records
# bench/report.sh renders BENCHMARKS.md from; without BENCH_RECORDS, nothing. VALUE may
# carry a unit or thousands separators ("12.34ms", "850µs", "1,234"): its leading number
# is kept. A value that is not a number, or a failed write, is reported on stderr and
# does not stop the benchmark.
record() {
  [ -n "${BENCH_RECORDS:-}" ] || return 0
  local value
  value="$(printf '%s' "${2:-}" | tr -d ', ' | sed -nE 's/^([-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?).*$/\1/p')"
  value="$(printf '%s' "${value#+}" | sed -E 's/^(-?)\./\10./; s/\.$//')" # "+.5" -> "0.5", "5." -> "5"
  if [ -z "$value" ]; then
    echo "record $1: no number in '${2:-}'; not recorded" >&2
    return 0
  fi
  # --value=...: a negative value must not read as an option.
  "$BENCH" record --append "$BENCH_RECORDS" --backend "${BACKEND:-sqlite}" --id "$1" --value="$value" \
    --unit "${3:-}" --how="${4:-}" || echo "record $1: guard-bench record failed; not recorded" >&2
}

# wrk prints p50/p75/p90/p99; this script, appended to a wrk script, adds p95.
cat > "$work/p95.lua" <<'LUA'
function done(summary, latency, requests)
  io.write(string.format("p95 %.2fms\n", latency:percentile(95) / 1000))
end
LUA
# One line from a wrk output file: label, req/s, p50, p95, p99, non-2xx.
report() { # label wrk-output
  printf '%-60s %9s req/s   p50 %-8s p95 %-9s p99 %-9s non-2xx %s\n' "$1" \
    "$(awk '/^Requests\/sec/ {print $2}' "$2")" "$(awk '$1 == "50%" {print $2}' "$2")" \
    "$(awk '$1 == "p95" {print $2}' "$2")" "$(awk '$1 == "99%" {print $2}' "$2")" \
    "$(awk '/Non-2xx/ {print $5}' "$2" | tr -d '\n')"
}
