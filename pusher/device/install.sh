# shellcheck shell=sh
# install-agent on the device (after common.sh). Its standard input is a tar of the files to
# install: ferryd, ferryd.yaml, ferryd.service, identity/{ca,cert,key}.pem.
#
# Parameters: FERRY_NEED_KB       space the install needs, in KiB
#             FERRY_RECONFIGURE   1: rewrite the config and identity of an installed agent
#             FERRY_SYSTEMD       1: install and start the unit (systemd is PID 1, no prefix)
# Prints "mode=systemd|direct upgrade=0|1 conf=written|kept ident=written|kept" when it worked.
# Exit status: 4 no space, 5 the new ferryd does not run here, 6 it did not start (undone).

NEED_KB="${FERRY_NEED_KB:-8192}"
RECONF="${FERRY_RECONFIGURE:-0}"
USE_SYSTEMD="${FERRY_SYSTEMD:-0}"
set -e

d="$P/"
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
avail=$(df -Pk "$d" | awk 'NR==2 {print $4}')
if [ "${avail:-0}" -lt "$NEED_KB" ]; then
  msg "no space on the device: ${avail:-0} KiB free in $d, the agent needs $NEED_KB KiB"
  exit 4
fi
tmp=$(df -Pk /tmp | awk 'NR==2 {print $4}')
if [ -d "$BIN_DIR" ]; then S="$BIN_DIR/.install.$$"
elif [ "${tmp:-0}" -ge "$NEED_KB" ]; then S=$(mktemp -d)
else S="$d/.ferry-install.$$"; fi
mkdir -p "$S"
cleanup() { rm -rf "$S"; rm -f "$BIN_DIR/ferryd.new" "$UNIT.new" "$CONF_DIR/ferryd.yaml.new"; }
trap cleanup EXIT
tar -xf - -C "$S" || { msg "cannot unpack the agent's files (no space?)"; exit 4; }
v=$("$S/ferryd" --version 2>&1) || { msg "the new ferryd does not run on this device: $v"; exit 5; }
case "$v" in ferryd*) ;; *) msg "the new ferryd answered '$v' to --version"; exit 5 ;; esac
for dir in "$BIN_DIR" "$CONF_DIR" "$STATE" "$P/var/log" "$P/run"; do mkdir -p "$dir"; done
chmod 700 "$STATE"
{ cp "$S/ferryd" "$BIN_DIR/ferryd.new" && chmod 755 "$BIN_DIR/ferryd.new"; } || { msg "cannot copy ferryd to $BIN_DIR (no space?)"; exit 4; }
if [ ! -f "$CONF_DIR/ferryd.yaml" ] || [ "$RECONF" = 1 ]; then cp "$S/ferryd.yaml" "$CONF_DIR/ferryd.yaml.new"; fi
if [ "$USE_SYSTEMD" = 1 ]; then mkdir -p "$(dirname "$UNIT")"; cp "$S/ferryd.service" "$UNIT.new"; fi
upgrade=0
[ -f "$BIN_DIR/ferryd" ] && upgrade=1

# Starts the installed agent and waits until it listens (direct start) or stays active
# (systemd); 0 when it does.
started() {
  if [ "$USE_SYSTEMD" = 1 ]; then
    systemctl daemon-reload
    systemctl enable ferryd.service >/dev/null 2>&1
    systemctl restart ferryd.service || return 1
    sleep 2
    systemctl is-active --quiet ferryd.service
    return $?
  fi
  n0=$(wc -l < "$LOG" 2>/dev/null || echo 0)
  (cd / && exec setsid "$BIN_DIR/ferryd" --config "$CONF_DIR/ferryd.yaml" </dev/null >>"$LOG" 2>&1) &
  echo $! > "$PIDF"
  i=0
  while [ $i -lt 150 ]; do
    kill -0 "$(cat "$PIDF")" 2>/dev/null || return 1
    tail -n +$((n0 + 1)) "$LOG" | grep -q -e 'listening on' -e 'ready without a listening port' && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

# From here on: in place; a new agent that does not start is undone.
stop_agent
if [ -f "$BIN_DIR/ferryd" ]; then ln -f "$BIN_DIR/ferryd" "$BIN_DIR/ferryd.prev"; fi
mv -f "$BIN_DIR/ferryd.new" "$BIN_DIR/ferryd"
rm -rf "$CONF_DIR/ferryd.yaml.prev" "$CONF_DIR/identity.prev"
if [ -f "$CONF_DIR/ferryd.yaml.new" ]; then
  [ -f "$CONF_DIR/ferryd.yaml" ] && cp -p "$CONF_DIR/ferryd.yaml" "$CONF_DIR/ferryd.yaml.prev"
  mv -f "$CONF_DIR/ferryd.yaml.new" "$CONF_DIR/ferryd.yaml"
  conf=written
else
  conf=kept
fi
if [ ! -f "$CONF_DIR/identity/key.pem" ] || [ "$RECONF" = 1 ]; then
  [ -d "$CONF_DIR/identity" ] && mv "$CONF_DIR/identity" "$CONF_DIR/identity.prev"
  mkdir -m 700 "$CONF_DIR/identity"
  cp "$S/identity/ca.pem" "$S/identity/cert.pem" "$CONF_DIR/identity/"
  (umask 077; cp "$S/identity/key.pem" "$CONF_DIR/identity/key.pem")
  chmod 600 "$CONF_DIR/identity/key.pem"
  ident=written
else
  ident=kept
fi
# the CA of a broker whose certificate another CA issued (broker.ca), whatever else was kept
if [ -f "$S/identity/broker-ca.pem" ]; then cp "$S/identity/broker-ca.pem" "$CONF_DIR/identity/broker-ca.pem"; fi
if [ "$USE_SYSTEMD" = 1 ]; then mv -f "$UNIT.new" "$UNIT"; mode=systemd; else mode=direct; fi
if ! started; then
  msg "the new ferryd did not start:"
  tail -n +$((${n0:-0} + 1)) "$LOG" 2>/dev/null | tail -n 5 | sed 's/^/ferry-agent:   /' >&2
  stop_agent
  if [ "$upgrade" = 1 ]; then
    mv -f "$BIN_DIR/ferryd.prev" "$BIN_DIR/ferryd"
    [ -f "$CONF_DIR/ferryd.yaml.prev" ] && mv -f "$CONF_DIR/ferryd.yaml.prev" "$CONF_DIR/ferryd.yaml"
    [ -d "$CONF_DIR/identity.prev" ] && { rm -rf "$CONF_DIR/identity"; mv "$CONF_DIR/identity.prev" "$CONF_DIR/identity"; }
    if started; then msg "the previous ferryd is back and running"; else msg "the previous ferryd does not start either"; fi
  else
    if [ "$USE_SYSTEMD" = 1 ]; then systemctl disable ferryd.service >/dev/null 2>&1; rm -f "$UNIT"; systemctl daemon-reload; fi
    rm -rf "$BIN_DIR" "$CONF_DIR" "$STATE" "$LOG" "$PIDF"
    remove_prefix_dirs
    msg "nothing was installed"
  fi
  exit 6
fi
rm -rf "$CONF_DIR/ferryd.yaml.prev" "$CONF_DIR/identity.prev"
echo "mode=$mode upgrade=$upgrade conf=$conf ident=$ident"
