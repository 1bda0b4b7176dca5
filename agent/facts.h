/* What an agent says about itself: platform, what it also runs, board, labels. */
#ifndef FERRY_AGENT_FACTS_H
#define FERRY_AGENT_FACTS_H

#include <jansson.h>

#include "config.h"
#include "ferry/board.h"
#include "ferry/platform.h"

typedef struct fy_facts {
  fy_platform platform;                       /* the userland: what this ferryd was built for */
  fy_platform accepts[FY_PLATFORM_ACCEPT_MAX];
  size_t naccepts;
  char cpu_level[FY_PLATFORM_FIELD];          /* "v8.2", "v3"; "" at the baseline */
  fy_board board;                             /* detected or configured profile */
  int have_board;
  fy_board_probe probe;
  long page_size;
} fy_facts;

/* Detects everything that does not change while ferryd runs. Board errors (an unknown
 * `board:` name) return FY_ECONFIG with a reason in err. */
int fy_facts_detect(const fy_agent_config *cfg, fy_facts *f, char *err, size_t errlen) FY_WUR;

/* The facts message for a hello: name, agent_version, platform, accepts, labels, board,
 * free_bytes, uptime_s, apps. New reference. */
json_t *fy_facts_json(const fy_agent_config *cfg, const fy_facts *f, const char *name,
                      uint64_t uptime_s);


#endif
