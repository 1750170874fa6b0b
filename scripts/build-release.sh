#!/usr/bin/env bash
# Builds the release binary of the service. The Dockerfile's build stage runs this very
# script (twice: once over stub sources to cache the dependencies, once over the real
# ones), so CI can build the same artefact without Docker:
#
#   scripts/build-release.sh    # -> ${CARGO_TARGET_DIR:-target}/release/s3-auth-api
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bin s3-auth-api
