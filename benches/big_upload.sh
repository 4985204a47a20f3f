#!/usr/bin/env bash
# Streams one large blob (default 10 GiB) through the gateway into registry:2
# the way docker pushes a layer (POST, one chunked PATCH, PUT ?digest=) and
# samples the gateway's resident memory while it runs: memory must stay
# flat however large the blob. The data is generated on the fly, so only
# registry:2's copy needs disk; the run is skipped (with a message, exit 0)
# when the disk cannot hold it.
#
# Knobs (env): SIZE_GIB=10 GATEWAY_BIN=path (skips cargo build)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[[ -f "$HOME/.cargo/env" ]] && ! command -v cargo >/dev/null && . "$HOME/.cargo/env"
SIZE_GIB="${SIZE_GIB:-10}"
size=$((SIZE_GIB * 1024 * 1024 * 1024))

scripts/install-deps.sh bench >&2
if [[ -z "${GATEWAY_BIN:-}" ]]; then
  cargo build --release >&2
  # shellcheck source=scripts/cargo-bin.sh
  . scripts/cargo-bin.sh
  GATEWAY_BIN="$(gateway_bin_path)"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/registry-gateway-big.XXXXXX")"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
log() { echo "big-upload: $*" >&2; }

free_kib="$(df -Pk "$tmp" | awk 'NR == 2 { print $4 }')"
need_kib=$((size / 1024 + 2 * 1024 * 1024))
if ((free_kib < need_kib)); then
  log "SKIPPED: ${SIZE_GIB} GiB upload needs $((need_kib / 1024 / 1024)) GiB free in $tmp, only $((free_kib / 1024 / 1024)) GiB there (set SIZE_GIB lower or TMPDIR elsewhere)"
  exit 0
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
reg_port="$(free_port)" gw_port="$(free_port)"
cat >"$tmp/registry.yml" <<EOF
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $tmp/storage } }
http: { addr: 127.0.0.1:$reg_port }
EOF
cat >"$tmp/gateway.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$gw_port" } ]
upstreams: { registry: { url: "http://127.0.0.1:$reg_port" } }
registries: [ { name: main, default: true, upstream: registry } ]
metrics: off
access_log: off
EOF
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
pids+=($!)
RUST_LOG=warn "$GATEWAY_BIN" --config "$tmp/gateway.yaml" >"$tmp/gateway.log" 2>&1 &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$gw_port/v2/" 2>/dev/null && break
  sleep 0.1
done
base="http://127.0.0.1:$gw_port"

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$gw_pid/status"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$gw_pid/status"; }
start_rss="$(rss_kib)"

loc="$(curl -fsS -X POST -D - -o /dev/null "$base/v2/bench/big/blobs/uploads/" |
  awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')"
loc="/${loc#*://*/}"

# Fast pseudo-random bytes (AES-CTR keystream), hashed on the way out.
log "streaming $SIZE_GIB GiB through the gateway (chunked PATCH)"
(
  set +o pipefail # openssl stops on SIGPIPE once head has enough
  openssl enc -aes-128-ctr -nosalt -pass pass:registry-gateway </dev/zero 2>/dev/null | head -c "$size" |
    tee >(sha256sum | cut -d' ' -f1 >"$tmp/digest") |
    curl -fsS -X PATCH -H 'Content-Type: application/octet-stream' -H 'Transfer-Encoding: chunked' \
      -T - -D "$tmp/patch.headers" -o /dev/null -w '%{speed_upload}\n' "$base$loc" >"$tmp/speed"
) &
upload=$!
samples=()
t0="$(date +%s.%N)"
while kill -0 "$upload" 2>/dev/null; do
  samples+=("$(rss_kib)")
  sleep 0.5
done
wait "$upload" || true
grep -q '^HTTP/[0-9.]* 202' "$tmp/patch.headers" || { log "the chunked PATCH failed: $(head -1 "$tmp/patch.headers")"; exit 1; }
t1="$(date +%s.%N)"
for _ in $(seq 50); do [[ -s "$tmp/digest" ]] && break; sleep 0.1; done
digest="sha256:$(cat "$tmp/digest")"
next="$(awk 'tolower($1) == "location:" { print $2 }' "$tmp/patch.headers" | tr -d '\r')"
next="/${next#*://*/}"
[[ "$next" == *\?* ]] && sep='&' || sep='?'
code="$(curl -sS -X PUT -o /dev/null -w '%{http_code}' "$base$next${sep}digest=$digest")"
[[ "$code" == 201 ]] || { log "completing the upload answered $code"; exit 1; }
stored="$(curl -fsS -I "$base/v2/bench/big/blobs/$digest" | awk 'tolower($1) == "content-length:" { print $2 }' | tr -d '\r')"
[[ "$stored" == "$size" ]] || { log "registry holds $stored bytes, expected $size"; exit 1; }

n=${#samples[@]}
tenth="${samples[$((n / 10))]}"
last="${samples[$((n - 1))]}"
max="$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)"
mbps="$(awk -v s="$(cat "$tmp/speed")" 'BEGIN { printf "%.0f", s / 1e6 }')"
echo "| metric | value |"
echo "|---|---:|"
echo "| blob pushed (chunked PATCH, digest verified by registry:2) | $SIZE_GIB GiB |"
echo "| throughput MB/s | $mbps |"
echo "| gateway RSS before, MiB | $((start_rss / 1024)) |"
echo "| gateway RSS at 10% of the upload, MiB | $((tenth / 1024)) |"
echo "| gateway RSS at the end of the upload, MiB | $((last / 1024)) |"
echo "| gateway RSS max sampled (every 0.5 s, $n samples), MiB | $((max / 1024)) |"
echo "| gateway peak RSS (VmHWM), MiB | $(($(hwm_kib) / 1024)) |"
log "done in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s"
