# shellcheck shell=sh
# uninstall-agent on the device (after common.sh): stops ferryd and its apps and removes what
# install-agent installed.
#
# Parameters: FERRY_KEEP_STATE  1: keep the state directory (releases, blobs)

KEEP="${FERRY_KEEP_STATE:-0}"
if [ ! -f "$BIN_DIR/ferryd" ] && [ ! -d "$CONF_DIR" ]; then msg "no ferryd installed under ${P:-/}"; exit 3; fi
if [ -z "$P" ] && [ -d /run/systemd/system ] && [ -f "$UNIT" ]; then systemctl disable --now ferryd.service >/dev/null 2>&1 || true; fi
stop_agent
rm -f "$UNIT"
if [ -z "$P" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
rm -rf "$BIN_DIR" "$CONF_DIR" "$LOG" "$LOG.start" "$PIDF"
if [ "$KEEP" = 0 ]; then rm -rf "$STATE"; fi
remove_prefix_dirs
echo removed
