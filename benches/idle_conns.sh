#!/usr/bin/env bash
# Memory per client connection, gateway and nginx in the same run: N
# connections (default 2,000) held open on each proxy in front of
# registry:2, idle after one `GET /v2/` each (keep-alive) or stopped in the
# middle of their request head. Prints, per proxy and mode, its RSS before,
# while they are held (and per connection), and 3 s and 30 s after they
# close (the goal: back within 2x of the idle baseline 30 s after), and
# whether it closed its side of every connection.
# nginx is the registry recipe of compare.sh (worker_processes 2) and its
# RSS the sum over master and workers. Not part of the test suite.
#
# Knobs (env): CONNS=2000  TARGETS="gateway nginx"
#   GATEWAY_BIN=path (else a release build)
BENCH_NAME=idle_conns
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CONNS="${CONNS:-2000}"
read -r -a targets <<<"${TARGETS:-gateway nginx}"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || { echo "idle_conns: CONNS must be a positive number" >&2; exit 2; }
for t in "${targets[@]}"; do
  case "$t" in gateway | nginx) ;; *) echo "idle_conns: unknown target '$t' (gateway, nginx)" >&2; exit 2 ;; esac
done
# The holder and both proxies need a descriptor per connection (nginx's
# workers and the gateway inherit this shell's limit).
need_fds=$((CONNS + 500))
if [[ "$(ulimit -n)" != unlimited ]] && (($(ulimit -n) < need_fds)); then
  ulimit -n "$need_fds" 2>/dev/null ||
    { echo "idle_conns: CONNS=$CONNS needs ulimit -n $need_fds (hard limit: $(ulimit -Hn))" >&2; exit 2; }
fi
bench_start
start_registry

# gateway: listens on $gw_port; nginx: on $ng_port, in $tmp/nginx.
gw_port="$(free_port)"
registry_gateway_yaml "$gw_port" "threads: 2, max_connections: $((CONNS + 100))"
ng_port="$(free_port)"
while [[ "$ng_port" == "$gw_port" ]]; do ng_port="$(free_port)"; done
# One worker may accept most of the connections: each gets room for all.
nginx_registry_conf "$tmp/nginx" nginx "$reg_port" "127.0.0.1:$ng_port" "connections=$((CONNS + 100))"

# Starts the target; sets port and procs (the pids whose RSS is summed).
start_target() { # gateway|nginx
  if [[ "$1" == gateway ]]; then
    run_gateway warn
    port="$gw_port" procs="$gw_pid"
  else
    run_nginx "$tmp/nginx" nginx "http://127.0.0.1:$ng_port/v2/"
    port="$ng_port" procs="$nginx_pid$(children_of "$nginx_pid")"
  fi
}
rss_kib() { # pids... -> summed VmRSS
  local p
  for p in "$@"; do cat "/proc/$p/status"; done | awk '/^VmRSS:/ { n += $2 } END { print n + 0 }'
}
# Server-side sockets on a local port (IPv4) in a TCP state: 01
# ESTABLISHED, 08 CLOSE_WAIT (the client closed, the proxy has not yet).
sockets() { # port state...
  awk -v port="$(printf '%04X' "$1")" -v states=" ${*:2} " 'NR > 1 && index(states, " " $4 " ") &&
    substr($2, index($2, ":") + 1) == port { n++ } END { print n + 0 }' /proc/net/tcp
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

echo "| target | mode | connections | open while held | RSS before | RSS held | per connection | 3 s after closing | 30 s after closing | 30 s after ÷ before | not closed 30 s after |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for mode in idle head; do
  for t in "${targets[@]}"; do
    start_target "$t"
    read -r -a pp <<<"$procs"
    sleep 1
    before="$(rss_kib "${pp[@]}")"
    # hold.py prints "open N" once all are open, then holds them 4 s.
    /usr/bin/python3 benches/conns/hold.py "$port" "$CONNS" "$mode" 4 >"$tmp/hold.out" 2>"$tmp/hold.err" &
    holder=$!
    pids+=("$holder")
    until grep -q '^open' "$tmp/hold.out"; do
      kill -0 "$holder" 2>/dev/null || die "$t $mode: the holder failed: $(tail -n 3 "$tmp/hold.err")"
      sleep 0.2
    done
    sleep 2
    held="$(rss_kib "${pp[@]}")" open="$(sockets "$port" 01)"
    wait "$holder" || die "$t $mode: the holder failed: $(tail -n 3 "$tmp/hold.err")"
    forget_pid "$holder"
    sleep 3
    after3="$(rss_kib "${pp[@]}")"
    sleep 27
    after30="$(rss_kib "${pp[@]}")" left="$(sockets "$port" 01 08)"
    stop_pid "${pp[0]}"
    echo "| $t | $mode | $CONNS | $open | $(mib "$before") | $(mib "$held") |" \
      "$(awk -v d=$((held - before)) -v n="$CONNS" 'BEGIN { printf "%.1f KiB", d / n }') |" \
      "$(mib "$after3") | $(mib "$after30") |" \
      "$(awk -v a="$after30" -v b="$before" 'BEGIN { r = a / b; printf "%.2f%s", r, (r <= 2) ? "" : " (over 2x)" }') |" \
      "$left |"
  done
done
echo
echo "RSS = VmRSS; nginx: master + its 2 workers, summed (pages they share are counted in each). Per connection = (held - before) / connections. Open while held: the proxy's ESTABLISHED sockets on its port. Not closed 30 s after: its sockets there still ESTABLISHED or in CLOSE_WAIT (0 = every client connection was closed). The goal: RSS 30 s after closing within 2x of RSS before."
