#!/usr/bin/env bash
# The device-side scripts of install-agent and uninstall-agent, as one ssh session runs them
# (common.sh, then the script), pass shellcheck as POSIX sh; so do the repository's own scripts.
set -euo pipefail
SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v shellcheck > /dev/null || { echo "skip: shellcheck missing (scripts/setup.sh installs it)"; exit 77; }
passed=0 failed=0
for s in probe install uninstall; do
  if cat "$SRC/pusher/device/common.sh" "$SRC/pusher/device/$s.sh" | shellcheck -s sh -; then
    echo "ok: pusher/device/$s.sh"; passed=$((passed + 1))
  else
    echo "FAIL: pusher/device/$s.sh"; failed=$((failed + 1))
  fi
done
for f in "$SRC"/scripts/*.sh "$SRC"/tests/setup/*.sh; do
  if shellcheck -S warning "$f"; then passed=$((passed + 1)); else echo "FAIL: $f"; failed=$((failed + 1)); fi
done
echo "test_device_scripts: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
