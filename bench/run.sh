#!/usr/bin/env bash
# reprise's benchmark: generates cosa build trees with large archives, starts throwaway
# registries on 127.0.0.1, measures, and prints one table.
#
#   bench/run.sh                      4 arches x 256 MiB layers, 2 tags, 3 runs per figure
#   BENCH_MB=64 BENCH_BIG_MB=256 bench/run.sh     smaller, for a quick look
#
# What it measures (all on loopback, one machine, one run of this script):
#   - full push: reprise, against the raw ingest limit (one monolithic curl PUT per blob of the
#     same blobs, one at a time and 4 at a time like reprise's default --jobs) and skopeo copy
#     of each arch;
#   - peak RSS of a full push (/usr/bin/time -f %M);
#   - no-op rerun: wall time and registry requests per tag, at BENCH_MB and at BENCH_BIG_MB
#     (the cost must not grow with archive size);
#   - partial change: one arch's layer changed; bytes uploaded against that arch's new bytes;
#   - latency: a registry far away (bench/delay-proxy.py holds every response BENCH_DELAY_MS,
#     default 200, long enough that this machine's own work blurs the count little): round trips on the critical path (wall time / delay) of a first push of
#     4 arches x 8 layers with 2 tags, and of a no-op with 2 and with 8 tags;
#   - realistic shapes: a 64-layer-per-arch build (rpm-ostree's chunking) and a build of
#     BENCH_XL_MB (default 1536) MiB per arch, each pushed to a fresh registry: time and
#     peak RSS.
#   - build store: a full push of 4 arches x BENCH_STORE_MB (default 64) MiB layers from S3
#     (--builds-url s3://, s3s-fs on loopback, records written back into the bucket) beside
#     the same push from local disk, and from nginx over HTTP (records in the working
#     directory).
# Timings are medians of BENCH_RUNS runs; each full push goes to a fresh registry.
# BENCH_PUSH_ARGS adds arguments to reprise's full push (e.g. '--chunk-size 1GiB').
# BENCH_ONLY=push|latency|shapes|store runs only those rows (push: the full push, curl, skopeo,
# no-op and partial-change rows).
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$(pwd)
scripts/install-deps.sh
if [ ! -x /usr/bin/time ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi

MB=${BENCH_MB:-256}
XL_MB=${BENCH_XL_MB:-1536}
DELAY_MS=${BENCH_DELAY_MS:-200}
ONLY=${BENCH_ONLY:-}
BIG_MB=${BENCH_BIG_MB:-1024}
STORE_MB=${BENCH_STORE_MB:-64}
# Extra arguments for reprise's full push (e.g. --chunk-size 1GiB), to compare settings.
PUSH_ARGS=${BENCH_PUSH_ARGS:-}
RUNS=${BENCH_RUNS:-3}
NOOP_RUNS=${BENCH_NOOP_RUNS:-5}
ARCHES=x86_64,aarch64,ppc64le,s390x
ID=40.20261101.3.0
NEXT=40.20261102.1.0

cargo build --locked --quiet --release
cargo build --locked --quiet --release --example gen-fixtures
reprise="$repo_root/target/release/reprise"
gen="$repo_root/target/release/examples/gen-fixtures"

source scripts/registry-lib.sh
tmp=$(mktemp -d -p "${BENCH_TMP:-/var/tmp}" reprise-bench.XXXXXX)
s3_pid="" ng_pid=""
cleanup() {
    stop_registries
    if [ -n "$s3_pid" ]; then kill "$s3_pid" 2>/dev/null || true; fi
    if [ -n "$ng_pid" ]; then kill "$ng_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mib() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1048576:.1f}')" "$1"; }

# A build tree with 4 arches and layers of $2 MiB, in $1.
make_tree() {
    echo "generating $2 MiB x 4 arches in $1" >&2
    "$gen" --out "$1" --id "$ID" --arches "$ARCHES" --layer-size $(($2 * 1048576)) >/dev/null
}

push() { # workdir repo [extra...]
    local work=$1 repo=$2
    shift 2
    (cd "$work" && "$reprise" -q push-container-manifest --repo "$repo" --tag stable --tag 40 \
        --artifact ostree --metajsonname base-oscontainer "$@")
}

rows=()
row() { rows+=("$(printf '%-58s %s' "$1" "$2")"); }

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

if [ -z "$ONLY" ] || [ "$ONLY" = push ]; then
# --- Full push and raw ingest, in turn -----------------------------------------------------
# Each run pushes with reprise, then the same blobs with curl (one monolithic PUT per blob, 1
# and 4 at a time), each to a fresh registry, so a load that comes and goes on the machine
# weighs on all three alike; the ratios are medians of each run's own ratio.
make_tree "$tmp/tree" "$MB"
blob_bytes=$(find "$tmp/tree/builds/$ID" -name '*.ociarchive' -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
mkdir -p "$tmp/blobs"
for a in "$tmp"/tree/builds/$ID/*/*.ociarchive; do
    tar -xf "$a" -C "$tmp/blobs" blobs
done
# One monolithic upload (POST for a session, then PUT of the whole blob) of file $2 to the
# registry at base URL $1.
cat > "$tmp/put-blob.sh" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
base=$1 f=$2
loc=$(curl -fsS -X POST -D - -o /dev/null "$base/v2/fcos/blobs/uploads/" | tr -d '\r' |
    awk 'tolower($1)=="location:" {print $2}')
case "$loc" in http*) ;; *) loc="$base$loc" ;; esac
sep='?'; case "$loc" in *\?*) sep='&' ;; esac
curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
    -T "$f" "${loc}${sep}digest=sha256:$(basename "$f")"
SH
chmod +x "$tmp/put-blob.sh"
curl_push() { # parallelism run -> seconds
    local t0 t1
    start_registry "$tmp/reg-curl-$2-$1"
    t0=$(now)
    ls "$tmp"/blobs/blobs/sha256/* |
        xargs -P "$1" -n 1 "$tmp/put-blob.sh" "http://127.0.0.1:$REGISTRY_PORT"
    t1=$(now)
    stop_registries
    rm -rf "$tmp/reg-curl-$2-$1"
    elapsed "$t0" "$t1"
}
push_times=() rss=() curl_times=() curl4_times=() ratios1=() ratios4=()
for i in $(seq 1 "$RUNS"); do
    rm -rf "$tmp/work" && cp -r "$tmp/tree" "$tmp/work"
    start_registry "$tmp/reg-push-$i"
    t0=$(now)
    /usr/bin/time -f %M -o "$tmp/rss" \
        bash -c "cd '$tmp/work' && '$reprise' -q push-container-manifest \
            --repo 127.0.0.1:$REGISTRY_PORT/fcos --tag stable --tag 40 \
            --artifact ostree --metajsonname base-oscontainer $PUSH_ARGS"
    t1=$(now)
    push_times+=("$(elapsed "$t0" "$t1")")
    rss+=("$(cat "$tmp/rss")")
    push_requests=$(registry_requests "$tmp/reg-push-$i")
    stop_registries
    rm -rf "$tmp/reg-push-$i"
    curl_times+=("$(curl_push 1 "$i")")
    curl4_times+=("$(curl_push 4 "$i")")
    ratios1+=("$(python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "${push_times[-1]}" "${curl_times[-1]}")")
    ratios4+=("$(python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "${push_times[-1]}" "${curl4_times[-1]}")")
done
push_s=$(median "${push_times[@]}")
curl4_s=$(median "${curl4_times[@]}")
curl_s=$(median "${curl_times[@]}")
ratio1=$(python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$(median "${ratios1[@]}")")
ratio4=$(python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$(median "${ratios4[@]}")")

# --- skopeo copy, one arch at a time --------------------------------------------------------
skopeo_times=()
for i in $(seq 1 "$RUNS"); do
    start_registry "$tmp/reg-skopeo-$i"
    t0=$(now)
    for a in "$tmp"/tree/builds/$ID/*/*.ociarchive; do
        arch=$(basename "$(dirname "$a")")
        skopeo copy -q --dest-tls-verify=false "oci-archive:$a" \
            "docker://127.0.0.1:$REGISTRY_PORT/fcos:$arch"
    done
    t1=$(now)
    skopeo_times+=("$(elapsed "$t0" "$t1")")
    stop_registries
    rm -rf "$tmp/reg-skopeo-$i"
done
skopeo_s=$(median "${skopeo_times[@]}")


# --- No-op rerun at two sizes ---------------------------------------------------------------
noop() { # tree-dir size-label
    local tree=$1 reg="$tmp/reg-noop-$2" times=() before after
    rm -rf "$tmp/work" && cp -r "$tree" "$tmp/work"
    start_registry "$reg"
    push "$tmp/work" "127.0.0.1:$REGISTRY_PORT/fcos"
    for _ in $(seq 1 "$NOOP_RUNS"); do
        before=$(registry_requests "$reg")
        t0=$(now)
        push "$tmp/work" "127.0.0.1:$REGISTRY_PORT/fcos"
        t1=$(now)
        after=$(registry_requests "$reg")
        times+=("$(elapsed "$t0" "$t1")")
    done
    NOOP_MS=$(python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000:.0f}')" "$(median "${times[@]}")")
    NOOP_REQ=$((after - before))
    stop_registries
    rm -rf "$reg"
}
noop "$tmp/tree" "$MB"
noop_ms=$NOOP_MS noop_req=$NOOP_REQ
make_tree "$tmp/big" "$BIG_MB"
noop "$tmp/big" "$BIG_MB"
big_noop_ms=$NOOP_MS big_noop_req=$NOOP_REQ
rm -rf "$tmp/big"

# --- Partial change: a newer build where only x86_64's layer changed -----------------------
rm -rf "$tmp/work" && cp -r "$tmp/tree" "$tmp/work"
start_registry "$tmp/reg-partial"
push "$tmp/work" "127.0.0.1:$REGISTRY_PORT/fcos"
"$gen" --out "$tmp/work" --add --id "$NEXT" --version "$ID" --arches "$ARCHES" \
    --layer-size $((MB * 1048576)) --salt-of x86_64=changed >/dev/null
# The changed arch's new bytes: its config and its own layer (the base layer is shared).
changed_bytes=$(python3 - "$tmp/work/builds/$NEXT/x86_64" <<'PY'
import json, os, sys, tarfile
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
with tarfile.open(os.path.join(d, meta["images"]["ostree"]["path"])) as t:
    idx = json.load(t.extractfile("index.json"))
    m = json.load(t.extractfile("blobs/sha256/" + idx["manifests"][0]["digest"].split(":")[1]))
print(m["config"]["size"] + m["layers"][-1]["size"])
PY
)
partial_json=$(push "$tmp/work" "127.0.0.1:$REGISTRY_PORT/fcos" --json)
partial_bytes=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["uploaded"]["bytes"])' <<<"$partial_json")
stop_registries

rss_mib=$(python3 -c "import sys; print(f'{max(int(x) for x in sys.argv[1:]) / 1024:.1f}')" "${rss[@]}")
row "full push, 4 arches x $MB MiB layers ($(mib "$blob_bytes") MiB of archives), 2 tags" ""
row "full push, reprise (s)" "$push_s   [${push_times[*]}]"
row "full push, curl monolithic PUT per blob, 1 at a time (s)" "$curl_s   [${curl_times[*]}]"
row "full push, curl monolithic PUT per blob, 4 at a time (s)" "$curl4_s   [${curl4_times[*]}]"
row "full push, skopeo copy per arch (s)" "$skopeo_s   [${skopeo_times[*]}]"
row "reprise / curl 1 at a time (target <= 1.15)" "$ratio1   (median of each run's ratio)"
row "reprise / curl 4 at a time (same parallelism; target <= 1.05)" "$ratio4   (median of each run's ratio)"
row "reprise / skopeo (target < 1)" "$(ratio "$push_s" "$skopeo_s")"
row "registry requests, full push" "$push_requests"
row "peak RSS of a full push (MiB, target <= 64)" "$rss_mib"
row "no-op rerun at $MB MiB (ms, target < 50)" "$noop_ms"
row "no-op rerun at $BIG_MB MiB (ms)" "$big_noop_ms"
row "no-op requests per tag at $MB MiB (target <= 3)" "$(python3 -c "print($noop_req / 2)")"
row "no-op requests per tag at $BIG_MB MiB" "$(python3 -c "print($big_noop_req / 2)")"
row "partial change: uploaded / changed arch's bytes (<= 1.05)" "$(ratio "$partial_bytes" "$changed_bytes")   [$partial_bytes / $changed_bytes]"
fi

# --- Build store: the same push from local disk and from S3, in turn -------------------------
# 4 arches x STORE_MB MiB layers; each run pushes from local disk, then from s3s-fs on
# loopback (--builds-url s3://, records written back into the bucket), each to a fresh
# registry; the ratio is the median of each run's own. The objects are PUT through the
# server, as a build upload would, so it keeps their ETags (s3s-fs hashes a whole object
# on every read of one it did not receive by PUT).
if [ -z "$ONLY" ] || [ "$ONLY" = store ]; then
    make_tree "$tmp/store-tree" "$STORE_MB"
    s3s=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
    s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$tmp/s3"
    RUST_LOG=info NO_COLOR=1 "$s3s" --host 127.0.0.1 --port "$s3_port" --access-key bench \
        --secret-key bench-secret-key "$tmp/s3" >"$tmp/s3.log" 2>&1 &
    s3_pid=$!
    timeout 20 bash -c "until grep -q 'server is running' '$tmp/s3.log'; do sleep 0.1; done"
    s3_put_tree() { # every file of the store tree, PUT into bucket "builds"
        (cd "$tmp/store-tree/builds" && find . -type f) | while read -r f; do
            curl -fsS -X PUT -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
                --aws-sigv4 "aws:amz:us-east-1:s3" --user bench:bench-secret-key \
                -T "$tmp/store-tree/builds/$f" "http://127.0.0.1:$s3_port/builds/${f#./}" >/dev/null
        done
    }
    # nginx serving the same tree over HTTP (sendfile; a server that costs almost no CPU),
    # for a working directory holding the records only.
    ng_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$tmp/nginx"
    cat >"$tmp/nginx/nginx.conf" <<CONF
daemon off; user root; worker_processes 2; pid $tmp/nginx/nginx.pid; error_log stderr notice;
events { worker_connections 64; }
http { access_log off; client_body_temp_path $tmp/nginx/body; sendfile on;
  server { listen 127.0.0.1:$ng_port; root $tmp/store-tree;
           location / { limit_except GET { deny all; } } } }
CONF
    /usr/sbin/nginx -e stderr -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.log" &
    ng_pid=$!
    timeout 20 bash -c "until curl -s -o /dev/null http://127.0.0.1:$ng_port/; do sleep 0.1; done"
    local_times=() s3_times=() s3_ratios=() s3_cpu=() http_times=() http_ratios=()
    for i in $(seq 1 "$RUNS"); do
        rm -rf "$tmp/work" && cp -r "$tmp/store-tree" "$tmp/work"
        start_registry "$tmp/reg-local-$i"
        t0=$(now)
        push "$tmp/work" "127.0.0.1:$REGISTRY_PORT/fcos"
        t1=$(now)
        local_times+=("$(elapsed "$t0" "$t1")")
        stop_registries
        rm -rf "$tmp/reg-local-$i" "$tmp/work"
        # A fresh bucket (records unwritten), an empty working directory, no archive cache.
        rm -rf "$tmp/s3/builds" "$tmp/cache" && s3_put_tree && mkdir -p "$tmp/work"
        start_registry "$tmp/reg-s3-$i"
        s3_cpu0=$(awk '{print $14 + $15}' "/proc/$s3_pid/stat")
        t0=$(now)
        (export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key XDG_CACHE_HOME="$tmp/cache"
            push "$tmp/work" "127.0.0.1:$REGISTRY_PORT/fcos" --builds-url s3://builds \
                --s3-endpoint "http://127.0.0.1:$s3_port" --s3-region us-east-1 --json >"$tmp/s3-report.json")
        t1=$(now)
        s3_times+=("$(elapsed "$t0" "$t1")")
        s3_cpu+=("$(awk -v t0="$s3_cpu0" -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15 - t0) / hz}' "/proc/$s3_pid/stat")")
        s3_read=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['store']['bytes_read'])" "$tmp/s3-report.json")
        s3_ratios+=("$(python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "${s3_times[-1]}" "${local_times[-1]}")")
        stop_registries
        rm -rf "$tmp/reg-s3-$i" "$tmp/work" "$tmp/cache"
        mkdir -p "$tmp/work/builds"
        (cd "$tmp/store-tree" && find builds -name meta.json -o -name builds.json) | while read -r f; do
            mkdir -p "$tmp/work/$(dirname "$f")" && cp "$tmp/store-tree/$f" "$tmp/work/$f"
        done
        start_registry "$tmp/reg-http-$i"
        t0=$(now)
        (export XDG_CACHE_HOME="$tmp/cache"
            push "$tmp/work" "127.0.0.1:$REGISTRY_PORT/fcos" --builds-url "http://127.0.0.1:$ng_port/builds")
        t1=$(now)
        http_times+=("$(elapsed "$t0" "$t1")")
        http_ratios+=("$(python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "${http_times[-1]}" "${local_times[-1]}")")
        stop_registries
        rm -rf "$tmp/reg-http-$i"
    done
    kill "$ng_pid"
    wait "$ng_pid" 2>/dev/null || true
    ng_pid=""
    kill "$s3_pid"
    wait "$s3_pid" 2>/dev/null || true
    s3_pid=""
    store_bytes=$(find "$tmp/store-tree/builds/$ID" -name '*.ociarchive' -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
    rm -rf "$tmp/store-tree"
    row "build store: 4 arches x $STORE_MB MiB layers ($(mib "$store_bytes") MiB of archives), 2 tags" ""
    row "full push from local disk (s)" "$(median "${local_times[@]}")   [${local_times[*]}]"
    row "full push from S3, s3s-fs on loopback (s)" "$(median "${s3_times[@]}")   [${s3_times[*]}]"
    row "push from S3 / from local disk, median of each run's (target <= 1.15)" "$(python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$(median "${s3_ratios[@]}")")"
    row "bytes read from S3 / the archives' size (target <= 1.02)" "$(ratio "$s3_read" "$store_bytes")   [$s3_read / $store_bytes]"
    row "CPU the S3 server spent serving one push (s)" "$(median "${s3_cpu[@]}")   [${s3_cpu[*]}]"
    row "full push from HTTP, nginx on loopback (s)" "$(median "${http_times[@]}")   [${http_times[*]}]"
    row "push from HTTP / from local disk, median of each run's" "$(python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$(median "${http_ratios[@]}")")"
fi

# A proxy in front of the registry at $1 that holds every response $DELAY_MS ms; sets
# PROXY_PORT and PROXY_PID.
start_delay_proxy() {
    rm -f "$tmp/proxy-port"
    python3 bench/delay-proxy.py --upstream "127.0.0.1:$1" --delay-ms "$DELAY_MS" \
        --port-file "$tmp/proxy-port" &
    PROXY_PID=$!
    for _ in $(seq 1 100); do
        [ -s "$tmp/proxy-port" ] && break
        sleep 0.1
    done
    PROXY_PORT=$(cat "$tmp/proxy-port")
}

# Round trips on the critical path of a run of $@ against a far registry: wall / delay.
round_trips() { # workdir repo tag...
    local work=$1 repo=$2 t0 t1 tags=()
    shift 2
    for t in "$@"; do tags+=(--tag "$t"); done
    t0=$(now)
    (cd "$work" && "$reprise" -q push-container-manifest --repo "$repo" "${tags[@]}" \
        --artifact ostree --metajsonname base-oscontainer)
    t1=$(now)
    python3 -c "import sys; w = float(sys.argv[2]) - float(sys.argv[1]); \
print(f'{w / (float(sys.argv[3]) / 1000):.1f}   [{w:.3f} s at {sys.argv[3]} ms a request]')" \
        "$t0" "$t1" "$DELAY_MS"
}

if [ -z "$ONLY" ] || [ "$ONLY" = latency ]; then
    "$gen" --out "$tmp/lat-tree" --id "$ID" --arches "$ARCHES" --layers 8 --layer-size 65536 >/dev/null
    first_rts=()
    for i in $(seq 1 "$RUNS"); do
        rm -rf "$tmp/lat" && cp -r "$tmp/lat-tree" "$tmp/lat"
        start_registry "$tmp/reg-lat-$i"
        start_delay_proxy "$REGISTRY_PORT"
        far="127.0.0.1:$PROXY_PORT/fcos"
        first_rts+=("$(round_trips "$tmp/lat" "$far" stable 40)")
        first_req=$(registry_requests "$tmp/reg-lat-$i")
        if [ "$i" -lt "$RUNS" ]; then
            kill "$PROXY_PID"
            stop_registries
            rm -rf "$tmp/reg-lat-$i"
        fi
    done
    first_rt=$(printf '%s\n' "${first_rts[@]}" | sort -g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}')
    noop2_rt=$(round_trips "$tmp/lat" "$far" stable 40)
    round_trips "$tmp/lat" "$far" stable 40 t3 t4 t5 t6 t7 t8 >/dev/null
    noop8_rt=$(round_trips "$tmp/lat" "$far" stable 40 t3 t4 t5 t6 t7 t8)
    kill "$PROXY_PID"
    stop_registries
    rm -rf "$tmp/lat" "$tmp/lat-tree" "$tmp"/reg-lat-*
    row "latency: every request held $DELAY_MS ms (a registry far away)" ""
    row "round trips, first push 4 arches x 8 layers, 2 tags (target <= 15)" "$first_rt   $first_req requests; runs: $(printf '%s ' "${first_rts[@]}" | awk '{for (i = 1; i <= NF; i += 8) printf "%s ", $i}')"
    row "round trips, no-op, 2 tags (target <= 2)" "$noop2_rt"
    row "round trips, no-op, 8 tags (target <= 2)" "$noop8_rt"
fi

# A full push of the tree in $1 to a fresh registry: "seconds peak-RSS-MiB requests".
shape_push() {
    local reg="$tmp/reg-shape" t0 t1
    start_registry "$reg"
    t0=$(now)
    /usr/bin/time -f %M -o "$tmp/rss" \
        bash -c "cd '$1' && '$reprise' -q push-container-manifest \
            --repo 127.0.0.1:$REGISTRY_PORT/fcos --tag stable --tag 40 \
            --artifact ostree --metajsonname base-oscontainer"
    t1=$(now)
    echo "$(elapsed "$t0" "$t1") $(python3 -c "print(f'{$(cat "$tmp/rss") / 1024:.1f}')") $(registry_requests "$reg")"
    stop_registries
    rm -rf "$reg"
}

if [ -z "$ONLY" ] || [ "$ONLY" = shapes ]; then
    "$gen" --out "$tmp/l64" --id "$ID" --arches "$ARCHES" --encapsulated \
        --layer-size $((MB * 1048576)) >/dev/null
    read -r l64_s l64_rss l64_req <<<"$(shape_push "$tmp/l64")"
    l64_bytes=$(find "$tmp/l64/builds/$ID" -name '*.ociarchive' -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
    rm -rf "$tmp/l64"
    row "64 layers per arch, 4 arches ($(mib "$l64_bytes") MiB): full push (s)" "$l64_s   $l64_req requests"
    row "64 layers per arch: peak RSS (MiB, target <= 64)" "$l64_rss"
    "$gen" --out "$tmp/xl" --id "$ID" --arches "$ARCHES" --layer-size $((XL_MB * 1048576)) >/dev/null
    xl_bytes=$(find "$tmp/xl/builds/$ID" -name '*.ociarchive' -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
    read -r xl_s xl_rss xl_req <<<"$(shape_push "$tmp/xl")"
    rm -rf "$tmp/xl"
    row "$XL_MB MiB per arch, 4 arches ($(mib "$xl_bytes") MiB): full push (s)" "$xl_s   $(python3 -c "print(f'{$xl_bytes / 1048576 / $xl_s:.0f}')") MiB/s, $xl_req requests"
    row "$XL_MB MiB per arch: peak RSS (MiB, target <= 64)" "$xl_rss"
fi

echo
echo "reprise benchmark: loopback registry, $(nproc) cores; medians of $RUNS runs (no-op: $NOOP_RUNS)"
echo
printf '%s\n' "${rows[@]}"
