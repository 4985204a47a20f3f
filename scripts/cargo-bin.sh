# Sourced by the scripts that build and then run the gateway. Defines
# gateway_bin_path: where `cargo build --release` put the binary, asked of
# cargo itself, so CARGO_TARGET_DIR and `build.target-dir` in a cargo config
# are honoured (both move the build out of ./target).
gateway_bin_path() {
  local meta dir
  meta="$(cargo metadata --format-version 1 --no-deps)" || return 1
  dir="$(printf '%s' "$meta" | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  if [[ -z "$dir" ]]; then
    echo "cargo metadata did not name a target_directory" >&2
    return 1
  fi
  printf '%s/release/registry-gateway\n' "$dir"
}
