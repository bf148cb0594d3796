/* The supernet and the gate: the gate's backward pass against finite differences, its file
 * (round trip, every damage caught), its objective and decisions (always within budget, and
 * following the logits where the budgets allow), that training teaches it to spend fewer bits
 * under tight budgets than under loose ones, the supernet's per-policy BatchNorm cache, and its
 * switchable BatchNorm. */
#include "testutil.h"

#include <unistd.h>

#include "core/file.h"
#include "gate/gate.h"
#include "gate/supernet.h"
#include "quantfix.h"

static void devdir(void)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/etc/devices", getenv("QD_SOURCE_DIR"));
    setenv("QD_DEVICE_DIR", dir, 1);
}

/* A decider assembled from a fixture (no files): random sensitivity, the fixture's data as
 * the training set. */
static void decider_of(struct fixture *fx, struct qd_decider *d)
{
    memset(d, 0, sizeof *d);
    d->m = fx->m;
    d->g = fx->g;
    d->ranges = fx->rg;
    d->tr = fx->ds;
    d->have_tr = 1;
    qd_norm_fit(&fx->ds, &d->nm);
    snprintf(d->md5, sizeof d->md5, "0123456789abcdef0123456789abcdef");
    struct qd_rng r;
    qd_rng_seed(&r, 5);
    assert_int_equal(qd_sens_alloc(&d->s, fx->g.nq), QD_OK);
    d->have_s = 1;
    for (int l = 0; l < fx->g.nq; l++)
        for (int b = 2; b <= 16; b *= 2)
            d->s.dloss[l][b] = (16.0 / b) * (0.01 + qd_rng_uniform(&r));
}

static double gate_loss(const struct qd_gate *g, const float *c, const float *w)
{
    float work[2 * 64], out[64 * QD_GATE_OUT];
    qd_gate_forward(g, c, work, out);
    double s = 0;
    for (int o = 0; o < g->L * QD_GATE_OUT; o++)
        s += w[o] * out[o] + 0.5 * out[o] * out[o];
    return s;
}

static void gate_backward_matches_finite_differences(void **st)
{
    struct qd_gate g;
    assert_int_equal(qd_gate_init(&g, 5, 16, 3), QD_OK);
    struct qd_rng r;
    qd_rng_seed(&r, 9);
    for (size_t i = 0; i < g.nparam; i++) /* non-zero biases too */
        g.param[i] += 0.1f * qd_rng_normal(&r);
    float c[QD_GATE_IN], w[5 * QD_GATE_OUT], work[2 * 16], out[5 * QD_GATE_OUT];
    for (int k = 0; k < QD_GATE_IN; k++)
        c[k] = qd_rng_uniform(&r) * 2 - 1;
    for (int o = 0; o < 5 * QD_GATE_OUT; o++)
        w[o] = qd_rng_uniform(&r) * 2 - 1;
    qd_gate_forward(&g, c, work, out);
    float *dl = malloc(sizeof *dl * 5 * QD_GATE_OUT), *grad = calloc(g.nparam, sizeof *grad);
    for (int o = 0; o < 5 * QD_GATE_OUT; o++)
        dl[o] = w[o] + out[o];
    qd_gate_backward(&g, c, work, dl, grad);
    int checked = 0;
    for (size_t i = 0; i < g.nparam; i += 7) {
        float keep = g.param[i];
        double h = 1e-3;
        g.param[i] = keep + (float)h;
        double lp = gate_loss(&g, c, w);
        g.param[i] = keep - (float)h;
        double lm = gate_loss(&g, c, w);
        g.param[i] = keep;
        double num = (lp - lm) / (2 * h);
        if (fabs(num - grad[i]) > 2e-2 * (1 + fabs(num)))
            fail_msg("param %zu: analytic %g, numeric %g", i, grad[i], num);
        checked++;
    }
    assert_true(checked > 50);
    free(dl), free(grad);
    qd_gate_fini(&g);
}

static void gate_file_round_trip_and_damage(void **st)
{
    char *dir = make_tmpdir(), path[600];
    snprintf(path, sizeof path, "%s/g.gate", dir);
    struct qd_gate g, h;
    assert_int_equal(qd_gate_init(&g, 7, 12, 1), QD_OK);
    strcpy(g.backbone, "abc");
    strcpy(g.ckpt, "runs/x.super");
    assert_int_equal(qd_gate_save(&g, path), QD_OK);
    assert_int_equal(qd_gate_load(path, &h), QD_OK);
    assert_int_equal(h.L, 7);
    assert_int_equal(h.hidden, 12);
    assert_string_equal(h.backbone, "abc");
    assert_string_equal(h.ckpt, "runs/x.super");
    assert_memory_equal(h.param, g.param, g.nparam * sizeof(float));
    qd_gate_fini(&h);
    uint8_t *b;
    size_t n;
    assert_int_equal(qd_file_read(path, &b, &n), QD_OK);
    /* any flipped byte is caught, any truncation too */
    for (size_t i = 0; i < n; i += 13) {
        b[i] ^= 0x40;
        assert_int_equal(qd_file_write_atomic(path, b, n), QD_OK);
        qd_err e = qd_gate_load(path, &h);
        assert_true(e == QD_ECHECKSUM || e == QD_EFORMAT);
        b[i] ^= 0x40;
    }
    for (size_t k = 0; k < n; k += n / 9)
        if (k < n) {
            assert_int_equal(qd_file_write_atomic(path, b, k), QD_OK);
            assert_int_equal(qd_gate_load(path, &h), QD_EFORMAT);
        }
    free(b);
    qd_gate_fini(&g);
    rm_rf(dir);
    free(dir);
}

static void gate_decisions_fit_and_follow_the_logits(void **st)
{
    devdir();
    struct fixture fx;
    make(&fx, "custom", 1, 12, 31);
    struct qd_decider d;
    decider_of(&fx, &d);
    struct qd_gate g;
    assert_int_equal(qd_gate_init(&g, fx.g.nq, 8, 2), QD_OK);
    /* output biases: every layer prefers 16-bit weights, then 8, and 8-bit activations */
    float *b3 = g.param + g.nparam - (size_t)g.L * QD_GATE_OUT;
    for (size_t i = 0; i < g.nparam - (size_t)g.L * QD_GATE_OUT; i++)
        g.param[i] = 0;
    for (int l = 0; l < g.L; l++) {
        b3[l * 6 + 3] = 5;
        b3[l * 6 + 2] = 3; /* then 8 */
        b3[l * 6 + 4] = 5;
    }
    const char *devs[] = {"cortex-m4", "rp2040"};
    struct qd_rng r;
    qd_rng_seed(&r, 8);
    for (int di = 0; di < 2; di++) {
        struct qd_device dev;
        assert_int_equal(qd_device_load(devs[di], &dev), QD_OK);
        struct qd_decide_tables t;
        assert_int_equal(qd_decide_prepare(&d, &dev, &t), QD_OK);
        double inf[QD_BUDGET_COUNT] = {INFINITY, INFINITY, INFINITY, INFINITY};
        struct qd_decision x;
        assert_int_equal(qd_gate_decide(&g, &d, &t, inf, 1.0, &x), QD_OK);
        int top = dev.wbits_ok[16] ? 16 : 8;
        for (int l = 0; l < x.policy.n; l++) {
            assert_int_equal(x.policy.wbits[l], top); /* unsupported 16 never chosen */
            assert_int_equal(x.policy.abits[l], 8);
        }
        double objw[QD_POLICY_MAX * 17], obja[2];
        float c[QD_GATE_IN], work[16], lg[QD_POLICY_MAX * QD_GATE_OUT];
        qd_gate_context(&t, inf, 1.0, c);
        qd_gate_forward(&g, c, work, lg);
        qd_gate_objective(&g, &t, lg, objw, obja);
        assert_true(isinf(objw[3]) && isinf(objw[17 + 5]));
        assert_true(dev.wbits_ok[16] ? isfinite(objw[16]) : isinf(objw[16]));
        for (int trial = 0; trial < 20; trial++) {
            double b[QD_BUDGET_COUNT];
            for (int k = 0; k < QD_BUDGET_COUNT; k++)
                b[k] = t.lo[k] + qd_rng_uniform(&r) * (t.hi[k] - t.lo[k]);
            qd_err e = qd_gate_decide(&g, &d, &t, b, 0.5, &x);
            if (e == QD_EBUDGET)
                continue;
            assert_int_equal(e, QD_OK);
            for (int k = 0; k < QD_BUDGET_COUNT; k++)
                assert_true(x.r.cost[k] <= b[k] * (1 + 1e-9));
        }
        double tight[QD_BUDGET_COUNT] = {t.lo[0] - 1, INFINITY, INFINITY, INFINITY};
        assert_int_equal(qd_gate_decide(&g, &d, &t, tight, 1.0, &x), QD_EBUDGET);
        qd_decide_tables_fini(&t);
    }
    qd_gate_fini(&g);
    qd_sens_fini(&d.s);
    unmake(&fx);
}

/* Mean chosen weight bits of the gate's argmax at a context; *least: the fewest of a layer;
 * each layer's into pick[] unless NULL. */
static double mean_bits(const struct qd_gate *g, const struct qd_decide_tables *t,
                        const double *b, int *least, int *pick)
{
    float c[QD_GATE_IN], work[2 * 64], lg[QD_POLICY_MAX * QD_GATE_OUT];
    qd_gate_context(t, b, 1.0, c);
    qd_gate_forward(g, c, work, lg);
    static const int WB[4] = {2, 4, 8, 16};
    double s = 0;
    for (int l = 0; l < g->L; l++) {
        int best = 0;
        for (int k = 1; k < 4; k++)
            if (lg[l * 6 + k] > lg[l * 6 + best])
                best = k;
        s += WB[best];
        *least = l == 0 || WB[best] < *least ? WB[best] : *least;
        if (pick)
            pick[l] = WB[best];
    }
    return s / g->L;
}

/* Trains a gate on fx (probe as given) and checks what any training must give: the supernet
 * untouched, fewer bits under a flash budget near the smallest than with none. Returns the
 * mean bits with no budget; each layer's into pick[] unless NULL. */
static double train_tight_and_loose(struct fixture *fx, int probe, int steps, int *pick)
{
    devdir();
    struct qd_decider d;
    decider_of(fx, &d);
    static const char *const profs[] = {"cortex-m4"};
    struct qd_gate g;
    struct qd_gate_train_opts o = {.steps = steps, .batch = 8, .hidden = 32, .threads = 1,
                                   .lr = 3e-3f, .lambda = 4, .seed = 3, .profiles = profs,
                                   .nprofiles = 1, .probe = probe};
    float *p0 = malloc(sizeof *p0 * fx->m.nparam), *s0 = malloc(sizeof *s0 * fx->m.nstat);
    memcpy(p0, fx->m.param, sizeof *p0 * fx->m.nparam);
    memcpy(s0, fx->m.stat, sizeof *s0 * fx->m.nstat);
    assert_int_equal(qd_gate_train(&g, &d, &o), QD_OK);
    /* the supernet is frozen: its weights and statistics are untouched */
    assert_memory_equal(p0, fx->m.param, sizeof *p0 * fx->m.nparam);
    assert_memory_equal(s0, fx->m.stat, sizeof *s0 * fx->m.nstat);
    struct qd_device dev;
    assert_int_equal(qd_device_load("cortex-m4", &dev), QD_OK);
    struct qd_decide_tables t;
    assert_int_equal(qd_decide_prepare(&d, &dev, &t), QD_OK);
    double tight[QD_BUDGET_COUNT] = {t.lo[0] * 1.02, INFINITY, INFINITY, INFINITY};
    double loose[QD_BUDGET_COUNT] = {INFINITY, INFINITY, INFINITY, INFINITY};
    int lt = 0, ll = 0;
    double bt = mean_bits(&g, &t, tight, &lt, NULL), bl = mean_bits(&g, &t, loose, &ll, pick);
    print_message("probe %d: %.2f weight bits on average (fewest %d) under a tight flash budget, "
                  "%.2f (fewest %d) with none\n", probe, bt, lt, bl, ll);
    if (!(bt < bl))
        fail_msg("probe %d, tight flash: %.2f bits on average, unconstrained %.2f", probe, bt,
                 bl);
    qd_decide_tables_fini(&t);
    free(p0), free(s0);
    qd_gate_fini(&g);
    qd_sens_fini(&d.s);
    return bl;
}

static void training_spends_fewer_bits_under_tight_budgets(void **st)
{
    struct fixture fx;
    make(&fx, "custom", 1, 12, 41);
    train_tight_and_loose(&fx, 0, 600, NULL);
    train_tight_and_loose(&fx, 2, 300, NULL);
    unmake(&fx);
}

/* The policies a supernet trains, pass by pass: one a step cycles highest, lowest, two random;
 * two a step: the highest first, the lowest one step in four; from three, the sandwich: both
 * ends every step, then random ones; or the lowest one step in L as asked. */
static void supernet_sampling_schedule(void **st)
{
    /* policies a step, lowest_every, then of 400 steps: how many train the all-lowest */
    static const int cases[][3] = {{1, 0, 100}, {2, 0, 100}, {3, 0, 400}, {5, 0, 400},
                                   {2, 1, 400}, {3, 2, 200}, {3, 4, 100}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int S = cases[c][0], L = cases[c][1], n[3] = {0};
        for (long pass = 0; pass < 400L * S; pass++) {
            int k = qd_supernet_pass_kind(S, L, pass), i = (int)(pass % S);
            assert_true(k >= 0 && k <= 2);
            n[k]++;
            if (S > 1) { /* the highest first, the lowest second */
                assert_int_equal(k == 0, i == 0);
                if (k == 1)
                    assert_int_equal(i, 1);
            }
        }
        assert_int_equal(n[0], S == 1 ? 100 : 400);
        assert_int_equal(n[1], cases[c][2]);
        assert_int_equal(n[2], 400 * S - n[0] - n[1]);
    }
}

/* A backbone fitted to its images (loss near 0) at least doubles its loss at 2 bits on some
 * layers (absolute differences of 1e-3, which only a relative task term sees): with no budget, the
 * measured task signal alone must keep those layers wider (what the budget penalty never asks
 * for). Measured by the sensitivity of the fitted model: the width the gate picks for a layer
 * must lose at most half of what 2 bits lose there. (Layers where 4 bits lose no more than 8
 * may sit at 4: nothing tells them apart. With the plain loss as the task term, on the
 * measured cortex-m4 profile, 2-bit layers were picked here.) */
static void measured_task_loss_keeps_bits_where_they_matter(void **st)
{
    struct fixture fx;
    make(&fx, "custom", 1, 12, 43);
    struct qd_norm nm;
    qd_norm_fit(&fx.ds, &nm);
    struct qd_train_opts t;
    qd_train_opts_default(&t, "synth");
    t.epochs = 60, t.batch = 8, t.lr = 0.05f, t.threads = 1, t.augment = 0, t.progress = 0;
    t.warmup_epochs = 0, t.eval_each_epoch = 0;
    assert_int_equal(qd_train(&fx.m, &fx.ds, NULL, &nm, &t, NULL, NULL), QD_OK);
    struct qd_igraph g;
    struct qd_sens s;
    assert_int_equal(qd_igraph_build(&fx.m, &nm, &g), QD_OK);
    assert_int_equal(qd_sens_measure(&g, &fx.ds, &nm, fx.ds.n, &s), QD_OK); /* allocates s */
    int pick[QD_POLICY_MAX], lossy = 0;
    train_tight_and_loose(&fx, 5, 300, pick);
    for (int l = 0; l < g.nq; l++) {
        print_message("layer %d: loss +%.4f at 2 bits, +%.4f at 4, +%.4f at 8; picked %d\n", l,
                      s.dloss[l][2], s.dloss[l][4], s.dloss[l][8], pick[l]);
        lossy += s.dloss[l][2] > s.loss0;
        if (!(s.dloss[l][pick[l]] <= 0.5 * s.dloss[l][2] + 1e-6))
            fail_msg("no budget binds, yet layer %d sits at %d bits, losing %.4f (2 bits: %.4f)",
                     l, pick[l], s.dloss[l][pick[l]], s.dloss[l][2]);
    }
    print_message("fitted loss %.5f\n", s.loss0);
    assert_true(lossy > 0); /* the premise: 2 bits at least double the loss somewhere */
    qd_sens_fini(&s);
    qd_igraph_fini(&g);
    unmake(&fx);
}

static void supernet_bn_cache(void **st)
{
    struct fixture fx;
    make(&fx, "custom", 1, 12, 51);
    struct qd_norm nm;
    qd_norm_fit(&fx.ds, &nm);
    char *dir = make_tmpdir(), path[600];
    snprintf(path, sizeof path, "%s/s.bn", dir);
    struct qd_policy p4, p8;
    qd_policy_uniform(&p4, fx.g.nq, 4, 8);
    qd_policy_uniform(&p8, fx.g.nq, 8, 8);
    uint8_t *wb = malloc(fx.m.nnodes), *ab = malloc(fx.m.nnodes);
    qd_supernet_node_bits(&fx.m, &fx.g, &p4, wb, ab);
    int nw = 0;
    for (int i = 0; i < fx.m.nnodes; i++) {
        int op = fx.m.nodes[i].op;
        assert_int_equal(wb[i], op == QD_OP_CONV || op == QD_OP_DENSE ? 4 : 0);
        nw += wb[i] != 0;
    }
    assert_true(nw >= 3);
    free(wb), free(ab);
    struct qd_bn_cache c;
    assert_int_equal(qd_bn_cache_open(&c, path, fx.m.nstat, "key-1"), QD_OK);
    const float *a4, *a8, *b4;
    assert_int_equal(qd_bn_cache_get(&c, &fx.m, &nm, &fx.g, &fx.ds, &p4, 3, &a4), QD_OK);
    assert_int_equal(qd_bn_cache_get(&c, &fx.m, &nm, &fx.g, &fx.ds, &p8, 3, &a8), QD_OK);
    assert_int_equal(c.n, 2);
    assert_true(memcmp(a4, a8, sizeof(float) * fx.m.nstat) != 0); /* precision moves the stats */
    /* statistics from another number of batches are another entry, not the cached one */
    const float *a4b;
    assert_int_equal(qd_bn_cache_get(&c, &fx.m, &nm, &fx.g, &fx.ds, &p4, 1, &a4b), QD_OK);
    assert_int_equal(c.n, 3);
    assert_true(a4b != a4 && memcmp(a4, a4b, sizeof(float) * fx.m.nstat) != 0);
    float *keep = malloc(sizeof(float) * fx.m.nstat);
    memcpy(keep, a4, sizeof(float) * fx.m.nstat);
    qd_bn_cache_fini(&c);
    /* reopened: served from the file, bit for bit */
    assert_int_equal(qd_bn_cache_open(&c, path, fx.m.nstat, "key-1"), QD_OK);
    assert_int_equal(c.n, 3);
    assert_int_equal(qd_bn_cache_get(&c, &fx.m, &nm, &fx.g, &fx.ds, &p4, 3, &b4), QD_OK);
    assert_memory_equal(b4, keep, sizeof(float) * fx.m.nstat);
    qd_bn_cache_fini(&c);
    /* the recalibrated statistics are the batches' own: the running statistics the supernet
     * held before (a mix over every policy) leave no trace, and are there again after */
    float *s1 = malloc(sizeof(float) * fx.m.nstat), *s2 = malloc(sizeof(float) * fx.m.nstat);
    float *held = malloc(sizeof(float) * fx.m.nstat);
    assert_int_equal(qd_supernet_bn_stats(&fx.m, &nm, &fx.g, &fx.ds, &p4, 3, s1), QD_OK);
    for (size_t i = 0; i < fx.m.nstat; i++)
        fx.m.stat[i] = 3.0f + (float)(i % 7);
    memcpy(held, fx.m.stat, sizeof(float) * fx.m.nstat);
    assert_int_equal(qd_supernet_bn_stats(&fx.m, &nm, &fx.g, &fx.ds, &p4, 3, s2), QD_OK);
    assert_close(s2, s1, fx.m.nstat, 1e-5, 1e-5);
    assert_memory_equal(fx.m.stat, held, sizeof(float) * fx.m.nstat);
    free(s1), free(s2), free(held);
    /* another supernet's key: started afresh */
    assert_int_equal(qd_bn_cache_open(&c, path, fx.m.nstat, "key-2"), QD_OK);
    assert_int_equal(c.n, 0);
    qd_bn_cache_fini(&c);
    /* a policy's .qm builds from the recalibrated statistics */
    uint8_t *blob;
    size_t len;
    assert_int_equal(qd_supernet_build(&fx.m, &nm, keep, &fx.ds, 40, &p4, &blob, &len), QD_OK);
    assert_int_equal(qd_qm_validate(blob, len), QD_OK);
    free(blob);
    free(keep);
    rm_rf(dir);
    free(dir);
    unmake(&fx);
}

/* A copy of m (structure, parameters, statistics). */
static void model_dup(const struct qd_model *m, struct qd_model *c)
{
    assert_int_equal(qd_model_parse(m->spec, c), QD_OK);
    memcpy(c->param, m->param, sizeof(float) * m->nparam);
    memcpy(c->stat, m->stat, sizeof(float) * m->nstat);
}

/* A policy's .qm from the supernet at p (BatchNorm statistics its own). */
static void build_at(struct qd_model *m, const struct qd_norm *nm, struct fixture *fx,
                     const struct qd_policy *p, uint8_t **blob, size_t *len)
{
    assert_int_equal(qd_supernet_build(m, nm, NULL, &fx->ds, 40, p, blob, len), QD_OK);
}

/* Switchable BatchNorm: a policy makes each BatchNorm's set for its layer's weight width the
 * active one; a policy's statistics and .qm come from that set (the same as a plain model
 * holding its affine); supernet training re-lays the model out and teaches the sets apart. */
static void supernet_switchable_batchnorm(void **st)
{
    static const int W[] = {2, 4, 8, 16};
    struct fixture fx;
    make(&fx, "custom", 1, 12, 61);
    struct qd_norm nm;
    qd_norm_fit(&fx.ds, &nm);
    struct qd_model s, plain;
    assert_int_equal(qd_model_bn_sets(&fx.m, QD_SUPERNET_BN_SETS, &s), QD_OK);
    struct qd_policy p, p4, p8;
    qd_policy_uniform(&p, fx.g.nq, 8, 8);
    for (int l = 0; l < p.n; l++)
        p.wbits[l] = (uint8_t)W[(l + 1) % 4];
    uint8_t *wb = malloc(s.nnodes), *ab = malloc(s.nnodes);
    qd_supernet_node_bits(&s, &fx.g, &p, wb, ab);
    int nsets = 0;
    for (int i = 0; i < s.nnodes; i++)
        if (s.nodes[i].sets > 1) {
            int in = s.nodes[i].in[0], k = 0;
            assert_int_equal(s.nodes[in].op, QD_OP_CONV);
            while (k < 4 && W[k] != wb[in])
                k++;
            assert_true(k < 4);
            assert_int_equal(s.bn_set[i], k);
            nsets++;
        }
    assert_int_equal(nsets, 4);
    free(wb), free(ab);
    /* the 4-bit sets change; a plain model takes the same change */
    model_dup(&fx.m, &plain);
    struct qd_rng r;
    qd_rng_seed(&r, 62);
    for (int i = 0; i < s.nnodes; i++) {
        const struct qd_node *n = &s.nodes[i], *a = &plain.nodes[i];
        for (int c = 0; n->sets > 1 && c < n->c; c++) {
            float dg = 0.5f + qd_rng_uniform(&r), db = qd_rng_uniform(&r) - 0.5f;
            s.param[n->woff + n->c + c] *= dg, plain.param[a->woff + c] *= dg;
            s.param[n->boff + n->c + c] += db, plain.param[a->boff + c] += db;
        }
    }
    qd_policy_uniform(&p4, fx.g.nq, 4, 8);
    qd_policy_uniform(&p8, fx.g.nq, 8, 8);
    float *a = malloc(sizeof(float) * s.nstat), *b = malloc(sizeof(float) * s.nstat);
    assert_int_equal(qd_supernet_bn_stats(&s, &nm, &fx.g, &fx.ds, &p4, 2, a), QD_OK);
    assert_int_equal(qd_supernet_bn_stats(&plain, &nm, &fx.g, &fx.ds, &p4, 2, b), QD_OK);
    assert_close(a, b, s.nstat, 1e-5, 1e-5);
    free(a), free(b);
    const struct {
        struct qd_model *m;
        const struct qd_policy *p;
    } same[2][2] = {{{&s, &p4}, {&plain, &p4}}, {{&s, &p8}, {&fx.m, &p8}}};
    for (int k = 0; k < 2; k++) {
        uint8_t *b1, *b2;
        size_t l1, l2;
        for (int i = 0; i < s.nnodes; i++) /* the build chooses the sets, not what was active */
            s.bn_set[i] = 0;
        build_at(same[k][0].m, &nm, &fx, same[k][0].p, &b1, &l1);
        build_at(same[k][1].m, &nm, &fx, same[k][1].p, &b2, &l2);
        assert_int_equal(l1, l2);
        assert_memory_equal(b1, b2, l1);
        free(b1), free(b2);
    }
    qd_model_fini(&s);
    qd_model_fini(&plain);
    /* training: the model gains the sets, and the widest and narrowest learn apart */
    struct qd_dataset ds = fx.ds;
    ds.n = 256;
    ds.x = malloc((size_t)ds.n * 144);
    ds.y = malloc((size_t)ds.n);
    for (int i = 0; i < ds.n * 144; i++)
        ds.x[i] = (uint8_t)qd_rng_below(&r, 256);
    for (int i = 0; i < ds.n; i++)
        ds.y[i] = (uint8_t)(ds.x[i * 144] * 10 / 256);
    struct qd_supernet_opts o = {.epochs = 1, .threads = 1, .lr = 0.05f, .seed = 3,
                                 .sandwich = 2, .kd = 1, .kd_self = 1, .bn_sets = 5};
    model_dup(&fx.m, &plain);
    assert_int_equal(qd_supernet_train(&plain, &nm, &ds, NULL, &o, NULL, NULL), QD_EINVAL);
    o.bn_sets = QD_SUPERNET_BN_SETS;
    assert_int_equal(qd_supernet_train(&plain, &nm, &ds, NULL, &o, NULL, NULL), QD_OK);
    assert_true(qd_model_has_bn_sets(&plain));
    nsets = 0;
    for (int i = 0; i < plain.nnodes; i++) {
        const struct qd_node *n = &plain.nodes[i];
        if (n->sets < 2)
            continue;
        nsets++;
        assert_int_equal(n->sets, QD_SUPERNET_BN_SETS);
        if (!memcmp(plain.param + n->woff, plain.param + n->woff + 3 * n->c, 4 * n->c))
            fail_msg("node %d: the 2-bit and 16-bit gammas are still the same", i);
    }
    assert_int_equal(nsets, 4);
    qd_model_fini(&plain);
    free(ds.x), free(ds.y);
    unmake(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gate_backward_matches_finite_differences),
        cmocka_unit_test(gate_file_round_trip_and_damage),
        cmocka_unit_test(gate_decisions_fit_and_follow_the_logits),
        cmocka_unit_test(training_spends_fewer_bits_under_tight_budgets),
        cmocka_unit_test(measured_task_loss_keeps_bits_where_they_matter),
        cmocka_unit_test(supernet_sampling_schedule),
        cmocka_unit_test(supernet_bn_cache),
        cmocka_unit_test(supernet_switchable_batchnorm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
