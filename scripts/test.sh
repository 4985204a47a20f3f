#!/usr/bin/env bash
# The project's test entry point (also what CI runs): formatting, a release
# build of every target, all unit + integration tests, and a validation of
# the committed example configs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

[[ -f "$HOME/.cargo/env" ]] && ! command -v cargo >/dev/null && . "$HOME/.cargo/env"

scripts/install-deps.sh test

summary=()
failed=0

# rustfmt is a rustup component that minimal toolchains lack; without it
# (and no rustup to add it) the format check is skipped rather than failed.
if ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add rustfmt >/dev/null 2>&1 || true
fi
if cargo fmt --version >/dev/null 2>&1; then
  echo "==> cargo fmt --all -- --check"
  if cargo fmt --all -- --check; then summary+=("fmt:     ok")
  else summary+=("fmt:     FAILED (run: cargo fmt --all)"); failed=1; fi
else
  summary+=("fmt:     skipped (rustfmt not available)")
fi

# Tests run against the release build: the integration tests drive the real
# binary, and release is also what run.sh and the benchmarks use, so the
# build is shared.
echo "==> cargo build --release --all-targets"
if ! cargo build --release --all-targets; then
  echo; echo "test summary:"; printf '  %s\n' "${summary[@]}" "build:   FAILED"
  exit 1
fi
summary+=("build:   ok")
# shellcheck source=scripts/cargo-bin.sh
. scripts/cargo-bin.sh
gateway_bin="$(gateway_bin_path)"

# The default gateway.yaml serves TLS with the development certificates the
# run command makes; tests check that config too.
"$gateway_bin" certs --out certs/dev

echo "==> cargo test --release --no-fail-fast"
# cargo prints one "test result:" line per test binary, the doc-tests (often
# empty) last; the output is kept to print one grand total at the very end.
test_log="$(mktemp)"
trap 'rm -f "$test_log"' EXIT
test_status=0
cargo test --release --no-fail-fast 2>&1 | tee "$test_log" || test_status=$?
if ((test_status == 0)); then summary+=("tests:   ok")
else summary+=("tests:   FAILED (exit $test_status)"); failed=1; fi

# Configs shipped with the repo must stay valid as the schema evolves.
configs=(gateway.yaml)
shopt -s nullglob
configs+=(examples/*.yaml)
shopt -u nullglob
bad=()
for cfg in "${configs[@]}"; do
  echo "==> registry-gateway check --config $cfg"
  "$gateway_bin" check --config "$cfg" || bad+=("$cfg")
done
if ((${#bad[@]})); then summary+=("configs: FAILED: ${bad[*]}"); failed=1
else summary+=("configs: ok (${configs[*]})"); fi

echo
echo "test summary:"
printf '  %s\n' "${summary[@]}"
awk '/^test result:/ { for (i = 2; i <= NF; i++) {
    if ($i ~ /^passed/) p += $(i - 1); if ($i ~ /^failed/) f += $(i - 1); if ($i ~ /^ignored/) s += $(i - 1) } }
  END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$test_log"
if ((test_status != 0)); then exit "$test_status"; fi
exit "$failed"
