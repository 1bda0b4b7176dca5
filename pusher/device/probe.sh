# shellcheck shell=sh
# install-agent's first look at the device (after common.sh): what its userland is (the ELF
# header of the shell that runs its programs), who we are, whether systemd is PID 1.
#
# Parameters: FERRY_PROBE_SH  the file that stands for the userland (only the tests set it, to
#                             play a riscv64 device; a device's /bin/sh is what runs its programs)

sh_path="${FERRY_PROBE_SH:-/bin/sh}"
echo "uname=$(uname -m)"
echo "uid=$(id -u)"
echo "elf=$(od -An -tx1 -N 52 "$sh_path" | tr -d ' \n')"
if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi
