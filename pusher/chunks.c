#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chunks.h"
#include "layout.h"

void fy_chunks_init(fy_chunks *c, const struct fy_layout *layout, size_t nslots) {
  memset(c, 0, sizeof *c);
  c->layout = layout;
  fy_chunks_resize(c, nslots);
}

void fy_chunks_resize(fy_chunks *c, size_t nslots) {
  if (nslots < 1) nslots = 1;
  if (nslots > FY_CHUNKS_MAX_SLOTS) nslots = FY_CHUNKS_MAX_SLOTS;
  for (size_t i = nslots; i < c->nslots; i++) {
    free(c->slots[i].data);
    memset(&c->slots[i], 0, sizeof c->slots[i]);
  }
  c->nslots = nslots;
}

void fy_chunks_free(fy_chunks *c) {
  for (size_t i = 0; i < FY_CHUNKS_MAX_SLOTS; i++) free(c->slots[i].data);
  memset(c, 0, sizeof *c);
}

static int fill(fy_chunks *c, fy_chunk_slot *s, const fy_digest *d, uint64_t offset, size_t want) {
  char path[4200];
  if (!s->data && !(s->data = malloc(FY_CHUNK))) return FY_ENOMEM;
  s->used = 0;
  fy_layout_blob_path(c->layout, d, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fy_err_from_errno(errno);
  size_t got = 0;
  while (got < want) {
    ssize_t r = pread(fd, s->data + got, want - got, (off_t)(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != want) return FY_EIO;
  s->digest = *d;
  s->offset = offset;
  s->len = want;
  c->disk_bytes += want;
  return FY_OK;
}

int fy_chunks_get(fy_chunks *c, const fy_digest *d, uint64_t offset, size_t want, const uint8_t **data) {
  fy_chunk_slot *victim = &c->slots[0];
  if (want > FY_CHUNK) want = FY_CHUNK;
  c->tick++;
  for (size_t i = 0; i < c->nslots; i++) {
    fy_chunk_slot *s = &c->slots[i];
    if (s->used && s->offset == offset && s->len == want && fy_digest_equal(&s->digest, d)) {
      s->used = c->tick;
      *data = s->data;
      return FY_OK;
    }
    if (s->used < victim->used) victim = s;
  }
  int rc = fill(c, victim, d, offset, want);
  if (rc != FY_OK) return rc;
  victim->used = c->tick;
  *data = victim->data;
  return FY_OK;
}
