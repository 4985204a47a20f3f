#!/usr/bin/env bash
# Threads and wake-ups: what Pingora's runtime layouts cost per request.
# A layout is server.work_stealing (steal: Tokio's multi-threaded,
# work-stealing runtime; nosteal: Pingora's NoSteal runtime, one
# single-threaded Tokio runtime per thread) and server.threads. For each
# layout in LAYOUTS and each connection count in CONNS, a fresh gateway
# (access log and metrics off, RUST_LOG=warn) in front of compare.sh's
# static upstream (one nginx worker answering from memory) gets a WARMUP
# wrk run, then `wrk -t2 -cN -dDURATION --latency` GET of the static
# manifest with `Accept:` OCI manifest (the request of compare.sh's default
# case). Every round runs all layouts for one connection count one after the
# other (the order reversed every other round), then the next count.
# Per layout and count, the median over RUNS rounds of: req/s, p50/p99,
# proxy CPU µs per request (utime+stime of /proc/PID/stat), context
# switches per request (voluntary + involuntary, summed over
# /proc/PID/task/*/status), of which involuntary, the share of the worker
# CPU taken by the busiest worker thread, new upstream connections and
# failed upstream pool reuses (Pingora's log line) per 1,000 requests, and
# the CPU the rest of the machine used during the run (noise). Prints a
# Markdown report and writes it to REPORT. Not part of the test suite.
#
# Knobs (env): LAYOUTS="steal:2 nosteal:2 steal:1 steal:4"
#     (work_stealing:threads; threads may be "cores", the CPU count)
#   CONNS="16 64 256" DURATION=6s RUNS=2 WARMUP=1s (0: none)
#   GATEWAY_BIN=path: benchmark that binary instead of running
#     `cargo build --release` and using the binary cargo built
#   REPORT=benches/results/threads.md: where the report is written besides
#     stdout (empty: stdout only)
set -euo pipefail

BENCH_NAME=threads
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cores="$(nproc)"
read -r -a layouts <<<"${LAYOUTS:-steal:2 nosteal:2 steal:1 steal:4}"
read -r -a conns_list <<<"${CONNS:-16 64 256}"
DURATION="${DURATION:-6s}" RUNS="${RUNS:-2}" WARMUP="${WARMUP:-1s}"
REPORT="${REPORT-benches/results/threads.md}"
usage() { echo "threads: $*" >&2; exit 2; }
((${#layouts[@]})) || usage "LAYOUTS is empty"
((${#conns_list[@]})) || usage "CONNS is empty"
for i in "${!layouts[@]}"; do
  l="${layouts[i]/%:cores/:$cores}"
  [[ "$l" =~ ^(steal|nosteal):[1-9][0-9]*$ ]] ||
    usage "LAYOUTS: '${layouts[i]}' is not steal:N, nosteal:N (N a thread count or 'cores')"
  layouts[i]="$l"
done
max_conns=2
for c in "${conns_list[@]}"; do
  if ! [[ "$c" =~ ^[1-9][0-9]*$ ]] || ((c < 2)); then usage "CONNS: '$c' is not a number >= 2 (wrk runs 2 threads)"; fi
  ((c <= max_conns)) || max_conns="$c"
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || usage "RUNS must be a positive number"
[[ "$DURATION" =~ ^[1-9][0-9]*[smh]?$ ]] || usage "DURATION must be a wrk duration (6s, 1m)"
[[ "$WARMUP" =~ ^(0|[1-9][0-9]*[smh]?)$ ]] || usage "WARMUP must be a wrk duration or 0"
# Each client connection needs a descriptor in wrk and two in the gateway
# (client and upstream side).
need_fds=$((2 * max_conns + 500))
if [[ "$(ulimit -n)" != unlimited ]] && (($(ulimit -n) < need_fds)); then
  ulimit -n "$need_fds" 2>/dev/null || usage "CONNS up to $max_conns need ulimit -n $need_fds (hard limit: $(ulimit -Hn))"
fi

bench_start

# --- the static upstream (as in compare.sh) --------------------------------
# One nginx worker answering the manifest from memory, plus stub_status on a
# path the load never asks for: its accept counter gives the upstream
# connections the gateway opened during a run.
st_port="$(free_port)"
d="$tmp/static"
static_upstream_conf "$d" "$st_port" $((2 * max_conns + 100)) 'location = /_stub_status { stub_status; }'
run_nginx "$d" static "http://127.0.0.1:$st_port/v2/"
static_pid="$nginx_pid"
read -r -a static_pids <<<"$static_pid$(children_of "$static_pid")"
upstream_accepts() { # the upstream's accepted connections so far (this request's included)
  curl -fsS "http://127.0.0.1:$st_port/_stub_status" | awk 'NR == 3 { print $1 }'
}
[[ "$(upstream_accepts)" =~ ^[0-9]+$ ]] || die "no stub_status from the static upstream (nginx without http_stub_status_module?)"

# --- helpers ---------------------------------------------------------------
# "voluntary involuntary", summed over every thread (/proc/PID/status
# alone counts the main thread only).
ctx_switches() { # pid
  cat "/proc/$1/task/"*/status 2>/dev/null |
    awk '/^voluntary_ctxt_switches:/ { v += $2 } /^nonvoluntary_ctxt_switches:/ { n += $2 } END { print v + 0, n + 0 }'
}
# "TID:TICKS ..." of the service's worker threads: Pingora names them after
# the service ("registry-gateway", cut to 15 characters by the kernel); the
# main thread, which may carry the same name, is left out.
worker_ticks() { # pid
  local t stat
  local -a f
  for t in "/proc/$1/task/"*; do
    [[ "${t##*/}" != "$1" && "$(cat "$t/comm" 2>/dev/null)" == registry-gatewa ]] || continue
    stat="$(cat "$t/stat" 2>/dev/null)" || continue
    read -r -a f <<<"${stat##*) }"
    printf '%s:%s ' "${t##*/}" $((f[11] + f[12]))
  done
}
# The busiest worker thread's share of the workers' CPU between two
# worker_ticks samples, in %.
busiest_share() { # before after
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], p, ":"); t0[p[1]] = p[2] }
    n = split(b, x, " "); for (i = 1; i <= n; i++) { split(x[i], p, ":"); d = p[2] - t0[p[1]]; s += d; if (d > m) m = d }
    if (s > 0) printf "%.0f", 100 * m / s; else print "n/a" }'
}
machine_busy() { # jiffies of all CPUs spent in user, nice, system, irq, softirq and steal
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}
# Pingora drops an idle upstream connection it took from its pool, and
# logs this, when the pool's idle watcher task (spawned on whatever thread
# current_handle() gives: a random one under NoSteal) still holds its
# reference as the request's task tries to take the connection.
reuse_failures() { grep -c 'failed to acquire reusable stream' "$tmp/gateway.log" || true; }
threads_of() { # pid -> its thread ids
  local t
  for t in "/proc/$1/task/"*; do printf '%s ' "${t##*/}"; done
}


declare -A res=() # "metric|layout|conns" -> values of every round
add() { res["$1|$2|$3"]+="$4 "; }
declare -A fmt=([rps]=%.0f [p50]=%.2f [p99]=%.2f [cpu]=%.1f [ctx]=%.2f [invol]=%.2f [busiest]=%.0f
  [upconn]=%.1f [reusefail]=%.1f [other]=%.0f)
val() { # metric layout conns -> median
  local -a v
  read -r -a v <<<"${res["$1|$2|$3"]:-}"
  ((${#v[@]})) || { echo n/a; return; }
  awk -v m="$(median "${v[@]}")" -v f="${fmt[$1]:-%s}" 'BEGIN { if (m == "n/a") print m; else printf f "\n", m }'
}
runs_of() { # metric layout conns -> "a, b"
  local s="${res["$1|$2|$3"]:-}"
  s="${s% }"
  echo "${s// /, }"
}

# --- the gateway under test --------------------------------------------------
gw_port="$(free_port)"
while [[ "$gw_port" == "$st_port" ]]; do gw_port="$(free_port)"; done
start_layout() { # steal|nosteal:threads -> a fresh gateway on $gw_port, gw_pid
  local ws=true
  [[ "${1%%:*}" == nosteal ]] && ws=false
  cat >"$tmp/gateway.yaml" <<EOF
server:
  threads: ${1#*:}
  work_stealing: $ws
  max_connections: $((max_conns + 100))
  grace_period: 1s
listeners:
  - address: "127.0.0.1:$gw_port"
upstreams:
  registry:
    url: "http://127.0.0.1:$st_port"
registries:
  - name: main
    default: true
    upstream: registry
metrics: off
access_log: off
EOF
  "$gateway_bin" check --config "$tmp/gateway.yaml" >"$tmp/gateway.check" 2>&1 ||
    die "gateway rejected the $1 config: $(cat "$tmp/gateway.check")"
  grep -q "threads: ${1#*:}, work stealing: $ws," "$tmp/gateway.check" ||
    die "gateway check does not report threads: ${1#*:}, work stealing: $ws: $(grep -i thread "$tmp/gateway.check")"
  run_gateway warn
}

url="http://127.0.0.1:$gw_port$static_path"
wrk_args=(-t2 --latency -H "Accept: $oci_manifest")
thread_changes=0

# One measured run on the running gateway; adds every metric.
measure() { # layout conns
  local l="$1" c="$2" out rps p50 p99 reqs bad sockerr t0 t1 cpu0 cpu1 st0 st1 m0 m1 a0 a1 w0 w1 tids0 tids1
  local v0 n0 v1 n1 r0 r1 wrk_user wrk_sys other
  busy_check
  tids0="$(threads_of "$gw_pid")"
  w0="$(worker_ticks "$gw_pid")"
  a0="$(upstream_accepts)"
  r0="$(reuse_failures)"
  read -r v0 n0 <<<"$(ctx_switches "$gw_pid")"
  cpu0="$(cpu_ticks "$gw_pid")" st0="$(cpu_ticks "${static_pids[@]}")" m0="$(machine_busy)" t0="$(now)"
  local TIMEFORMAT='%U %S'
  { time wrk "${wrk_args[@]}" -c"$c" -d"$DURATION" "$url" >"$tmp/wrk.out" 2>&1; } 2>"$tmp/wrk.time" ||
    die "$l: wrk -c$c failed: $(tail -n 5 "$tmp/wrk.out")"
  t1="$(now)" m1="$(machine_busy)" cpu1="$(cpu_ticks "$gw_pid")" st1="$(cpu_ticks "${static_pids[@]}")"
  read -r v1 n1 <<<"$(ctx_switches "$gw_pid")"
  a1="$(upstream_accepts)"
  r1="$(reuse_failures)"
  w1="$(worker_ticks "$gw_pid")"
  tids1="$(threads_of "$gw_pid")"
  if [[ "$tids0" != "$tids1" ]]; then
    thread_changes=$((thread_changes + 1))
    log "$l c$c: the gateway's threads changed during the run (context switches of threads that ended are lost)"
  fi
  out="$(cat "$tmp/wrk.out")"
  read -r wrk_user wrk_sys <"$tmp/wrk.time"
  parse_wrk "$out"
  # A few reads failing as a connection closes are not answers; more than
  # 1% of the requests fail the run (as in compare.sh).
  if ! [[ "$reqs" =~ ^[0-9]+$ ]] || ((reqs == 0)); then die "$l c$c: no requests counted: $out"; fi
  [[ -z "$bad" ]] || die "$l c$c: $bad answers were not 2xx/3xx"
  [[ -z "$sockerr" ]] || ((sockerr * 100 <= reqs)) || die "$l c$c: $sockerr socket errors in $reqs requests"
  add rps "$l" "$c" "$rps"
  add p50 "$l" "$c" "$p50"
  add p99 "$l" "$c" "$p99"
  add cpu "$l" "$c" "$(awk -v d=$((cpu1 - cpu0)) -v hz="$clk_tck" -v n="$reqs" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
  add ctx "$l" "$c" "$(awk -v d=$((v1 + n1 - v0 - n0)) -v n="$reqs" 'BEGIN { printf "%.3f", d / n }')"
  add invol "$l" "$c" "$(awk -v d=$((n1 - n0)) -v n="$reqs" 'BEGIN { printf "%.3f", d / n }')"
  add busiest "$l" "$c" "$(busiest_share "$w0" "$w1")"
  # The stub_status request after the run is one of the accepts.
  add upconn "$l" "$c" "$(awk -v d=$((a1 - a0 - 1)) -v n="$reqs" 'BEGIN { printf "%.2f", d * 1000 / n }')"
  add reusefail "$l" "$c" "$(awk -v d=$((r1 - r0)) -v n="$reqs" 'BEGIN { printf "%.2f", d * 1000 / n }')"
  # Noise: CPU the machine spent on anything but the gateway, the upstream
  # and wrk, in % of all CPUs over the run (kernel work no process is
  # charged for, such as part of loopback softirq, is in it too).
  other="$(awk -v m=$((m1 - m0)) -v g=$((cpu1 - cpu0)) -v s=$((st1 - st0)) -v wu="$wrk_user" -v ws="$wrk_sys" \
    -v hz="$clk_tck" -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v n="$cores" \
    'BEGIN { o = m - g - s - (wu + ws) * hz; if (o < 0) o = 0; printf "%.0f", 100 * o / (t * hz * n) }')"
  add other "$l" "$c" "$other"
  log "$(printf '%-10s c%-4s %9s req/s  p99 %7s ms  %6s µs/req  %s ctx/req  other CPU %s%%%s' "$l" "$c" "$rps" "$p99" \
    "$(runs_of cpu "$l" "$c" | awk -F', ' '{ print $NF }')" "$(runs_of ctx "$l" "$c" | awk -F', ' '{ print $NF }')" \
    "$other" "${sockerr:+  ($sockerr socket errors)}")"
}

# Every layout must answer the manifest right before anything is timed.
for l in "${layouts[@]}"; do
  start_layout "$l"
  hdrs="$(curl -sS -D - -o /dev/null -H "Accept: $oci_manifest" "$url" | tr -d '\r')"
  if ! grep -q '^HTTP/1.1 200' <<<"$hdrs" || ! grep -qi "^docker-content-digest: $static_digest$" <<<"$hdrs" ||
    ! grep -qi "^content-type: $oci_manifest$" <<<"$hdrs"; then
    die "$l: wrong manifest answer: $hdrs"
  fi
  stop_pid "$gw_pid"
done

start_time="$(date +%s)"
log "$RUNS rounds x ${#conns_list[@]} connection counts x ${#layouts[@]} layouts x $DURATION (+ $WARMUP warm-up each)"
for run in $(seq "$RUNS"); do
  order=("${layouts[@]}")
  ((run % 2)) || for i in "${!layouts[@]}"; do order[i]="${layouts[-1 - i]}"; done
  for c in "${conns_list[@]}"; do
    for l in "${order[@]}"; do
      start_layout "$l"
      if [[ "$WARMUP" != 0 ]]; then
        wrk "${wrk_args[@]}" -c"$c" -d"$WARMUP" "$url" >"$tmp/warmup.out" 2>&1 ||
          die "$l: warm-up wrk failed: $(tail -n 5 "$tmp/warmup.out")"
      fi
      measure "$l" "$c"
      stop_pid "$gw_pid"
    done
  done
done
wall=$(($(date +%s) - start_time))

# --- report ------------------------------------------------------------------
default_layout="steal:$cores"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
commit="$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' (+local changes)')"
other_all=()
for k in "${!res[@]}"; do
  if [[ "$k" == other\|* ]]; then
    read -r -a v <<<"${res[$k]}"
    other_all+=("${v[@]}")
  fi
done
other_max="$(printf '%s\n' "${other_all[@]}" | sort -g | tail -n 1)"

report="$(
  echo "# Runtime layouts: threads and work stealing"
  echo
  if [[ -n "$GATEWAY_BIN" ]]; then
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), gateway: prebuilt binary from GATEWAY_BIN ($("$gateway_bin" --version)), working tree at commit $commit"
  else
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), gateway commit: $commit"
  fi
  echo "- machine: $cores CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
  echo "- $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //') (static upstream, 1 worker), $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }')"
  echo "- other activity: cargo/rustc, gateway test or other benchmark processes were running at the start of $busy_runs of $load_runs runs; other CPU per run: median $(median "${other_all[@]}")%, at most $other_max% of all CPUs; load average at the end $(cut -d' ' -f1-3 /proc/loadavg); $wall s in all"
  if ((thread_changes)); then
    echo "- the gateway's thread set changed during $thread_changes runs (their context switch counts miss the threads that ended)"
  fi
  echo
  echo "GET of the static manifest (\`Accept: $oci_manifest\`) with \`wrk -t2 -cN -d$DURATION --latency\` through a gateway with \`server.threads\` and \`server.work_stealing\` set per layout (steal: Tokio's work-stealing runtime; nosteal: Pingora's NoSteal runtime, one single-threaded runtime per thread), access log and metrics off, in front of a static nginx upstream (1 worker, answers from memory). $default_layout is the gateway's default on this machine (threads = CPUs, work stealing on). Each run gets a fresh gateway and a $WARMUP warm-up first; a round runs every layout for one connection count, then the next count, the layout order reversed every other round. Median of $RUNS rounds$( ((RUNS == 2)) && echo " (the mean of the two)"). Proxy CPU = utime + stime of the gateway (\`/proc/PID/stat\`) over the run per request; context switches = voluntary + involuntary over every gateway thread (\`/proc/PID/task/*/status\`) per request."
  echo
  echo "| conns | layout | req/s | p50 ms | p99 ms | proxy CPU µs/req | ctx switches/req | CPU/req ÷ $default_layout | ctx/req ÷ $default_layout |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for c in "${conns_list[@]}"; do
    for l in "${layouts[@]}"; do
      echo "| $c | $l$([[ "$l" == "$default_layout" ]] && echo " (default)") | $(val rps "$l" "$c") | $(val p50 "$l" "$c") | $(val p99 "$l" "$c") | $(val cpu "$l" "$c") | $(val ctx "$l" "$c") | $(ratio "$(val cpu "$l" "$c")" "$(val cpu "$default_layout" "$c")") | $(ratio "$(val ctx "$l" "$c")" "$(val ctx "$default_layout" "$c")") |"
    done
  done
  echo
  echo "## Per run and side figures"
  echo
  echo "Involuntary = preempted context switches per request (the rest are a thread parking with nothing to do and being woken). Busiest worker = the busiest \`registry-gatewa\` thread's share of those threads' CPU (50% = two threads evenly loaded). New upstream conns = connections the static upstream accepted during the run per 1,000 requests (\`stub_status\`); the gateway keeps \`server.upstream_keepalive\` (default 128) idle upstream connections, so with more client connections than that some are closed and reopened. Reuse failures = the gateway's \`failed to acquire reusable stream\` log lines per 1,000 requests: Pingora took an idle upstream connection from its pool while the pool's idle watcher task, on another thread, still held a reference to it, so it dropped the connection and opened a new one. Other CPU = the machine's busy time (user, nice, system, irq, softirq, steal in \`/proc/stat\`) minus the gateway's, the upstream's and wrk's, in % of all CPUs: noise from other processes (and kernel work charged to none)."
  echo
  echo "| conns | layout | req/s (runs) | proxy CPU µs/req (runs) | ctx switches/req (runs) | involuntary/req | busiest worker % | new upstream conns per 1k req | reuse failures per 1k req | other CPU % (runs) |"
  echo "|---:|---|---|---|---|---:|---:|---:|---:|---|"
  for c in "${conns_list[@]}"; do
    for l in "${layouts[@]}"; do
      echo "| $c | $l | $(runs_of rps "$l" "$c") | $(runs_of cpu "$l" "$c") | $(runs_of ctx "$l" "$c") | $(val invol "$l" "$c") | $(val busiest "$l" "$c") | $(val upconn "$l" "$c") | $(val reusefail "$l" "$c") | $(runs_of other "$l" "$c") |"
    done
  done
)"
bench_report "$report"
