/* The multi-precision supernet (see supernet.h): policy sampling during training, per-policy
 * BatchNorm re-estimation and its cache file, and building a policy's .qm. */
#include "gate/supernet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "quant/calib.h"
#include "quant/qm.h"

int qd_supernet_bn_set(int sets, int wbits)
{
    int k = wbits == 2 ? 0 : wbits == 4 ? 1 : wbits == 8 ? 2 : 3;
    return k < sets ? k : sets - 1;
}

void qd_supernet_node_bits(struct qd_model *m, const struct qd_igraph *g,
                           const struct qd_policy *p, uint8_t *wbits, uint8_t *abits)
{
    memset(wbits, 0, (size_t)m->nnodes);
    memset(abits, 0, (size_t)m->nnodes);
    for (int i = 0; i < g->n; i++) {
        const struct qd_inode *n = &g->nodes[i];
        if (n->qidx >= 0) {
            abits[n->out_src] = p->abits[n->qidx];
            int op = m->nodes[n->src].op;
            if (op == QD_OP_CONV || op == QD_OP_DENSE) /* standalone BN affines stay exact */
                wbits[n->src] = p->wbits[n->qidx];
        } else if (n->op == QD_IOP_ADD)
            abits[n->out_src] = p->abits[0];
    }
    for (int i = 1; i < m->nnodes; i++)
        if (m->nodes[i].sets > 1)
            m->bn_set[i] = (uint8_t)qd_supernet_bn_set(m->nodes[i].sets,
                                                        wbits[m->nodes[i].in[0]]);
}

qd_err qd_supernet_select_bn(struct qd_model *m, const struct qd_norm *nm, struct qd_igraph *g,
                             const struct qd_policy *p)
{
    if (!qd_model_has_bn_sets(m))
        return QD_OK;
    uint8_t *wb = calloc((size_t)m->nnodes, 1), *ab = calloc((size_t)m->nnodes, 1);
    qd_err e = wb && ab ? QD_OK : qd_seterr(QD_ENOMEM, "out of memory");
    if (!e) {
        qd_supernet_node_bits(m, g, p, wb, ab);
        qd_igraph_fini(g);
        e = qd_igraph_build(m, nm, g);
    }
    free(wb), free(ab);
    return e;
}

struct sampler {
    struct qd_model *m;
    const struct qd_igraph *g;
    uint8_t *wbits, *abits;
    int per_step, lowest_every;
    struct qd_rng rng;
};

int qd_supernet_pass_kind(int per_step, int lowest_every, long pass)
{
    long S = per_step > 1 ? per_step : 1, k = pass % S;
    if (S == 1)
        return pass % 4 < 2 ? (int)(pass % 4) : 2;
    long L = lowest_every > 0 ? lowest_every : S == 2 ? 4 : 1;
    return k == 0 ? 0 : k == 1 && (pass / S) % L == 0 ? 1 : 2;
}

/* Pass i of training (on_step's step): the policy it trains. */
static void sample(void *ctx, long i)
{
    static const int B[] = {2, 4, 8, 16};
    struct sampler *s = ctx;
    struct qd_policy p;
    int kind = qd_supernet_pass_kind(s->per_step, s->lowest_every, i);
    if (kind == 0)
        qd_policy_uniform(&p, s->g->nq, 16, 16);
    else if (kind == 1)
        qd_policy_uniform(&p, s->g->nq, 2, 8);
    else {
        qd_policy_uniform(&p, s->g->nq, 8, qd_rng_below(&s->rng, 2) ? 16 : 8);
        for (int l = 0; l < p.n; l++)
            p.wbits[l] = (uint8_t)B[qd_rng_below(&s->rng, 4)];
    }
    qd_supernet_node_bits(s->m, s->g, &p, s->wbits, s->abits);
}

/* A copy of m's structure, weights and statistics (the distillation teacher). */
static qd_err model_copy(const struct qd_model *m, struct qd_model *t)
{
    QD_TRY(qd_model_parse(m->spec, t));
    if (t->nparam != m->nparam || t->nstat != m->nstat) {
        qd_model_fini(t);
        return qd_seterr(QD_EINVAL, "supernet: the model's spec does not reproduce it");
    }
    memcpy(t->family, m->family, sizeof t->family);
    memcpy(t->param, m->param, sizeof *t->param * m->nparam);
    memcpy(t->stat, m->stat, sizeof *t->stat * m->nstat);
    return QD_OK;
}

qd_err qd_supernet_train(struct qd_model *m, const struct qd_norm *nm,
                         const struct qd_dataset *train, const struct qd_dataset *test,
                         const struct qd_supernet_opts *o, qd_epoch_cb cb, void *ctx)
{
    if (o->sandwich < 0 || o->sandwich > 16 || !(o->kd >= 0 && o->kd <= 1) ||
        o->lowest_every < 0 || o->lowest_every > 1000)
        return qd_seterr(QD_EINVAL,
                         "supernet: sandwich must be 0..16, kd in [0, 1], lowest_every 0..1000");
    if (o->bn_sets < 0 || o->bn_sets > QD_SUPERNET_BN_SETS)
        return qd_seterr(QD_EINVAL, "supernet: bn_sets must be 0..%d", QD_SUPERNET_BN_SETS);
    if (o->bn_sets > 1) { /* switchable BatchNorm: m re-laid out with an affine set per width */
        struct qd_model sw;
        QD_TRY(qd_model_bn_sets(m, o->bn_sets, &sw));
        qd_model_fini(m);
        *m = sw;
    }
    struct qd_igraph g;
    QD_TRY(qd_igraph_build(m, nm, &g));
    struct sampler s = {m, &g, calloc((size_t)m->nnodes, 1), calloc((size_t)m->nnodes, 1),
                        o->sandwich > 1 ? o->sandwich : 1, o->lowest_every};
    struct qd_model teacher = {0};
    qd_err e = s.wbits && s.abits ? QD_OK : qd_seterr(QD_ENOMEM, "supernet: out of memory");
    if (!e && o->kd > 0 && !o->kd_self)
        e = model_copy(m, &teacher);
    if (!e) {
        qd_rng_seed(&s.rng, o->seed + 17);
        sample(&s, 0);
        struct qd_train_opts t;
        qd_train_opts_default(&t, train->name);
        t.epochs = o->epochs > 0 ? o->epochs : 3;
        t.lr = o->lr > 0 ? o->lr : 0.01f;
        t.warmup_epochs = 0;
        t.threads = o->threads;
        t.seed = o->seed;
        t.progress = o->progress;
        t.qat_bits = s.wbits;
        t.qat_act_bits = s.abits;
        t.on_step = sample;
        t.step_ctx = &s;
        t.substeps = s.per_step;
        t.teacher = teacher.nodes ? &teacher : NULL;
        t.kd_weight = o->kd;
        t.kd_inplace = o->kd_self;
        t.project = o->project;
        t.eval_each_epoch = 0;
        e = qd_train(m, train, test, nm, &t, cb, ctx);
    }
    if (teacher.nodes)
        qd_model_fini(&teacher);
    free(s.wbits);
    free(s.abits);
    qd_igraph_fini(&g);
    return e;
}

qd_err qd_supernet_bn_stats(struct qd_model *m, const struct qd_norm *nm,
                            const struct qd_igraph *g, const struct qd_dataset *train,
                            const struct qd_policy *p, int batches, float *stat)
{
    enum { BATCH = 128 };
    uint8_t *bits = calloc((size_t)m->nnodes, 1), *abits = calloc((size_t)m->nnodes, 1);
    float *shadow = malloc(sizeof *shadow * (m->nparam ? m->nparam : 1));
    float *st0 = malloc(sizeof *st0 * (m->nstat ? m->nstat : 1));
    float *x = malloc(sizeof *x * BATCH * (size_t)train->c * train->h * train->w);
    struct qd_exec e;
    qd_err err = bits && abits && shadow && st0 && x ? qd_exec_init(&e, m, BATCH)
                                                     : qd_seterr(QD_ENOMEM, "out of memory");
    if (!err) {
        qd_supernet_node_bits(m, g, p, bits, abits);
        memcpy(st0, m->stat, sizeof *st0 * m->nstat);
        qd_fake_quant_weights(m, bits, shadow);
        float *master = m->param;
        m->param = shadow;
        struct qd_rng r;
        qd_rng_seed(&r, 7);
        int idx[BATCH];
        uint8_t y[BATCH];
        /* the images as training saw them (CIFAR: random crops and flips): the weights were
         * learned against those statistics; plain images shift them (-2 pt on CIFAR-10) */
        struct qd_train_opts t;
        qd_train_opts_default(&t, train->name);
        /* the running statistics become the plain mean over all the batches (momentum
         * 1 / (b + 1)); the training momentum would weight the last ten batches and leave a
         * trace of the supernet's own statistics, which mix every policy */
        for (int b = 0; b < batches; b++) {
            for (int k = 0; k < BATCH; k++)
                idx[k] = (int)qd_rng_below(&r, (uint64_t)train->n);
            qd_batch_fill(train, nm, idx, BATCH, t.augment, &r, x, y);
            e.bn_momentum = 1.0f / (float)(b + 1);
            qd_exec_forward(&e, BATCH, x, 1);
        }
        m->param = master;
        memcpy(stat, m->stat, sizeof *stat * m->nstat);
        memcpy(m->stat, st0, sizeof *st0 * m->nstat);
        qd_exec_fini(&e);
    }
    free(bits), free(abits), free(shadow), free(st0), free(x);
    return err;
}

/* 03: clipped low-bit grids, augmented images; 04: the mean over all batches */
static const char MAGIC[8] = "QDBNC04\n";

qd_err qd_bn_cache_open(struct qd_bn_cache *c, const char *path, size_t nstat, const char *key)
{
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    c->nstat = nstat;
    char hdr[8], k[65] = "";
    FILE *f = fopen(path, "rb");
    int ok = f && fread(hdr, 1, 8, f) == 8 && !memcmp(hdr, MAGIC, 8) && fread(k, 1, 64, f) == 64;
    k[64] = 0;
    if (ok && !strncmp(k, key, 64)) {
        for (;;) {
            uint32_t pl, ns;
            if (fread(&pl, 4, 1, f) != 1)
                break; /* the end (a torn last entry is dropped below) */
            if (pl == 0 || pl > 8192)
                break;
            char *pol = malloc(pl + 1);
            float *st = NULL;
            int good = pol && fread(pol, 1, pl, f) == pl && fread(&ns, 4, 1, f) == 1 &&
                       ns == nstat && (st = malloc(sizeof *st * (nstat ? nstat : 1))) &&
                       fread(st, sizeof *st, nstat, f) == nstat;
            if (!good || c->n == 1 << 20) {
                free(pol), free(st);
                break;
            }
            pol[pl] = 0;
            if (c->n == c->cap) {
                int cap = c->cap ? 2 * c->cap : 16;
                char **pp = realloc(c->policy, cap * sizeof *pp);
                float **ss = pp ? realloc(c->stat, cap * sizeof *ss) : NULL;
                if (pp)
                    c->policy = pp;
                if (!ss) {
                    free(pol), free(st);
                    break;
                }
                c->stat = ss, c->cap = cap;
            }
            c->policy[c->n] = pol;
            c->stat[c->n++] = st;
        }
    }
    if (f)
        fclose(f);
    if (ok && !strncmp(k, key, 64))
        return QD_OK;
    /* absent or another supernet's: start the file afresh */
    f = fopen(path, "wb");
    if (!f)
        return qd_seterr(QD_EIO, "%s: cannot write the BatchNorm cache", path);
    char kk[64] = {0};
    memcpy(kk, key, strlen(key) < 64 ? strlen(key) : 64);
    int w = fwrite(MAGIC, 1, 8, f) == 8 && fwrite(kk, 1, 64, f) == 64;
    if (fclose(f) || !w)
        return qd_seterr(QD_EIO, "%s: write failed", path);
    return QD_OK;
}

qd_err qd_bn_cache_get(struct qd_bn_cache *c, struct qd_model *m, const struct qd_norm *nm,
                       const struct qd_igraph *g, const struct qd_dataset *train,
                       const struct qd_policy *p, int batches, const float **stat)
{
    /* keyed by the policy and the batch count: statistics from fewer batches are not the ones
     * asked for */
    char pol[QD_POLICY_MAX * 6 + 16];
    QD_TRY(qd_policy_format(p, pol, QD_POLICY_MAX * 6));
    snprintf(pol + strlen(pol), 16, " x%d", batches);
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->policy[i], pol)) {
            *stat = c->stat[i];
            return QD_OK;
        }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        char **pp = realloc(c->policy, cap * sizeof *pp);
        if (!pp)
            return qd_seterr(QD_ENOMEM, "out of memory");
        c->policy = pp;
        float **ss = realloc(c->stat, cap * sizeof *ss);
        if (!ss)
            return qd_seterr(QD_ENOMEM, "out of memory");
        c->stat = ss, c->cap = cap;
    }
    float *st = malloc(sizeof *st * (c->nstat ? c->nstat : 1));
    char *pc = strdup(pol);
    qd_err e = st && pc ? qd_supernet_bn_stats(m, nm, g, train, p, batches, st)
                        : qd_seterr(QD_ENOMEM, "out of memory");
    if (e) {
        free(st), free(pc);
        return e;
    }
    c->policy[c->n] = pc;
    c->stat[c->n++] = st;
    *stat = st;
    FILE *f = fopen(c->path, "ab");
    if (f) {
        uint32_t pl = (uint32_t)strlen(pc), ns = (uint32_t)c->nstat;
        fwrite(&pl, 4, 1, f);
        fwrite(pc, 1, pl, f);
        fwrite(&ns, 4, 1, f);
        fwrite(st, sizeof *st, c->nstat, f);
        fclose(f);
    }
    return QD_OK;
}

void qd_bn_cache_fini(struct qd_bn_cache *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->policy[i]);
        free(c->stat[i]);
    }
    free(c->policy);
    free(c->stat);
    memset(c, 0, sizeof *c);
}

qd_err qd_supernet_build(struct qd_model *m, const struct qd_norm *nm, const float *stat,
                         const struct qd_dataset *calib, int calib_n, const struct qd_policy *p,
                         uint8_t **blob, size_t *len)
{
    float *st0 = NULL;
    if (stat) {
        if (!(st0 = malloc(sizeof *st0 * (m->nstat ? m->nstat : 1))))
            return qd_seterr(QD_ENOMEM, "out of memory");
        memcpy(st0, m->stat, sizeof *st0 * m->nstat);
        memcpy(m->stat, stat, sizeof *st0 * m->nstat);
    }
    struct qd_igraph g;
    qd_err e = qd_igraph_build(m, nm, &g);
    if (!e)
        e = qd_supernet_select_bn(m, nm, &g, p);
    if (st0) {
        memcpy(m->stat, st0, sizeof *st0 * m->nstat);
        free(st0);
    }
    if (e)
        return e;
    struct qd_range *rg = calloc((size_t)g.n + 1, sizeof *rg);
    e = rg ? qd_calibrate(&g, calib, calib_n > 0 ? calib_n : 1024, QD_CALIB_MINMAX, 0, rg)
           : qd_seterr(QD_ENOMEM, "out of memory");
    struct qd_qm_build b = {&g, p, QD_QMODE_MIXED, rg, 1, m->family};
    if (!e)
        e = qd_qm_build(&b, blob, len);
    free(rg);
    qd_igraph_fini(&g);
    return e;
}
