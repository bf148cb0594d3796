/* The microcontroller kernel model (policy/device.h, [mcu_kernels]): what the runtime's
 * kernels do on a Cortex-M with the DSP extension, counted in the units their instruction
 * counts scale with. The kernel choice mirrors the runtime's own (runtime/runtime.c's kernel
 * chains, rt_conv_dsp_ok, rt_conv_s8_fast_ok); quantlab calibrate-device fits one coefficient
 * per feature from per-layer instruction counts under QEMU. */
#include <string.h>

#include "policy/cost.h"

/* Pixel pairs (p, p + 1) of an OH x OW output whose K x K windows (stride S, pad P) over an
 * H x W input are not both inside: rt_dsp.c's build_cols takes its slow path for those. */
static double border_pairs(int H, int W, int OH, int OW, int K, int S, int P)
{
    size_t ohw = (size_t)OH * OW;
    double n = 0;
    for (size_t p = 0; p < ohw; p += 2) {
        size_t q = p + 1 < ohw ? p + 1 : p, px[2] = {p, q};
        int inside = 1;
        for (int c = 0; c < 2; c++) {
            int iy = (int)(px[c] / (size_t)OW) * S - P, ix = (int)(px[c] % (size_t)OW) * S - P;
            inside &= iy >= 0 && ix >= 0 && iy + K <= H && ix + K <= W;
        }
        n += !inside;
    }
    return n;
}

/* The plane of node i's first input: the model input's or the producing node's output. */
static void in_plane(const struct qd_igraph *g, int i, int *H, int *W)
{
    int t = g->nodes[i].in[0];
    *H = t ? g->nodes[t - 1].h : g->in_h;
    *W = t ? g->nodes[t - 1].w : g->in_w;
}

static void elementwise(const struct qd_igraph *g, int i, int a, int o, double *x)
{
    const struct qd_inode *n = &g->nodes[i];
    double out = (double)qd_igraph_tensor_len(g, i + 1);
    int H, W;
    in_plane(g, i, &H, &W);
    x[QD_MF_ELEM_LAYER] = 1;
    if (n->op == QD_IOP_MAXPOOL && a == 8) /* rt_maxpool_s8: K input rows combined a row */
        x[QD_MF_MAXPOOL_IN] = (double)n->c * n->h * n->k * W;
    else if (n->op == QD_IOP_MAXPOOL || n->op == QD_IOP_AVGPOOL)
        x[QD_MF_POOL_TAP] = out * n->k * n->k;
    else if (n->op == QD_IOP_ADD && a == 8 && o == 8) /* both inputs taken as the first's */
        x[QD_MF_ADD8] = out;
    else
        x[QD_MF_ELEM] = out;
}

void qd_cost_mcu_features(const struct qd_igraph *g, int i, int w, int a, int o, double *x)
{
    const struct qd_inode *n = &g->nodes[i];
    memset(x, 0, sizeof *x * QD_MF_COUNT);
    if (n->qidx < 0) {
        elementwise(g, i, a, o, x);
        return;
    }
    int dense = n->op == QD_IOP_DENSE, G = dense ? 1 : n->groups, K = dense ? 1 : n->k;
    size_t per = n->wlen / (size_t)n->c, in_len = qd_igraph_tensor_len(g, n->in[0]);
    double ohw = dense ? 1 : (double)n->h * n->w, macs = qd_cost_node_macs(g, i);
    int cog = n->c / G;
    int misaligned = (per * (size_t)w) % 8 != 0, expand = misaligned && per % 4 && n->wlen <= 16384;
    int i32 = a == 8 && o == 8 && w <= 8; /* int32 bias: the fast kernels apply */
    if (i32 && (w == 2 || w == 4 || w == 8) && per < 65536 && cog >= 2 && (dense || K <= 5) &&
        (!misaligned || expand)) {
        int eb = expand ? 8 : w, E = 32 / eb;
        double padded = (double)((per + (size_t)E - 1) / (size_t)E * (size_t)E);
        double pairs = dense ? 1 : (double)(((size_t)ohw + 1) / 2);
        double passes = G * pairs * ((cog + 1) / 2);
        x[eb == 8 ? QD_MF_DSP_W8 : eb == 4 ? QD_MF_DSP_W4 : QD_MF_DSP_W2] = passes * padded / E;
        x[QD_MF_DSP_PASS] = passes;
        x[QD_MF_DSP_COL] = G * pairs * padded;
        if (!dense) {
            int H, W;
            in_plane(g, i, &H, &W);
            x[QD_MF_DSP_BORDER] = G * border_pairs(H, W, n->h, n->w, K, n->stride, n->pad) * padded;
        }
        x[QD_MF_DSP_IN] = (dense ? 0 : (double)in_len + (double)per) + (expand ? n->wlen : 0);
        x[QD_MF_DSP_LAYER] = 1;
        return;
    }
    if (i32 && per < 65536) { /* rt_conv_s8_fast */
        x[QD_MF_S8_MAC] = macs;
        x[QD_MF_S8_ROW] = dense ? 0 : (double)n->c * per * n->h;
        x[w == 8 ? QD_MF_S8_UNPACK8 : QD_MF_S8_UNPACK] = (double)n->c * per;
        x[QD_MF_S8_OUT] = (double)n->c * ohw + (double)in_len;
        x[QD_MF_S8_LAYER] = 1;
        return;
    }
    x[QD_MF_REF_MAC] = macs; /* rt_conv_int_ref: loops over ci, ky, kx for every output */
    x[QD_MF_REF_KX] = macs / K;
    x[QD_MF_REF_CI] = macs / ((double)K * K);
    x[QD_MF_REF_UNPACK] = (double)n->c * per;
    x[QD_MF_REF_OUT] = (double)n->c * ohw;
}
