#!/usr/bin/env bash
# Installs what reprise's tests and demo need on a Debian machine that has only the Rust
# toolchain: Docker Distribution's registry, skopeo (the independent client the tests
# cross-check with), openssl (the TLS tests make their own CA), python3 (the record tests'
# stand-in for another process holding a meta.json lock with flufl.lock's protocol),
# flufl.lock itself for Debian's python3 (the demo release's command stage writes meta.json
# under coreos-assembler's lock with it), the oras Python SDK (PyPI `oras`, pinned), the
# independent client the referrers tests sign images with, into target/test-deps/python,
# nginx (a real HTTP build store with range support for the --builds-url tests), and s3s-fs
# (a real S3-compatible server for those tests; built once by cargo, about 3 minutes on 2
# cores, then kept in ~/.cargo/bin). Runs apt-get update once, and only when something is
# missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# Where tests/it/support/referrers.rs looks for the oras SDK.
oras_dir="$root/target/test-deps/python"
oras_version="0.2.43"

install_oras() {
    if PYTHONPATH="$oras_dir" python3 -c "import oras.provider" >/dev/null 2>&1; then
        return 0
    fi
    echo "installing oras==$oras_version (Python) into $oras_dir" >&2
    # --target keeps it out of the system's Python (which Debian marks externally managed).
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --root-user-action=ignore \
        --target "$oras_dir" "oras==$oras_version"
}

# s3s-fs 0.14.1: later versions need a newer rustc. Cached in ~/.cargo/bin between runs.
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
    echo "building s3s-fs 0.14.1 (once; about 3 minutes)" >&2
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
/usr/bin/python3 -c 'import flufl.lock' >/dev/null 2>&1 || missing+=(python3-flufl.lock)
if [ ${#missing[@]} -eq 0 ]; then
    install_oras
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
install_oras
