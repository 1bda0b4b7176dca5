#!/usr/bin/env bash
# Installs everything ferry needs on Debian 12, from Debian's packages only.
# Safe to run twice: it installs only what is missing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

HOST_PKGS=(
  build-essential cmake pkg-config ninja-build git ca-certificates
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf
  libc6-dev-arm64-cross libc6-dev-armhf-cross
  qemu-user
  libuv1-dev libmbedtls-dev libzstd-dev libyaml-dev libjansson-dev zlib1g-dev
  openssl zstd tar coreutils procps python3 iproute2 openssh-client openssh-server
  skopeo buildah clang time bc lintian fakeroot dpkg-dev
)
CROSS_PKGS=()
for arch in arm64 armhf; do
  CROSS_PKGS+=(libuv1-dev:$arch libmbedtls-dev:$arch libzstd-dev:$arch
               libyaml-dev:$arch libjansson-dev:$arch)
done

missing=()
for p in "${HOST_PKGS[@]}" "${CROSS_PKGS[@]}"; do
  case "$p" in *:*) q="$p" ;; *) q="$p:amd64" ;; esac
  # Architecture-independent packages (cmake, git…) answer only to their bare name.
  st=$(dpkg-query -W -f='${db:Status-Status}' "$q" 2>/dev/null || true)
  case "$p" in *:*) ;; *) [ -n "$st" ] || st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) ;; esac
  [ "$st" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
for arch in arm64 armhf; do
  dpkg --print-foreign-architectures | grep -qx "$arch" || $SUDO dpkg --add-architecture "$arch"
done
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || echo "setup: warning: apt-get update reported errors (continuing with the indexes it has)"
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
