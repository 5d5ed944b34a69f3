#!/usr/bin/env bash
# The main job on the bundled fixtures: starts a throwaway local registry, pushes the demo
# build (fixtures/demo, four arches) with push-container-manifest, then runs the same
# command again to show that the rerun is a no-op. Then runs the demo's whole release
# (fixtures/demo/release.toml) twice the same way. Nothing outside a temp dir is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$(pwd)
scripts/install-deps.sh
cargo build --locked --quiet --release
reprise="$repo_root/target/release/reprise"

source scripts/registry-lib.sh
tmp=$(mktemp -d)
cleanup() {
    stop_registries
    rm -rf "$tmp"
}
trap cleanup EXIT
start_registry "$tmp/registry"
port=$REGISTRY_PORT

cp -r fixtures/demo "$tmp/work"
cd "$tmp/work"
args=(push-container-manifest --repo "127.0.0.1:$port/fedora/fedora-coreos"
      --tag stable --tag 40 --artifact ostree --metajsonname base-oscontainer)

echo "== first run: push =="
time "$reprise" "${args[@]}"
echo
echo "== second run: nothing to do =="
time "$reprise" "${args[@]}" --json
echo
echo "== the record in builds/*/x86_64/meta.json =="
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["base-oscontainer"], indent=4))' \
    builds/*/x86_64/meta.json 2>/dev/null || grep -A8 base-oscontainer builds/*/x86_64/meta.json

echo
echo "== a whole release (release.toml): per-arch tags, the index, promotion to latest =="
sed -i "s|^registry = .*|registry = \"127.0.0.1:$port\"|" release.toml
time "$reprise" run --config release.toml
echo
echo "== the release again: every stage has nothing to do =="
time "$reprise" run --config release.toml
