/* Model packing (see pack.h): libzstd's advanced API, one context per call (a few hundred KB;
 * packing happens once per distinct (model, base) on the daemon, unpacking once per install). */
#include "proto/pack.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static const char *const NAMES[] = {"raw", "zstd", "patch"};

const char *qd_pack_name(enum qd_pack k)
{
    return k >= QD_PACK_RAW && k <= QD_PACK_PATCH ? NAMES[k] : "?";
}

int qd_pack_parse(const char *s)
{
    for (int k = 0; k < 3; k++)
        if (!strcmp(s, NAMES[k]))
            return k;
    return -1;
}

/* The window that covers the base and the model, so that every byte of the base can match. */
static int window_log(size_t n)
{
    int w = 10; /* zstd's smallest window */
    while (w < 30 && ((size_t)1 << w) < n)
        w++;
    return w;
}

static qd_err compress(const uint8_t *qm, size_t len, const uint8_t *base, size_t blen, int level,
                       uint8_t **out, size_t *outlen)
{
    size_t cap = ZSTD_compressBound(len);
    uint8_t *b = malloc(cap);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    if (!b || !c) {
        free(b);
        ZSTD_freeCCtx(c);
        return qd_seterr(QD_ENOMEM, "pack: out of memory");
    }
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setPledgedSrcSize(c, len);
    if (base) {
        ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, window_log(blen + len));
        ZSTD_CCtx_setParameter(c, ZSTD_c_enableLongDistanceMatching, 1);
        ZSTD_CCtx_refPrefix(c, base, blen);
    }
    size_t n = ZSTD_compress2(c, b, cap, qm, len);
    ZSTD_freeCCtx(c);
    if (ZSTD_isError(n)) {
        free(b);
        return qd_seterr(QD_EIO, "pack: %s", ZSTD_getErrorName(n));
    }
    *out = b;
    *outlen = n;
    return QD_OK;
}

qd_err qd_pack_best(const uint8_t *qm, size_t len, const uint8_t *base, size_t blen, int level,
                    enum qd_pack *kind, uint8_t **out, size_t *outlen)
{
    uint8_t *z = NULL, *p = NULL;
    size_t zn = 0, pn = 0;
    QD_TRY(compress(qm, len, NULL, 0, level, &z, &zn));
    if (base && blen) {
        qd_err e = compress(qm, len, base, blen, level, &p, &pn);
        if (e) {
            free(z);
            return e;
        }
    }
    if (p && pn < zn && pn < len) {
        free(z);
        *kind = QD_PACK_PATCH, *out = p, *outlen = pn;
    } else if (zn < len) {
        free(p);
        *kind = QD_PACK_ZSTD, *out = z, *outlen = zn;
    } else {
        free(p);
        free(z);
        if (!(*out = malloc(len ? len : 1)))
            return qd_seterr(QD_ENOMEM, "pack: out of memory");
        memcpy(*out, qm, len);
        *kind = QD_PACK_RAW, *outlen = len;
    }
    return QD_OK;
}

qd_err qd_pack_unpack(enum qd_pack kind, const uint8_t *in, size_t n, const uint8_t *base,
                      size_t blen, size_t size, uint8_t **out)
{
    if (size == 0 || size > ((size_t)1 << 30))
        return qd_seterr(QD_EFORMAT, "unpack: a model of %zu bytes", size);
    if (kind == QD_PACK_PATCH && !base)
        return qd_seterr(QD_EINVAL, "unpack: a patch needs its base");
    uint8_t *b = malloc(size);
    if (!b)
        return qd_seterr(QD_ENOMEM, "unpack: out of memory");
    if (kind == QD_PACK_RAW) {
        if (n != size) {
            free(b);
            return qd_seterr(QD_EFORMAT, "unpack: %zu raw bytes, not %zu", n, size);
        }
        memcpy(b, in, n);
        *out = b;
        return QD_OK;
    }
    unsigned long long fs = ZSTD_getFrameContentSize(in, n);
    if (fs != size || ZSTD_findFrameCompressedSize(in, n) != n) {
        free(b);
        return qd_seterr(QD_EFORMAT, "unpack: not one zstd frame of %zu bytes", size);
    }
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d) {
        free(b);
        return qd_seterr(QD_ENOMEM, "unpack: out of memory");
    }
    ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 31);
    if (kind == QD_PACK_PATCH)
        ZSTD_DCtx_refPrefix(d, base, blen);
    size_t r = ZSTD_decompressDCtx(d, b, size, in, n);
    ZSTD_freeDCtx(d);
    if (ZSTD_isError(r) || r != size) {
        free(b);
        return qd_seterr(QD_EFORMAT, "unpack: %s",
                         ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output");
    }
    *out = b;
    return QD_OK;
}
