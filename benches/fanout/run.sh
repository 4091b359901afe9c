#!/usr/bin/env bash
# Runs the fan-out benchmark of docs/BENCHMARKS.md: RoomManager and the Node `ws` peer, with
# 1,000 and 10,000 viewers, offered rates doubling from 25k deliveries/s. Extra arguments go to
# every run (e.g. --secs 5). Results: target/fanout/*.md (tables) and results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
# 10,000 viewers need 10,000 sockets in each process (and a few more).
ulimit -n "$(ulimit -Hn)"
cargo build --release --features bench --bin fanout
(cd benches/peer && npm install --no-audit --no-fund --silent)
out=target/fanout
mkdir -p "$out"
for viewers in ${VIEWERS:-1000 10000}; do
  for target in ${TARGETS:-roommanager peer}; do
    echo "== $target, $viewers viewers; $(uptime)"
    args=(--boost --viewers "$viewers" --json "$out/results.jsonl")
    if [ "$target" = peer ]; then args+=(--peer spawn); fi
    target/release/fanout "${args[@]}" "$@" | tee "$out/$target-$viewers.md"
  done
done
