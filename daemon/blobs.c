/* Built models ("blobs"): one per distinct (backbone, policy), content-addressed by sha256 in
 * the state directory's models/, signed once with the daemon's Ed25519 key, shared by every
 * device that decides the same policy. The array never moves (MAX_BLOBS slots allocated at
 * start), so the loop may read qdd_blob(d, i) without the lock; adding and loading bytes take
 * blob_mu, since pool jobs add what they build. */
#include <stdlib.h>
#include <string.h>

#include "client/selftest.h"
#include "daemon/daemon_impl.h"

/* Under blob_mu. */
int qdd_blob_find_locked(struct qd_daemon *d, const char *policy)
{
    return qdd_smap_get(&d->blob_by_policy, policy);
}

/* index: the blob is of the current backbone, so decisions may reuse it by policy. Takes qm
 * (may be NULL: read from models/ when needed) only on success. */
qd_err qdd_blob_add_locked(struct qd_daemon *d, const char *sha, const char *policy,
                           const uint8_t *sig, uint8_t *qm, size_t len, int index, int *idx)
{
    int slot = d->nfree ? d->blob_free[d->nfree - 1] : d->nblob;
    int page = slot / QDD_BLOB_PAGE;
    if (page == QDD_BLOB_PAGES)
        return qd_seterr(QD_ELIMIT, "more than %d distinct models", QDD_BLOB_PAGES * QDD_BLOB_PAGE);
    if (!d->blob_page[page] &&
        !(d->blob_page[page] = calloc(QDD_BLOB_PAGE, sizeof *d->blob_page[page])))
        return qd_seterr(QD_ENOMEM, "blobs: out of memory");
    struct qdd_blob *b = calloc(1, sizeof *b);
    char *p = strdup(policy);
    if (!b || !p) {
        free(b), free(p);
        return qd_seterr(QD_ENOMEM, "blobs: out of memory");
    }
    snprintf(b->sha, sizeof b->sha, "%s", sha);
    b->policy = p;
    memcpy(b->sig, sig, QD_PROTO_SIG_BYTES);
    b->qm = qm, b->len = len;
    d->blob_page[page][slot % QDD_BLOB_PAGE] = b; /* kept even if not indexed below: the
                                                   * maps' keys point into it */
    *idx = slot;
    if (slot == d->nblob)
        d->nblob++;
    else
        d->nfree--;
    qd_err e = qdd_smap_put(&d->blob_by_sha, b->sha, *idx);
    if (!e && index)
        e = qdd_smap_put(&d->blob_by_policy, b->policy, *idx);
    if (e) /* qm stays the caller's, as on every failure */
        b->qm = NULL, b->len = 0;
    return e;
}

int qdd_blob_drop_locked(struct qd_daemon *d, int i)
{
    struct qdd_blob *b = qdd_blob(d, i);
    if (!b || b->held || b->rebuilding)
        return 0;
    if (d->nfree == d->capfree) {
        int cap = d->capfree ? 2 * d->capfree : 256, *f = realloc(d->blob_free, cap * sizeof *f);
        if (!f)
            return 0; /* (kept: another sweep tries again) */
        d->blob_free = f, d->capfree = cap;
    }
    qdd_smap_del(&d->blob_by_sha, b->sha, i);
    qdd_smap_del(&d->blob_by_policy, b->policy, i);
    free(b->policy), free(b->qm), free(b);
    d->blob_page[i / QDD_BLOB_PAGE][i % QDD_BLOB_PAGE] = NULL;
    d->blob_free[d->nfree++] = i;
    return 1;
}

int qdd_blob_count(struct qd_daemon *d)
{
    uv_mutex_lock(&d->blob_mu);
    int n = d->nblob - d->nfree;
    uv_mutex_unlock(&d->blob_mu);
    return n;
}

void qdd_blob_release(struct qd_daemon *d, int i)
{
    uv_mutex_lock(&d->blob_mu);
    qdd_blob(d, i)->held--;
    uv_mutex_unlock(&d->blob_mu);
}

/* The blob's bytes (loaded from models/ on first need; loop thread). */
qd_err qdd_blob_bytes(struct qd_daemon *d, int i, const uint8_t **qm, size_t *len)
{
    uv_mutex_lock(&d->blob_mu);
    struct qdd_blob *b = qdd_blob(d, i);
    qd_err e = QD_OK;
    if (!b->qm) {
        e = qd_state_blob_read(d->cfg.state_dir, b->sha, &b->qm, &b->len);
        if (!e) {
            char sha[65];
            qd_proto_sha256_hex(b->qm, b->len, sha);
            if (strcmp(sha, b->sha)) {
                free(b->qm);
                b->qm = NULL;
                e = qd_seterr(QD_ECHECKSUM, "models/%s.qm: content hash differs", b->sha);
            }
        }
    }
    *qm = b->qm, *len = b->len;
    uv_mutex_unlock(&d->blob_mu);
    return e;
}

int qdd_blob_by_sha(struct qd_daemon *d, const char *sha)
{
    uv_mutex_lock(&d->blob_mu);
    int r = qdd_smap_get(&d->blob_by_sha, sha);
    uv_mutex_unlock(&d->blob_mu);
    return r;
}

/* The blob with content hash sha, from the state's metadata when not yet known (its bytes stay
 * on disk until needed; not indexed by policy: it may be another backbone's). */
qd_err qdd_blob_of_sha(struct qd_daemon *d, const char *sha, int *idx)
{
    *idx = qdd_blob_by_sha(d, sha);
    if (*idx >= 0)
        return QD_OK;
    uint8_t sig[QD_PROTO_SIG_BYTES];
    char policy[QD_POLICY_MAX * 6];
    QD_TRY(qd_state_blob_meta(d->st, sha, sig, policy, sizeof policy));
    uv_mutex_lock(&d->blob_mu);
    qd_err e = qdd_blob_add_locked(d, sha, policy, sig, NULL, 0, 0, idx);
    uv_mutex_unlock(&d->blob_mu);
    return e;
}

/* qd_state_blobs_load's callback at boot: this backbone's blobs, indexed by policy so that a
 * policy decided again after a restart reuses its blob (and its version stays unchanged). */
qd_err qdd_blob_restore(void *ctx, const char *sha, const char *policy, const uint8_t *sig)
{
    struct qd_daemon *d = ctx;
    int i = qdd_blob_by_sha(d, sha);
    qd_err e = QD_OK;
    uv_mutex_lock(&d->blob_mu);
    if (qdd_blob_find_locked(d, policy) < 0)
        e = i >= 0 ? qdd_smap_put(&d->blob_by_policy, qdd_blob(d, i)->policy, i)
                   : qdd_blob_add_locked(d, sha, policy, sig, NULL, 0, 1, &i);
    uv_mutex_unlock(&d->blob_mu);
    return e;
}

qd_err qdd_blob_selftest(struct qd_daemon *d, int i, const char **sha)
{
    struct qdd_blob *b = qdd_blob(d, i);
    if (!b->test_sha[0]) { /* a blob built before this start: once, here */
        const uint8_t *qm;
        size_t len;
        char t[65];
        QD_TRY(qdd_blob_bytes(d, i, &qm, &len));
        QD_TRY(qd_selftest_digest(qm, len, qd_selftest_seed(b->sha), QD_SELFTEST_N, t));
        uv_mutex_lock(&d->blob_mu);
        memcpy(b->test_sha, t, sizeof t);
        uv_mutex_unlock(&d->blob_mu);
    }
    *sha = b->test_sha;
    return QD_OK;
}
