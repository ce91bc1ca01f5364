#!/usr/bin/env bash
# Builds every fuzz target and runs each for $1 seconds (default 60).
# Fails if any target crashes, leaks, hangs (-timeout) or fails to build.
#
#   fuzz/smoke.sh        # 60 s per target
#   fuzz/smoke.sh 600    # 10 min per target
#
# Needs a nightly toolchain; installs cargo-fuzz if it is missing. Crashes
# land in fuzz/artifacts/<target>/; corpora grow in fuzz/corpus/<target>/.
set -euo pipefail

secs="${1:-60}"
cd "$(dirname "$0")"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=$(cargo +nightly fuzz list | tr '\n' ' ')
cargo +nightly fuzz build

logs="${TMPDIR:-/tmp}/dueq-fuzz-logs"
mkdir -p "$logs"
failed=()
for target in $targets; do
    echo "=== $target: ${secs}s (log: $logs/$target.log)"
    mkdir -p "corpus/$target"
    extra=()
    # Each model run opens a store (~10 ms): start with inputs long enough
    # for whole operation sequences instead of growing them from 4 bytes.
    [ "$target" = model ] && extra=(-len_control=0 -max_len=1024)
    set +e
    cargo +nightly fuzz run "$target" -- \
        -max_total_time="$secs" -timeout=60 -print_final_stats=1 "${extra[@]}" \
        >"$logs/$target.log" 2>&1
    status=$?
    set -e
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' \
        "$logs/$target.log" || true
    if [ "$status" -ne 0 ]; then
        grep -E -A30 'panicked|==[0-9]+== ERROR|ERROR: libFuzzer' "$logs/$target.log" | head -n 60 || true
        echo "!!! $target FAILED (exit $status); artifacts in fuzz/artifacts/$target/"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz smoke FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz smoke passed: $targets (${secs}s each)"
