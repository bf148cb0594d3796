/* Runtime: loading (validate, prepare multipliers, plan the activation arena), the kernel
 * tables and the run loop. No malloc, no libc beyond memcpy/memset: every byte comes from the
 * arena, every size is computed in 64 bits against the caps before it is used.
 * Op lifecycle as TFLite Micro's: load prepares (multipliers, clamps, scratch), run only
 * computes. Kernels dispatch through one table per activation type (integer, float): the
 * reference kernel, and a fast one with the test of where it applies; the SIMD back end comes
 * first where it accelerated the layer. */
#include "runtime.h"

#include <string.h>

#include "qm_format.h"
#include "qmath.h"
#include "rt_impl.h"

/* Integer add: inputs are centred and shifted left before rescaling so the rescale keeps
 * precision. |x - z| <= 2^(bits) so (x - z) << shift stays below 2^31 after the <= 1/2 rescale:
 * 20 bits of headroom for int8 (TFLite's choice), 15 for int16 (ditto). */
#define ADD_SHIFT_8 20
#define ADD_SHIFT_16 15

/* ---------------------------------------------------------------- kernel tables */

struct rt_kernel {
    const char *name;
    void (*run)(const struct qd_rt *rt, int i);
    int (*eligible)(const struct qd_rt *rt, int i); /* NULL: applies everywhere */
};

/* Per op, the candidates in order of preference: the first whose test passes runs the layer;
 * the last is the plain reference, which applies everywhere (and alone in reference mode). */
#define RT_CHAIN 3
#if RT_HAVE_DSP_KERNEL
#define DSP_CONV {"dsp", rt_conv_dsp, rt_conv_dsp_ok},
#else
#define DSP_CONV
#endif
static const struct rt_kernel int_kernels[][RT_CHAIN] = {
    [QD_IOP_CONV] = {DSP_CONV{"s8", rt_conv_s8_fast, rt_conv_s8_fast_ok},
                     {"ref", rt_conv_int_ref, NULL}},
    [QD_IOP_DENSE] = {DSP_CONV{"s8", rt_conv_s8_fast, rt_conv_s8_fast_ok},
                      {"ref", rt_conv_int_ref, NULL}},
    [QD_IOP_ADD] = {{"s8", rt_add_s8, rt_add_s8_ok}, {"ref", rt_add_int_ref, NULL}},
    [QD_IOP_MAXPOOL] = {{"s8", rt_maxpool_s8, rt_maxpool_s8_ok}, {"ref", rt_pool_int_ref, NULL}},
    [QD_IOP_AVGPOOL] = {{"ref", rt_pool_int_ref, NULL}},
    [QD_IOP_CLAMP] = {{"ref", rt_clamp_int_ref, NULL}},
};

#if QD_RT_FLOAT
static int float_fast_ok(const struct qd_rt *rt, int i)
{
    return rt->nodes[i].r.wfmt != QD_WFMT_INT; /* dynamic range has the reference only */
}

static const struct rt_kernel float_kernels[][RT_CHAIN] = {
    [QD_IOP_CONV] = {{"f32", rt_conv_f32_fast, float_fast_ok}, {"ref", rt_conv_f32_ref, NULL}},
    [QD_IOP_DENSE] = {{"f32", rt_conv_f32_fast, float_fast_ok}, {"ref", rt_conv_f32_ref, NULL}},
    [QD_IOP_ADD] = {{"ref", rt_other_f32_ref, NULL}},
    [QD_IOP_MAXPOOL] = {{"ref", rt_other_f32_ref, NULL}},
    [QD_IOP_AVGPOOL] = {{"ref", rt_other_f32_ref, NULL}},
    [QD_IOP_CLAMP] = {{"ref", rt_other_f32_ref, NULL}},
};
#endif

/* ---------------------------------------------------------------- loading */

_Static_assert(sizeof(struct rt_node) >= 2 * sizeof(struct qd_qm_tshape),
               "n node entries must hold the n + 1 shapes validation writes");

/* The tables are accounted at fixed sizes, the largest any target's structs take (a 64-bit
 * host's), so that a model's arena is the same number of bytes on every target: the cost
 * model's RAM figure, computed on the host, is the device's exactly. */
#define RT_HDR_BYTES 256
#define RT_NODE_BYTES 128
#define RT_TENSOR_BYTES 48
_Static_assert(sizeof(struct qd_rt) <= RT_HDR_BYTES && sizeof(struct rt_node) <= RT_NODE_BYTES &&
                   sizeof(struct rt_tensor) <= RT_TENSOR_BYTES,
               "the fixed table sizes hold this target's structs");

static uint64_t tables_bytes(uint32_t n)
{
    return RT_HDR_BYTES + ALIGN((uint64_t)n * RT_NODE_BYTES) +
           ALIGN(((uint64_t)n + 1) * RT_TENSOR_BYTES);
}

/* Activation arena: tensors live from their producing step to their last reader; each is
 * placed at the lowest offset clear of every placed tensor whose lifetime overlaps, largest
 * first. Deterministic; O(n^2) in the node count. Stops (returns more than QD_RT_MAX_ARENA)
 * as soon as the arena passes the cap: every offset stays below 2^32 on the way. */
static uint64_t plan(struct qd_rt *rt)
{
    int n = rt->n;
    for (int t = 0; t <= n; t++)
        rt->t[t].placed = 0;
    uint64_t top = 0;
    for (int k = 0; k <= n; k++) {
        int best = -1;
        for (int t = 0; t <= n; t++)
            if (!rt->t[t].placed && (best < 0 || rt->t[t].bytes > rt->t[best].bytes))
                best = t;
        struct rt_tensor *b = &rt->t[best];
        size_t off = 0;
        for (int again = 1; again;) {
            again = 0;
            for (int t = 0; t <= n; t++) {
                const struct rt_tensor *o = &rt->t[t];
                /* tensor t is written at step t - 1 (the input before step 0) */
                int lives = (t - 1) <= b->last && (best - 1) <= o->last;
                if (!o->placed || !lives)
                    continue;
                if (off < o->off + ALIGN(o->bytes) && o->off < off + ALIGN(b->bytes)) {
                    off = o->off + ALIGN(o->bytes);
                    again = 1;
                }
            }
        }
        b->off = off;
        b->placed = 1;
        if ((uint64_t)off + ALIGN(b->bytes) > top)
            top = (uint64_t)off + ALIGN(b->bytes);
        if (top > QD_RT_MAX_ARENA)
            return top;
    }
    return top;
}

static void prepare_node(struct qd_rt *rt, struct rt_node *nd, int i)
{
    const struct qd_qm_rec *r = &nd->r;
    struct rt_tensor *ti = &rt->t[r->in0], *to = &rt->t[i + 1];
    if (!rt->integer)
        return;
    int32_t qmin = to->s.bits == 16 ? -32768 : -128, qmax = to->s.bits == 16 ? 32767 : 127;
    nd->amin = qmin, nd->amax = qmax;
    if (r->act != QD_ACT_NONE) {
        nd->amin = rt_clampi(to->zero, qmin, qmax);
        if (r->act == QD_ACT_RELU6) {
            double q6 = qd_round(6.0 / to->scale) + to->zero;
            nd->amax = q6 < qmax ? (int32_t)q6 : qmax;
        }
    }
    if (r->op == QD_IOP_CONV || r->op == QD_IOP_DENSE) {
        for (int c = 0; c < r->c; c++)
            qd_quantize_multiplier((double)ti->scale * rt_wscale(r, c) / to->scale, &nd->mult[c],
                                   &nd->shift[c]);
    } else if (r->op == QD_IOP_ADD) {
        const struct rt_tensor *tb = &rt->t[r->in1];
        double m2 = 2.0 * (ti->scale > tb->scale ? ti->scale : tb->scale);
        nd->add_shift = (ti->s.bits == 16 || tb->s.bits == 16) ? ADD_SHIFT_16 : ADD_SHIFT_8;
        qd_quantize_multiplier(ti->scale / m2, &nd->add_ma, &nd->add_sa);
        qd_quantize_multiplier(tb->scale / m2, &nd->add_mb, &nd->add_sb);
        qd_quantize_multiplier(m2 / ((double)(1 << nd->add_shift) * to->scale), &nd->add_mo,
                               &nd->add_so);
    }
}

/* Reads the records into the node table, marks tensor lifetimes and sizes the per-channel
 * tables and the scratch (64-bit sums: a 32-bit core sees the same totals). */
static void read_nodes(struct qd_rt *rt, uint64_t *mult_bytes, uint64_t *scratch)
{
    const uint8_t *p = rt->h.records;
    *mult_bytes = 0, *scratch = 0;
    for (int t = 0; t <= rt->n; t++) {
        struct rt_tensor *ts = &rt->t[t];
        ts->bytes = (size_t)ts->s.len * (ts->s.bits ? ts->s.bits / 8 : 4); /* <= 2^28 */
        /* written at step t - 1, so alive then even if no step reads it (a dead node's
         * output must not be placed over a tensor that step still reads) */
        ts->last = t == rt->n ? rt->n : t - 1;
    }
    rt->t[0].scale = rt->h.in_scale;
    rt->t[0].zero = rt->h.in_zero;
    for (int i = 0; i < rt->n; i++) {
        struct rt_node *nd = &rt->nodes[i];
        memset(nd, 0, sizeof *nd);
        qd_qm_record_read(&p, &nd->r);
        const struct qd_qm_rec *r = &nd->r;
        rt->t[i + 1].scale = r->out_scale;
        rt->t[i + 1].zero = r->out_zero;
        if (rt->t[r->in0].last < i)
            rt->t[r->in0].last = i;
        if (r->op == QD_IOP_ADD && rt->t[r->in1].last < i)
            rt->t[r->in1].last = i;
        if (!r->wfmt)
            continue;
        uint64_t per = rt_per(r), s = ALIGN(per * 4); /* one channel's weights, unpacked */
        if (r->wfmt == QD_WFMT_INT && !rt->integer) /* dynamic: quantized input copy */
            s += ALIGN((uint64_t)rt->t[r->in0].s.len);
        if (rt->integer) {
            /* fast paths: unpacked weights (rt_conv_s8_fast) or the offset table (rt_conv_dsp,
             * per + 15 entries: a row's last word is filled up), the centred input, then
             * accumulator planes (s8) or two im2col columns (dsp), whichever is larger; and
             * the DSP kernel's int8 copy of weights whose rows do not start on a byte */
            uint64_t planes = (uint64_t)r->h * r->w, pad = per + 15;
            s = ALIGN(pad * 4) + ALIGN((uint64_t)rt->t[r->in0].s.len * 2) +
                ALIGN((planes > pad ? planes : pad) * 4) +
                ALIGN((uint64_t)rt_dsp_expand_reserve(r));
        }
        *scratch = s > *scratch ? s : *scratch;
        if (rt->integer)
            *mult_bytes += 2 * ALIGN(4 * (uint64_t)r->c);
    }
}

qd_rt_err qd_rt_load(const uint8_t *blob, size_t len, void *arena, size_t arena_len,
                     qd_rt_t **out, size_t *need, struct qd_rt_diag *d)
{
    uint32_t n;
    size_t dummy;
    if (!need)
        need = &dummy;
    *need = 0;
    QD_RT_TRY(qd_qm_count(blob, len, &n, d));
    uint64_t fixed = tables_bytes(n);
    if (fixed > QD_RT_MAX_ARENA)
        return qd_rt_fail(d, QD_RT_ELIMIT, -1, "runtime tables past the arena cap");
    if (((uintptr_t)arena & 15) || arena_len < fixed) {
        *need = (size_t)fixed;
        return qd_rt_fail(d, QD_RT_ENOMEM, -1, "arena misaligned (16) or too small for the tables");
    }
    uint8_t *base = arena;
    struct qd_rt *rt = (struct qd_rt *)base;
    memset(rt, 0, sizeof *rt);
    rt->nodes = (struct rt_node *)(base + RT_HDR_BYTES);
    rt->t = (struct rt_tensor *)((uint8_t *)rt->nodes + ALIGN((size_t)n * RT_NODE_BYTES));
    memset(rt->t, 0, (n + 1) * sizeof(struct rt_tensor));
    /* Validate into the node table's memory (n rt_nodes hold n + 1 shapes for any n >= 1),
     * then copy the shapes into the tensor table; records overwrite the node table after. */
    struct qd_qm_tshape *shapes = (struct qd_qm_tshape *)rt->nodes;
    QD_RT_TRY(qd_qm_validate_into(blob, len, shapes, d));
    for (uint32_t t = 0; t <= n; t++)
        rt->t[t].s = shapes[t];
    qd_qm_header_read(blob, &rt->h);
    rt->blob = blob;
    rt->n = (int)n;
    rt->integer = qd_qmode_integer((enum qd_qmode)rt->h.mode);
    rt->dsp = RT_HAVE_DSP;
    if (!QD_RT_FLOAT && !rt->integer)
        return qd_rt_fail(d, QD_RT_EUNSUPPORTED, -1, "a float model (built without QD_RT_FLOAT)");
    uint64_t mult_bytes, scratch;
    read_nodes(rt, &mult_bytes, &scratch);
    uint64_t act = plan(rt), used = fixed + mult_bytes + act + scratch;
    if (act > QD_RT_MAX_ARENA || used > QD_RT_MAX_ARENA)
        return qd_rt_fail(d, QD_RT_ELIMIT, -1, "arena past the runtime's cap");
    rt->act_bytes = (size_t)act;
    rt->scratch_bytes = (size_t)scratch;
    rt->used = (size_t)used;
    *need = rt->used;
    if (arena_len < rt->used)
        return qd_rt_fail(d, QD_RT_ENOMEM, -1, "arena too small");
    uint8_t *q = base + fixed;
    for (int i = 0; i < rt->n; i++) {
        struct rt_node *nd = &rt->nodes[i];
        if (rt->integer && nd->r.wfmt) {
            nd->mult = (int32_t *)q;
            q += ALIGN(4 * (size_t)nd->r.c);
            nd->shift = (int32_t *)q;
            q += ALIGN(4 * (size_t)nd->r.c);
        }
        prepare_node(rt, nd, i);
    }
    rt->act = q;
    rt->scratch = q + rt->act_bytes;
    *out = rt;
    return QD_RT_OK;
}

/* ---------------------------------------------------------------- accessors */

size_t qd_rt_arena_used(const qd_rt_t *rt)
{
    return rt->used;
}

size_t qd_rt_activation_bytes(const qd_rt_t *rt)
{
    return rt->act_bytes;
}

int qd_rt_classes(const qd_rt_t *rt)
{
    return rt->h.nclass;
}

int qd_rt_layers(const qd_rt_t *rt)
{
    return rt->n;
}

void qd_rt_set_reference(qd_rt_t *rt, int on)
{
    rt->reference = on;
}

void qd_rt_set_profile(qd_rt_t *rt, uint64_t *ticks, uint64_t (*now)(void))
{
    rt->prof = now ? ticks : NULL;
    rt->prof_now = now;
}

/* ---------------------------------------------------------------- SIMD back end */

int qd_rt_isa_best(void)
{
    static const int best_first[] = {QD_RT_ISA_AVX512VNNI, QD_RT_ISA_AVX2, QD_RT_ISA_NEON_DOT,
                                     QD_RT_ISA_NEON};
    for (size_t k = 0; k < sizeof best_first / sizeof best_first[0]; k++)
        if (rt_cpu_has(best_first[k]))
            return best_first[k];
    return QD_RT_ISA_PORTABLE;
}

const char *qd_rt_isa_name(int isa)
{
    static const char *const names[] = {"portable", "avx2", "avx512vnni", "neon", "neon-dot",
                                        "auto"};
    return isa >= 0 && isa <= QD_RT_ISA_AUTO ? names[isa] : "?";
}

int qd_rt_isa(const qd_rt_t *rt)
{
    return rt->acc ? rt->isa : QD_RT_ISA_PORTABLE;
}

int qd_rt_accel_layers(const qd_rt_t *rt)
{
    int k = 0;
    for (int i = 0; rt->acc && i < rt->n; i++)
        k += rt->acc[i].on;
    return k;
}

#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

static qd_rt_err accel_isa(int *isa)
{
    if (*isa == QD_RT_ISA_AUTO)
        *isa = qd_rt_isa_best();
    if (*isa < 0 || *isa >= QD_RT_ISA_AUTO || !rt_cpu_has(*isa))
        return QD_RT_EINVAL; /* unknown, or not on this CPU or in this build */
    return QD_RT_OK;
}

qd_rt_err qd_rt_accel_size(const qd_rt_t *rt, int isa, size_t *need)
{
    *need = 0;
    QD_RT_TRY(accel_isa(&isa));
    if (isa == QD_RT_ISA_PORTABLE)
        return QD_RT_OK;
    size_t packed = ALIGN64((size_t)rt->n * sizeof(struct rt_accel)), scratch = 0;
    for (int i = 0; i < rt->n; i++)
        if (rt_accel_eligible(rt, i)) {
            packed += rt_accel_node_bytes(rt, i, isa);
            size_t s = rt_accel_scratch_bytes(rt, i, isa);
            scratch = s > scratch ? s : scratch;
        }
    *need = packed + scratch;
    return QD_RT_OK;
}

qd_rt_err qd_rt_accel(qd_rt_t *rt, int isa, void *buf, size_t len)
{
    size_t need;
    QD_RT_TRY(qd_rt_accel_size(rt, isa, &need));
    if (isa == QD_RT_ISA_AUTO)
        isa = qd_rt_isa_best();
    rt->acc = NULL;
    if (isa == QD_RT_ISA_PORTABLE)
        return QD_RT_OK;
    if (((uintptr_t)buf & 63) || len < need)
        return QD_RT_ENOMEM;
    struct rt_accel *acc = buf;
    memset(acc, 0, (size_t)rt->n * sizeof *acc);
    uint8_t *p = (uint8_t *)buf + ALIGN64((size_t)rt->n * sizeof *acc);
    for (int i = 0; i < rt->n; i++)
        if (rt_accel_eligible(rt, i))
            rt_accel_pack(rt, i, isa, &acc[i], &p);
    rt->accel_scratch = p;
    rt->isa = isa;
    rt->acc = acc;
    return QD_RT_OK;
}

/* ---------------------------------------------------------------- running */

static void quantize_input(qd_rt_t *rt, const uint8_t *pixels)
{
    const struct qd_qm_header *h = &rt->h;
    struct rt_tensor *t0 = &rt->t[0];
    size_t hw = (size_t)h->in_h * h->in_w;
    struct qd_qparam iq = {t0->scale, t0->zero, t0->s.bits == 16 ? -32768 : -128,
                           t0->s.bits == 16 ? 32767 : 127, t0->s.bits};
    for (int c = 0; c < h->in_c; c++)
        for (size_t j = 0; j < hw; j++) {
            size_t k = c * hw + j;
            float v = (pixels[k] / 255.0f - h->mean[c]) / h->std[c];
            if (rt->integer)
                rt_st(rt->act + t0->off, k, t0->s.bits, qd_quantize(v, &iq));
            else
                ((float *)(rt->act + t0->off))[k] = v;
        }
}

/* The kernel node i runs on: the table's first candidate that applies (the last, the
 * reference, in reference mode). The SIMD back end, where it accelerated the layer, comes
 * before the table (see run_node). */
static const struct rt_kernel *pick(const qd_rt_t *rt, int i)
{
    int op = rt->nodes[i].r.op;
#if QD_RT_FLOAT
    const struct rt_kernel *k = rt->integer ? int_kernels[op] : float_kernels[op];
#else
    const struct rt_kernel *k = int_kernels[op]; /* float models are refused at load */
#endif
    int j = 0;
    while (j + 1 < RT_CHAIN && k[j + 1].run &&
           (rt->reference || (k[j].eligible && !k[j].eligible(rt, i))))
        j++;
    return &k[j];
}

static int accelerated(const qd_rt_t *rt, int i)
{
    int op = rt->nodes[i].r.op;
    return rt->integer && !rt->reference && rt->acc &&
           (op == QD_IOP_CONV || op == QD_IOP_DENSE) && rt->acc[i].on;
}

const char *qd_rt_node_kernel(const qd_rt_t *rt, int i)
{
    if (i < 0 || i >= rt->n)
        return "?";
    return accelerated(rt, i) ? qd_rt_isa_name(rt->isa) : pick(rt, i)->name;
}

static void run_node(qd_rt_t *rt, int i)
{
    if (accelerated(rt, i)) {
        rt_accel_conv(rt, i);
        return;
    }
    if (rt->integer && !rt->reference && rt->acc && rt->nodes[i].r.op == QD_IOP_ADD &&
        rt_accel_add(rt, i))
        return;
    pick(rt, i)->run(rt, i);
}

void qd_rt_run(qd_rt_t *rt, const uint8_t *pixels, float *logits)
{
    quantize_input(rt, pixels);
    uint64_t tp = rt->prof ? rt->prof_now() : 0;
    for (int i = 0; i < rt->n; i++) {
        run_node(rt, i);
        if (rt->prof) {
            uint64_t t1 = rt->prof_now();
            rt->prof[i] += t1 - tp;
            tp = t1;
        }
    }
    const struct rt_tensor *o = &rt->t[rt->n];
    for (int k = 0; k < rt->h.nclass; k++)
        logits[k] = rt->integer
                        ? o->scale * (float)(rt_ld(rt->act + o->off, k, o->s.bits) - o->zero)
                        : ((const float *)(rt->act + o->off))[k];
}
