#!/usr/bin/env bash
# The Debian userland the runtime tests run (tests/e2e/e2e_runtime.sh): busybox and
# python3-minimal from Debian 12, unpacked by mmdebstrap into one tar, built once and cached in
# build/cache (the tests themselves never download). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/cache/debian-bookworm-rootfs.tar
[ -s "$out" ] && { echo "test-rootfs: $out is there"; exit 0; }
mkdir -p build/cache
command -v mmdebstrap > /dev/null || { echo "test-rootfs: mmdebstrap is missing (bash scripts/setup.sh installs it)" >&2; exit 1; }
echo "test-rootfs: building $out (mmdebstrap --variant=extract busybox python3-minimal)"
SOURCE_DATE_EPOCH=1700000000 mmdebstrap --quiet --variant=extract --include=busybox,python3-minimal bookworm build/cache/partial-rootfs.tar
mv build/cache/partial-rootfs.tar "$out"
