#!/usr/bin/env bash
# Puts the base images docker/Dockerfile builds FROM into the local Docker
# engine, for the end-to-end test that builds and runs the image
# (e2e/docker.rs runs this script; it can also be run by hand).
#
# Each FROM image that is already there is kept; one that is not is pulled;
# one that cannot be pulled (a machine that reaches Debian's and crates.io's
# servers but not Docker Hub) is made here under the same tag, as a stand-in
# labelled castgate.stand-in:
#   debian:SUITE-slim        debootstrap --variant=minbase SUITE, imported,
#                            with the official image's apt sources and its
#                            dpkg excludes (no docs, man pages, locales);
#   rust:X.Y-slim-SUITE      that Debian plus gcc, libc6-dev and
#                            ca-certificates, and this machine's own Rust X.Y
#                            toolchain (rustc, cargo, the standard library)
#                            at the official image's paths (RUSTUP_HOME
#                            /usr/local/rustup, CARGO_HOME /usr/local/cargo).
# Idempotent: a second run finds the images and does nothing.
#
# Needs a running engine (`docker info` answers), debootstrap, and root for
# debootstrap. DOCKER names the client (default: Debian's /usr/bin/docker,
# which builds with the engine's own BuildKit); DEBIAN_MIRROR the mirror.
set -euo pipefail
cd "$(dirname "$0")/.."

docker="${DOCKER:-}"
if [ -z "$docker" ]; then
  if [ -x /usr/bin/docker ]; then docker=/usr/bin/docker; else docker=docker; fi
fi
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

"$docker" info >/dev/null 2>&1 || { echo "no Docker engine answers ($docker info failed): start dockerd" >&2; exit 1; }

work="$(mktemp -d /tmp/castgate-base-images.XXXXXX)"
trap 'rm -rf "$work"' EXIT

have() { "$docker" image inspect "$1" >/dev/null 2>&1; }

# debian:SUITE-slim from debootstrap.
make_debian() {
  local tag="$1" suite="$2" root="$work/rootfs-$2"
  command -v debootstrap >/dev/null 2>&1 || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  echo "making stand-in $tag: debootstrap --variant=minbase $suite"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap-$suite.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap-$suite.log" >&2; echo "debootstrap $suite failed" >&2; exit 1; }
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  tar -C "$root" -c . | "$docker" import \
    --change 'CMD ["bash"]' \
    --change "LABEL castgate.stand-in=\"debootstrap --variant=minbase $suite\"" \
    - "$tag" >/dev/null
  rm -rf "$root"
}

# The host toolchain whose rustc is version X.Y(.Z).
host_toolchain() {
  local want="$1" dir version
  local candidates=("$(rustc --print sysroot 2>/dev/null || true)")
  for dir in "${RUSTUP_HOME:-$HOME/.rustup}"/toolchains/*; do candidates+=("$dir"); done
  for dir in "${candidates[@]}"; do
    [ -x "$dir/bin/rustc" ] && [ -x "$dir/bin/cargo" ] && [ -d "$dir/lib/rustlib" ] || continue
    version="$("$dir/bin/rustc" --version | awk '{print $2}')"
    case "$version" in
      "$want" | "$want".*) readlink -f "$dir"; return 0 ;;
    esac
  done
  return 1
}

# Each PEM certificate of a bundle as one line (newlines as |), sorted.
pem_lines() {
  awk '/-----BEGIN CERTIFICATE-----/ { c = "" } { c = c $0 "|" } /-----END CERTIFICATE-----/ { print c }' "$@" | LC_ALL=C sort -u
}

# rust:X.Y-slim-SUITE from debian:SUITE-slim and the host's Rust X.Y.
make_rust() {
  local tag="$1" want="$2" suite="$3" tc name ctx="$work/rust-context"
  tc="$(host_toolchain "$want")" || {
    echo "cannot make stand-in $tag: no Rust $want toolchain on this machine (rustc is $(rustc --version 2>/dev/null || echo missing)); the build stage's image must name the machine's Rust" >&2
    exit 1
  }
  name="$("$tc/bin/rustc" --version | awk '{print $2}')-$(uname -m)-unknown-linux-gnu"
  echo "making stand-in $tag: debian:$suite-slim + $tc"
  mkdir -p "$ctx"
  cat >"$ctx/Dockerfile" <<EOF
FROM debian:$suite-slim
LABEL castgate.stand-in="debian:$suite-slim + the host's Rust toolchain $name"
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/*
COPY host-ca /usr/local/share/ca-certificates/host
RUN update-ca-certificates
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY toolchain /usr/local/rustup/toolchains/$name
RUN mkdir -p /usr/local/cargo/bin \\
 && for t in cargo rustc rustdoc; do ln -s /usr/local/rustup/toolchains/$name/bin/\$t /usr/local/cargo/bin/\$t; done \\
 && chmod -R a+w /usr/local/cargo \\
 && cargo --version && rustc --version
EOF
  # The certificate authorities this machine trusts beyond Debian's own
  # (a TLS-inspecting proxy's, say), so cargo reaches crates.io from the
  # image as it does from here.
  mkdir -p "$ctx/host-ca"
  LC_ALL=C comm -23 <(pem_lines /etc/ssl/certs/ca-certificates.crt) \
    <(find /usr/share/ca-certificates -name '*.crt' -exec cat {} + | pem_lines) \
    | awk -v dir="$ctx/host-ca" '{ f = sprintf("%s/extra-%03d.crt", dir, NR); gsub(/\|/, "\n"); printf "%s", $0 > f; close(f) }'
  # The context: the Dockerfile and the toolchain's compiler, cargo and
  # standard library (not its documentation), streamed as one tar.
  local libs
  libs="$(cd "$tc" && ls -d ./lib/*.so*)"
  # shellcheck disable=SC2086 # one word per library
  tar -c -f - -C "$ctx" Dockerfile \
    -C "$tc" --transform 's,^\./,toolchain/,' \
    ./bin/cargo ./bin/rustc ./bin/rustdoc ./lib/rustlib $libs \
    -C "$ctx" host-ca \
    | "$docker" build -q -t "$tag" - >/dev/null
}

ensure() {
  local image="$1"
  if have "$image"; then echo "$image: present"; return; fi
  if timeout 300 "$docker" pull -q "$image" >/dev/null 2>&1; then echo "$image: pulled"; return; fi
  case "$image" in
    debian:*-slim)
      local suite="${image#debian:}"; suite="${suite%-slim}"
      make_debian "$image" "$suite" ;;
    rust:*-slim-*)
      local rest="${image#rust:}" want suite
      want="${rest%%-*}"; suite="${rest##*-slim-}"
      ensure "debian:$suite-slim"
      make_rust "$image" "$want" "$suite" ;;
    *)
      echo "$image cannot be pulled and there is no stand-in for it" >&2; exit 1 ;;
  esac
  echo "$image: stand-in made"
}

# FROM lines of docker/Dockerfile, stages excepted ("FROM IMAGE [AS NAME]").
stages=()
while read -r ins image as name; do
  [ "${ins^^}" = FROM ] || continue
  for s in "${stages[@]}"; do [ "$s" = "$image" ] && continue 2; done
  ensure "$image"
  if [ "${as^^}" = AS ]; then stages+=("$name"); fi
done < <(grep -i '^FROM ' docker/Dockerfile)
