#!/usr/bin/env bash
# The main job on the bundled fixtures: starts a throwaway local registry, pushes the demo
# build (fixtures/demo, four arches) with push-container-manifest, then runs the same
# command again to show that the rerun is a no-op. Then pushes each arch to a staging
# repository as the build jobs would (fixtures/demo/build-jobs.toml) and runs the demo's whole
# release (fixtures/demo/release.toml) twice the same way: the second run runs no program and
# sends no write. Nothing outside a temp dir is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$(pwd)

# Each step says what it is doing before it starts: the release build below can take minutes
# the first time.
step() {
    echo
    echo "== $* =="
}

step "checking for the registry and skopeo (installed with apt-get if missing)"
scripts/install-deps.sh
step "building reprise in release mode (the first build takes a few minutes; later ones are quick)"
cargo build --locked --release
reprise="$repo_root/target/release/reprise"

source scripts/registry-lib.sh
tmp=$(mktemp -d)
cleanup() {
    stop_registries
    rm -rf "$tmp"
}
trap cleanup EXIT
step "starting a throwaway registry on 127.0.0.1 (storage in $tmp/registry)"
start_registry "$tmp/registry"
port=$REGISTRY_PORT
echo "registry listening on 127.0.0.1:$port"

step "copying the demo build (fixtures/demo: four arches) to $tmp/work"
cp -r fixtures/demo "$tmp/work"
cd "$tmp/work"
args=(push-container-manifest --repo "127.0.0.1:$port/fedora/fedora-coreos"
      --tag stable --tag 40 --artifact ostree --metajsonname base-oscontainer)

step "first run: pushing the four arches and the index to 127.0.0.1:$port/fedora/fedora-coreos (stable, 40)"
echo "+ reprise ${args[*]}"
time "$reprise" "${args[@]}"
step "second run, the same command: nothing to do (the JSON report is printed on stdout)"
time "$reprise" "${args[@]}" --json
step "the record reprise wrote in builds/*/x86_64/meta.json"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["base-oscontainer"], indent=4))' \
    builds/*/x86_64/meta.json 2>/dev/null || grep -A8 base-oscontainer builds/*/x86_64/meta.json

step "the build jobs (build-jobs.toml): each arch's image on a staging tag"
sed -i "s|^registry = .*|registry = \"127.0.0.1:$port\"|" release.toml build-jobs.toml
echo "+ reprise run --config build-jobs.toml"
"$reprise" run --config build-jobs.toml
step "a whole release (release.toml): per-arch tags, the index, promotion, a mirror copy, a cloud upload per arch, clean-up of the staging tags"
echo "+ reprise run --config release.toml --check    # exit 4: work pending"
status=0
"$reprise" --quiet run --config release.toml --check || status=$?
echo "exit $status"
echo "+ reprise run --config release.toml"
time "$reprise" run --config release.toml
step "the release again: every stage has nothing to do, no program runs"
time "$reprise" run --config release.toml
echo "+ reprise run --config release.toml --check    # exit 0: the release is complete"
"$reprise" --quiet run --config release.toml --check
echo "exit $?"
step "done; stopping the registry and removing $tmp"
