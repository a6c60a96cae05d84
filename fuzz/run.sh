#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 5) and reports the executions; fails on the
# first crash (libFuzzer keeps the input under fuzz/artifacts/TARGET/). Installs cargo-fuzz if
# missing. Stable toolchain: RUSTC_BOOTSTRAP=1 and no sanitizer (-s none), as cargo-fuzz allows.
# The targets are built once, then run directly, so sources may change meanwhile.
#
#   bash fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s none
bin_dir=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
total=0
for target in $(cargo fuzz list); do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log=$(mktemp)
    if ! "$bin_dir/$target" "fuzz/corpus/$target" -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$seconds" >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz: $target FOUND A CRASH (input in fuzz/artifacts/$target/)"
        exit 1
    fi
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | awk '{print $2}')
    printf 'fuzz: %-16s %10s executions in %ss, no crash\n' "$target" "${runs:-?}" "$seconds"
    total=$((total + ${runs:-0}))
    rm -f "$log"
done
echo "fuzz: $total executions in all, no crash"
