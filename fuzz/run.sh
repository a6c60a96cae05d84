#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 5) and reports the executions; fails on the
# first crash (its input is kept under fuzz/artifacts/). Installs cargo-fuzz if missing.
# Stable toolchain: RUSTC_BOOTSTRAP=1 and no sanitizer (-s none), as cargo-fuzz allows.
#
#   bash fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s none
total=0
for target in $(cargo fuzz list); do
    log=$(mktemp)
    if ! cargo fuzz run "$target" -s none -- -max_total_time="$seconds" >"$log" 2>&1; then
        tail -n 30 "$log"
        echo "fuzz: $target FAILED (input in fuzz/artifacts/$target/)"
        exit 1
    fi
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | awk '{print $2}')
    printf 'fuzz: %-16s %10s executions in %ss, no crash\n' "$target" "${runs:-?}" "$seconds"
    total=$((total + ${runs:-0}))
    rm -f "$log"
done
echo "fuzz: $total executions in all, no crash"
