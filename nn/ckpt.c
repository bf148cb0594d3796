/* Checkpoint writer and validating reader (format in ckpt.h). The reader never trusts a length
 * before checking it against the file size, and checks the CRC before parsing the spec. */
#define _GNU_SOURCE
#include "nn/ckpt.h"

#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static const char MAGIC[8] = {'Q', 'D', 'C', 'K', 'P', 'T', '\r', '\n'};
#define MAX_SPEC (1u << 20)

static uint8_t *put(uint8_t *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

qd_err qd_ckpt_save(const char *path, const struct qd_model *m, const char *dataset,
                    const struct qd_norm *nm)
{
    uint32_t ver = QD_CKPT_VERSION, sl = (uint32_t)strlen(m->spec), nc = (uint32_t)nm->c;
    uint64_t np = m->nparam, ns = m->nstat;
    size_t total = 8 + 4 + 4 + sl + 32 + 4 + 12 + 12 + 8 + 8 + 4 * (np + ns) + 4;
    uint8_t *buf = malloc(total), *p = buf;
    if (!buf)
        return qd_seterr(QD_ENOMEM, "%s: cannot allocate %zu bytes", path, total);
    char ds[32] = {0};
    snprintf(ds, sizeof ds, "%s", dataset ? dataset : "");
    p = put(p, MAGIC, 8);
    p = put(p, &ver, 4);
    p = put(p, &sl, 4);
    p = put(p, m->spec, sl);
    p = put(p, ds, 32);
    p = put(p, &nc, 4);
    p = put(p, nm->mean, 12);
    p = put(p, nm->std, 12);
    p = put(p, &np, 8);
    p = put(p, &ns, 8);
    p = put(p, m->param, np * 4);
    p = put(p, m->stat, ns * 4);
    uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), buf, (uInt)(p - buf));
    p = put(p, &crc, 4);
    QD_ASSERT((size_t)(p - buf) == total);
    qd_err e = qd_file_write_atomic(path, buf, total);
    free(buf);
    return e;
}

qd_err qd_ckpt_load(const char *path, struct qd_model *m, char dataset[32], struct qd_norm *nm)
{
    uint8_t *b;
    size_t fsz;
    QD_TRY(qd_file_read(path, &b, &fsz));
    long sz = (long)fsz;
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
        char pre[4200];
        snprintf(pre, sizeof pre, "%s: ", path);
        e = qd_wraperr(e, pre, NULL);
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
