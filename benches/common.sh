# shellcheck shell=bash
# Shared by the benchmark scripts: sourced first thing, with BENCH_NAME (the
# log prefix) set. Resolves the GATEWAY_BIN and REPORT knobs against the
# caller's directory, then works from the repository root.
set -euo pipefail
GATEWAY_BIN="${GATEWAY_BIN:+$(realpath -e "$GATEWAY_BIN")}"
[[ -n "${REPORT:-}" ]] && REPORT="$(realpath -m "$REPORT")"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=/dev/null
[[ -f "$HOME/.cargo/env" ]] && ! command -v cargo >/dev/null && . "$HOME/.cargo/env"

# After the knobs are checked: tools, the gateway binary (GATEWAY_BIN, else
# a release build), nginx, and a temp dir $tmp removed on exit together with
# every process in pids[].
bench_start() {
  scripts/install-deps.sh bench >&2
  if [[ -n "$GATEWAY_BIN" ]]; then
    [[ -x "$GATEWAY_BIN" ]] || { echo "$BENCH_NAME: GATEWAY_BIN=$GATEWAY_BIN is not executable" >&2; exit 2; }
    gateway_bin="$GATEWAY_BIN"
  else
    cargo build --release >&2
    # shellcheck source=scripts/cargo-bin.sh
    . scripts/cargo-bin.sh
    gateway_bin="$(gateway_bin_path)"
  fi
  nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/registry-gateway-$BENCH_NAME.XXXXXX")"
  # nginx workers drop to an unprivileged user when started as root: they
  # need to reach the temp dirs and the htpasswd file.
  chmod 755 "$tmp"
  trap cleanup EXIT
}

# The proxying of nginx's classic registry recipe (inside `location /v2/`),
# toward an `upstream registry` block.
# shellcheck disable=SC2016 # nginx variables, not shell ones
nginx_registry_recipe='
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

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "${tmp:-/nonexistent}"
}

log() { echo "$BENCH_NAME: $*" >&2; }
# Prints a report, and writes it to $REPORT when that is set.
bench_report() {
  echo "$1"
  if [[ -n "${REPORT:-}" ]]; then
    mkdir -p "$(dirname "$REPORT")"
    echo "$1" >"$REPORT"
    log "report written to $REPORT"
  fi
}
die() { log "ERROR: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Below the kernel's range for outgoing connections: a port in it may be
# held by one (thousands are left in TIME_WAIT after a run), which a
# connect test cannot see.
free_port() {
  local p low _high
  read -r low _high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  ((low > 11000)) || low=32768
  while :; do p=$((10000 + RANDOM % (low - 10000))); port_open "$p" || { echo "$p"; return; }; done
}
# Waits up to WAIT_TRIES tenths of a second (processes under valgrind need more).
wait_up() { # url pid name [curl options...]
  local _
  for _ in $(seq "${WAIT_TRIES:-100}"); do
    curl -sS -o /dev/null "${@:4}" "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup; log: $(tail -n 5 "$tmp/$3.log" 2>/dev/null)"
    sleep 0.1
  done
  die "$3 did not answer on $1"
}

# registry:2 on a free port with storage under $tmp, logging turned down so
# the shared backend spends its CPU on serving; sets reg_port.
start_registry() {
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
}

# Prints hey's status codes, rate and errors from its output file; fails
# unless every answer was a 200.
hey_all_200() { # file
  sed -n '/Status code distribution/,/^$/p' "$1"
  grep -E 'Requests/sec' "$1"
  if grep -q "Error distribution" "$1"; then
    sed -n '/Error distribution/,$p' "$1"
    return 1
  fi
  ! sed -n '/Status code distribution/,/^$/p' "$1" | grep -v '\[200\]' | grep -q '\['
}

# Starts the gateway on $tmp/gateway.yaml (listening on $gw_port) with
# RUST_LOG=LEVEL, its output in $tmp/gateway.log; sets gw_pid once it answers.
run_gateway() { # level
  RUST_LOG="$1" "$gateway_bin" --config "$tmp/gateway.yaml" >"$tmp/gateway.log" 2>&1 &
  gw_pid=$!
  pids+=("$gw_pid")
  wait_up "http://127.0.0.1:$gw_port/v2/" "$gw_pid" gateway
}

# The pids of a process's children (nginx: the master's workers).
children_of() { # pid -> " child child ..."
  local p stat f
  for p in /proc/[0-9]*; do
    stat="$(cat "$p/stat" 2>/dev/null)" || continue
    read -r -a f <<<"${stat##*) }"
    [[ "${f[1]}" == "$1" ]] && printf ' %s' "${p#/proc/}"
  done
  return 0
}

# Writes DIR/nginx.conf: the classic registry recipe (worker_processes 2,
# `upstream registry` with keepalive 32 toward 127.0.0.1:UPSTREAM-PORT, one
# server block on LISTEN proxying /v2/ there with client_max_body_size 0),
# its error log in $tmp/NAME.log. LISTEN is the listen directive's
# arguments ("127.0.0.1:PORT", maybe followed by " ssl http2"). Options:
#   access_log=ARGS   the http block's access_log (default: off)
#   connections=N     events.worker_connections (default 1024)
#   http=TEXT         more directives for the http block (ssl_*)
#   servers=TEXT      more server blocks, appended inside the http block
nginx_registry_conf() { # dir name upstream-port listen [option=value...]
  local d="$1" name="$2" up="$3" listen="$4" o access_log=off conns=1024 http="" servers=""
  shift 4
  for o in "$@"; do
    case "$o" in
      access_log=*) access_log="${o#*=}" ;;
      connections=*) conns="${o#*=}" ;;
      http=*) http="${o#*=}" ;;
      servers=*) servers="${o#*=}" ;;
      *) die "nginx_registry_conf: unknown option '$o'" ;;
    esac
  done
  mkdir -p "$d/tmp"
  chmod 755 "$d" "$d/tmp"
  cat >"$d/nginx.conf" <<EOC
worker_processes 2;
pid $d/nginx.pid;
error_log $tmp/$name.log warn;
events { worker_connections $conns; }
http {
  access_log $access_log;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;$http

  upstream registry {
    server 127.0.0.1:$up;
    keepalive 32;
  }
  server {
    listen $listen;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {$nginx_registry_recipe
    }
  }$servers
}
EOC
}

# Starts nginx in the foreground on DIR/nginx.conf (its output and error
# log in $tmp/NAME.log); sets nginx_pid (the master) once URL answers.
run_nginx() { # dir name url [curl options...]
  # shellcheck disable=SC2094 # nginx appends to its error log itself
  "$nginx_bin" -e "$tmp/$2.log" -p "$1" -c "$1/nginx.conf" -g 'daemon off;' >>"$tmp/$2.log" 2>&1 &
  nginx_pid=$!
  pids+=("$nginx_pid")
  wait_up "$3" "$nginx_pid" "$2" "${@:4}"
}

# Drops a pid that has been waited for from pids[], so that cleanup never
# signals a recycled pid.
forget_pid() { # pid
  local p keep=()
  for p in "${pids[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}
# Stops a process started here (SIGTERM), waits for it and forgets it.
stop_pid() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

# The static upstream of compare.sh and threads.sh: one nginx worker that
# answers `GET /v2/` and the manifest at $static_path from memory, so the
# proxies in front of it, not the upstream, are the limit.
oci_manifest=application/vnd.oci.image.manifest.v1+json
static_manifest='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3}]}'
static_digest="sha256:$(printf '%s' "$static_manifest" | sha256sum | cut -d' ' -f1)"
static_path=/v2/bench/static/manifests/latest
static_upstream_conf() { # dir port worker-connections [extra location] -> dir/nginx.conf
  local d="$1"
  mkdir -p "$d/tmp"
  chmod 755 "$d" "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $tmp/static.log warn;
events { worker_connections $3; }
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
    listen 127.0.0.1:$2;
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
    ${4:-}
    location / { return 404; }
  }
}
EOF
}

# wrk --latency output -> rps p50 p99 reqs bad sockerr (globals). sockerr:
# "Socket errors: connect 0, read 3, write 0, timeout 0" summed.
parse_wrk() { # output
  rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$1")"
  p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$1")")"
  p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$1")")"
  reqs="$(awk '/requests in/ { print $1 }' <<<"$1")"
  bad="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$1")"
  sockerr="$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' <<<"$1")"
}

# $tmp/gateway.yaml: one listener on PORT in front of start_registry's
# registry:2, no metrics, no access log; SERVER is the `server:` map body.
registry_gateway_yaml() { # port server
  cat >"$tmp/gateway.yaml" <<YAML
server: { $2 }
listeners: [ { address: "127.0.0.1:$1" } ]
upstreams: { registry: { url: "http://127.0.0.1:$reg_port" } }
registries: [ { name: main, default: true, upstream: registry } ]
metrics: off
access_log: off
YAML
}

# --- measuring helpers shared by compare.sh and threads.sh ---------------
# shellcheck disable=SC2034 # read by the scripts that source this file
clk_tck="$(getconf CLK_TCK)"
cpu_ticks() { # pids... -> utime+stime summed over all threads
  local p stat total=0
  local -a f
  for p in "$@"; do
    stat="$(cat "/proc/$p/stat")"
    read -r -a f <<<"${stat##*) }" # fields from "state" on: utime=11, stime=12
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
to_ms() { # wrk durations: 812.00us, 1.20ms, 1.01s, 1.00m
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : 0;
    printf "%.3f", n * f }'
}
# Median of numbers; "n/a" values are left out.
median() { printf '%s\n' "$@" | awk '$1 != "n/a"' | sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "n/a"; exit }
    print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
now() { date +%s.%N; }

# Other work on the machine (a build, a test suite, another benchmark)
# skews the figures: each load run notes whether compilers, test binaries or
# processes of another bench script (found by its temp dir) were running.
busy_runs=0 load_runs=0
busy_check() {
  load_runs=$((load_runs + 1))
  if pgrep -f '(^|/)(cargo|rustc) |registry-gateway --config /tmp/\.gateway-test' >/dev/null ||
    pgrep -af 'registry-gateway-[a-z_]+\.[A-Za-z0-9]{6}/' | grep -vcF "$tmp/" >/dev/null; then
    busy_runs=$((busy_runs + 1))
  fi
  return 0
}
