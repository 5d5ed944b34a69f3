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

tmp=$(mktemp -d)
registry_pid=""
cleanup() {
    if [ -n "$registry_pid" ]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# A free port on loopback: try random ones until nothing answers.
for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
done
mkdir -p "$tmp/storage"
cat > "$tmp/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $tmp/storage
http:
  addr: 127.0.0.1:$port
  secret: reprise-demo
YAML
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
registry_pid=$!
for i in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
        break
    fi
    if [ "$i" -eq 100 ]; then
        echo "registry did not start; its log:" >&2
        cat "$tmp/registry.log" >&2
        exit 1
    fi
    sleep 0.1
done

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
