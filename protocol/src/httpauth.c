/* WWW-Authenticate, as registries send it; see httpauth.h.
 *
 *   WWW-Authenticate = 1#challenge
 *   challenge   = auth-scheme [ 1*SP #auth-param ]
 *   auth-param  = token BWS "=" BWS ( token / quoted-string )
 *
 * A comma ends either a parameter or a challenge: what follows it is a parameter when a token
 * is followed by "=", else the next challenge's scheme. (token68 forms are not used by
 * registries and are refused as malformed.) */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ferry/httpauth.h"
#include "ferry/text.h"

typedef struct cur {
  const char *s;
  size_t n, i;
} cur;

static int is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ws(cur *c) {
  while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t')) c->i++;
}

/* A token into out (cap bytes with NUL); its length, 0 when none is there; -1 when too long. */
static int token(cur *c, char *out, size_t cap) {
  size_t start = c->i;
  while (c->i < c->n && is_tchar(c->s[c->i])) c->i++;
  size_t len = c->i - start;
  if (len >= cap) return -1;
  memcpy(out, c->s + start, len);
  out[len] = '\0';
  return (int)len;
}

/* A quoted-string (the opening quote is at c->i): FY_OK, FY_ESYNTAX, FY_ETOOBIG. */
static int quoted(cur *c, char *out, size_t cap) {
  size_t o = 0;
  c->i++;
  while (c->i < c->n) {
    char ch = c->s[c->i++];
    if (ch == '"') {
      out[o] = '\0';
      return FY_OK;
    }
    if (ch == '\\') {
      if (c->i >= c->n) return FY_ESYNTAX;
      ch = c->s[c->i++];
    }
    if ((unsigned char)ch < 0x20 && ch != '\t') return FY_ESYNTAX;
    if (ch == 0x7f) return FY_ESYNTAX;
    if (o + 1 >= cap) return FY_ETOOBIG;
    out[o++] = ch;
  }
  return FY_ESYNTAX; /* no closing quote */
}

typedef struct parsed {
  fy_auth_challenge c;
  char scheme[32];
} parsed;

/* One challenge's parameters, after its scheme and the spaces behind it. */
static int params(cur *c, parsed *p) {
  char name[32], value[FY_AUTH_VALUE_MAX];
  for (;;) {
    size_t save = c->i;
    if (c->i < c->n && c->s[c->i] == ',') return FY_OK; /* a challenge without parameters ends here */
    int nl = token(c, name, sizeof name);
    if (nl == 0) return c->i >= c->n ? FY_OK : FY_ESYNTAX;
    if (nl < 0) {
      /* a long token: a parameter name no registry uses, or the next challenge's scheme */
      c->i = save;
      return FY_OK;
    }
    skip_ws(c);
    if (c->i >= c->n || c->s[c->i] != '=') {
      c->i = save; /* the next challenge */
      return FY_OK;
    }
    c->i++;
    skip_ws(c);
    int rc;
    if (c->i < c->n && c->s[c->i] == '"') {
      if ((rc = quoted(c, value, sizeof value)) != FY_OK) return rc;
    } else {
      int vl = token(c, value, sizeof value);
      if (vl < 0) return FY_ETOOBIG;
      if (vl == 0) return FY_ESYNTAX;
    }
    char *dst = NULL;
    size_t cap = 0;
    if (strcasecmp(name, "realm") == 0) dst = p->c.realm, cap = sizeof p->c.realm;
    else if (strcasecmp(name, "service") == 0) dst = p->c.service, cap = sizeof p->c.service;
    else if (strcasecmp(name, "scope") == 0) dst = p->c.scope, cap = sizeof p->c.scope;
    else if (strcasecmp(name, "error") == 0) dst = p->c.error, cap = sizeof p->c.error;
    if (dst) {
      if (strlen(value) >= cap) return FY_ETOOBIG;
      memcpy(dst, value, strlen(value) + 1);
    }
    skip_ws(c);
    if (c->i >= c->n) return FY_OK;
    if (c->s[c->i] != ',') return FY_ESYNTAX;
    while (c->i < c->n && (c->s[c->i] == ',' || c->s[c->i] == ' ' || c->s[c->i] == '\t')) c->i++;
    if (c->i >= c->n) return FY_OK;
  }
}

int fy_auth_parse(const char *s, size_t n, fy_auth_challenge *out, char *err, size_t errlen) {
  cur c = {s, n, 0};
  parsed best, p;
  char others[200] = "";
  int rc;
  memset(out, 0, sizeof *out);
  memset(&best, 0, sizeof best);
  if (n > FY_AUTH_HEADER_MAX) return fy_text_fail(err, errlen, FY_ETOOBIG, "WWW-Authenticate: over %d bytes", FY_AUTH_HEADER_MAX);
  for (;;) {
    while (c.i < c.n && (c.s[c.i] == ',' || c.s[c.i] == ' ' || c.s[c.i] == '\t')) c.i++;
    if (c.i >= c.n) break;
    memset(&p, 0, sizeof p);
    int sl = token(&c, p.scheme, sizeof p.scheme);
    if (sl <= 0) return fy_text_fail(err, errlen, FY_ESYNTAX, "WWW-Authenticate: expected an auth scheme at byte %zu", c.i);
    if (c.i < c.n && c.s[c.i] != ' ' && c.s[c.i] != '\t' && c.s[c.i] != ',')
      return fy_text_fail(err, errlen, FY_ESYNTAX, "WWW-Authenticate: malformed challenge '%s' (byte %zu)", p.scheme, c.i);
    skip_ws(&c);
    if ((rc = params(&c, &p)) != FY_OK)
      return fy_text_fail(err, errlen, rc, "WWW-Authenticate: %s in the %s challenge", rc == FY_ETOOBIG ? "a value too long" : "malformed parameters",
                          p.scheme);
    if (strcasecmp(p.scheme, "Bearer") == 0) p.c.scheme = FY_AUTH_BEARER;
    else if (strcasecmp(p.scheme, "Basic") == 0) p.c.scheme = FY_AUTH_BASIC;
    else {
      size_t o = strlen(others);
      fy_text_fmt(others + o, sizeof others - o, "%s%s", o ? ", " : "", p.scheme);
      continue;
    }
    if (p.c.scheme == FY_AUTH_BEARER && !p.c.realm[0])
      return fy_text_fail(err, errlen, FY_ESYNTAX, "WWW-Authenticate: a Bearer challenge without a realm (the token endpoint)");
    if (best.c.scheme == FY_AUTH_NONE || (best.c.scheme == FY_AUTH_BASIC && p.c.scheme == FY_AUTH_BEARER)) best = p;
  }
  if (best.c.scheme == FY_AUTH_NONE)
    return fy_text_fail(err, errlen, others[0] ? FY_EUNSUPPORTED : FY_ESYNTAX, "WWW-Authenticate: %s%s",
                        others[0] ? "only schemes ferry does not speak: " : "no challenge", others);
  *out = best.c;
  return FY_OK;
}
