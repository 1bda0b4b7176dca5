/* Image names the way skopeo spells them (containers-transports(5)), parsed without touching the
 * disk or the network:
 *
 *   PATH                          an OCI image layout (the pusher decides where a PATH:REF splits,
 *                                 since only the file system knows which prefix is a directory)
 *   oci:DIR[:REF]                 a layout; REF is everything after the first ':' and may hold ':'
 *   oci-archive:FILE[:REF]        a tar of a layout
 *   docker-archive:FILE           `docker save` / `skopeo copy docker-archive:` output
 *   docker://HOST[:PORT]/REPO[:TAG|@DIGEST]
 *
 * and the rules that derive an app name from a repository, never from a tag. Pure. */
#ifndef FERRY_IMAGEREF_H
#define FERRY_IMAGEREF_H

#include <stddef.h>

#include "ferry/digest.h"
#include "ferry/error.h"

#define FY_REF_HOST_MAX 256
#define FY_REF_REPO_MAX 256
#define FY_REF_TAG_MAX 128
#define FY_REF_MAX 256 /* an oci: REF (org.opencontainers.image.ref.name) */
#define FY_DOCKER_HUB "docker.io"

typedef enum {
  FY_IMG_LAYOUT = 0,     /* a bare path */
  FY_IMG_OCI,            /* oci: */
  FY_IMG_OCI_ARCHIVE,    /* oci-archive: */
  FY_IMG_DOCKER_ARCHIVE, /* docker-archive: */
  FY_IMG_DOCKER,         /* docker:// */
} fy_img_transport;

typedef struct fy_docker_ref {
  char host[FY_REF_HOST_MAX];   /* "registry.example.com:5000"; docker.io when the name has none */
  char repo[FY_REF_REPO_MAX];   /* "team/app" ("library/alpine" on docker.io) */
  char tag[FY_REF_TAG_MAX];     /* "" with a digest; "latest" when the name has neither */
  char digest[FY_DIGEST_STR];   /* "sha256:<hex>" or "" */
} fy_docker_ref;

typedef struct fy_image_name {
  fy_img_transport transport;
  char path[4096];              /* the layout, archive or bare path ("" for docker://) */
  char ref[FY_REF_MAX];         /* oci: and oci-archive: REF, "" when none */
  fy_docker_ref docker;         /* docker:// only */
} fy_image_name;

/* Splits a name into its transport and parts. FY_EINVAL with the reason in err for an empty
 * path, a bad docker reference or an oversized part; FY_EUNSUPPORTED for skopeo's other
 * transports (dir:, containers-storage:, docker-daemon:, …), naming the skopeo copy that helps.
 * Anything else is a bare path (paths may hold ':'). */
int fy_image_name_parse(const char *spec, fy_image_name *out, char *err, size_t errlen) FY_WUR;

/* HOST[:PORT]/REPO[:TAG|@sha256:HEX] (without "docker://"), with Docker's defaults: no host
 * means docker.io, a one-part repository there means library/NAME, no tag nor digest means
 * "latest". The first part is a host when it holds '.' or ':' or is "localhost". Repository
 * parts are lower-case [a-z0-9] runs joined by '.', '_', "__" or '-' (distribution's grammar). */
int fy_docker_ref_parse(const char *s, fy_docker_ref *out, char *err, size_t errlen) FY_WUR;

/* "HOST/REPO:TAG" or "HOST/REPO@DIGEST", as a person would type it again. */
const char *fy_docker_ref_format(const fy_docker_ref *r, char *buf, size_t len);

/* The repository an oci: REF names when it is a reference and not a bare tag: a REF holding '/'
 * or ':' ("example.com/probe:1.0", "probe:1.0") names one, "1.0.0" or "latest" does not. Writes
 * the repository's last path component ("probe") and returns 1; 0 (and "") for a bare tag. */
int fy_ref_repository_name(const char *ref, char *out, size_t len);

/* An app name made from any text: lower case, [a-z0-9._-], at most 63 characters, not starting
 * with '.', '-' or '_'. "" when nothing is left. */
void fy_app_name_sanitize(const char *in, char *out, size_t len);
/* What an image is called when it carries no claim and no title: the repository REF names (see
 * above), else the folder's name, or the file's without its extension (is_file). Never a tag. */
void fy_app_name_hint(const char *ref, const char *path, int is_file, char *out, size_t len);

#endif
