#!/usr/bin/env bash
# The recordings catalogue benchmark of docs/BENCHMARKS.md: fills a data dir on tmpfs with
# 100,000 recordings over 1,000 hosts (records-fill, through the Store API), serves it with the
# release build, and runs wrk against listing and search. Needs wrk (Debian: `apt-get install wrk`).
# DURATION, THREADS and CONNECTIONS override wrk's settings.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --features bench --bin records-fill --bin roommanager
data=/dev/shm/rm-records-bench
rm -rf "$data"
target/release/records-fill --data-dir "$data" --records 100000 --hosts 1000
target/release/roommanager --config benches/records/bench.toml --data-dir "$data" &
server=$!
trap 'kill "$server"' EXIT
base=http://127.0.0.1:18090
until curl -sf "$base/healthz" >/dev/null; do sleep 0.2; done
for path in \
  "/api/v1/records" \
  "/api/v1/records?sort=most_viewed&page=100" \
  "/api/v1/records?sort=longest&per_page=100" \
  "/api/v1/records?host=500" \
  "/api/v1/records/search?q=%E7%9B%B4%E6%92%AD" \
  "/api/v1/records/search?q=jazz&sort=longest" \
  "/api/v1/records/search?q=host00042" \
  "/api/v1/records/search?q=nothing%20like%20this"; do
  echo "== $path; $(uptime)"
  wrk --latency -t "${THREADS:-2}" -c "${CONNECTIONS:-8}" -d "${DURATION:-15s}" "$base$path"
done
