/* A minimal test harness: CHECK counts, prints failures with file and line, and the last line
 * of every test program is "N passed, N failed" (the closing line CI reads). A program that ran
 * no check at all fails. */
#ifndef FERRY_TEST_CHECK_H
#define FERRY_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (cond) {                                                                 \
      check_passed++;                                                           \
    } else {                                                                    \
      check_failed++;                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
    }                                                                           \
  } while (0)

#define CHECK_INT(a, b)                                                                       \
  do {                                                                                        \
    long long a_ = (long long)(a), b_ = (long long)(b);                                       \
    if (a_ == b_) {                                                                           \
      check_passed++;                                                                         \
    } else {                                                                                  \
      check_failed++;                                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__,  \
              #a, #b, a_, b_);                                                                \
    }                                                                                         \
  } while (0)

#define CHECK_STR(a, b)                                                                          \
  do {                                                                                           \
    const char *a_ = (a), *b_ = (b);                                                             \
    if (a_ && b_ && strcmp(a_, b_) == 0) {                                                       \
      check_passed++;                                                                            \
    } else {                                                                                     \
      check_failed++;                                                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__, __LINE__, \
              #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                   \
    }                                                                                            \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                                               \
  do {                                                                                            \
    const char *h_ = (hay), *n_ = (needle);                                                       \
    if (h_ && strstr(h_, n_)) {                                                                   \
      check_passed++;                                                                             \
    } else {                                                                                      \
      check_failed++;                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: \"%s\" contains \"%s\"\n", __FILE__, __LINE__,       \
              h_ ? h_ : "(null)", n_);                                                            \
    }                                                                                             \
  } while (0)

/* A test program that checked nothing proves nothing: it fails. */
static inline int check_done(const char *name) {
  if (check_passed + check_failed == 0) {
    fprintf(stderr, "%s: no check ran\n", name);
    check_failed = 1;
  }
  printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
  return check_failed ? 1 : 0;
}

#endif
