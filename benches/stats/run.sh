#!/bin/sh
# Times each statistics endpoint over the whole year of a data dir filled by `stats-fill`, against
# a running server: `benches/stats/run.sh BASE_URL ADMIN_TOKEN [REPEATS]`. Prints the median and
# the slowest of REPEATS requests (default 20) per endpoint, after one warm-up request each.
set -eu
base=$1
token=$2
repeats=${3:-20}
from=$(date -u -d '365 days ago' +%F)
to=$(date -u +%F)
for path in "logins" "lives" "records" "logins?format=csv" "records?format=csv&table=top_views"; do
    case $path in *\?*) sep='&' ;; *) sep='?' ;; esac
    url="$base/api/v1/admin/stats/$path${sep}from=$from&to=$to"
    curl -sf -o /dev/null -H "authorization: Bearer $token" "$url"
    times=$(for _ in $(seq "$repeats"); do
        curl -sf -o /dev/null -w '%{time_total}\n' -H "authorization: Bearer $token" "$url"
    done | sort -n)
    median=$(echo "$times" | sed -n "$(( (repeats + 1) / 2 ))p")
    slowest=$(echo "$times" | tail -1)
    echo "$path: median ${median}s, slowest ${slowest}s"
done
