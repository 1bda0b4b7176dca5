/* Board profiles (boards/ (one YAML file each)): data that says what a board family is, how to build for it
 * and how an agent recognises it. Pure: parsing takes bytes; matching takes probe values the
 * caller read from the device. The profiles in boards/ are compiled in (fy_board_builtin). */
#ifndef FERRY_BOARD_H
#define FERRY_BOARD_H

#include <stddef.h>

#include "ferry/error.h"
#include "ferry/platform.h"

#define FY_BOARD_MAX_PLATFORMS 4
#define FY_BOARD_MAX_RULES 8
#define FY_BOARD_MAX_LABELS 8

typedef struct fy_board_rule {
  char dt_model[96];   /* prefix of /proc/device-tree/model */
  char dmi_vendor[64]; /* prefix of /sys/class/dmi/id/sys_vendor */
  char dmi_product[64];/* prefix of /sys/class/dmi/id/product_name */
  unsigned midr_part;  /* MIDR_EL1 part number (bits 15:4), 0 = any */
  unsigned midr_impl;  /* MIDR_EL1 implementer (bits 31:24), 0 = any */
} fy_board_rule;

typedef struct fy_board {
  char name[32];
  char description[128];
  fy_platform platforms[FY_BOARD_MAX_PLATFORMS]; /* first: the usual userland */
  size_t nplatforms;
  char cpu_model[32];  /* "cortex-a72" */
  char mcpu[32];       /* gcc -mcpu */
  char qemu_cpu[32];   /* qemu -cpu */
  char variant[16];    /* OCI platform variant for board-tuned images ("v8.2"), "" = none */
  int fallback;        /* generic profile: chosen when nothing specific matches */
  fy_board_rule rules[FY_BOARD_MAX_RULES];
  size_t nrules;
  char label_keys[FY_BOARD_MAX_LABELS][64];
  char label_vals[FY_BOARD_MAX_LABELS][64];
  size_t nlabels;
} fy_board;

/* Parses one profile. On error FY_ECONFIG with "line N: what" in err. */
int fy_board_parse(const char *yaml, size_t len, fy_board *out, char *err, size_t errlen) FY_WUR;

/* The profiles compiled in from boards/: name and YAML text of each, NULL-terminated. */
typedef struct fy_board_source {
  const char *file;
  const char *text;
} fy_board_source;
extern const fy_board_source fy_board_builtin[];

/* Parses every compiled-in profile into a malloc'd array. FY_ECONFIG with "boards/FILE: why". */
int fy_board_load_builtin(fy_board **out, size_t *count, char *err, size_t errlen) FY_WUR;
/* The profile called name, or NULL. */
const fy_board *fy_board_find(const fy_board *boards, size_t n, const char *name);

/* What the agent read from the device; empty strings / 0 where unknown. */
typedef struct fy_board_probe {
  char dt_model[128];
  char dmi_vendor[128];
  char dmi_product[128];
  unsigned midr; /* whole MIDR_EL1, 0 if unknown */
} fy_board_probe;

/* The best board for a device of platform `self`: a specific rule match among profiles whose
 * platforms include `self`, else the first fallback profile for `self`. -1 if none. */
int fy_board_match(const fy_board *boards, size_t n, const fy_board_probe *probe,
                   const fy_platform *self);

#endif
