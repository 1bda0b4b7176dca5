/* ferry's one error space.
 *
 * Every fallible function in ferry returns 0 (FY_OK) or one of these negative codes. The same
 * numbers travel on the wire in error and result messages, so a pusher can say exactly what
 * failed on a device. Codes are stable: append, never renumber. */
#ifndef FERRY_ERROR_H
#define FERRY_ERROR_H

#define FY_ERRNO_MAP(X)                                                                     \
  X(EAGAIN,     -1,  "resource temporarily unavailable (need more input)")                 \
  X(ENOMEM,     -2,  "out of memory")                                                       \
  X(EINVAL,     -3,  "invalid argument")                                                    \
  X(ETOOBIG,    -4,  "length over the hard ceiling")                                       \
  X(EPROTO,     -5,  "protocol violation")                                                  \
  X(EVERSION,   -6,  "no common protocol version")                                          \
  X(ETLS,       -7,  "TLS failure")                                                         \
  X(ECERT,      -8,  "peer certificate not trusted by the fleet CA")                        \
  X(EROLE,      -9,  "peer certificate has the wrong role (extended key usage)")           \
  X(ENAME,      -10, "peer certificate does not carry the expected name")                  \
  X(ETIMEDOUT,  -11, "timed out")                                                           \
  X(ECONN,      -12, "connection failed")                                                   \
  X(EEOF,       -13, "peer closed the connection")                                          \
  X(EIO,        -14, "input/output error")                                                  \
  X(ENOENT,     -15, "no such file or directory")                                           \
  X(ECONFIG,    -16, "invalid configuration")                                               \
  X(ENOPLATFORM,-17, "no image variant matches the node's platform")                       \
  X(EDIGEST,    -18, "content does not match its digest")                                   \
  X(EUNSAFE,    -19, "unsafe path in layer")                                                \
  X(ENOSPC,     -20, "no space left on device")                                             \
  X(EEXEC,      -21, "cannot execute the release")                                          \
  X(EUNHEALTHY, -22, "release unhealthy")                                                   \
  X(EEXIST,     -23, "already exists")                                                      \
  X(EBUSY,      -24, "busy")                                                                \
  X(ESYNTAX,    -25, "syntax error")                                                        \
  X(EUNSUPPORTED,-26, "unsupported")                                                        \
  X(EPEER,      -27, "the peer reported an error")                                          \
  X(ENOAPP,     -28, "no such app on the node")                                             \
  X(ECANCELED,  -29, "canceled")                                                            \
  X(EUNSIGNED,  -30, "release not signed")                                                  \
  X(ESIGNATURE, -31, "release signature does not verify")                                   \
  X(EUNTRUSTED, -32, "release signed by a key the node does not trust")                     \
  X(EEXPIRED,   -33, "release signature expired")                                           \
  X(EDOWNGRADE, -34, "release version lower than the installed one")                      \
  X(EPOLICY,    -35, "refused by the node's policy")

enum fy_errno {
  FY_OK = 0,
#define FY__ERR_ENUM(name, code, msg) FY_##name = (code),
  FY_ERRNO_MAP(FY__ERR_ENUM)
#undef FY__ERR_ENUM
  FY__ERR_MIN = -35 /* the last code above: a peer's code outside the table reads as EPEER */
};

/* Stable short name, e.g. "ETOOBIG". Unknown codes give "EUNKNOWN". Never NULL; static storage. */
const char *fy_err_name(int err);
/* The code of a name fy_err_name gives ("EBUSY"); 0 for NULL, "OK" or a name it does not know. */
int fy_err_parse(const char *name);

/* Human message, e.g. "length over the hard ceiling". Never NULL; static storage. */
const char *fy_strerror(int err);

/* Maps an errno value (positive) to the closest ferry code. */
int fy_err_from_errno(int errnum);

#if defined(__GNUC__)
#define FY_WUR __attribute__((warn_unused_result))
#else
#define FY_WUR
#endif

#endif
