#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki.h"
#include "target.h"

int fy_target_parse(const char *spec, fy_target *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  const char *at = strchr(spec, '@');
  const char *hp = spec;
  if (at) {
    size_t n = (size_t)(at - spec);
    if (n == 0 || n >= sizeof t->name) goto bad;
    memcpy(t->name, spec, n);
    if (!fy_pki_valid_name(t->name)) {
      snprintf(err, errlen, "target '%s': '%s' is not a valid node name", spec, t->name);
      return FY_EINVAL;
    }
    hp = at + 1;
  }
  const char *colon = strrchr(hp, ':');
  if (!colon || colon == hp) goto bad;
  const char *h = hp, *he = colon;
  if (*h == '[') {
    if (he[-1] != ']') goto bad;
    h++;
    he--;
  }
  size_t hn = (size_t)(he - h);
  if (hn == 0 || hn >= sizeof t->host) goto bad;
  memcpy(t->host, h, hn);
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end != '\0' || colon[1] == '\0' || port < 1 || port > 65535) goto bad;
  snprintf(t->port, sizeof t->port, "%ld", port);
  snprintf(t->address, sizeof t->address, "%s", hp);
  return FY_OK;
bad:
  snprintf(err, errlen, "target '%s': expected HOST:PORT or NAME@HOST:PORT", spec);
  return FY_EINVAL;
}
