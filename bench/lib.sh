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
wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
