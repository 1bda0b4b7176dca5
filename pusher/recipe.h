/* ferry.yaml: how to build, pack, run and test an application for every platform. */
#ifndef FERRY_PUSHER_RECIPE_H
#define FERRY_PUSHER_RECIPE_H

#include <stdint.h>

#include "ferry/board.h"
#include "ferry/error.h"
#include "ferry/platform.h"
#include "ferry/runspec.h"
#include "ferry/selector.h"

#define FY_RECIPE_MAX_LIST 64

typedef struct fy_recipe_file {
  char from[1024]; /* relative to the staging root (DESTDIR) */
  char to[1024];   /* absolute path in the image */
} fy_recipe_file;

typedef struct fy_recipe {
  char path[4096];       /* the recipe file */
  char dir[4096];        /* its directory: relative paths start here */
  char name[64];
  char version[64];
  fy_platform platforms[FY_RECIPE_MAX_LIST];
  size_t nplatforms;
  char boards[FY_RECIPE_MAX_LIST][32];
  size_t nboards;
  /* build: exactly one of cmake_dir / command */
  char cmake_dir[4096];
  char *cmake_options[FY_RECIPE_MAX_LIST];
  size_t ncmake_options;
  char command[4096];
  fy_recipe_file files[FY_RECIPE_MAX_LIST];
  size_t nfiles;          /* 0: ship the whole staging root */
  /* run */
  char *entrypoint[FY_RECIPE_MAX_LIST]; size_t nentrypoint;
  char *cmd[FY_RECIPE_MAX_LIST]; size_t ncmd;
  char *env[FY_RECIPE_MAX_LIST]; size_t nenv; /* "K=V" */
  char workdir[1024];
  char user[256];         /* User: "name", "uid", "uid:gid", "name:group" */
  uint64_t settle_ms;
  int health_port;
  char health_cmd[1024];  /* shell form (run by the image's /bin/sh) */
  char *health_argv[FY_RECIPE_MAX_LIST]; size_t nhealth_argv; /* exec form */
  char stop_signal[16];   /* StopSignal, "" for SIGTERM */
  int64_t stop_timeout_ms; /* -1: the agent's default (10 s) */
  int64_t health_interval_ms; /* run.health.interval; -1: the agent's default (30 s) */
  char restart[16];        /* run.restart: always, on-failure, never; "" for the default */
  fy_runspec spec;        /* run.capabilities and run.resources */
  fy_mounts mounts;       /* volumes: and devices: */
  json_t *config_decl;    /* config: {env, files, secrets}, NULL when absent (owned: fy_recipe_free) */
  fy_affinity affinity;   /* where it should run (nodeAffinity); carried in the image config */
  /* test */
  char *test[FY_RECIPE_MAX_LIST]; size_t ntest;
  /* packing */
  int zstd_level;
  int64_t mtime;          /* SOURCE_DATE_EPOCH, else the recipe's mtime key, else 0 */
} fy_recipe;

/* Loads path. FY_ECONFIG with "FILE:LINE: what, expected what" in err. */
int fy_recipe_load(const char *path, fy_recipe *r, char *err, size_t errlen) FY_WUR;
void fy_recipe_free(fy_recipe *r);

#endif
