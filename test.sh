#!/usr/bin/env bash
# Installs what the tests need, then runs them. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

# Integration tests start real Debian `docker-registry` (distribution 2.8) processes on 127.0.0.1, and the
# differential suite (tests/differential) asks a private, unprivileged Debian `containerd` (`ctr images pull`)
# whether a node would pull each image. No system daemon is started or needed.
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
{ command -v containerd && command -v ctr; } >/dev/null 2>&1 || missing+=(containerd)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

scripts/install-tools.sh  # kubectl and helm for tests/deploy and tests/certs, cached in target/tools
# Library, binary and integration tests; the benchmark (benches/load.rs) runs only via ./bench.sh.
cargo test --lib --bins --tests "$@"
