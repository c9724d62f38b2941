#!/usr/bin/env bash
# Loads restkit's demo and a hand-written axum + sqlx baseline (same SQLite
# file, same pragmas and pool sizes) with wrk, one after the other, and
# prints requests/s, p99 latency and restkit/baseline ratios.
#
#   bench/run.sh [SECONDS_PER_ROUND] [CONNECTIONS] [ROUNDS]
#
#   BENCH_ROWS=10000    books in the table (the demo seeds 1,000; the rest
#                       are generated); BENCH_ROWS=1000000 for a large table
#   BENCH_LOG=info      restkit's request log level (info: one line per
#                       request, as in production)
#   BENCH_VARIANTS_ONLY=1 only the restkit-against-itself table (formats,
#                       compression)
#   BENCH_BASELINE_ONLY=1 only the restkit-against-the-baseline table
#   BENCH_RESTKIT=path    a restkit binary to measure instead of this tree's
#                       (to compare two versions against the same baseline)
#
# restkit and the baseline alternate in short rounds so both see the same
# machine noise; the figures are medians over rounds, the ratio the median
# of per-round ratios. POST runs last (it grows the table).
#
# Needs wrk (apt-get install wrk) and python3. Talks only to 127.0.0.1. The
# machine is shared and noisy: read the ratios, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh "$@"

cargo build --release --quiet --bin restkit --example bench_baseline
BIN=${BENCH_RESTKIT:-$PWD/target/release/restkit}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The demo with its books public (scope ""), so restkit and the baseline
# (which has no authentication) do the same work; what a token costs is
# measured separately below, on the same server.
sed 's/^name = "books"$/name = "books"\nscopes = { read = "", write = "" }/' \
  examples/library/restkit.toml >"$work/public.toml"
# The measured server runs its rate limiter (§9) as production does, with
# quotas no load here reaches; the one on 18082 has the tiers off, to show
# what the limiter costs (and, with redis-server installed, the one on
# 18083 limits through Redis).
cp "$work/public.toml" "$work/unlimited.toml"
cp "$work/public.toml" "$work/redis.toml"
cat >>"$work/public.toml" <<'TOML'

[rate_limit]
anonymous = { requests = 1000000000, period = "1s" }
public = { requests = 1000000000, period = "1s" }
authenticated = { requests = 1000000000, period = "1s" }
TOML
cat >>"$work/unlimited.toml" <<'TOML'

[rate_limit]
token = { requests = 0 }
anonymous = { requests = 0 }
public = { requests = 0 }
authenticated = { requests = 0 }
TOML
cat >>"$work/redis.toml" <<'TOML'

[rate_limit]
backend = "redis"
redis_url = "redis://127.0.0.1:16379/"
anonymous = { requests = 1000000000, period = "1s" }
public = { requests = 1000000000, period = "1s" }
authenticated = { requests = 1000000000, period = "1s" }
TOML
( cd "$work" && RUST_LOG=${BENCH_LOG:-info} exec "$BIN" serve --config "$work/public.toml" \
    --bind 127.0.0.1:18080 >/dev/null 2>&1 ) &
restkit_pid=$!
wait_for 127.0.0.1:18080/health

# Grow the seeded table to ROWS books, in the demo's pattern (author K =
# N mod 50, year 1950 + N mod 70), through SQLite itself.
python3 - "$work/restkit-demo.db" "$ROWS" <<'PY'
import sqlite3, sys
db, rows = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db, timeout=30)
have = c.execute("SELECT COUNT(*) FROM books").fetchone()[0]
now = "2026-01-01T00:00:00.000000Z"
def gen():
    for n in range(have + 1, rows + 1):
        yield (n, f"Book {n}", f"Author {n % 50}", 1950 + n % 70, f"978-1-{n:08d}", now, now)
c.executemany("INSERT INTO books (id, title, author_name, year, isbn, created_at, update_time)"
              " VALUES (?, ?, ?, ?, ?, ?, ?)", gen())
c.commit()
c.execute("ANALYZE")
print(f"books: {c.execute('SELECT COUNT(*) FROM books').fetchone()[0]}", file=sys.stderr)
PY

target/release/examples/bench_baseline 127.0.0.1:18081 "$work/restkit-demo.db" &
baseline_pid=$!
wait_for 127.0.0.1:18081/v1/books/3
( cd "$work" && RUST_LOG=${BENCH_LOG:-info} exec "$BIN" serve --config "$work/unlimited.toml" \
    --bind 127.0.0.1:18082 >/dev/null 2>&1 ) &
wait_for 127.0.0.1:18082/health
if command -v redis-server >/dev/null; then
  redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  ( cd "$work" && RUST_LOG=${BENCH_LOG:-info} exec "$BIN" serve --config "$work/redis.toml" \
      --bind 127.0.0.1:18083 >/dev/null 2>&1 ) &
  wait_for 127.0.0.1:18083/health
fi


echo "books=$ROWS rounds=$ROUNDS x ${DURATION}s per server, $CONNS connections; medians over rounds"
echo "A = restkit, B = the hand-written baseline"
table_header "endpoint"
# The SQLite writer's commits and the write requests they carried, from
# restkit's /metrics (a binary without the counters prints nothing).
write_groups() {
  curl -sf 127.0.0.1:18080/metrics | awk '
    /^restkit_db_write_commits_total / {c=$2} /^restkit_db_committed_writes_total / {w=$2}
    END {if (c != "") print c, w}'
}
if [ -z "${BENCH_VARIANTS_ONLY:-}" ]; then
  read -r c0 w0 < <(write_groups) || true
  against_baseline 18080 18081
  # Resident memory after the loads above (VmHWM: the peak).
  echo "RSS: restkit $(rss_of "$restkit_pid"), baseline $(rss_of "$baseline_pid")"
  read -r c1 w1 < <(write_groups) || true
  if [ -n "${c1:-}" ]; then
    awk -v c=$((c1 - c0)) -v w=$((w1 - w0)) -v n="$CONNS" 'BEGIN {
      printf "POST with %d connections: %d writes in %d commits, %.1f writes per commit\n",
        n, w, c, (c > 0) ? w / c : 0 }'
  fi
fi

[ -z "${BENCH_BASELINE_ONLY:-}" ] || exit 0

# restkit against itself: what a format or a coding costs over the same
# request in JSON, identity (ratio = variant r/s ÷ plain r/s; 1.00 = free).
echo
echo "restkit variants against the same request as plain JSON (ratio = variant / plain)"
echo "A = the variant, B = restkit on the plain request"
table_header "variant"
# restkit PATH (with wrk args) against restkit PLAIN.
variant() {
  local label=$1 plain=$2 path=$3; shift 3
  compare "$label" a "http://127.0.0.1:18080$path" "http://127.0.0.1:18080$plain" "$@"
}
TOKEN=$(curl -sf -u 1:pass2 -d grant_type=password -d username=stan -d password=pass \
  127.0.0.1:18080/v1/access_token | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
variant "Bearer JWT GET /v1/books/3" "/v1/books/3" "/v1/books/3" -H "Authorization: Bearer $TOKEN"
variant "GET /openapi.json (vs /v1/books/3)" "/v1/books/3" "/openapi.json"
variant "GET /docs (vs /v1/books/3)" "/v1/books/3" "/docs"
page="/v1/books?limit=100&offset=100"
variant "XML  $page" "$page" "/v1/books.xml?limit=100&offset=100"
variant "CSV  $page" "$page" "/v1/books.csv?limit=100&offset=100"
variant "HTML $page" "$page" "/v1/books.html?limit=100&offset=100"
variant "gzip GET /v1/books?limit=20" "/v1/books?limit=20" "/v1/books?limit=20" -H "Accept-Encoding: gzip"
variant "br   GET /v1/books?limit=20" "/v1/books?limit=20" "/v1/books?limit=20" -H "Accept-Encoding: br"
compare "limiter in-process vs off: GET /v1/books/3" a "http://127.0.0.1:18080/v1/books/3" \
  "http://127.0.0.1:18082/v1/books/3"
if command -v redis-server >/dev/null; then
  compare "limiter via Redis vs off: GET /v1/books/3" a "http://127.0.0.1:18083/v1/books/3" \
    "http://127.0.0.1:18082/v1/books/3"
fi
