/* ELF gABI: e_ident, e_machine at 18, e_flags at 36 (ELF32) / 48 (ELF64); program headers for
 * PT_INTERP and PT_DYNAMIC; DT_NEEDED names are offsets into DT_STRTAB, a virtual address mapped
 * back to the file through the PT_LOAD segments. Every offset is bounds-checked. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elfcheck.h"

#define ELF_MAX (512u << 20)

static const struct {
  const char *arch;
  const char *variant_prefix;
  const char *triplet, *qemu;
  unsigned machine;
  int cls;
  const char *desc;
} kinds[] = {
    {"amd64", "", "x86_64-linux-gnu", "qemu-x86_64", 62, 2, "an x86-64 ELF"},
    {"arm64", "", "aarch64-linux-gnu", "qemu-aarch64", 183, 2, "an AArch64 ELF"},
    {"arm", "v7", "arm-linux-gnueabihf", "qemu-arm", 40, 1, "a 32-bit ARM ELF"},
    {"386", "", "i686-linux-gnu", "qemu-i386", 3, 1, "an i386 ELF"},
    {"riscv64", "", "riscv64-linux-gnu", "qemu-riscv64", 243, 2, "a RISC-V 64 ELF"},
};

static int kind_of(const fy_platform *p) {
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(kinds[i].arch, p->arch) == 0) return (int)i;
  return -1;
}

const char *fy_platform_triplet(const fy_platform *p) {
  int k = kind_of(p);
  if (k < 0) return NULL;
  if (strcmp(p->arch, "arm") == 0 && strcmp(p->variant, "v7") != 0) return NULL; /* armhf is v7 */
  return kinds[k].triplet;
}

const char *fy_platform_qemu(const fy_platform *p) {
  int k = kind_of(p);
  return k < 0 ? NULL : kinds[k].qemu;
}

struct elf {
  const uint8_t *p;
  size_t n;
  int cls, le;
};

static uint64_t rd(const struct elf *e, size_t off, size_t w) {
  uint64_t v = 0;
  if (off > e->n || w > e->n - off) return 0;
  for (size_t i = 0; i < w; i++) v |= (uint64_t)e->p[off + (e->le ? i : w - 1 - i)] << (8 * i);
  return v;
}

static const char *desc_of(unsigned machine) {
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (kinds[i].machine == machine) return kinds[i].desc;
  return NULL;
}

static int map_file(const char *path, struct elf *e, int *fd_out) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 52 || (uint64_t)st.st_size > ELF_MAX) {
    close(fd);
    return 0;
  }
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (m == MAP_FAILED) { close(fd); return -1; }
  e->p = m;
  e->n = (size_t)st.st_size;
  if (memcmp(e->p, "\177ELF", 4) != 0) { munmap(m, e->n); close(fd); return 0; }
  e->cls = e->p[4];
  e->le = e->p[5] == 1;
  *fd_out = fd;
  return 1;
}

void fy_elf_describe(const char *host_path, char *buf, size_t len) {
  struct elf e;
  int fd;
  buf[0] = '\0';
  if (map_file(host_path, &e, &fd) != 1) return;
  unsigned machine = (unsigned)rd(&e, 18, 2);
  const char *d = desc_of(machine);
  if (d) snprintf(buf, len, "%s%s", d, machine == 40 && !(rd(&e, 36, 4) & 0x400) ? " (soft-float ABI)" : "");
  else snprintf(buf, len, "an ELF for machine %u", machine);
  munmap((void *)e.p, e.n);
  close(fd);
}

static int lib_found(const char *rootfs, const char *triplet, const char *name) {
  char path[4300];
  struct stat st;
  const char *dirs[] = {"/lib", "/usr/lib", "/lib64", "/usr/lib64", NULL};
  if (name[0] == '/') {
    snprintf(path, sizeof path, "%s%s", rootfs, name);
    if (stat(path, &st) == 0) return 1;
    snprintf(path, sizeof path, "/usr/%s%s", triplet, name);
    if (stat(path, &st) == 0) return 2;
    snprintf(path, sizeof path, "%s", name);
    return strcmp(triplet, "x86_64-linux-gnu") == 0 && stat(path, &st) == 0 ? 2 : 0;
  }
  for (int i = 0; dirs[i]; i++) {
    snprintf(path, sizeof path, "%s%s/%s", rootfs, dirs[i], name);
    if (stat(path, &st) == 0) return 1;
    snprintf(path, sizeof path, "%s%s/%s/%s", rootfs, dirs[i], triplet, name);
    if (stat(path, &st) == 0) return 1;
  }
  /* The target's sysroot: Debian's cross libc (/usr/TRIPLET/lib) and multiarch (/usr/lib/TRIPLET). */
  snprintf(path, sizeof path, "/usr/%s/lib/%s", triplet, name);
  if (stat(path, &st) == 0) return 2;
  snprintf(path, sizeof path, "/usr/lib/%s/%s", triplet, name);
  if (stat(path, &st) == 0) return 2;
  snprintf(path, sizeof path, "/lib/%s/%s", triplet, name);
  if (stat(path, &st) == 0) return 2;
  return 0;
}

static uint64_t vaddr_to_off(const struct elf *e, uint64_t va) {
  int w = e->cls == 2;
  uint64_t phoff = rd(e, w ? 32 : 28, w ? 8 : 4);
  unsigned phentsize = (unsigned)rd(e, w ? 54 : 42, 2), phnum = (unsigned)rd(e, w ? 56 : 44, 2);
  for (unsigned i = 0; i < phnum && i < 256; i++) {
    size_t ph = (size_t)(phoff + (uint64_t)i * phentsize);
    if (rd(e, ph, 4) != 1) continue; /* PT_LOAD */
    uint64_t off = w ? rd(e, ph + 8, 8) : rd(e, ph + 4, 4), vaddr = w ? rd(e, ph + 16, 8) : rd(e, ph + 8, 4);
    uint64_t filesz = w ? rd(e, ph + 32, 8) : rd(e, ph + 16, 4);
    if (va >= vaddr && va - vaddr < filesz) return off + (va - vaddr);
  }
  return UINT64_MAX;
}

int fy_elf_check(const char *host_path, const char *shown, const fy_platform *p, const char *rootfs, char *err,
                 size_t errlen) {
  struct elf e;
  int fd, ret = FY_OK;
  int m = map_file(host_path, &e, &fd);
  if (m <= 0) return FY_OK; /* not ELF (scripts, data) */
  char plat[FY_PLATFORM_STR];
  fy_platform_format(p, plat, sizeof plat);
  int k = kind_of(p);
  unsigned machine = (unsigned)rd(&e, 18, 2);
  uint32_t flags = (uint32_t)rd(&e, e.cls == 2 ? 48 : 36, 4);
  char what[64];
  const char *d = desc_of(machine);
  snprintf(what, sizeof what, "%s", d ? d : "an ELF for an unknown machine");
  if (k < 0 || machine != kinds[k].machine || e.cls != kinds[k].cls || !e.le) {
    snprintf(err, errlen, "%s is %s%s, but the variant is %s", shown, what, e.le ? "" : " (big-endian)", plat);
    ret = FY_EEXEC;
    goto out;
  }
  if (machine == 40 && strcmp(p->variant, "v7") == 0 && !(flags & 0x400)) {
    snprintf(err, errlen, "%s is a soft-float 32-bit ARM ELF (armel), but linux/arm/v7 here means hard float (armhf)", shown);
    ret = FY_EEXEC;
    goto out;
  }
  /* Dynamic executables: the interpreter and the NEEDED libraries must be findable. */
  int w = e.cls == 2;
  uint64_t phoff = rd(&e, w ? 32 : 28, w ? 8 : 4);
  unsigned phentsize = (unsigned)rd(&e, w ? 54 : 42, 2), phnum = (unsigned)rd(&e, w ? 56 : 44, 2);
  uint64_t dyn_off = 0, dyn_sz = 0;
  for (unsigned i = 0; i < phnum && i < 256; i++) {
    size_t ph = (size_t)(phoff + (uint64_t)i * phentsize);
    uint32_t type = (uint32_t)rd(&e, ph, 4);
    uint64_t off = w ? rd(&e, ph + 8, 8) : rd(&e, ph + 4, 4), filesz = w ? rd(&e, ph + 32, 8) : rd(&e, ph + 16, 4);
    if (type == 3 && off < e.n && filesz < 4096 && filesz <= e.n - off) { /* PT_INTERP */
      char interp[4096];
      memcpy(interp, e.p + off, (size_t)filesz);
      interp[filesz ? filesz - 1 : 0] = '\0';
      if (!lib_found(rootfs, kinds[k].triplet, interp)) {
        snprintf(err, errlen, "%s needs the interpreter %s, found neither in the image nor in the %s sysroot", shown, interp, kinds[k].triplet);
        ret = FY_EEXEC;
        goto out;
      }
    } else if (type == 2) { /* PT_DYNAMIC */
      dyn_off = off;
      dyn_sz = filesz;
    }
  }
  if (dyn_off && dyn_off < e.n && dyn_sz <= e.n - dyn_off) {
    size_t ent = w ? 16 : 8;
    uint64_t strtab = 0;
    for (uint64_t o = 0; o + ent <= dyn_sz; o += ent) {
      uint64_t tag = rd(&e, (size_t)(dyn_off + o), w ? 8 : 4);
      if (tag == 5) strtab = rd(&e, (size_t)(dyn_off + o + ent / 2), w ? 8 : 4); /* DT_STRTAB */
      if (tag == 0) break;
    }
    uint64_t stroff = strtab ? vaddr_to_off(&e, strtab) : UINT64_MAX;
    for (uint64_t o = 0; stroff != UINT64_MAX && o + ent <= dyn_sz; o += ent) {
      uint64_t tag = rd(&e, (size_t)(dyn_off + o), w ? 8 : 4);
      if (tag == 0) break;
      if (tag != 1) continue; /* DT_NEEDED */
      uint64_t noff = stroff + rd(&e, (size_t)(dyn_off + o + ent / 2), w ? 8 : 4);
      if (noff >= e.n) continue;
      char name[256];
      size_t nl = strnlen((const char *)e.p + noff, e.n - noff);
      if (nl >= sizeof name) continue;
      memcpy(name, e.p + noff, nl + 1);
      if (!lib_found(rootfs, kinds[k].triplet, name)) {
        snprintf(err, errlen, "%s needs %s, found neither in the image nor in the %s sysroot", shown, name, kinds[k].triplet);
        ret = FY_EEXEC;
        goto out;
      }
    }
  }
out:
  munmap((void *)e.p, e.n);
  close(fd);
  return ret;
}
