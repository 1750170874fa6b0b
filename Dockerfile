# syntax=docker/dockerfile:1
#
# The s3-auth-api service image.
#
#   docker build -t s3-auth-api .
#   docker run --rm -p 8000:8000 -e S3_BUCKET=... s3-auth-api          # `serve`
#   docker run --rm s3-auth-api client --help                          # the CLI client
#
# Configured only by environment variables (README.md, "Configuration"). The image holds
# no configuration and no .env file.

############################################################################## build
# The build stage runs on the builder's own platform ($BUILDPLATFORM) and cross-compiles
# for the image's ($TARGETPLATFORM: linux/arm64 for ARM64 tasks, linux/amd64 for X86_64),
# instead of running the whole compiler under QEMU emulation. The runtime stage below is
# the target platform's.
#   docker buildx build --platform linux/arm64 .     (aws/deploy.sh: --platform-for ARM64)
FROM --platform=$BUILDPLATFORM rust:1.95-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TARGETARCH
WORKDIR /src

# The Rust target of $TARGETARCH, its standard library, and a C cross compiler and libc
# for it (ring and aws-lc-sys compile C) when it is not the builder's own architecture.
# The linker and C compiler are named per target, so the same settings serve a native
# build too: Debian's gcc provides <triple>-gcc for its own architecture.
# CARGO_BUILD_TARGET makes `cargo build` (scripts/build-release.sh, unchanged) build for
# it, into target/<triple>/release.
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc
# $cross is split into package names on purpose (SC2086).
# hadolint ignore=DL3008,SC2086
RUN case "$TARGETARCH" in \
      arm64) triple=aarch64-unknown-linux-gnu; cross="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
      amd64) triple=x86_64-unknown-linux-gnu; cross="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
      *) echo "unsupported TARGETARCH: $TARGETARCH (arm64 or amd64)" >&2; exit 1 ;; \
    esac \
 && if [ "$(dpkg --print-architecture)" != "$TARGETARCH" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends $cross \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && rustup target add "$triple" \
 && echo "$triple" > /rust-target

# 1. Dependencies, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
#    Cargo needs every target the manifest declares to exist, so the library, the binary
#    and each [[bench]] get an empty stub (a [[test]] or [[example]] declared in
#    Cargo.toml would need one too), then the same build command as below runs.
#    Binaries under src/bin/ are found by Cargo itself and need nothing here.
COPY Cargo.toml Cargo.lock ./
COPY scripts/build-release.sh scripts/build-release.sh
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && awk '/^\[/ { bench = ($0 == "[[bench]]") } bench && /^name *=/ { gsub(/^name *= *"|" *$/, ""); print }' Cargo.toml \
    | while read -r name; do echo 'fn main() {}' > "benches/${name}.rs"; done \
 && CARGO_BUILD_TARGET="$(cat /rust-target)" bash scripts/build-release.sh \
 && rm -rf src benches

# 2. The service itself: the same command (scripts/build-release.sh, i.e.
#    `cargo build --release --locked --bin s3-auth-api`, for the target) over the real
#    sources.
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs \
 && triple="$(cat /rust-target)" \
 && CARGO_BUILD_TARGET="$triple" bash scripts/build-release.sh \
 && install -m 0755 "target/$triple/release/s3-auth-api" /usr/local/bin/s3-auth-api

############################################################################ runtime
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to AWS (S3, Secrets Manager), Redis (rediss://) and the chain.
# curl: the HEALTHCHECK below (and the ECS container health check) only; nothing else
# in the image uses it. Debian package versions are not pinned: the bookworm-slim base
# already fixes the release, and pinned versions disappear from the mirror with each
# security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin app

COPY --from=build /usr/local/bin/s3-auth-api /usr/local/bin/s3-auth-api

# An empty, read-only working directory: `serve` reads ./.env when present, and there
# must be none in the image. On ECS the metagraph snapshot is an S3 object
# (METAGRAPH_SNAPSHOT_PATH=s3://<bucket>/_service/metagraph-snapshot.json). A local
# snapshot goes under /tmp, the only writable place for uid 10001: it is declared here
# (mode 1777, as in the base image) so that it stays so, and on ECS it is task storage
# under the read-only root filesystem.
RUN install -d -m 1777 /tmp
WORKDIR /app
USER 10001:10001

EXPOSE 8000

# Liveness only (/healthz answers 200 while the process serves HTTP, about 1 s after
# start). Readiness is /readyz, and the load balancer's check is /healthcheck.
# `s3-auth-api selftest` (deploy.sh runs it as a one-off ECS task) checks real S3 access.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${PORT:-8000}/healthz\" || exit 1"]

# Exec form: the service is PID 1 and receives SIGTERM itself, then drains in-flight
# requests for SHUTDOWN_GRACE_SECONDS (25 s, under ECS's 30 s stopTimeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/s3-auth-api"]
CMD ["serve"]
