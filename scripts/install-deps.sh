#!/usr/bin/env bash
# Installs what reprise's tests and demo need on a Debian machine that has only the Rust
# toolchain: Docker Distribution's registry, skopeo (the independent client the tests
# cross-check with), openssl (the TLS tests make their own CA), python3 (the record tests'
# stand-in for another process holding a meta.json lock with flufl.lock's protocol) and
# flufl.lock itself for Debian's python3 (the demo release's command stage writes meta.json
# under coreos-assembler's lock with it), and nginx (a real HTTP build store with range
# support for the --builds-url tests), and s3s-fs (a real S3-compatible server for those
# tests; built once by cargo, about 3 minutes on 2 cores, then kept in ~/.cargo/bin). Runs
# apt-get update once, and only when something is missing.
set -euo pipefail

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
/usr/bin/python3 -c 'import flufl.lock' >/dev/null 2>&1 || missing+=(python3-flufl.lock)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
