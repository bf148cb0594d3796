/* Packed models for fetch replies (proto/pack.h): the smallest of raw, zstd and a zstd patch
 * against the version the device says it holds, made once per (model, base) and kept in a
 * small cache, least recently used out, so that a fleet fetching the same model chunk by
 * chunk packs it once. Packing runs on the loop at fetch time (zstd level pack_level: a
 * 300 KB model in about a millisecond at the default). Loop thread. */
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon_impl.h"

qd_err qdd_pack_get(struct qd_daemon *d, int bi, int base, const struct qdd_pack **out)
{
    const char *sha = qdd_blob(d, bi)->sha, *bsha = base >= 0 ? qdd_blob(d, base)->sha : "";
    struct qdd_pack *victim = &d->packs[0];
    for (int i = 0; i < QDD_PACKS; i++) {
        struct qdd_pack *p = &d->packs[i];
        if (p->b && !strcmp(p->sha, sha) && !strcmp(p->base, bsha)) {
            p->used = ++d->pack_clock;
            *out = p;
            return QD_OK;
        }
        if (!p->b || (victim->b && p->used < victim->used))
            victim = p;
    }
    const uint8_t *qm, *bq = NULL;
    size_t len, blen = 0;
    QD_TRY(qdd_blob_bytes(d, bi, &qm, &len));
    if (base >= 0)
        QD_TRY(qdd_blob_bytes(d, base, &bq, &blen));
    enum qd_pack kind;
    uint8_t *b;
    size_t n;
    QD_TRY(qd_pack_best(qm, len, bq, blen, (int)d->cfg.pack_level, &kind, &b, &n));
    free(victim->b);
    snprintf(victim->sha, sizeof victim->sha, "%s", sha);
    snprintf(victim->base, sizeof victim->base, "%s", bsha);
    victim->kind = kind, victim->b = b, victim->n = n;
    victim->used = ++d->pack_clock;
    *out = victim;
    return QD_OK;
}

void qdd_packs_fini(struct qd_daemon *d)
{
    for (int i = 0; i < QDD_PACKS; i++)
        free(d->packs[i].b);
    memset(d->packs, 0, sizeof d->packs);
}
