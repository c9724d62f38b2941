#!/usr/bin/env bash
# Live feeds under load (§16, issue 21): followers of /v1/books on the demo
# (books public) while books are POSTed at a steady rate.
#
#   bench/live.sh [FOLLOWERS] [WRITES_PER_SECOND] [SECONDS] [ROUNDS]
#
# Each round runs four phases while wrk loads GET /v1/books/3 — no
# followers; FOLLOWERS idle; the writes alone; FOLLOWERS and the writes —
# and prints the ratios of its requests/s: what idle followers cost
# everyone else, and what delivering the writes to them costs. The load
# client (followers, writer, wrk) shares the machine with the server. Prints delay (write sent ->
# event) p50/p99, events missing or repeated, server CPU and RSS per idle
# follower. Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
FOLLOWERS=${1:-1000}
RATE=${2:-100}
SECS=${3:-10}
ROUNDS=${4:-3}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin restkit --example live_fanout
BIN=${BENCH_RESTKIT:-$PWD/target/release/restkit}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
sed 's/^name = "books"$/name = "books"\nscopes = { read = "", write = "" }/' \
  examples/library/restkit.toml >"$work/live.toml"
cat >>"$work/live.toml" <<TOML

[rate_limit]
anonymous = { requests = 1000000000, period = "1s" }
public = { requests = 1000000000, period = "1s" }
authenticated = { requests = 1000000000, period = "1s" }

[live]
max_streams_per_caller = $((FOLLOWERS + 10))
max_streams = $((FOLLOWERS + 10))
TOML
sed -i 's/^\[server\]$/[server]\nmax_connections = 4096/' "$work/live.toml"
( cd "$work" && RUST_LOG=${BENCH_LOG:-info} exec "$BIN" serve --config "$work/live.toml" \
    --bind 127.0.0.1:18090 >/dev/null 2>&1 ) &
pid=$!
for _ in $(seq 100); do curl -fs 127.0.0.1:18090/health >/dev/null && break; sleep 0.1; done
: >"$work/r-idle"; : >"$work/r-busy"
# phase NAME FOLLOWERS RATE: one run of the example, wrk on GET one.
phase() {
  echo "== round $round: $2 followers, $3 writes/s"
  LIVE_WRK_URL=http://127.0.0.1:18090/v1/books/3 target/release/examples/live_fanout \
    127.0.0.1:18090 "$pid" "$2" "$3" "$SECS" | tee "$work/$1"
}
ratio() { # A B OUT: requests/s of phase A over phase B, appended to OUT
  awk -v a="$(awk '/^meanwhile/ {print $2}' "$work/$1")" \
      -v b="$(awk '/^meanwhile/ {print $2}' "$work/$2")" 'BEGIN {printf "%.3f\n", a / b}' |
    tee -a "$work/$3"
}
for round in $(seq "$ROUNDS"); do
  phase none 0 0
  phase idle "$FOLLOWERS" 0
  printf 'GET one with %s idle followers / without: ' "$FOLLOWERS"; ratio idle none r-idle
  phase alone 0 "$RATE"
  phase with "$FOLLOWERS" "$RATE"
  printf 'GET one with %s followers and %s writes/s / the writes alone: ' "$FOLLOWERS" "$RATE"
  ratio with alone r-busy
done
med() { sort -g "$work/$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "median over $ROUNDS rounds: idle followers $(med r-idle), followers with writes $(med r-busy)"
