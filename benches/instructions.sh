#!/usr/bin/env bash
# Instructions each proxy executes per small proxied request, counted by
# valgrind's callgrind. Unlike CPU time, the count does not move with what
# else the machine is doing, so it shows the effect of one change on the
# user-space work per request exactly (kernel time is not in it; see
# compare.sh for CPU time and throughput).
#
# registry-gateway and nginx (one worker, the registry recipe of
# compare.sh) proxy `GET /v2/` to the same static nginx upstream over
# kept-alive connections. Each proxy runs under callgrind; after a warm-up
# its counters are zeroed, REQUESTS requests are sent with hey, and the
# counters are dumped.
#
# Knobs (env): REQUESTS=5000 CONNS=16 TOP=20 (gateway functions listed by
#   their own instructions) GATEWAY_BIN=path (else `cargo build --release`)
#   AUTH=apr1: both proxies require Basic auth from one htpasswd file (an
#     $apr1$ user, as `htpasswd -m` writes), and every request sends it
#   ACCESS_RULES=N (needs AUTH): the gateway also decides access rules, N
#     `team-I/**` rules and a final `**` pull for authenticated users, and
#     both proxies get `GET /v2/library/app/manifests/latest` (decided by
#     the last rule) instead of `GET /v2/`
#   ACCESS_LOG=text|json: the gateway writes its access log in that format
#     to a file, nginx its default `combined` log to a file (default: both off)
#   DUMP_DIR=dir: keep the gateway's callgrind dump there, for
#     `callgrind_annotate --tree=caller` (who calls memcpy, malloc, ...)
#   REPORT=benches/results/instructions.md (empty: stdout only; with AUTH
#     or ACCESS_LOG, instructions-apr1.md, instructions-log-json.md, ...)
set -euo pipefail
BENCH_NAME=instructions
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
REQUESTS="${REQUESTS:-5000}" CONNS="${CONNS:-16}" TOP="${TOP:-20}"
AUTH="${AUTH:-}"
case "$AUTH" in "" | apr1) ;; *) echo "instructions: AUTH must be apr1 or empty" >&2; exit 2 ;; esac
ACCESS_RULES="${ACCESS_RULES:-}"
if [[ -n "$ACCESS_RULES" ]] && { [[ -z "$AUTH" ]] || ! [[ "$ACCESS_RULES" =~ ^[0-9]+$ ]]; }; then
  echo "instructions: ACCESS_RULES must be a number and needs AUTH=apr1" >&2
  exit 2
fi
target_path=/v2/
[[ -n "$ACCESS_RULES" ]] && target_path=/v2/library/app/manifests/latest
ACCESS_LOG="${ACCESS_LOG:-}"
case "$ACCESS_LOG" in "" | text | json) ;; *) echo "instructions: ACCESS_LOG must be text, json or empty" >&2; exit 2 ;; esac
REPORT="${REPORT-benches/results/instructions${AUTH:+-$AUTH}${ACCESS_RULES:+-rules-$ACCESS_RULES}${ACCESS_LOG:+-log-$ACCESS_LOG}.md}"
# hey sends a multiple of its connection count.
REQUESTS=$((REQUESTS / CONNS * CONNS))
((REQUESTS > 0)) || { echo "instructions: REQUESTS must be at least CONNS" >&2; exit 2; }

WAIT_TRIES=300 # valgrind starts slowly
bench_start

gateway_auth="" nginx_auth="" request_auth=()
if [[ -n "$AUTH" ]]; then
  htpasswd -nbm bench bench-apr1-pass | sed '/^$/d' >"$tmp/htpasswd"
  chmod 644 "$tmp/htpasswd"
  gateway_auth="auth:
  realm: bench
  htpasswd: $tmp/htpasswd"
  nginx_auth="
      auth_basic bench;
      auth_basic_user_file $tmp/htpasswd;"
  request_auth=(-H "Authorization: Basic $(printf 'bench:bench-apr1-pass' | base64 -w0)")
fi
gateway_access=""
if [[ -n "$ACCESS_RULES" ]]; then
  gateway_access="access:
  rules:"
  for ((i = 0; i < ACCESS_RULES; i++)); do
    gateway_access+="
    - repositories: [team-$i/**]
      push: [bench]"
  done
  gateway_access+="
    - repositories: [\"**\"]
      pull: [authenticated]"
fi
gateway_log="access_log: off" nginx_log=""
if [[ -n "$ACCESS_LOG" ]]; then
  gateway_log="access_log:
  format: $ACCESS_LOG
  output: $tmp/gateway-access.log"
  nginx_log="access_log $tmp/nginx-access.log;"
fi

nginx_conf() { # dir listen body -> nginx.conf for one unprivileged worker
  mkdir -p "$1/tmp"
  chmod 755 "$1" "$1/tmp"
  cat >"$1/nginx.conf" <<EOF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  $3
  server {
    listen 127.0.0.1:$2;
    client_max_body_size 0;
    $4
  }
}
EOF
}

# The upstream answers from memory, as registry:2 answers /v2/.
up_port="$(free_port)"
nginx_conf "$tmp/upstream" "$up_port" "" 'location / {
      default_type application/json;
      add_header Docker-Distribution-Api-Version registry/2.0 always;
      return 200 "{}";
    }'
"$nginx_bin" -p "$tmp/upstream" -c "$tmp/upstream/nginx.conf" -g 'daemon off;' >"$tmp/upstream.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$up_port/v2/" "${pids[-1]}" upstream

callgrind=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no)

gw_port="$(free_port)"
cat >"$tmp/gateway.yaml" <<EOF
server:
  threads: 2
listeners:
  - address: "127.0.0.1:$gw_port"
upstreams:
  registry:
    url: "http://127.0.0.1:$up_port"
registries:
  - name: main
    default: true
    upstream: registry
metrics: off
$gateway_log
$gateway_auth
$gateway_access
EOF
RUST_LOG=warn "${callgrind[@]}" --callgrind-out-file="$tmp/gateway.%p.cg" \
  "$gateway_bin" --config "$tmp/gateway.yaml" >"$tmp/gateway.log" 2>&1 &
pids+=($!)
gw_pid=$!
wait_up "http://127.0.0.1:$gw_port/v2/" "$gw_pid" gateway

ng_port="$(free_port)"
nginx_conf "$tmp/nginx" "$ng_port" "upstream registry { server 127.0.0.1:$up_port; keepalive 32; }" "$nginx_log
    location /v2/ {$nginx_auth$nginx_registry_recipe
    }"
# One process (master_process off) so callgrind sees the worker.
"${callgrind[@]}" --callgrind-out-file="$tmp/nginx.%p.cg" \
  "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off; master_process off;' >"$tmp/nginx.log" 2>&1 &
pids+=($!)
ng_pid=$!
wait_up "http://127.0.0.1:$ng_port/v2/" "$ng_pid" nginx

# Instructions per request of one proxy: warm up, zero, load, dump.
measure() { # name port pid -> "instructions-per-request dump-file"
  local ok dump
  hey -n 1000 -c "$CONNS" "${request_auth[@]}" "http://127.0.0.1:$2$target_path" >/dev/null
  callgrind_control -z "$3" >/dev/null 2>&1
  hey -n "$REQUESTS" -c "$CONNS" "${request_auth[@]}" "http://127.0.0.1:$2$target_path" >"$tmp/$1.hey"
  callgrind_control -d "$3" >/dev/null 2>&1
  ok="$(awk '$1 == "[200]" {print $2}' "$tmp/$1.hey")"
  [[ "$ok" == "$REQUESTS" ]] || die "$1: ${ok:-0} of $REQUESTS requests answered 200: $(tail -n 15 "$tmp/$1.hey")"
  for _ in $(seq 50); do
    dump="$(ls "$tmp/$1.$3.cg".* 2>/dev/null | tail -n 1)"
    [[ -n "$dump" ]] && grep -q '^totals:\|^summary:' "$dump" && break
    sleep 0.2
  done
  [[ -n "$dump" ]] || die "$1: no callgrind dump"
  awk -v n="$REQUESTS" -v f="$dump" '/^(summary|totals):/ {printf "%.0f %s\n", $2 / n, f; exit}' "$dump"
}
log "gateway: $REQUESTS requests under callgrind"
read -r gw_ir gw_dump < <(measure gateway "$gw_port" "$gw_pid")
if [[ -n "${DUMP_DIR:-}" ]]; then
  mkdir -p "$DUMP_DIR" && cp "$gw_dump" "$DUMP_DIR/gateway.callgrind"
  log "gateway's callgrind dump: $DUMP_DIR/gateway.callgrind (callgrind_annotate --tree=caller)"
fi
log "nginx: $REQUESTS requests under callgrind"
read -r ng_ir _ < <(measure nginx "$ng_port" "$ng_pid")

# Own (exclusive) instructions per function; a `calls=` line is followed by
# the callee's inclusive cost, which is not the caller's own.
self_costs() {
  awk '/^fn=/ {fn = substr($0, 4); next}
       /^calls=/ {skip = 1; next}
       /^[0-9+*-]/ {if (skip) {skip = 0; next} own[fn] += $2; next}
       END {for (f in own) print own[f] "\t" f}' "$1" | sort -rn
}
# Inclusive instructions of the gateway's ProxyHttp phases.
phase_costs() {
  awk '/^fn=/ {fn = substr($0, 4); next}
       /^[0-9+*-]/ {if (fn ~ /RegistryProxy as pingora_proxy::proxy_trait::ProxyHttp>::/) incl[fn] += $2; next}
       END {for (f in incl) print incl[f] "\t" f}' "$1" | sort -rn
}

{
  echo "## Instructions per proxied request"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m). \`GET $target_path\` through each proxy to a static nginx upstream, $REQUESTS requests over $CONNS kept-alive connections (\`hey -n $REQUESTS -c $CONNS\`), counted by \`valgrind --tool=callgrind\` after a 1000-request warm-up.$([[ -n "$AUTH" ]] && echo " Every request carries Basic credentials of an apr1 user both proxies check (the gateway from its credential cache after the first request, nginx by hashing each time).")$([[ -n "$ACCESS_RULES" ]] && echo " The gateway also decides $((ACCESS_RULES + 1)) access rules (\`team-I/**\`, then \`**\`, which decides); nginx has no equivalent.")$([[ -n "$ACCESS_LOG" ]] && echo " Both proxies write an access log line per request to a file: the gateway in its $ACCESS_LOG format, nginx in its default combined format.") User-space instructions only: the kernel's share of each request (about half of the gateway's CPU time here) is not in these figures."
  echo
  echo "| proxy | instructions / request | ratio to nginx |"
  echo "|---|---:|---:|"
  echo "| registry-gateway | $gw_ir | $(awk -v a="$gw_ir" -v b="$ng_ir" 'BEGIN {printf "%.2f", a / b}') |"
  echo "| nginx (registry recipe) | $ng_ir | 1.00 |"
  echo
  echo "The gateway's own phases (inclusive, per request):"
  echo
  echo "| phase | instructions |"
  echo "|---|---:|"
  phase_costs "$gw_dump" | awk -F'\t' -v n="$REQUESTS" '$1 / n >= 50 {
      name = $2; sub(/.*ProxyHttp>::/, "", name); sub(/::\{\{closure\}\}$/, "", name)
      printf "| %s | %.0f |\n", name, $1 / n}'
  echo
  echo "Top $TOP gateway functions by their own instructions (per request):"
  echo
  echo '```'
  self_costs "$gw_dump" | head -n "$TOP" | awk -F'\t' -v n="$REQUESTS" '{printf "%8.0f  %s\n", $1 / n, substr($2, 1, 150)}'
  echo '```'
} | if [[ -n "$REPORT" ]]; then mkdir -p "$(dirname "$REPORT")" && tee "$REPORT"; else cat; fi
