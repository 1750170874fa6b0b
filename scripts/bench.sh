#!/usr/bin/env bash
# Load benchmark: release build, a real redis-server and the service on loopback, then the
# load generator (s3-auth-loadgen) against each endpoint at several concurrencies. Writes
# the table between the markers in docs/benchmarks.md (or to stdout with --print).
# BENCH_QUOTA=cluster runs it against a six-node Redis Cluster instead (its own table).
#
#   [BENCH_QUOTA=cluster] scripts/bench.sh [--duration SECONDS] [--concurrency "1 16 64"] [--print]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-table.sh
source scripts/bench-table.sh

duration=20
concurrency="1 16 64"
print_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --print) print_only=true; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/bench-server.sh
source scripts/bench-server.sh

rows=""
for endpoint in folder-access folder-access-tao validator-access miner-specific-access file-presigned-urls healthz; do
  for c in $concurrency; do
    # Enough signed bodies for 20k req/s; the run stops early (and says so) if they run out.
    requests=$(( 20000 * ${duration%.*} + 1000 ))
    out="$("$bin/s3-auth-loadgen" --keys 256 --validators 8 run --addr "127.0.0.1:$api_port" \
      --endpoint "$endpoint" -c "$c" -d "$duration" --requests "$requests" --server-pid "$api_pid" --json)"
    echo "$out" >&2
    rows+="$(python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
path = {"folder-access": "/get-folder-access", "folder-access-tao": "/get-folder-access (Tao v2 headers)", "validator-access": "/get-validator-access",
        "miner-specific-access": "/get-miner-specific-access",
        "file-presigned-urls": "/get-file-presigned-urls (10 keys)", "healthz": "/healthz"}[r["endpoint"]]
errors = r["errors"]
statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
note = " (bodies ran out)" if r["ran_out_of_bodies"] else ""
print(f"| `{path}` | {r['connections']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {errors} ({statuses}){note} | {r.get('server_rss_after_kib', 0) / 1024:.1f} / {r.get('server_rss_peak_kib', 0) / 1024:.1f} |")
PY
)"$'\n'
  done
done
final_rss="$(awk '/VmRSS/ {print $2}' "/proc/$api_pid/status")"
peak_rss="$(awk '/VmHWM/ {print $2}' "/proc/$api_pid/status")"

cpu="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
if [ "${BENCH_QUOTA:-redis}" = cluster ]; then
  redis_desc="a six-node Redis Cluster (three primaries, three replicas) on loopback"
  marker=bench.sh-cluster
  heading="Load on a Redis Cluster (\`BENCH_QUOTA=cluster scripts/bench.sh\`)"
  prefix="BENCH_QUOTA=cluster "
else
  redis_desc="Redis on loopback"
  marker=bench.sh
  heading="Load (\`scripts/bench.sh\`)"
  prefix=""
fi
table="Run on $(date -u +%Y-%m-%d) · $(nproc) cores ($cpu) · load generator on the same machine · $redis_desc · release build.

Command: \`${prefix}scripts/bench.sh --duration $duration --concurrency \"$concurrency\"\`

| endpoint | connections | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors (statuses) | server RSS MiB (now / peak) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows}
Server: ready in ${ready_ms} ms from a metagraph file (256 uids); RSS idle $((idle_rss / 1024)) MiB, after all runs $((final_rss / 1024)) MiB, peak $((peak_rss / 1024)) MiB."

if $print_only; then
  echo "$table"
else
  bench_table "$marker" "$heading" "$table"
fi
