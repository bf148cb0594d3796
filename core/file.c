/* See file.h. Errors name the path. */
#define _GNU_SOURCE
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

qd_err qd_file_read(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) /* only a missing file is ENOENT: EACCES, EMFILE, ... are errors of their own */
        return qd_seterr(errno == ENOENT ? QD_ENOENT : QD_EIO, "%s: cannot open (%s)", path,
                         strerror(errno));
    long n = -1;
    if (!fseek(f, 0, SEEK_END))
        n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return qd_seterr(QD_EIO, "%s: cannot size", path);
    }
    uint8_t *b = malloc((size_t)n + 1);
    if (!b) {
        fclose(f);
        return qd_seterr(QD_ENOMEM, "%s: cannot allocate %ld bytes", path, n);
    }
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(b);
        return qd_seterr(QD_EIO, "%s: read %zu of %ld bytes", path, got, n);
    }
    b[n] = 0;
    *data = b;
    *len = (size_t)n;
    return QD_OK;
}

qd_err qd_file_sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1,
                 slash ? (slash == path ? "/" : path) : ".") >= (int)sizeof dir)
        return qd_seterr(QD_EINVAL, "%.64s...: path too long", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return qd_seterr(QD_EIO, "%s: cannot open (%s)", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc ? qd_seterr(QD_EIO, "%s: fsync failed (%s)", dir, strerror(errno)) : QD_OK;
}

qd_err qd_file_write_atomic(const char *path, const void *data, size_t len)
{
    static atomic_uint seq; /* two threads writing one path never share a temp file */
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d.%u", path, (int)getpid(), atomic_fetch_add(&seq, 1)) >=
        (int)sizeof tmp)
        return qd_seterr(QD_EINVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666); /* umask applies */
    if (fd < 0)
        return qd_seterr(QD_EIO, "%s: cannot create (%s)", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    int err = 0;
    while (left && !err) {
        ssize_t w = write(fd, p, left);
        if (w > 0) {
            p += w;
            left -= (size_t)w;
        } else if (w == 0 || errno != EINTR)
            err = w == 0 ? EIO : errno;
    }
    if (!err && fsync(fd))
        err = errno;
    if (close(fd) && !err)
        err = errno;
    if (!err && rename(tmp, path))
        err = errno;
    if (err) {
        unlink(tmp);
        return qd_seterr(QD_EIO, "%s: write failed (%s)", path, strerror(err));
    }
    return qd_file_sync_dir(path); /* the rename itself survives a power cut */
}

qd_err qd_file_mkdir_private(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char parent[4096];
        if (snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path) >=
            (int)sizeof parent)
            return qd_seterr(QD_EINVAL, "%.64s...: path too long", path);
        QD_TRY(qd_file_mkdirs(parent));
    }
    if (!mkdir(path, 0700))
        return qd_file_sync_dir(path); /* the new entry in its parent */
    struct stat st;
    if (errno != EEXIST || stat(path, &st) || !S_ISDIR(st.st_mode))
        return qd_seterr(QD_EIO, "%s: cannot create directory (%s)", path, strerror(errno));
    if ((st.st_mode & 077) && chmod(path, st.st_mode & 0700))
        return qd_seterr(QD_EIO, "%s: cannot make it owner-only (%s)", path, strerror(errno));
    return QD_OK;
}

qd_err qd_file_mkdirs(const char *path)
{
    char b[4096];
    if (snprintf(b, sizeof b, "%s", path) >= (int)sizeof b)
        return qd_seterr(QD_EINVAL, "%.64s...: path too long", path);
    for (char *s = b + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(b, 0755);
            *s = '/';
        }
    if (mkdir(b, 0755) && errno != EEXIST)
        return qd_seterr(QD_EIO, "%s: cannot create directory (%s)", path, strerror(errno));
    return QD_OK;
}
