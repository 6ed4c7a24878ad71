#!/usr/bin/env bash
# Installs pullgate with `cargo install --locked` and runs `pullgate --version`; used by the GitHub action
# (action.yml) and by test.sh, which checks that the README's `cargo install --locked --path .` works.
#   PULLGATE_VERSION       empty: this checkout (--path); otherwise a git tag of PULLGATE_REPOSITORY (owner/name)
#   PULLGATE_ROOT          where to install (bin/pullgate under it); default $RUNNER_TEMP/pullgate or target/pullgate-install
#   PULLGATE_INSTALL_ARGS  more `cargo install` arguments, e.g. `--debug`
# With GITHUB_PATH set (GitHub Actions), the bin directory is added to the job's PATH.
set -euo pipefail
checkout="$(cd "$(dirname "$0")/../.." && pwd)"
root="${PULLGATE_ROOT:-${RUNNER_TEMP:-$checkout/target}/pullgate-install}"
command -v cargo >/dev/null 2>&1 || {
    echo "installing pullgate needs cargo (a Rust toolchain, e.g. from https://rustup.rs)" >&2
    exit 1
}
read -r -a extra <<<"${PULLGATE_INSTALL_ARGS:-}"
if [ -z "${PULLGATE_VERSION:-}" ]; then
    cargo install --locked --path "$checkout" --root "$root" "${extra[@]}"
else
    : "${PULLGATE_REPOSITORY:?PULLGATE_REPOSITORY (owner/name) names where version $PULLGATE_VERSION comes from}"
    cargo install --locked --git "https://github.com/$PULLGATE_REPOSITORY" --tag "$PULLGATE_VERSION" \
        --root "$root" "${extra[@]}" pullgate
fi
"$root/bin/pullgate" --version
if [ -n "${GITHUB_PATH:-}" ]; then
    echo "$root/bin" >>"$GITHUB_PATH"
fi
