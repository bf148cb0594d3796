/* Whole-file reading and crash-safe writing.
 *     uint8_t *b; size_t n;
 *     if (qd_file_read("m.qm", &b, &n)) die(qd_errmsg());   // b is NUL-terminated, free() it
 *     qd_file_write_atomic("out.qm", b, n);                  // temp, fsync, rename, dir fsync
 *     qd_file_mkdirs("runs/study");                          // mkdir -p
 * A reader never sees a half-written file: the rename is the commit. */
#ifndef QD_CORE_FILE_H
#define QD_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

qd_err qd_file_read(const char *path, uint8_t **data, size_t *len);
/* Temp file (unique per call), write, fsync, rename over path, fsync the directory. */
qd_err qd_file_write_atomic(const char *path, const void *data, size_t len);
/* fsync of the directory that holds path (after a rename or a new link in it). */
qd_err qd_file_sync_dir(const char *path);
/* mkdir -p: every missing directory of path. */
qd_err qd_file_mkdirs(const char *path);
/* A directory only its owner may enter (0700; parents as qd_file_mkdirs): created if missing
 * (and its parent fsynced), its group and other permissions removed if it exists. */
qd_err qd_file_mkdir_private(const char *path);

#endif
