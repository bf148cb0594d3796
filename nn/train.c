/* The training loop: batch assembly (normalize, augment), forward, loss, backward, optimizer
 * step, per-epoch evaluation. Buffers (executor, batch, optimizer state) are allocated once per
 * call, never per batch. */
#include "nn/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/rng.h"
#include "nn/kernels.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

void qd_norm_fit(const struct qd_dataset *ds, struct qd_norm *nm)
{
    memset(nm, 0, sizeof *nm);
    nm->c = ds->c;
    size_t hw = (size_t)ds->h * ds->w;
    for (int c = 0; c < ds->c; c++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < ds->n; i++) {
            const uint8_t *p = ds->x + ((size_t)i * ds->c + c) * hw;
            uint64_t a = 0, a2 = 0;
            for (size_t j = 0; j < hw; j++) {
                a += p[j];
                a2 += (uint64_t)p[j] * p[j];
            }
            s += (double)a;
            s2 += (double)a2;
        }
        double cnt = (double)ds->n * hw, m = s / cnt / 255.0;
        double v = s2 / cnt / (255.0 * 255.0) - m * m;
        nm->mean[c] = (float)m;
        nm->std[c] = (float)sqrt(v > 1e-12 ? v : 1e-12);
    }
}

void qd_batch_fill(const struct qd_dataset *ds, const struct qd_norm *nm, const int *idx, int cnt,
                   int augment, struct qd_rng *rng, float *x, uint8_t *y)
{
    int C = ds->c, H = ds->h, W = ds->w;
    for (int b = 0; b < cnt; b++) {
        int i = idx[b], dy = 0, dx = 0, flip = 0;
        if (augment) {
            dy = (int)qd_rng_below(rng, 9) - 4;
            dx = (int)qd_rng_below(rng, 9) - 4;
            flip = (int)qd_rng_below(rng, 2);
        }
        y[b] = ds->y[i];
        for (int c = 0; c < C; c++) {
            const uint8_t *src = ds->x + ((size_t)i * C + c) * H * W;
            float *dst = x + ((size_t)b * C + c) * H * W;
            float sc = 1.0f / (255.0f * nm->std[c]), sh = -nm->mean[c] / nm->std[c];
            for (int r = 0; r < H; r++)
                for (int q = 0; q < W; q++) {
                    int sr = r + dy, sq = (flip ? W - 1 - q : q) + dx;
                    float v = (sr >= 0 && sr < H && sq >= 0 && sq < W)
                                  ? src[sr * W + sq] * sc + sh
                                  : sh; /* zero pixel in raw space */
                    dst[r * W + q] = v;
                }
        }
    }
}

void qd_train_opts_default(struct qd_train_opts *o, const char *dataset)
{
    memset(o, 0, sizeof *o);
    int cifar = dataset && strstr(dataset, "cifar");
    o->epochs = cifar ? 30 : 12;
    o->batch = 64;
    o->threads = 0;
    o->optim = QD_OPTIM_SGD;
    o->lr = cifar ? 0.1f : 0.05f;
    o->momentum = 0.9f;
    o->weight_decay = 5e-4f;
    o->warmup_epochs = 1;
    o->augment = cifar;
    o->seed = 1;
    o->eval_each_epoch = 1;
}

qd_err qd_evaluate(struct qd_model *m, const struct qd_dataset *ds, const struct qd_norm *nm,
                   int batch, struct qd_eval *r)
{
    const struct qd_node *in = &m->nodes[0];
    if (in->c != ds->c || in->h != ds->h || in->w != ds->w)
        return qd_seterr(QD_ESHAPE, "model input %dx%dx%d does not match %s images %dx%dx%d",
                         in->c, in->h, in->w, ds->name, ds->c, ds->h, ds->w);
    if (m->nclass < ds->nclass)
        return qd_seterr(QD_ESHAPE, "model has %d classes, %s has %d", m->nclass, ds->name,
                         ds->nclass);
    struct qd_exec e;
    QD_TRY(qd_exec_init(&e, m, batch));
    size_t per = (size_t)ds->c * ds->h * ds->w;
    float *x = qd_mem_alloc(per * batch * sizeof(float));
    uint8_t *y = malloc(batch);
    int *idx = malloc(sizeof(int) * batch);
    if (!x || !y || !idx) {
        qd_mem_free(x, per * batch * sizeof(float));
        free(y);
        free(idx);
        qd_exec_fini(&e);
        return qd_seterr(QD_ENOMEM, "evaluate: out of memory");
    }
    double t0 = now(), loss = 0;
    long ok = 0;
    for (int s = 0; s < ds->n; s += batch) {
        int cnt = ds->n - s < batch ? ds->n - s : batch, c;
        for (int b = 0; b < cnt; b++)
            idx[b] = s + b;
        qd_batch_fill(ds, nm, idx, cnt, 0, NULL, x, y);
        qd_exec_forward(&e, cnt, x, 0);
        loss += (double)qd_softmax_xent_f32(cnt, m->nclass, qd_exec_logits(&e), y, NULL, &c) * cnt;
        ok += c;
    }
    r->n = ds->n;
    r->loss = loss / ds->n;
    r->acc = (double)ok / ds->n;
    r->seconds = now() - t0;
    qd_mem_free(x, per * batch * sizeof(float));
    free(y);
    free(idx);
    qd_exec_fini(&e);
    return QD_OK;
}

/* Squared error of w[0..n) on the symmetric grid of step s, levels within +-qmax. Clamping
 * before rounding is the same as after for integer bounds; the truncating conversion rounds
 * half away from zero here (|t| <= qmax is small); with the float sum this is 3x faster than
 * roundf, a divide and a double sum: it runs for every channel, candidate clip and build. */
static double grid_error(const float *w, size_t n, float s, float qmax)
{
    float inv = 1.0f / s, e = 0; /* a float sum (one channel: a few thousand terms at most) */
    for (size_t j = 0; j < n; j++) {
        float t = w[j] * inv;
        t = t > qmax ? qmax : t < -qmax ? -qmax : t;
        float q = (float)(int)(t + (t >= 0 ? 0.5f : -0.5f)), d = w[j] - s * q;
        e += d * d;
    }
    return e;
}

float qd_weight_clip(const float *w, size_t n, int bits)
{
    float a = 0, qmax = (float)((1 << (bits - 1)) - 1);
    for (size_t j = 0; j < n; j++)
        a = fmaxf(a, fabsf(w[j]));
    if (a == 0 || bits > QD_WEIGHT_CLIP_BITS)
        return a;
    float best = a;
    double best_e = grid_error(w, n, a / qmax, qmax);
    for (int k = 1; k <= 23; k++) {
        float c = a * (1.0f - 0.03f * (float)k);
        double e = grid_error(w, n, c / qmax, qmax);
        if (e < best_e)
            best_e = e, best = c;
    }
    return best;
}

void qd_fake_quant_weights(const struct qd_model *m, const uint8_t *bits, float *out)
{
    memcpy(out, m->param, sizeof(float) * m->nparam);
    for (int i = 1; i < m->nnodes; i++) {
        const struct qd_node *n = &m->nodes[i];
        int b = bits[i];
        if (!b || (n->op != QD_OP_CONV && n->op != QD_OP_DENSE))
            continue;
        size_t per = n->wlen / n->out;
        float qmax = (float)((1 << (b - 1)) - 1);
        for (int c = 0; c < n->out; c++) {
            float *w = out + n->woff + (size_t)c * per, a = qd_weight_clip(w, per, b);
            if (a == 0)
                continue;
            float s = a / qmax;
            for (size_t j = 0; j < per; j++) { /* round half away from zero, as qd_quantize */
                float q = roundf(w[j] / s);
                w[j] = s * (q > qmax ? qmax : q < -qmax ? -qmax : q);
            }
        }
    }
}

/* Conv and dense weights decay; biases and BatchNorm parameters do not. */
static void project_range(float *g, const float *g0, size_t n)
{
    double dot = 0, nn = 0;
    for (size_t i = 0; i < n; i++)
        dot += (double)g[i] * g0[i], nn += (double)g0[i] * g0[i];
    if (dot < 0 && nn > 0) {
        float k = (float)(dot / nn);
        for (size_t i = 0; i < n; i++)
            g[i] -= k * g0[i];
    }
}

void qd_grad_project(const struct qd_model *m, float *g, const float *g0)
{
    for (int i = 1; i < m->nnodes; i++) {
        const struct qd_node *n = &m->nodes[i];
        if (n->woff != QD_NONE)
            project_range(g + n->woff, g0 + n->woff, n->wlen);
        if (n->boff != QD_NONE)
            project_range(g + n->boff, g0 + n->boff, n->blen);
    }
}

static void decay_mask(const struct qd_model *m, uint8_t *mask)
{
    memset(mask, 0, m->nparam);
    for (int i = 1; i < m->nnodes; i++) {
        const struct qd_node *n = &m->nodes[i];
        if ((n->op == QD_OP_CONV || n->op == QD_OP_DENSE) && n->woff != QD_NONE)
            memset(mask + n->woff, 1, n->wlen);
    }
}

static void progress(int epoch, int epochs, long b, long nb, double loss, double ips)
{
    int width = 30, fill = (int)(width * b / (nb ? nb : 1));
    fprintf(stderr, "\repoch %d/%d [", epoch, epochs);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '=' : ' ', stderr);
    fprintf(stderr, "] %ld/%ld loss %.4f %.0f img/s ", b, nb, loss, ips);
    fflush(stderr);
}

qd_err qd_train(struct qd_model *m, const struct qd_dataset *train, const struct qd_dataset *test,
                const struct qd_norm *nm, const struct qd_train_opts *o, qd_epoch_cb cb, void *ctx)
{
    return qd_train_timed(m, train, test, nm, o, cb, ctx, NULL);
}

qd_err qd_train_timed(struct qd_model *m, const struct qd_dataset *train,
                      const struct qd_dataset *test, const struct qd_norm *nm,
                      const struct qd_train_opts *o, qd_epoch_cb cb, void *ctx,
                      struct qd_train_timing *timing)
{
    const struct qd_node *in = &m->nodes[0];
    if (in->c != train->c || in->h != train->h || in->w != train->w)
        return qd_seterr(QD_ESHAPE, "model input %dx%dx%d does not match %s images %dx%dx%d",
                         in->c, in->h, in->w, train->name, train->c, train->h, train->w);
    if (m->nclass < train->nclass)
        return qd_seterr(QD_ESHAPE, "model has %d classes, %s has %d", m->nclass, train->name,
                         train->nclass);
    if (o->batch < 2 || o->batch > 4096 || o->epochs < 1 || !(o->lr > 0))
        return qd_seterr(QD_EINVAL, "train: need batch in [2, 4096], epochs >= 1, lr > 0");
    qd_kernels_init(o->threads);
    int B = o->batch;
    size_t per = (size_t)train->c * train->h * train->w, P = m->nparam;
    struct qd_exec e;
    QD_TRY(qd_exec_init(&e, m, B));
    size_t xbytes = per * B * sizeof(float), obytes = 2 * P * sizeof(float);
    float *x = qd_mem_alloc(xbytes), *dl = malloc(sizeof(float) * B * m->nclass);
    float *st = qd_mem_alloc(obytes); /* optimizer state: momentum / Adam m, v */
    uint8_t *y = malloc(B), *mask = malloc(P ? P : 1);
    int *perm = malloc(sizeof(int) * train->n);
    float *master = m->param, *shadow = o->qat_bits ? qd_mem_alloc(P * sizeof(float)) : NULL;
    float *ranges = o->qat_act_bits ? malloc(2 * sizeof(float) * m->nnodes) : NULL;
    int S = o->substeps > 1 ? o->substeps : 1;
    float *gacc = S > 1 ? qd_mem_alloc(P * sizeof(float)) : NULL;
    float *g0 = S > 1 && o->project ? qd_mem_alloc(P * sizeof(float)) : NULL;
    int distil = o->teacher || o->kd_inplace;
    float *dkd = distil ? malloc(sizeof(float) * B * m->nclass) : NULL;
    float *self = o->kd_inplace ? malloc(sizeof(float) * B * m->nclass) : NULL;
    float kw = distil ? o->kd_weight : 0;
    struct qd_exec te = {0};
    qd_err err = QD_OK;
    if (!x || !dl || !st || !y || !mask || !perm || (o->qat_bits && !shadow) ||
        (o->qat_act_bits && !ranges) || (S > 1 && !gacc) || (S > 1 && o->project && !g0) ||
        (distil && !dkd) ||
        (o->kd_inplace && !self)) {
        err = qd_seterr(QD_ENOMEM, "train: out of memory");
        goto out;
    }
    if (o->kd_inplace && (o->teacher || S < 2)) {
        err = qd_seterr(QD_EINVAL, "train: in-place distillation needs substeps > 1, no teacher");
        goto out;
    }
    if (distil && !(kw >= 0 && kw <= 1)) {
        err = qd_seterr(QD_EINVAL, "train: kd_weight must be in [0, 1]");
        goto out;
    }
    if (o->teacher) {
        const struct qd_node *ti = &o->teacher->nodes[0];
        if (o->teacher->nclass != m->nclass || ti->c != in->c || ti->h != in->h ||
            ti->w != in->w) {
            err = qd_seterr(QD_ESHAPE,
                            "train: the teacher's input or classes differ from the model's");
            goto out;
        }
        if ((err = qd_exec_init(&te, o->teacher, B)))
            goto out;
    }
    if (ranges) {
        for (int i = 0; i < 2 * m->nnodes; i++)
            ranges[i] = NAN;
        e.act_bits = o->qat_act_bits;
        e.act_range = ranges;
    }
    decay_mask(m, mask);
    struct qd_rng rng;
    qd_rng_seed(&rng, o->seed);
    for (int i = 0; i < train->n; i++)
        perm[i] = i;
    long nb = train->n / B, total = nb * o->epochs, step = 0;
    if (o->max_batches > 0 && o->max_batches < total)
        total = o->max_batches;
    long warm = (long)(o->warmup_epochs * nb);
    int tty = o->progress && isatty(2);
    double t_timed = 0;
    for (int ep = 0; ep < o->epochs && step < total; ep++) {
        double t0 = now(), lsum = 0;
        long ok = 0, seen = 0;
        qd_rng_shuffle(&rng, perm, train->n);
        for (long b = 0; b < nb && step < total; b++, step++) {
            if (timing && step == o->timed_from)
                t_timed = now();
            double lr;
            if (step < warm)
                lr = o->lr * (step + 1) / (double)warm;
            else
                lr = 0.5 * o->lr * (1 + cos(M_PI * (step - warm) / (double)(total - warm)));
            qd_batch_fill(train, nm, perm + b * B, B, o->augment, &rng, x, y);
            const float *tl = NULL;
            if (o->teacher) {
                qd_exec_forward(&te, B, x, 0);
                tl = qd_exec_logits(&te);
            }
            for (int k = 0; k < S; k++) {
                if (o->on_step)
                    o->on_step(o->step_ctx, step * S + k);
                if (shadow) { /* forward/backward on the quantized weights */
                    qd_fake_quant_weights(m, o->qat_bits, shadow);
                    m->param = shadow;
                }
                qd_exec_forward(&e, B, x, 1);
                int c;
                float loss = qd_softmax_xent_f32(B, m->nclass, qd_exec_logits(&e), y, dl, &c);
                if (self) { /* pass 0 teaches the others */
                    if (!k)
                        memcpy(self, qd_exec_logits(&e), sizeof(float) * B * m->nclass);
                    tl = k ? self : NULL;
                }
                if (tl) {
                    float kd = qd_softmax_kd_f32(B, m->nclass, qd_exec_logits(&e), tl,
                                                 o->kd_temp > 0 ? o->kd_temp : 1, dkd);
                    loss = (1 - kw) * loss + kw * kd;
                    for (int i = 0; i < B * m->nclass; i++)
                        dl[i] = (1 - kw) * dl[i] + kw * dkd[i];
                }
                if (!isfinite(loss)) {
                    m->param = master;
                    err = qd_seterr(QD_EINVAL, "train: loss diverged (%g) at step %ld; lower --lr",
                                    loss, step);
                    goto out;
                }
                qd_exec_backward(&e, B, dl);
                m->param = master;
                if (g0 && !k)
                    memcpy(g0, m->grad, P * sizeof(float));
                else if (g0)
                    qd_grad_project(m, m->grad, g0);
                if (gacc) {
                    const float *g = m->grad;
                    float a = 1.0f / S;
#pragma omp parallel for schedule(static)
                    for (size_t i = 0; i < P; i++)
                        gacc[i] = (k ? gacc[i] : 0.0f) + a * g[i];
                }
                lsum += loss * B;
                ok += c;
                seen += B;
            }
            float *w = m->param, *g = gacc ? gacc : m->grad, *v = st, *v2 = st + P;
            float mu = o->momentum, wd = o->weight_decay, flr = (float)lr;
            if (o->optim == QD_OPTIM_SGD) {
#pragma omp parallel for schedule(static)
                for (size_t i = 0; i < P; i++) {
                    float gi = g[i] + (mask[i] ? wd * w[i] : 0.0f);
                    v[i] = mu * v[i] + gi;
                    w[i] -= flr * v[i];
                }
            } else {
                float b1 = 0.9f, b2 = 0.999f;
                float c1 = 1.0f - powf(b1, (float)(step + 1)), c2 = 1.0f - powf(b2, (float)(step + 1));
#pragma omp parallel for schedule(static)
                for (size_t i = 0; i < P; i++) {
                    float gi = g[i] + (mask[i] ? wd * w[i] : 0.0f);
                    v[i] = b1 * v[i] + (1 - b1) * gi;
                    v2[i] = b2 * v2[i] + (1 - b2) * gi * gi;
                    w[i] -= flr * (v[i] / c1) / (sqrtf(v2[i] / c2) + 1e-8f);
                }
            }
            if (tty && (b % 10 == 0 || b == nb - 1))
                progress(ep + 1, o->epochs, b + 1, nb, lsum / seen, seen / (now() - t0));
        }
        if (tty)
            fputc('\n', stderr);
        struct qd_epoch_stats s = {.epoch = ep + 1, .epochs = o->epochs, .test_loss = -1,
                                   .test_acc = -1};
        s.seconds = now() - t0;
        s.loss = seen ? lsum / seen : 0;
        s.train_acc = seen ? (double)ok / seen : 0;
        s.images_per_s = seen / s.seconds;
        s.lr = o->lr;
        if (test && o->eval_each_epoch) {
            struct qd_eval r;
            if (shadow) { /* report what the quantized model does */
                qd_fake_quant_weights(m, o->qat_bits, shadow);
                m->param = shadow;
            }
            err = qd_evaluate(m, test, nm, 256, &r);
            m->param = master;
            if (err)
                goto out;
            s.test_loss = r.loss;
            s.test_acc = r.acc;
        }
        if (cb)
            cb(&s, ctx);
    }
    if (timing) {
        timing->seconds = step > o->timed_from ? now() - t_timed : 0;
        timing->images = step > o->timed_from ? (step - o->timed_from) * (long)B : 0;
    }
out:
    m->param = master;
    if (te.m)
        qd_exec_fini(&te);
    qd_mem_free(gacc, P * sizeof(float));
    qd_mem_free(g0, P * sizeof(float));
    free(dkd);
    free(self);
    qd_mem_free(shadow, P * sizeof(float));
    qd_exec_fini(&e);
    qd_mem_free(x, xbytes);
    qd_mem_free(st, obytes);
    free(dl);
    free(y);
    free(mask);
    free(perm);
    free(ranges);
    return err;
}
