#!/usr/bin/env bash
# Soak: the release build under a steady paced load for a long time, watching for memory
# growth, errors and latency drift. Starts a real redis-server and the service on loopback
# (as scripts/bench.sh does), runs a warm-up, then drives the service with the load
# generator at --rate for --duration seconds, sampling the server's RSS every 10 s.
#
#   scripts/soak.sh [--duration SECONDS] [--rate REQ_PER_S] [--endpoint NAME] [--connections N]
#
# Defaults: 600 s at 3000 req/s (about half the measured peak) on folder-access, 32
# connections. `scripts/soak.sh --duration 60` is the smoke run.
#
# The load generator pre-signs one body per request (replay protection stays on: each
# signature is accepted once), which for 600 s at 3000 req/s would be 1.8 M bodies held in
# memory. So the soak runs as consecutive load-generator runs of at most 60 s, each with
# freshly signed bodies, and stitches their 10 s intervals together; between runs there is
# a pause of about a second or two while the next bodies are signed (printed as `gap`).
# SOAK_SEGMENT_SECONDS changes the 60 s.
#
# Fails (exit 1) when the RSS drifts by more than 5 % from the first sample under load to
# the last, beyond what the in-process replay records are meant to hold (every accepted
# signature is kept for its window, at most 1,000,000 records of about 45 bytes: the
# allowance is 90 bytes per request of the soak, twice that, for a table's spare capacity),
# when any request fails (non-2xx or connection error, warm-up included), or when
# a run stops early for lack of bodies.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=600
rate=3000
endpoint=folder-access
connections=32
segment="${SOAK_SEGMENT_SECONDS:-60}"
warmup=10
sample_every=10
max_drift_pct=5

usage() {
  echo "usage: $0 [--duration SECONDS] [--rate REQ_PER_S] [--endpoint NAME] [--connections N]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="${2:-}"; shift 2 || usage ;;
    --rate) rate="${2:-}"; shift 2 || usage ;;
    --endpoint) endpoint="${2:-}"; shift 2 || usage ;;
    --connections) connections="${2:-}"; shift 2 || usage ;;
    -h|--help) usage ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
for v in "$duration" "$rate" "$connections" "$segment"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "expected a positive integer, got '$v'" >&2; usage; }
done
[ "$duration" -ge 20 ] || { echo "--duration must be at least 20 s (two RSS samples)" >&2; exit 2; }

work="$(mktemp -d)"
pids=()
cleanup() {
  touch "$work/stop" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ns() { date +%s%N; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# shellcheck source=scripts/bench-server.sh
source scripts/bench-server.sh

# One load-generator run of $1 seconds into $2 (JSON), with enough fresh bodies for it.
run_load() {
  local secs="$1" out="$2"
  "$bin/s3-auth-loadgen" --keys 256 --validators 8 run --addr "127.0.0.1:$api_port" \
    --endpoint "$endpoint" -c "$connections" -d "$secs" --rate "$rate" --interval "$sample_every" \
    --requests $(( rate * secs + rate )) --server-pid "$api_pid" --json >"$out"
}

echo "soak: $endpoint at $rate req/s over $connections connections for $duration s" \
  "(runs of at most $segment s, freshly signed bodies, replay protection on; warm-up $warmup s)"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server pid $api_pid, RSS idle $idle_rss KiB"
run_load "$warmup" "$work/warmup.json"

# RSS sampler: one sample every $sample_every s from the start of the soak proper.
soak_start="$(now_ns)"
(
  while [ ! -e "$work/stop" ]; do
    sleep "$sample_every"
    [ -e "$work/stop" ] && break
    kill -0 "$api_pid" 2>/dev/null || break
    echo "$(( ($(now_ns) - soak_start) / 1000000 )) $(rss_kib "$api_pid")"
  done
) >"$work/rss.log" &
sampler=$!
pids+=("$sampler")

remaining="$duration"
i=0
: >"$work/segments"
while [ "$remaining" -gt 0 ]; do
  secs=$(( remaining < segment ? remaining : segment ))
  run_load "$secs" "$work/seg-$i.json"
  echo "$i $(( ($(now_ns) - soak_start) / 1000000 )) $secs" >>"$work/segments"
  remaining=$(( remaining - secs ))
  i=$(( i + 1 ))
  echo "  run $i done: $(( duration - remaining ))/$duration s" >&2
done
touch "$work/stop"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
kill -0 "$api_pid" 2>/dev/null || { echo "the service died during the soak:" >&2; cat "$work/api.log" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$api_port/healthcheck" >"$work/health.json" || echo '{}' >"$work/health.json"

python3 - "$work" "$rate" "$max_drift_pct" "$sample_every" <<'PY'
import json, os, sys

work, rate, max_drift, every = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
warm = json.load(open(os.path.join(work, "warmup.json")))
segments = []
for line in open(os.path.join(work, "segments")):
    i, end_ms, secs = line.split()
    report = json.load(open(os.path.join(work, f"seg-{i}.json")))
    # The run's clock starts after its bodies are signed: place it by when it ended.
    segments.append((int(end_ms) / 1000 - report["seconds"], int(secs), report))
rss = [tuple(map(int, l.split())) for l in open(os.path.join(work, "rss.log")) if l.strip()]
health = json.load(open(os.path.join(work, "health.json")))

failures = []
print()
print("   t (s)    req/s   p99 ms  errors   RSS KiB")
rows = []
for start, secs, r in segments:
    for s in r.get("series", []):
        # The last bucket holds only responses that arrived after the run's deadline.
        tail = s["t_s"] - every >= secs - 1e-6
        t = start + (r["seconds"] if tail else s["t_s"])
        rows.append((t, s["rps"], s["p99_ms"], s["errors"], tail))
for t, rps, p99, errors, tail in rows:
    near = min(rss, key=lambda x: abs(x[0] / 1000 - t), default=None)
    rss_text = f"{near[1]:>9}" if near and abs(near[0] / 1000 - t) <= 5 else " " * 9
    rps_text = "  (tail)" if tail else f"{rps:>8.0f}"
    print(f"{t:>8.1f} {rps_text} {p99:>8.2f} {errors:>7} {rss_text}")

gaps = []
for (s0, secs0, r0), (s1, _, _) in zip(segments, segments[1:]):
    gaps.append(s1 - (s0 + r0["seconds"]))
requests = sum(r["requests"] for _, _, r in segments)
errors = sum(r["errors"] for _, _, r in segments)
io_errors = sum(r["io_errors"] for _, _, r in segments)
statuses = {}
for _, _, r in segments:
    for k, v in r["statuses"].items():
        statuses[k] = statuses.get(k, 0) + v
loaded = sum(r["seconds"] for _, _, r in segments)
p99s = [p99 for _, _, p99, _, tail in rows if not tail]
p99_all = [r["p99_ms"] for _, _, r in segments]

print()
print(f"requests: {requests} in {loaded:.0f} s under load ({requests / max(loaded, 1e-9):.0f} req/s achieved, target {rate:.0f}); statuses {statuses}")
if gaps:
    print(f"gaps between runs (signing the next bodies): {min(gaps):.1f} to {max(gaps):.1f} s")
print(f"errors: {errors} (connection errors {io_errors}); warm-up errors {warm['errors']}")
if p99s:
    print(f"p99 per 10 s interval: {min(p99s):.2f} to {max(p99s):.2f} ms (median {sorted(p99s)[len(p99s) // 2]:.2f} ms); per run: {min(p99_all):.2f} to {max(p99_all):.2f} ms")
print(f"max latency: {max(r['max_ms'] for _, _, r in segments):.2f} ms")
if len(rss) >= 2:
    start, end = rss[0][1], rss[-1][1]
    drift = (end - start) / start * 100
    # Replay records kept on purpose: every accepted signature, for its window.
    records_kib = min(requests + warm["requests"], 1_000_000) * 90 / 1024
    net = (end - min(end - start, records_kib) - start) if end > start else end - start
    net_drift = net / start * 100
    print(f"RSS: start {start} KiB (t={rss[0][0] / 1000:.0f} s), end {end} KiB (t={rss[-1][0] / 1000:.0f} s), drift {drift:+.2f} %; min {min(x[1] for x in rss)}, max {max(x[1] for x in rss)} KiB over {len(rss)} samples")
    print(f"replay records allowance: {records_kib:.0f} KiB; drift beyond it {net_drift:+.2f} %")
    if abs(net_drift) > max_drift:
        failures.append(f"RSS drift {net_drift:+.2f} % beyond the replay records exceeds {max_drift:.0f} %")
else:
    failures.append("fewer than two RSS samples")
stats = health.get("stats", {})
print(f"server /healthcheck: status {health.get('status')} (s3_ok {health.get('s3_ok')}: no S3 runs in the soak, presigning is local; redis_ok {health.get('redis_ok')}), total_requests {stats.get('total_requests')}, total_errors {stats.get('total_errors')}")

if errors or warm["errors"]:
    failures.append(f"{errors + warm['errors']} failed requests")
if any(r["ran_out_of_bodies"] for _, _, r in segments) or warm["ran_out_of_bodies"]:
    failures.append("a run ran out of pre-signed bodies")
if requests < 0.9 * rate * loaded:
    print(f"WARNING: the achieved rate is below 90 % of {rate:.0f} req/s (machine busy?)")
if failures:
    print("SOAK FAILED: " + "; ".join(failures))
    sys.exit(1)
print("SOAK PASSED")
PY
