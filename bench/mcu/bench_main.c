/* bench/mcu_speed.sh's firmware: one model (quantlab export-c's model.c), run once by our
 * runtime with its per-layer profile, then each of its convolution, depthwise and dense layers
 * run by CMSIS-NN (the peer, built from ../shared/peers/cmsis-nn for the same core) on the same
 * shapes, the same weight bytes, the same requantization and the same clamp, in NHWC as
 * CMSIS-NN wants. Weights of 8 bits go to CMSIS-NN's s8 kernels, 4 bits to its s4 kernels;
 * 2-bit layers have no CMSIS-NN kernel ("none"). Both sides read SysTick at the same points
 * around whole layers. Lines out (semihosting):
 *     ours I OP KERNEL WBITS MACS TICKS
 *     cmsis I KERNEL TICKS            (KERNEL "none": not run)
 *     {"calib_instructions":..,"calib_ticks":..}
 * Weight values do not change either side's instruction count (no data-dependent paths in the
 * integer kernels), input activations are a fixed pseudo-random pattern. */
#include <stdint.h>

#include "arm_nnfunctions.h"
#include "firmware/fmt.h"
#include "firmware/fw.h"
#include "runtime/rt_impl.h"
#include "runtime/runtime.h"

#include "model.c"

static uint8_t arena[QD_MODEL_ARENA] __attribute__((aligned(16)));
static uint64_t ticks[QD_MODEL_LAYERS];

/* CMSIS-NN's buffers: input, output, scratch (the largest layer's, checked) */
#define POOL (1u << 20)
static int8_t pool[POOL] __attribute__((aligned(16)));

/* "TAG I [OP] KERNEL [WBITS MACS] TICKS" (op, wbits and macs for our lines: op != NULL) */
static void line_out(const char *tag, int i, const char *op, const char *k, int wbits,
                     uint64_t macs, uint64_t t)
{
    char line[128], *p = fw_str(fw_str(line, tag), " ");
    p = fw_str(fw_dec(p, (uint64_t)i), " ");
    if (op)
        p = fw_str(fw_str(p, op), " ");
    p = fw_str(p, k);
    if (op) {
        p = fw_dec(fw_str(p, " "), (uint64_t)wbits);
        p = fw_dec(fw_str(p, " "), macs);
    }
    p = fw_str(fw_dec(fw_str(p, " "), t), "\n");
    *p = 0;
    qd_fw_puts(line);
}

static const char *op_name(int op)
{
    static const char *const n[] = {"conv", "dense", "add", "maxpool", "avgpool", "clamp"};
    return op >= 0 && op <= QD_IOP_CLAMP ? n[op] : "?";
}

/* One layer on CMSIS-NN; returns the kernel's name ("none" if it has none for the case). */
static const char *cmsis_layer(const struct qd_rt *rt, int i, uint64_t *dt)
{
    const struct rt_node *nd = &rt->nodes[i];
    const struct qd_qm_rec *r = &nd->r;
    const struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    *dt = 0;
    if (!rt->integer || ti->s.bits != 8 || to->s.bits != 8 || r->bfmt != QD_BFMT_I32 ||
        (r->wbits != 8 && r->wbits != 4))
        return "none";
    int dense = r->op == QD_IOP_DENSE, s4 = r->wbits == 4;
    cmsis_nn_dims in = {1, dense ? 1 : ti->s.h, dense ? 1 : ti->s.w,
                        dense ? (int32_t)r->in_len : ti->s.c};
    cmsis_nn_dims out = {1, dense ? 1 : r->h, dense ? 1 : r->w, r->c};
    cmsis_nn_dims bias = {1, 1, 1, r->c};
    cmsis_nn_activation act = {nd->amin, nd->amax};
    cmsis_nn_per_channel_quant_params q = {nd->mult, nd->shift};
    int8_t *x = pool;
    size_t xin = (size_t)in.h * in.w * in.c, xout = (size_t)out.h * out.w * out.c;
    int8_t *y = pool + ((xin + 15) & ~(size_t)15);
    cmsis_nn_context ctx = {y + ((xout + 15) & ~(size_t)15), 0};
    size_t room = POOL - (size_t)((int8_t *)ctx.buf - pool);
    if (xin + xout + 32 > POOL)
        return "none";
    for (size_t j = 0; j < xin; j++)
        x[j] = (int8_t)(j * 2654435761u >> 24);
    const int32_t *b = (const int32_t *)(const void *)r->bias; /* 4-aligned in the .qm */
    const char *name;
    uint64_t t0;
    arm_cmsis_nn_status st;
    if (dense) {
        cmsis_nn_dims f = {r->in_len, 1, 1, r->c};
        cmsis_nn_fc_params fp = {-ti->zero, 0, to->zero, act};
        cmsis_nn_per_tensor_quant_params tq = {nd->mult[0], nd->shift[0]};
        ctx.size = arm_fully_connected_s8_get_buffer_size(&f);
        if ((size_t)ctx.size > room)
            return "none";
        if (ctx.size && !s4) /* the kernel sums TFLite Micro precomputes at prepare */
            arm_vector_sum_s8(ctx.buf, r->in_len, r->c, (const int8_t *)r->weights, -ti->zero, 0,
                              b);
        t0 = qd_fw_ticks();
        st = s4 ? arm_fully_connected_s4(&ctx, &fp, &tq, &in, x, &f, (const int8_t *)r->weights,
                                         &bias, b, &out, y)
                : arm_fully_connected_s8(&ctx, &fp, &tq, &in, x, &f, (const int8_t *)r->weights,
                                         &bias, b, &out, y);
        name = s4 ? "fully_connected_s4" : "fully_connected_s8";
    } else if (r->groups == 1) {
        cmsis_nn_dims f = {r->c, r->k, r->k, ti->s.c};
        cmsis_nn_conv_params cp = {-ti->zero, to->zero, {r->stride, r->stride}, {r->pad, r->pad},
                                   {1, 1}, act};
        ctx.size = s4 ? arm_convolve_wrapper_s4_get_buffer_size(&cp, &in, &f, &out)
                      : arm_convolve_wrapper_s8_get_buffer_size(&cp, &in, &f, &out);
        if ((size_t)ctx.size > room)
            return "none";
        t0 = qd_fw_ticks();
        st = s4 ? arm_convolve_wrapper_s4(&ctx, &cp, &q, &in, x, &f, (const int8_t *)r->weights,
                                          &bias, b, &out, y)
                : arm_convolve_wrapper_s8(&ctx, &cp, &q, &in, x, &f, (const int8_t *)r->weights,
                                          &bias, b, &out, y);
        name = s4 ? "convolve_s4" : "convolve_s8";
    } else if (r->groups == ti->s.c && r->c == ti->s.c) {
        cmsis_nn_dims f = {1, r->k, r->k, r->c};
        cmsis_nn_dw_conv_params dp = {-ti->zero, to->zero, 1, {r->stride, r->stride},
                                      {r->pad, r->pad}, {1, 1}, act};
        ctx.size = s4 ? arm_depthwise_conv_wrapper_s4_get_buffer_size(&dp, &in, &f, &out)
                      : arm_depthwise_conv_wrapper_s8_get_buffer_size(&dp, &in, &f, &out);
        if ((size_t)ctx.size > room)
            return "none";
        t0 = qd_fw_ticks();
        st = s4 ? arm_depthwise_conv_wrapper_s4(&ctx, &dp, &q, &in, x, &f,
                                                (const int8_t *)r->weights, &bias, b, &out, y)
                : arm_depthwise_conv_wrapper_s8(&ctx, &dp, &q, &in, x, &f,
                                                (const int8_t *)r->weights, &bias, b, &out, y);
        name = s4 ? "depthwise_conv_s4" : "depthwise_conv_s8";
    } else {
        return "none";
    }
    *dt = qd_fw_ticks() - t0;
    return st == ARM_CMSIS_NN_SUCCESS ? name : "error";
}

int qd_fw_main(void)
{
    qd_rt_t *rt;
    size_t need;
    struct qd_rt_diag d = {0};
    if (qd_rt_load(qd_model, qd_model_len, arena, sizeof arena, &rt, &need, &d)) {
        qd_fw_puts("{\"error\":\"the model does not load\"}\n");
        return 1;
    }
    float logits[QD_MODEL_CLASSES];
    qd_rt_set_profile(rt, ticks, qd_fw_ticks);
    qd_rt_run(rt, qd_images, logits);
    for (int i = 0; i < rt->n; i++) {
        const struct qd_qm_rec *r = &rt->nodes[i].r;
        uint64_t macs = r->wfmt ? (uint64_t)rt_per(r) * r->c * r->h * r->w : 0;
        line_out("ours", i, op_name(r->op), qd_rt_node_kernel(rt, i), r->wbits, macs, ticks[i]);
    }
    for (int i = 0; i < rt->n; i++) {
        if (!rt->nodes[i].r.wfmt)
            continue;
        uint64_t dt;
        const char *k = cmsis_layer(rt, i, &dt);
        line_out("cmsis", i, NULL, k, 0, 0, dt);
    }
    char line[96], *p = fw_str(line, "{\"calib_instructions\":");
    p = fw_dec(p, 2u * 1000000u);
    p = fw_dec(fw_str(p, ",\"calib_ticks\":"), qd_fw_calibrate(1000000u));
    p = fw_str(p, "}\n");
    *p = 0;
    qd_fw_puts(line);
    return 0;
}
