/* The inference graph computes what the float model computes in eval mode, for every family
 * (BN folded or standalone, activations fused or not), with random weights and BN statistics. */
#include "testutil.h"

#include "nn/kernels.h"
#include "nn/zoo.h"
#include "quant/igraph.h"

static void randomize(struct qd_model *m, struct qd_rng *r)
{
    qd_model_init_params(m, qd_rng_next(r));
    for (int i = 0; i < m->nnodes; i++) {
        const struct qd_node *n = &m->nodes[i];
        if (n->op != QD_OP_BN)
            continue;
        for (int c = 0; c < n->c; c++) {
            m->param[n->woff + c] = 0.5f + qd_rng_uniform(r);
            m->param[n->boff + c] = 0.2f * (2 * qd_rng_uniform(r) - 1);
            m->stat[n->soff + c] = 0.3f * (2 * qd_rng_uniform(r) - 1);
            m->stat[n->soff + n->c + c] = 0.5f + qd_rng_uniform(r);
        }
    }
}

static void check_spec(const char *spec, int expect_nodes_max)
{
    struct qd_model m;
    if (qd_model_parse(spec, &m))
        fail_msg("%s", qd_errmsg());
    struct qd_rng r;
    qd_rng_seed(&r, 21);
    randomize(&m, &r);
    struct qd_norm nm = {m.nodes[0].c, {0, 0, 0}, {1, 1, 1}};
    struct qd_igraph g;
    if (qd_igraph_build(&m, &nm, &g))
        fail_msg("%s: %s", m.family, qd_errmsg());
    int nconv = 0;
    for (int i = 0; i < m.nnodes; i++)
        nconv += m.nodes[i].op == QD_OP_CONV || m.nodes[i].op == QD_OP_DENSE;
    assert_true(g.nq >= nconv);
    if (expect_nodes_max)
        assert_true(g.n <= expect_nodes_max);
    int n = 3;
    size_t per = (size_t)m.nodes[0].c * m.nodes[0].h * m.nodes[0].w;
    float *x = rand_buf(&r, n * per, 1.5f);
    struct qd_exec fe;
    struct qd_igraph_exec ie;
    assert_int_equal(qd_exec_init(&fe, &m, n), QD_OK);
    assert_int_equal(qd_igraph_exec_init(&ie, &g, n), QD_OK);
    qd_exec_forward(&fe, n, x, 0);
    qd_igraph_forward(&ie, n, x);
    const float *a = qd_exec_logits(&fe), *b = ie.t[g.n];
    double scale = 0;
    for (int i = 0; i < n * m.nclass; i++)
        scale = fmax(scale, fabs(a[i]));
    assert_close(b, a, (size_t)n * m.nclass, 1e-4 * (1 + scale), 1e-3);
    qd_exec_fini(&fe);
    qd_igraph_exec_fini(&ie);
    qd_igraph_fini(&g);
    qd_model_fini(&m);
    free(x);
}

static void every_family_matches_the_float_model(void **st)
{
    for (int f = 0; qd_zoo_families[f]; f++)
        for (int s = 0; s < 2; s++) {
            char *spec;
            struct qd_zoo_opts o = {.depth = 8, .width = 0.5f};
            assert_int_equal(qd_zoo_spec(qd_zoo_families[f], s ? 3 : 1, s ? 32 : 28,
                                         s ? 32 : 28, 10, &o, &spec),
                             QD_OK);
            check_spec(spec, 0);
            free(spec);
        }
}

static void folding_and_fusion_shrink_the_graph(void **st)
{
    /* conv-bn-relu x2, pool, dense: everything folds into 4 ops */
    check_spec("input c=1 h=8 w=8\nconv out=4 k=3 pad=1\nbn\nrelu\nconv out=4 k=3 pad=1\nbn\n"
               "relu6\nmaxpool k=2\nflatten\ndense out=3\n",
               4);
    /* BN whose conv output is also used elsewhere stays as an affine; a ReLU after a pool
     * stays as a clamp */
    check_spec("input c=2 h=8 w=8\nconv name=a out=4 k=3 pad=1\nbn name=b\nadd in=a,b\n"
               "maxpool k=2\nrelu\ngap\ndense out=3\n",
               0);
}

int main(void)
{
    qd_kernels_init(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_family_matches_the_float_model),
        cmocka_unit_test(folding_and_fusion_shrink_the_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
