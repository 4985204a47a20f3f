#!/usr/bin/env bash
# Installs the system packages needed to build, run, test or benchmark the
# gateway on Debian. Only missing packages are installed, so it is cheap to
# call from every other script.
#
# Usage: scripts/install-deps.sh [run|try|test|bench]   (default: run)
set -euo pipefail

mode="${1:-run}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# tests/packaging.rs validates deploy/kubernetes/ with this PyPI package
# (the API schemas ship in its wheel), from a venv in .run/.
KUBERNETES_VALIDATE=1.37.0

# Each entry is "command-to-look-for:debian-package"; a path means "file must
# exist" (some tools live in sbin, or share a name with a shell builtin).
build=(cmake:cmake gcc:gcc g++:g++ make:make pkg-config:pkg-config)
case "$mode" in
  # skopeo: scripts/try.sh pushes and pulls with it while run.sh runs.
  run) wanted=("${build[@]}" curl:curl /usr/bin/docker-registry:docker-registry skopeo:skopeo) ;;
  try) wanted=(curl:curl skopeo:skopeo) ;;
  test)
    wanted=("${build[@]}" curl:curl /usr/bin/docker-registry:docker-registry skopeo:skopeo
      htpasswd:apache2-utils openssl:openssl
      # tests/dashboard.rs evaluates every dashboard query in a real Prometheus.
      /usr/bin/prometheus:prometheus
      # tests/clients/token_server.py: the JWT issuer of token-auth registries.
      /usr/lib/python3/dist-packages/jwt/__init__.py:python3-jwt
      /usr/lib/python3/dist-packages/cryptography/__init__.py:python3-cryptography
      /usr/lib/python3/dist-packages/requests/__init__.py:python3-requests
      /usr/bin/systemd-analyze:systemd /bin/kill:procps
      # tests/packaging.rs: kubernetes-validate's venv, and the container
      # image built without a daemon on a base made by debootstrap.
      ensurepip:python3-venv buildah:buildah /usr/sbin/debootstrap:debootstrap
      # tests/mirror_pull.rs: podman pulls through a registries.conf mirror.
      /usr/bin/podman:podman)
    ;;
  bench)
    wanted=("${build[@]}" curl:curl /usr/bin/docker-registry:docker-registry skopeo:skopeo
      htpasswd:apache2-utils openssl:openssl wrk:wrk hey:hey /usr/sbin/nginx:nginx-light /usr/bin/time:time
      valgrind:valgrind /usr/lib/python3/dist-packages/requests/__init__.py:python3-requests)
    ;;
  *) echo "usage: $0 [run|try|test|bench]" >&2; exit 2 ;;
esac

missing=()
for entry in "${wanted[@]}"; do
  probe="${entry%%:*}" pkg="${entry#*:}"
  if [[ "$probe" == /* ]]; then [[ -e "$probe" ]] && continue
  else command -v "$probe" >/dev/null 2>&1 && continue
  fi
  # Any nginx flavour (nginx, nginx-full, ...) will do for the benchmark.
  [[ "$pkg" == nginx-light ]] && command -v nginx >/dev/null 2>&1 && continue
  # `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
  [[ "$pkg" == python3-venv ]] && /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 && continue
  missing+=("$pkg")
done

# Debian's packages start their own services on install: the registry on
# :5000 (the gateway's default port) and nginx on :80. We run our own
# instances on other ports, so the packaged ones must be off.
quiet_service() {
  local svc="$1"
  [[ -e "/etc/init.d/$svc" || -e "/lib/systemd/system/$svc.service" ]] || return 0
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  else
    service "$svc" stop >/dev/null 2>&1 || invoke-rc.d "$svc" stop >/dev/null 2>&1 || true
    update-rc.d "$svc" disable >/dev/null 2>&1 || true
  fi
}

# A packaged registry started before the init script could track it (e.g. by
# the package's postinst in a container) is found by its exact command line,
# so a registry someone started on purpose is never touched.
kill_packaged_registry() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
    if [[ "$cmd" =~ ^(/usr/bin/)?docker-registry\ serve\ /etc/docker/registry/config\.yml\ $ ]]; then
      echo "install-deps: stopping packaged registry (pid ${p#/proc/}) that holds :5000"
      kill "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

# Prometheus' package starts a server on :9090 (and, when recommends are
# installed, node-exporter on :9100); the dashboard test runs its own.
kill_packaged_prometheus() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
    if [[ "$cmd" =~ ^(/usr/bin/)?prometheus(-node-exporter)?\ $ ]]; then
      echo "install-deps: stopping packaged ${cmd% } (pid ${p#/proc/})"
      kill "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

kill_packaged_nginx() {
  local pid
  pid="$(cat /run/nginx.pid 2>/dev/null)" || return 0
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    echo "install-deps: stopping packaged nginx (pid $pid) that holds :80"
    kill -QUIT "$pid" 2>/dev/null || true
  fi
}

if ((${#missing[@]})); then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing packages for '$mode': ${missing[*]}" >&2
    echo "install them with (as root, on Debian/Ubuntu):" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing for '$mode': ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Done on every call (not just after an install): it is idempotent and also
# repairs machines where the package was installed by hand earlier.
if [[ "$(id -u)" == 0 ]]; then
  if dpkg -s docker-registry >/dev/null 2>&1; then
    quiet_service docker-registry
    kill_packaged_registry
  fi
  if dpkg -s prometheus >/dev/null 2>&1; then
    quiet_service prometheus
    quiet_service prometheus-node-exporter
    kill_packaged_prometheus
  fi
  if [[ "$mode" == bench ]] && dpkg -s nginx-common >/dev/null 2>&1; then
    quiet_service nginx
    kill_packaged_nginx
  fi
fi

# Made (or brought to the pinned version) only when it is not there yet.
if [[ "$mode" == test ]]; then
  venv="$root/.run/venv"
  if [[ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$KUBERNETES_VALIDATE" ]]; then
    echo "install-deps: installing kubernetes-validate==$KUBERNETES_VALIDATE into .run/venv"
    [[ -x "$venv/bin/pip" ]] || /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE"
  fi
fi

echo "install-deps: '$mode' dependencies present"
