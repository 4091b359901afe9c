#!/usr/bin/env bash
# The HTTP benchmark of docs/BENCHMARKS.md ("HTTP: rooms listing, home page, room page first
# load"). `fanout --hold-rooms` starts RoomManager (the real app, router and server of
# `roommanager serve`, with the scripted media plane: the rtmp plane needs a push from OBS before
# a room is live) pinned to CPU 0, makes ROOMS (500) rooms live, each host connected, and holds
# them; wrk runs on CPU 1 against `GET /api/v1/rooms` (plain and gzipped) and the home page (plain
# and gzipped without a session, as the page cache serves the crowd; gzipped with a guest's
# session cookie, whose header is rendered per request around the cached content); then
# benches/http/first_load.py loads a room page as a browser with an empty cache would.
# Needs wrk (Debian: `apt-get install wrk`), curl and python3. DURATION (10s), THREADS (1) and
# CONNECTIONS (64) set wrk's options; SERVER_CONFIG names a config file for the server (default:
# ./roommanager.toml, whose log level `info` leaves the access log out). Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing (Debian: apt-get install wrk)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
cargo build --release --features bench --bin fanout
rooms=${ROOMS:-500}
# The holder runs until its standard input closes: the coprocess's pipe, closed on exit.
coproc HOLD {
  exec target/release/fanout --hold-rooms "$rooms" --server-cpu 0 --client-cpu 1 \
    ${SERVER_CONFIG:+--server-config "$SERVER_CONFIG"} 2>&1
}
holder=$HOLD_PID
trap 'exec {HOLD[1]}>&-; wait "$holder"' EXIT
base=""
while read -r line <&"${HOLD[0]}"; do
  echo "$line"
  case $line in
    ready:*)
      base=$(grep -o 'http://[0-9.:]*' <<<"$line")
      server=$(grep -o 'server pid [0-9]*' <<<"$line" | cut -d' ' -f3)
      break ;;
  esac
done
[ -n "$base" ] || { echo "the server did not start" >&2; exit 1; }
echo "# $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD); load $(cut -d' ' -f1-3 /proc/loadavg)"
# The server's CPU time (user + system, clock ticks) from /proc: its µs per request hold up better
# than requests/s while other work shares the machine.
server_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
hz=$(getconf CLK_TCK)
# A guest session, made as the site's own script makes one, for the signed-in row.
guest=$(curl -sf -X POST -H 'x-rm-csrf: 1' "$base/api/v1/guest" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
summary="| request | answer bytes | requests/s | p50 | p99 | server CPU % | server µs/request |"
summary+=$'\n'"|---|---:|---:|---:|---:|---:|---:|"
# Each: path, the Accept-Encoding asked with (identity: the plain answer, as wrk gets by
# default; gzip: as browsers ask), and who asks (anonymous, or signed-in: the guest's cookie).
for request in "/api/v1/rooms identity anonymous" "/api/v1/rooms gzip anonymous" \
  "/ identity anonymous" "/ gzip anonymous" "/ gzip signed-in"; do
  read -r path encoding who <<<"$request"
  headers=(-H "accept-encoding: $encoding")
  [ "$who" = signed-in ] && headers+=(-H "cookie: rm_session=$guest")
  bytes=$(curl -sf -o /dev/null -w '%{size_download}' "${headers[@]}" "$base$path")
  echo "== GET $path, Accept-Encoding: $encoding, $who: $bytes bytes"
  before=$(server_ticks)
  out=$(taskset -c 1 wrk --latency -t "${THREADS:-1}" -c "${CONNECTIONS:-64}" -d "${DURATION:-10s}" \
    "${headers[@]}" "$base$path")
  ticks=$(($(server_ticks) - before))
  echo "$out"
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  seconds=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' <<<"$out")
  cpu=$(awk -v t="$ticks" -v hz="$hz" -v s="$seconds" 'BEGIN {printf "%.0f", t / hz / s * 100}')
  per=$(awk -v t="$ticks" -v hz="$hz" -v n="$requests" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
  rate=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  summary+=$'\n'"| GET $path ($encoding, $who) | $bytes | $rate | $p50 | $p99 | $cpu | $per |"
done
echo
echo "$summary"
python3 benches/http/first_load.py "$base"
