#!/usr/bin/env bash
# Runs the fan-out benchmark of docs/BENCHMARKS.md: RoomManager and the Node `ws` peer compared
# in one invocation (`--compare`: both get their viewers, then each step runs on one and then the
# other), with 1,000 and 10,000 viewers, offered rates doubling from 25k deliveries/s. Extra
# arguments go to every run (e.g. --secs 6). Results: target/fanout/*.md and results.jsonl.
# Run it on a quiet machine: the figures mean nothing while other work shares the cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Two servers with 10,000 viewers each need 20,000 sockets in the client (and a few more).
ulimit -n "$(ulimit -Hn)"
cargo build --release --features bench --bin fanout
(cd benches/peer && npm install --no-audit --no-fund --silent)
out=target/fanout
mkdir -p "$out"
for viewers in ${VIEWERS:-1000 10000}; do
  echo "== $viewers viewers; $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD); $(uptime)"
  target/release/fanout --compare --boost --viewers "$viewers" --json "$out/results.jsonl" "$@" \
    | tee "$out/compare-$viewers.md"
done
