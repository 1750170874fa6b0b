#!/usr/bin/env bash
# Fuzzes one cargo-fuzz target (fuzz/fuzz_targets/) or all of them for a time each:
#
#   scripts/fuzz.sh <target|all> [seconds]     (default 60 s)
#
# Installs cargo-fuzz if missing. Runs on stable Rust: cargo-fuzz needs nightly compiler
# flags (sanitizers, sancov), which RUSTC_BOOTSTRAP=1 lets stable accept. The build goes
# to its own target directory, FUZZ_TARGET_DIR (default ~/.cache/s3-auth-api-fuzz-target),
# as it is instrumented. The committed seeds in fuzz/corpus/<target> are read; what the
# fuzzer finds goes to the working corpus FUZZ_CORPUS_DIR/<target> (default in the target
# directory), so runs build on each other without touching the checkout. A crash, panic,
# leak or timeout is saved under fuzz/artifacts/<target>/ and makes this script fail.
#
# Environment: FUZZ_SANITIZER (address, the default, or none: faster, for long runs),
# FUZZ_TIMEOUT (seconds one input may take, default 20), FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 <target|all> [seconds]" >&2
  echo "targets: $(targets | tr '\n' ' ')" >&2
  exit 2
}

targets() {
  local f
  for f in fuzz/fuzz_targets/*.rs; do
    basename "$f" .rs
  done
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
target="$1"
seconds="${2:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then usage; fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz not found; installing it (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/s3-auth-api-fuzz-target}"
export CARGO_INCREMENTAL=0
corpus_root="$(realpath -m "${FUZZ_CORPUS_DIR:-$CARGO_TARGET_DIR/corpus}")"
sanitizer="${FUZZ_SANITIZER:-address}"
timeout="${FUZZ_TIMEOUT:-20}"
read -r -a extra <<<"${FUZZ_ARGS:-}"

run() {
  local name="$1"
  [ -f "fuzz/fuzz_targets/$name.rs" ] || { echo "no fuzz target $name" >&2; usage; }
  mkdir -p "$corpus_root/$name" "fuzz/corpus/$name"
  echo "== fuzz $name for ${seconds}s (sanitizer $sanitizer)"
  # cargo fuzz runs in fuzz/: the working corpus path is absolute, the seeds relative.
  (cd fuzz && cargo fuzz run --sanitizer "$sanitizer" "$name" \
    "$corpus_root/$name" "corpus/$name" -- \
    -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 "${extra[@]}")
}

if [ "$target" = all ]; then
  # Build every target first, so a compile error shows once and the timed runs only fuzz.
  (cd fuzz && cargo fuzz build --sanitizer "$sanitizer")
  mapfile -t names < <(targets)
  failed=()
  for name in "${names[@]}"; do
    run "$name" || failed+=("$name")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
  fi
else
  run "$target"
fi
