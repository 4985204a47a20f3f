#!/usr/bin/env bash
# Compares registry-gateway with the classic nginx recipe in front of the
# same registry:2, and with no proxy at all ("direct"), on loopback.
# Writes a Markdown report to stdout and to benches/results/latest.md.
#
# Knobs (env): RUNS=3 DURATION=10s BLOB_SIZE=1G TARGETS="direct gateway nginx"
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[[ -f "$HOME/.cargo/env" ]] && ! command -v cargo >/dev/null && . "$HOME/.cargo/env"

RUNS="${RUNS:-3}" DURATION="${DURATION:-10s}" BLOB_SIZE="${BLOB_SIZE:-1G}"
read -r -a targets <<<"${TARGETS:-direct gateway nginx}"

scripts/install-deps.sh bench >&2
cargo build --release >&2
gateway_bin="$root/target/release/registry-gateway"
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/registry-gateway-bench.XXXXXX")"
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
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup; log: $(tail -n 5 "$tmp/$3.log" 2>/dev/null)"
    sleep 0.1
  done
  die "$3 did not answer on $1"
}

# --- servers --------------------------------------------------------------
# Registry logging is turned down so the shared backend spends as little CPU
# as possible on things that are not proxying.
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
declare -A base=([direct]="http://127.0.0.1:$reg_port")
declare -A proxy_pids=()

if [[ " ${targets[*]} " == *" gateway "* ]]; then
  gw_port="$(free_port)"
  cat >"$tmp/gateway.yaml" <<EOF
server:
  threads: 2
  grace_period: 1s
listeners:
  - address: "127.0.0.1:$gw_port"
upstreams:
  registry:
    url: "http://127.0.0.1:$reg_port"
registries:
  - name: main
    default: true
    upstream: registry
EOF
  "$gateway_bin" check --config "$tmp/gateway.yaml" >&2 || die "gateway rejected the benchmark config"
  # warn: skip the per-request access log, as nginx does with access_log off.
  RUST_LOG=warn "$gateway_bin" --config "$tmp/gateway.yaml" >"$tmp/gateway.log" 2>&1 &
  gw_pid=$!
  pids+=("$gw_pid")
  wait_up "http://127.0.0.1:$gw_port/v2/" "$gw_pid" gateway
  base[gateway]="http://127.0.0.1:$gw_port"
  proxy_pids[gateway]="$gw_pid"
fi

if [[ " ${targets[*]} " == *" nginx "* ]]; then
  ng_port="$(free_port)"
  mkdir -p "$tmp/nginx/tmp"
  # Workers drop to an unprivileged user when started as root: they need to
  # reach the temp dirs.
  chmod 755 "$tmp" "$tmp/nginx" "$tmp/nginx/tmp"
  cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/tmp/body;
  proxy_temp_path $tmp/nginx/tmp/proxy;
  fastcgi_temp_path $tmp/nginx/tmp/fastcgi;
  uwsgi_temp_path $tmp/nginx/tmp/uwsgi;
  scgi_temp_path $tmp/nginx/tmp/scgi;

  upstream registry {
    server 127.0.0.1:$reg_port;
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$ng_port;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {
      proxy_pass http://registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_read_timeout 900;
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
EOF
  "$nginx_bin" -e "$tmp/nginx.log" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' \
    >>"$tmp/nginx.log" 2>&1 &
  ng_master=$!
  pids+=("$ng_master")
  wait_up "http://127.0.0.1:$ng_port/v2/" "$ng_master" nginx
  base[nginx]="http://127.0.0.1:$ng_port"
  ng_all="$ng_master"
  for p in /proc/[0-9]*; do # workers: children of the master
    stat="$(cat "$p/stat" 2>/dev/null)" || continue
    read -r -a f <<<"${stat##*) }"
    [[ "${f[1]}" == "$ng_master" ]] && ng_all+=" ${p#/proc/}"
  done
  proxy_pids[nginx]="$ng_all"
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
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

declare -A res=() # "metric|target" -> values of every run
add() { res["$1|$2"]+="$3 "; }

# wrk cannot time HEAD (its parser waits for the body that Content-Length
# announces), so the HEAD case uses hey with the same concurrency.
load_run() { # metric target url wrk|hey
  local m="$1" t="$2" before after out rps p50 p99 reqs bad
  local -a pp
  read -r -a pp <<<"${proxy_pids[$t]:-}"
  ((${#pp[@]})) && before="$(cpu_ticks "${pp[@]}")"
  if [[ "$4" == wrk ]]; then
    out="$(wrk -t2 -c32 -d"$DURATION" --latency "$3")"
  else
    out="$(hey -z "$DURATION" -c 32 -m HEAD -H "Accept: $oci_manifest" "$3")"
  fi
  ((${#pp[@]})) && after="$(cpu_ticks "${pp[@]}")"
  if [[ "$4" == wrk ]]; then
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
    reqs="$(awk '/requests in/ { print $1 }' <<<"$out")"
    bad="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")"
  else
    rps="$(awk '/Requests\/sec:/ { print $2 }' <<<"$out")"
    p50="$(awk '$1 == "50%" { printf "%.3f", $3 * 1000 }' <<<"$out")"
    p99="$(awk '$1 == "99%" { printf "%.3f", $3 * 1000 }' <<<"$out")"
    reqs="$(awk '/^ *\[[0-9]+\]/ { n += $2 } END { print n + 0 }' <<<"$out")"
    bad="$(awk '/^ *\[[0-9]+\]/ && $1 != "[200]" { n += $2 } /Error distribution/ { n++ }
      END { if (n) print n }' <<<"$out")"
  fi
  [[ -z "$bad" && "$reqs" -gt 0 ]] || die "$t: $reqs requests, ${bad:-0} failed for $3"
  add "$m req/s" "$t" "$rps"
  add "$m p50 ms" "$t" "$p50"
  add "$m p99 ms" "$t" "$p99"
  if ((${#pp[@]})); then
    add "$m proxy CPU µs/req" "$t" "$(awk -v d=$((after - before)) -v hz="$clk_tck" -v n="$reqs" \
      'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
  fi
  log "$(printf '%-8s %-14s %10s req/s  p50 %s ms  p99 %s ms' "$t" "$m" "$rps" "$p50" "$p99")"
}

# --- small requests ------------------------------------------------------
# A minimal OCI image (one tiny layer + config + manifest), pushed directly
# to the registry, gives the HEAD-manifest case something real to find.
mkdir -p "$tmp/img/root"
echo hello >"$tmp/img/root/hello.txt"
tar -C "$tmp/img/root" -cf "$tmp/img/layer.tar" hello.txt
gzip -nc "$tmp/img/layer.tar" >"$tmp/img/layer.tar.gz"
layer_d="sha256:$(sha256_of "$tmp/img/layer.tar.gz")"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$(sha256_of "$tmp/img/layer.tar")" >"$tmp/img/config.json"
config_d="sha256:$(sha256_of "$tmp/img/config.json")"
push_blob "${base[direct]}" bench/small "$tmp/img/layer.tar.gz" "$layer_d" >/dev/null
push_blob "${base[direct]}" bench/small "$tmp/img/config.json" "$config_d" >/dev/null
oci_manifest=application/vnd.oci.image.manifest.v1+json
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
  "$oci_manifest" "$config_d" "$(stat -c %s "$tmp/img/config.json")" \
  "$layer_d" "$(stat -c %s "$tmp/img/layer.tar.gz")" >"$tmp/img/manifest.json"
curl -fsS -X PUT -H "Content-Type: $oci_manifest" --data-binary "@$tmp/img/manifest.json" \
  -o /dev/null "${base[direct]}/v2/bench/small/manifests/v1" || die "manifest push failed"

for t in "${targets[@]}"; do # every path must work before anything is timed
  curl -fsS -o /dev/null -I -H "Accept: $oci_manifest" "${base[$t]}/v2/bench/small/manifests/v1" ||
    die "HEAD manifest via $t failed"
done

log "small requests: $RUNS runs x ${#targets[@]} targets x 2 endpoints x $DURATION"
for run in $(seq "$RUNS"); do
  for t in "${targets[@]}"; do
    load_run "GET /v2/" "$t" "${base[$t]}/v2/" wrk
    load_run "HEAD manifest" "$t" "${base[$t]}/v2/bench/small/manifests/v1" hey
  done
done

# --- large blob ----------------------------------------------------------
log "generating $BLOB_SIZE of random data"
head -c "$BLOB_SIZE" /dev/urandom >"$tmp/blob"
blob_bytes="$(stat -c %s "$tmp/blob")"
blob_d="sha256:$(sha256_of "$tmp/blob")"
blob_label="$(awk -v b="$blob_bytes" 'BEGIN { if (b >= 2^30) printf "%g GiB", b / 2^30; else printf "%g MiB", b / 2^20 }')"
for run in $(seq "$RUNS"); do
  for t in "${targets[@]}"; do
    up="$(push_blob "${base[$t]}" bench/blob "$tmp/blob" "$blob_d")"
    out="$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' \
      "${base[$t]}/v2/bench/blob/blobs/$blob_d")"
    read -r code size down <<<"$out"
    [[ "$code" == 200 && "$size" == "$blob_bytes" ]] || die "blob GET via $t: HTTP $code, $size bytes"
    add "$blob_label blob PUT MB/s" "$t" "$(awk -v s="$up" 'BEGIN { printf "%.1f", s / 1e6 }')"
    add "$blob_label blob GET MB/s" "$t" "$(awk -v s="$down" 'BEGIN { printf "%.1f", s / 1e6 }')"
    log "$(printf '%-8s %s blob  PUT %.0f MB/s  GET %.0f MB/s' "$t" "$blob_label" \
      "$(awk -v s="$up" 'BEGIN { print s / 1e6 }')" "$(awk -v s="$down" 'BEGIN { print s / 1e6 }')")"
  done
done

for t in "${targets[@]}"; do
  read -r -a pp <<<"${proxy_pids[$t]:-}"
  ((${#pp[@]})) || continue
  add "proxy peak RSS MiB" "$t" "$(awk -v k="$(peak_rss_kib "${pp[@]}")" 'BEGIN { printf "%.1f", k / 1024 }')"
done

# --- report --------------------------------------------------------------
metrics=()
for m in "GET /v2/" "HEAD manifest"; do
  metrics+=("$m req/s" "$m p50 ms" "$m p99 ms" "$m proxy CPU µs/req")
done
metrics+=("$blob_label blob PUT MB/s" "$blob_label blob GET MB/s" "proxy peak RSS MiB")

val() { # metric target -> median, rounded for the table
  local v="${res["$1|$2"]:-}" fmt
  [[ -n "$v" ]] || { echo n/a; return; }
  case "$1" in *" ms") fmt="%.2f" ;; *"µs/req" | *MiB) fmt="%.1f" ;; *) fmt="%.0f" ;; esac
  LC_ALL=C printf "$fmt\n" "$(median $v)"
}
ratio() { [[ "$1" == n/a || "$2" == n/a ]] && { echo n/a; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

report="$(
  echo "# registry-gateway vs nginx vs direct registry:2"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), gateway commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (+local changes)')"
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
  echo "- $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //'), $(docker-registry --version | awk '{ print "registry " $NF }'), $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), hey $(dpkg-query -W -f '${Version}' hey 2>/dev/null || echo '?')"
  echo "- median of $RUNS runs, targets alternated within each run; GET: wrk -t2 -c32 -d$DURATION --latency; HEAD: hey -c 32 -z $DURATION (wrk cannot time HEAD)"
  echo
  echo "| metric | direct | gateway | nginx | gateway/nginx | gateway/direct |"
  echo "|---|---:|---:|---:|---:|---:|"
  for m in "${metrics[@]}"; do
    d="$(val "$m" direct)" g="$(val "$m" gateway)" n="$(val "$m" nginx)"
    echo "| $m | $d | $g | $n | $(ratio "$g" "$n") | $(ratio "$g" "$d") |"
  done
  echo
  echo "Notes:"
  echo "- Ratios above 1 favour the gateway for req/s and MB/s, and disfavour it for latency, CPU and RSS."
  echo "- No per-request logging on either proxy: the gateway runs with RUST_LOG=warn (its access log is off), nginx with access_log off. registry:2 logs at error level, access log disabled."
  echo "- nginx uses the classic registry recipe (worker_processes 2, upstream keepalive 32, proxy_buffering/proxy_request_buffering off); the gateway runs with server.threads 2."
  echo "- proxy CPU = utime+stime of the proxy (nginx: master + workers) over each load run / requests served. Peak RSS = VmHWM after all runs (nginx: summed over its processes)."
  echo "- $blob_label of random data, pushed with POST + one monolithic PUT?digest= (no Expect: 100-continue) and read back with GET; MB = 10^6 bytes."
  echo "- Client, proxy and registry share the same $(nproc) CPUs over loopback, so absolute numbers are low and ratios are the useful part."
)"

mkdir -p benches/results
printf '%s\n' "$report" | tee benches/results/latest.md
