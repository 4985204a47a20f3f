#!/usr/bin/env bash
# Compares registry-gateway with the classic nginx recipe, and with no proxy
# at all ("direct"), on loopback:
#   registry  small requests against a real registry:2
#   static    small requests against a fast static upstream (a bare nginx)
#   default   what users measure first: a manifest GET through the gateway
#             on the repository's gateway.yaml (text access log to stdout,
#             metrics on) and nginx with its combined access log to a file,
#             then both with the access log off; CPU and context switches
#             per request, and the CPU cost of one log line
#   auth      Basic auth (apr1 and bcrypt-10 users) in front of that upstream
#   flood     a valid user's latency during a wrong-password flood
#   blob      a large blob pushed and pulled through registry:2
#   tls       the same blob over TLS (HTTP/1.1 and HTTP/2) through the proxies
#   tls-small small requests over TLS: keep-alive, and a new TLS connection
#             (full handshake) per request
#   vhosts    small requests through a gateway with 1 vs 100 virtual registries
# Writes a Markdown report to stdout and to benches/results/latest.md.
#
# Knobs (env): RUNS=3 DURATION=10s BLOB_SIZE=1G TARGETS="direct gateway nginx"
#   CASES=registry,static,default,auth,flood,blob,tls,tls-small,vhosts
#     ("small" = registry,static)
#   AUTH_DURATION=5s AUTH_CONNS=16
#   FLOOD_RUNS=1 FLOOD_DURATION=10s FLOOD_CONNS=16 VALID_CONNS=2 VALID_QPS=10
#   TLS_DURATION=5s (tls-small) VHOSTS=100 VHOSTS_DURATION=5s
#   GATEWAY_BIN=path: benchmark that binary instead of running
#     `cargo build --release` and using the binary cargo built (its target dir)
#   REPORT=benches/results/latest.md: where the report is written besides
#     stdout (empty: stdout only)
set -euo pipefail

BENCH_NAME=bench
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNS="${RUNS:-3}" DURATION="${DURATION:-10s}" BLOB_SIZE="${BLOB_SIZE:-1G}"
AUTH_DURATION="${AUTH_DURATION:-5s}" AUTH_CONNS="${AUTH_CONNS:-16}"
FLOOD_RUNS="${FLOOD_RUNS:-1}" FLOOD_DURATION="${FLOOD_DURATION:-10s}" FLOOD_CONNS="${FLOOD_CONNS:-16}"
VALID_CONNS="${VALID_CONNS:-2}" VALID_QPS="${VALID_QPS:-10}"
TLS_DURATION="${TLS_DURATION:-5s}" VHOSTS="${VHOSTS:-100}" VHOSTS_DURATION="${VHOSTS_DURATION:-5s}"
REPORT="${REPORT-benches/results/latest.md}"
read -r -a targets <<<"${TARGETS:-direct gateway nginx}"
read -r -a cases <<<"$(tr ',' ' ' <<<"${CASES:-registry,static,default,auth,flood,blob,tls,tls-small,vhosts}")"

has_target() { [[ " ${targets[*]} " == *" $1 "* ]]; }
has_case() { [[ " ${cases[*]} " == *" $1 "* ]] ||
  { [[ " ${cases[*]} " == *" small "* ]] && [[ "$1" == registry || "$1" == static ]]; }; }
for c in "${cases[@]}"; do
  case "$c" in registry | static | default | auth | flood | blob | tls | tls-small | vhosts | small) ;;
    *) echo "bench: unknown case '$c' (registry, static, default, auth, flood, blob, tls, tls-small, vhosts, small)" >&2; exit 2 ;;
  esac
done
for t in "${targets[@]}"; do
  case "$t" in direct | gateway | nginx) ;;
    *) echo "bench: unknown target '$t' (direct, gateway, nginx)" >&2; exit 2 ;;
  esac
done
if ! [[ "$VHOSTS" =~ ^[0-9]+$ ]] || ((VHOSTS < 2)); then
  echo "bench: VHOSTS must be a number >= 2" >&2
  exit 2
fi
need_registry=0 need_static=0 need_tls=0
{ has_case registry || has_case blob || has_case tls; } && need_registry=1
{ has_case static || has_case default || has_case auth || has_case flood || has_case tls-small || has_case vhosts; } &&
  need_static=1
{ has_case tls || has_case tls-small; } && need_tls=1

bench_start
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

declare -A url=()      # endpoint -> base URL
declare -A cpu_pids=() # endpoint -> proxy pids whose CPU is counted

# --- servers --------------------------------------------------------------
# registry:2, the upstream of the registry and blob cases. Its logging is
# turned down so the shared backend spends as little CPU as possible on
# things that are not proxying.
if ((need_registry)); then
  start_registry
  url[direct]="http://127.0.0.1:$reg_port"
fi

# The static upstream: one nginx worker answering the two small-request
# endpoints from memory, so that it is never the bottleneck the way
# registry:2 (about 1.5k requests/s here) is. Its CPU is not counted.
if ((need_static)); then
  st_port="$(free_port)"
  d="$tmp/static"
  static_upstream_conf "$d" "$st_port" 1024
  # shellcheck disable=SC2094 # nginx appends to its error log itself
  "$nginx_bin" -e "$tmp/static.log" -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >>"$tmp/static.log" 2>&1 &
  pids+=($!)
  wait_up "http://127.0.0.1:$st_port/v2/" "${pids[-1]}" static
  url[static]="http://127.0.0.1:$st_port"
fi

# Users for the auth and flood cases, in one file read by both proxies.
bc_user=bcuser bc_pass=bench-bcrypt-pass apr_user=apruser apr_pass=bench-apr1-pass
if has_case auth || has_case flood; then
  command -v htpasswd >/dev/null || die "htpasswd not found (apache2-utils)"
  {
    htpasswd -nbB -C 10 "$bc_user" "$bc_pass"
    htpasswd -nbm "$apr_user" "$apr_pass"
  } | sed '/^$/d' >"$tmp/htpasswd"
  chmod 644 "$tmp/htpasswd"
  [[ "$(cat "$tmp/htpasswd")" == "$bc_user:\$2y\$10\$"*$'\n'"$apr_user:\$apr1\$"* ]] ||
    die "unexpected htpasswd output: $(cat "$tmp/htpasswd")"
fi
basic() { printf 'Basic %s' "$(printf '%s:%s' "$1" "$2" | base64 -w0)"; }
auth_apr1="$(basic "$apr_user" "$apr_pass")"
auth_bcrypt="$(basic "$bc_user" "$bc_pass")"
auth_wrong="$(basic "$bc_user" "not-the-password")"

# One development CA and server certificate (ECDSA P-256, for localhost and
# 127.0.0.1), served by both proxies' TLS listeners (and by the TLS listener
# of the default case's gateway.yaml). TLS URLs use the name localhost: wrk
# sends the URL's host as SNI, and an IP address there is illegal (rustls
# ignores it, with a warning per handshake).
tls_curl=()
if ((need_tls)) || has_case default; then
  "$gateway_bin" certs --out "$tmp/certs" >"$tmp/certs.log" 2>&1 ||
    die "registry-gateway certs failed: $(cat "$tmp/certs.log")"
  tls_curl=(--cacert "$tmp/certs/ca.crt")
fi

# Appended to every bench gateway's configuration: the one place for keys
# all of them need. No metrics listener (each process would otherwise take
# the default 127.0.0.1:9145, and only one can), and no per-request access
# log (nginx runs with access_log off). Drop a line here if the binary
# under test does not know the key.
gateway_common_yaml='metrics: off
access_log: off'

# The default virtual registry setup: everything goes to the one upstream.
default_registries='  - name: main
    default: true
    upstream: registry'

start_gateway() { # endpoint upstream-port extra-yaml [plain|tls] [registries-yaml]
  local port pid scheme=http listener
  port="$(free_port)"
  listener="  - address: \"127.0.0.1:$port\""
  if [[ "${4:-plain}" == tls ]]; then
    scheme=https
    listener+="
    tls:
      certificates:
        - cert: $tmp/certs/server.crt
          key: $tmp/certs/server.key
      http2: true"
  fi
  cat >"$tmp/$1.yaml" <<EOF
server:
  threads: 2
  grace_period: 1s
$3
listeners:
$listener
upstreams:
  registry:
    url: "http://127.0.0.1:$2"
registries:
${5:-$default_registries}
$gateway_common_yaml
EOF
  "$gateway_bin" check --config "$tmp/$1.yaml" >"$tmp/$1.check" 2>&1 ||
    die "gateway rejected the $1 config: $(cat "$tmp/$1.check")"
  # warn: no info-level logs (access_log: off above stops the request lines).
  RUST_LOG=warn "$gateway_bin" --config "$tmp/$1.yaml" >"$tmp/$1.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  [[ "$scheme" == https ]] && url[$1]="https://localhost:$port" || url[$1]="http://127.0.0.1:$port"
  wait_up "${url[$1]}/v2/" "$pid" "$1" "${tls_curl[@]}"
  cpu_pids[$1]="$pid"
}

# The classic registry recipe; with an auth port, a second server block with
# the same proxying plus auth_basic. With "tls", the first server block
# listens with TLS and HTTP/2, on the same certificate and key as the gateway.
# ACCESS-LOG: the arguments of its access_log (default: off).
start_nginx() { # endpoint upstream-port [auth-endpoint] [plain|tls] [access-log]
  local d="$tmp/$1" port auth_port="" listen_opts="" ssl_conf="" servers=""
  port="$(free_port)"
  [[ -n "${3:-}" ]] && auth_port="$(free_port)"
  if [[ "${4:-plain}" == tls ]]; then
    listen_opts=" ssl http2" # nginx 1.22 syntax (1.25+: "http2 on;")
    ssl_conf="
  ssl_certificate $tmp/certs/server.crt;
  ssl_certificate_key $tmp/certs/server.key;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;"
  fi
  [[ -n "$auth_port" ]] && servers="
  server {
    listen 127.0.0.1:$auth_port;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {
      auth_basic \"bench\";
      auth_basic_user_file $tmp/htpasswd;$nginx_registry_recipe
    }
  }"
  nginx_registry_conf "$d" "$1" "$2" "127.0.0.1:$port$listen_opts" \
    "access_log=${5:-off}" "http=$ssl_conf" "servers=$servers"
  [[ -n "$ssl_conf" ]] && url[$1]="https://localhost:$port" || url[$1]="http://127.0.0.1:$port"
  run_nginx "$d" "$1" "${url[$1]}/v2/" "${tls_curl[@]}"
  cpu_pids[$1]="$nginx_pid$(children_of "$nginx_pid")"
  if [[ -n "$auth_port" ]]; then
    url[$3]="http://127.0.0.1:$auth_port"
    cpu_pids[$3]="${cpu_pids[$1]}"
  fi
}

# The default case's gateway: the repository's gateway.yaml as users start
# it, with only what a bench must change: its two listeners and its metrics
# listener on free loopback ports, the upstream URL the static upstream's,
# the TLS listener's certificate the bench's, and server.threads: 2 as in
# every other case. With "off", its access_log block becomes
# `access_log: off`. No RUST_LOG (the gateway's default, info); its stdout,
# where the default access log goes, into a file in $tmp like nginx's log.
start_gateway_default() { # endpoint on|off stdout-file
  local plain tls metrics pid conf="$tmp/$1.yaml"
  plain="$(free_port)" tls="$(free_port)" metrics="$(free_port)"
  while [[ "$tls" == "$plain" ]]; do tls="$(free_port)"; done
  while [[ "$metrics" == "$plain" || "$metrics" == "$tls" ]]; do metrics="$(free_port)"; done
  awk -v plain="127.0.0.1:$plain" -v tls="127.0.0.1:$tls" -v metrics="127.0.0.1:$metrics" \
    -v up="http://127.0.0.1:$st_port" -v certs="$tmp/certs" -v logmode="$2" '
    function sub1(from, to,  i) { # literal replacement, counted
      if ((i = index($0, from)) == 0) return
      $0 = substr($0, 1, i - 1) to substr($0, i + length(from))
      n[from]++
    }
    inlog && /^[ \t]/ { # the access_log block
      if ($0 ~ /^ +format: text *$/) n["format: text"]++
      if ($0 ~ /^ +output: stdout *$/) n["output: stdout"]++
      if (logmode == "on") print
      next
    }
    { inlog = 0 }
    /^access_log: *$/ {
      inlog = 1; n["access_log:"]++
      print (logmode == "on") ? $0 : "access_log: off"
      next
    }
    /^server: *$/ { print; print "  threads: 2"; n["server:"]++; next }
    {
      sub1("\"0.0.0.0:5000\"", "\"" plain "\""); sub1("\"0.0.0.0:5443\"", "\"" tls "\"")
      sub1("\"http://127.0.0.1:15000\"", "\"" up "\""); sub1("\"127.0.0.1:9145\"", "\"" metrics "\"")
      sub1("certs/dev/server.crt", certs "/server.crt"); sub1("certs/dev/server.key", certs "/server.key")
      print
    }
    END {
      split("server:|\"0.0.0.0:5000\"|\"0.0.0.0:5443\"|\"http://127.0.0.1:15000\"|\"127.0.0.1:9145\"|certs/dev/server.crt|certs/dev/server.key|access_log:|format: text|output: stdout", want, "|")
      for (k in want) if (n[want[k]] != 1) { print "gateway.yaml: expected " want[k] " once, found it " n[want[k]] + 0 " times" > "/dev/stderr"; bad = 1 }
      exit bad
    }' gateway.yaml >"$conf" 2>"$tmp/$1.check" ||
    die "the default case no longer fits gateway.yaml (update start_gateway_default): $(cat "$tmp/$1.check")"
  "$gateway_bin" check --config "$conf" >"$tmp/$1.check" 2>&1 ||
    die "gateway rejected the $1 config: $(cat "$tmp/$1.check")"
  env -u RUST_LOG "$gateway_bin" --config "$conf" >"$3" 2>"$tmp/$1.log" &
  pid=$!
  pids+=("$pid")
  url[$1]="http://127.0.0.1:$plain"
  wait_up "${url[$1]}/v2/" "$pid" "$1"
  cpu_pids[$1]="$pid"
}

auth_yaml="auth:
  realm: \"bench\"
  htpasswd: $tmp/htpasswd"
# N virtual registries for the vhosts case, all on the static upstream: the
# first half matched by exact name (hosts: [rI.example]), the rest by
# host_regex; no default. The last one (a host_regex one, also for N = 1)
# is the one the load asks for.
vhost_registries() { # N
  local i
  for ((i = 0; i < $1; i++)); do
    echo "  - name: r$i"
    if ((i < $1 / 2)); then echo "    hosts: [r$i.example]"
    else echo "    host_regex: 'r$i\.(example|test)'"
    fi
    echo "    upstream: registry"
  done
}
if has_target gateway; then
  { has_case registry || has_case blob; } && start_gateway gateway "$reg_port" ""
  has_case static && start_gateway gateway-static "$st_port" ""
  if has_case default; then
    start_gateway_default gateway-default on "$tmp/gateway-access.log"
    start_gateway_default gateway-default-nolog off "$tmp/gateway-default-nolog.stdout"
  fi
  { has_case auth || has_case flood; } && start_gateway gateway-auth "$st_port" "$auth_yaml"
  has_case flood && start_gateway gateway-nothrottle "$st_port" "  auth_throttle:
    max_failures: 0
$auth_yaml"
  has_case tls && start_gateway gateway-tls "$reg_port" "" tls
  has_case tls-small && start_gateway gateway-tls-static "$st_port" "" tls
  if has_case vhosts; then
    start_gateway gateway-vh1 "$st_port" "" plain "$(vhost_registries 1)"
    start_gateway gateway-vhN "$st_port" "" plain "$(vhost_registries "$VHOSTS")"
  fi
fi
if has_target nginx; then
  { has_case registry || has_case blob; } && start_nginx nginx "$reg_port"
  if has_case auth || has_case flood; then start_nginx nginx-static "$st_port" nginx-auth
  elif has_case static; then start_nginx nginx-static "$st_port"
  fi
  if has_case default; then
    start_nginx nginx-default "$st_port" "" plain "$tmp/nginx-access.log combined"
    start_nginx nginx-default-nolog "$st_port"
  fi
  has_case tls && start_nginx nginx-tls "$reg_port" "" tls
  has_case tls-small && start_nginx nginx-tls-static "$st_port" "" tls
fi

# --- helpers --------------------------------------------------------------
# Context switches (voluntary + involuntary) of processes, summed over all
# their threads: /proc/PID/status counts the main thread only, and
# /proc/PID/task/*/status has every thread, the main one included.
ctx_switches() { # pids... -> total
  local p
  for p in "$@"; do cat "/proc/$p/task/"*/status 2>/dev/null || true; done |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}
peak_rss_kib() { # pids... -> summed VmHWM (nginx: master + workers)
  local p total=0 v
  for p in "$@"; do
    v="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")"
    total=$((total + v))
  done
  echo "$total"
}

# Upload a blob in two steps (POST, then monolithic PUT with ?digest=) to
# the given base URL; the Location path is re-based onto that URL so the
# PUT goes through the same target. Extra curl options (--http2, --cacert)
# go to both requests. Prints curl's upload speed in bytes/s and the HTTP
# version of the PUT. `Expect:` is disabled: docker/skopeo clients do not
# send it, and curl would otherwise pause waiting for a 100 Continue.
push_blob() { # base repo file digest [curl options...]
  local loc sep out
  loc="$(curl -fsS "${@:5}" -X POST -D - -o /dev/null "$1/v2/$2/blobs/uploads/" |
    awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')"
  [[ -n "$loc" ]] || die "no upload Location from $1"
  [[ "$loc" == *://* ]] && loc="/${loc#*://*/}"
  [[ "$loc" == *\?* ]] && sep='&' || sep='?'
  out="$(curl -sS "${@:5}" -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' -T "$3" \
    -o /dev/null -w '%{http_code} %{speed_upload} %{http_version}' "$1$loc${sep}digest=$4")"
  [[ "${out%% *}" == 201 ]] || die "blob PUT via $1 answered ${out%% *}"
  echo "${out#* }"
}
status_of() { # method url [curl options...] -> HTTP status
  local m="$1" u="$2"
  shift 2
  if [[ "$m" == HEAD ]]; then curl -sS -o /dev/null -I -w '%{http_code}' "$@" "$u"
  else curl -sS -o /dev/null -w '%{http_code}' "$@" "$u"
  fi
}
expect_status() { # want method url [curl options...]
  local want="$1" got
  shift
  got="$(status_of "$@")" || got="curl failed"
  [[ "$got" == "$want" ]] || die "$1 $2 answered $got, expected $want"
}


declare -A res=() # "metric|column" -> values of every run
add() { res["$1|$2"]+="$3 "; }

# One timed load on one endpoint. GET uses wrk; HEAD uses hey, since wrk
# cannot time HEAD (its parser waits for the body that Content-Length
# announces). Every response must be 200. hey options after the fixed ones
# set duration, concurrency and extra headers.
#   load_run METRIC COLUMN ENDPOINT PATH wrk
#   load_run METRIC COLUMN ENDPOINT PATH hey [hey options...]
# hey's CSV (one line per answered request: response-time,...,status-code,
# offset) -> "req/s p50-ms p99-ms requests non-200". Percentiles are taken
# the way hey's summary does, but also for runs of under 100 requests, where
# the summary leaves p99 out. req/s = requests / end of the last request.
# (Requests that failed without an answer are not in the CSV; a timeout is
# 20 s, longer than any run here.)
hey_stats() {
  awk -F, 'NR > 1 && $7 != "" { n++; print $1; if ($7 != 200) bad++; if ($8 + $1 > end) end = $8 + $1 }
    END { print "#", n + 0, bad + 0, end + 0 }' | sort -g | awk '
    $1 == "#" { n = $2; bad = $3; end = $4; next } { l[++i] = $1 }
    function pct(p,  k) { k = int(p * n / 100 + 0.999999); if (k < 1) k = 1; if (k > n) k = n; return l[k] * 1000 }
    END { if (n == 0 || end == 0) { print "0 0 0 0 0"; exit }
      printf "%.1f %.3f %.3f %d %d\n", n / end, pct(50), pct(99), n, bad }'
}

last_cpu_us="" last_reqs="" # proxy CPU µs per request and requests of the latest load_run
load_run() {
  local m="$1" col="$2" ep="$3" u="${url[$3]}$4" tool="$5" before after cs0 cs1 out rps p50 p99 reqs bad sockerr=""
  shift 5
  local -a pp
  read -r -a pp <<<"${cpu_pids[$ep]:-}"
  busy_check
  ((${#pp[@]})) && before="$(cpu_ticks "${pp[@]}")" cs0="$(ctx_switches "${pp[@]}")"
  if [[ "$tool" == wrk ]]; then # options after the fixed ones win (-d, -c)
    out="$(wrk -t2 -c32 -d"$DURATION" --latency "$@" "$u")"
  else
    out="$(hey -o csv -m HEAD -H "Accept: $oci_manifest" "$@" "$u")"
  fi
  ((${#pp[@]})) && after="$(cpu_ticks "${pp[@]}")" cs1="$(ctx_switches "${pp[@]}")"
  if [[ "$tool" == wrk ]]; then
    parse_wrk "$out"
    # A few reads failing as a closing connection races the next request
    # are not answers; more than 1% of the requests fail the run.
    [[ -z "$sockerr" ]] || ((sockerr * 100 <= reqs)) || die "$ep: $sockerr socket errors in $reqs requests for $u"
  else
    read -r rps p50 p99 reqs bad <<<"$(hey_stats <<<"$out")"
    [[ "$bad" == 0 ]] && bad=""
  fi
  [[ -z "$bad" && "$reqs" -gt 0 ]] || die "$ep: $reqs requests, ${bad:-0} failed for $u"
  add "$m req/s" "$col" "$rps"
  add "$m p50 ms" "$col" "$p50"
  add "$m p99 ms" "$col" "$p99"
  last_cpu_us="" last_reqs="$reqs"
  if ((${#pp[@]})); then
    last_cpu_us="$(awk -v d=$((after - before)) -v hz="$clk_tck" -v n="$reqs" \
      'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
    add "$m proxy CPU µs/req" "$col" "$last_cpu_us"
    add "$m proxy ctx switches/req" "$col" "$(awk -v d=$((cs1 - cs0)) -v n="$reqs" 'BEGIN { printf "%.3f", d / n }')"
  fi
  log "$(printf '%-19s %-30s %10s req/s  p50 %s ms  p99 %s ms%s' "$ep" "$m" "$rps" "$p50" "$p99" \
    "${sockerr:+  ($sockerr socket errors)}")"
}

# --- small requests against registry:2 ----------------------------------
# A minimal OCI image (one tiny layer + config + manifest), pushed directly
# to the registry, gives the HEAD-manifest case something real to find.
if has_case registry; then
  mkdir -p "$tmp/img/root"
  echo hello >"$tmp/img/root/hello.txt"
  tar -C "$tmp/img/root" -cf "$tmp/img/layer.tar" hello.txt
  gzip -nc "$tmp/img/layer.tar" >"$tmp/img/layer.tar.gz"
  layer_d="sha256:$(sha256_of "$tmp/img/layer.tar.gz")"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(sha256_of "$tmp/img/layer.tar")" >"$tmp/img/config.json"
  config_d="sha256:$(sha256_of "$tmp/img/config.json")"
  push_blob "${url[direct]}" bench/small "$tmp/img/layer.tar.gz" "$layer_d" >/dev/null
  push_blob "${url[direct]}" bench/small "$tmp/img/config.json" "$config_d" >/dev/null
  printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
    "$oci_manifest" "$config_d" "$(stat -c %s "$tmp/img/config.json")" \
    "$layer_d" "$(stat -c %s "$tmp/img/layer.tar.gz")" >"$tmp/img/manifest.json"
  curl -fsS -X PUT -H "Content-Type: $oci_manifest" --data-binary "@$tmp/img/manifest.json" \
    -o /dev/null "${url[direct]}/v2/bench/small/manifests/v1" || die "manifest push failed"

  for t in "${targets[@]}"; do # every path must work before anything is timed
    expect_status 200 HEAD "${url[$t]}/v2/bench/small/manifests/v1" -H "Accept: $oci_manifest"
  done

  log "registry: $RUNS runs x ${#targets[@]} targets x 2 endpoints x $DURATION"
  for run in $(seq "$RUNS"); do
    for t in "${targets[@]}"; do
      load_run "GET /v2/" "$t" "$t" /v2/ wrk
      load_run "HEAD manifest" "$t" "$t" /v2/bench/small/manifests/v1 hey -z "$DURATION" -c 32
    done
  done
fi

# --- small requests against the static upstream -------------------------
declare -A static_ep=([direct]=static [gateway]=gateway-static [nginx]=nginx-static)
if has_case static; then
  for t in "${targets[@]}"; do
    ep="${static_ep[$t]}"
    expect_status 200 GET "${url[$ep]}/v2/"
    expect_status 200 HEAD "${url[$ep]}$static_path" -H "Accept: $oci_manifest"
    hdrs="$(curl -sS -I -H "Accept: $oci_manifest" "${url[$ep]}$static_path" | tr -d '\r')"
    if ! grep -qi "^docker-content-digest: $static_digest$" <<<"$hdrs" ||
      ! grep -qi "^content-type: $oci_manifest$" <<<"$hdrs"; then
      die "$ep: wrong manifest headers: $hdrs"
    fi
  done
  log "static: $RUNS runs x ${#targets[@]} targets x 2 endpoints x $DURATION"
  for run in $(seq "$RUNS"); do
    for t in "${targets[@]}"; do
      load_run "s:GET /v2/" "$t" "${static_ep[$t]}" /v2/ wrk
      load_run "s:HEAD manifest" "$t" "${static_ep[$t]}" "$static_path" hey -z "$DURATION" -c 32
    done
  done
fi

# --- the default configuration, access log on and off -------------------
# A manifest GET with 64 connections through the gateway on gateway.yaml
# and nginx with its default combined log to a file, each once more with
# its access log off. Each round runs all four, the order reversed every
# other round; the log's cost is the difference of the CPU per request
# with and without it, per round.
declare -A default_ep=([gateway:on]=gateway-default [gateway:off]=gateway-default-nolog
  [nginx:on]=nginx-default [nginx:off]=nginx-default-nolog)
default_targets=()
for t in gateway nginx; do has_target "$t" && default_targets+=("$t"); done
if has_case default && ! ((${#default_targets[@]})); then
  log "default: skipped, it needs the gateway or nginx target"
elif has_case default; then
  default_runs=()
  for l in on off; do
    for t in "${default_targets[@]}"; do
      x="$t:$l" ep="${default_ep[$t:$l]}"
      default_runs+=("$x")
      hdrs="$(curl -sS -D - -o /dev/null -H "Accept: $oci_manifest" "${url[$ep]}$static_path" | tr -d '\r')"
      if ! grep -q '^HTTP/1.1 200' <<<"$hdrs" || ! grep -qi "^docker-content-digest: $static_digest$" <<<"$hdrs" ||
        ! grep -qi "^content-type: $oci_manifest$" <<<"$hdrs"; then
        die "$ep: wrong manifest answer: $hdrs"
      fi
    done
  done
  declare -A default_reqs=() default_cpu=()
  log "default: $RUNS rounds x ${#default_runs[@]} (targets x access log on/off) x $DURATION"
  for run in $(seq "$RUNS"); do
    order=("${default_runs[@]}")
    ((run % 2)) || for i in "${!default_runs[@]}"; do order[i]="${default_runs[-1 - i]}"; done
    for x in "${order[@]}"; do
      load_run "d:log ${x#*:}: GET manifest" "${x%:*}" "${default_ep[$x]}" "$static_path" wrk \
        -c64 -H "Accept: $oci_manifest"
      default_cpu[$x]="$last_cpu_us"
      default_reqs[$x]=$((${default_reqs[$x]:-1} + last_reqs)) # 1: the check above
    done
    for t in "${default_targets[@]}"; do
      add "d:access log cost: proxy CPU µs/req, on − off" "$t" \
        "$(awk -v a="${default_cpu[$t:on]}" -v b="${default_cpu[$t:off]}" 'BEGIN { printf "%.1f", a - b }')"
    done
  done
  # Every request must have left a line with the log on, and none with it
  # off (wrk counts only the answers it read: a few more may be logged).
  sleep 1
  declare -A default_log=([gateway:on]="$tmp/gateway-access.log" [gateway:off]="$tmp/gateway-default-nolog.stdout"
    [nginx:on]="$tmp/nginx-access.log")
  default_log_note=""
  for t in "${default_targets[@]}"; do
    for l in on off; do
      logf="${default_log[$t:$l]:-}"
      [[ -n "$logf" ]] || continue
      lines="$(wc -l <"$logf")" want="${default_reqs[$t:$l]}"
      if [[ "$l" == off ]]; then
        ((lines == 0)) || die "$t with access_log off wrote $lines lines to $logf"
        continue
      fi
      log "default: $t access log: $lines lines, $(stat -c %s "$logf") bytes, for at least $want requests"
      ((lines >= want)) || die "$t access log has $lines lines for $want requests"
      default_log_note+="${default_log_note:+; }$t $(awk -v b="$(stat -c %s "$logf")" -v n="$lines" 'BEGIN { printf "%.0f", b / n }') bytes"
    done
  done
fi

# --- Basic auth in front of the static upstream ---------------------------
auth_targets=()
for t in gateway nginx; do has_target "$t" && auth_targets+=("$t"); done
if has_case auth || has_case flood; then
  for t in "${auth_targets[@]}"; do
    eps=("$t-auth")
    [[ "$t" == gateway ]] && has_case flood && eps+=(gateway-nothrottle)
    for ep in "${eps[@]}"; do
      expect_status 401 HEAD "${url[$ep]}$static_path"
      expect_status 200 HEAD "${url[$ep]}$static_path" -H "Authorization: $auth_apr1"
      expect_status 200 HEAD "${url[$ep]}$static_path" -H "Authorization: $auth_bcrypt"
      # From 127.0.0.3, so the throttle never sees the measured addresses.
      expect_status 401 HEAD "${url[$ep]}$static_path" -H "Authorization: $auth_wrong" --interface 127.0.0.3
    done
  done
fi
if has_case auth; then
  log "auth: $RUNS runs x ${#auth_targets[@]} targets x 2 users x $AUTH_DURATION"
  for run in $(seq "$RUNS"); do
    for t in "${auth_targets[@]}"; do
      load_run "a:HEAD manifest, apr1 user" "$t" "$t-auth" "$static_path" hey \
        -z "$AUTH_DURATION" -c "$AUTH_CONNS" -H "Authorization: $auth_apr1"
      load_run "a:HEAD manifest, bcrypt-10 user" "$t" "$t-auth" "$static_path" hey \
        -z "$AUTH_DURATION" -c "$AUTH_CONNS" -H "Authorization: $auth_bcrypt"
    done
  done
fi

# --- a valid user during a wrong-password flood --------------------------
# The flood comes from 127.0.0.2 (curl can bind a source address, hey
# cannot), so the gateway's per-address throttle, left on, acts on the
# flooder only; the valid user stays on 127.0.0.1. The valid user sends a
# light, rate-limited load with the correct bcrypt-10 password, once alone
# and once during the flood.
declare -A flood_codes=()
flood_cols=()
for t in "${auth_targets[@]}"; do
  flood_cols+=("$t")
  [[ "$t" == gateway ]] && flood_cols+=(gateway-nothrottle)
done
if has_case flood; then
  log "flood: $FLOOD_RUNS runs x ${#flood_cols[@]} targets x 2 x $FLOOD_DURATION"
  valid=(-z "$FLOOD_DURATION" -c "$VALID_CONNS" -q "$VALID_QPS" -H "Authorization: $auth_bcrypt")
  for run in $(seq "$FLOOD_RUNS"); do
    for col in "${flood_cols[@]}"; do
      [[ "$col" == gateway-nothrottle ]] && ep="$col" || ep="$col-auth"
      read -r -a pp <<<"${cpu_pids[$ep]}"
      load_run "f:valid user alone" "$col" "$ep" "$static_path" hey "${valid[@]}"

      stdbuf -oL curl -s --no-progress-meter -Z --parallel-immediate --parallel-max "$FLOOD_CONNS" --interface 127.0.0.2 \
        -I -o /dev/null -w '%{http_code}\n' -H "Authorization: $auth_wrong" \
        "${url[$ep]}$static_path?flood=[1-100000000]" >"$tmp/flood.out" 2>"$tmp/flood.err" &
      flood_pid=$!
      pids+=("$flood_pid")
      started="$(now)"
      sleep 1
      before="$(cpu_ticks "${pp[@]}")" t0="$(now)"
      load_run "f:valid user during flood" "$col" "$ep" "$static_path" hey "${valid[@]}"
      after="$(cpu_ticks "${pp[@]}")" t1="$(now)"
      kill "$flood_pid" 2>/dev/null || true
      wait "$flood_pid" 2>/dev/null || true
      ended="$(now)"
      n="$(wc -l <"$tmp/flood.out")"
      ((n > 0)) || die "$ep: the flood got no answers: $(head -c 300 "$tmp/flood.err")"
      add "f:flood answers/s" "$col" "$(awk -v n="$n" -v a="$started" -v b="$ended" 'BEGIN { printf "%.1f", n / (b - a) }')"
      add "f:proxy CPU % during flood" "$col" "$(awk -v d=$((after - before)) -v hz="$clk_tck" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "%.0f", d / hz / (b - a) * 100 }')"
      flood_codes[$col]="$(sort "$tmp/flood.out" | uniq -c | sort -rn | awk '{ printf "%s%s× %s", sep, $1, $2; sep = ", " }')"
      log "$(printf '%-19s flood: %s answers (%s)' "$ep" "$n" "${flood_codes[$col]}")"
    done
  done
fi

# --- large blob ----------------------------------------------------------
# One random blob, made once for the blob and tls cases.
blob_bytes="" blob_d="" blob_label=""
make_blob() {
  [[ -n "$blob_bytes" ]] && return 0
  log "generating $BLOB_SIZE of random data"
  head -c "$BLOB_SIZE" /dev/urandom >"$tmp/blob"
  blob_bytes="$(stat -c %s "$tmp/blob")"
  blob_d="sha256:$(sha256_of "$tmp/blob")"
  blob_label="$(awk -v b="$blob_bytes" 'BEGIN { if (b >= 2^30) printf "%g GiB", b / 2^30; else printf "%g MiB", b / 2^20 }')"
}
# Push the blob through an endpoint, then GET it back (the full size must
# arrive), each with the HTTP version curl must have used and the proxy's
# CPU (utime+stime, nginx: master + workers) over the transfer. Adds
# "PREFIX{PUT,GET} MB/sSUFFIX" and "PREFIX{PUT,GET} proxy CPU s/GBSUFFIX";
# sets last_up / last_down (MB/s).
last_up="" last_down=""
blob_round() { # metric-prefix metric-suffix column endpoint http-version [curl options...]
  local pre="$1" suf="$2" col="$3" ep="$4" want="$5" base="${url[$4]}" out up upv down code size v b0 b1 b2
  shift 5
  local -a pp
  read -r -a pp <<<"${cpu_pids[$ep]:-}"
  busy_check
  ((${#pp[@]})) && b0="$(cpu_ticks "${pp[@]}")"
  out="$(push_blob "$base" bench/blob "$tmp/blob" "$blob_d" "$@")" # (a failure there ends the script)
  read -r up upv <<<"$out"
  ((${#pp[@]})) && b1="$(cpu_ticks "${pp[@]}")"
  read -r code size down v <<<"$(curl -sS "$@" -o /dev/null \
    -w '%{http_code} %{size_download} %{speed_download} %{http_version}' "$base/v2/bench/blob/blobs/$blob_d")"
  ((${#pp[@]})) && b2="$(cpu_ticks "${pp[@]}")"
  [[ "$code" == 200 && "$size" == "$blob_bytes" ]] || die "blob GET via $ep: HTTP $code, $size bytes"
  [[ "$upv" == "$want" && "$v" == "$want" ]] || die "blob via $ep: HTTP/$upv PUT, HTTP/$v GET, expected HTTP/$want"
  last_up="$(awk -v s="$up" 'BEGIN { printf "%.1f", s / 1e6 }')"
  last_down="$(awk -v s="$down" 'BEGIN { printf "%.1f", s / 1e6 }')"
  add "${pre}PUT MB/s$suf" "$col" "$last_up"
  add "${pre}GET MB/s$suf" "$col" "$last_down"
  if ((${#pp[@]})); then
    add "${pre}PUT proxy CPU s/GB$suf" "$col" "$(awk -v d=$((b1 - b0)) -v hz="$clk_tck" -v n="$blob_bytes" \
      'BEGIN { printf "%.3f", d / hz / (n / 1e9) }')"
    add "${pre}GET proxy CPU s/GB$suf" "$col" "$(awk -v d=$((b2 - b1)) -v hz="$clk_tck" -v n="$blob_bytes" \
      'BEGIN { printf "%.3f", d / hz / (n / 1e9) }')"
  fi
  log "$(printf '%-19s %s blob HTTP/%-3s  PUT %6.0f MB/s  GET %6.0f MB/s' "$ep" "$blob_label" "$want" "$last_up" "$last_down")"
}

if has_case blob; then
  make_blob
  log "blob: $RUNS runs x ${#targets[@]} targets x $blob_label PUT + GET"
  for run in $(seq "$RUNS"); do
    for t in "${targets[@]}"; do
      blob_round "$blob_label blob " "" "$t" "$t" 1.1
    done
  done
fi

# --- large blob over TLS -------------------------------------------------
# gateway and nginx terminate TLS (same certificate), once with HTTP/1.1 and
# once with HTTP/2 on the client side (plain HTTP/1.1 to registry:2 behind
# them); "direct" is plain HTTP/1.1 to registry:2, the ceiling, taken from
# the blob case when that runs too (the same transfer; saves a minute). The
# order of the two protocols alternates between runs; each run also adds
# the HTTP/2 to HTTP/1.1 ratio of that run.
tls_targets=()
for t in gateway nginx; do has_target "$t" && tls_targets+=("$t"); done
if has_case tls; then
  make_blob
  for t in "${tls_targets[@]}"; do
    for p in 1.1 2; do
      [[ "$(curl -sS "${tls_curl[@]}" "--http$p" -o /dev/null -w '%{http_code} %{http_version}' \
        "${url[$t-tls]}/v2/")" == "200 $p" ]] || die "$t-tls: GET /v2/ over HTTP/$p failed"
    done
  done
  log "tls: $RUNS runs x ${#targets[@]} targets x HTTP/1.1 + HTTP/2 x $blob_label PUT + GET"
  for run in $(seq "$RUNS"); do
    for t in "${targets[@]}"; do
      if [[ "$t" == direct ]]; then
        has_case blob || blob_round "t:$blob_label " ", HTTP/1.1" direct direct 1.1
        continue
      fi
      ((run % 2)) && order=(1.1 2) || order=(2 1.1)
      for p in "${order[@]}"; do
        blob_round "t:$blob_label " ", HTTP/$p" "$t" "$t-tls" "$p" "--http$p" "${tls_curl[@]}"
        [[ "$p" == 2 ]] && up2="$last_up" down2="$last_down" || up1="$last_up" down1="$last_down"
      done
      add "t:PUT, HTTP/2 ÷ HTTP/1.1 (ratio)" "$t" "$(awk -v a="$up2" -v b="$up1" 'BEGIN { printf "%.3f", a / b }')"
      add "t:GET, HTTP/2 ÷ HTTP/1.1 (ratio)" "$t" "$(awk -v a="$down2" -v b="$down1" 'BEGIN { printf "%.3f", a / b }')"
    done
  done
  if has_case blob; then
    for x in PUT GET; do
      res["t:$blob_label $x MB/s, HTTP/1.1|direct"]="${res["$blob_label blob $x MB/s|direct"]:-}"
    done
  fi
fi

# --- small requests over TLS ---------------------------------------------
# /v2/ through TLS listeners of both proxies in front of the static
# upstream: GET on kept-alive connections (wrk), then HEAD with a new TCP
# connection and a full TLS handshake per request (hey -disable-keepalive:
# Go's client, with no session cache, never resumes a session). Not wrk
# with `Connection: close`: wrk keeps each connection's TLS session and
# resumes it on the next one (measured with nginx's $ssl_session_reused),
# so it would time abbreviated handshakes, and only where the server
# offers resumption. hey sends the Host, port included, as SNI, which rustls
# rejects as illegal (RFC 6066: a bare host name); -host sets it to the
# bare name. The difference of the two CPU costs per request is the
# proxy's CPU per handshake.
if has_case tls-small; then
  for t in "${tls_targets[@]}"; do
    expect_status 200 GET "${url[$t-tls-static]}/v2/" "${tls_curl[@]}"
    expect_status 200 HEAD "${url[$t-tls-static]}/v2/" "${tls_curl[@]}"
  done
  log "tls-small: $RUNS runs x ${#tls_targets[@]} targets x 2 x $TLS_DURATION"
  for run in $(seq "$RUNS"); do
    for t in "${tls_targets[@]}"; do
      load_run "h:GET /v2/, keep-alive" "$t" "$t-tls-static" /v2/ wrk -d "$TLS_DURATION"
      ka="$last_cpu_us"
      load_run "h:TLS handshake + HEAD /v2/" "$t" "$t-tls-static" /v2/ hey \
        -z "$TLS_DURATION" -c 32 -disable-keepalive -host localhost
      add "h:proxy CPU µs per handshake (difference)" "$t" "$(awk -v a="$last_cpu_us" -v b="$ka" 'BEGIN { printf "%.1f", a - b }')"
    done
  done
fi

# --- many virtual registries ---------------------------------------------
# The same GET /v2/ through two gateways in front of the static upstream,
# one with 1 virtual registry and one with VHOSTS of them, each asked for
# (Host header) its last registry: with VHOSTS, a miss in the exact-name map
# and then the host_regex set.
declare -A vh_ep=([1]=gateway-vh1 [$VHOSTS]=gateway-vhN)
vh_cols=(1 "$VHOSTS")
if has_case vhosts && ! has_target gateway; then
  log "vhosts: skipped, it needs the gateway target"
elif has_case vhosts; then
  for c in "${vh_cols[@]}"; do
    expect_status 200 GET "${url[${vh_ep[$c]}]}/v2/" -H "Host: r$((c - 1)).example"
    expect_status 404 GET "${url[${vh_ep[$c]}]}/v2/" -H "Host: nomatch.example"
  done
  log "vhosts: $RUNS runs x 1 vs $VHOSTS registries x $VHOSTS_DURATION"
  for run in $(seq "$RUNS"); do
    ((run % 2)) && order=("${vh_cols[@]}") || order=("$VHOSTS" 1)
    for c in "${order[@]}"; do
      load_run "v:GET /v2/, Host of the last registry" "$c" "${vh_ep[$c]}" /v2/ wrk \
        -d "$VHOSTS_DURATION" -H "Host: r$((c - 1)).example"
    done
  done
fi

# Peak RSS after all runs, per proxy process (or nginx instance).
for t in gateway nginx; do
  for x in "$t|proxy peak RSS MiB" "$t-static|s:proxy peak RSS MiB" \
    "$t-tls|t:proxy peak RSS MiB" "$t-tls-static|h:proxy peak RSS MiB" \
    "$t-default|d:log on: proxy peak RSS MiB" "$t-default-nolog|d:log off: proxy peak RSS MiB"; do
    read -r -a pp <<<"${cpu_pids[${x%%|*}]:-}"
    ((${#pp[@]})) || continue
    add "${x#*|}" "$t" "$(awk -v k="$(peak_rss_kib "${pp[@]}")" 'BEGIN { printf "%.1f", k / 1024 }')"
  done
done
for c in "${vh_cols[@]}"; do
  read -r -a pp <<<"${cpu_pids[${vh_ep[$c]}]:-}"
  ((${#pp[@]})) || continue
  add "v:gateway peak RSS MiB" "$c" "$(awk -v k="$(peak_rss_kib "${pp[@]}")" 'BEGIN { printf "%.1f", k / 1024 }')"
done

# --- report --------------------------------------------------------------
val() { # metric column -> median, rounded for the table
  local -a v
  local fmt
  read -r -a v <<<"${res["$1|$2"]:-}"
  ((${#v[@]})) || { echo n/a; return; }
  case "$1" in *"s/GB"* | *"(ratio)" | *"switches/req") fmt="%.2f" ;; *" ms") fmt="%.2f" ;; *"µs/req"* | *MiB) fmt="%.1f" ;; *) fmt="%.0f" ;; esac
  # shellcheck disable=SC2059 # the format is one of the above
  LC_ALL=C printf "$fmt\n" "$(median "${v[@]}")"
}
ratio() { [[ "$1" == n/a || "$2" == n/a ]] && { echo n/a; return; }
  # (a difference within the noise can be negative: no ratio then)
  awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0 || a < 0) { print "n/a"; exit }
    r = a / b; printf (r >= 100) ? "%.0f\n" : (r >= 0.1 || r == 0) ? "%.2f\n" : "%.2g\n", r }'; }
# A table of metrics x columns with ratio columns: "X" is gateway/X, "A/B"
# is column A over column B. A metric with no value in any column is left
# out; "(ratio)" metrics get no ratio cells. Rows are named without their
# "x:" key prefix.
# Appends to m the four rows of a load run (req/s, p50, p99, proxy CPU)
# for each label, named as the runs recorded them: prefix + label + row.
load_rows() { # prefix label...
  local p="$1" x r
  shift
  for x in "$@"; do
    for r in "req/s" "p50 ms" "p99 ms" "proxy CPU µs/req"; do m+=("$p$x $r"); done
  done
}

table() { # "col1 col2 ..." "label1|label2|..." "ratio-col ..." metrics...
  local -a cols labels rcols
  read -r -a cols <<<"$1"
  IFS='|' read -r -a labels <<<"$2"
  read -r -a rcols <<<"$3"
  shift 3
  local m c r line any v
  for r in "${!rcols[@]}"; do [[ "${rcols[r]}" == */* ]] || rcols[r]="gateway/${rcols[r]}"; done
  printf '| metric |'
  for c in "${labels[@]}" "${rcols[@]}"; do printf ' %s |' "$c"; done
  printf '\n|---|'
  for c in "${cols[@]}" "${rcols[@]}"; do printf -- '---:|'; done
  printf '\n'
  for m in "$@"; do
    line="| ${m#?:} |" any=0
    for c in "${cols[@]}"; do
      v="$(val "$m" "$c")"
      [[ "$v" != n/a ]] && any=1
      line+=" $v |"
    done
    for r in "${rcols[@]}"; do
      if [[ "$m" == *"(ratio)" ]]; then line+=" |"
      else line+=" $(ratio "$(val "$m" "${r%%/*}")" "$(val "$m" "${r#*/}")") |"
      fi
    done
    ((any)) && echo "$line"
  done
  return 0
}

# What a TLS endpoint negotiates with an OpenSSL client: "TLSv1.3
# TLS_AES_256_GCM_SHA384 X25519".
tls_info() { # endpoint
  local u="${url[$1]}"
  openssl s_client -connect "127.0.0.1:${u##*:}" -servername localhost -brief </dev/null 2>&1 |
    awk -F': *' '/^Protocol version/ { p = $2 } /^Ciphersuite/ { c = $2 } /^(Server|Peer) Temp Key/ { k = $2; sub(/,.*/, "", k) }
      END { print (p == "" ? "?" : p), c, k }'
}
tls_summary() { # endpoint-suffix -> "gateway: ...; nginx: ..."
  local t out=""
  for t in "${tls_targets[@]}"; do out+="${out:+; }$t: $(tls_info "$t$1")"; done
  echo "$out"
}
commit="$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (+local changes)')"

report="$(
  echo "# registry-gateway vs nginx vs direct"
  echo
  if [[ -n "$GATEWAY_BIN" ]]; then
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), gateway: prebuilt binary from GATEWAY_BIN ($("$gateway_bin" --version)), working tree at commit $commit"
  else
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), gateway commit: $commit"
  fi
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
  echo "- $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //'), $( ((need_registry)) && docker-registry --version | awk '{ print "registry " $NF ", " }')$(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), hey $(dpkg-query -W -f '${Version}' hey 2>/dev/null || echo '?'), $(curl --version | head -n 1 | awk '{ print $1, $2 }')"
  if ((need_tls)); then
    echo "- TLS: nginx $("$nginx_bin" -V 2>&1 | grep -o 'running with OpenSSL [^ ]*' || "$nginx_bin" -V 2>&1 | grep -o 'built with OpenSSL [^ ]*'), gateway with rustls $(awk '$0 == "name = \"rustls\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock 2>/dev/null) (Cargo.lock), clients $(openssl version | awk '{ print $1, $2 }'); certificate from \`registry-gateway certs\` (ECDSA P-256, leaf + CA)"
  fi
  echo "- cases: ${cases[*]}; targets: ${targets[*]}"
  echo "- other activity: cargo/rustc, gateway test or other benchmark processes were running at the start of $busy_runs of $load_runs load runs; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

  if has_case registry || has_case blob; then
    echo
    echo "## registry:2 upstream"
    echo
    echo "Median of $RUNS runs, targets alternated within each run; GET: \`wrk -t2 -c32 -d$DURATION --latency\`; HEAD: \`hey -c 32 -z $DURATION\` (wrk cannot time HEAD)."
    echo
    m=()
    if has_case registry; then
      load_rows "" "GET /v2/" "HEAD manifest"
    fi
    has_case blob && m+=("$blob_label blob PUT MB/s" "$blob_label blob GET MB/s"
      "$blob_label blob PUT proxy CPU s/GB" "$blob_label blob GET proxy CPU s/GB")
    m+=("proxy peak RSS MiB")
    table "direct gateway nginx" "direct|gateway|nginx" "nginx direct" "${m[@]}"
  fi

  if has_case static; then
    echo
    echo "## static upstream (small requests)"
    echo
    echo "The same small requests against a static nginx upstream (1 worker, answers from memory), so the proxies, not registry:2, are the limit. \"direct\" is that upstream without a proxy. Median of $RUNS runs, same load tools and settings as above."
    echo
    m=()
    load_rows s: "GET /v2/" "HEAD manifest"
    m+=("s:proxy peak RSS MiB")
    table "direct gateway nginx" "direct|gateway|nginx" "nginx direct" "${m[@]}"
  fi

  if has_case default && ((${#default_targets[@]})); then
    echo
    echo "## default configuration, access log on and off (static upstream)"
    echo
    echo "GET of the static manifest with \`Accept: $oci_manifest\`, \`wrk -t2 -c64 -d$DURATION --latency\`, through each proxy configured the way users first run it. Gateway: the repository's \`gateway.yaml\` (text access log to stdout, here redirected to a file in the bench's temp dir; metrics listener on; TLS listener on, unused; no RUST_LOG, so process logging at info), with only its listener, metrics and upstream addresses, its certificate paths and \`server.threads: 2\` changed. nginx: the classic registry recipe plus \`access_log FILE combined;\` (nginx's default log, same disk). \"log off\": the same with \`access_log: off\` / \`access_log off;\`. Median of $RUNS rounds; a round runs the $(( ${#default_targets[@]} * 2 )) setups one after the other, in reverse order every other round. Context switches = voluntary + involuntary over every thread of the proxy (\`/proc/PID/task/*/status\`; nginx: master + workers), per request. Access log cost = proxy CPU µs/req with the log on minus with it off, per round: the CPU one log line costs.${default_log_note:+ Bytes per log line: $default_log_note.}"
    echo
    m=()
    for l in on off; do
      load_rows "d:log $l: " "GET manifest"
      m+=("d:log $l: GET manifest proxy ctx switches/req")
    done
    m+=("d:access log cost: proxy CPU µs/req, on − off" "d:log on: proxy peak RSS MiB" "d:log off: proxy peak RSS MiB")
    table "gateway nginx" "gateway|nginx" "nginx" "${m[@]}"
  fi

  if has_case auth; then
    echo
    echo "## Basic auth (static upstream)"
    echo
    echo "HEAD of the static manifest with \`Authorization: Basic ...\`, one user per row, \`hey -c $AUTH_CONNS -z $AUTH_DURATION\`; median of $RUNS runs. Both proxies read the same htpasswd file (bcrypt cost 10 from \`htpasswd -nbB -C 10\`, apr1 from \`htpasswd -nbm\`)."
    echo
    m=()
    load_rows "a:HEAD manifest, " "apr1 user" "bcrypt-10 user"
    table "gateway nginx" "gateway|nginx" "nginx" "${m[@]}"
  fi

  if has_case flood; then
    echo
    echo "## valid bcrypt-10 user during a wrong-password flood (static upstream)"
    echo
    echo "Valid user: \`hey -c $VALID_CONNS -q $VALID_QPS -z $FLOOD_DURATION\` (at most $((VALID_CONNS * VALID_QPS)) req/s offered) from 127.0.0.1 with the right bcrypt-10 password, alone and then during a flood of HEAD requests with a wrong password for the same user: \`curl -Z --parallel-immediate --parallel-max $FLOOD_CONNS --interface 127.0.0.2\` ($FLOOD_CONNS connections), started 1 s before and stopped right after the valid user's run. Median of $FLOOD_RUNS run(s)."
    echo
    fcols="" flabels=""
    for c in "${flood_cols[@]}"; do
      fcols+="$c "
      [[ "$c" == gateway-nothrottle ]] && flabels+="gateway, throttle off|" || flabels+="$c|"
    done
    rc=""
    has_target nginx && has_target gateway && rc=nginx
    table "$fcols" "${flabels%|}" "$rc" \
      "f:valid user alone req/s" "f:valid user during flood req/s" \
      "f:valid user alone p50 ms" "f:valid user during flood p50 ms" \
      "f:valid user alone p99 ms" "f:valid user during flood p99 ms" \
      "f:flood answers/s" "f:proxy CPU % during flood"
    line="| flood answers (last run) |"
    for c in "${flood_cols[@]}"; do line+=" ${flood_codes[$c]:-n/a} |"; done
    [[ -n "$rc" ]] && line+=" |"
    echo "$line"
  fi

  if has_case tls; then
    echo
    echo "## $blob_label blob over TLS (registry:2 upstream)"
    echo
    echo "The blob case's transfer (POST + monolithic PUT?digest=, then GET, with curl) through the TLS listeners of both proxies, once with \`curl --http1.1\` and once with \`curl --http2\` (h2 by ALPN; checked from curl's %{http_version}); behind them plain HTTP/1.1 to registry:2. \"direct\" is registry:2 over plain HTTP/1.1, the ceiling$(has_case blob && echo " (the blob case's figures)"). Median of $RUNS runs; the order of the two protocols alternates between runs, and the HTTP/2 ÷ HTTP/1.1 rows are the median of each run's ratio. Negotiated: $(tls_summary -tls)."
    echo
    m=()
    for x in PUT GET; do
      m+=("t:$blob_label $x MB/s, HTTP/1.1" "t:$blob_label $x MB/s, HTTP/2" "t:$x, HTTP/2 ÷ HTTP/1.1 (ratio)"
        "t:$blob_label $x proxy CPU s/GB, HTTP/1.1" "t:$blob_label $x proxy CPU s/GB, HTTP/2")
    done
    m+=("t:proxy peak RSS MiB")
    table "direct gateway nginx" "direct (plain)|gateway|nginx" "nginx direct" "${m[@]}"
  fi

  if has_case tls-small; then
    echo
    echo "## small requests and handshakes over TLS (static upstream)"
    echo
    echo "\`/v2/\` through the TLS listeners of both proxies in front of the static upstream (HTTP/1.1). Keep-alive: \`wrk -t2 -c32 -d$TLS_DURATION --latency\` GET (OpenSSL client; negotiated: $(tls_summary -tls-static)). Handshakes: \`hey -c 32 -z $TLS_DURATION -disable-keepalive -host localhost\` HEAD, a new TCP connection and a full TLS 1.3 handshake per request (Go's crypto/tls: X25519, ECDSA P-256 certificate, no session resumption), so the req/s of those rows are handshakes/s. Proxy CPU per handshake = handshake row minus keep-alive row, proxy CPU µs/req, per run. Median of $RUNS runs."
    echo
    m=()
    load_rows h: "GET /v2/, keep-alive" "TLS handshake + HEAD /v2/"
    m+=("h:proxy CPU µs per handshake (difference)" "h:proxy peak RSS MiB")
    table "gateway nginx" "gateway|nginx" "nginx" "${m[@]}"
  fi

  if has_case vhosts && has_target gateway; then
    echo
    echo "## virtual registries: 1 vs $VHOSTS (static upstream, gateway only)"
    echo
    echo "\`GET /v2/\` with \`wrk -t2 -c32 -d$VHOSTS_DURATION --latency -H 'Host: rI.example'\` through two gateways in front of the static upstream: one with 1 virtual registry, one with $VHOSTS (the first $((VHOSTS / 2)) matched by exact name, \`hosts: [rI.example]\`, the other $((VHOSTS - VHOSTS / 2)) by \`host_regex: 'rI\\.(example|test)'\`; no default). Each is asked for its last registry (r0 / r$((VHOSTS - 1))), a host_regex one in both: a miss in the exact-name map, then the regex set. Median of $RUNS runs; the two alternate, in turns first."
    echo
    m=()
    load_rows v: "GET /v2/, Host of the last registry"
    m+=("v:gateway peak RSS MiB")
    table "1 $VHOSTS" "1 registry|$VHOSTS registries" "$VHOSTS/1" "${m[@]}"
  fi

  echo
  echo "Notes:"
  echo "- Ratios above 1 favour the gateway for req/s and MB/s, and disfavour it for latency, CPU and RSS."
  echo "- No per-request logging on any proxy or upstream$(has_case default && echo " (except the default case's log-on rows)"): the gateway runs with access_log: off and RUST_LOG=warn, nginx with access_log off; registry:2 logs at error level, access log disabled."
  echo "- nginx uses the classic registry recipe (worker_processes 2, upstream keepalive 32, proxy_buffering/proxy_request_buffering off); the gateway runs with server.threads 2. Each upstream has its own gateway process and nginx instance (one nginx instance serves the static upstream both without and with auth_basic, on two ports)."
  echo "- proxy CPU = utime+stime of the proxy (nginx: master + workers) over each load run / requests served; the upstream's CPU is not counted. Peak RSS = VmHWM after all runs (nginx: summed over its processes)."
  if has_case blob || has_case tls; then
    echo "- $blob_label of random data, pushed with POST + one monolithic PUT?digest= (no Expect: 100-continue) and read back with GET; MB = 10^6 bytes. Proxy CPU s/GB = the proxy's CPU seconds over the transfer per 10^9 bytes moved."
  fi
  if has_case tls || has_case tls-small; then
    echo "- TLS: both proxies serve the same certificate and key; nginx listens with \`ssl http2\`, TLSv1.2 and TLSv1.3, \`ssl_session_cache shared:SSL:10m\`, otherwise its defaults (HTTP/2 windows, keepalive_requests 1000); the gateway with \`tls.http2: true\` and its defaults. curl verifies the certificate against the dev CA; wrk does not verify."
  fi
  if has_case tls-small; then
    echo "- Handshake rows: the client (hey) does its half of every handshake on the same CPUs, so handshakes/s are partly client-bound; CPU per handshake is the proxy's own cost. wrk is not used there: with \`Connection: close\` it resumes its previous TLS session on every new connection."
  fi
  if has_case default; then
    echo "- Default case: nginx writes each log line with one write(2) from the worker that served the request; its CPU per line is about a microsecond, within run-to-run noise, so its on − off difference can come out negative (no ratio then). The gateway's default also keeps its metrics listener and info-level process log; only the access log differs between its two setups. With 64 client connections nginx's \`keepalive 32\` (idle upstream connections kept per worker) is sometimes too few, so it closes and opens upstream connections during the run (thousands in a few seconds, left in TIME_WAIT), as the recipe would in production; the gateway's pool (\`server.upstream_keepalive\`, default 128) keeps its connections."
  fi
  if has_case static; then
    echo "- Static upstream: at these rates the load tool needs much of a core itself, hey (HEAD) more than wrk (GET), so the HEAD rows there are partly client-bound; the GET rows show the proxies' cost best."
  fi
  if has_case auth || has_case flood; then
    echo "- The gateway verifies a credential once and then serves it from its credential cache (default auth_cache, ttl 5m), so its bcrypt and apr1 rows measure the cached path; nginx runs the hash on every request, in its worker event loop."
  fi
  if has_case flood; then
    echo "- The gateway keeps its default throttle (10 wrong credentials per address per 60s, then 429), which the flooder on 127.0.0.2 reaches at once; \"gateway, throttle off\" is a second gateway with auth_throttle.max_failures 0, where every wrong guess is hashed (at most one bcrypt run at a time on 2 cores; the flood repeats one wrong password, and identical guesses in flight share one run). nginx has no throttle. Flood answers/s counts every answer the flooder got; proxy CPU % is over the valid user's run during the flood (200% = both cores)."
    echo "- The flooder, the valid user's client, the proxy and the upstream share the same CPUs, so part of any slowdown is the flooder's own CPU use."
  fi
  echo "- Client, proxy and upstream share the same $(nproc) CPUs over loopback, so absolute numbers are low and ratios are the useful part."
)"

if [[ -n "$REPORT" ]]; then
  mkdir -p "$(dirname "$REPORT")"
  printf '%s\n' "$report" | tee "$REPORT"
else
  printf '%s\n' "$report"
fi
