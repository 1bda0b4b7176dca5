/* The fleet CA on disk: DIR/ca.pem and DIR/ca-key.pem, identities (key.pem, cert.pem, ca.pem),
 * DIR/issued.txt (the serials 'ferry cert revoke --name' finds), DIR/revoked.txt and DIR/crl.pem.
 * The certificates and lists themselves are written by protocol/src/x509.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry/fsutil.h"
#include "ferry/x509.h"
#include "pki.h"

#define CRL_MAX_REVOKED FY_X509_CRL_MAX

int fy_pki_valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || ((c == '-' || c == '.') && i > 0);
    if (!ok) return 0;
  }
  return 1;
}


static int write_file(const char *dir, const char *name, const void *data, mode_t mode, char *err,
                      size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int rc = fy_file_write_atomic(path, data, strlen(data), mode);
  if (rc != FY_OK) snprintf(err, errlen, "%s: %s", path, fy_strerror(rc));
  return rc;
}

static int file_exists(const char *dir, const char *name) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return stat(path, &st) == 0;
}

/* Reads DIR/ca.pem and DIR/ca-key.pem. */
static int read_ca(const char *ca_dir, char **ca_pem, size_t *ca_len, char **key_pem, size_t *key_len, char *err,
                   size_t errlen) {
  char path[4096];
  int ret;
  snprintf(path, sizeof path, "%s/ca.pem", ca_dir);
  if ((ret = fy_file_read(path, 65536, ca_pem, ca_len)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, ret == FY_ENOENT ? "no CA here (run 'ferry ca init')" : fy_strerror(ret));
    return ret;
  }
  snprintf(path, sizeof path, "%s/ca-key.pem", ca_dir);
  if ((ret = fy_file_read(path, 65536, key_pem, key_len)) != FY_OK) snprintf(err, errlen, "%s: %s", path, fy_strerror(ret));
  return ret;
}

static void free_ca(char *ca_pem, char *key_pem, size_t key_len) {
  if (key_pem) fy_x509_wipe(key_pem, key_len);
  free(key_pem);
  free(ca_pem);
}

int fy_pki_ca_init(const char *dir, int days, int force, char *err, size_t errlen) {
  char cert_pem[FY_X509_PEM_MAX], key_pem[FY_X509_PEM_MAX];
  int ret;
  if (!force && (file_exists(dir, "ca.pem") || file_exists(dir, "ca-key.pem"))) {
    snprintf(err, errlen, "%s already holds a CA (ca.pem); refusing to replace it (use --force)", dir);
    return FY_EEXIST;
  }
  if ((ret = fy_mkdirs(dir, 0700)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", dir, fy_strerror(ret));
    return ret;
  }
  if ((ret = fy_x509_new_ca(days, cert_pem, sizeof cert_pem, key_pem, sizeof key_pem, err, errlen)) == FY_OK &&
      (ret = write_file(dir, "ca-key.pem", key_pem, 0600, err, errlen)) == FY_OK)
    ret = write_file(dir, "ca.pem", cert_pem, 0644, err, errlen);
  fy_x509_wipe(key_pem, sizeof key_pem);
  return ret;
}

int fy_pki_issue(const char *ca_dir, const char *name, fy_role role, const char *outdir, int days,
                 long not_before_offset_s, char *err, size_t errlen) {
  char *ca_pem = NULL, *ca_key_pem = NULL, path[4096], cert_pem[FY_X509_PEM_MAX], key_pem[FY_X509_PEM_MAX];
  size_t ca_len = 0, ca_key_len = 0;
  unsigned char serial[16];
  long long not_after = 0;
  int ret;
  if (!fy_pki_valid_name(name)) {
    snprintf(err, errlen, "invalid name '%s': use 1-63 of a-z, 0-9, '-' and '.'", name);
    return FY_EINVAL;
  }
  if ((ret = read_ca(ca_dir, &ca_pem, &ca_len, &ca_key_pem, &ca_key_len, err, errlen)) != FY_OK ||
      (ret = fy_x509_issue(ca_pem, ca_len, ca_key_pem, ca_key_len, name, (int)role, days, not_before_offset_s,
                           cert_pem, sizeof cert_pem, key_pem, sizeof key_pem, serial, &not_after, err, errlen)) != FY_OK)
    goto cleanup;
  if ((ret = fy_mkdirs(outdir, 0700)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", outdir, fy_strerror(ret));
    goto cleanup;
  }
  if ((ret = write_file(outdir, "key.pem", key_pem, 0600, err, errlen)) != FY_OK ||
      (ret = write_file(outdir, "cert.pem", cert_pem, 0644, err, errlen)) != FY_OK ||
      (ret = write_file(outdir, "ca.pem", ca_pem, 0644, err, errlen)) != FY_OK)
    goto cleanup;
  { /* CA/issued.txt: what `ferry cert revoke --name` finds the serials in */
    char line[160], hex[40];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", serial[i]);
    int n = snprintf(line, sizeof line, "%s %s %s %lld\n", hex, name, role == FY_ROLE_AGENT ? "agent" : "pusher", not_after);
    snprintf(path, sizeof path, "%s/issued.txt", ca_dir);
    FILE *f = fopen(path, "a");
    int wrote = f && fwrite(line, 1, (size_t)n, f) == (size_t)n;
    if (f && fclose(f) != 0) wrote = 0;
    if (!wrote) {
      snprintf(err, errlen, "%s: cannot record the certificate's serial", path);
      ret = FY_EIO;
    }
  }
cleanup:
  fy_x509_wipe(key_pem, sizeof key_pem);
  free_ca(ca_pem, ca_key_pem, ca_key_len);
  return ret;
}

/* --- revocation -------------------------------------------------------------------------- */

static int hex_serial(const char *hex, unsigned char out[16]) {
  if (strlen(hex) != 32) return 0;
  for (int i = 0; i < 16; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return 0;
    out[i] = (unsigned char)v;
  }
  return 1;
}

int fy_pki_revoke(const char *ca_dir, const char *name, const char *serial_hex, size_t *nnew, size_t *ntotal, char *err,
                  size_t errlen) {
  static unsigned char serials[CRL_MAX_REVOKED][16], pem[FY_X509_CRL_PEM_MAX];
  static time_t dates[CRL_MAX_REVOKED];
  char path[4096], line[256], *ca_pem = NULL, *key_pem = NULL;
  size_t n = 0, ca_len = 0, key_len = 0;
  int ret = FY_ETLS;
  *nnew = *ntotal = 0;
  /* what was revoked before: CA/revoked.txt, "SERIAL UNIXTIME NAME" */
  snprintf(path, sizeof path, "%s/revoked.txt", ca_dir);
  FILE *f = fopen(path, "r");
  if (!f && errno != ENOENT) { /* an unreadable record must not become an empty list */
    snprintf(err, errlen, "%s: %s: nothing was revoked", path, strerror(errno));
    ret = FY_EIO;
    goto cleanup;
  }
  while (f && fgets(line, sizeof line, f)) {
    char hex[64];
    long long t;
    if (n == CRL_MAX_REVOKED) break;
    if (sscanf(line, "%63s %lld", hex, &t) == 2 && hex_serial(hex, serials[n])) dates[n++] = (time_t)t;
  }
  if (f && ferror(f)) {
    fclose(f);
    snprintf(err, errlen, "%s: cannot be read: nothing was revoked", path);
    ret = FY_EIO;
    goto cleanup;
  }
  if (f) fclose(f);
  size_t before = n;
  /* the new ones: the given serial, or every certificate issued to name (CA/issued.txt) */
  unsigned char want[16];
  if (serial_hex && !hex_serial(serial_hex, want)) {
    snprintf(err, errlen, "--serial: expected 32 hex digits (as openssl x509 -serial prints them), got '%s'", serial_hex);
    ret = FY_EINVAL;
    goto cleanup;
  }
  snprintf(path, sizeof path, "%s/issued.txt", ca_dir);
  f = fopen(path, "r");
  int found = serial_hex != NULL;
  while (f && fgets(line, sizeof line, f)) {
    char hex[64], who[128];
    unsigned char sn[16];
    if (sscanf(line, "%63s %127s", hex, who) != 2 || !hex_serial(hex, sn)) continue;
    if (serial_hex ? memcmp(sn, want, 16) != 0 : strcmp(who, name) != 0) continue;
    found = 1;
    int dup = 0;
    for (size_t i = 0; i < n; i++) dup |= memcmp(serials[i], sn, 16) == 0;
    if (!dup && n == CRL_MAX_REVOKED) {
      fclose(f);
      snprintf(err, errlen, "the revocation list is full (%d certificates): start a new fleet CA", CRL_MAX_REVOKED);
      ret = FY_ETOOBIG;
      goto cleanup;
    }
    if (!dup) {
      memcpy(serials[n], sn, 16);
      dates[n++] = time(NULL);
    }
  }
  if (f) fclose(f);
  if (serial_hex && n == before) { /* not issued here (or before ferry kept the index): revoked all the same */
    int dup = 0;
    for (size_t i = 0; i < n; i++) dup |= memcmp(serials[i], want, 16) == 0;
    if (!dup && n < CRL_MAX_REVOKED) {
      memcpy(serials[n], want, 16);
      dates[n++] = time(NULL);
    }
  }
  if (!found) {
    snprintf(err, errlen, "no certificate issued to '%s' in %s/issued.txt (give --serial, from openssl x509 -serial -noout)", name,
             ca_dir);
    ret = FY_ENOENT;
    goto cleanup;
  }
  if ((ret = read_ca(ca_dir, &ca_pem, &ca_len, &key_pem, &key_len, err, errlen)) != FY_OK ||
      (ret = fy_x509_crl(ca_pem, ca_len, key_pem, key_len, (const unsigned char(*)[16])serials, dates, n, (char *)pem,
                         sizeof pem, err, errlen)) != FY_OK)
    goto cleanup;
  /* the record first, durably, then the list: a list never holds less than the record says */
  snprintf(path, sizeof path, "%s/revoked.txt", ca_dir);
  f = fopen(path, "a");
  for (size_t i = before; f && i < n; i++) {
    char hex[40];
    for (int k = 0; k < 16; k++) snprintf(hex + 2 * k, 3, "%02x", serials[i][k]);
    fprintf(f, "%s %lld %s\n", hex, (long long)dates[i], name ? name : "-");
  }
  if (!f || fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
    if (f) fclose(f);
    snprintf(err, errlen, "%s: cannot record the revocation: nothing was revoked", path);
    ret = FY_EIO;
    goto cleanup;
  }
  if ((ret = write_file(ca_dir, "crl.pem", pem, 0644, err, errlen)) != FY_OK) goto cleanup;
  *nnew = n - before;
  *ntotal = n;
  ret = FY_OK;
cleanup:
  free_ca(ca_pem, key_pem, key_len);
  return ret;
}
