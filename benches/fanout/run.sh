#!/usr/bin/env bash
# Runs the fan-out benchmark of docs/BENCHMARKS.md: RoomManager and the Node `ws` peer compared
# in one invocation (`--compare`: both get their viewers, then each step runs on one and then the
# other), with 1,000 and 9,950 viewers (2 × 10,000 sockets would pass the 20,000 open files one
# process may hold here), offered rates doubling from 25k deliveries/s. Extra
# arguments go to every run (e.g. --secs 6). Results: target/fanout/*.md and results.jsonl.
# `run.sh --sweep [ARGS]` runs "Fan-out: how cost grows" instead: `fanout --sweep` (one room of
# 100 to 15,000 viewers and 500 rooms × 20, both servers, 25 deliveries/s per viewer), its table
# in target/fanout/sweep.md and its charts in docs/bench/.
# `run.sh --floor [ARGS]` runs "The kernel's floor" instead: `fanout --floor` (one thread writing
# one frame per socket, no server) at N = 1,000 and 10,000, tables in target/fanout/floor-N.md.
# Run it on a quiet machine: the figures mean nothing while other work shares the cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Two servers with 10,000 viewers each need 20,000 sockets in the client (and a few more).
ulimit -n "$(ulimit -Hn)"
cargo build --release --features bench --bin fanout
(cd benches/peer && npm install --no-audit --no-fund --silent)
out=target/fanout
mkdir -p "$out"
if [ "${1:-}" = --floor ]; then
  shift
  for viewers in ${VIEWERS:-1000 10000}; do
    echo "== floor, $viewers connections; $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD); $(uptime)" \
      | tee "$out/floor-$viewers.md"
    target/release/fanout --floor --boost --viewers "$viewers" --json "$out/results.jsonl" "$@" \
      | tee -a "$out/floor-$viewers.md"
  done
  exit
fi
if [ "${1:-}" = --sweep ]; then
  shift
  echo "== sweep; $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD); $(uptime)" | tee "$out/sweep.md"
  target/release/fanout --sweep --boost --charts docs/bench --json "$out/results.jsonl" "$@" \
    | tee -a "$out/sweep.md"
  exit
fi
for viewers in ${VIEWERS:-1000 9950}; do
  echo "== $viewers viewers; $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD); $(uptime)"
  target/release/fanout --compare --boost --viewers "$viewers" --json "$out/results.jsonl" "$@" \
    | tee "$out/compare-$viewers.md"
done
