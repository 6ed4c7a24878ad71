#!/usr/bin/env bash
# The benchmark (README "Performance"): installs what it needs, builds the release binary, runs
# `cargo bench --bench load` on 127.0.0.1 only, and prints the table. Takes a few minutes.
# `./bench.sh --soak MINUTES`: the soak instead (steady mixed load on the release binary; per-minute rows).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v docker-registry >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y docker-registry
fi
cargo build --release --bin pullgate
cargo bench --bench load -- "$@"
