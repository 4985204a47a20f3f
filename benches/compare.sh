#!/usr/bin/env bash
# Compares registry-gateway with the classic nginx recipe, and with no proxy
# at all ("direct"), on loopback:
#   registry  small requests against a real registry:2
#   static    small requests against a fast static upstream (a bare nginx)
#   auth      Basic auth (apr1 and bcrypt-10 users) in front of that upstream
#   flood     a valid user's latency during a wrong-password flood
#   blob      a large blob pushed and pulled through registry:2
# Writes a Markdown report to stdout and to benches/results/latest.md.
#
# Knobs (env): RUNS=3 DURATION=10s BLOB_SIZE=1G TARGETS="direct gateway nginx"
#   CASES=registry,static,auth,flood,blob ("small" = registry,static)
#   AUTH_DURATION=5s AUTH_CONNS=16
#   FLOOD_RUNS=1 FLOOD_DURATION=10s FLOOD_CONNS=16 VALID_CONNS=2 VALID_QPS=10
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[[ -f "$HOME/.cargo/env" ]] && ! command -v cargo >/dev/null && . "$HOME/.cargo/env"

RUNS="${RUNS:-3}" DURATION="${DURATION:-10s}" BLOB_SIZE="${BLOB_SIZE:-1G}"
AUTH_DURATION="${AUTH_DURATION:-5s}" AUTH_CONNS="${AUTH_CONNS:-16}"
FLOOD_RUNS="${FLOOD_RUNS:-1}" FLOOD_DURATION="${FLOOD_DURATION:-10s}" FLOOD_CONNS="${FLOOD_CONNS:-16}"
VALID_CONNS="${VALID_CONNS:-2}" VALID_QPS="${VALID_QPS:-10}"
read -r -a targets <<<"${TARGETS:-direct gateway nginx}"
read -r -a cases <<<"$(tr ',' ' ' <<<"${CASES:-registry,static,auth,flood,blob}")"

has_target() { [[ " ${targets[*]} " == *" $1 "* ]]; }
has_case() { [[ " ${cases[*]} " == *" $1 "* ]] ||
  { [[ " ${cases[*]} " == *" small "* ]] && [[ "$1" == registry || "$1" == static ]]; }; }
for c in "${cases[@]}"; do
  case "$c" in registry | static | auth | flood | blob | small) ;;
    *) echo "bench: unknown case '$c' (registry, static, auth, flood, blob, small)" >&2; exit 2 ;;
  esac
done
for t in "${targets[@]}"; do
  case "$t" in direct | gateway | nginx) ;;
    *) echo "bench: unknown target '$t' (direct, gateway, nginx)" >&2; exit 2 ;;
  esac
done
need_registry=0 need_static=0
{ has_case registry || has_case blob; } && need_registry=1
{ has_case static || has_case auth || has_case flood; } && need_static=1

scripts/install-deps.sh bench >&2
cargo build --release >&2
gateway_bin="$root/target/release/registry-gateway"
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/registry-gateway-bench.XXXXXX")"
# nginx workers drop to an unprivileged user when started as root: they need
# to reach the temp dirs and the htpasswd file.
chmod 755 "$tmp"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  while :; do p=$((20000 + RANDOM % 40000)); port_open "$p" || { echo "$p"; return; }; done
}
wait_up() { # url pid name
  local _
  for _ in $(seq 100); do
    curl -sS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup; log: $(tail -n 5 "$tmp/$3.log" 2>/dev/null)"
    sleep 0.1
  done
  die "$3 did not answer on $1"
}
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
children_of() { # pid -> its child pids (nginx workers)
  local p stat f
  for p in /proc/[0-9]*; do
    stat="$(cat "$p/stat" 2>/dev/null)" || continue
    read -r -a f <<<"${stat##*) }"
    [[ "${f[1]}" == "$1" ]] && printf ' %s' "${p#/proc/}"
  done
  return 0
}

oci_manifest=application/vnd.oci.image.manifest.v1+json
declare -A url=()      # endpoint -> base URL
declare -A cpu_pids=() # endpoint -> proxy pids whose CPU is counted

# --- servers --------------------------------------------------------------
# registry:2, the upstream of the registry and blob cases. Its logging is
# turned down so the shared backend spends as little CPU as possible on
# things that are not proxying.
if ((need_registry)); then
  reg_port="$(free_port)"
  mkdir -p "$tmp/registry-data"
  cat >"$tmp/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/registry-data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$reg_port
EOF
  docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
  pids+=($!)
  wait_up "http://127.0.0.1:$reg_port/v2/" "${pids[-1]}" registry
  url[direct]="http://127.0.0.1:$reg_port"
fi

# The static upstream: one nginx worker answering the two small-request
# endpoints from memory, so that it is never the bottleneck the way
# registry:2 (about 1.5k requests/s here) is. Its CPU is not counted.
static_manifest='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3}]}'
static_digest="sha256:$(printf '%s' "$static_manifest" | sha256sum | cut -d' ' -f1)"
static_path=/v2/bench/static/manifests/latest
if ((need_static)); then
  st_port="$(free_port)"
  d="$tmp/static"
  mkdir -p "$d/tmp"
  chmod 755 "$d" "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $tmp/static.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  types { }
  default_type application/json;
  server {
    listen 127.0.0.1:$st_port;
    location = /v2/ {
      add_header Docker-Distribution-Api-Version registry/2.0 always;
      return 200 '{}';
    }
    location = $static_path {
      default_type $oci_manifest;
      add_header Docker-Content-Digest $static_digest always;
      add_header Docker-Distribution-Api-Version registry/2.0 always;
      return 200 '$static_manifest';
    }
    location / { return 404; }
  }
}
EOF
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

start_gateway() { # endpoint upstream-port extra-yaml
  local port pid
  port="$(free_port)"
  cat >"$tmp/$1.yaml" <<EOF
server:
  threads: 2
  grace_period: 1s
$3
listeners:
  - address: "127.0.0.1:$port"
upstreams:
  registry:
    url: "http://127.0.0.1:$2"
registries:
  - name: main
    default: true
    upstream: registry
EOF
  "$gateway_bin" check --config "$tmp/$1.yaml" >&2 || die "gateway rejected the $1 config"
  # warn: skip the per-request access log, as nginx does with access_log off.
  RUST_LOG=warn "$gateway_bin" --config "$tmp/$1.yaml" >"$tmp/$1.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_up "http://127.0.0.1:$port/v2/" "$pid" "$1"
  url[$1]="http://127.0.0.1:$port"
  cpu_pids[$1]="$pid"
}

# The classic registry recipe; with an auth port, a second server block with
# the same proxying plus auth_basic.
start_nginx() { # endpoint upstream-port [auth-endpoint]
  local d="$tmp/$1" port auth_port="" master loc
  port="$(free_port)"
  [[ -n "${3:-}" ]] && auth_port="$(free_port)"
  mkdir -p "$d/tmp"
  chmod 755 "$d" "$d/tmp"
  loc='
      proxy_pass http://registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 900;
      proxy_buffering off;
      proxy_request_buffering off;'
  {
    cat <<EOF
worker_processes 2;
pid $d/nginx.pid;
error_log $tmp/$1.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;

  upstream registry {
    server 127.0.0.1:$2;
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$port;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {$loc
    }
  }
EOF
    [[ -n "$auth_port" ]] && cat <<EOF
  server {
    listen 127.0.0.1:$auth_port;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {
      auth_basic "bench";
      auth_basic_user_file $tmp/htpasswd;$loc
    }
  }
EOF
    echo "}"
  } >"$d/nginx.conf"
  "$nginx_bin" -e "$tmp/$1.log" -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >>"$tmp/$1.log" 2>&1 &
  master=$!
  pids+=("$master")
  wait_up "http://127.0.0.1:$port/v2/" "$master" "$1"
  url[$1]="http://127.0.0.1:$port"
  cpu_pids[$1]="$master$(children_of "$master")"
  if [[ -n "$auth_port" ]]; then
    url[$3]="http://127.0.0.1:$auth_port"
    cpu_pids[$3]="${cpu_pids[$1]}"
  fi
}

auth_yaml="auth:
  realm: \"bench\"
  htpasswd: $tmp/htpasswd"
if has_target gateway; then
  ((need_registry)) && start_gateway gateway "$reg_port" ""
  has_case static && start_gateway gateway-static "$st_port" ""
  { has_case auth || has_case flood; } && start_gateway gateway-auth "$st_port" "$auth_yaml"
  has_case flood && start_gateway gateway-nothrottle "$st_port" "  auth_throttle:
    max_failures: 0
$auth_yaml"
fi
if has_target nginx; then
  ((need_registry)) && start_nginx nginx "$reg_port"
  if has_case auth || has_case flood; then start_nginx nginx-static "$st_port" nginx-auth
  elif has_case static; then start_nginx nginx-static "$st_port"
  fi
fi

# --- helpers --------------------------------------------------------------
clk_tck="$(getconf CLK_TCK)"
cpu_ticks() { # pids... -> utime+stime summed over all threads
  local p stat total=0
  for p in "$@"; do
    stat="$(cat "/proc/$p/stat")"
    read -r -a f <<<"${stat##*) }" # fields from "state" on: utime=11, stime=12
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
peak_rss_kib() { # pids... -> summed VmHWM (nginx: master + workers)
  local p total=0 v
  for p in "$@"; do
    v="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")"
    total=$((total + v))
  done
  echo "$total"
}
to_ms() { # wrk durations: 812.00us, 1.20ms, 1.01s, 1.00m
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : 0;
    printf "%.3f", n * f }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "n/a"; exit }
    print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
now() { date +%s.%N; }

# Upload a blob in two steps (POST, then monolithic PUT with ?digest=) to
# the given base URL; the Location path is re-based onto that URL so the
# PUT goes through the same target. Prints curl's upload speed in bytes/s.
# `Expect:` is disabled: docker/skopeo clients do not send it, and curl
# would otherwise pause waiting for a 100 Continue.
push_blob() { # base repo file digest
  local loc sep out
  loc="$(curl -fsS -X POST -D - -o /dev/null "$1/v2/$2/blobs/uploads/" |
    awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')"
  [[ -n "$loc" ]] || die "no upload Location from $1"
  [[ "$loc" == *://* ]] && loc="/${loc#*://*/}"
  [[ "$loc" == *\?* ]] && sep='&' || sep='?'
  out="$(curl -sS -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' -T "$3" \
    -o /dev/null -w '%{http_code} %{speed_upload}' "$1$loc${sep}digest=$4")"
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

# Other work on the machine (a build, a test suite) skews the figures: each
# load run notes whether compilers or test binaries were running.
busy_runs=0 load_runs=0
busy_check() {
  load_runs=$((load_runs + 1))
  pgrep -f '(^|/)(cargo|rustc) |registry-gateway --config /tmp/\.gateway-test' >/dev/null &&
    busy_runs=$((busy_runs + 1))
  return 0
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

load_run() {
  local m="$1" col="$2" ep="$3" u="${url[$3]}$4" tool="$5" before after out rps p50 p99 reqs bad
  shift 5
  local -a pp
  read -r -a pp <<<"${cpu_pids[$ep]:-}"
  busy_check
  ((${#pp[@]})) && before="$(cpu_ticks "${pp[@]}")"
  if [[ "$tool" == wrk ]]; then
    out="$(wrk -t2 -c32 -d"$DURATION" --latency "$u")"
  else
    out="$(hey -o csv -m HEAD -H "Accept: $oci_manifest" "$@" "$u")"
  fi
  ((${#pp[@]})) && after="$(cpu_ticks "${pp[@]}")"
  if [[ "$tool" == wrk ]]; then
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
    reqs="$(awk '/requests in/ { print $1 }' <<<"$out")"
    bad="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")"
  else
    read -r rps p50 p99 reqs bad <<<"$(hey_stats <<<"$out")"
    [[ "$bad" == 0 ]] && bad=""
  fi
  [[ -z "$bad" && "$reqs" -gt 0 ]] || die "$ep: $reqs requests, ${bad:-0} failed for $u"
  add "$m req/s" "$col" "$rps"
  add "$m p50 ms" "$col" "$p50"
  add "$m p99 ms" "$col" "$p99"
  if ((${#pp[@]})); then
    add "$m proxy CPU µs/req" "$col" "$(awk -v d=$((after - before)) -v hz="$clk_tck" -v n="$reqs" \
      'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
  fi
  log "$(printf '%-19s %-30s %10s req/s  p50 %s ms  p99 %s ms' "$ep" "$m" "$rps" "$p50" "$p99")"
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
    grep -qi "^docker-content-digest: $static_digest$" <<<"$hdrs" &&
      grep -qi "^content-type: $oci_manifest$" <<<"$hdrs" || die "$ep: wrong manifest headers: $hdrs"
  done
  log "static: $RUNS runs x ${#targets[@]} targets x 2 endpoints x $DURATION"
  for run in $(seq "$RUNS"); do
    for t in "${targets[@]}"; do
      load_run "s:GET /v2/" "$t" "${static_ep[$t]}" /v2/ wrk
      load_run "s:HEAD manifest" "$t" "${static_ep[$t]}" "$static_path" hey -z "$DURATION" -c 32
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
if has_case blob; then
  log "generating $BLOB_SIZE of random data"
  head -c "$BLOB_SIZE" /dev/urandom >"$tmp/blob"
  blob_bytes="$(stat -c %s "$tmp/blob")"
  blob_d="sha256:$(sha256_of "$tmp/blob")"
  blob_label="$(awk -v b="$blob_bytes" 'BEGIN { if (b >= 2^30) printf "%g GiB", b / 2^30; else printf "%g MiB", b / 2^20 }')"
  for run in $(seq "$RUNS"); do
    for t in "${targets[@]}"; do
      up="$(push_blob "${url[$t]}" bench/blob "$tmp/blob" "$blob_d")"
      out="$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' \
        "${url[$t]}/v2/bench/blob/blobs/$blob_d")"
      read -r code size down <<<"$out"
      [[ "$code" == 200 && "$size" == "$blob_bytes" ]] || die "blob GET via $t: HTTP $code, $size bytes"
      add "$blob_label blob PUT MB/s" "$t" "$(awk -v s="$up" 'BEGIN { printf "%.1f", s / 1e6 }')"
      add "$blob_label blob GET MB/s" "$t" "$(awk -v s="$down" 'BEGIN { printf "%.1f", s / 1e6 }')"
      log "$(printf '%-8s %s blob  PUT %.0f MB/s  GET %.0f MB/s' "$t" "$blob_label" \
        "$(awk -v s="$up" 'BEGIN { print s / 1e6 }')" "$(awk -v s="$down" 'BEGIN { print s / 1e6 }')")"
    done
  done
fi

for t in gateway nginx; do
  has_target "$t" || continue
  for ep in "$t" "$t-static"; do
    read -r -a pp <<<"${cpu_pids[$ep]:-}"
    ((${#pp[@]})) || continue
    [[ "$ep" == "$t" ]] && m="proxy peak RSS MiB" || m="s:proxy peak RSS MiB"
    add "$m" "$t" "$(awk -v k="$(peak_rss_kib "${pp[@]}")" 'BEGIN { printf "%.1f", k / 1024 }')"
  done
done

# --- report --------------------------------------------------------------
val() { # metric column -> median, rounded for the table
  local v="${res["$1|$2"]:-}" fmt
  [[ -n "$v" ]] || { echo n/a; return; }
  case "$1" in *" ms") fmt="%.2f" ;; *"µs/req" | *MiB) fmt="%.1f" ;; *) fmt="%.0f" ;; esac
  LC_ALL=C printf "$fmt\n" "$(median $v)"
}
ratio() { [[ "$1" == n/a || "$2" == n/a ]] && { echo n/a; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) { print "n/a"; exit }
    r = a / b; printf (r >= 100) ? "%.0f\n" : (r >= 0.1 || r == 0) ? "%.2f\n" : "%.2g\n", r }'; }
# A table of metrics x columns with gateway/X ratios; a metric with no value
# in any column is left out. Rows are named without their "x:" key prefix.
table() { # "col1 col2 ..." "label1|label2|..." "ratio-col ..." metrics...
  local -a cols labels rcols
  read -r -a cols <<<"$1"
  IFS='|' read -r -a labels <<<"$2"
  read -r -a rcols <<<"$3"
  shift 3
  local m c r line any v g
  printf '| metric |'
  for c in "${labels[@]}"; do printf ' %s |' "$c"; done
  for r in "${rcols[@]}"; do printf ' gateway/%s |' "$r"; done
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
    g="$(val "$m" gateway)"
    for r in "${rcols[@]}"; do line+=" $(ratio "$g" "$(val "$m" "$r")") |"; done
    ((any)) && echo "$line"
  done
  return 0
}

report="$(
  echo "# registry-gateway vs nginx vs direct"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), gateway commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (+local changes)')"
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
  echo "- $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //'), $( ((need_registry)) && docker-registry --version | awk '{ print "registry " $NF ", " }')$(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), hey $(dpkg-query -W -f '${Version}' hey 2>/dev/null || echo '?'), $(curl --version | head -n 1 | awk '{ print $1, $2 }')"
  echo "- cases: ${cases[*]}; targets: ${targets[*]}"
  echo "- other activity: cargo/rustc or gateway test processes were running at the start of $busy_runs of $load_runs load runs; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

  if has_case registry || has_case blob; then
    echo
    echo "## registry:2 upstream"
    echo
    echo "Median of $RUNS runs, targets alternated within each run; GET: \`wrk -t2 -c32 -d$DURATION --latency\`; HEAD: \`hey -c 32 -z $DURATION\` (wrk cannot time HEAD)."
    echo
    m=()
    if has_case registry; then
      for x in "GET /v2/" "HEAD manifest"; do
        m+=("$x req/s" "$x p50 ms" "$x p99 ms" "$x proxy CPU µs/req")
      done
    fi
    has_case blob && m+=("$blob_label blob PUT MB/s" "$blob_label blob GET MB/s")
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
    for x in "GET /v2/" "HEAD manifest"; do
      m+=("s:$x req/s" "s:$x p50 ms" "s:$x p99 ms" "s:$x proxy CPU µs/req")
    done
    m+=("s:proxy peak RSS MiB")
    table "direct gateway nginx" "direct|gateway|nginx" "nginx direct" "${m[@]}"
  fi

  if has_case auth; then
    echo
    echo "## Basic auth (static upstream)"
    echo
    echo "HEAD of the static manifest with \`Authorization: Basic ...\`, one user per row, \`hey -c $AUTH_CONNS -z $AUTH_DURATION\`; median of $RUNS runs. Both proxies read the same htpasswd file (bcrypt cost 10 from \`htpasswd -nbB -C 10\`, apr1 from \`htpasswd -nbm\`)."
    echo
    m=()
    for x in "apr1 user" "bcrypt-10 user"; do
      m+=("a:HEAD manifest, $x req/s" "a:HEAD manifest, $x p50 ms" "a:HEAD manifest, $x p99 ms" "a:HEAD manifest, $x proxy CPU µs/req")
    done
    table "gateway nginx" "gateway|nginx" "nginx" "${m[@]}"
  fi

  if has_case flood; then
    echo
    echo "## valid bcrypt-10 user during a wrong-password flood (static upstream)"
    echo
    echo "Valid user: \`hey -c $VALID_CONNS -q $VALID_QPS -z $FLOOD_DURATION\` (at most $((VALID_CONNS * VALID_QPS)) req/s offered) from 127.0.0.1 with the right bcrypt-10 password, alone and then during a flood of HEAD requests with a wrong password for the same user: \`curl -Z --parallel-immediate --parallel-max $FLOOD_CONNS --interface 127.0.0.2\` ($FLOOD_CONNS connections), started 1 s before and stopped right after the valid user's run. Median of $FLOOD_RUNS run(s)."
    echo
    cols="" labels=""
    for c in "${flood_cols[@]}"; do
      cols+="$c "
      [[ "$c" == gateway-nothrottle ]] && labels+="gateway, throttle off|" || labels+="$c|"
    done
    rc=""
    has_target nginx && has_target gateway && rc=nginx
    table "$cols" "${labels%|}" "$rc" \
      "f:valid user alone req/s" "f:valid user during flood req/s" \
      "f:valid user alone p50 ms" "f:valid user during flood p50 ms" \
      "f:valid user alone p99 ms" "f:valid user during flood p99 ms" \
      "f:flood answers/s" "f:proxy CPU % during flood"
    line="| flood answers (last run) |"
    for c in "${flood_cols[@]}"; do line+=" ${flood_codes[$c]:-n/a} |"; done
    [[ -n "$rc" ]] && line+=" |"
    echo "$line"
  fi

  echo
  echo "Notes:"
  echo "- Ratios above 1 favour the gateway for req/s and MB/s, and disfavour it for latency, CPU and RSS."
  echo "- No per-request logging on any proxy or upstream: the gateway runs with RUST_LOG=warn (its access log is off), nginx with access_log off; registry:2 logs at error level, access log disabled."
  echo "- nginx uses the classic registry recipe (worker_processes 2, upstream keepalive 32, proxy_buffering/proxy_request_buffering off); the gateway runs with server.threads 2. Each upstream has its own gateway process and nginx instance (one nginx instance serves the static upstream both without and with auth_basic, on two ports)."
  echo "- proxy CPU = utime+stime of the proxy (nginx: master + workers) over each load run / requests served; the upstream's CPU is not counted. Peak RSS = VmHWM after all runs (nginx: summed over its processes)."
  if has_case blob; then
    echo "- $blob_label of random data, pushed with POST + one monolithic PUT?digest= (no Expect: 100-continue) and read back with GET; MB = 10^6 bytes."
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

mkdir -p benches/results
printf '%s\n' "$report" | tee benches/results/latest.md
