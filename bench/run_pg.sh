#!/usr/bin/env bash
# restkit on PostgreSQL against a hand-written axum + sqlx (postgres)
# baseline over the same database, with wrk, in alternating rounds; then
# two restkit instances against one on the same database.
#
#   bench/run_pg.sh [SECONDS_PER_ROUND] [CONNECTIONS] [ROUNDS]
#
#   BENCH_ROWS=10000     books in the table (BENCH_ROWS=1000000: large)
#   BENCH_LOG=info       restkit's request log level
#   BENCH_RESTKIT=path   another restkit binary to measure
#
# Starts its own PostgreSQL cluster (initdb into a temporary directory,
# 127.0.0.1:18432, as the postgres user when run as root; default
# durability settings) and stops it at the end. Needs wrk, curl, python3
# and PostgreSQL's server binaries (on PATH or in
# /usr/lib/postgresql/<version>/bin). The machine is shared and noisy:
# read the ratios, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh "$@"
pg_bin() { command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1; }
INITDB=$(pg_bin initdb); PG_CTL=$(pg_bin pg_ctl)
[ -n "$INITDB" ] || { echo "initdb is missing: apt-get install postgresql" >&2; exit 1; }

cargo build --release --quiet --bin restkit --example bench_baseline
BIN=${BENCH_RESTKIT:-$PWD/target/release/restkit}
work=$(mktemp -d)
as_owner=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$work"
  as_owner=(runuser -u postgres --)
fi
PORT=18432
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  "${as_owner[@]}" "$PG_CTL" -D "$work/pg" stop -m fast >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"${as_owner[@]}" "$INITDB" -D "$work/pg" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${as_owner[@]}" "$PG_CTL" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $PORT -k $work -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
URL="postgres://postgres@127.0.0.1:$PORT/bench"
psql() { command psql -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
psql -d postgres -c "CREATE DATABASE bench"

# The demo with its books public, as in bench/run.sh.
sed 's/^name = "books"$/name = "books"\nscopes = { read = "", write = "" }/' \
  examples/library/restkit.toml >"$work/public.toml"
cat >>"$work/public.toml" <<'TOML'

[rate_limit]
anonymous = { requests = 1000000000, period = "1s" }
public = { requests = 1000000000, period = "1s" }
authenticated = { requests = 1000000000, period = "1s" }
TOML
serve() {
  ( cd "$work" && RUST_LOG=${BENCH_LOG:-info} exec "$BIN" serve --config "$work/public.toml" \
      --database "$URL" --bind "127.0.0.1:$1" >/dev/null 2>&1 ) &
  wait_for "127.0.0.1:$1/health"
}
serve 18090

# Grow the seeded table to ROWS books in the demo's pattern, then move
# the identity sequence past them (as restkit's own seeding does).
psql -d bench <<SQL
INSERT INTO books (id, title, author_name, year, isbn, created_at, update_time)
SELECT n, 'Book ' || n, 'Author ' || (n % 50), 1950 + n % 70, '978-1-' || lpad(n::text, 8, '0'),
       '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z'
FROM generate_series((SELECT COUNT(*) + 1 FROM books), $ROWS) AS n;
SELECT setval(pg_get_serial_sequence('books', 'id'), (SELECT MAX(id) FROM books));
ANALYZE;
SQL
echo "books: $(psql -d bench -At -c 'SELECT COUNT(*) FROM books')" >&2

target/release/examples/bench_baseline 127.0.0.1:18091 "$URL" &
wait_for 127.0.0.1:18091/v1/books/3
serve 18092


echo "PostgreSQL, books=$ROWS rounds=$ROUNDS x ${DURATION}s per server, $CONNS connections; medians over rounds"
echo "A = restkit on PostgreSQL, B = the hand-written axum + sqlx baseline on the same database"
table_header "endpoint"
against_baseline 18090 18091

# Two instances against one: wrk loads A and B at once (half the
# connections each) and the two rates are summed, against one instance
# with all the connections. Everything shares the machine's cores.
echo
echo "two restkit instances (18090 + 18092) against one (18090), same PostgreSQL"
printf '%-52s %11s %11s %7s\n' "endpoint" "two r/s" "one r/s" "two/one"
pair() {
  local label=$1 path=$2; shift 2
  local half=$((CONNS / 2)) two one
  : >"$work/pair"
  for _ in $(seq "$ROUNDS"); do
    CONNS=$half measure "$@" "http://127.0.0.1:18090$path" >"$work/x" &
    CONNS=$half measure "$@" "http://127.0.0.1:18092$path" >"$work/y"
    wait %%
    two=$(awk '{s += $1} END {print s}' "$work/x" "$work/y")
    one=$(measure "$@" "http://127.0.0.1:18090$path" | cut -d' ' -f1)
    echo "$two $one" >>"$work/pair"
  done
  printf '%-52s %11s %11s %7s\n' "$label" "$(cut -d' ' -f1 "$work/pair" | median)" \
    "$(cut -d' ' -f2 "$work/pair" | median)" \
    "$(awk '{printf "%.3f\n", $1 / $2}' "$work/pair" | median)"
}
pair "GET /v1/books/3" "/v1/books/3"
pair "GET /v1/books?limit=20&offset=100" "/v1/books?limit=20&offset=100"
pair "POST /v1/books" "/v1/books" -s "$work/post.lua"
