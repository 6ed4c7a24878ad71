#!/usr/bin/env bash
# Fuzz every target of `pullgate::fuzz` for SECONDS each (default 60) and print executions and crashes
# per target. With a nightly toolchain and cargo-fuzz: libFuzzer (`fuzz/`), corpora copied from
# fuzz/corpus into target/fuzz-corpus (the seeds stay as checked in), crashes in fuzz/artifacts.
# Otherwise: the stable mutation driver (tests/fuzz.rs) for SECONDS per target, crashes in
# target/fuzz-crashes. Exit status 1 when anything crashed.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
targets=(admission image_reference pull_secret policy_file settings hosts_toml challenge manifest check)

if cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; then
    echo "libFuzzer (nightly), ${seconds}s per target"
    (cd fuzz && cargo +nightly fuzz build -O >/dev/null)
    failed=0
    printf '%-16s %12s %8s\n' target executions crashes
    for target in "${targets[@]}"; do
        corpus="target/fuzz-corpus/$target"
        mkdir -p "$corpus"
        cp -n fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
        log="target/fuzz-corpus/$target.log"
        status=0
        (cd fuzz && cargo +nightly fuzz run -O "$target" "../$corpus" -- \
            -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1) >"$log" 2>&1 || status=$?
        executions=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
        crashes=0
        if [ "$status" -ne 0 ]; then crashes=1; failed=1; fi
        printf '%-16s %12s %8s\n' "$target" "${executions:-?}" "$crashes"
        if [ "$status" -ne 0 ]; then tail -20 "$log"; fi
    done
    exit "$failed"
fi

echo "stable mutation driver (no nightly cargo-fuzz), ${seconds}s per target"
PULLGATE_FUZZ_SECONDS="$seconds" cargo test --release --test fuzz every_fuzz_target -- --nocapture
