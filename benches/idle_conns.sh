#!/usr/bin/env bash
# Memory per client connection: N connections (default 2,000) held open on
# the gateway, idle after one `GET /v2/` each (keep-alive) or stopped in the
# middle of their request head, to registry:2. Prints the gateway's RSS
# before, while they are held (and per connection), and 3 s after they
# close. Not part of the test suite.
# TODO: the same for nginx in the same run (issue: cost per connection).
#
# Knobs (env): CONNS=2000  GATEWAY_BIN=path (else a release build)
BENCH_NAME=idle_conns
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CONNS="${CONNS:-2000}"
bench_start
start_registry
gw_port="$(free_port)"
cat >"$tmp/gateway.yaml" <<YAML
server: { threads: 2, max_connections: $((CONNS + 100)) }
listeners: [ { address: "127.0.0.1:$gw_port" } ]
upstreams: { registry: { url: "http://127.0.0.1:$reg_port" } }
registries: [ { name: main, default: true, upstream: registry } ]
metrics: off
access_log: off
YAML
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
echo "| connections | RSS before | RSS held | per connection | 3 s after closing |"
echo "|---|---:|---:|---:|---:|"
for mode in idle head; do
  run_gateway warn
  before="$(rss "$gw_pid")"
  /usr/bin/python3 benches/conns/hold.py "$gw_port" "$CONNS" "$mode" 8 >/dev/null &
  holder=$!
  sleep 7
  held="$(rss "$gw_pid")"
  wait "$holder"
  sleep 3
  after="$(rss "$gw_pid")"
  echo "| $CONNS $mode | $((before / 1024)) MiB | $((held / 1024)) MiB | $(((held - before) / CONNS)) KiB | $((after / 1024)) MiB |"
  kill "$gw_pid"
  wait "$gw_pid" 2>/dev/null || true
done
