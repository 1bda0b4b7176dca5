# shellcheck shell=sh
# shellcheck disable=SC2034  # the paths are for the script that follows this one
# Shared by the device-side scripts of `ferry install-agent` and `ferry uninstall-agent`. ferry
# sends, over one ssh session: the parameter lines it writes (FERRY_* variables, shell-quoted),
# this file, then probe.sh, install.sh or uninstall.sh. POSIX sh, for whatever /bin/sh a device has.
#
# Parameters: FERRY_PREFIX  where everything goes (empty: /; the tests use a directory)

P="${FERRY_PREFIX:-}"
BIN_DIR="$P/usr/local/lib/ferry"
CONF_DIR="$P/etc/ferry"
STATE="$P/var/lib/ferry"
UNIT="$P/etc/systemd/system/ferryd.service"
LOG="$P/var/log/ferryd.log"
PIDF="$P/run/ferryd.pid"

# Lines ferry shows the user, without their prefix.
msg() { echo "ferry-agent: $*" >&2; }

# wait_gone PID: up to 10 s for a process to end after SIGTERM, then SIGKILL.
wait_gone() {
  i=0
  while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$1" 2>/dev/null || true
}

# is_agent PID: PID runs this installation's ferryd (or the ferryd.prev the upgrade watchdog
# restarts). A pid file outlives its process, and by then the pid may be another program's.
is_agent() {
  { tr '\000' ' ' < "/proc/$1/cmdline"; } 2>/dev/null | grep -q "^$BIN_DIR/ferryd\(.prev\)\? --config"
}

# Stops whatever agent runs: systemd's unit, else the pid file's process, and an agent that the
# upgrade watchdog restarted under another pid (found by its binary).
stop_agent() {
  if [ -z "$P" ] && [ -d /run/systemd/system ] && [ -f "$UNIT" ]; then systemctl stop ferryd.service || true; fi
  if [ -f "$PIDF" ]; then
    pid=$(cat "$PIDF")
    if is_agent "$pid"; then
      kill -TERM "$pid"
      wait_gone "$pid"
    fi
    rm -f "$PIDF"
  fi
  for d in /proc/[0-9]*; do
    if is_agent "${d#/proc/}"; then
      kill -TERM "${d#/proc/}" 2>/dev/null && wait_gone "${d#/proc/}"
    fi
  done
}

# The directories install-agent made under a prefix, when nothing else is in them.
remove_prefix_dirs() {
  [ -n "$P" ] || return 0
  for d in usr/local/lib usr/local usr etc/systemd/system etc/systemd etc var/lib var/log var run; do
    rmdir "$P/$d" 2>/dev/null || true
  done
  rmdir "$P" 2>/dev/null || true
}
