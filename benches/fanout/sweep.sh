#!/usr/bin/env bash
# "Fan-out: how cost grows" of docs/BENCHMARKS.md: `fanout --sweep` over one room of 100, 1,000,
# 5,000, 10,000 and 15,000 viewers and 500 rooms × 20 viewers, RoomManager and the Node `ws` peer
# in one invocation, at 25 deliveries/s per viewer; writes the charts into docs/bench/. Extra
# arguments go to fanout (e.g. --secs 6, --per-viewer-rate 50). Results: target/fanout/sweep.md
# and results.jsonl. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
# 15,000 viewers need 15,000 sockets in the client (and a few more).
ulimit -n "$(ulimit -Hn)"
cargo build --release --features bench --bin fanout
(cd benches/peer && npm install --no-audit --no-fund --silent)
out=target/fanout
mkdir -p "$out"
echo "== sweep; $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD); $(uptime)" | tee "$out/sweep.md"
target/release/fanout --sweep --boost --charts docs/bench --json "$out/results.jsonl" "$@" \
  | tee -a "$out/sweep.md"
