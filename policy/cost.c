/* Cost model (see cost.h). Devices with a host kernel model ([kernels], see device.h) use
 * qd_cost_kernel_features; the others, latency of node i with weight bits w and activation
 * bits a:
 *   cycles = MACs * mac_cycles[w] * (a == 16 ? act16 : 1) * (depthwise ? depthwise : 1)
 *          + bytes * per_byte + per_layer
 * where bytes = packed weights + input and output activations; nodes without weights (adds,
 * pools, clamps) cost per_element cycles per output element plus per_layer. Energy likewise
 * with pJ per MAC and per byte. */
#include "policy/cost.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/qm.h"
#include "quant/rtsize.h"

double qd_cost_node_macs(const struct qd_igraph *g, int i)
{
    const struct qd_inode *n = &g->nodes[i];
    if (n->op == QD_IOP_CONV)
        return (double)n->wlen * n->h * n->w;
    if (n->op == QD_IOP_DENSE)
        return (double)n->wlen;
    return 0;
}

static double tensor_len(const struct qd_igraph *g, int t)
{
    return (double)qd_igraph_tensor_len(g, t);
}

void qd_cost_kernel_features(const struct qd_igraph *g, int i, int w, int a,
                             const struct qd_device *d, double *x)
{
    const struct qd_inode *n = &g->nodes[i];
    memset(x, 0, sizeof *x * QD_KF_COUNT);
    double out = tensor_len(g, i + 1);
    int wide = a == 16;
    if (n->qidx < 0) {
        x[wide ? QD_KF_ELEM_LAYER16 : QD_KF_ELEM_LAYER] = 1;
        x[n->op == QD_IOP_ADD ? (wide ? QD_KF_ADD16 : QD_KF_ADD) : (wide ? QD_KF_POOL16
                                                                           : QD_KF_POOL)] = out;
        return;
    }
    double macs = qd_cost_node_macs(g, i);
    int dense = n->op == QD_IOP_DENSE, dw = !dense && n->groups > 1;
    int K = dense ? 1 : n->k;
    if (wide || w > 8) { /* the reference kernels */
        x[dw ? QD_KF_REF_DW_MAC : QD_KF_REF_MAC] = macs;
        if (!dw)
            x[QD_KF_REF_ROW] = macs / ((double)K * K);
        x[QD_KF_REF_OUT] = out;
        x[QD_KF_REF_LAYER] = 1;
        return;
    }
    x[QD_KF_FAST_LAYER] = 1;
    if (dw) {
        x[w <= 2 ? QD_KF_DW_MAC2 : w <= 4 ? QD_KF_DW_MAC4 : QD_KF_DW_MAC8] = macs;
        x[QD_KF_DW_OUT] = out;
        x[QD_KF_DW_CHAN] = n->c;
        x[QD_KF_DW_ROW] = (double)n->c * n->h;
        x[QD_KF_DW_IN] = out * n->stride * n->stride;
        return;
    }
    /* the SIMD kernel: for each output row and group of up to 4 blocks of `lanes` output
     * channels, tiles of tile[NB] pixels (then single pixels); a tile loads its blocks'
     * weights for every tap and input group once */
    int C = dense ? n->in_len : n->cin, OH = dense ? 1 : n->h, OW = dense ? 1 : n->w;
    int S = dense ? 1 : n->stride;
    double ng = ceil((double)C / d->k_group), nb = ceil((double)n->c / d->k_lanes);
    double calls = 0, loads = 0;
    for (int left = (int)nb; left > 0; left -= 4) {
        int NB = left < 4 ? left : 4, NP = d->k_tile[NB];
        double per_row = OW / NP + OW % NP;
        calls += OH * per_row;
        loads += OH * per_row * NB * K * K * ng;
    }
    double hp = (OH - 1.0) * S + K, wp = (OW - 1.0) * S + K; /* padded input extent */
    x[QD_KF_SIMD_CALL] = calls;
    x[QD_KF_SIMD_WLOAD] = loads;
    x[QD_KF_SIMD_MAC] = (double)OH * OW * nb * K * K * ng;
    x[QD_KF_SIMD_PREP] = hp * wp * ng * d->k_group;
    x[QD_KF_SIMD_OUT] = out;
}

/* cycles and pJ of node i at weight bits w (ignored without weights), activation bits a */
static void node_cost(const struct qd_igraph *g, const struct qd_device *d, int i, int w, int a,
                      double *cycles, double *pj)
{
    const struct qd_inode *n = &g->nodes[i];
    if (d->kernels) {
        double x[QD_KF_COUNT];
        qd_cost_kernel_features(g, i, w, a, d, x);
        *cycles = 0;
        for (int f = 0; f < QD_KF_COUNT; f++)
            *cycles += d->kcoef[f] * x[f];
        *pj = *cycles / (d->clock_mhz * 1e-3) * d->k_watts * 1e3; /* ns x W = nJ */
        return;
    }
    double act_bytes = (tensor_len(g, n->in[0]) + tensor_len(g, i + 1)) * a / 8;
    if (n->in[1] >= 0 && n->op == QD_IOP_ADD)
        act_bytes += tensor_len(g, n->in[1]) * a / 8;
    if (n->qidx < 0) {
        double pe = a == 16 ? d->per_element_16 : d->per_element;
        *cycles = tensor_len(g, i + 1) * pe + act_bytes * d->per_byte + d->per_layer;
        *pj = act_bytes * d->pj_byte +
              tensor_len(g, i + 1) * d->pj_mac[8] * 0.25 * (a == 16 ? d->act16 : 1);
        return;
    }
    double macs = qd_cost_node_macs(g, i);
    int dw = n->op == QD_IOP_CONV && n->groups > 1, wide = a == 16 || w == 16;
    double f = a == 16 ? (w == 16 ? d->act16_w16 : d->act16) : 1;
    if (dw)
        f *= wide ? d->depthwise_16 : d->depthwise;
    double wbytes = (double)n->wlen * w / 8;
    *cycles = macs * d->mac_cycles[w] * f + (wbytes + act_bytes) * d->per_byte + d->per_layer +
              tensor_len(g, i + 1) * (wide ? d->per_output_16 : d->per_output);
    *pj = macs * d->pj_mac[w] * (a == 16 ? d->act16 : 1) + (wbytes + act_bytes) * d->pj_byte;
}

/* node_cost on a device with the microcontroller kernel model: its instructions times cpi;
 * energy from the per-MAC model. */
static void node_cost_mcu(const struct qd_igraph *g, const struct qd_device *d, int i, int w,
                          int a, int o, double *cycles, double *pj)
{
    double x[QD_MF_COUNT], ins = 0;
    node_cost(g, d, i, w, a, cycles, pj);
    qd_cost_mcu_features(g, i, w, a, o, x);
    for (int f = 0; f < QD_MF_COUNT; f++)
        ins += d->mcoef[f] * x[f];
    *cycles = ins * d->cpi;
}

/* Node i's cost at weight bits w, input bits a and output bits o (which choose the kernel). */
static void layer_cost(const struct qd_igraph *g, const struct qd_device *d, int i, int w, int a,
                       int o, double *cycles, double *pj)
{
    if (d->mcu)
        node_cost_mcu(g, d, i, w, a, o, cycles, pj);
    else
        node_cost(g, d, i, w, a, cycles, pj);
}

/* A blob of policy p (mixed mode) with placeholder ranges: the same size and arena as any. */
static qd_err build_blob(const struct qd_igraph *g, const struct qd_policy *p, uint8_t **blob,
                         size_t *len)
{
    struct qd_range *rg = malloc(sizeof *rg * (g->n + 1));
    if (!rg)
        return qd_seterr(QD_ENOMEM, "cost: out of memory");
    for (int t = 0; t <= g->n; t++)
        rg[t].lo = -1, rg[t].hi = 1;
    struct qd_qm_build b = {g, p, QD_QMODE_MIXED, rg, 0, "cost"};
    qd_err e = qd_qm_build(&b, blob, len);
    free(rg);
    return e;
}

static qd_err arena_of(const struct qd_igraph *g, const struct qd_policy *p, double *arena)
{
    uint8_t *blob;
    size_t len, need;
    QD_TRY(build_blob(g, p, &blob, &len));
    qd_err e = qd_rt_arena_size(blob, len, &need);
    free(blob);
    *arena = (double)need;
    return e;
}

static qd_err flash_of(const struct qd_igraph *g, const struct qd_policy *p, double *flash)
{
    struct qd_qm_build b = {g, p, QD_QMODE_MIXED, NULL, 0, "cost"};
    size_t s;
    QD_TRY(qd_qm_size(&b, &s));
    *flash = (double)s;
    return QD_OK;
}

qd_err qd_cost_policy(const struct qd_igraph *g, const struct qd_policy *p,
                      const struct qd_device *d, struct qd_costs *c)
{
    memset(c, 0, sizeof *c);
    if (p->n != g->nq)
        return qd_seterr(QD_EINVAL, "cost: policy has %d layers, the model %d", p->n, g->nq);
    QD_TRY(flash_of(g, p, &c->flash));
    QD_TRY(arena_of(g, p, &c->arena));
    c->ram = c->arena + (d->weights_in_ram ? c->flash : 0);
    int *tb = malloc(sizeof *tb * (g->n + 1));
    if (!tb)
        return qd_seterr(QD_ENOMEM, "cost: out of memory");
    struct qd_qm_build b = {g, p, QD_QMODE_MIXED, NULL, 0, "cost"};
    qd_qm_tensor_bits(&b, tb);
    double cycles = 0, pj = 0;
    for (int i = 0; i < g->n; i++) {
        const struct qd_inode *n = &g->nodes[i];
        /* the input's bits choose the kernel (as in the runtime) */
        int w = n->qidx >= 0 ? p->wbits[n->qidx] : 8, a = tb[n->in[0]] ? tb[n->in[0]] : 8;
        int o = tb[i + 1] ? tb[i + 1] : 8;
        double cy, e;
        layer_cost(g, d, i, w, a, o, &cy, &e);
        cycles += cy, pj += e;
        c->macs += qd_cost_node_macs(g, i);
    }
    free(tb);
    c->latency_ms = cycles / (d->clock_mhz * 1e3);
    c->energy_mj = pj * 1e-9;
    return QD_OK;
}

void qd_cost_table_fini(struct qd_cost_table *t)
{
    free(t->cost);
    memset(t, 0, sizeof *t);
}

qd_err qd_cost_table_build(const struct qd_igraph *g, const struct qd_device *d, int abits,
                           struct qd_cost_table *t)
{
    memset(t, 0, sizeof *t);
    if (!d->abits_ok[abits])
        return qd_seterr(QD_EINVAL, "cost: %s has no %d-bit activations", d->name, abits);
    for (int b = 2; b <= 16; b *= 2)
        if (d->wbits_ok[b])
            t->wbits[t->K++] = b;
    t->L = g->nq, t->abits = abits;
    int L = t->L, K = t->K;
    t->cost = calloc((size_t)L * K * QD_BUDGET_COUNT, sizeof *t->cost);
    if (!t->cost)
        return qd_seterr(QD_ENOMEM, "cost: out of memory");
    struct qd_policy p;
    qd_policy_uniform(&p, L, t->wbits[0], abits);
    double s0, arena;
    qd_err e;
    if ((e = flash_of(g, &p, &s0)) || (e = arena_of(g, &p, &arena)))
        goto fail;
    /* flash: the uniform policy's size plus each layer's change from it */
    for (int l = 0; l < L; l++)
        for (int k = 0; k < K; k++) {
            p.wbits[l] = (uint8_t)t->wbits[k];
            double s;
            if ((e = flash_of(g, &p, &s)))
                goto fail;
            double *c = t->cost + ((size_t)l * K + k) * QD_BUDGET_COUNT;
            c[QD_BUDGET_FLASH] = s - s0;
            c[QD_BUDGET_RAM] = d->weights_in_ram ? s - s0 : 0;
            p.wbits[l] = (uint8_t)t->wbits[0];
        }
    t->base[QD_BUDGET_FLASH] = s0;
    t->base[QD_BUDGET_RAM] = arena + (d->weights_in_ram ? s0 : 0);
    /* latency and energy: nodes with weights per option, the rest in the base */
    int *tb = malloc(sizeof *tb * (g->n + 1));
    if (!tb) {
        e = qd_seterr(QD_ENOMEM, "cost: out of memory");
        goto fail;
    }
    struct qd_qm_build b = {g, &p, QD_QMODE_MIXED, NULL, 0, "cost"};
    qd_qm_tensor_bits(&b, tb);
    double clk = d->clock_mhz * 1e3;
    for (int i = 0; i < g->n; i++) {
        const struct qd_inode *n = &g->nodes[i];
        int a = tb[n->in[0]] ? tb[n->in[0]] : abits, o = tb[i + 1] ? tb[i + 1] : abits;
        for (int k = 0; k < (n->qidx >= 0 ? K : 1); k++) {
            double cy, pj;
            layer_cost(g, d, i, n->qidx >= 0 ? t->wbits[k] : 8, a, o, &cy, &pj);
            if (n->qidx < 0) {
                t->base[QD_BUDGET_LATENCY] += cy / clk;
                t->base[QD_BUDGET_ENERGY] += pj * 1e-9;
            } else {
                double *c = t->cost + ((size_t)n->qidx * K + k) * QD_BUDGET_COUNT;
                c[QD_BUDGET_LATENCY] = cy / clk;
                c[QD_BUDGET_ENERGY] = pj * 1e-9;
            }
        }
    }
    free(tb);
    return QD_OK;
fail:
    qd_cost_table_fini(t);
    return e;
}
