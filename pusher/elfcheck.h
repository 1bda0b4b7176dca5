/* Architecture checks on ELF files before a platform's manifest is written: machine, class,
 * byte order and (32-bit arm) the float ABI; for dynamic executables, the interpreter and every
 * NEEDED library must resolve in the image's root or the target's sysroot. */
#ifndef FERRY_PUSHER_ELFCHECK_H
#define FERRY_PUSHER_ELFCHECK_H

#include "ferry/error.h"
#include "ferry/platform.h"

/* The Debian triplet for a platform ("aarch64-linux-gnu"), or NULL when ferry has no toolchain. */
const char *fy_platform_triplet(const fy_platform *p);
/* The qemu-user binary name for a platform ("qemu-aarch64"), NULL for none. */
const char *fy_platform_qemu(const fy_platform *p);

/* FY_OK for a non-ELF file or a matching one. FY_EEXEC with "SHOWN is an x86-64 ELF, but the
 * variant is linux/arm64" or "SHOWN needs libfoo.so.1, found neither in the image nor in
 * SYSROOT" in err. rootfs: the staging root; sysroot may be NULL. */
int fy_elf_check(const char *host_path, const char *shown, const fy_platform *p, const char *rootfs,
                 char *err, size_t errlen) FY_WUR;

/* Describes an ELF file ("an AArch64 ELF") into buf; "" for a non-ELF. */
void fy_elf_describe(const char *host_path, char *buf, size_t len);

#endif
