/* Fuzz target: the model spec language (nn/model.h: "input c=1 h=28 w=28", "conv out=32 k=3",
 * ...), as qd_model_parse reads a spec file, a zoo spec or the spec inside a checkpoint.
 *
 * Feeds the bytes (up to the first NUL) to qd_model_parse. A model that parses gets its
 * parameters initialized, a copy with switchable BatchNorm (qd_model_bn_sets), and, when small
 * (at most 2^20 activations and 2^21 MACs a sample), a forward pass in training and in eval
 * mode and a backward pass on a batch of two: the shapes the parser inferred are the ones the
 * executor's buffers and kernels rely on. Checks: no crash, sanitizer report or leak; the
 * copy has the same layers; the logits are those of a model of nclass outputs. */
#include "fuzz/fuzz.h"

#include "core/err.h"
#include "nn/model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("OMP_NUM_THREADS", "1", 1);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    return 0;
}

static void execute(struct qd_model *m)
{
    size_t acts = 0;
    for (int i = 0; i < m->nnodes; i++)
        acts += (size_t)m->nodes[i].c * m->nodes[i].h * m->nodes[i].w;
    if (acts > ((size_t)1 << 20) || qd_model_macs(m) > ((uint64_t)1 << 21))
        return;
    struct qd_exec e;
    if (qd_exec_init(&e, m, 2))
        return;
    const struct qd_node *in = &m->nodes[0];
    size_t nx = 2 * (size_t)in->c * in->h * in->w, nl = 2 * (size_t)m->nclass;
    float *x = malloc(nx * sizeof *x), *dl = malloc(nl * sizeof *dl);
    FZ_CHECK(x && dl);
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)((i * 37 + 11) % 255) / 255.0f - 0.5f;
    for (size_t i = 0; i < nl; i++)
        dl[i] = (i % 3) ? 0.1f : -0.2f;
    qd_exec_forward(&e, 2, x, 1);
    qd_exec_backward(&e, 2, dl);
    qd_exec_forward(&e, 2, x, 0);
    FZ_CHECK(qd_exec_logits(&e) != NULL);
    free(x), free(dl);
    qd_exec_fini(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    FZ_CHECK(text);
    memcpy(text, data, size);
    text[size] = 0;
    struct qd_model m, m2;
    qd_err e = qd_model_parse(text, &m);
    free(text);
    if (e)
        return 0;
    FZ_CHECK(m.nnodes >= 2 && m.nclass >= 1 && m.nodes[m.nnodes - 1].op == QD_OP_DENSE);
    if (m.nparam <= ((size_t)1 << 22)) {
        qd_model_init_params(&m, 1);
        if (!qd_model_bn_sets(&m, 2, &m2)) {
            FZ_CHECK(m2.nnodes == m.nnodes && m2.nclass == m.nclass);
            qd_model_fini(&m2);
        }
        execute(&m);
    }
    qd_model_fini(&m);
    return 0;
}
