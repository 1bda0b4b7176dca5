#include <errno.h>
#include <string.h>

#include "ferry/error.h"

const char *fy_err_name(int err) {
  switch (err) {
  case FY_OK: return "OK";
#define FY__ERR_NAME(name, code, msg) case code: return #name;
    FY_ERRNO_MAP(FY__ERR_NAME)
#undef FY__ERR_NAME
  default: return "EUNKNOWN";
  }
}

int fy_err_parse(const char *name) {
  if (!name) return 0;
#define FY__ERR_PARSE(nm, code, msg) if (strcmp(name, #nm) == 0) return code;
  FY_ERRNO_MAP(FY__ERR_PARSE)
#undef FY__ERR_PARSE
  return 0;
}

const char *fy_strerror(int err) {
  switch (err) {
  case FY_OK: return "success";
#define FY__ERR_MSG(name, code, msg) case code: return msg;
    FY_ERRNO_MAP(FY__ERR_MSG)
#undef FY__ERR_MSG
  default: return "unknown error";
  }
}

int fy_err_from_errno(int errnum) {
  switch (errnum) {
  case 0: return FY_OK;
  case ENOMEM: return FY_ENOMEM;
  case ENOENT: return FY_ENOENT;
  case ENOSPC: case EDQUOT: return FY_ENOSPC;
  case EEXIST: return FY_EEXIST;
  case EINVAL: return FY_EINVAL;
  case ETIMEDOUT: return FY_ETIMEDOUT;
  case ENOEXEC: return FY_EEXEC;
  case EAGAIN: return FY_EAGAIN;
  case EBUSY: return FY_EBUSY;
  case ECONNREFUSED: case ECONNRESET: case EHOSTUNREACH: case ENETUNREACH: return FY_ECONN;
  case ELOOP: case EXDEV: return FY_EUNSAFE;
  default: return FY_EIO;
  }
}
