#!/usr/bin/env bash
# Two server binaries over the same 100,000-record data dir, in one run, alternately: wrk on the
# searches and the first page of the catalogue, at 1 and at 8 connections. The data dir is the
# one run.sh fills (/dev/shm/rm-records-bench); ROUNDS (default 2) alternations.
#   benches/records/compare.sh BEFORE_BINARY AFTER_BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
data=/dev/shm/rm-records-bench
base=http://127.0.0.1:18090
paths=(
  "/api/v1/records"
  "/api/v1/records/search?q=%E7%9B%B4%E6%92%AD"
  "/api/v1/records/search?q=host00042"
  "/api/v1/records/search?q=nothing%20like%20this"
)
for round in $(seq "${ROUNDS:-2}"); do
  for side in before after; do
    binary=$1
    [ "$side" = after ] && binary=$2
    "$binary" --config benches/records/bench.toml --data-dir "$data" &
    server=$!
    until curl -sf "$base/healthz" >/dev/null; do sleep 0.2; done
    for path in "${paths[@]}"; do
      for c in 1 8; do
        t=$(( c < 2 ? 1 : 2 ))
        out=$(wrk --latency -t "$t" -c "$c" -d "${DURATION:-8s}" "$base$path")
        p50=$(awk '$1=="50%"{print $2}' <<<"$out")
        p99=$(awk '$1=="99%"{print $2}' <<<"$out")
        rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
        echo "round $round $side c=$c $path p50 $p50 p99 $p99 req/s $rps load $(cut -d' ' -f1 /proc/loadavg)"
      done
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
  done
done
