#!/usr/bin/env bash
# Tries the running gateway (scripts/run.sh in another terminal) the way a
# user would, with no image of their own and no network: builds a small OCI
# image offline, pushes it through the gateway over plain HTTP and over TLS
# (certificate verified against the development CA), pulls both back,
# compares every digest, and prints the docker / podman / skopeo commands
# for your own images.
#
# Usage: scripts/try.sh            (PLAIN=127.0.0.1:5000 TLS=localhost:5443 REPO=try/hello)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

plain="${PLAIN:-127.0.0.1:5000}"
tls="${TLS:-localhost:5443}"
repo="${REPO:-try/hello}"
trust="$root/certs/dev/trust"

say() { echo "try: $*"; }
die() { echo "try: ERROR: $*" >&2; exit 1; }

scripts/install-deps.sh try >/dev/null

curl -fsS -o /dev/null "http://$plain/v2/" 2>/dev/null ||
  die "no gateway answers on http://$plain/v2/: start it first with scripts/run.sh (in another terminal)"
[[ -f "$trust/ca.crt" ]] || die "no development CA in certs/dev/trust/: scripts/run.sh makes it"

work="$(mktemp -d "${TMPDIR:-/tmp}/registry-gateway-try.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- an OCI image layout made from scratch: one tar layer, a config, a manifest
sha() { sha256sum "$1" | cut -d' ' -f1; }
blobs="$work/image/blobs/sha256"
mkdir -p "$blobs" "$work/rootfs/hello"
printf 'Hello from registry-gateway (%s)\n' "$(date -u +%FT%TZ)" >"$work/rootfs/hello/message.txt"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" hello
layer="$(sha "$work/layer.tar")" layer_size="$(stat -c %s "$work/layer.tar")"
mv "$work/layer.tar" "$blobs/$layer"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/true"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$layer" >"$work/config.json"
config="$(sha "$work/config.json")" config_size="$(stat -c %s "$work/config.json")"
mv "$work/config.json" "$blobs/$config"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
manifest="$(sha "$work/manifest.json")" manifest_size="$(stat -c %s "$work/manifest.json")"
mv "$work/manifest.json" "$blobs/$manifest"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$manifest" "$manifest_size" >"$work/image/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/image/oci-layout"
say "built image $work/image (manifest sha256:$manifest, one layer sha256:$layer)"

# --- push, pull back, compare: once over each listener
check_round_trip() {
  local label="$1" ref="$2" back="$work/back-$1"; shift 2
  say "$label: push  oci:image:v1 -> $ref"
  # --preserve-digests: skopeo would otherwise gzip the uncompressed layer.
  skopeo --insecure-policy copy --quiet --preserve-digests "$@" "oci:$work/image:v1" "$ref" ||
    die "$label: push failed (is the gateway's upstream registry running?)"
  say "$label: pull  $ref -> oci:back:v1"
  skopeo --insecure-policy copy --quiet --preserve-digests --dest-oci-accept-uncompressed-layers \
    "${@/--dest/--src}" "$ref" "oci:$back:v1" || die "$label: pull failed"
  local got
  got="$(skopeo inspect --raw "${@/--dest-/--}" "$ref" | sha256sum | cut -d' ' -f1)"
  [[ "$got" == "$manifest" ]] || die "$label: registry serves manifest sha256:$got, pushed sha256:$manifest"
  for d in "$manifest" "$config" "$layer"; do
    [[ -f "$back/blobs/sha256/$d" && "$(sha "$back/blobs/sha256/$d")" == "$d" ]] ||
      die "$label: blob sha256:$d did not come back intact"
  done
  say "$label: ok, manifest, config and layer digests match after the round trip"
}
check_round_trip plain "docker://$plain/$repo:v1" --dest-tls-verify=false
check_round_trip tls "docker://$tls/$repo:v1" --dest-cert-dir="$trust"

cat <<EOF

try: the gateway works. With your own images:

  # skopeo: plain HTTP, or TLS trusting the development CA
  skopeo copy --dest-tls-verify=false docker-archive:image.tar docker://$plain/NAME:TAG
  skopeo copy --dest-cert-dir $trust oci:LAYOUT:TAG docker://$tls/NAME:TAG

  # docker: trust the CA for this host:port, then push as usual
  mkdir -p /etc/docker/certs.d/$tls && cp $trust/ca.crt /etc/docker/certs.d/$tls/ca.crt
  docker tag IMAGE $tls/NAME:TAG && docker push $tls/NAME:TAG
  #   (plain HTTP needs "insecure-registries": ["$plain"] in /etc/docker/daemon.json)

  # podman: the same trust folder under /etc/containers
  mkdir -p /etc/containers/certs.d/$tls && cp $trust/ca.crt /etc/containers/certs.d/$tls/ca.crt
  podman push IMAGE $tls/NAME:TAG
  podman push --tls-verify=false IMAGE $plain/NAME:TAG   # plain HTTP
EOF
