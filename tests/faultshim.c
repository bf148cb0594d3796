/* libqdfault.so: fault injection for tests, by LD_PRELOAD. The file named by $QD_FAULT_FILE holds
 * the faults in force, one per line, re-read whenever it changes (so a test turns faults on and
 * off while the process runs):
 *     CALL ERRNO PATH-SUBSTRING [COUNT]
 *     write ENOSPC /blobs/ 3      the next 3 writes to a file whose path holds "/blobs/" fail
 *     fsync EIO state.db          every fsync of the state database fails
 *     open EACCES admin.key$      opening the admin key fails (open, openat, fopen); '$'
 *                                 anchors the end (its temp files do not match)
 *     rename ENOSPC .qm
 * CALL is open, write (write, pwrite, pwritev), fsync (fsync, fdatasync) or rename (matched on
 * the target); ERRNO is ENOSPC, EIO, EACCES, EMFILE, EROFS or EDQUOT; a write fault writes
 * nothing. Each injected fault is counted in the file $QD_FAULT_FILE.count (one line per
 * fault: "CALL ERRNO PATH"), which tests read to know the faults really happened.
 *
 * Test-only: built beside the tests, never linked into the daemon. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 16

struct rule {
    char call[16], path[256];
    int err;
    long left; /* -1: unlimited */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAX_RULES];
static int nrules;
static struct timespec seen_mtime;
static off_t seen_size = -1;
static __thread int inside; /* our own file access is never faulted */

static int errno_of(const char *s)
{
    static const struct {
        const char *n;
        int e;
    } t[] = {{"ENOSPC", ENOSPC}, {"EIO", EIO},     {"EACCES", EACCES},
             {"EMFILE", EMFILE}, {"EROFS", EROFS}, {"EDQUOT", EDQUOT}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!strcmp(s, t[i].n))
            return t[i].e;
    return 0;
}

static void reload_locked(const char *file)
{
    struct stat st;
    if (stat(file, &st)) {
        nrules = 0;
        seen_size = -1;
        return;
    }
    if (st.st_size == seen_size && st.st_mtim.tv_sec == seen_mtime.tv_sec &&
        st.st_mtim.tv_nsec == seen_mtime.tv_nsec)
        return;
    seen_size = st.st_size;
    seen_mtime = st.st_mtim;
    nrules = 0;
    FILE *f = fopen(file, "r");
    if (!f)
        return;
    char line[512], e[32];
    while (nrules < MAX_RULES && fgets(line, sizeof line, f)) {
        struct rule *r = &rules[nrules];
        r->left = -1;
        if (sscanf(line, "%15s %31s %255s %ld", r->call, e, r->path, &r->left) >= 3 &&
            (r->err = errno_of(e)))
            nrules++;
    }
    fclose(f);
}

/* A substring of path; a pattern ending in '$' must end path ("admin.key$" is not met by
 * "admin.key.tmp.1.0"). */
static int matches(const char *path, const char *pat)
{
    size_t n = strlen(pat), m = strlen(path);
    if (n && pat[n - 1] == '$')
        return m >= n - 1 && !memcmp(path + m - (n - 1), pat, n - 1);
    return strstr(path, pat) != NULL;
}

/* errno to fail with (and the fault recorded), or 0 to go ahead. */
static int fault(const char *call, const char *path)
{
    const char *file = getenv("QD_FAULT_FILE");
    if (!file || inside || !path)
        return 0;
    int err = 0;
    inside = 1;
    pthread_mutex_lock(&mu);
    reload_locked(file);
    for (int i = 0; i < nrules && !err; i++) {
        struct rule *r = &rules[i];
        if (r->left != 0 && !strcmp(r->call, call) && matches(path, r->path)) {
            err = r->err;
            if (r->left > 0)
                r->left--;
        }
    }
    if (err) {
        char cnt[4200];
        snprintf(cnt, sizeof cnt, "%s.count", file);
        FILE *c = fopen(cnt, "a");
        if (c) {
            fprintf(c, "%s %d %s\n", call, err, path);
            fclose(c);
        }
    }
    pthread_mutex_unlock(&mu);
    inside = 0;
    return err;
}

static int fault_fd(const char *call, int fd)
{
    if (!getenv("QD_FAULT_FILE") || inside)
        return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = 0;
    return fault(call, path);
}

#define REAL(ret, name, ...)                                                                       \
    static ret (*real_##name)(__VA_ARGS__);                                                        \
    if (!real_##name)                                                                              \
        real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);

#define FAIL_WITH(err, val)                                                                        \
    do {                                                                                           \
        errno = (err);                                                                             \
        return (val);                                                                              \
    } while (0)

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *p, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    REAL(int, open, const char *, int, ...);
    int e = fault("open", p);
    if (e)
        FAIL_WITH(e, -1);
    return real_open(p, flags, m);
}

int open64(const char *p, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    REAL(int, open64, const char *, int, ...);
    int e = fault("open", p);
    if (e)
        FAIL_WITH(e, -1);
    return real_open64(p, flags, m);
}

int openat(int dir, const char *p, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    REAL(int, openat, int, const char *, int, ...);
    int e = fault("open", p);
    if (e)
        FAIL_WITH(e, -1);
    return real_openat(dir, p, flags, m);
}

FILE *fopen(const char *p, const char *mode)
{
    REAL(FILE *, fopen, const char *, const char *);
    int e = fault("open", p);
    if (e)
        FAIL_WITH(e, NULL);
    return real_fopen(p, mode);
}

FILE *fopen64(const char *p, const char *mode)
{
    REAL(FILE *, fopen64, const char *, const char *);
    int e = fault("open", p);
    if (e)
        FAIL_WITH(e, NULL);
    return real_fopen64(p, mode);
}

ssize_t write(int fd, const void *b, size_t n)
{
    REAL(ssize_t, write, int, const void *, size_t);
    int e = fd > 2 ? fault_fd("write", fd) : 0;
    if (e)
        FAIL_WITH(e, -1);
    return real_write(fd, b, n);
}

ssize_t pwrite(int fd, const void *b, size_t n, off_t off)
{
    REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
    int e = fault_fd("write", fd);
    if (e)
        FAIL_WITH(e, -1);
    return real_pwrite(fd, b, n, off);
}

ssize_t pwrite64(int fd, const void *b, size_t n, off_t off)
{
    REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
    int e = fault_fd("write", fd);
    if (e)
        FAIL_WITH(e, -1);
    return real_pwrite64(fd, b, n, off);
}

int fsync(int fd)
{
    REAL(int, fsync, int);
    int e = fault_fd("fsync", fd);
    if (e)
        FAIL_WITH(e, -1);
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(int, fdatasync, int);
    int e = fault_fd("fsync", fd);
    if (e)
        FAIL_WITH(e, -1);
    return real_fdatasync(fd);
}

int rename(const char *from, const char *to)
{
    REAL(int, rename, const char *, const char *);
    int e = fault("rename", to);
    if (e)
        FAIL_WITH(e, -1);
    return real_rename(from, to);
}
