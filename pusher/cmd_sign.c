/* ferry key gen / ferry sign: release keys and signatures (sign.h, signing.h). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "ferry/fsutil.h"
#include "ferry/yaml.h"
#include "pki.h"
#include "signing.h"

static void key_usage(FILE *f) {
  fprintf(f, "usage: ferry key gen [--out DIR] [--force]\n"
             "Creates a release signing key: DIR/release.key (private, mode 0600; keep it offline)\n"
             "and DIR/release.pub (copy it to each device and list it under trust.keys in ferryd's\n"
             "config). DIR defaults to $FERRY_HOME/keys (~/.ferry/keys). Keys are ECDSA P-256.\n");
}

int fy_cmd_key(int argc, char **argv) {
  static const struct option opts[] = {
      {"out", required_argument, 0, 'o'}, {"force", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  char dir[4096] = "", priv_path[4200], pub_path[4200], err[300];
  int force = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
    switch (c) {
    case 'o': snprintf(dir, sizeof dir, "%s", optarg); break;
    case 'f': force = 1; break;
    case 'h': key_usage(stdout); return 0;
    default: key_usage(stderr); return 2;
    }
  }
  if (argc - optind != 1 || strcmp(argv[optind], "gen") != 0) {
    key_usage(stderr);
    return 2;
  }
  if (!dir[0]) fy_cli_home("keys", dir, sizeof dir);
  snprintf(priv_path, sizeof priv_path, "%s/release.key", dir);
  snprintf(pub_path, sizeof pub_path, "%s/release.pub", dir);
  struct stat st;
  if (!force && stat(priv_path, &st) == 0) {
    fy_cli_err("%s exists: a new key would orphan every release signed with it (use --force to replace it)", priv_path);
    return 1;
  }
  int rc = fy_mkdirs(dir, 0700);
  if (rc != FY_OK) {
    fy_cli_err("%s: %s", dir, fy_strerror(rc));
    return 1;
  }
  char *priv = NULL, *pub = NULL;
  if ((rc = fy_sign_keygen(&priv, &pub, err, sizeof err)) != FY_OK) {
    fy_cli_err("%s", err);
    return 1;
  }
  fy_sign_key *k = NULL;
  rc = fy_sign_key_parse(pub, strlen(pub), 0, &k, err, sizeof err);
  if (rc == FY_OK) rc = fy_file_write_atomic(priv_path, priv, strlen(priv), 0600);
  if (rc == FY_OK) rc = fy_file_write_atomic(pub_path, pub, strlen(pub), 0644);
  free(priv);
  free(pub);
  if (rc != FY_OK) {
    fy_cli_err("cannot write the key to %s: %s", dir, fy_strerror(rc));
    fy_sign_key_free(k);
    return 1;
  }
  printf("created release key %s\n  private: %s (mode 0600; keep it off the machines that push)\n  public:  %s (list it "
         "under trust.keys on each device)\n",
         fy_sign_key_id(k), priv_path, pub_path);
  fy_sign_key_free(k);
  return 0;
}

static void sign_usage(FILE *f) {
  fprintf(f, "usage: ferry sign LAYOUT[:REF] --key FILE --version N [--app NAME] [--expires DURATION|DATE]\n"
             "Signs the image LAYOUT[:REF] names for app NAME at version N. The signature covers the\n"
             "image digest (the index or manifest REF names), the app, the version and an expiry time,\n"
             "and is stored in the layout as an OCI artifact tagged sha256-<hex>.sig (cosign's scheme,\n"
             "with the OCI 1.1 subject), so it travels: ferry publish, ferry bundle and skopeo copy of\n"
             "both tags keep it. A device whose ferryd trusts the key refuses a release that is unsigned (when\n"
             "require_signature is on), tampered with, expired, or older than the version it runs.\n"
             "  --key FILE          the private key from 'ferry key gen'\n"
             "  --version N         a number that grows with every release (e.g. a CI build number), 1 to 2^63-1\n"
             "  --app NAME          default: the name a push would use (the title, the repository, the folder; never a tag)\n"
             "  --expires D         a duration such as 90d or 12h, or a UTC time 2027-03-01T00:00:00Z\n"
             "                      (default 90d)\n");
}

int fy_cmd_sign(int argc, char **argv) {
  static const struct option opts[] = {{"key", required_argument, 0, 'k'},     {"version", required_argument, 0, 'v'},
                                       {"app", required_argument, 0, 'a'},     {"expires", required_argument, 0, 'e'},
                                       {"help", no_argument, 0, 'h'},          FY_CLI_REGISTRY_OPTIONS,
                                       {0, 0, 0, 0}};
  const char *keyfile = NULL, *version_s = NULL, *expires_s = "90d";
  char app[64] = "", err[1024];
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int r = fy_cli_registry_opt(c, optarg);
    if (r < 0) return 2;
    if (r > 0) continue;
    switch (c) {
    case 'k': keyfile = optarg; break;
    case 'v': version_s = optarg; break;
    case 'a': snprintf(app, sizeof app, "%s", optarg); break;
    case 'e': expires_s = optarg; break;
    case 'h': sign_usage(stdout); return 0;
    default: sign_usage(stderr); return 2;
    }
  }
  if (argc - optind != 1 || !keyfile || !version_s) {
    fy_cli_err("usage: ferry sign LAYOUT[:REF] --key FILE --version N [--app NAME] [--expires 90d]");
    return 2;
  }
  uint64_t version;
  if (fy_parse_u64(version_s, 1, FY_VERSION_MAX, &version) != FY_OK) {
    fy_cli_err("--version: expected a whole number from 1 to 9223372036854775807 (2^63-1), got '%s'", version_s);
    return 2;
  }
  int64_t now = (int64_t)time(NULL), expires;
  uint64_t ms;
  if (fy_time_parse_utc(expires_s, &expires) == FY_OK) {
    if (expires <= now) {
      fy_cli_err("--expires %s is in the past", expires_s);
      return 2;
    }
  } else if (fy_parse_duration_ms(expires_s, &ms) == FY_OK && ms >= 1000 && ms <= 3650ull * 86400000ull) {
    expires = now + (int64_t)(ms / 1000);
  } else {
    fy_cli_err("--expires: expected a duration such as 90d or 12h (at most 3650d), or a UTC time such as "
               "2027-03-01T00:00:00Z, got '%s'", expires_s);
    return 2;
  }
  char *pem = NULL;
  size_t len;
  int rc = fy_file_read(keyfile, FY_KEY_PEM_MAX, &pem, &len);
  if (rc != FY_OK) {
    fy_cli_err("--key %s: %s", keyfile, rc == FY_ETOOBIG ? "too large to be a key" : fy_strerror(rc));
    return 1;
  }
  fy_sign_key *key = NULL;
  rc = fy_sign_key_parse(pem, len, 1, &key, err, sizeof err);
  free(pem);
  if (rc != FY_OK) {
    fy_cli_err("--key %s: %s", keyfile, err);
    return 1;
  }
  fy_layout l;
  fy_layout_sig sig;
  int ret = 1;
  if (fy_layout_open(&l, argv[optind], err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    goto out;
  }
  if (!app[0]) fy_layout_app_name(&l, app, sizeof app);
  if (!app[0]) {
    fy_cli_err("cannot derive an app name; use --app NAME");
    goto out_layout;
  }
  if (!fy_pki_valid_name(app)) {
    fy_cli_err("--app: '%s' is not an app name (1-63 of a-z, 0-9, '-', '.', '_')", app);
    goto out_layout;
  }
  if (fy_layout_sign(&l, app, version, expires, key, &sig, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    goto out_layout;
  }
  char ds[FY_DIGEST_STR], exp[32];
  fy_time_format_utc(expires, exp, sizeof exp);
  printf("signed %s (%s): app %s, version %llu, expires %s, key %s\n", l.name,
         fy_digest_format(&sig.digest, ds), app, (unsigned long long)version, exp, fy_sign_key_id(key));
  ret = 0;
out_layout:
  fy_layout_close(&l);
out:
  fy_sign_key_free(key);
  return ret;
}
