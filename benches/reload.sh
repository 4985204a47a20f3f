#!/usr/bin/env bash
# Reload cost and safety: a gateway.yaml with REGISTRIES virtual registries
# (each with its own host name, upstream and Basic auth from one htpasswd
# file) in front of registry:2 is reloaded RELOADS times by SIGHUP while hey
# keeps sending authenticated `GET /v2/` to one of the registries. Prints
# how long each reload took to build and swap (the gateway logs it), and
# the answers hey got: every one must be 200. Not part of the test suite.
#
# Knobs (env): REGISTRIES=100 RELOADS=20 CONNS=16
#   GATEWAY_BIN=path: that binary instead of a release build
BENCH_NAME=reload
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
REGISTRIES="${REGISTRIES:-100}" RELOADS="${RELOADS:-20}" CONNS="${CONNS:-16}"
bench_start
command -v hey >/dev/null || die "hey is missing: apt-get install -y hey"

start_registry
htpasswd -nbB -C 4 bench bench-pw >"$tmp/users"
gw_port="$(free_port)"
{
  echo "server: { threads: 2 }"
  echo "listeners: [ { address: \"127.0.0.1:$gw_port\" } ]"
  echo "upstreams:"
  for ((i = 0; i < REGISTRIES; i++)); do echo "  up$i: { url: \"http://127.0.0.1:$reg_port\" }"; done
  echo "registries:"
  for ((i = 0; i < REGISTRIES; i++)); do
    echo "  - { name: r$i, hosts: [r$i.example], upstream: up$i, auth: { htpasswd: $tmp/users } }"
  done
  echo "metrics: off"
  echo "access_log: off"
} >"$tmp/gateway.yaml"
run_gateway info

host="r$((REGISTRIES / 2)).example"
log "hey on $host while sending $RELOADS SIGHUPs"
hey -z "$((RELOADS / 5 + 3))s" -c "$CONNS" -host "$host" -H "Authorization: Basic $(printf bench:bench-pw | base64)" \
  "http://127.0.0.1:$gw_port/v2/" >"$tmp/hey.txt" &
hey_pid=$!
sleep 1
for ((i = 0; i < RELOADS; i++)); do
  kill -HUP "$gw_pid"
  sleep 0.2
done
wait "$hey_pid"
kill -0 "$gw_pid" 2>/dev/null || die "the gateway died: $(tail -n 20 "$tmp/gateway.log")"

mapfile -t ms < <(grep -o 'built in [0-9.]* ms' "$tmp/gateway.log" | awk '{ print $3 }' | sort -n)
((${#ms[@]} == RELOADS)) || die "${#ms[@]} of $RELOADS reloads logged: $(grep -i reload "$tmp/gateway.log" | tail -n 5)"
echo "## Reload: $REGISTRIES virtual registries, $RELOADS reloads under load"
echo
echo "$(nproc) cores, $(date -u +%F). Build and swap time per reload (ms, from the gateway's log):"
echo "min ${ms[0]}, median ${ms[$((RELOADS / 2))]}, max ${ms[$((RELOADS - 1))]}"
echo
echo "hey during the reloads (status codes; anything but 200 is a dropped request):"
hey_all_200 "$tmp/hey.txt"
