#!/usr/bin/env bash
# Builds the .deb packages into dist/: ferry (amd64) and ferryd (amd64, arm64, armhf).
# Installs what is missing, builds the three presets, then runs CPack in each.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p dist
for p in amd64 aarch64 armhf host; do   # host last: the ferry package takes the static agents along
  cmake --preset "$p" > /dev/null
  cmake --build --preset "$p" -j "$(nproc)"
  [ "$p" = amd64 ] || (cd "build/$p" && cpack -G DEB -B "$PWD/../../dist" > /dev/null)
done
rm -rf dist/_CPack_Packages
ls -l dist/*.deb
for d in dist/*.deb; do lintian --fail-on error "$d" || true; done
