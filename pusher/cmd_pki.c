/* ferry ca init / ferry cert issue */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pki.h"

static int parse_days(const char *s, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v < 1 || v > 36500) {
    fy_cli_err("--days: expected a number of days from 1 to 36500, got '%s'", s);
    return 0;
  }
  *out = (int)v;
  return 1;
}

int fy_cmd_ca(int argc, char **argv) {
  static const struct option opts[] = {
      {"days", required_argument, 0, 'd'}, {"force", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int days = 3650, force = 0, c;
  char err[512];
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'd': if (!parse_days(optarg, &days)) return 2; break;
    case 'f': force = 1; break;
    case 'h': printf("usage: ferry ca init DIR [--days N] [--force]\n"
                     "Creates the fleet CA: DIR/ca.pem and DIR/ca-key.pem (mode 0600).\n"); return 0;
    default: return 2;
    }
  }
  if (argc - optind != 2 || strcmp(argv[optind], "init") != 0) {
    fy_cli_err("usage: ferry ca init DIR [--days N] [--force]");
    return 2;
  }
  const char *dir = argv[optind + 1];
  if (fy_pki_ca_init(dir, days, force, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    return 1;
  }
  printf("created fleet CA in %s (ca.pem, ca-key.pem; keep ca-key.pem private)\n", dir);
  return 0;
}

int fy_cmd_cert(int argc, char **argv) {
  static const struct option opts[] = {
      {"ca", required_argument, 0, 'c'},   {"name", required_argument, 0, 'n'},
      {"role", required_argument, 0, 'r'}, {"out", required_argument, 0, 'o'},
      {"days", required_argument, 0, 'd'}, {"not-before-offset", required_argument, 0, 'b'},
      {"serial", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *ca = NULL, *name = NULL, *role_s = NULL, *out = NULL, *serial = NULL;
  int days = 825, c;
  long offset = 0;
  char err[512];
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'c': ca = optarg; break;
    case 'n': name = optarg; break;
    case 'r': role_s = optarg; break;
    case 'o': out = optarg; break;
    case 'd': if (!parse_days(optarg, &days)) return 2; break;
    case 'b': offset = strtol(optarg, NULL, 10); break;
    case 's': serial = optarg; break;
    case 'h':
      printf("usage: ferry cert issue --ca DIR --name NAME --role agent|pusher|broker --out DIR2 [--days N]\n"
             "       ferry cert revoke --ca DIR (--name NAME | --serial HEX)\n"
             "issue writes DIR2/ca.pem, DIR2/cert.pem and DIR2/key.pem (0600): an identity valid for N days\n"
             "(default 825). Extended key usage: agents serverAuth and clientAuth (they are clients of an MQTT\n"
             "broker), pushers clientAuth only, the broker serverAuth only with OU=broker (NAME: its host name);\n"
             "the SAN is NAME.\n"
             "revoke puts every certificate issued to NAME (or the one with that serial) on the fleet's\n"
             "revocation list, DIR/crl.pem, signed by the CA. Copy it into each pusher's identity directory:\n"
             "pushers carry it to every agent they reach, agents keep the newest and refuse revoked pushers,\n"
             "pushers refuse revoked agents.\n");
      return 0;
    default: return 2;
    }
  }
  if (argc - optind == 1 && strcmp(argv[optind], "revoke") == 0) {
    if (!ca || (!name == !serial)) {
      fy_cli_err("usage: ferry cert revoke --ca DIR (--name NAME | --serial HEX)");
      return 2;
    }
    size_t nnew, ntotal;
    if (fy_pki_revoke(ca, name, serial, &nnew, &ntotal, err, sizeof err) != FY_OK) {
      fy_cli_err("%s", err);
      return 1;
    }
    printf("revoked %zu certificate(s) of %s; %s/crl.pem lists %zu. Copy it into each pusher's identity directory\n"
           "(IDENTITY/crl.pem): pushers carry it to every agent they reach.\n",
           nnew, name ? name : serial, ca, ntotal);
    return 0;
  }
  if (argc - optind != 1 || strcmp(argv[optind], "issue") != 0 || !ca || !name || !role_s || !out) {
    fy_cli_err("usage: ferry cert issue --ca DIR --name NAME --role agent|pusher|broker --out DIR2");
    return 2;
  }
  fy_role role;
  if (strcmp(role_s, "agent") == 0) role = FY_ROLE_AGENT;
  else if (strcmp(role_s, "pusher") == 0) role = FY_ROLE_PUSHER;
  else if (strcmp(role_s, "broker") == 0) role = FY_ROLE_BROKER;
  else {
    fy_cli_err("--role: expected 'agent', 'pusher' or 'broker', got '%s'", role_s);
    return 2;
  }
  if (fy_pki_issue(ca, name, role, out, days, offset, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    return 1;
  }
  printf("issued %s identity '%s' in %s\n", role_s, name, out);
  return 0;
}
