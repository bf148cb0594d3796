/* .qm files and the runtime: exact size prediction for random policies, the fast integer
 * kernels bit-exact against the reference ones on whole models, float paths against the float
 * inference graph, damaged and hostile blobs rejected, and no allocation in the runtime. */
#include "testutil.h"

#include "nn/kernels.h"
#include "nn/zoo.h"
#include "quant/calib.h"
#include "quant/qm.h"
#include "quant/rtsize.h"
#include "quant/simulate.h"
#include "policy/cost.h"
#include "quantfix.h"
#include "runtime/rt_impl.h" /* to run the Cortex-M DSP kernels on their C instructions */

#include <zlib.h>

#include "fuzzregress.h"

static void random_policy(struct qd_rng *r, int n, struct qd_policy *p)
{
    static const int wb[] = {2, 4, 8, 16}, ab[] = {8, 16};
    p->n = n;
    for (int i = 0; i < n; i++) {
        p->wbits[i] = (uint8_t)wb[qd_rng_below(r, 4)];
        p->abits[i] = (uint8_t)ab[qd_rng_below(r, 4) == 0]; /* mostly 8 */
    }
}

static uint8_t *load(const uint8_t *blob, size_t len, qd_rt_t **rt, size_t *need)
{
    assert_int_equal(qd_rt_arena_size(blob, len, need), QD_OK);
    uint8_t *arena = aligned_alloc(16, (*need + 15) & ~(size_t)15);
    size_t n2;
    struct qd_rt_diag d = {0};
    qd_rt_err e = qd_rt_load(blob, len, arena, *need, rt, &n2, &d);
    if (e)
        fail_msg("%s: %s", qd_rt_err_name(e), d.msg);
    assert_int_equal(n2, *need);
    return arena;
}

/* How many SIMD ISAs this CPU runs (the CI machines have AVX2 and AVX-512 VNNI; an aarch64
 * core NEON, and NEON_DOT from ARMv8.2): the best implies the rest of its family. */
static int rt_isas_here(void)
{
    switch (qd_rt_isa_best()) {
    case QD_RT_ISA_AVX512VNNI: return 2; /* and AVX2 */
    case QD_RT_ISA_AVX2: return 1;
    case QD_RT_ISA_NEON_DOT: return 2; /* and NEON */
    case QD_RT_ISA_NEON: return 1;
    default: return 0;
    }
}

static int dsp_layers_checked; /* layers the DSP kernels ran in compare_with_reference */

/* Runs n samples through the reference kernels, the portable fast kernels, each SIMD ISA the
 * CPU has and the Cortex-M DSP kernels (on C versions of SMLAD and SXTB16 here; the firmware
 * runs the real instructions); all logits must be equal bit for bit. Returns how many SIMD
 * runtimes had at least one accelerated layer. */
static int compare_with_reference(const uint8_t *blob, size_t len, const uint8_t *x, size_t per,
                                  int n, const char *what)
{
    size_t need;
    qd_rt_t *ref, *fast;
    uint8_t *a1 = load(blob, len, &ref, &need), *a2 = load(blob, len, &fast, &need);
    qd_rt_set_reference(ref, 1);
    int accelerated = 0;
    for (int isa = QD_RT_ISA_PORTABLE; isa < QD_RT_ISA_AUTO; isa++) {
        size_t an = 0;
        if (isa != QD_RT_ISA_PORTABLE && qd_rt_accel_size(fast, isa, &an))
            continue; /* the CPU lacks it; rt_isas_here() makes the callers count */
        void *buf = an ? aligned_alloc(64, (an + 63) & ~(size_t)63) : NULL;
        qd_rt_err e = qd_rt_accel(fast, isa, buf, an);
        if (e)
            fail_msg("%s: %s", what, qd_rt_err_name(e));
        assert_int_equal(qd_rt_isa(fast), isa);
        accelerated += qd_rt_accel_layers(fast) > 0;
        for (int i = 0; i < n; i++) {
            float l1[10], l2[10];
            qd_rt_run(ref, x + i * per, l1);
            qd_rt_run(fast, x + i * per, l2);
            if (memcmp(l1, l2, sizeof l1))
                fail_msg("%s sample %d: %s and reference logits differ", what, i,
                         qd_rt_isa_name(isa));
        }
        qd_rt_accel(fast, QD_RT_ISA_PORTABLE, NULL, 0);
        free(buf);
    }
    fast->dsp = 1;
    for (int l = 0; l < fast->n; l++)
        dsp_layers_checked += !strcmp(qd_rt_node_kernel(fast, l), "dsp");
    for (int i = 0; i < n; i++) {
        float l1[10], l2[10];
        qd_rt_run(ref, x + i * per, l1);
        qd_rt_run(fast, x + i * per, l2);
        if (memcmp(l1, l2, sizeof l1))
            fail_msg("%s sample %d: dsp and reference logits differ", what, i);
    }
    free(a1), free(a2);
    return accelerated;
}

static void size_is_exact_for_random_policies(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 31);
    for (int f = 0; qd_zoo_families[f]; f++) {
        struct fixture fx;
        make(&fx, qd_zoo_families[f], 3, 16, 40 + f);
        for (int t = 0; t < 12; t++) {
            struct qd_policy p;
            random_policy(&r, fx.g.nq, &p);
            enum qd_qmode mode = t < QD_QMODE_COUNT ? (enum qd_qmode)t : QD_QMODE_MIXED;
            struct qd_qm_build b = {&fx.g, &p, mode, fx.rg, 7, fx.m.family};
            size_t predicted, len;
            uint8_t *blob;
            assert_int_equal(qd_qm_size(&b, &predicted), QD_OK);
            assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
            if (predicted != len)
                fail_msg("%s %s: predicted %zu, built %zu", fx.m.family, qd_qmode_name(mode),
                         predicted, len);
            assert_int_equal(qd_qm_validate(blob, len), QD_OK);
            free(blob);
        }
        unmake(&fx);
    }
}

static void fast_kernels_are_bit_exact_on_whole_models(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 32);
    int checked_fast = 0, checked_simd = 0;
    for (int f = 0; qd_zoo_families[f]; f++) {
        struct fixture fx;
        make(&fx, qd_zoo_families[f], f % 2 ? 1 : 3, f % 2 ? 14 : 16, 50 + f);
        for (int t = 0; t < 4; t++) {
            struct qd_policy p;
            random_policy(&r, fx.g.nq, &p);
            if (t == 0)
                qd_policy_uniform(&p, fx.g.nq, 4, 8);
            enum qd_qmode mode = t == 1 ? QD_QMODE_INT8 : t == 2 ? QD_QMODE_INT16X8 : QD_QMODE_MIXED;
            struct qd_qm_build b = {&fx.g, &p, mode, fx.rg, 7, fx.m.family};
            uint8_t *blob;
            size_t len;
            assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
            size_t per = (size_t)fx.ds.c * fx.ds.h * fx.ds.w;
            checked_simd += compare_with_reference(blob, len, fx.ds.x, per, 6, fx.m.family);
            checked_fast += mode != QD_QMODE_INT16X8;
            free(blob);
        }
        unmake(&fx);
    }
    assert_true(checked_fast >= 10);
    /* each ISA the CPU has ran accelerated layers on most models */
    int isas = rt_isas_here();
    assert_true(checked_simd >= 10 * isas);
}

/* Odd shapes: channel counts that fill no vector (1, 3, 5, 17, 33), stride 2 with and without
 * padding, 1x1 and 5x5 kernels, 7x7 and 9x9 planes, a dense layer of odd width; and shapes that
 * fill vectors exactly (16 channels, 16-pixel rows plus a remainder: the transposing paths).
 * Every weight bitwidth and 8/16-bit activations at random. */
static void simd_kernels_are_bit_exact_on_odd_shapes(void **st)
{
    static const char *specs[] = {"model odd\n"
                                  "input c=3 h=9 w=9\n"
                                  "conv out=5 k=3 pad=1\nbn\nrelu\n"
                                  "conv out=17 k=3 stride=2 pad=1\nbn\nrelu\n"
                                  "conv out=33 k=1\nbn\nrelu6\n"
                                  "conv out=7 k=5 pad=2\nbn\nrelu\n"
                                  "conv out=19 k=3 stride=2\nbn\nrelu\n"
                                  "flatten\ndense out=13\nrelu\ndense out=10\n",
                                  "model even\n"
                                  "input c=3 h=20 w=20\n"
                                  "conv out=16 k=3 pad=1\nbn\nrelu name=a\n"
                                  "conv out=16 k=3 pad=1\nbn name=b\n"
                                  "add in=b,a\nrelu\n"
                                  "conv out=32 k=3 stride=2 pad=1\nbn\nrelu\n"
                                  "conv out=64 k=3 pad=1\nbn\nrelu\n"
                                  "gap\ndense out=10\n"};
    struct qd_rng r;
    qd_rng_seed(&r, 78);
    int checked = 0;
    for (int s = 0; s < 2; s++) {
        struct fixture fx;
        int hw = s ? 20 : 9;
        make_spec(&fx, specs[s], 3, hw, 77 + s);
        for (int t = 0; t < 16; t++) {
            struct qd_policy p;
            random_policy(&r, fx.g.nq, &p);
            if (t % 3 == 0)
                for (int l = 0; l < p.n; l++) /* all accelerable: <= 8-bit weights, 8-bit acts */
                    p.wbits[l] = (uint8_t)(2 << qd_rng_below(&r, 3)), p.abits[l] = 8;
            struct qd_qm_build b = {&fx.g, &p, t == 1 ? QD_QMODE_INT8 : QD_QMODE_MIXED, fx.rg, 7,
                                    fx.m.family};
            uint8_t *blob;
            size_t len;
            assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
            checked += compare_with_reference(blob, len, fx.ds.x, (size_t)3 * hw * hw, 8,
                                              fx.m.family);
            free(blob);
        }
        unmake(&fx);
    }
    assert_true(checked >= 12 * rt_isas_here());
    assert_true(dsp_layers_checked >= 100); /* 2-, 4-, 8-bit layers of every odd shape */
}

static void float_paths_match_the_inference_graph(void **st)
{
    for (int f = 0; qd_zoo_families[f]; f++) {
        struct fixture fx;
        make(&fx, qd_zoo_families[f], 3, 16, 60 + f);
        struct qd_igraph_exec e;
        assert_int_equal(qd_igraph_exec_init(&e, &fx.g, 1), QD_OK);
        enum qd_qmode modes[] = {QD_QMODE_F32, QD_QMODE_FP16, QD_QMODE_DYNAMIC, QD_QMODE_INT8};
        for (int mi = 0; mi < 4; mi++) {
            struct qd_qm_build b = {&fx.g, NULL, modes[mi], fx.rg, 7, fx.m.family};
            uint8_t *blob;
            size_t len, need;
            assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
            qd_rt_t *rt;
            uint8_t *arena = load(blob, len, &rt, &need);
            double worst = 0, range = 0;
            for (int i = 0; i < 8; i++) {
                int idx = i;
                float x[768], l[10];
                uint8_t y;
                qd_batch_fill(&fx.ds, &fx.g.norm, &idx, 1, 0, NULL, x, &y);
                qd_igraph_forward(&e, 1, x);
                qd_rt_run(rt, fx.ds.x + (size_t)i * 768, l);
                for (int k = 0; k < 10; k++) {
                    worst = fmax(worst, fabs(l[k] - e.t[fx.g.n][k]));
                    range = fmax(range, fabs(e.t[fx.g.n][k]));
                }
            }
            /* f32 equals the float graph up to summation order; fp16 is close. The 8-bit
             * modes are approximations: on these random, untrained nets the deep MobileNetV2
             * amplifies rounding (its fp16 error is already 10x the others'; int8 and dynamic
             * reach ~0.3 of the logits' range, the other families ~0.03). The bound catches
             * structural faults (a wrong zero point or scale errs by the whole range or more);
             * accuracy on trained models is measured by quantlab run. */
            double tol[] = {1e-4, 2e-2, 0.4, 0.4};
            if (worst > tol[mi] * (1 + range))
                fail_msg("%s %s: logit error %g (range %g)", fx.m.family,
                         qd_qmode_name(modes[mi]), worst, range);
            free(arena), free(blob);
        }
        qd_igraph_exec_fini(&e);
        unmake(&fx);
    }
}

static void fast_float_kernels_match_the_reference(void **st)
{
    for (int f = 0; qd_zoo_families[f]; f++) {
        struct fixture fx;
        make(&fx, qd_zoo_families[f], 3, 16, 80 + f);
        for (int mi = 0; mi < 2; mi++) {
            struct qd_qm_build b = {&fx.g, NULL, mi ? QD_QMODE_FP16 : QD_QMODE_F32, fx.rg, 7,
                                    fx.m.family};
            uint8_t *blob;
            size_t len, need;
            assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
            qd_rt_t *fast, *ref;
            uint8_t *a1 = load(blob, len, &fast, &need), *a2 = load(blob, len, &ref, &need);
            qd_rt_set_reference(ref, 1);
            for (int i = 0; i < 4; i++) {
                float l1[10], l2[10];
                qd_rt_run(fast, fx.ds.x + (size_t)i * 768, l1);
                qd_rt_run(ref, fx.ds.x + (size_t)i * 768, l2);
                assert_close(l1, l2, 10, 1e-4, 1e-4); /* summation order only */
            }
            free(a1), free(a2), free(blob);
        }
        unmake(&fx);
    }
}

/* The integer runtime computes what the fake-quant simulation computes, up to fixed-point and
 * bias rounding: its logits are much closer to the simulation's than to the float model's. */
static void runtime_follows_the_simulation(void **st)
{
    for (int f = 0; qd_zoo_families[f]; f++) {
        struct fixture fx;
        make(&fx, qd_zoo_families[f], 3, 16, 90 + f);
        struct qd_policy p;
        qd_policy_uniform(&p, fx.g.nq, 4, 8);
        for (int mi = 0; mi < 3; mi++) {
            enum qd_qmode mode = mi == 0 ? QD_QMODE_INT8 : mi == 1 ? QD_QMODE_INT16X8 : QD_QMODE_MIXED;
            struct qd_qm_build b = {&fx.g, &p, mode, fx.rg, 7, fx.m.family};
            uint8_t *blob;
            size_t len, need;
            assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
            qd_rt_t *rt;
            uint8_t *arena = load(blob, len, &rt, &need);
            struct qd_igraph sim;
            assert_int_equal(qd_igraph_build(&fx.m, &fx.g.norm, &sim), QD_OK);
            struct qd_qparam *tq = calloc((size_t)sim.n + 1, sizeof *tq);
            qd_simulate_prepare(&b, &sim, tq);
            struct qd_igraph_exec es, ef;
            assert_int_equal(qd_igraph_exec_init(&es, &sim, 1), QD_OK);
            assert_int_equal(qd_igraph_exec_init(&ef, &fx.g, 1), QD_OK);
            es.fq = tq;
            double d_sim = 0, d_float = 0;
            for (int i = 0; i < 8; i++) {
                float x[768], l[10];
                uint8_t y;
                qd_batch_fill(&fx.ds, &fx.g.norm, &i, 1, 0, NULL, x, &y);
                qd_igraph_forward(&es, 1, x);
                qd_igraph_forward(&ef, 1, x);
                qd_rt_run(rt, fx.ds.x + (size_t)i * 768, l);
                for (int k = 0; k < 10; k++) {
                    d_sim += fabs(l[k] - es.t[sim.n][k]);
                    d_float += fabs(l[k] - ef.t[fx.g.n][k]);
                }
            }
            if (!(d_sim < 0.35 * d_float))
                fail_msg("%s %s: runtime-simulation distance %g, runtime-float %g", fx.m.family,
                         qd_qmode_name(mode), d_sim, d_float);
            qd_igraph_exec_fini(&es), qd_igraph_exec_fini(&ef), qd_igraph_fini(&sim);
            free(tq), free(arena), free(blob);
        }
        unmake(&fx);
    }
}

static void damaged_and_hostile_blobs_are_rejected(void **st)
{
    struct fixture fx;
    make(&fx, "resnet_v1", 3, 16, 70);
    struct qd_qm_build b = {&fx.g, NULL, QD_QMODE_INT8, fx.rg, 7, fx.m.family};
    uint8_t *blob;
    size_t len, need;
    assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
    uint8_t *c = malloc(len);
    /* every single-byte corruption is caught (CRC); truncations and empty blobs too */
    struct qd_rng r;
    qd_rng_seed(&r, 71);
    for (int t = 0; t < 3000; t++) {
        memcpy(c, blob, len);
        size_t at = t < (int)len && t < 200 ? (size_t)t : qd_rng_below(&r, (uint32_t)len);
        c[at] ^= (uint8_t)(1 + qd_rng_below(&r, 255));
        assert_int_not_equal(qd_qm_validate(c, len), QD_OK);
    }
    for (size_t cut = 0; cut < len; cut += 1 + len / 97)
        assert_int_not_equal(qd_qm_validate(blob, cut), QD_OK);
    /* hostile: structurally wrong but with a correct CRC. Fix the CRC after each edit. */
    struct {
        size_t off;
        uint8_t val;
        const char *needle;
    } edits[] = {
        {0, 'X', "bad magic"},
        {4, 9, "version"},
        {32, 0, "0 nodes"},
        {24, 77, "out of range"},           /* mode */
        {25, 0, "out of range"},            /* input channels */
        {72, 7, "input quantization"},      /* input bits */
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        memcpy(c, blob, len);
        c[edits[k].off] = edits[k].val;
        uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), c, (uInt)(len - 4));
        memcpy(c + len - 4, &crc, 4);
        qd_err e = qd_qm_validate(c, len);
        if (e == QD_OK || !strstr(qd_errmsg(), edits[k].needle))
            fail_msg("edit %zu: %s '%s'", k, qd_err_name(e), qd_errmsg());
    }
    /* record fields: first record starts after header and policy */
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    size_t rec = (size_t)(h.records - blob);
    size_t roff[] = {rec + 0, rec + 4, rec + 8, rec + 16, rec + 40, rec + 44, rec + 2};
    uint8_t rval[] = {9, 5, 0, 0, 0xff, 3, 1};
    for (size_t k = 0; k < sizeof roff / sizeof roff[0]; k++) {
        memcpy(c, blob, len);
        c[roff[k]] = rval[k];
        uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), c, (uInt)(len - 4));
        memcpy(c + len - 4, &crc, 4);
        if (qd_qm_validate(c, len) == QD_OK)
            fail_msg("record edit at +%zu accepted", roff[k] - rec);
    }
    /* the runtime refuses the same blobs and a too-small or misaligned arena */
    assert_int_equal(qd_rt_arena_size(blob, len, &need), QD_OK);
    uint8_t *arena = aligned_alloc(16, need + 16);
    qd_rt_t *rt;
    size_t n2;
    assert_int_equal(qd_rt_load(blob, len, arena, need - 1, &rt, &n2, NULL), QD_RT_ENOMEM);
    assert_int_equal(n2, need);
    assert_int_equal(qd_rt_load(blob, len, arena + 1, need, &rt, &n2, NULL), QD_RT_ENOMEM);
    c[0] = 'X';
    assert_int_equal(qd_rt_load(c, len, arena, need, &rt, &n2, NULL), QD_RT_EFORMAT);
    assert_int_equal(qd_rt_load(blob, len, arena, need, &rt, &n2, NULL), QD_RT_OK);
    free(arena), free(c), free(blob);
    unmake(&fx);
}

static void packing_round_trips_every_bitwidth(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 81);
    for (int bits = 2; bits <= 16; bits++) {
        int32_t v[101], lim = (1 << (bits - 1)) - 1;
        for (int i = 0; i < 101; i++)
            v[i] = (int32_t)qd_rng_below(&r, 2 * lim + 1) - lim;
        v[0] = -lim, v[1] = lim, v[2] = 0, v[3] = -1;
        uint8_t p[256];
        qd_qm_pack(v, 101, bits, p);
        assert_int_equal(qd_qm_packed_bytes(101, bits), (101 * bits + 7) / 8);
        for (int i = 0; i < 101; i++)
            assert_int_equal(qd_qm_unpack_one(p, i, bits), v[i]);
    }
    /* LSB-first: 4-bit values 1, -2 pack to 0xE1 */
    int32_t two[2] = {1, -2};
    uint8_t p;
    qd_qm_pack(two, 2, 4, &p);
    assert_int_equal(p, 0xE1);
}

static void requantization_matches_exact_arithmetic(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 91);
    for (int t = 0; t < 100000; t++) {
        double m = exp(-20 * qd_rng_uniform(&r)) * (t % 3 ? 1 : 3);
        int32_t M, sh;
        qd_quantize_multiplier(m, &M, &sh);
        assert_true(M == 0 || (M >= (1 << 30)));
        int64_t acc = (int64_t)(qd_rng_next(&r) % 2000001) - 1000000;
        double want = (double)acc * M * ldexp(1.0, sh - 31);
        int32_t got = qd_requant(acc, M, sh);
        /* round half up of the exact fixed-point product */
        if (fabs(got - want) > 0.5 + 1e-9 || (fabs(got - want) == 0.5 && got < want))
            fail_msg("acc %lld m %g: %d vs %g", (long long)acc, m, got, want);
        assert_true(fabs((double)M * ldexp(1.0, sh - 31) - m) <= m * 1e-9 + 1e-300);
    }
    /* the int64 fast path and the int128 path meet at |acc| = 2^31: both sides of it, every
     * shift, against the exact arithmetic written out here */
    static const int64_t edge[] = {INT32_MIN, INT32_MAX, (int64_t)INT32_MIN - 1,
                                   (int64_t)INT32_MAX + 1, 1, -1, 0, (int64_t)1 << 40};
    for (int t = 0; t < 200000; t++) {
        int32_t M = (int32_t)((1u << 30) + qd_rng_below(&r, 1u << 30));
        int32_t sh = (int32_t)qd_rng_below(&r, 62) - 31;
        int64_t acc = t < 8 * 62 ? edge[t % 8] : (int64_t)(qd_rng_next(&r) >> (20 + t % 24));
        if (t >= 8 * 62 && (t & 1))
            acc = -acc;
        if (t < 8 * 62)
            sh = t / 8 - 31;
        __int128 p = (__int128)acc * M;
        int rs = 31 - sh;
        __int128 want = (p + ((__int128)1 << (rs - 1))) >> rs;
        want = want > INT32_MAX ? INT32_MAX : want < INT32_MIN ? INT32_MIN : want;
        if (qd_requant(acc, M, sh) != (int32_t)want)
            fail_msg("acc %lld M %d shift %d: %d vs %d", (long long)acc, M, sh,
                     qd_requant(acc, M, sh), (int32_t)want);
    }
}

/* The fuzzers' regression models (tests/fuzz-regress/qm/): the host validator agrees with the
 * runtime, and every one that loads gives the same logits, bit for bit, on the reference, the
 * portable fast, the DSP and each SIMD kernel set (what fuzz/fuzz_qm.c checks; the sanitizer
 * pass also sees the arithmetic: an add whose saturated requantization wrapped when its zero
 * point was added in 32 bits). */
static void regress_qm(const uint8_t *b, size_t n, const char *name)
{
    uint8_t *blob = aligned_alloc(16, (n + 15) & ~(size_t)15);
    memcpy(blob, b, n);
    size_t need;
    qd_err e = qd_qm_validate(blob, n);
    if (e || qd_rt_arena_size(blob, n, &need) || need > (64u << 20)) {
        free(blob);
        return;
    }
    qd_rt_t *rt;
    uint8_t *arena = load(blob, n, &rt, &need);
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    size_t npx = (size_t)h.in_c * h.in_h * h.in_w, nc = h.nclass;
    uint8_t *px = malloc(npx);
    for (size_t i = 0; i < npx; i++)
        px[i] = (uint8_t)(i * 37 + 11);
    float *ref = malloc(nc * sizeof *ref), *got = malloc(nc * sizeof *got);
    qd_rt_set_reference(rt, 1);
    qd_rt_run(rt, px, ref);
    qd_rt_set_reference(rt, 0);
    for (int isa = QD_RT_ISA_PORTABLE; rt->integer && isa <= QD_RT_ISA_AUTO; isa++) {
        size_t an = 0;
        if (isa == QD_RT_ISA_AUTO) /* the DSP kernels */
            rt->dsp = 1;
        else if (isa != QD_RT_ISA_PORTABLE && qd_rt_accel_size(rt, isa, &an))
            continue;
        void *buf = an ? aligned_alloc(64, (an + 63) & ~(size_t)63) : NULL;
        assert_int_equal(qd_rt_accel(rt, isa == QD_RT_ISA_AUTO ? 0 : isa, buf, an), QD_RT_OK);
        qd_rt_run(rt, px, got);
        if (memcmp(ref, got, nc * sizeof *ref))
            fail_msg("%s: %s and reference logits differ", name,
                     isa == QD_RT_ISA_AUTO ? "dsp" : qd_rt_isa_name(isa));
        qd_rt_accel(rt, QD_RT_ISA_PORTABLE, NULL, 0);
        free(buf);
    }
    free(px), free(ref), free(got), free(arena), free(blob);
}

/* Device profiles the profile fuzzer broke (tests/fuzz-regress/device/): refused with the
 * code their name ends in ("flash = 1e308G" loaded as an infinite flash). */
static void regress_device(const uint8_t *b, size_t n, const char *name)
{
    char *dir = make_tmpdir(), p[512];
    snprintf(p, sizeof p, "%s/r.ini", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    struct qd_device d;
    qd_err e = qd_device_load(p, &d);
    const char *want = fuzz_regress_code(name);
    if (*want && strcmp(qd_err_name(e), want))
        fail_msg("%s: %s (%s)", name, qd_err_name(e), qd_errmsg());
    if (!e)
        assert_true(isfinite(d.flash) && isfinite(d.ram) && d.flash > d.reserved_flash);
    rm_rf(dir);
    free(dir);
}

static void fuzz_regressions(void **st)
{
    assert_true(fuzz_regress_each("qm", regress_qm) > 0);
    assert_true(fuzz_regress_each("device", regress_device) > 0);
}

/* The microcontroller cost model (policy/cost_mcu.c) counts the kernel the runtime runs:
 * for every layer of every family under random policies (2..16-bit weights, 8/16-bit
 * activations), the features it fills are those of the kernel the runtime picks with the DSP
 * back end on (the Cortex-M's dispatch, here on C versions of its instructions). */
static void mcu_cost_model_picks_the_runtimes_kernels(void **st)
{
    (void)st;
    struct qd_rng r;
    qd_rng_seed(&r, 91);
    int seen[3] = {0};
    for (int f = 0; qd_zoo_families[f]; f++) {
        struct fixture fx;
        make(&fx, qd_zoo_families[f], f ? 3 : 1, 16, 90 + f);
        for (int t = 0; t < 6; t++) {
            struct qd_policy p;
            random_policy(&r, fx.g.nq, &p);
            struct qd_qm_build b = {&fx.g, &p, QD_QMODE_MIXED, fx.rg, 7, fx.m.family};
            uint8_t *blob;
            size_t len, need;
            assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
            qd_rt_t *rt;
            uint8_t *arena = load(blob, len, &rt, &need);
            rt->dsp = 1;
            for (int i = 0; i < rt->n; i++) {
                const struct qd_qm_rec *rec = &rt->nodes[i].r;
                int w = rec->wfmt ? rec->wbits : 8, a = rt->t[rec->in0].s.bits;
                double x[QD_MF_COUNT];
                qd_cost_mcu_features(&fx.g, i, w, a, rt->t[i + 1].s.bits, x);
                const char *k = qd_rt_node_kernel(rt, i);
                if (!rec->wfmt)
                    continue;
                const char *model = x[QD_MF_DSP_LAYER]   ? "dsp"
                                    : x[QD_MF_S8_LAYER] ? "s8"
                                    : x[QD_MF_REF_MAC]  ? "ref"
                                                        : "none";
                if (strcmp(model, k))
                    fail_msg("%s layer %d (w%d a%d o%d): runtime %s, cost model %s",
                             fx.m.family, i, w, a, rt->t[i + 1].s.bits, k, model);
                seen[!strcmp(k, "dsp") ? 0 : !strcmp(k, "s8") ? 1 : 2]++;
            }
            free(arena);
            free(blob);
        }
        unmake(&fx);
    }
    assert_true(seen[0] > 50 && seen[1] > 10 && seen[2] > 10); /* every kernel was compared */
}

int main(void)
{
    qd_kernels_init(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(packing_round_trips_every_bitwidth),
        cmocka_unit_test(requantization_matches_exact_arithmetic),
        cmocka_unit_test(size_is_exact_for_random_policies),
        cmocka_unit_test(fast_kernels_are_bit_exact_on_whole_models),
        cmocka_unit_test(simd_kernels_are_bit_exact_on_odd_shapes),
        cmocka_unit_test(float_paths_match_the_inference_graph),
        cmocka_unit_test(fast_float_kernels_match_the_reference),
        cmocka_unit_test(runtime_follows_the_simulation),
        cmocka_unit_test(damaged_and_hostile_blobs_are_rejected),
        cmocka_unit_test(mcu_cost_model_picks_the_runtimes_kernels),
        cmocka_unit_test(fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
