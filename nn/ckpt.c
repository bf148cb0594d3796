/* Checkpoint writer and validating reader (format in ckpt.h). The reader never trusts a length
 * before checking it against the file size, and checks the CRC before parsing the spec. */
#define _GNU_SOURCE
#include "nn/ckpt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static const char MAGIC[8] = {'Q', 'D', 'C', 'K', 'P', 'T', '\r', '\n'};
#define MAX_SPEC (1u << 20)

struct wbuf {
    FILE *f;
    uLong crc;
    int bad;
};

static void wr(struct wbuf *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->f) != n)
        w->bad = 1;
    w->crc = crc32(w->crc, p, (uInt)n);
}

qd_err qd_ckpt_save(const char *path, const struct qd_model *m, const char *dataset,
                    const struct qd_norm *nm)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return qd_seterr(QD_EIO, "%s: cannot create (%s)", tmp, strerror(errno));
    struct wbuf w = {f, crc32(0, NULL, 0), 0};
    uint32_t ver = QD_CKPT_VERSION, sl = (uint32_t)strlen(m->spec), nc = (uint32_t)nm->c;
    char ds[32] = {0};
    snprintf(ds, sizeof ds, "%s", dataset ? dataset : "");
    uint64_t np = m->nparam, ns = m->nstat;
    wr(&w, MAGIC, 8);
    wr(&w, &ver, 4);
    wr(&w, &sl, 4);
    wr(&w, m->spec, sl);
    wr(&w, ds, 32);
    wr(&w, &nc, 4);
    wr(&w, nm->mean, 12);
    wr(&w, nm->std, 12);
    wr(&w, &np, 8);
    wr(&w, &ns, 8);
    wr(&w, m->param, np * 4);
    wr(&w, m->stat, ns * 4);
    uint32_t crc = (uint32_t)w.crc;
    if (fwrite(&crc, 4, 1, f) != 1)
        w.bad = 1;
    if (fflush(f) || fsync(fileno(f)))
        w.bad = 1;
    if (fclose(f))
        w.bad = 1;
    if (w.bad || rename(tmp, path)) {
        unlink(tmp);
        return qd_seterr(QD_EIO, "%s: write failed", path);
    }
    return QD_OK;
}

qd_err qd_ckpt_load(const char *path, struct qd_model *m, char dataset[32], struct qd_norm *nm)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return qd_seterr(QD_ENOENT, "%s: cannot open (%s)", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = sz > 0 ? malloc((size_t)sz) : NULL;
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        fclose(f);
        return qd_seterr(sz > 0 ? QD_EIO : QD_EFORMAT, "%s: cannot read (empty?)", path);
    }
    fclose(f);
    qd_err e = QD_OK;
    size_t fixed = 8 + 4 + 4 + 32 + 4 + 12 + 12 + 8 + 8 + 4;
    uint32_t ver, sl, nc, crc;
    uint64_t np, ns;
    if ((size_t)sz < fixed || memcmp(b, MAGIC, 8)) {
        e = qd_seterr(QD_EFORMAT, "%s: not a quantd checkpoint (bad magic)", path);
        goto fail;
    }
    memcpy(&ver, b + 8, 4);
    memcpy(&sl, b + 12, 4);
    if (ver != QD_CKPT_VERSION) {
        e = qd_seterr(QD_EVERSION, "%s: checkpoint version %u, this build reads %d", path, ver,
                      QD_CKPT_VERSION);
        goto fail;
    }
    if (sl == 0 || sl > MAX_SPEC || (size_t)sz < fixed + sl) {
        e = qd_seterr(QD_EFORMAT, "%s: spec length %u does not fit a %ld-byte file", path, sl, sz);
        goto fail;
    }
    const uint8_t *p = b + 16 + sl;
    memcpy(&nc, p + 32, 4);
    memcpy(&np, p + 60, 8);
    memcpy(&ns, p + 68, 8);
    if (nc < 1 || nc > 3 || np > ((uint64_t)1 << 32) || ns > ((uint64_t)1 << 32) ||
        (uint64_t)sz != fixed + sl + 4 * (np + ns)) {
        e = qd_seterr(QD_EFORMAT, "%s: header sizes (%llu params, %llu stats) do not match the "
                                  "%ld-byte file (truncated?)",
                      path, (unsigned long long)np, (unsigned long long)ns, sz);
        goto fail;
    }
    memcpy(&crc, b + sz - 4, 4);
    if (crc != (uint32_t)crc32(crc32(0, NULL, 0), b, (uInt)(sz - 4))) {
        e = qd_seterr(QD_ECHECKSUM, "%s: checksum mismatch (file damaged)", path);
        goto fail;
    }
    char *spec = malloc(sl + 1);
    if (!spec) {
        e = qd_seterr(QD_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    memcpy(spec, b + 16, sl);
    spec[sl] = 0;
    e = qd_model_parse(spec, m);
    free(spec);
    if (e) {
        char keep[400];
        snprintf(keep, sizeof keep, "%s", qd_errmsg());
        e = qd_seterr(e, "%s: %s", path, keep);
        goto fail;
    }
    if (m->nparam != np || m->nstat != ns) {
        e = qd_seterr(QD_EFORMAT, "%s: %llu params / %llu stats stored, spec needs %zu / %zu",
                      path, (unsigned long long)np, (unsigned long long)ns, m->nparam, m->nstat);
        qd_model_fini(m);
        goto fail;
    }
    if (dataset) {
        memcpy(dataset, p, 32);
        dataset[31] = 0;
    }
    nm->c = (int)nc;
    memcpy(nm->mean, p + 36, 12);
    memcpy(nm->std, p + 48, 12);
    memcpy(m->param, p + 76, np * 4);
    memcpy(m->stat, p + 76 + np * 4, ns * 4);
    free(b);
    return QD_OK;
fail:
    free(b);
    return e;
}
