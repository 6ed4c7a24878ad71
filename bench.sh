#!/usr/bin/env bash
# The benchmark (README "Performance"): installs what it needs, builds the release binary, runs
# `cargo bench --bench load` on 127.0.0.1 only, and prints the table. Takes a few minutes.
# `./bench.sh --soak MINUTES`: the soak instead (steady mixed load on the release binary; per-minute rows).
# `./bench.sh --warm`: P1 only; with PULLGATE_BENCH_PROFILE=1 also a perf profile of pullgate (target/bench-profile.txt).
set -euo pipefail
cd "$(dirname "$0")"
# docker-registry for the registries; wrk drives P1 (a Go load generator saturates first on two cores).
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
cargo build --release --bin pullgate
cargo bench --bench load -- "$@"
