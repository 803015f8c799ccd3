#!/bin/sh
# Write Prometheus file_sd targets for a whole coolmesh room, asking any one
# of its agents (every agent knows the room). Run it every minute on the
# Prometheus server: coolmesh-file-sd.timer, or cron:
#
#   * * * * * prometheus /usr/share/doc/coolmesh/examples/prometheus/refresh-file-sd.sh
#
# Needs the coolmesh binary (the Debian package; its service need not run
# here). Settings come from the environment:
#
#   COOLMESH_AGENTS  agents to ask, in order, until one answers
#                    (default: http://127.0.0.1:10027)
#   COOLMESH_ROOM    room name, part of the output file name (default: room)
#   FILE_SD_DIR      directory in prometheus.yml's file_sd_configs
#                    (default: /etc/prometheus/file_sd)
#   COOLMESH_PORT    HTTP port of the agents if it differs from the one in the
#                    agent's URL (--sd-port)
#
# The file is replaced atomically and only when its content changes. If no
# agent answers, the old file stays as it is (Prometheus keeps scraping the
# last known room, so AgentDown alerts keep working) and the script exits 1.
set -eu

agents=${COOLMESH_AGENTS:-http://127.0.0.1:10027}
room=${COOLMESH_ROOM:-room}
dir=${FILE_SD_DIR:-/etc/prometheus/file_sd}
out="$dir/coolmesh-$room.json"

mkdir -p "$dir"
tmp=$(mktemp "$dir/.coolmesh-$room.XXXXXX")
trap 'rm -f "$tmp"' EXIT INT TERM

for url in $agents; do
    if coolmesh state --cluster --format file_sd --url "$url" \
        ${COOLMESH_PORT:+--sd-port "$COOLMESH_PORT"} > "$tmp" 2>"$tmp.err"; then
        rm -f "$tmp.err"
        # An empty room would drop every target: keep the old file instead.
        if ! grep -q '"targets"' "$tmp"; then
            echo "refresh-file-sd: $url listed no targets; keeping $out" >&2
            exit 1
        fi
        if [ -f "$out" ] && cmp -s "$tmp" "$out"; then
            exit 0
        fi
        chmod 0644 "$tmp"
        mv -f "$tmp" "$out"
        echo "refresh-file-sd: wrote $out from $url"
        exit 0
    fi
    echo "refresh-file-sd: $url: $(cat "$tmp.err")" >&2
    rm -f "$tmp.err"
done

echo "refresh-file-sd: no agent answered ($agents); keeping $out as it is" >&2
exit 1
