#!/usr/bin/env bash
# Runs every check and test of the project. Installs what the tests need (redis-server,
# chromium, Python tools, linters).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found; installing it (the integration tests run a real Redis)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing" >&2; exit 1; }
# redis-cli (Debian's redis-tools, a dependency of redis-server) makes the tests' six-node
# Redis Cluster with `redis-cli --cluster create`.
command -v redis-cli >/dev/null 2>&1 || { echo "redis-cli is missing (apt-get install redis-tools)" >&2; exit 1; }

if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  echo "chromium not found; installing it (a test renders /docs in headless Chromium)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

# Keep build artefacts outside the checkout so fresh clones rebuild quickly.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/s3-auth-api-target}"
# One-shot builds gain little from incremental caches, which are large.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# Deployment files: cfn-lint, checkov, hadolint, shellcheck, compose and task variables.
bash scripts/lint-infra.sh
# The release binary, built by the Dockerfile's own build command; a test starts it.
bash scripts/build-release.sh
export S3_AUTH_API_RELEASE_BIN="$CARGO_TARGET_DIR/release/s3-auth-api"
# Python tools the tests use: the clients' libraries (tests/python) and moto, a local AWS
# API emulator for the Secrets Manager tests.
venv="${S3_AUTH_API_VENV:-$HOME/.cache/s3-auth-api-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
export MOTO_SERVER_BIN="$venv/bin/moto_server"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --locked --all-targets 2>&1 | tee "$log"

# Compatibility with the Python ecosystem: the real clients' libraries against `dev`.
S3_AUTH_API_BIN="$CARGO_TARGET_DIR/debug/s3-auth-api" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python 2>&1 | tee -a "$log"

# Fuzzing smoke: every cargo-fuzz target for FUZZ_SMOKE_SECONDS (30 s) from the seeds.
bash scripts/fuzz-smoke.sh
# Soak smoke: one minute at a steady rate; fails on errors or memory drift over 5 %.
bash scripts/soak.sh --duration 60

# One closing line with the totals of every test binary and pytest.
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
  /^[0-9]+ (passed|failed)/ || /^=+ [0-9]+ (passed|failed)/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^skipped/) s += $i } }
  END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s; if (p == 0 || f > 0) exit 1 }' "$log"
