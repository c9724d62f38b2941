# Shared by bench/run.sh and bench/run_pg.sh (sourced with the script's
# arguments): [SECONDS_PER_ROUND] [CONNECTIONS] [ROUNDS] and BENCH_ROWS,
# wrk runs, medians, and A-against-B comparisons in alternating rounds.
# Expects $work (a scratch directory) before compare runs.

DURATION=${1:-3}
CONNS=${2:-32}
ROUNDS=${3:-5}
ROWS=${BENCH_ROWS:-10000}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

# wrk: "Requests/sec: N" and, with --latency, "50% N(us|ms|s)" and
# "99% …": prints r/s, p50 and p99 (in ms).
measure() {
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$@")
  awk 'function ms(v,  u) {u=v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v);
                           return (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v}
       /Requests\/sec/ {rps=$2}
       $1 == "50%" {p50 = ms($2)}
       $1 == "99%" {p99 = ms($2)}
       END {printf "%s %.2f %.2f\n", rps, p50, p99}' <<<"$out"
}

# The header of compare's table; $1 names the first column.
table_header() {
  printf '%-52s %11s %7s %7s %12s %7s %7s %7s\n' "$1" "A r/s" "p50 ms" "p99 ms" \
    "B r/s" "p50 ms" "p99 ms" "A/B"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# compare LABEL both|a URL_A URL_B [wrk args]: A and B in alternating
# rounds, the wrk args given to both or to A only; medians of r/s and p99
# for each, and of the per-round A/B ratio.
compare() {
  local label=$1 who=$2 a=$3 b=$4; shift 4
  local b_args=()
  [ "$who" = both ] && b_args=("$@")
  : >"$work/r"; : >"$work/b"; : >"$work/ratio"
  for _ in $(seq "$ROUNDS"); do
    read -r r_rps r_p50 r_p99 < <(measure "$@" "$a")
    read -r b_rps b_p50 b_p99 < <(measure "${b_args[@]}" "$b")
    echo "$r_rps $r_p50 $r_p99" >>"$work/r"; echo "$b_rps $b_p50 $b_p99" >>"$work/b"
    awk -v a="$r_rps" -v b="$b_rps" 'BEGIN {printf "%.3f\n", a / b}' >>"$work/ratio"
  done
  printf '%-52s %11s %7s %7s %12s %7s %7s %7s\n' "$label" \
    "$(cut -d' ' -f1 "$work/r" | median)" "$(cut -d' ' -f2 "$work/r" | median)" \
    "$(cut -d' ' -f3 "$work/r" | median)" \
    "$(cut -d' ' -f1 "$work/b" | median)" "$(cut -d' ' -f2 "$work/b" | median)" \
    "$(cut -d' ' -f3 "$work/b" | median)" "$(median <"$work/ratio")"
}
# rss_of PID: a process's resident memory now and at its peak, in MiB.
rss_of() {
  awk '/^VmRSS/ {now=$2} /^VmHWM/ {peak=$2}
       END {printf "%.1f MiB (peak %.1f MiB)", now / 1024, peak / 1024}' "/proc/$1/status"
}

wait_for() {
  for _ in $(seq 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; exit 1
}

# The workloads restkit and its baseline both serve, restkit at
# 127.0.0.1:$1 and the baseline at 127.0.0.1:$2: one book, a page with
# its count, an equality filter, a search with fields and sort, and a
# create (last: it grows the table; wrk script $work/post.lua).
against_baseline() {
  local a=$1 b=$2 path
  cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"title":"Benchmark","author":"Writer","year":2001}'
wrk.headers["Content-Type"] = "application/json"
LUA
  for path in "/v1/books/3" "/v1/books?limit=20&offset=100" \
              "/v1/books?filter%5Bauthor%5D=Author%207&limit=20" \
              "/v1/books?q=(author:Author%207)&fields=id,title&sort=-year&limit=20"; do
    curl -sf "127.0.0.1:$a$path" >/dev/null; curl -sf "127.0.0.1:$b$path" >/dev/null
    compare "GET $path" both "http://127.0.0.1:$a$path" "http://127.0.0.1:$b$path"
  done
  compare "POST /v1/books" both "http://127.0.0.1:$a/v1/books" "http://127.0.0.1:$b/v1/books" \
    -s "$work/post.lua"
}
