/* quantlab's quantization commands: quantize (post-training, QAT, supernet widths, the float
 * simulation), run (the device runtime on a test set) and export-c (a model as firmware C). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/file.h"
#include "gate/supernet.h"
#include "lab/cli.h"
#include "lab/export.h"
#include "lab/labrun.h"
#include "nn/ckpt.h"
#include "nn/data.h"
#include "nn/kernels.h"
#include "nn/model.h"
#include "nn/train.h"
#include "quant/calib.h"
#include "quant/igraph.h"
#include "quant/policy.h"
#include "quant/qm.h"
#include "quant/rtsize.h"
#include "quant/simulate.h"

static uint64_t model_id(const struct qd_model *m)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a over the spec and the parameters */
    const uint8_t *p = (const uint8_t *)m->spec;
    for (size_t i = 0; p[i]; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    p = (const uint8_t *)m->param;
    for (size_t i = 0; i < m->nparam * 4; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* Quantization-aware fine-tuning of m's weights at the bits mode/policy give each conv and
 * dense layer, then g is rebuilt from the fine-tuned weights. */
static qd_err qat(const struct qd_cli_args *a, struct qd_model *m, const struct qd_norm *nm,
                  struct qd_igraph *g, enum qd_qmode mode, const struct qd_policy *pol,
                  const char *ds)
{
    if (mode == QD_QMODE_F32 || mode == QD_QMODE_FP16)
        return qd_seterr(QD_EINVAL, "--qat-epochs needs an integer-weight mode");
    uint8_t *bits = calloc((size_t)m->nnodes, 1), *abits = calloc((size_t)m->nnodes, 1);
    struct qd_dataset tr = {0}, te = {0};
    qd_err e = bits && abits ? QD_OK : qd_seterr(QD_ENOMEM, "out of memory");
    /* activations: every tensor the runtime quantizes afresh (layer and add outputs), at the
     * bits the mode or policy gives it; dynamic range keeps float activations */
    for (int i = 0; !e && mode != QD_QMODE_DYNAMIC && i < g->n; i++) {
        const struct qd_inode *n = &g->nodes[i];
        if (n->qidx >= 0)
            abits[n->out_src] = mode == QD_QMODE_MIXED     ? pol->abits[n->qidx]
                                : mode == QD_QMODE_INT16X8 ? 16
                                                           : 8;
        else if (n->op == QD_IOP_ADD)
            abits[n->out_src] = mode == QD_QMODE_INT16X8 ? 16 : 8;
    }
    for (int i = 0; !e && i < g->n; i++) {
        const struct qd_inode *n = &g->nodes[i];
        int src_op = m->nodes[n->src].op;
        if (n->qidx < 0 || (src_op != QD_OP_CONV && src_op != QD_OP_DENSE))
            continue; /* standalone BN affines: one weight a channel, exact at any bits */
        if (mode == QD_QMODE_MIXED)
            bits[n->src] = pol->wbits[n->qidx];
        else if (src_op == QD_OP_CONV) /* per-tensor dense weights are not simulated */
            bits[n->src] = 8;
    }
    if (!e)
        e = qd_data_load(a->dir, a->data ? a->data : ds, 1, &tr);
    if (!e)
        e = qd_data_load(a->dir, a->data ? a->data : ds, 0, &te);
    if (!e) {
        struct qd_train_opts o;
        qd_train_opts_default(&o, tr.name);
        o.epochs = a->qat_epochs;
        o.lr = a->set_lr ? a->lr : 0.01f;
        o.warmup_epochs = 0;
        o.threads = a->threads;
        o.seed = (uint64_t)a->seed;
        o.qat_bits = bits;
        o.qat_act_bits = abits;
        o.progress = !a->json;
        struct qd_cli_train_ctx c = {a->json, a->ckpt, tr.name};
        e = qd_train(m, &tr, &te, nm, &o, a->json ? NULL : qd_cli_on_epoch, &c);
    }
    if (!e) {
        qd_igraph_fini(g);
        e = qd_igraph_build(m, nm, g);
    }
    free(bits);
    free(abits);
    qd_dataset_fini(&tr);
    qd_dataset_fini(&te);
    return e;
}

/* Test accuracy of the float simulation of build b (a second inference graph of m). */
static qd_err simulate(const struct qd_cli_args *a, const struct qd_model *m, const struct qd_norm *nm,
                       const struct qd_qm_build *b, const char *ds, double *acc)
{
    struct qd_igraph sim;
    struct qd_dataset te;
    QD_TRY(qd_igraph_build(m, nm, &sim));
    struct qd_qparam *tq = calloc((size_t)sim.n + 1, sizeof *tq);
    qd_err e = tq ? qd_data_load(a->dir, a->data ? a->data : ds, 0, &te)
                  : qd_seterr(QD_ENOMEM, "out of memory");
    if (!e) {
        qd_simulate_prepare(b, &sim, tq);
        e = qd_simulate_accuracy(&sim, tq, &te, a->limit, acc);
        qd_dataset_fini(&te);
    }
    free(tq);
    qd_igraph_fini(&sim);
    return e;
}

/* The widths a build gives each layer, as a supernet policy (mixed: the policy's; int8,
 * int16x8, dynamic: 8 bits; fp32, fp16: the widest). */
static void build_widths(enum qd_qmode mode, const struct qd_policy *pol, int nq,
                         struct qd_policy *sel)
{
    if (mode == QD_QMODE_MIXED)
        *sel = *pol;
    else
        qd_policy_uniform(sel, nq, mode == QD_QMODE_F32 || mode == QD_QMODE_FP16 ? 16 : 8, 8);
}

/* A supernet checkpoint: its switchable BatchNorm's sets for the build's widths, and, from
 * `batches` training batches, BatchNorm statistics re-estimated at those widths (a supernet's
 * running statistics mix every policy it trained: 79% against 85% at 4,2,8,2,16 on CIFAR-10);
 * then g again from them. */
static qd_err supernet_prepare(const struct qd_cli_args *a, struct qd_model *m, const struct qd_norm *nm,
                               struct qd_igraph *g, const struct qd_policy *sel, int batches,
                               const char *ds, struct qd_dataset *tr)
{
    QD_TRY(qd_supernet_select_bn(m, nm, g, sel));
    if (batches <= 0)
        return QD_OK;
    QD_TRY(qd_data_load(a->dir, a->data ? a->data : ds, 1, tr));
    float *st = malloc(sizeof *st * (m->nstat ? m->nstat : 1));
    qd_err e = st ? qd_supernet_bn_stats(m, nm, g, tr, sel, batches, st)
                  : qd_seterr(QD_ENOMEM, "out of memory");
    if (!e) {
        memcpy(m->stat, st, sizeof *st * m->nstat);
        qd_igraph_fini(g);
        e = qd_igraph_build(m, nm, g);
    }
    free(st);
    return e;
}

int qd_cmd_quantize(struct qd_cli_args *a)
{
    if (!a->ckpt || !a->mode || !a->out)
        return qd_cli_bad("%s needs --ckpt, --mode and --out", "quantize");
    enum qd_qmode mode = (enum qd_qmode)qd_qmode_parse(a->mode);
    if (mode == QD_QMODE_MIXED && !a->policy)
        return qd_cli_bad("%s: --mode mixed needs --policy", "quantize");
    struct qd_model m;
    struct qd_norm nm;
    char ds[32];
    qd_err e = qd_ckpt_load(a->ckpt, &m, ds, &nm);
    if (e)
        return qd_cli_fail(e);
    qd_kernels_init(a->threads);
    struct qd_igraph g = {0};
    struct qd_dataset tr = {0};
    struct qd_range *rg = NULL;
    struct qd_policy pol;
    uint8_t *blob = NULL;
    size_t len = 0, predicted = 0, arena = 0;
    int rc = 0;
    if ((e = qd_igraph_build(&m, &nm, &g)))
        goto done;
    if (mode == QD_QMODE_MIXED && (e = qd_policy_parse(a->policy, g.nq, &pol)))
        goto done;
    struct qd_policy sel;
    build_widths(mode, &pol, g.nq, &sel);
    /* switchable BatchNorm marks a supernet: recalibrate unless told not to */
    int recal = a->bn_batches >= 0 ? a->bn_batches : qd_model_has_bn_sets(&m) ? 50 : 0;
    if ((e = supernet_prepare(a, &m, &nm, &g, &sel, recal, ds, &tr)))
        goto done;
    if (a->qat_epochs > 0 && (e = qat(a, &m, &nm, &g, mode, &pol, ds)))
        goto done;
    if (qd_qmode_integer(mode)) {
        if (!tr.n && (e = qd_data_load(a->dir, a->data ? a->data : ds, 1, &tr)))
            goto done;
        rg = calloc((size_t)g.n + 1, sizeof *rg);
        enum qd_calib how = !a->calib || !strcmp(a->calib, "minmax") ? QD_CALIB_MINMAX
                            : !strcmp(a->calib, "percentile")           ? QD_CALIB_PERCENTILE
                                                                        : QD_CALIB_MSE;
        if (!rg) {
            e = qd_seterr(QD_ENOMEM, "out of memory");
            goto done;
        }
        if ((e = qd_calibrate(&g, &tr, a->calib_n ? a->calib_n : 1024, how, 0.01, rg)))
            goto done;
    }
    struct qd_qm_build b = {&g, mode == QD_QMODE_MIXED ? &pol : NULL, mode, rg, model_id(&m),
                            m.family};
    if ((e = qd_qm_size(&b, &predicted)) || (e = qd_qm_build(&b, &blob, &len)) ||
        (e = qd_rt_arena_size(blob, len, &arena)) || (e = qd_file_write_atomic(a->out, blob, len)))
        goto done;
    double sim_acc = -1;
    if (a->simulate && (e = simulate(a, &m, &nm, &b, ds, &sim_acc)))
        goto done;
    if (a->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", m.family);
        cJSON_AddStringToObject(j, "mode", qd_qmode_name(mode));
        cJSON_AddNumberToObject(j, "bytes", (double)len);
        cJSON_AddNumberToObject(j, "predicted_bytes", (double)predicted);
        cJSON_AddNumberToObject(j, "arena_bytes", (double)arena);
        cJSON_AddNumberToObject(j, "layers", g.nq);
        if (sim_acc >= 0)
            cJSON_AddNumberToObject(j, "simulated_acc", sim_acc);
        cJSON_AddStringToObject(j, "out", a->out);
        qd_cli_print_json(j);
    } else {
        printf("%s %s: %zu bytes (predicted %zu), runtime arena %zu bytes, %d quantizable "
               "layers -> %s\n",
               m.family, qd_qmode_name(mode), len, predicted, arena, g.nq, a->out);
        if (sim_acc >= 0)
            printf("simulated (fake-quant float) test accuracy: %.2f%%\n", 100 * sim_acc);
    }
done:
    if (e)
        rc = qd_cli_fail(e);
    free(blob);
    free(rg);
    qd_dataset_fini(&tr);
    qd_igraph_fini(&g);
    qd_model_fini(&m);
    return rc;
}

int qd_cmd_run(struct qd_cli_args *a)
{
    if (!a->model)
        return qd_cli_bad("%s needs --model M.qm", "run");
    size_t len, need;
    uint8_t *blob;
    qd_err e = qd_file_read(a->model, &blob, &len);
    if (e)
        return qd_cli_fail(e);
    e = qd_rt_arena_size(blob, len, &need);
    if (e) {
        free(blob);
        char pre[4200];
        snprintf(pre, sizeof pre, "%s: ", a->model);
        return qd_cli_fail(qd_wraperr(e, pre, NULL));
    }
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    const char *dname = a->data ? a->data : h.in_c == 3 ? "cifar10" : NULL;
    if (!dname)
        return qd_cli_bad("%s: --data is needed for a 1-channel model", "run");
    struct qd_dataset te;
    if ((e = qd_data_load(a->dir, dname, 0, &te))) {
        free(blob);
        return qd_cli_fail(e);
    }
    if (te.c != h.in_c || te.h != h.in_h || te.w != h.in_w) {
        free(blob);
        qd_dataset_fini(&te);
        return qd_cli_fail(qd_seterr(QD_ESHAPE, "model input %dx%dx%d, %s images %dx%dx%d", h.in_c,
                              h.in_h, h.in_w, te.name, te.c, te.h, te.w));
    }
    struct qd_lab_eval r;
    if ((e = qd_lab_eval_blob(blob, len, &te, a->limit, a->threads, a->isa, &r))) {
        free(blob);
        qd_dataset_fini(&te);
        return qd_cli_fail(e);
    }
    int n = r.n, T = a->threads ? a->threads : 1;
    if (a->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "mode", qd_qmode_name((enum qd_qmode)h.mode));
        cJSON_AddNumberToObject(j, "bytes", (double)len);
        cJSON_AddNumberToObject(j, "arena_bytes", (double)need);
        cJSON_AddNumberToObject(j, "n", n);
        cJSON_AddNumberToObject(j, "test_acc", r.acc);
        cJSON_AddNumberToObject(j, "images_per_s", r.ips);
        cJSON_AddNumberToObject(j, "threads", T);
        cJSON_AddStringToObject(j, "isa", qd_rt_isa_name(r.isa));
        cJSON_AddNumberToObject(j, "accelerated_layers", r.accel_layers);
        qd_cli_print_json(j);
    } else {
        printf("%s (%s, %zu bytes, arena %zu bytes) on %s: accuracy %.2f%% over %d images, %.0f "
               "images/s on %d thread%s (%s kernels on %d layers)\n",
               a->model, qd_qmode_name((enum qd_qmode)h.mode), len, need, te.name,
               100.0 * r.acc, n, r.ips, T, T > 1 ? "s" : "", qd_rt_isa_name(r.isa),
               r.accel_layers);
    }
    free(blob);
    qd_dataset_fini(&te);
    return 0;
}

/* export-c: the model (and --limit test images of --data, when given) as C source. */
int qd_cmd_export_c(struct qd_cli_args *a, const char *model)
{
    if (!model)
        return qd_cli_bad("%s needs a model: export-c M.qm [--data D --limit N] [--out F.c]", "export-c");
    size_t len;
    uint8_t *blob;
    qd_err e = qd_file_read(model, &blob, &len);
    if (e)
        return qd_cli_fail(e);
    struct qd_dataset te = {0};
    if (a->data && (e = qd_data_load(a->dir, a->data, 0, &te))) {
        free(blob);
        return qd_cli_fail(e);
    }
    FILE *f = a->out ? fopen(a->out, "w") : stdout;
    if (!f)
        e = qd_seterr(QD_EIO, "export-c: cannot write %s", a->out);
    else
        e = qd_lab_export_c(blob, len, a->data ? &te : NULL, a->limit, f);
    if (f && f != stdout && fclose(f) && !e)
        e = qd_seterr(QD_EIO, "export-c: cannot write %s", a->out);
    free(blob);
    qd_dataset_fini(&te);
    if (e) {
        char pre[4200];
        snprintf(pre, sizeof pre, "%s: ", model);
        return qd_cli_fail(qd_wraperr(e, pre, NULL));
    }
    return 0;
}

