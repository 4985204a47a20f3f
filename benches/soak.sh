#!/usr/bin/env bash
# Soak: mixed pushes, pulls, HEADs, wrong passwords and aborted uploads
# through the gateway (Basic auth, plain HTTP) into registry:2 for a fixed
# time, then the gateway's errors, resident memory and open descriptors at
# the start, at the end of the load, and after it has been idle a while.
# They must be flat. Not part of the test suite.
#
# Usage: benches/soak.sh [SECONDS]   (default 300; DURATION=... works too)
#   KINDS=push,pull,wrong_password,abort: only these kinds of traffic
#   GATEWAY_BIN=path: soak that binary instead of building one
BENCH_NAME=soak
# shellcheck source=benches/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
duration="${1:-${DURATION:-300}}"
[[ "$duration" =~ ^[0-9]+$ ]] || die "SECONDS must be a whole number, not '$duration'"
bench_start
[[ -f /usr/lib/python3/dist-packages/requests/__init__.py ]] || die "python3-requests is missing: apt-get install -y python3-requests"

start_registry

htpasswd -nbB -C 4 soak soak-pw >"$tmp/users"
gw_port="$(free_port)"
cat >"$tmp/gateway.yaml" <<YAML
server:
  threads: 2
listeners:
  - address: "0.0.0.0:$gw_port"
upstreams:
  registry:
    url: "http://127.0.0.1:$reg_port"
registries:
  - { name: main, default: true, upstream: registry }
auth:
  htpasswd: $tmp/users
metrics: off
access_log: off
YAML
run_gateway warn

sample() { # label
  local rss fds
  rss="$(awk '/^VmRSS/ { print $2 }' "/proc/$gw_pid/status")"
  fds="$(find "/proc/$gw_pid/fd" -mindepth 1 | wc -l)"
  printf '| %s | %s | %s |\n' "$1" "$((rss / 1024)) MiB" "$fds"
}

log "warm-up (20 s), then ${duration} s of mixed traffic"
/usr/bin/python3 benches/soak/drive.py 127.0.0.1 "$gw_port" soak soak-pw 20 >"$tmp/warmup.json" ||
  die "warm-up driver failed: $(cat "$tmp/warmup.json")"
start_row="$(sample "start (after warm-up)")"
# RSS every minute during the load: a plateau and a leak look different.
(
  while sleep 60; do
    awk '/^VmRSS/ { printf "%d ", $2 / 1024 }' "/proc/$gw_pid/status" 2>/dev/null || exit 0
  done
) >"$tmp/rss-per-minute" &
sampler=$!
/usr/bin/python3 benches/soak/drive.py 127.0.0.1 "$gw_port" soak soak-pw "$duration" >"$tmp/soak.json" ||
  die "driver failed: $(cat "$tmp/soak.json")"
kill "$sampler" 2>/dev/null || true
end_row="$(sample "end of load")"
sleep 10
idle_row="$(sample "idle 10 s later")"
kill -0 "$gw_pid" 2>/dev/null || die "the gateway died: $(tail -n 20 "$tmp/gateway.log")"

echo "## Soak: ${duration} s of ${KINDS:-mixed} traffic through the gateway into registry:2"
echo
echo "$(nproc) cores, $(date -u +%F). Requests and unexpected answers per kind:"
echo
/usr/bin/python3 - "$tmp/soak.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("| kind | requests | errors |\n|---|---:|---:|")
for k, n in sorted(r["counts"].items()):
    print(f"| {k} | {n} | {r['errors'].get(k, 0)} |")
if r["errors"]:
    print("\nfirst errors:", json.dumps(r["first_errors"]))
PY
echo
echo "| gateway | RSS | open descriptors |"
echo "|---|---:|---:|"
echo "$start_row"
echo "$end_row"
echo "$idle_row"
echo
echo "RSS each minute of the load (MiB): $(cat "$tmp/rss-per-minute")"
warnings="$(grep -c -E 'WARN|ERROR' "$tmp/gateway.log" || true)"
echo
echo "gateway log: $warnings warning/error lines"
errors="$(/usr/bin/python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["errors"].values()))' "$tmp/soak.json")"
((errors == 0)) || exit 1
