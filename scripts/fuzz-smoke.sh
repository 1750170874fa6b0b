#!/usr/bin/env bash
# A short fuzzing run of every cargo-fuzz target, for the normal test run:
# FUZZ_SMOKE_SECONDS (default 30) each, through scripts/fuzz.sh. Prints one summary line
# per target (runs, executions per second, coverage) and fails if any target found a
# crash, a panic, a leak or a timeout (the input is then in fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SMOKE_SECONDS:-30}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

mapfile -t names < <(for f in fuzz/fuzz_targets/*.rs; do basename "$f" .rs; done)
summaries=()
passed=0
failed=0
for name in "${names[@]}"; do
  log="$logs/$name.log"
  if bash scripts/fuzz.sh "$name" "$seconds" >"$log" 2>&1; then
    # libFuzzer's last status line: "#RUNS DONE cov: N ft: N corp: N/SIZE ... exec/s: N rss: NMb"
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
    summary="$(awk '{
        runs = substr($1, 2)
        for (i = 2; i < NF; i++) {
          if ($i == "cov:") cov = $(i + 1)
          if ($i == "ft:") ft = $(i + 1)
          if ($i == "corp:") corp = $(i + 1)
          if ($i == "exec/s:") eps = $(i + 1)
          if ($i == "rss:") rss = $(i + 1)
        }
        printf "ok, %s runs, %s exec/s, cov %s, ft %s, corpus %s, rss %s", runs, eps, cov, ft, corp, rss
      }' <<<"$done_line")"
    [ -n "$done_line" ] || summary="ok (no final libFuzzer status line)"
    passed=$((passed + 1))
  else
    artifact="$(grep -oE 'fuzz/artifacts/[^ ]+' "$log" | tail -n 1 || true)"
    summary="FAILED${artifact:+, input saved in $artifact}"
    failed=$((failed + 1))
    echo "---- fuzz $name output (last 60 lines) ----"
    tail -n 60 "$log"
  fi
  summaries+=("fuzz $name (${seconds}s): $summary")
  echo "${summaries[-1]}"
done

echo "---- fuzz smoke summary ----"
printf '%s\n' "${summaries[@]}"
echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
