#!/usr/bin/env bash
# Backup and restore at scale: 1,000,000 users, a session each, and 10,000,000 audit
# events, on SQLite or PostgreSQL. Each guard figure has its baseline, measured in the
# same run on the same database: SQLite's VACUUM INTO (a raw copy, uncompressed), and
# pg_dump -Fc / pg_restore for PostgreSQL.
#
#   bash bench/backup.sh                       # SQLite
#   BACKEND=postgres bash bench/backup.sh      # PostgreSQL on 127.0.0.1
#   USERS=100000 EVENTS=1000000 bash bench/backup.sh   # smaller
#   CROSS=0 bash bench/backup.sh               # skip restoring into the other backend
#   BENCH_RECORDS=/abs/records.jsonl           # also append the figures (bench/report.sh)
#
# The rows are written by SQL, not through guard (hours otherwise): same columns and
# sizes as guard's own, ids in time order as guard's UUIDv7 ids are, but the audit rows
# carry made-up MACs and hashes, so their chain does not verify; backup and restore do
# not look at that.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/guard-target}"
BACKEND="${BACKEND:-sqlite}"
USERS="${USERS:-1000000}"
EVENTS="${EVENTS:-10000000}"
CROSS="${CROSS:-1}"
BIN="$CARGO_TARGET_DIR/release"

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_name=guard_backup_bench
if [ -z "${SKIP_BUILD:-}" ]; then # bench/report.sh has built them
  cargo build --release --quiet -p guard-cli --bin guard
  cargo build --release --quiet -p guard-bench
fi

export GUARD_MASTER_KEY="dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=" LOG_LEVEL=warn
export BACKUP_DIR="$work/backups"
# A real Argon2id hash, the same for every user.
HASH='$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vv8lR3x3QmKJQ5lLh1Q4cJ2m7yq1l3vQ6Fz3r4mGkqM'

seconds() { local s; s=$(date +%s.%N); "$@" >"$work/out" 2>"$work/err" || { cat "$work/out" "$work/err"; exit 1; }; echo "$(date +%s.%N) - $s" | bc; }
size() { du -b "$1" | cut -f1; }
mib() { echo "scale=1; $1 / 1048576" | bc; }

fresh_database
DATABASE_URL="$url" "$BIN/guard" migrate up --no-backup >/dev/null
# Any command past migrations creates the default tenant.
DATABASE_URL="$url" "$BIN/guard" tenant list >/dev/null
echo "seeding $USERS users with a session each and $EVENTS audit events ($BACKEND)"
start=$(date +%s)
if [ "$BACKEND" = postgres ]; then
  psql -qU postgres -h 127.0.0.1 -d "$database" -v ON_ERROR_STOP=1 <<SQL
INSERT INTO users (id, tenant_id, email, display_name, status, password_hash, password_change_required, created_at, updated_at, roles)
SELECT lpad(to_hex(i), 32, '0')::uuid, (SELECT id FROM tenants WHERE slug = 'default'), 'user' || i || '@example.com', 'User ' || i,
       'active', '$HASH', false, '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', '[]'
FROM generate_series(1, $USERS) i;
INSERT INTO sessions (id, tenant_id, user_id, token_hash, created_at, last_seen_at, expires_at, idle_expires_at, ip, user_agent)
SELECT ('1' || lpad(right(id::text, 12), 31, '0'))::uuid, tenant_id, id, sha256(id::text::bytea), created_at, created_at,
       '2026-12-31T00:00:00Z', '2026-12-31T00:00:00Z', '10.0.0.1', 'Mozilla/5.0 (bench)'
FROM users;
INSERT INTO audit_events (id, tenant_id, seq, at_us, event_type, actor, target, result, ip, user_agent, request_id, details, mac, hash)
SELECT ('2' || lpad(to_hex(i), 31, '0'))::uuid, (SELECT id FROM tenants WHERE slug = 'default'), i, 1764000000000000 + i * 1000, 'user.login',
       'user:' || (i % 1000000), 'session', 'success', '10.0.' || (i % 250) || '.' || (i % 200), 'Mozilla/5.0 (bench)',
       'req-' || i, '{"method":"password"}', sha256(('m' || i)::bytea), sha256(('h' || i)::bytea)
FROM generate_series(1::bigint, $EVENTS) i;
ANALYZE;
SQL
  db_bytes=$(psql -tAU postgres -h 127.0.0.1 -d "$database" -c "SELECT pg_database_size(current_database())")
else
  sqlite3 -bail "$work/data/guard.db" <<SQL
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $USERS)
INSERT INTO users (id, tenant_id, email, display_name, status, password_hash, password_change_required, created_at, updated_at, roles)
SELECT CAST(printf('u%015x', i) AS BLOB), (SELECT id FROM tenants WHERE slug = 'default'), 'user' || i || '@example.com', 'User ' || i,
       'active', '$HASH', 0, '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', '[]' FROM n;
INSERT INTO sessions (id, tenant_id, user_id, token_hash, created_at, last_seen_at, expires_at, idle_expires_at, ip, user_agent)
SELECT CAST('s' || substr(CAST(id AS TEXT), 2) AS BLOB), tenant_id, id, randomblob(32), created_at, created_at,
       '2026-12-31T00:00:00Z', '2026-12-31T00:00:00Z', '10.0.0.1', 'Mozilla/5.0 (bench)' FROM users;
COMMIT;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $EVENTS)
INSERT INTO audit_events (id, tenant_id, seq, at_us, event_type, actor, target, result, ip, user_agent, request_id, details, mac, hash)
SELECT CAST(printf('a%015x', i) AS BLOB), (SELECT id FROM tenants WHERE slug = 'default'), i, 1764000000000000 + i * 1000, 'user.login',
       'user:' || (i % 1000000), 'session', 'success', '10.0.' || (i % 250) || '.' || (i % 200), 'Mozilla/5.0 (bench)',
       'req-' || i, '{"method":"password"}', randomblob(32), randomblob(32) FROM n;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
  db_bytes=$(size "$work/data/guard.db")
fi
echo "seeded in $(( $(date +%s) - start ))s; database $(mib "$db_bytes") MiB"
seeded="$USERS users with a session each and $EVENTS audit events, $BACKEND"
record backup.users "$USERS" count "users seeded by SQL, a session each"
record backup.events "$EVENTS" count "audit events seeded by SQL"
record backup.database.size "$(mib "$db_bytes")" MiB "the seeded database ($seeded)"
source_url="$url"
source_database="$database"

t=$(seconds env DATABASE_URL="$source_url" "$BIN/guard" backup create --name bench)
file="$BACKUP_DIR/bench.guardbak"
printf '%-44s %8.1f s   %9s MiB\n' "guard backup create" "$t" "$(mib "$(size "$file")")"
record backup.create "$t" s "guard backup create, $seeded"
record backup.create.size "$(mib "$(size "$file")")" MiB "the .guardbak of guard backup create, $seeded"
t=$(seconds env DATABASE_URL="$source_url" "$BIN/guard" backup verify "$file")
printf '%-44s %8.1f s\n' "guard backup verify (checksums, every row)" "$t"
record backup.verify "$t" s "guard backup verify (checksums, every row), $seeded"
if [ "$BACKEND" = postgres ]; then
  t=$(seconds pg_dump -Fc -U postgres -h 127.0.0.1 -f "$work/baseline.dump" "$source_database")
  printf '%-44s %8.1f s   %9s MiB\n' "baseline: pg_dump -Fc" "$t" "$(mib "$(size "$work/baseline.dump")")"
  record backup.baseline "$t" s "baseline: pg_dump -Fc of the same database, $(mib "$(size "$work/baseline.dump")") MiB, $seeded"
else
  t=$(seconds sqlite3 "$work/data/guard.db" "VACUUM INTO '$work/baseline.db'")
  printf '%-44s %8.1f s   %9s MiB\n' "baseline: VACUUM INTO (uncompressed copy)" "$t" "$(mib "$(size "$work/baseline.db")")"
  record backup.baseline "$t" s \
    "baseline: SQLite VACUUM INTO (uncompressed copy) of the same database, $(mib "$(size "$work/baseline.db")") MiB, $seeded"
fi

# Restore into an empty database of the same backend (the source stays for the
# baseline restore below).
database=""
fresh_database
t=$(seconds env DATABASE_URL="$url" "$BIN/guard" restore "$file" --yes)
printf '%-44s %8.1f s\n' "guard restore (same backend)" "$t"
record backup.restore "$t" s "guard restore of that backup into an empty $BACKEND database, $seeded"
if [ "$BACKEND" = postgres ]; then
  psql -qU postgres -h 127.0.0.1 -c "CREATE DATABASE ${database}_base" >/dev/null
  t=$(seconds pg_restore -U postgres -h 127.0.0.1 -d "${database}_base" "$work/baseline.dump")
  printf '%-44s %8.1f s\n' "baseline: pg_restore" "$t"
  record backup.restore.baseline "$t" s "baseline: pg_restore of the pg_dump -Fc into an empty database, $seeded"
  psql -qU postgres -h 127.0.0.1 -c "DROP DATABASE ${database}_base" >/dev/null
fi
if [ "$BACKEND" = postgres ]; then
  for db in "$source_database" "$database"; do
    psql -qU postgres -h 127.0.0.1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  done
  database=""
fi

if [ "$CROSS" = 1 ]; then
  other=$([ "$BACKEND" = postgres ] && echo sqlite || echo postgres)
  BACKEND="$other" fresh_database
  t=$(seconds env DATABASE_URL="$url" "$BIN/guard" restore "$file" --yes)
  printf '%-44s %8.1f s\n' "guard restore into $other" "$t"
  record backup.restore.cross "$t" s "guard restore of the $BACKEND backup into an empty $other database, $seeded"
fi
