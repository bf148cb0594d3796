/* Models: spec parsing and its errors, the zoo's five families, whole-graph gradients against
 * finite differences (residual fan-out, depthwise, BN, pooling), switchable BatchNorm sets, and
 * checkpoint files. */
#include "testutil.h"

#include <unistd.h>

#include "core/err.h"
#include "nn/ckpt.h"
#include "nn/kernels.h"
#include "nn/model.h"
#include "nn/zoo.h"

#include "fuzzregress.h"

static void spec_errors_name_the_line(void **st)
{
    static const struct {
        const char *spec, *needle;
    } bad[] = {
        {"input c=1 h=8 w=8\nfoo\ndense out=2\n", "line 2: unknown layer 'foo'"},
        {"input c=1 h=8 w=8\nconv out=4 k=3 zz=1\ndense out=2\n", "unknown key 'zz'"},
        {"input c=1 h=8 w=8\nconv out=4\ndense out=2\n", "conv needs out= and k="},
        {"input c=1 h=8 w=8\nconv out=4 k=3 in=nope\ndense out=2\n", "no earlier layer named"},
        {"input c=3 h=8 w=8\nconv out=4 k=3 groups=2\ndense out=2\n", "groups=2 must divide"},
        {"input c=1 h=8 w=8\nconv name=a out=4 k=3\nconv name=b out=5 k=3 pad=1\nadd in=a,b\n"
         "dense out=2\n",
         "add of"},
        {"input c=1 h=8 w=8\nconv out=4 k=3\n", "last layer must be dense"},
        {"conv out=4 k=3\ndense out=2\n", "'input' must be the first"},
        {"input c=1 h=8 w=8\nconv out=4 k=x\ndense out=2\n", "k=x is not an integer"},
        {"input c=1 h=4 w=4\nconv out=4 k=9\ndense out=2\n", "larger than padded input"},
        {"input c=1 h=8 w=8\nconv name=a out=4 k=3\nconv name=a out=4 k=3\ndense out=2\n",
         "duplicate name"},
        {"", "needs an input"},
        {"input c=1 h=8 w=8\nconv out=4 k=3\nbn sets=0\ndense out=2\n", "sets=0 is not an integer"},
        {"input c=1 h=8 w=8\nconv out=4 k=3 sets=2\ndense out=2\n", "unknown key 'sets'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct qd_model m;
        qd_err e = qd_model_parse(bad[i].spec, &m);
        assert_int_equal(e, QD_ESPEC);
        if (!strstr(qd_errmsg(), bad[i].needle))
            fail_msg("spec %zu: message '%s' lacks '%s'", i, qd_errmsg(), bad[i].needle);
    }
}

static int count_op(const struct qd_model *m, enum qd_op op)
{
    int c = 0;
    for (int i = 0; i < m->nnodes; i++)
        c += m->nodes[i].op == op;
    return c;
}

static void zoo_families_build_for_both_inputs(void **st)
{
    int in[2][3] = {{1, 28, 28}, {3, 32, 32}};
    for (int f = 0; qd_zoo_families[f]; f++)
        for (int s = 0; s < 2; s++) {
            char *spec;
            struct qd_zoo_opts o = {0};
            assert_int_equal(qd_zoo_spec(qd_zoo_families[f], in[s][0], in[s][1], in[s][2], 10,
                                         &o, &spec),
                             QD_OK);
            struct qd_model m;
            if (qd_model_parse(spec, &m))
                fail_msg("%s: %s", qd_zoo_families[f], qd_errmsg());
            assert_int_equal(m.nclass, 10);
            assert_string_equal(m.family, qd_zoo_families[f]);
            assert_true(m.nparam > 1000);
            qd_model_fini(&m);
            free(spec);
        }
    /* ResNet depth 6n+2: 6n+1 convs on the main path plus two projections, one dense layer */
    int depths[] = {8, 14, 20};
    for (int v = 1; v <= 2; v++)
        for (int d = 0; d < 3; d++) {
            char *spec;
            struct qd_zoo_opts o = {.depth = depths[d]};
            assert_int_equal(qd_zoo_spec(v == 1 ? "resnet_v1" : "resnet_v2", 3, 32, 32, 10, &o,
                                         &spec),
                             QD_OK);
            struct qd_model m;
            assert_int_equal(qd_model_parse(spec, &m), QD_OK);
            assert_int_equal(count_op(&m, QD_OP_CONV), depths[d] - 1 + 2);
            assert_int_equal(count_op(&m, QD_OP_ADD), (depths[d] - 2) / 2);
            qd_model_fini(&m);
            free(spec);
        }
    /* ResNet-20 v1 is the well-known ~0.27M-parameter network */
    char *spec;
    struct qd_zoo_opts o = {.depth = 20};
    qd_zoo_spec("resnet_v1", 3, 32, 32, 10, &o, &spec);
    struct qd_model m;
    qd_model_parse(spec, &m);
    assert_true(m.nparam > 265000 && m.nparam < 285000);
    qd_model_fini(&m);
    free(spec);
    /* width multiplier shrinks MobileNets; depthwise layers have groups == channels */
    size_t p[2];
    for (int i = 0; i < 2; i++) {
        struct qd_zoo_opts ow = {.width = i ? 0.5f : 1.0f};
        qd_zoo_spec("mobilenet_v2", 3, 32, 32, 10, &ow, &spec);
        qd_model_parse(spec, &m);
        p[i] = m.nparam;
        int dw = 0;
        for (int k = 0; k < m.nnodes; k++)
            dw += m.nodes[k].op == QD_OP_CONV && m.nodes[k].groups > 1 &&
                  m.nodes[k].groups == m.nodes[k].c;
        assert_int_equal(dw, 17);
        qd_model_fini(&m);
        free(spec);
    }
    assert_true(p[1] < p[0] / 2);
    assert_int_equal(qd_zoo_spec("resnet_v1", 3, 32, 32, 10, &(struct qd_zoo_opts){.depth = 9},
                                 &spec),
                     QD_EINVAL);
    assert_int_equal(qd_zoo_spec("vgg", 3, 32, 32, 10, NULL, &spec), QD_EINVAL);
}

/* A graph with every op, fan-out into a residual add, and a depthwise conv. */
static const char *graph_spec = "model g\ninput c=2 h=8 w=8\n"
                                "conv name=a out=4 k=3 pad=1 bias=1\n"
                                "bn\nrelu name=r\n"
                                "conv out=4 k=3 pad=1 groups=4\n"
                                "bn\nrelu6\n"
                                "conv name=b out=4 k=1\n"
                                "add name=s in=b,r\n"
                                "avgpool k=2\n"
                                "conv out=6 k=3 stride=2 pad=1 groups=2\n"
                                "maxpool k=2\n"
                                "flatten\n"
                                "dense out=3\n";

static float model_loss(struct qd_exec *e, int n, const float *x, const uint8_t *y)
{
    qd_exec_forward(e, n, x, 1);
    return qd_softmax_xent_f32(n, e->m->nclass, qd_exec_logits(e), y, NULL, NULL);
}

/* How many of m's parameter gradients (one backward pass over a random batch of a graph_spec
 * input, left in m->grad) disagree with central finite differences: all of them, or node
 * `only`'s (>= 0). */
static int gradient_disagreements(struct qd_model *m, struct qd_rng *r, int only)
{
    int n = 4;
    float *x = rand_buf(r, (size_t)n * 2 * 64, 1.5f), dl[12];
    uint8_t y[4] = {0, 2, 1, 2};
    struct qd_exec e;
    assert_int_equal(qd_exec_init(&e, m, n), QD_OK);
    qd_exec_forward(&e, n, x, 1);
    qd_softmax_xent_f32(n, m->nclass, qd_exec_logits(&e), y, dl, NULL);
    qd_exec_backward(&e, n, dl);
    const float *g = m->grad;
    int bad = 0;
    for (size_t i = 0; i < m->nparam; i++) {
        const struct qd_node *o = only >= 0 ? &m->nodes[only] : NULL;
        if (o && !(i >= o->woff && i < o->woff + o->wlen) &&
            !(o->boff != QD_NONE && i >= o->boff && i < o->boff + o->blen))
            continue;
        float keep = m->param[i], eps = 2e-3f;
        m->param[i] = keep + eps;
        double lp = model_loss(&e, n, x, y);
        m->param[i] = keep - eps;
        double lm = model_loss(&e, n, x, y);
        m->param[i] = keep;
        double num = (lp - lm) / (2 * eps);
        if (fabs(num - g[i]) > 2e-2 * fabs(num) + 2e-3) {
            if (bad++ < 5)
                fprintf(stderr, "param %zu: analytic %g numeric %g\n", i, g[i], num);
        }
    }
    free(x);
    qd_exec_fini(&e);
    return bad;
}

/* graph_spec's model with every parameter moved off its init by r (BN off its trivial one). */
static void graph_model(struct qd_model *m, uint64_t seed, struct qd_rng *r)
{
    assert_int_equal(qd_model_parse(graph_spec, m), QD_OK);
    qd_model_init_params(m, seed);
    for (size_t i = 0; i < m->nparam; i++)
        m->param[i] += 0.1f * (2 * qd_rng_uniform(r) - 1);
}

static void whole_model_gradient_matches_finite_differences(void **st)
{
    struct qd_model m;
    struct qd_rng r;
    qd_rng_seed(&r, 10);
    graph_model(&m, 9, &r);
    int bad = gradient_disagreements(&m, &r, -1);
    /* max pooling and ReLU kinks make a handful of finite differences unreliable */
    if (bad > (int)(m.nparam / 100))
        fail_msg("%d of %zu parameter gradients disagree", bad, m.nparam);
    qd_model_fini(&m);
}

/* Switchable BatchNorm: the sets made from a model are copies of its affine (each set active
 * gives its logits); a change to one set moves the logits of that set alone, to those of the
 * plain model with the same change; backward fills the active set's gradient (finite
 * differences) and leaves the other sets' at zero. */
static void switchable_batchnorm_sets(void **st)
{
    struct qd_model m, s, again;
    struct qd_rng r;
    qd_rng_seed(&r, 10);
    graph_model(&m, 9, &r);
    assert_int_equal(qd_model_bn_sets(&m, 3, &s), QD_OK);
    int nb = 0;
    for (int i = 0; i < s.nnodes; i++)
        if (s.nodes[i].op == QD_OP_BN) {
            assert_int_equal(s.nodes[i].sets, 3);
            assert_int_equal(s.bn_set[i], 2); /* the last set until one is chosen */
            nb++;
        }
    assert_int_equal(nb, 2);
    assert_int_equal(s.nparam, m.nparam + 2 * (size_t)nb * 4 * 2); /* two more gamma, beta */
    assert_int_equal(qd_model_parse(s.spec, &again), QD_OK);       /* its spec says so */
    assert_int_equal(again.nparam, s.nparam);
    qd_model_fini(&again);
    float *x = rand_buf(&r, 4 * 128, 1), ref[12];
    struct qd_exec em, es;
    assert_int_equal(qd_exec_init(&em, &m, 4), QD_OK);
    assert_int_equal(qd_exec_init(&es, &s, 4), QD_OK);
    for (int k = 0; k < 3; k++) {
        memset(s.bn_set, k, (size_t)s.nnodes);
        qd_exec_forward(&em, 4, x, 0);
        qd_exec_forward(&es, 4, x, 0);
        assert_close(qd_exec_logits(&es), qd_exec_logits(&em), 12, 1e-6, 1e-6);
    }
    /* set 1 changes; m takes the same change */
    for (int i = 0; i < s.nnodes; i++) {
        const struct qd_node *n = &s.nodes[i], *a = &m.nodes[i];
        if (n->op != QD_OP_BN)
            continue;
        for (int c = 0; c < n->c; c++) {
            float dg = 0.5f + qd_rng_uniform(&r), db = qd_rng_uniform(&r) - 0.5f;
            s.param[n->woff + n->c + c] *= dg, m.param[a->woff + c] *= dg;
            s.param[n->boff + n->c + c] += db, m.param[a->boff + c] += db;
        }
    }
    qd_exec_forward(&em, 4, x, 0);
    memcpy(ref, qd_exec_logits(&em), sizeof ref);
    for (int k = 0; k < 3; k++) {
        memset(s.bn_set, k, (size_t)s.nnodes);
        qd_exec_forward(&es, 4, x, 0);
        float d = 0;
        for (int j = 0; j < 12; j++)
            d = fmaxf(d, fabsf(qd_exec_logits(&es)[j] - ref[j]));
        if (k == 1 ? !(d < 1e-5f) : !(d > 1e-3f))
            fail_msg("set %d active: logits %g from the changed model's", k, d);
    }
    /* set 1 active: the plain changed model's gradient, set 1's in the BatchNorms */
    memset(s.bn_set, 1, (size_t)s.nnodes);
    uint8_t y[4] = {0, 2, 1, 2};
    float dl[12];
    struct qd_exec *ex[2] = {&em, &es};
    for (int k = 0; k < 2; k++) {
        qd_exec_forward(ex[k], 4, x, 1);
        qd_softmax_xent_f32(4, 3, qd_exec_logits(ex[k]), y, dl, NULL);
        qd_exec_backward(ex[k], 4, dl);
    }
    for (int i = 1; i < s.nnodes; i++) {
        const struct qd_node *n = &s.nodes[i], *a = &m.nodes[i];
        if (n->woff == QD_NONE)
            continue;
        size_t set = n->op == QD_OP_BN ? (size_t)n->c : 0;
        assert_close(s.grad + n->woff + set, m.grad + a->woff, a->wlen, 1e-5, 1e-6);
        if (a->boff != QD_NONE)
            assert_close(s.grad + n->boff + set, m.grad + a->boff, a->blen, 1e-5, 1e-6);
    }
    qd_exec_fini(&em);
    qd_exec_fini(&es);
    /* the sets' own gradients against finite differences: the inactive ones' are zero */
    for (int i = 0; i < s.nnodes; i++) {
        const struct qd_node *n = &s.nodes[i];
        if (n->op != QD_OP_BN)
            continue;
        int bad = gradient_disagreements(&s, &r, i);
        if (bad)
            fail_msg("node %d: %d BatchNorm set gradients disagree", i, bad);
        float in_set = 0;
        for (int k = 0; k < 3; k++)
            for (int c = 0; c < n->c; c++) {
                float gg = fabsf(s.grad[n->woff + k * n->c + c]) +
                           fabsf(s.grad[n->boff + k * n->c + c]);
                if (k != 1 && gg != 0)
                    fail_msg("node %d: inactive set %d has a gradient", i, k);
                in_set += k == 1 ? gg : 0;
            }
        assert_true(in_set > 0);
    }
    free(x);
    qd_model_fini(&s);
    qd_model_fini(&m);
}

static void forward_is_batch_independent_in_eval(void **st)
{
    struct qd_model m;
    assert_int_equal(qd_model_parse(graph_spec, &m), QD_OK);
    qd_model_init_params(&m, 3);
    struct qd_rng r;
    qd_rng_seed(&r, 4);
    float *x = rand_buf(&r, 5 * 128, 1);
    struct qd_exec e1, e5;
    qd_exec_init(&e1, &m, 1);
    qd_exec_init(&e5, &m, 5);
    qd_exec_forward(&e5, 5, x, 0);
    for (int i = 0; i < 5; i++) {
        qd_exec_forward(&e1, 1, x + i * 128, 0);
        assert_close(qd_exec_logits(&e1), qd_exec_logits(&e5) + 3 * i, 3, 1e-5, 1e-5);
    }
    qd_exec_fini(&e1);
    qd_exec_fini(&e5);
    qd_model_fini(&m);
    free(x);
}

/* A forward resumed at the node whose weights changed gives the whole forward's logits (both
 * BatchNorm modes); resumed one node later it keeps the old ones. */
static void forward_from_matches_the_whole_forward(void **st)
{
    struct qd_model m;
    assert_int_equal(qd_model_parse(graph_spec, &m), QD_OK);
    qd_model_init_params(&m, 3);
    struct qd_rng r;
    qd_rng_seed(&r, 6);
    float *x = rand_buf(&r, 4 * 128, 1);
    struct qd_exec part, whole;
    qd_exec_init(&part, &m, 4);
    qd_exec_init(&whole, &m, 4);
    int tried = 0;
    for (int train = 0; train < 2; train++)
        for (int i = 1; i < m.nnodes; i++) {
            const struct qd_node *n = &m.nodes[i];
            if (n->op != QD_OP_CONV && n->op != QD_OP_DENSE)
                continue;
            qd_exec_forward(&part, 4, x, train);
            float before[4 * 16];
            memcpy(before, qd_exec_logits(&part), sizeof(float) * 4 * m.nclass);
            for (size_t k = 0; k < n->wlen; k++) /* not a scaling: BatchNorm would undo it */
                m.param[n->woff + k] += 0.5f * (qd_rng_uniform(&r) - 0.5f);
            qd_exec_forward(&whole, 4, x, train);
            qd_exec_forward_from(&part, 4, i + 1, train);
            assert_close(qd_exec_logits(&part), before, 4 * m.nclass, 1e-6, 1e-6);
            qd_exec_forward_from(&part, 4, i, train);
            assert_close(qd_exec_logits(&part), qd_exec_logits(&whole), 4 * m.nclass, 1e-5, 1e-5);
            float d = 0;
            for (int k = 0; k < 4 * m.nclass; k++)
                d = fmaxf(d, fabsf(qd_exec_logits(&part)[k] - before[k]));
            if (!(d > 1e-4f))
                fail_msg("node %d: changing its weights moved no logit", i);
            tried++;
        }
    assert_true(tried >= 4);
    qd_exec_fini(&part);
    qd_exec_fini(&whole);
    qd_model_fini(&m);
    free(x);
}

static void corrupt(const char *from, const char *to, long off, int trunc)
{
    FILE *f = fopen(from, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n);
    assert_int_equal(fread(b, 1, n, f), (size_t)n);
    fclose(f);
    if (off >= 0)
        b[off < 0 ? 0 : (off >= n ? n - 1 : off)] ^= 0x5a;
    f = fopen(to, "wb");
    fwrite(b, 1, trunc ? n - trunc : n, f);
    fclose(f);
    free(b);
}

static void checkpoint_round_trip_and_damage(void **st)
{
    char *dir = make_tmpdir(), p[256], q[256];
    snprintf(p, sizeof p, "%s/m.qdck", dir);
    snprintf(q, sizeof q, "%s/bad.qdck", dir);
    struct qd_model m, m2;
    assert_int_equal(qd_model_parse(graph_spec, &m), QD_OK);
    qd_model_init_params(&m, 5);
    for (size_t i = 0; i < m.nstat; i++)
        m.stat[i] = (float)i;
    struct qd_norm nm = {1, {0.25f}, {0.5f}}, nm2;
    char ds[32];
    assert_int_equal(qd_ckpt_save(p, &m, "mnist", &nm), QD_OK);
    assert_int_equal(qd_ckpt_load(p, &m2, ds, &nm2), QD_OK);
    assert_string_equal(ds, "mnist");
    assert_int_equal(m2.nparam, m.nparam);
    assert_memory_equal(m2.param, m.param, m.nparam * 4);
    assert_memory_equal(m2.stat, m.stat, m.nstat * 4);
    assert_true(nm2.mean[0] == 0.25f && nm2.std[0] == 0.5f);
    qd_model_fini(&m2);
    /* a flipped byte anywhere: the magic, the spec, the weights, the CRC */
    long offs[] = {0, 9, 20, 200, 1000, -2};
    qd_err want[] = {QD_EFORMAT, QD_EVERSION, QD_ECHECKSUM, QD_ECHECKSUM, QD_ECHECKSUM,
                     QD_ECHECKSUM};
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    for (int i = 0; i < 6; i++) {
        corrupt(p, q, offs[i] < 0 ? n + offs[i] : offs[i], 0);
        qd_err e = qd_ckpt_load(q, &m2, ds, &nm2);
        if (e != want[i])
            fail_msg("offset %ld: got %s (%s), want %s", offs[i], qd_err_name(e), qd_errmsg(),
                     qd_err_name(want[i]));
    }
    /* truncated, and empty */
    corrupt(p, q, -1, 100);
    assert_int_equal(qd_ckpt_load(q, &m2, ds, &nm2), QD_EFORMAT);
    assert_non_null(strstr(qd_errmsg(), "bad.qdck"));
    corrupt(p, q, -1, (int)n);
    assert_int_not_equal(qd_ckpt_load(q, &m2, ds, &nm2), QD_OK);
    snprintf(q, sizeof q, "%s/missing.qdck", dir);
    assert_int_equal(qd_ckpt_load(q, &m2, ds, &nm2), QD_ENOENT);
    qd_model_fini(&m);
    rm_rf(dir);
    free(dir);
}

/* The fuzzers' regression specs and checkpoints (tests/fuzz-regress/{spec,ckpt}/,
 * scripts/fuzz.sh): refused with the code the file name ends in; one that parses runs a
 * forward pass (the executor trusts the shapes the parser inferred). */
static void regress_spec_model(struct qd_model *m, qd_err e, const char *name)
{
    const char *want = fuzz_regress_code(name);
    if (*want && strcmp(qd_err_name(e), want))
        fail_msg("%s: %s (%s)", name, qd_err_name(e), qd_errmsg());
    if (e)
        return;
    struct qd_exec x;
    const struct qd_node *in = &m->nodes[0];
    if (qd_model_macs(m) < 10000000 && qd_exec_init(&x, m, 1) == QD_OK) {
        float *px = calloc((size_t)in->c * in->h * in->w, sizeof *px);
        qd_exec_forward(&x, 1, px, 0);
        free(px);
        qd_exec_fini(&x);
    }
    qd_model_fini(m);
}

static void regress_spec(const uint8_t *b, size_t n, const char *name)
{
    char *t = malloc(n + 1);
    memcpy(t, b, n);
    t[n] = 0;
    struct qd_model m;
    qd_err e = qd_model_parse(t, &m);
    free(t);
    regress_spec_model(&m, e, name);
}

static void regress_ckpt(const uint8_t *b, size_t n, const char *name)
{
    char *dir = make_tmpdir(), p[512], ds[32];
    snprintf(p, sizeof p, "%s/r.qdck", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    struct qd_model m;
    struct qd_norm nm;
    regress_spec_model(&m, qd_ckpt_load(p, &m, ds, &nm), name);
    rm_rf(dir);
    free(dir);
}

static void fuzz_regressions_are_refused(void **st)
{
    assert_true(fuzz_regress_each("spec", regress_spec) > 0);
    fuzz_regress_each("ckpt", regress_ckpt);
}

int main(void)
{
    qd_kernels_init(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_errors_name_the_line),
        cmocka_unit_test(zoo_families_build_for_both_inputs),
        cmocka_unit_test(whole_model_gradient_matches_finite_differences),
        cmocka_unit_test(switchable_batchnorm_sets),
        cmocka_unit_test(forward_is_batch_independent_in_eval),
        cmocka_unit_test(forward_from_matches_the_whole_forward),
        cmocka_unit_test(checkpoint_round_trip_and_damage),
        cmocka_unit_test(fuzz_regressions_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
