/* Test fixture shared by the quantization and policy tests: a model family (or any spec) at
 * small width with random weights and BN statistics, a synthetic dataset of its input shape,
 * its inference graph and calibrated ranges. */
#ifndef QD_TESTS_QUANTFIX_H
#define QD_TESTS_QUANTFIX_H

#include "testutil.h"

#include "nn/zoo.h"
#include "quant/calib.h"
#include "quant/igraph.h"
#include "quant/qm.h"

struct fixture {
    struct qd_model m;
    struct qd_igraph g;
    struct qd_dataset ds;
    struct qd_range *rg;
};

/* A family at small width/depth with random weights and BN statistics, a synthetic dataset of
 * its input shape, and calibrated ranges. */
static inline void make_spec(struct fixture *f, const char *spec, int c, int hw, uint64_t seed)
{
    assert_int_equal(qd_model_parse(spec, &f->m), QD_OK);
    struct qd_rng r;
    qd_rng_seed(&r, seed);
    qd_model_init_params(&f->m, seed);
    for (int i = 0; i < f->m.nnodes; i++) {
        const struct qd_node *n = &f->m.nodes[i];
        if (n->op != QD_OP_BN)
            continue;
        for (int k = 0; k < n->c; k++) {
            f->m.param[n->boff + k] = 0.3f * (2 * qd_rng_uniform(&r) - 1);
            f->m.stat[n->soff + k] = 0.2f * (2 * qd_rng_uniform(&r) - 1);
            f->m.stat[n->soff + n->c + k] = 0.5f + qd_rng_uniform(&r);
        }
    }
    memset(&f->ds, 0, sizeof f->ds);
    f->ds.n = 40, f->ds.c = c, f->ds.h = f->ds.w = hw, f->ds.nclass = 10;
    strcpy(f->ds.name, "synth");
    f->ds.x = malloc((size_t)40 * c * hw * hw);
    f->ds.y = malloc(40);
    for (size_t i = 0; i < (size_t)40 * c * hw * hw; i++)
        f->ds.x[i] = (uint8_t)qd_rng_below(&r, 256);
    for (int i = 0; i < 40; i++)
        f->ds.y[i] = (uint8_t)(i % 10);
    struct qd_norm nm;
    qd_norm_fit(&f->ds, &nm);
    assert_int_equal(qd_igraph_build(&f->m, &nm, &f->g), QD_OK);
    f->rg = calloc((size_t)f->g.n + 1, sizeof *f->rg);
    assert_int_equal(qd_calibrate(&f->g, &f->ds, 40, QD_CALIB_MINMAX, 0, f->rg), QD_OK);
}

static inline void make(struct fixture *f, const char *family, int c, int hw, uint64_t seed)
{
    char *spec;
    struct qd_zoo_opts o = {.depth = 8, .width = 0.25f};
    assert_int_equal(qd_zoo_spec(family, c, hw, hw, 10, &o, &spec), QD_OK);
    make_spec(f, spec, c, hw, seed);
    free(spec);
}

static inline void unmake(struct fixture *f)
{
    free(f->rg);
    qd_igraph_fini(&f->g);
    qd_model_fini(&f->m);
    qd_dataset_fini(&f->ds);
}

#endif
