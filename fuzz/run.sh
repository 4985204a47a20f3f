#!/usr/bin/env bash
# Builds every fuzz target once and runs each for SECONDS_PER_TARGET seconds.
#
#   fuzz/run.sh SECONDS_PER_TARGET [TARGET...]
#
# Environment:
#   JOBS=N         targets fuzzed at once (default 1; each uses one core)
#   SANITIZER=s    cargo fuzz sanitizer (default none: the gateway is safe
#                  Rust, panics are what we look for; `address` also works
#                  on stable but builds everything again and runs slower)
#   FUZZ_STRICT=1  also assert the invariants known not to hold today
#                  (README.md, "Known findings")
#   EXTRA_ARGS     more libFuzzer flags for every target
#
# Works on the stable toolchain: cargo-fuzz passes nightly-only flags, which
# RUSTC_BOOTSTRAP=1 lets stable rustc accept.
#
# Before fuzzing, each target replays the inputs in regressions/TARGET/
# (crashes found and fixed before). Prints `TARGET executions=N crashes=M`
# per target; exits 1 when a regression input fails again or any target has
# files in artifacts/TARGET/ (crashes, timeouts, OOMs, from this run or an
# earlier one not yet triaged).
set -euo pipefail

usage() {
    echo "usage: $0 SECONDS_PER_TARGET [TARGET...]" >&2
    exit 2
}
[[ $# -ge 1 && $1 =~ ^[0-9]+$ ]] || usage
seconds=$1
shift

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
jobs_max=${JOBS:-1}
[[ $jobs_max =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a positive number" >&2; exit 2; }
sanitizer=${SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

all_targets=$(cargo fuzz list)
if [[ $# -gt 0 ]]; then
    targets="$*"
    for t in $targets; do
        grep -qx "$t" <<<"$all_targets" || { echo "unknown target $t (have: $(echo $all_targets))" >&2; exit 2; }
    done
else
    targets=$all_targets
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
if [[ $sanitizer == none ]]; then
    target_dir=$here/target
else
    target_dir=$here/target-$sanitizer
fi
echo "building: cargo fuzz build -s $sanitizer (RUSTC_BOOTSTRAP=1)" >&2
cargo fuzz build -s "$sanitizer" --target-dir "$target_dir"
bin_dir=$target_dir/$triple/release

mkdir -p logs
rm -f logs/*.regressions-failed
run_target() {
    local t=$1
    mkdir -p "corpus/$t" "artifacts/$t"
    if compgen -G "regressions/$t/*" >/dev/null; then
        "$bin_dir/$t" regressions/"$t"/* >"logs/$t.regressions.log" 2>&1 ||
            touch "logs/$t.regressions-failed"
    fi
    local seeds=()
    [[ -d seeds/$t ]] && seeds=("seeds/$t")
    local dict=()
    [[ -f dicts/$t.dict ]] && dict=("-dict=dicts/$t.dict")
    # A run that ends on a crash exits non-zero; the artifact count says so.
    # shellcheck disable=SC2086
    "$bin_dir/$t" \
        -max_total_time="$seconds" \
        -rss_limit_mb=2048 \
        -timeout=30 \
        -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" \
        "${dict[@]}" ${EXTRA_ARGS:-} \
        "corpus/$t" "${seeds[@]}" >"logs/$t.log" 2>&1 || true
}

for t in $targets; do
    while [[ $(jobs -rp | wc -l) -ge $jobs_max ]]; do
        wait -n || true
    done
    echo "fuzzing $t for ${seconds}s (log: fuzz/logs/$t.log)" >&2
    run_target "$t" &
done
wait

failed=0
for t in $targets; do
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    echo "$t executions=${execs:-0} crashes=$crashes"
    if [[ $crashes -gt 0 ]]; then
        failed=1
        find "artifacts/$t" -type f | sed 's/^/  /' >&2
    fi
    if [[ -e logs/$t.regressions-failed ]]; then
        failed=1
        echo "  $t: an input in fuzz/regressions/$t/ fails again; see fuzz/logs/$t.regressions.log" >&2
    fi
    if [[ -z $execs ]]; then
        echo "  $t: no final stats; see fuzz/logs/$t.log" >&2
        failed=1
    fi
done
exit "$failed"
