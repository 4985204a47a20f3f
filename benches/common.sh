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
die() { log "ERROR: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  while :; do p=$((20000 + RANDOM % 40000)); port_open "$p" || { echo "$p"; return; }; done
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
