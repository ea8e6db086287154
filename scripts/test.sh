#!/usr/bin/env bash
# Runs castgate's whole test suite on a Debian machine: installs the real
# programs the end-to-end tests use and libsrt to build with (apt-get, npm,
# and FFmpeg 9 from PyPI into a venv under ~/.cache/castgate),
# then runs formatting,
# lint and every test target (unit, property, integration, end-to-end against
# ffmpeg, rtmpdump, GStreamer, nginx-rtmp, srt-live-transmit, Chromium and
# Docker, benchmarks in test mode), plus a check that the fuzz crate builds.
#
#   scripts/test.sh           # here, with whatever caches this machine has
#   scripts/test.sh --fresh   # as a new machine would: a clean clone of HEAD,
#                             # an empty HOME, CARGO_HOME and target/
#
# Every step runs even when an earlier one fails (cargo test with
# --no-fail-fast); the script exits non-zero at the end if any step failed,
# listing which.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fresh" ]; then
  shift
  # A clean clone of what is committed (untracked and ignored files, such as
  # node_modules or a warm target/, are not there), run with empty caches.
  # The toolchain itself stays: rustup's home is kept, as a new machine has
  # its toolchain installed.
  fresh=$(mktemp -d /tmp/castgate-fresh.XXXXXX)
  echo "fresh run in $fresh (clone of $(git rev-parse --short HEAD))"
  git clone -q --no-hardlinks "$(pwd)" "$fresh/castgate" || exit 1
  mkdir -p "$fresh/home" "$fresh/cargo-home"
  rustup_home=$(rustup show home 2>/dev/null || echo "${RUSTUP_HOME:-$HOME/.rustup}")
  cargo_bin=$(dirname "$(command -v cargo)")
  start=$(date +%s)
  env HOME="$fresh/home" CARGO_HOME="$fresh/cargo-home" RUSTUP_HOME="$rustup_home" \
    XDG_CACHE_HOME="$fresh/home/.cache" PATH="$cargo_bin:$PATH" \
    CARGO_TARGET_DIR="$fresh/castgate/target" \
    "$fresh/castgate/scripts/test.sh" "$@"
  rc=$?
  echo "fresh run: exit $rc after $(( $(date +%s) - start )) s (left in $fresh; remove it when done)"
  exit $rc
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

# --- the real programs the tests run ---------------------------------------
missing=()
need() { # need COMMAND-OR-PATH PACKAGE
  case "$1" in
    /*) [ -e "$1" ] || missing+=("$2") ;;
    *) command -v "$1" >/dev/null 2>&1 || missing+=("$2") ;;
  esac
}
need_pkg() { # need_pkg PACKAGE...: Debian packages with no command to look for
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
}
need ffmpeg ffmpeg
need ffprobe ffmpeg
need rtmpdump rtmpdump
# GStreamer: librtmp's rtmpsink and GStreamer's rtmp2sink publish, playbin
# plays HLS and DASH (libav decodes; glib-networking is GIO's TLS for rtmps).
need gst-launch-1.0 gstreamer1.0-tools
# FFmpeg 9, the Enhanced RTMP publisher (below), comes from PyPI into a venv.
need python3 python3
need_pkg python3-venv
need_pkg gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-libav glib-networking
need chromium chromium
need node nodejs
need npm npm
need curl curl
need ip iproute2
need git git
# Relay destinations in the end-to-end tests.
need nginx nginx
need /usr/lib/nginx/modules/ngx_rtmp_module.so libnginx-mod-rtmp
need srt-live-transmit srt-tools
# Cluster mode: leases in a real Redis (src/cluster, e2e/cluster.rs).
need redis-server redis-server
# Cluster mode behind real parts: HAProxy (TCP) in front of the nodes' RTMP
# ports, nginx's proxy_cache in front of their HTTP ports (e2e/cluster.rs).
need haproxy haproxy
# SRT relays link libsrt (Debian's OpenSSL flavour) at build time.
need /usr/include/srt/srt.h libsrt-openssl-dev
# The Docker image is built and its compose service run (e2e/docker_run.rs,
# e2e/docker.rs): Debian's engine and client (/usr/bin/docker: a newer
# client elsewhere on PATH needs the buildx plugin to build), docker-compose,
# debootstrap for stand-in base images when Docker Hub cannot be reached,
# curl for the HEALTHCHECK run outside the container.
{ [ -x /usr/bin/docker ] && command -v dockerd >/dev/null 2>&1; } || missing+=(docker.io)
need docker-compose docker-compose
need debootstrap debootstrap
if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  missing=($(printf '%s\n' "${missing[@]}" | sort -u))
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || { echo "FAILED: apt-get install ${missing[*]}"; exit 1; }
fi
command -v cargo >/dev/null 2>&1 || { echo "FAILED: cargo is missing: install Rust (https://rustup.rs)"; exit 1; }

# Headless Chromium tests drive hls.js, dash.js and playwright-core from
# e2e/browser; they need Node.js >= 20 (Debian 12's own nodejs is 18: use a
# machine image with Node 20, or NodeSource's package).
node_major=$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/')
if [ -z "$node_major" ] || [ "$node_major" -lt 20 ]; then
  echo "FAILED: Node.js >= 20 is needed for the browser tests (found: $(node --version 2>&1))"
  exit 1
fi
echo "npm ci in e2e/browser (node $(node --version), npm $(npm --version))"
(cd e2e/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
  || { echo "FAILED: npm ci in e2e/browser"; exit 1; }

# FFmpeg 9 publishes Enhanced RTMP (HEVC, AV1, VP9, Opus, FLAC, AC-3,
# multitrack) in e2e/enhanced.rs: Debian 12's ffmpeg 5.1 cannot. PyPI's
# imageio-ffmpeg wheel (pinned; ~68 MB) carries a static FFmpeg 9 build. It
# goes in a venv in the user's cache, outside the repository, reused while it
# works and made anew when it does not. The tests find it through
# CASTGATE_FFMPEG9 (a caller's own CASTGATE_FFMPEG9, if it is FFmpeg 9, wins).
IMAGEIO_FFMPEG_VERSION=0.8.1
ff9_venv="${XDG_CACHE_HOME:-$HOME/.cache}/castgate/ffmpeg9-venv-$IMAGEIO_FFMPEG_VERSION"
ff9_is_9() { # ff9_is_9 BINARY: it runs and says it is FFmpeg 9
  [ -x "$1" ] && "$1" -hide_banner -version 2>/dev/null | head -1 | grep -Eq '^ffmpeg version n?9\.'
}
ff9_from_venv() { # the binary the venv's imageio-ffmpeg names, if the pinned version is there
  env -u IMAGEIO_FFMPEG_EXE "$ff9_venv/bin/python" -c "
import imageio_ffmpeg
assert imageio_ffmpeg.__version__ == '$IMAGEIO_FFMPEG_VERSION', imageio_ffmpeg.__version__
print(imageio_ffmpeg.get_ffmpeg_exe())" 2>/dev/null
}
if [ -n "${CASTGATE_FFMPEG9:-}" ] && ff9_is_9 "$CASTGATE_FFMPEG9"; then
  echo "FFmpeg 9 from CASTGATE_FFMPEG9: $CASTGATE_FFMPEG9"
else
  ff9=$(ff9_from_venv)
  if [ -z "$ff9" ] || ! ff9_is_9 "$ff9"; then
    echo "installing FFmpeg 9 (PyPI imageio-ffmpeg==$IMAGEIO_FFMPEG_VERSION) in $ff9_venv"
    rm -rf "$ff9_venv"
    mkdir -p "$(dirname "$ff9_venv")"
    { python3 -m venv "$ff9_venv" \
      && "$ff9_venv/bin/pip" install -q --disable-pip-version-check --no-input \
        "imageio-ffmpeg==$IMAGEIO_FFMPEG_VERSION"; } \
      || { echo "FAILED: pip install imageio-ffmpeg==$IMAGEIO_FFMPEG_VERSION in $ff9_venv (FFmpeg 9 for the Enhanced RTMP tests)"; exit 1; }
    ff9=$(ff9_from_venv)
    if [ -z "$ff9" ] || ! ff9_is_9 "$ff9"; then
      echo "FAILED: imageio-ffmpeg==$IMAGEIO_FFMPEG_VERSION in $ff9_venv gives no working FFmpeg 9 (${ff9:-no binary}): $("${ff9:-false}" -version 2>&1 | head -1)"
      exit 1
    fi
  fi
  export CASTGATE_FFMPEG9="$ff9"
  echo "FFmpeg 9: $CASTGATE_FFMPEG9 ($("$CASTGATE_FFMPEG9" -hide_banner -version | head -1))"
fi

# The fault tests open a thousand connections at once from this process and
# castgate's: raise the descriptor limit as far as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  echo "FAILED: the open-file limit is $(ulimit -n); the fault tests need 4096 (raise the hard limit)"
  exit 1
fi

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# --- the steps ---------------------------------------------------------------
failed=()
step() { # step NAME COMMAND...
  local name=$1
  shift
  echo "=== $name: $*"
  local t0
  t0=$(date +%s)
  if "$@"; then
    echo "=== $name: ok ($(( $(date +%s) - t0 )) s)"
  else
    echo "=== $name: FAILED ($(( $(date +%s) - t0 )) s)"
    failed+=("$name")
  fi
}

step fmt cargo fmt --all -- --check
step clippy cargo clippy --all-targets -- -D warnings
step fuzz-crate cargo check --manifest-path fuzz/Cargo.toml --locked --bins
step tests cargo test --all-targets --no-fail-fast

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
