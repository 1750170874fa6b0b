#!/usr/bin/env bash
# Sustained load on the quota and replay records: three back-to-back runs (8 s each, 64
# connections, freshly signed bodies, replay protection on) of /get-folder-access, once
# with quotas in process (no Redis) and once with Redis. Every accepted signature stays
# recorded for its window, so the records grow run after run: the third run's rate shows
# whether their upkeep stays O(1). Writes the table between the markers in
# docs/benchmarks.md (or to stdout with --print).
#
#   scripts/bench-sustained.sh [--duration SECONDS] [--connections N] [--print]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-table.sh
source scripts/bench-table.sh

duration=8
connections=64
print_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --print) print_only=true; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

pids=()
work=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT

rows=""
for quota in memory redis; do
  work="$(mktemp -d)"
  pids=()
  export BENCH_QUOTA="$quota"
  # shellcheck source=scripts/bench-server.sh
  source scripts/bench-server.sh
  for run in 1 2 3; do
    out="$("$bin/s3-auth-loadgen" --keys 256 --validators 8 run --addr "127.0.0.1:$api_port" \
      --endpoint folder-access -c "$connections" -d "$duration" \
      --requests $(( 20000 * duration + 1000 )) --server-pid "$api_pid" --json)"
    echo "$out" >&2
    rows+="$(python3 - "$out" "$quota" "$run" <<'PY'
import json, sys
r, quota, run = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
note = " (bodies ran out)" if r["ran_out_of_bodies"] else ""
print(f"| {quota} | {run} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']}{note} | {r.get('server_rss_after_kib', 0) / 1024:.1f} |")
PY
)"$'\n'
  done
  cleanup
  work=""
  pids=()
done

cpu="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
table="Run on $(date -u +%Y-%m-%d) · $(nproc) cores ($cpu) · load generator on the same machine · release build.

Command: \`scripts/bench-sustained.sh --duration $duration --connections $connections\`

| quotas | run | req/s | p50 ms | p99 ms | errors | server RSS MiB after |
| --- | --- | --- | --- | --- | --- | --- |
${rows}"

if $print_only; then
  echo "$table"
else
  bench_table bench-sustained.sh "Sustained load on the in-process records (\`scripts/bench-sustained.sh\`)" "$table"
fi
