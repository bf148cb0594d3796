/* Model self-tests (see selftest.h): the runtime alone (what a gateway links), its arena sized
 * by asking it (qd_rt_load reports what it needs). */
#include "client/selftest.h"

#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "runtime/qm_format.h"
#include "runtime/runtime.h"

uint64_t qd_selftest_seed(const char *sha)
{
    uint64_t s = 0;
    for (int i = 0; i < 13 && sha[i]; i++) {
        char c = sha[i];
        s = s * 16 + (uint64_t)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
    }
    return s;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

qd_err qd_selftest_digest(const uint8_t *qm, size_t len, uint64_t seed, int n, char sha[65])
{
    uint32_t nodes;
    struct qd_rt_diag dg;
    qd_rt_err re = qd_qm_count(qm, len, &nodes, &dg);
    if (re)
        return qd_err_rt(re, &dg);
    struct qd_qm_header h;
    qd_qm_header_read(qm, &h);
    size_t need = 4096, per = (size_t)h.in_c * h.in_h * h.in_w;
    void *arena = NULL;
    qd_rt_t *rt = NULL;
    for (int tries = 0; tries < 3; tries++) { /* the tables' size, then exactly what it needs */
        free(arena);
        if (!(arena = aligned_alloc(64, (need + 63) / 64 * 64)))
            return qd_seterr(QD_ENOMEM, "self-test: out of memory");
        re = qd_rt_load(qm, len, arena, (need + 63) / 64 * 64, &rt, &need, &dg);
        if (re != QD_RT_ENOMEM)
            break;
    }
    if (re) {
        free(arena);
        return qd_err_rt(re, &dg);
    }
    int nc = qd_rt_classes(rt);
    uint8_t *px = malloc(per ? per : 1);
    float *lg = malloc(sizeof *lg * (size_t)n * nc);
    if (!px || !lg) {
        free(px), free(lg), free(arena);
        return qd_seterr(QD_ENOMEM, "self-test: out of memory");
    }
    uint64_t x = seed;
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < per; k++)
            px[k] = (uint8_t)splitmix64(&x);
        qd_rt_run(rt, px, lg + (size_t)i * nc);
    }
    /* little-endian float32, whatever the host */
    uint8_t *b = malloc(sizeof *lg * (size_t)n * nc);
    for (size_t i = 0; b && i < (size_t)n * nc; i++) {
        uint32_t u;
        memcpy(&u, &lg[i], 4);
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    if (b)
        qd_proto_sha256_hex(b, sizeof *lg * (size_t)n * nc, sha);
    free(b), free(px), free(lg), free(arena);
    return b ? QD_OK : qd_seterr(QD_ENOMEM, "self-test: out of memory");
}

qd_err qd_selftest_check(const uint8_t *qm, size_t len, const struct qd_manifest *m)
{
    char got[65];
    QD_TRY(qd_selftest_digest(qm, len, (uint64_t)m->test_seed, (int)m->test_n, got));
    if (strcmp(got, m->test_sha))
        return qd_seterr(QD_ESELFTEST,
                         "self-test: %lld inputs gave logits with sha256 %.12s..., "
                         "the manifest says %.12s...",
                         (long long)m->test_n, got, m->test_sha);
    return QD_OK;
}
