# Sourced by demo.sh and bench/run.sh: start and stop throwaway Docker Distribution registries
# on 127.0.0.1, each with its own storage under a directory the caller owns.
#
#   start_registry DIR   sets REGISTRY_PORT and REGISTRY_PID; the access log goes to DIR/log
#   stop_registries      kills every registry started here

_registry_pids=()

start_registry() {
    local dir=$1 port="" i
    mkdir -p "$dir/storage"
    # A free port on loopback: try random ones until nothing answers.
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            break
        fi
    done
    cat > "$dir/registry.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: reprise-throwaway
YAML
    docker-registry serve "$dir/registry.yml" >"$dir/log" 2>&1 &
    REGISTRY_PID=$!
    _registry_pids+=("$REGISTRY_PID")
    for i in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
            REGISTRY_PORT=$port
            return 0
        fi
        if [ "$i" -eq 100 ]; then
            echo "registry did not start; its log:" >&2
            cat "$dir/log" >&2
            return 1
        fi
        sleep 0.1
    done
}

stop_registries() {
    local pid
    for pid in "${_registry_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    _registry_pids=()
}

# Requests the registry in DIR has answered so far (its access log lines).
registry_requests() {
    grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' "$1/log" || true
}
