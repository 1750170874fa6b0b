#!/usr/bin/env bash
# Memory under a flood of stalled requests: starts the release binary, opens N connections
# that each send part of a request and stall, and reports the server's resident size
# (VmRSS of /proc/<pid>/status) at its peak and 5 s after the clients close, per round.
#
#   scripts/flood-rss.sh [--bin PATH] [--kind body|head] [--connections N] [--rounds R]
#                        [--size BYTES] [VAR=VALUE ...]
#
#   --kind body   POST with Content-Length 262144, then --size bytes of body (default 262000)
#   --kind head   a request head of --size bytes that never ends (default 400000)
#
# VAR=VALUE pairs are added to the server's environment (e.g. REQUEST_BUFFER_BUDGET_MB=16).
# MAX_CONNECTIONS is the template's 2000 unless given. Without --bin the release binary is
# built with scripts/build-release.sh. Prints one line per round and a closing summary.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="" kind="body" connections=2000 rounds=1 size=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --kind) kind="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    *=*) extra+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$kind" in
  body) size="${size:-262000}" ;;
  head) size="${size:-400000}" ;;
  *) echo "--kind is body or head" >&2; exit 2 ;;
esac
if [ -z "$bin" ]; then
  bash scripts/build-release.sh >&2
  bin="${CARGO_TARGET_DIR:-target}/release/s3-auth-api"
fi
# Both ends of every connection are in this machine's process table.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((connections + 200)) ]; then
  echo "the open-files limit $(ulimit -n) is below $((connections + 200))" >&2
  exit 1
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
dir="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
env -i PATH="$PATH" HOST=127.0.0.1 PORT="$port" S3_BUCKET=test-bucket \
  S3_ENDPOINT_URL=http://127.0.0.1:9 AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY=test-secret \
  METAGRAPH_FILE="$PWD/examples/metagraph.sample.json" LOG_LEVEL=warn MAX_CONNECTIONS=2000 \
  "${extra[@]}" "$bin" serve >"$dir/server.log" 2>&1 &
server_pid=$!

python3 - "$server_pid" "$port" "$kind" "$connections" "$rounds" "$size" <<'PY'
import asyncio
import sys
import time

pid, port, kind, n, rounds, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:])


def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS")


def payload():
    if kind == "body":
        head = (f"POST /get-folder-access HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {256 * 1024}\r\n\r\n").encode()
        return head + b"{" + b" " * (size - 1)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
    return head + b"a" * (size - len(head))


async def ready():
    for _ in range(500):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await r.read()
            w.close()
            if answer.startswith(b"HTTP/1.1 200"):
                return
        except OSError:
            pass
        await asyncio.sleep(0.02)
    raise SystemExit("the server did not answer /healthz")


async def stall(data, opened, writers):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    writers.append(w)
    opened.append(1)
    try:
        w.write(data)
        await w.drain()
    except OSError:
        pass


async def main():
    await ready()
    await asyncio.sleep(1)
    idle = rss_mib()
    print(f"kind={kind} connections={n} size={size} bytes; idle RSS {idle:.1f} MiB")
    data = payload()
    for round_ in range(1, rounds + 1):
        writers, opened = [], []
        peak = rss_mib()
        tasks = [asyncio.create_task(stall(data, opened, writers)) for _ in range(n)]
        started = time.monotonic()
        while time.monotonic() - started < 8:
            peak = max(peak, rss_mib())
            if all(t.done() for t in tasks) and time.monotonic() - started > 3:
                break
            await asyncio.sleep(0.05)
        for _ in range(20):
            peak = max(peak, rss_mib())
            await asyncio.sleep(0.05)
        for w in writers:
            w.transport.abort()
        await asyncio.gather(*tasks, return_exceptions=True)
        closed = time.monotonic()
        while time.monotonic() - closed < 5:
            await asyncio.sleep(0.1)
        after = rss_mib()
        print(f"round {round_}: {len(opened)} connections, peak {peak:.1f} MiB, "
              f"{after:.1f} MiB 5 s after they closed")


asyncio.run(main())
PY
