#!/bin/sh
# ffmpeg CPU per browser push, VP8 converted and H.264 copied (docs/BENCHMARKS.md):
# `benches/publish/run.sh [BINARY] [SECONDS] [WIDTHxHEIGHT]`. Needs nginx with the rtmp module and
# ffmpeg with libvpx, libx264 and libopus. The server's build profile does not matter: the
# figures are the push ffmpeg's own.
set -eu
binary=${1:-target/release/roommanager}
echo "$(date -u '+%F %H:%M UTC'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$(dirname "$0")/push.py" "$binary" "${2:-60}" "${3:-1280x720}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
