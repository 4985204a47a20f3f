#!/usr/bin/env bash
# Zero-downtime upgrade under load: hey sends `GET /v2/` through the gateway
# to registry:2 on a new connection per request while
# `registry-gateway signal upgrade` hands the listening sockets to a new
# process. Prints hey's status codes and errors (every request must be
# answered 200) and when the old process exited. Not part of the test suite.
#
# Knobs (env): SECONDS_OF_LOAD=12 CONNS=16
#   GATEWAY_BIN=path: that binary instead of a release build
BENCH_NAME=upgrade
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SECONDS_OF_LOAD="${SECONDS_OF_LOAD:-12}" CONNS="${CONNS:-16}"
bench_start
command -v hey >/dev/null || die "hey is missing: apt-get install -y hey"

start_registry
gw_port="$(free_port)"
registry_gateway_yaml "$gw_port" "threads: 2, pid_file: $tmp/gateway.pid"
run_gateway info
old_pid=$gw_pid

hey -z "${SECONDS_OF_LOAD}s" -c "$CONNS" -disable-keepalive "http://127.0.0.1:$gw_port/v2/" >"$tmp/hey.txt" &
hey_pid=$!
sleep 2
signalled=$(date +%s.%N)
"$gateway_bin" --config "$tmp/gateway.yaml" signal upgrade
wait "$hey_pid"
new_pid="$(cat "$tmp/gateway.pid")"
pids+=("$new_pid")
for _ in $(seq 1 100); do kill -0 "$old_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$old_pid" 2>/dev/null && die "the old process $old_pid is still running"
exited=$(date +%s.%N)

echo "## Upgrade under load: ${SECONDS_OF_LOAD} s of hey -c $CONNS, a new connection per request"
echo
echo "$(nproc) cores, $(date -u +%F). Old process $old_pid, new process $new_pid; the old one exited"
echo "$(awk -v a="$signalled" -v b="$exited" 'BEGIN { printf "%.1f", b - a }') s after the signal (at the latest: checked every 0.1 s after hey)."
echo
hey_all_200 "$tmp/hey.txt"
