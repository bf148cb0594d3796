/* Training: learns a synthetic task with SGD and with Adam, is deterministic given a seed, and
 * (with the real files) gets the custom CNN well above chance on Fashion-MNIST in seconds. */
#include "testutil.h"

#include <sys/stat.h>

#include "nn/kernels.h"
#include "nn/train.h"
#include "nn/zoo.h"

/* 12x12 grey images, 4 classes: a bright 3x3 blob in one quadrant, on noise. */
static void synth(struct qd_dataset *ds, int n, uint64_t seed)
{
    struct qd_rng r;
    qd_rng_seed(&r, seed);
    memset(ds, 0, sizeof *ds);
    strcpy(ds->name, "synth");
    ds->n = n, ds->c = 1, ds->h = ds->w = 12, ds->nclass = 4;
    ds->x = malloc((size_t)n * 144);
    ds->y = malloc(n);
    for (int i = 0; i < n; i++) {
        int c = (int)qd_rng_below(&r, 4), oy = (c / 2) * 6 + 1 + (int)qd_rng_below(&r, 3),
            ox = (c % 2) * 6 + 1 + (int)qd_rng_below(&r, 3);
        ds->y[i] = (uint8_t)c;
        for (int p = 0; p < 144; p++)
            ds->x[i * 144 + p] = (uint8_t)qd_rng_below(&r, 120);
        for (int dy = 0; dy < 3; dy++)
            for (int dx = 0; dx < 3; dx++)
                ds->x[i * 144 + (oy + dy) * 12 + ox + dx] = 255;
    }
}

static const char *spec = "model tiny\ninput c=1 h=12 w=12\n"
                          "conv out=8 k=3 pad=1\nbn\nrelu\nmaxpool k=2\n"
                          "conv out=8 k=3 pad=1 groups=8\nbn\nrelu name=r\n"
                          "conv name=p out=8 k=1\nadd in=p,r\n"
                          "gap\ndense out=4\n";

static double train_once(enum qd_optim_kind k, uint64_t seed, float *params_out, size_t *np)
{
    struct qd_dataset tr, te;
    synth(&tr, 1024, 1);
    synth(&te, 512, 2);
    struct qd_model m;
    assert_int_equal(qd_model_parse(spec, &m), QD_OK);
    qd_model_init_params(&m, seed);
    struct qd_train_opts o;
    qd_train_opts_default(&o, "synth");
    o.epochs = 6;
    o.batch = 32;
    o.optim = k;
    o.lr = k == QD_OPTIM_ADAM ? 0.01f : 0.1f;
    o.seed = seed;
    o.threads = 2;
    o.eval_each_epoch = 0;
    struct qd_norm nm;
    qd_norm_fit(&tr, &nm);
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_OK);
    struct qd_eval r;
    assert_int_equal(qd_evaluate(&m, &te, &nm, 100, &r), QD_OK);
    if (params_out)
        memcpy(params_out, m.param, m.nparam * 4);
    if (np)
        *np = m.nparam;
    qd_model_fini(&m);
    qd_dataset_fini(&tr);
    qd_dataset_fini(&te);
    return r.acc;
}

static void sgd_and_adam_learn_a_synthetic_task(void **st)
{
    double a = train_once(QD_OPTIM_SGD, 1, NULL, NULL);
    double b = train_once(QD_OPTIM_ADAM, 1, NULL, NULL);
    if (a < 0.95 || b < 0.95)
        fail_msg("accuracy sgd %.3f adam %.3f, want >= 0.95 (chance 0.25)", a, b);
}

static void training_is_deterministic_given_a_seed(void **st)
{
    float p1[4096], p2[4096], p3[4096];
    size_t n;
    train_once(QD_OPTIM_SGD, 7, p1, &n);
    assert_true(n < 4096);
    train_once(QD_OPTIM_SGD, 7, p2, NULL);
    train_once(QD_OPTIM_SGD, 8, p3, NULL);
    assert_memory_equal(p1, p2, n * 4);
    assert_memory_not_equal(p1, p3, n * 4);
}

static void input_shape_mismatch_is_an_error(void **st)
{
    struct qd_dataset tr;
    synth(&tr, 64, 1);
    char *s;
    assert_int_equal(qd_zoo_spec("custom", 1, 28, 28, 10, NULL, &s), QD_OK);
    struct qd_model m;
    assert_int_equal(qd_model_parse(s, &m), QD_OK);
    struct qd_train_opts o;
    qd_train_opts_default(&o, "synth");
    struct qd_norm nm;
    qd_norm_fit(&tr, &nm);
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_ESHAPE);
    assert_non_null(strstr(qd_errmsg(), "28x28"));
    qd_model_fini(&m);
    free(s);
    qd_dataset_fini(&tr);
}

/* Accuracy of m with its conv/dense weights fake-quantized at `b` bits. */
static double quantized_acc(struct qd_model *m, const struct qd_dataset *te,
                            const struct qd_norm *nm, const uint8_t *bits)
{
    float *keep = m->param, *q = malloc(sizeof(float) * m->nparam);
    qd_fake_quant_weights(m, bits, q);
    m->param = q;
    struct qd_eval r;
    assert_int_equal(qd_evaluate(m, te, nm, 100, &r), QD_OK);
    m->param = keep;
    free(q);
    return r.acc;
}

static void fake_quant_weights_invariants(void **st)
{
    struct qd_model m;
    assert_int_equal(qd_model_parse(spec, &m), QD_OK);
    qd_model_init_params(&m, 3);
    uint8_t bits[64] = {0};
    int conv = -1;
    for (int i = 0; i < m.nnodes; i++)
        if (m.nodes[i].op == QD_OP_CONV && conv < 0)
            conv = i;
    bits[conv] = 2;
    float *q = malloc(sizeof(float) * m.nparam);
    qd_fake_quant_weights(&m, bits, q);
    const struct qd_node *n = &m.nodes[conv];
    size_t per = n->wlen / n->out;
    for (int c = 0; c < n->out; c++) {
        float a = 0, *w = q + n->woff + c * per, *f = m.param + n->woff + c * per;
        for (size_t j = 0; j < per; j++)
            a = fmaxf(a, fabsf(f[j]));
        /* 2 bits symmetric: only -k, 0, k for the channel's clip k, at most its largest weight,
         * with no more squared error than the grid through the largest weight; above 4 bits the
         * clip is the largest weight */
        float k = qd_weight_clip(f, per, 2);
        assert_true(k > 0.3f * a && k <= a);
        assert_true(qd_weight_clip(f, per, 8) == a);
        double e = 0, e_max = 0;
        for (size_t j = 0; j < per; j++) {
            assert_true(w[j] == 0 || fabsf(fabsf(w[j]) - k) < 1e-6f);
            float r = a * roundf(f[j] / a);
            e += (double)(f[j] - w[j]) * (f[j] - w[j]);
            e_max += (double)(f[j] - r) * (f[j] - r);
        }
        assert_true(e <= e_max);
    }
    /* everything else untouched */
    for (size_t j = 0; j < m.nparam; j++)
        if (j < n->woff || j >= n->woff + n->wlen)
            assert_true(q[j] == m.param[j]);
    free(q);
    qd_model_fini(&m);
}

static void qat_recovers_two_bit_accuracy(void **st)
{
    struct qd_dataset tr, te;
    synth(&tr, 1024, 1);
    synth(&te, 512, 2);
    struct qd_model m;
    assert_int_equal(qd_model_parse(spec, &m), QD_OK);
    qd_model_init_params(&m, 5);
    struct qd_train_opts o;
    qd_train_opts_default(&o, "synth");
    o.epochs = 6, o.batch = 32, o.lr = 0.1f, o.threads = 2, o.eval_each_epoch = 0;
    struct qd_norm nm;
    qd_norm_fit(&tr, &nm);
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_OK);
    uint8_t bits[64] = {0};
    for (int i = 0; i < m.nnodes; i++)
        if (m.nodes[i].op == QD_OP_CONV || m.nodes[i].op == QD_OP_DENSE)
            bits[i] = 2;
    double ptq = quantized_acc(&m, &te, &nm, bits);
    o.epochs = 4, o.lr = 0.02f, o.warmup_epochs = 0, o.qat_bits = bits;
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_OK);
    double qat = quantized_acc(&m, &te, &nm, bits);
    fprintf(stderr, "2-bit weights: post-training %.3f, after QAT %.3f\n", ptq, qat);
    assert_true(qat >= 0.9 && qat > ptq + 0.05);
    qd_model_fini(&m);
    qd_dataset_fini(&tr);
    qd_dataset_fini(&te);
}

struct pass_log {
    long calls, out_of_order;
};

static void log_pass(void *ctx, long i)
{
    struct pass_log *l = ctx;
    l->out_of_order += i != l->calls;
    l->calls++;
}

/* The two-pass tests' training set (512 images) and its normalization. */
static void synth_fit(struct qd_dataset *tr, struct qd_norm *nm)
{
    synth(tr, 512, 1);
    qd_norm_fit(tr, nm);
}

/* Two epochs of 32-image batches on 2 threads, no evaluation: the runs the next tests compare. */
static void two_epochs(struct qd_train_opts *o, float lr)
{
    qd_train_opts_default(o, "synth");
    o->epochs = 2, o->batch = 32, o->lr = lr, o->threads = 2, o->eval_each_epoch = 0;
}

/* The weights o trains from one fixed start (malloc'd; *np floats). */
static float *weights_after(const struct qd_dataset *tr, const struct qd_norm *nm,
                            const struct qd_train_opts *o, size_t *np)
{
    struct qd_model m;
    assert_int_equal(qd_model_parse(spec, &m), QD_OK);
    qd_model_init_params(&m, 3);
    assert_int_equal(qd_train(&m, tr, NULL, nm, o, NULL, NULL), QD_OK);
    *np = m.nparam;
    float *p = malloc(*np * sizeof(float));
    memcpy(p, m.param, *np * sizeof(float));
    qd_model_fini(&m);
    return p;
}

/* Several passes a step: on_step sees step * substeps + k for every pass k, and the update is
 * the passes' mean gradient, so two passes at the same bits train bit-identical weights to one
 * pass (halving and adding two equal halves is exact). */
static void substeps_average_their_gradients(void **st)
{
    struct qd_dataset tr;
    struct qd_norm nm;
    synth_fit(&tr, &nm);
    float *p[2];
    size_t np = 0;
    for (int s = 1; s <= 2; s++) {
        struct qd_train_opts o;
        two_epochs(&o, 0.05f);
        struct pass_log l = {0};
        o.substeps = s, o.on_step = log_pass, o.step_ctx = &l;
        p[s - 1] = weights_after(&tr, &nm, &o, &np);
        assert_int_equal(l.calls, 2L * (512 / 32) * s);
        assert_int_equal(l.out_of_order, 0);
    }
    assert_memory_equal(p[0], p[1], np * sizeof(float));
    free(p[0]), free(p[1]);
    qd_dataset_fini(&tr);
}

/* In-place distillation: pass 1 of each step learns pass 0's logits. With both passes at the
 * same (float) weights those targets are pass 1's own logits, so its gradient is exactly zero
 * and two passes train bit-identical weights to one pass at half the learning rate (no weight
 * decay: it would not halve). It needs several passes and no teacher. */
static void inplace_distillation_learns_from_the_first_pass(void **st)
{
    struct qd_dataset tr;
    struct qd_norm nm;
    synth_fit(&tr, &nm);
    float *p[2];
    size_t np = 0;
    struct qd_train_opts o;
    for (int s = 1; s <= 2; s++) {
        two_epochs(&o, s == 1 ? 0.025f : 0.05f);
        o.weight_decay = 0, o.substeps = s, o.kd_inplace = s == 2, o.kd_weight = 1;
        p[s - 1] = weights_after(&tr, &nm, &o, &np);
    }
    assert_memory_equal(p[0], p[1], np * sizeof(float));
    struct qd_model m; /* one pass, or a teacher beside it: refused */
    assert_int_equal(qd_model_parse(spec, &m), QD_OK);
    o.substeps = 1;
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_EINVAL);
    assert_non_null(strstr(qd_errmsg(), "in-place"));
    o.substeps = 2, o.teacher = &m;
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_EINVAL);
    qd_model_fini(&m);
    free(p[0]), free(p[1]);
    qd_dataset_fini(&tr);
}

/* Pass 1 of each step at 2-bit weights, pass 0 in float (qat_bits rewritten per pass). */
static void float_then_two_bits(void *ctx, long i)
{
    uint8_t *bits = ctx;
    for (int k = 0; k < 64; k++)
        bits[k] = i % 2 ? 2 : 0;
}

/* Gradient projection: per tensor, a gradient against g0 loses its component along g0 (and
 * then is orthogonal to it), one with it is left bit for bit. In training it changes nothing
 * where the passes agree (two identical passes) and changes the weights where they conflict
 * (a 2-bit pass beside a float one). */
static void gradient_projection_removes_conflicts(void **st)
{
    struct qd_model m;
    assert_int_equal(qd_model_parse(spec, &m), QD_OK);
    size_t P = m.nparam;
    float *g = malloc(P * sizeof(float)), *g0 = malloc(P * sizeof(float)),
          *h = malloc(P * sizeof(float));
    struct qd_rng r;
    qd_rng_seed(&r, 4);
    for (size_t i = 0; i < P; i++)
        g0[i] = 2 * qd_rng_uniform(&r) - 1;
    int against = 0, along = 0;
    for (int i = 1; i < m.nnodes; i++) { /* weights against g0 at odd nodes, along it at even */
        const struct qd_node *n = &m.nodes[i];
        for (int part = 0; part < 2; part++) {
            size_t off = part ? n->boff : n->woff, len = part ? n->blen : n->wlen;
            if (off == QD_NONE)
                continue;
            for (size_t k = 0; k < len; k++)
                g[off + k] = (i % 2 ? -0.7f : 0.7f) * g0[off + k] +
                             0.3f * (qd_rng_uniform(&r) - 0.5f);
            against += i % 2, along += !(i % 2);
        }
    }
    assert_true(against >= 3 && along >= 3);
    memcpy(h, g, P * sizeof(float));
    qd_grad_project(&m, h, g0);
    for (int i = 1; i < m.nnodes; i++) {
        const struct qd_node *n = &m.nodes[i];
        for (int part = 0; part < 2; part++) {
            size_t off = part ? n->boff : n->woff, len = part ? n->blen : n->wlen;
            if (off == QD_NONE)
                continue;
            if (!(i % 2)) {
                assert_memory_equal(h + off, g + off, len * sizeof(float));
                continue;
            }
            double dot = 0, before = 0, nn = 0;
            for (size_t k = 0; k < len; k++) {
                dot += (double)h[off + k] * g0[off + k];
                before += (double)g[off + k] * g0[off + k];
                nn += (double)g0[off + k] * g0[off + k];
            }
            assert_true(before < 0);
            if (fabs(dot) > 1e-4 * nn)
                fail_msg("node %d: <g, g0> = %g after the projection", i, dot);
            for (size_t k = 0; k < len; k++) /* only g0's direction was taken out */
                assert_float_equal(h[off + k] - g[off + k],
                                   (float)(-before / nn) * g0[off + k], 1e-5);
        }
    }
    free(g), free(g0), free(h);
    qd_model_fini(&m);
    /* in training */
    struct qd_dataset tr;
    struct qd_norm nm;
    synth_fit(&tr, &nm);
    float *p[4];
    size_t np = 0;
    uint8_t bits[64];
    for (int c = 0; c < 4; c++) {
        struct qd_train_opts o;
        two_epochs(&o, 0.05f);
        o.substeps = 2, o.project = c % 2;
        if (c >= 2)
            o.qat_bits = bits, o.on_step = float_then_two_bits, o.step_ctx = bits;
        p[c] = weights_after(&tr, &nm, &o, &np);
    }
    assert_memory_equal(p[0], p[1], np * sizeof(float));
    assert_true(memcmp(p[2], p[3], np * sizeof(float)) != 0);
    for (int c = 0; c < 4; c++)
        free(p[c]);
    qd_dataset_fini(&tr);
}

/* Distillation: a student trained on labels that are pure noise learns the task from a trained
 * teacher's soft targets (kd_weight 1), and does not without them (kd_weight 0); a teacher
 * with other classes is an error. */
static void distillation_learns_from_the_teacher(void **st)
{
    struct qd_dataset tr, te;
    synth(&tr, 1024, 1);
    synth(&te, 512, 2);
    struct qd_norm nm;
    qd_norm_fit(&tr, &nm);
    struct qd_model t;
    assert_int_equal(qd_model_parse(spec, &t), QD_OK);
    qd_model_init_params(&t, 5);
    struct qd_train_opts o;
    qd_train_opts_default(&o, "synth");
    o.epochs = 6, o.batch = 32, o.lr = 0.1f, o.threads = 2, o.eval_each_epoch = 0;
    assert_int_equal(qd_train(&t, &tr, NULL, &nm, &o, NULL, NULL), QD_OK);
    struct qd_eval r;
    assert_int_equal(qd_evaluate(&t, &te, &nm, 100, &r), QD_OK);
    assert_true(r.acc >= 0.95);
    struct qd_rng rng;
    qd_rng_seed(&rng, 9);
    for (int i = 0; i < tr.n; i++)
        tr.y[i] = (uint8_t)qd_rng_below(&rng, 4);
    double acc[2];
    for (int k = 0; k < 2; k++) {
        struct qd_model m;
        assert_int_equal(qd_model_parse(spec, &m), QD_OK);
        qd_model_init_params(&m, 6);
        o.teacher = &t, o.kd_weight = (float)k, o.kd_temp = 2;
        assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_OK);
        assert_int_equal(qd_evaluate(&m, &te, &nm, 100, &r), QD_OK);
        acc[k] = r.acc;
        qd_model_fini(&m);
    }
    fprintf(stderr, "noise labels: alone %.3f, distilled %.3f (teacher >= 0.95)\n", acc[0],
            acc[1]);
    assert_true(acc[1] >= 0.9 && acc[0] < 0.6);
    struct qd_model m, t3;
    assert_int_equal(qd_model_parse(spec, &m), QD_OK);
    char *s3 = strdup(spec);
    char *d = strstr(s3, "dense out=4");
    d[10] = '3';
    assert_int_equal(qd_model_parse(s3, &t3), QD_OK);
    o.teacher = &t3, o.kd_weight = 1;
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_ESHAPE);
    assert_non_null(strstr(qd_errmsg(), "teacher"));
    qd_model_fini(&m), qd_model_fini(&t3), qd_model_fini(&t);
    free(s3);
    qd_dataset_fini(&tr);
    qd_dataset_fini(&te);
}

/* Activation fake quantization: a training forward puts the node's outputs on a grid of at most
 * 2^bits values inside the tracked range; backward zeroes the gradient exactly where the
 * forward clipped to the top, and passes it unchanged elsewhere; QAT with 4-bit activations
 * and 4-bit weights still learns the task. */
static void activation_fake_quant_grid_and_gradient(void **st)
{
    struct qd_dataset tr, te;
    synth(&tr, 1024, 1);
    synth(&te, 512, 2);
    struct qd_model m;
    assert_int_equal(qd_model_parse(spec, &m), QD_OK);
    qd_model_init_params(&m, 9);
    int r = -1;
    for (int i = 0; i < m.nnodes; i++)
        if (m.nodes[i].op == QD_OP_RELU && r < 0)
            r = i;
    uint8_t abits[64] = {0};
    abits[r] = 4;
    float range[128];
    for (int i = 0; i < 128; i++)
        range[i] = NAN;
    struct qd_exec e;
    assert_int_equal(qd_exec_init(&e, &m, 8), QD_OK);
    e.act_bits = abits, e.act_range = range;
    struct qd_norm nm;
    qd_norm_fit(&tr, &nm);
    float x[8 * 144];
    uint8_t y[8];
    int idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    qd_batch_fill(&tr, &nm, idx, 8, 0, NULL, x, y);
    qd_exec_forward(&e, 8, x, 1);
    size_t len = 8 * (size_t)m.nodes[r].c * m.nodes[r].h * m.nodes[r].w;
    float distinct[64];
    int nd = 0;
    for (size_t k = 0; k < len; k++) {
        float v = e.act[r][k];
        assert_true(v >= range[2 * r] - 1e-5f && v <= range[2 * r + 1] + 1e-5f);
        int seen = 0;
        for (int j = 0; j < nd; j++)
            seen |= distinct[j] == v;
        if (!seen) {
            assert_true(nd < 16); /* 4 bits: at most 16 levels */
            distinct[nd++] = v;
        }
    }
    assert_true(nd >= 4); /* and it is not degenerate */
    /* Shrink the range so that many values clip; an eval forward uses it without updating it */
    range[2 * r + 1] *= 0.3f;
    qd_exec_forward(&e, 8, x, 0);
    float dl[8 * 4];
    for (int k = 0; k < 32; k++)
        dl[k] = (float)((k * 7) % 5) - 2;
    qd_exec_backward(&e, 8, dl);
    int clipped = 0, passed = 0;
    float top = -1;
    for (size_t k = 0; k < len; k++)
        top = fmaxf(top, e.act[r][k]);
    for (size_t k = 0; k < len; k++) {
        if (e.act[r][k] >= top) {
            clipped++;
            assert_true(e.dact[r][k] == 0);
        } else if (e.dact[r][k] != 0) {
            passed++;
        }
    }
    assert_true(clipped > 10 && passed > 10);
    qd_exec_fini(&e);
    /* QAT at 4-bit weights and 4-bit activations learns */
    struct qd_train_opts o;
    qd_train_opts_default(&o, "synth");
    o.epochs = 6, o.batch = 32, o.lr = 0.1f, o.threads = 2, o.eval_each_epoch = 0;
    uint8_t wbits[64] = {0};
    for (int i = 0; i < m.nnodes; i++) {
        if (m.nodes[i].op == QD_OP_CONV || m.nodes[i].op == QD_OP_DENSE)
            wbits[i] = 4;
        if (m.nodes[i].op == QD_OP_RELU || m.nodes[i].op == QD_OP_ADD)
            abits[i] = 4;
    }
    o.qat_bits = wbits, o.qat_act_bits = abits;
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_OK);
    double acc = quantized_acc(&m, &te, &nm, wbits);
    fprintf(stderr, "4-bit weights and activations QAT from scratch: %.3f\n", acc);
    assert_true(acc >= 0.9);
    qd_model_fini(&m);
    qd_dataset_fini(&tr);
    qd_dataset_fini(&te);
}

static void custom_cnn_on_real_fashion_mnist(void **st)
{
    char d[1024];
    real_data_dir("fashion-mnist/t10k-images-idx3-ubyte.gz", d, sizeof d);
    struct qd_dataset tr, te;
    assert_int_equal(qd_data_load(d, "fashion-mnist", 1, &tr), QD_OK);
    assert_int_equal(qd_data_load(d, "fashion-mnist", 0, &te), QD_OK);
    tr.n = 4096;
    char *s;
    assert_int_equal(qd_zoo_spec("custom", 1, 28, 28, 10, NULL, &s), QD_OK);
    struct qd_model m;
    assert_int_equal(qd_model_parse(s, &m), QD_OK);
    qd_model_init_params(&m, 1);
    struct qd_train_opts o;
    qd_train_opts_default(&o, tr.name);
    o.epochs = 2;
    o.threads = 2;
    o.eval_each_epoch = 0;
    struct qd_norm nm;
    qd_norm_fit(&tr, &nm);
    assert_int_equal(qd_train(&m, &tr, NULL, &nm, &o, NULL, NULL), QD_OK);
    struct qd_eval r;
    assert_int_equal(qd_evaluate(&m, &te, &nm, 256, &r), QD_OK);
    fprintf(stderr, "custom CNN, 4096 Fashion-MNIST images, 2 epochs: test accuracy %.4f\n", r.acc);
    assert_true(r.acc > 0.75); /* chance is 0.10 */
    qd_model_fini(&m);
    free(s);
    qd_dataset_fini(&tr);
    qd_dataset_fini(&te);
}

int main(void)
{
    qd_kernels_init(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sgd_and_adam_learn_a_synthetic_task),
        cmocka_unit_test(training_is_deterministic_given_a_seed),
        cmocka_unit_test(input_shape_mismatch_is_an_error),
        cmocka_unit_test(fake_quant_weights_invariants),
        cmocka_unit_test(qat_recovers_two_bit_accuracy),
        cmocka_unit_test(substeps_average_their_gradients),
        cmocka_unit_test(distillation_learns_from_the_teacher),
        cmocka_unit_test(inplace_distillation_learns_from_the_first_pass),
        cmocka_unit_test(gradient_projection_removes_conflicts),
        cmocka_unit_test(activation_fake_quant_grid_and_gradient),
        cmocka_unit_test(custom_cnn_on_real_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
