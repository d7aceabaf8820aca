#!/usr/bin/env bash
# Runs every fuzz target under tests/fuzz for $1 seconds each (default 60)
# and prints what each ran. Needs the nightly toolchain and cargo-fuzz
# (installed here from crates.io when missing).
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/../tests/fuzz"
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O --fuzz-dir .
for target in $(cargo +nightly fuzz list --fuzz-dir .); do
    mkdir -p "corpus/$target"
    log="target/fuzz-$target.log"
    echo "fuzz: $target for ${seconds}s"
    # -rss_limit_mb: a target that grows past 2 GiB is a finding too.
    cargo +nightly fuzz run -O --fuzz-dir . "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || {
        tail -40 "$log"
        echo "fuzz: $target failed; the input is under tests/fuzz/artifacts/$target/" >&2
        exit 1
    }
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz: $target: $runs executions, no crash"
done
