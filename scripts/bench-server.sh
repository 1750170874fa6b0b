# shellcheck shell=bash
# Sourced by scripts/bench.sh, scripts/soak.sh and scripts/bench-sustained.sh: builds the
# release binaries, then starts a redis-server (BENCH_QUOTA=redis, the default), a six-node
# Redis Cluster (BENCH_QUOTA=cluster: three primaries, three replicas, made with
# `redis-cli --cluster create`) or no Redis (BENCH_QUOTA=memory), and the service (on
# loopback, with a metagraph of the load generator's 256 keys and limits out of reach),
# and waits until /readyz answers.
#
# Expects `work` (a scratch directory) and `pids` (an array the caller's cleanup kills).
# Sets `bin`, `api_port`, `api_pid`, `ready_ms` and `idle_rss` (KiB, one second after ready).
# shellcheck disable=SC2154  # work and pids come from the caller
: "${work:?bench-server.sh needs work set by the caller}"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/s3-auth-api-target}"
for tool in redis-server python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is required (e.g. apt-get install redis-server python3 curl)" >&2; exit 1; }
done
cargo build --release --locked --bin s3-auth-api --bin s3-auth-loadgen
bin="$CARGO_TARGET_DIR/release"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_node() { # PORT [ARGS...]: a redis-server on loopback, killed by the caller's cleanup
  local port="$1"
  shift
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --dir "$work" "$@" >"$work/redis-$port.log" 2>&1 &
  pids+=($!)
  local deadline=$(( $(date +%s) + 10 ))
  until redis-cli -p "$port" ping >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "redis-server on $port did not start:" >&2; cat "$work/redis-$port.log" >&2; exit 1; }
    sleep 0.05
  done
}

redis_env=()
case "${BENCH_QUOTA:-redis}" in
  memory) ;; # quotas and replay records in process
  redis)
    redis_port="$(free_port)"
    redis_node "$redis_port"
    redis_env=(REDIS_URL="redis://127.0.0.1:$redis_port/0")
    ;;
  cluster)
    nodes=()
    for _ in 1 2 3 4 5 6; do
      # At most 55535: a node also listens on port + 10000 (the cluster bus).
      port="$(free_port)"
      while [ "$port" -gt 55535 ]; do port="$(free_port)"; done
      redis_node "$port" --cluster-enabled yes --cluster-config-file "$work/nodes-$port.conf"
      nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$work/cluster.log"
    deadline=$(( $(date +%s) + 30 ))
    until redis-cli -p "${nodes[0]#*:}" cluster info | grep -q 'cluster_state:ok'; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "the cluster did not reach cluster_state:ok in 30 s" >&2; exit 1; }
      sleep 0.1
    done
    redis_env=(REDIS_URL="redis://${nodes[0]}")
    ;;
  *) echo "BENCH_QUOTA must be redis, cluster or memory" >&2; exit 2 ;;
esac
"$bin/s3-auth-loadgen" --keys 256 --validators 8 metagraph --out "$work/metagraph.json"

api_port="$(free_port)"
start_ns="$(date +%s%N)"
# Tao v2 bodies are signed before the run starts, so the skew must cover the run.
env -i PATH="$PATH" HOME="$HOME" \
  HOST=127.0.0.1 PORT="$api_port" S3_BUCKET=bench-bucket S3_REGION=us-east-2 \
  S3_ENDPOINT_URL="http://127.0.0.1:9" AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=benchsecret \
  METAGRAPH_FILE="$work/metagraph.json" "${redis_env[@]}" \
  DAILY_LIMIT_PER_MINER=1000000000 DAILY_LIMIT_PER_VALIDATOR=1000000000 TOTAL_DAILY_LIMIT=1000000000000 \
  MAX_CONCURRENT_REQUESTS=4096 LOG_LEVEL=warn \
  TAO_CLOCK_SKEW_MS=300000 \
  "$bin/s3-auth-api" serve >"$work/api.log" 2>&1 &
api_pid=$!
pids+=("$api_pid")
ready_deadline=$(( $(date +%s) + 30 ))
until curl -fsS "http://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; do
  kill -0 "$api_pid" 2>/dev/null || { echo "the service exited:" >&2; cat "$work/api.log" >&2; exit 1; }
  [ "$(date +%s)" -lt "$ready_deadline" ] || { echo "the service was not ready within 30 s" >&2; exit 1; }
  sleep 0.01
done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
sleep 1
idle_rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$api_pid/status")"
export bin api_port api_pid ready_ms idle_rss
