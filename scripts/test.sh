#!/usr/bin/env bash
# Runs castgate's whole test suite on a fresh Debian machine: installs the
# real programs the end-to-end tests use (apt-get, when missing), then runs
# formatting, lint and every test target (unit, property, integration,
# end-to-end against ffmpeg, nginx-rtmp and srt-live-transmit, benchmarks in
# test mode).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v rtmpdump >/dev/null 2>&1 || missing+=(rtmpdump)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Relay destinations in the end-to-end tests.
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
command -v srt-live-transmit >/dev/null 2>&1 || missing+=(srt-tools)
# The Docker image is built and its compose service run (e2e/docker_run.rs,
# e2e/docker.rs): Debian's engine and client (/usr/bin/docker: a newer
# client elsewhere on PATH needs the buildx plugin to build), docker-compose,
# debootstrap for stand-in base images when Docker Hub cannot be reached,
# curl for the HEALTHCHECK run outside the container.
{ [ -x /usr/bin/docker ] && command -v dockerd >/dev/null 2>&1; } || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust (https://rustup.rs)"; exit 1; }

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
