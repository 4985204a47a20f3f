#!/usr/bin/env bash
# A caching mirror (a virtual registry with a `cache:` block) against
# registry:2 and against the plain proxy, pulling one large random blob
# (default 1 GiB) on loopback, all in one run:
#   cached  after one warm-up pull through the mirror (which fills its cache)
#           and one direct, ROUNDS alternating GETs through the mirror (each
#           must answer `Cache-Status: ...; hit`) and directly from
#           registry:2: MB/s, and the CPU seconds per GB of the gateway and
#           of registry:2 (utime+stime from /proc/PID/stat)
#   cold    ROUNDS rounds of: stop the mirror, empty its cache dir, start it,
#           GET once (a miss: the gateway downloads, hashes and writes the
#           blob while the client follows the download), against the same GET
#           through a plain proxy gateway (no cache); the order alternates
#   rss     cache emptied, mirror restarted, PARALLEL concurrent cold GETs of
#           the blob (one download that all of them follow) while the
#           gateway's VmRSS is sampled every 100 ms; each pull must get the
#           whole blob, one of them is hashed against the digest
# Prints a Markdown report and writes it to REPORT. Not part of the test suite.
#
# Knobs (env): ROUNDS=5 BLOB_SIZE=1G (head -c sizes: 64M, 1G) PARALLEL=10
#   FSYNC=false (the cache's fsync setting; cached reads do not depend on it,
#     cold fills do)
#   GATEWAY_BIN=path: benchmark that binary instead of running
#     `cargo build --release` and using the binary cargo built
#   REPORT=benches/results/mirror.md: where the report is written besides
#     stdout (empty: stdout only)
set -euo pipefail

BENCH_NAME=mirror
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS="${ROUNDS:-5}" BLOB_SIZE="${BLOB_SIZE:-1G}" PARALLEL="${PARALLEL:-10}" FSYNC="${FSYNC:-false}"
REPORT="${REPORT-benches/results/mirror.md}"
usage() { echo "mirror: $*" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || usage "ROUNDS must be a positive number"
[[ "$PARALLEL" =~ ^[1-9][0-9]*$ ]] || usage "PARALLEL must be a positive number"
[[ "$BLOB_SIZE" =~ ^[1-9][0-9]*[KMG]?$ ]] || usage "BLOB_SIZE must be a size like 64M or 1G"
[[ "$FSYNC" == true || "$FSYNC" == false ]] || usage "FSYNC must be true or false"
blob_bytes="$(numfmt --from=iec "$BLOB_SIZE")"
((blob_bytes >= 1 << 20)) || usage "BLOB_SIZE must be at least 1M"

bench_start
start_time="$(date +%s)"

# The random file, registry:2's copy and the mirror's: the file is removed
# once pushed, so two copies at a time plus headroom.
free_kib="$(df -Pk "$tmp" | awk 'NR == 2 { print $4 }')"
need_kib=$((2 * blob_bytes / 1024 + 1024 * 1024))
((free_kib >= need_kib)) || die "needs $((need_kib / 1024)) MiB free in $tmp, only $((free_kib / 1024)) MiB there (set BLOB_SIZE lower or TMPDIR elsewhere)"

start_registry
reg_pid="${pids[-1]}"
direct="http://127.0.0.1:$reg_port"

# --- the blob ----------------------------------------------------------------
blob_label="$(awk -v b="$blob_bytes" 'BEGIN { if (b >= 2^30) printf "%g GiB", b / 2^30; else printf "%g MiB", b / 2^20 }')"
log "generating $blob_label of random data"
head -c "$blob_bytes" /dev/urandom >"$tmp/blob"
digest="sha256:$(sha256sum "$tmp/blob" | cut -d' ' -f1)"
blob_path="/v2/bench/blob/blobs/$digest"
loc="$(curl -fsS -X POST -D - -o /dev/null "$direct/v2/bench/blob/blobs/uploads/" |
  awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')"
[[ -n "$loc" ]] || die "no upload Location from registry:2"
[[ "$loc" == *://* ]] && loc="/${loc#*://*/}"
[[ "$loc" == *\?* ]] && sep='&' || sep='?'
code="$(curl -sS -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' -T "$tmp/blob" \
  -o /dev/null -w '%{http_code}' "$direct$loc${sep}digest=$digest")"
[[ "$code" == 201 ]] || die "monolithic PUT to registry:2 answered $code"
rm -f "$tmp/blob"
log "pushed $digest to registry:2"

# --- the two gateways ----------------------------------------------------------
# mirror: the caching registry (metrics on, to count hits and followers);
# proxy: the same without the cache block. Both RUST_LOG=warn, no access log.
cache_dir="$tmp/cache"
mirror_port="$(free_port)" proxy_port="$(free_port)"
metrics_port="$(free_port)"
while [[ "$proxy_port" == "$mirror_port" ]]; do proxy_port="$(free_port)"; done
while [[ "$metrics_port" == "$mirror_port" || "$metrics_port" == "$proxy_port" ]]; do metrics_port="$(free_port)"; done
gateway_yaml() { # port cache-line metrics-line
  cat <<YAML
listeners:
  - address: "127.0.0.1:$1"
upstreams:
  registry:
    url: "http://127.0.0.1:$reg_port"
    health: off
registries:
  - name: mirror
    default: true
    upstream: registry$2
$3
access_log: off
YAML
}
gateway_yaml "$mirror_port" "
    cache: {dir: $cache_dir, max_size: 4GiB, tag_ttl: 5m, fsync: $FSYNC}" \
  "metrics: {address: \"127.0.0.1:$metrics_port\"}" >"$tmp/mirror.yaml"
gateway_yaml "$proxy_port" "" "metrics: off" >"$tmp/proxy.yaml"

# Starts gateway NAME ($tmp/NAME.yaml) on PORT, its output appended to
# $tmp/NAME.log; sets gw_pid once it answers.
start_gateway() { # name port
  RUST_LOG=warn "$gateway_bin" --config "$tmp/$1.yaml" >>"$tmp/$1.log" 2>&1 &
  gw_pid=$!
  pids+=("$gw_pid")
  wait_up "http://127.0.0.1:$2/v2/" "$gw_pid" "$1"
}
# A stopped mirror, an empty cache dir, a started mirror: sets mirror_pid.
fresh_mirror() {
  [[ -n "${mirror_pid:-}" ]] && stop_pid "$mirror_pid"
  rm -rf "$cache_dir"
  mkdir -p "$cache_dir"
  start_gateway mirror "$mirror_port"
  mirror_pid="$gw_pid"
}
fresh_mirror
start_gateway proxy "$proxy_port"
proxy_pid="$gw_pid"
declare -A base=([direct]="$direct" [mirror]="http://127.0.0.1:$mirror_port" [proxy]="http://127.0.0.1:$proxy_port")

# --- measuring -------------------------------------------------------------------
# One GET of the blob from TARGET, the whole blob required, with the
# answer's Cache-Status checked against WANT ("hit", "miss", "-": none).
# Sets g_time (s), g_mbps (MB/s), g_gw (gateway CPU s/GB: the target's
# gateway, "n/a" direct) and g_reg (registry:2 CPU s/GB).
per_gb() { awk -v d="$1" -v hz="$clk_tck" -v n="$blob_bytes" 'BEGIN { printf "%.3f", d / hz / (n / 1e9) }'; }
get_blob() { # target want
  local t="$1" want="$2" out code size cs gp="" g0=0 g1 r0 r1 speed
  case "$t" in mirror) gp="$mirror_pid" ;; proxy) gp="$proxy_pid" ;; esac
  busy_check
  if [[ -n "$gp" ]]; then g0="$(cpu_ticks "$gp")"; fi
  r0="$(cpu_ticks "$reg_pid")"
  out="$(curl -sS -o /dev/null -D "$tmp/get.headers" \
    -w '%{http_code} %{size_download} %{time_total} %{speed_download}' "${base[$t]}$blob_path")"
  r1="$(cpu_ticks "$reg_pid")"
  g1="$g0"
  if [[ -n "$gp" ]]; then g1="$(cpu_ticks "$gp")"; fi
  read -r code size g_time speed <<<"$out"
  g_time="$(awk -v t="$g_time" 'BEGIN { printf "%.3f", t }')"
  [[ "$code" == 200 && "$size" == "$blob_bytes" ]] || die "GET via $t: HTTP $code, $size bytes (want 200, $blob_bytes)"
  cs="$(awk -F': *' 'tolower($1) == "cache-status" { print $2 }' "$tmp/get.headers" | tr -d '\r')"
  case "$want" in
    hit) [[ "$cs" == *"; hit" ]] || die "GET via $t: Cache-Status '$cs', expected a hit" ;;
    miss) [[ "$cs" == *"fwd=miss"* ]] || die "GET via $t: Cache-Status '$cs', expected a miss" ;;
    -) [[ -z "$cs" ]] || die "GET via $t: unexpected Cache-Status '$cs'" ;;
  esac
  g_mbps="$(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1e6 }')"
  g_gw="n/a"
  if [[ -n "$gp" ]]; then g_gw="$(per_gb $((g1 - g0)))"; fi
  g_reg="$(per_gb $((r1 - r0)))"
  log "$(printf '%-7s %-5s %6.2f s %7.1f MB/s  gateway CPU %s s/GB  registry:2 CPU %s s/GB' "$t" "$want" "$g_time" "$g_mbps" "$g_gw" "$g_reg")"
}
declare -A res=() # "metric|target" -> values of the rounds, space separated
add() { res["$1|$2"]="${res["$1|$2"]:+${res["$1|$2"]} }$3"; }
record() { # case target
  add "$1 s" "$2" "$g_time"
  add "$1 MB/s" "$2" "$g_mbps"
  add "$1 gw" "$2" "$g_gw"
  add "$1 reg" "$2" "$g_reg"
}
val() { local -a v; read -r -a v <<<"${res["$1|$2"]:-n/a}"; median "${v[@]}"; }
runs_of() { local list="${res["$1|$2"]:-n/a}"; echo "${list// /, }"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
metric_of() { # prometheus-text name label="value"... -> the sample with those labels (0 when absent)
  local text="$1" name="$2"
  shift 2
  awk -v name="$name" -v want="$*" 'index($1, name "{") == 1 {
      n = split(want, w, " "); ok = 1
      for (i = 1; i <= n; i++) if (!index($1, w[i])) ok = 0
      if (ok) v = $2
    } END { print v + 0 }' <<<"$text"
}

# 1. cached pull vs direct.
log "cached: warm-up through the mirror (fills the cache) and direct"
get_blob mirror miss
get_blob direct -
log "cached: $ROUNDS rounds, mirror and direct alternating"
for r in $(seq "$ROUNDS"); do
  order=(mirror direct)
  ((r % 2)) || order=(direct mirror)
  for t in "${order[@]}"; do
    if [[ "$t" == mirror ]]; then get_blob mirror hit; else get_blob direct -; fi
    record cached "$t"
  done
done
m="$(curl -fsS "http://127.0.0.1:$metrics_port/metrics")"
cached_hits="$(metric_of "$m" registry_gateway_cache_requests_total 'kind="blob"' 'result="hit"')"
((cached_hits == ROUNDS)) || die "the mirror counted $cached_hits blob hits, expected $ROUNDS"

# 2. cold pull through the mirror vs the plain proxy.
log "cold: $ROUNDS rounds, a fresh mirror with an empty cache and the plain proxy alternating"
for r in $(seq "$ROUNDS"); do
  order=(mirror proxy)
  ((r % 2)) || order=(proxy mirror)
  for t in "${order[@]}"; do
    if [[ "$t" == mirror ]]; then
      fresh_mirror
      get_blob mirror miss
    else
      get_blob proxy -
    fi
    record cold "$t"
  done
done

# 3. RSS during PARALLEL concurrent cold pulls.
log "rss: $PARALLEL concurrent cold pulls through a fresh mirror"
fresh_mirror
sleep 1
rss_kib() { # VmRSS of a pid, without forking
  local k v _
  while read -r k v _; do [[ "$k" == VmRSS: ]] && { echo "$v"; return; }; done <"/proc/$1/status"
}
base_rss="$(rss_kib "$mirror_pid")"
busy_check
pull_pids=()
t0="$(now)"
for i in $(seq "$PARALLEL"); do
  if ((i == 1)); then
    (curl -sS -D "$tmp/par.$i.headers" "${base[mirror]}$blob_path" | sha256sum | cut -d' ' -f1 >"$tmp/par.$i.sha") &
  else
    curl -sS -o /dev/null -D "$tmp/par.$i.headers" -w '%{size_download}' "${base[mirror]}$blob_path" >"$tmp/par.$i.out" &
  fi
  pull_pids+=($!)
  pids+=($!)
done
samples=()
while :; do
  alive=0
  for p in "${pull_pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then alive=1 && break; fi
  done
  samples+=("$(rss_kib "$mirror_pid")")
  ((alive)) || break
  sleep 0.1
done
for p in "${pull_pids[@]}"; do
  wait "$p" || die "a concurrent pull failed (curl status $?)"
  forget_pid "$p"
done
t1="$(now)"
hwm_kib="$(awk '/^VmHWM/ { print $2 }' "/proc/$mirror_pid/status")"
for i in $(seq "$PARALLEL"); do
  code="$(awk 'NR == 1 { print $2 }' "$tmp/par.$i.headers")"
  [[ "$code" == 200 ]] || die "concurrent pull $i: HTTP $code"
done
[[ "sha256:$(cat "$tmp/par.1.sha")" == "$digest" ]] || die "concurrent pull 1: sha256 $(cat "$tmp/par.1.sha"), expected $digest"
for i in $(seq 2 "$PARALLEL"); do
  [[ "$(cat "$tmp/par.$i.out")" == "$blob_bytes" ]] || die "concurrent pull $i: $(cat "$tmp/par.$i.out") bytes, expected $blob_bytes"
done
peak_rss="$(printf '%s\n' "${samples[@]}" | sort -n | tail -n 1)"
m="$(curl -fsS "http://127.0.0.1:$metrics_port/metrics")"
par_miss="$(metric_of "$m" registry_gateway_cache_requests_total 'kind="blob"' 'result="miss"')"
par_collapsed="$(metric_of "$m" registry_gateway_cache_collapsed_total 'registry="mirror"')"
par_wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
par_mbps="$(awk -v w="$par_wall" -v n="$blob_bytes" -v k="$PARALLEL" 'BEGIN { printf "%.0f", k * n / w / 1e6 }')"
log "rss: before $((base_rss / 1024)) MiB, peak sampled $((peak_rss / 1024)) MiB (${#samples[@]} samples), VmHWM $((hwm_kib / 1024)) MiB; $PARALLEL pulls in $par_wall s"
wall=$(($(date +%s) - start_time))

# --- report ----------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
commit="$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (+local changes)')"
cmd="ROUNDS=$ROUNDS BLOB_SIZE=$BLOB_SIZE PARALLEL=$PARALLEL FSYNC=$FSYNC${GATEWAY_BIN:+ GATEWAY_BIN=${GATEWAY_BIN#"$root"/}}$([[ "$REPORT" == "$root/benches/results/mirror.md" || "$REPORT" == benches/results/mirror.md ]] || echo " REPORT=$REPORT") benches/mirror.sh"
report="$(
  echo "# Caching mirror vs direct vs plain proxy"
  echo
  if [[ -n "$GATEWAY_BIN" ]]; then
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), gateway: prebuilt binary from GATEWAY_BIN ($("$gateway_bin" --version)), working tree at commit $commit"
  else
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), gateway commit: $commit"
  fi
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r); cache and registry:2 storage on $(df -PT "$tmp" | awk 'NR == 2 { print $2 }') ($tmp)"
  echo "- $(docker-registry --version | awk '{ print "registry " $NF }'), $(curl --version | head -n 1 | awk '{ print $1, $2 }')"
  echo "- other activity: cargo/rustc, gateway test or other benchmark processes were running at the start of $busy_runs of $load_runs transfers; load average at the end $(cut -d' ' -f1-3 /proc/loadavg); $wall s in all"
  echo "- command: \`$cmd\`"
  echo
  echo "One $blob_label random blob pushed to registry:2 (POST + monolithic PUT?digest=), pulled with \`curl -s -o /dev/null -w '%{time_total} %{speed_download}'\` over plain HTTP/1.1 on loopback. Gateways: default threads (one per CPU), RUST_LOG=warn, \`access_log: off\`; the mirror is the registry with \`cache: {dir: ..., max_size: 4GiB, tag_ttl: 5m, fsync: $FSYNC}\`, the plain proxy the same without the cache block. Every mirror answer's \`Cache-Status\` was checked (hit / fwd=miss). MB = 10^6 bytes; CPU s/GB = utime+stime (\`/proc/PID/stat\`) over the transfer per 10^9 bytes. Median of $ROUNDS round(s); ratios are of the medians."
  echo
  echo "### cached pull: mirror (cache hit) vs registry:2 direct"
  echo
  echo "After one warm-up pull of each (the mirror's fills the cache), $ROUNDS round(s) alternating which goes first."
  echo
  echo "| metric | direct | mirror, cached | mirror/direct |"
  echo "|---|---:|---:|---:|"
  echo "| $blob_label GET MB/s | $(val "cached MB/s" direct) | $(val "cached MB/s" mirror) | $(ratio "$(val "cached MB/s" mirror)" "$(val "cached MB/s" direct)") |"
  echo "| $blob_label GET s | $(val "cached s" direct) | $(val "cached s" mirror) | $(ratio "$(val "cached s" mirror)" "$(val "cached s" direct)") |"
  echo "| gateway CPU s/GB | n/a | $(val "cached gw" mirror) | n/a |"
  echo "| registry:2 CPU s/GB | $(val "cached reg" direct) | $(val "cached reg" mirror) | $(ratio "$(val "cached reg" mirror)" "$(val "cached reg" direct)") |"
  echo
  echo "### cold pull: mirror (empty cache) vs plain proxy"
  echo
  echo "Each mirror round: the mirror stopped, its cache dir emptied, the mirror started, one GET (a miss: the gateway downloads the blob from registry:2, hashes it and writes it to the cache while the client reads the growing file; the last byte is sent once the digest matched; cache \`fsync: $FSYNC\`). The plain proxy keeps running. $ROUNDS round(s), alternating which goes first."
  echo
  echo "| metric | plain proxy | mirror, cold | mirror/proxy |"
  echo "|---|---:|---:|---:|"
  echo "| $blob_label GET s | $(val "cold s" proxy) | $(val "cold s" mirror) | $(ratio "$(val "cold s" mirror)" "$(val "cold s" proxy)") |"
  echo "| $blob_label GET MB/s | $(val "cold MB/s" proxy) | $(val "cold MB/s" mirror) | $(ratio "$(val "cold MB/s" mirror)" "$(val "cold MB/s" proxy)") |"
  echo "| gateway CPU s/GB | $(val "cold gw" proxy) | $(val "cold gw" mirror) | $(ratio "$(val "cold gw" mirror)" "$(val "cold gw" proxy)") |"
  echo "| registry:2 CPU s/GB | $(val "cold reg" proxy) | $(val "cold reg" mirror) | $(ratio "$(val "cold reg" mirror)" "$(val "cold reg" proxy)") |"
  echo
  echo "### memory during $PARALLEL concurrent cold pulls"
  echo
  echo "Cache emptied, mirror restarted, 1 s idle, then $PARALLEL curls GET the $blob_label blob at once; the gateway's VmRSS sampled every 100 ms until all are done."
  echo
  echo "| metric | value |"
  echo "|---|---:|"
  echo "| gateway RSS before, MiB | $(mib "$base_rss") |"
  echo "| gateway RSS peak sampled (${#samples[@]} samples), MiB | $(mib "$peak_rss") |"
  echo "| peak − before, MiB | $(mib $((peak_rss - base_rss))) |"
  echo "| gateway VmHWM after the pulls (since its start), MiB | $(mib "$hwm_kib") |"
  echo "| $PARALLEL pulls: wall s / aggregate MB/s | $par_wall / $par_mbps |"
  echo "| blob misses / followers of the one download (metrics) | $par_miss / $par_collapsed |"
  echo "| every pull 200 with $blob_bytes bytes; sha256 of pull 1 = digest | yes |"
  echo
  echo "### per round"
  echo
  echo "| figure | values, in round order |"
  echo "|---|---|"
  for c in cached:direct cached:mirror cold:proxy cold:mirror; do
    echo "| ${c%%:*} ${c#*:} MB/s | $(runs_of "${c%%:*} MB/s" "${c#*:}") |"
  done
  for c in cold:proxy cold:mirror; do
    echo "| ${c%%:*} ${c#*:} s | $(runs_of "${c%%:*} s" "${c#*:}") |"
  done
  for c in cached:mirror cold:proxy cold:mirror; do
    echo "| ${c%%:*} ${c#*:} gateway CPU s/GB | $(runs_of "${c%%:*} gw" "${c#*:}") |"
  done
  for c in cached:direct cached:mirror cold:proxy cold:mirror; do
    echo "| ${c%%:*} ${c#*:} registry:2 CPU s/GB | $(runs_of "${c%%:*} reg" "${c#*:}") |"
  done
)"
bench_report "$report"
log "reproduce: $cmd"
