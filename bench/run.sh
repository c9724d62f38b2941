#!/usr/bin/env bash
# Loads restkit's demo and a hand-written axum + sqlx baseline (same SQLite
# file, same pragmas and pool size) with wrk, one after the other, and
# prints requests/s, p99 latency and restkit/baseline ratios.
#
#   bench/run.sh [SECONDS_PER_ROUND] [CONNECTIONS] [ROUNDS]
#
# restkit and the baseline alternate in short rounds so both see the same
# machine noise; the figures are medians over rounds, the ratio the median
# of per-round ratios.
#
# Needs wrk (apt-get install wrk). Talks only to 127.0.0.1. The machine is
# shared and noisy: read the ratios, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-3}
CONNS=${2:-32}
ROUNDS=${3:-5}
EXTRA_PATHS=(
  "/v1/books?q=(author:Author%207)&fields=id,title&sort=-year&limit=20"
  "/v1/books?q=(author:Author%207)&fields=id,title&sort=-year&limit=20&envelope=true"
)
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet --bin restkit --example bench_baseline
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

( cd "$work" && RUST_LOG=${BENCH_LOG:-info} exec "$OLDPWD/target/release/restkit" serve --bind 127.0.0.1:18080 >/dev/null 2>&1 ) &
wait_for() {
  for _ in $(seq 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; exit 1
}
wait_for 127.0.0.1:18080/health
target/release/examples/bench_baseline 127.0.0.1:18081 "$work/restkit-demo.db" &
wait_for 127.0.0.1:18081/v1/books/3

# wrk: "Requests/sec: N" and, with --latency, "99% N(us|ms|s)" (in ms here).
measure() {
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$1")
  awk '/Requests\/sec/ {rps=$2}
       $1 == "99%" {v=$2; u=v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v);
                    p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v}
       END {printf "%s %.2f\n", rps, p99}' <<<"$out"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "rounds=$ROUNDS x ${DURATION}s per server, $CONNS connections; medians over rounds"
printf '%-44s %11s %9s %12s %9s %7s\n' "endpoint" "restkit r/s" "p99 ms" "baseline r/s" "p99 ms" "ratio"
for path in "/v1/books/3" "/v1/books?limit=20&offset=100" "${EXTRA_PATHS[@]}"; do
  curl -sf "127.0.0.1:18080$path" >/dev/null; curl -sf "127.0.0.1:18081$path" >/dev/null || true
  : >"$work/r"; : >"$work/b"; : >"$work/ratio"
  for _ in $(seq "$ROUNDS"); do
    read -r r_rps r_p99 < <(measure "http://127.0.0.1:18080$path")
    read -r b_rps b_p99 < <(measure "http://127.0.0.1:18081$path")
    echo "$r_rps $r_p99" >>"$work/r"; echo "$b_rps $b_p99" >>"$work/b"
    awk -v a="$r_rps" -v b="$b_rps" 'BEGIN {printf "%.3f\n", a / b}' >>"$work/ratio"
  done
  printf '%-44s %11s %9s %12s %9s %7s\n' "GET $path" \
    "$(cut -d' ' -f1 "$work/r" | median)" "$(cut -d' ' -f2 "$work/r" | median)" \
    "$(cut -d' ' -f1 "$work/b" | median)" "$(cut -d' ' -f2 "$work/b" | median)" \
    "$(median <"$work/ratio")"
done
