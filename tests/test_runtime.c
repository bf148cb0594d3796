/* The device runtime alone (runtime/ and cmocka, nothing else of the project, so that the same
 * test runs cross-built under QEMU): its libm-free arithmetic against libm and exact 128-bit
 * arithmetic, the CRC against the standard check value, and hostile .qm files built field by
 * field here: each refused with its code, and any mutated blob the validator accepts runs
 * without a read out of bounds (the sanitizer pass and the cross runs check that); and the SIMD
 * back ends against the reference kernels on hand-built models of odd shapes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/crc32.h"
#include "runtime/qm_format.h"
#include "runtime/qmath.h"
#include "runtime/runtime.h"

#include "fuzzregress.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

/* ---------------------------------------------------------------- arithmetic */

static void round_matches_libm(void **st)
{
    (void)st;
    static const double edge[] = {0.5, -0.5, 1.5, -1.5, 2.5, 0.49999999999999994, -0.0, 0.0,
                                  4503599627370495.5, 4503599627370496.0, -4503599627370497.0,
                                  1e300, -1e300, 0.3, -0.7, 1e-300};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        assert_true(qd_round(edge[i]) == round(edge[i]));
    for (int t = 0; t < 200000; t++) {
        double v = ldexp((double)(int64_t)rnd(), -(int)(rnd() % 80));
        if (qd_round(v) != round(v))
            fail_msg("round(%.17g): %.17g vs %.17g", v, qd_round(v), round(v));
    }
}

/* libm's frexp + llround, the multiplier's former implementation, as the reference */
static void multiplier_ref(double m, int32_t *M, int32_t *shift)
{
    *M = 0, *shift = 0;
    if (!(m > 0))
        return;
    int e;
    int64_t qi = llround(frexp(m, &e) * 2147483648.0);
    if (qi == 2147483648LL)
        qi /= 2, e++;
    if (e < -31)
        return;
    if (e > 30)
        e = 30, qi = 2147483647;
    *M = (int32_t)qi, *shift = e;
}

static void multiplier_matches_frexp(void **st)
{
    (void)st;
    for (int t = 0; t < 300000; t++) {
        double m = ldexp(1.0 + (double)(rnd() >> 11) / 9007199254740992.0,
                         (int)(rnd() % 120) - 80);
        if (t % 7 == 0) /* halfway cases of the 31-bit rounding */
            m = ldexp((double)((rnd() >> 34) | (1u << 29)) + 0.5, -(int)(rnd() % 60));
        int32_t M, s, Mr, sr;
        qd_quantize_multiplier(m, &M, &s);
        multiplier_ref(m, &Mr, &sr);
        if (M != Mr || s != sr)
            fail_msg("m %.17g: (%d, %d) vs frexp (%d, %d)", m, M, s, Mr, sr);
    }
    int32_t M, s;
    qd_quantize_multiplier(0, &M, &s);
    assert_true(M == 0 && s == 0);
    qd_quantize_multiplier(1e-320, &M, &s); /* subnormal */
    assert_true(M == 0 && s == 0);
}

#if defined(__SIZEOF_INT128__)
/* Every shift the arithmetic admits, not only the multipliers' [-31, 30]. */
static void requant_matches_int128(void **st)
{
    (void)st;
    static const int64_t edge[] = {INT64_MIN + 1, INT64_MAX, INT32_MIN, INT32_MAX,
                                   (int64_t)INT32_MIN - 1, (int64_t)INT32_MAX + 1, 1, -1, 0};
    for (int t = 0; t < 400000; t++) {
        int32_t M = (int32_t)(rnd() >> 33);
        if (t & 2)
            M = -M;
        int32_t sh = (int32_t)(rnd() % 160) - 96; /* rs from -33 to 127 */
        int64_t acc = t < 9 * 40 ? edge[t % 9] : (int64_t)(rnd() >> (rnd() % 64));
        if (t & 1)
            acc = -acc;
        int rs = 31 - sh;
        __int128 p = (__int128)acc * M, want;
        if (rs > 0)
            want = (p + ((__int128)1 << (rs - 1))) >> rs;
        else if (rs > -34)
            want = p * ((__int128)1 << -rs);
        else
            want = p;
        want = want > INT32_MAX ? INT32_MAX : want < INT32_MIN ? INT32_MIN : want;
        if (qd_requant(acc, M, sh) != (int32_t)want)
            fail_msg("acc %lld M %d shift %d: %d vs %d", (long long)acc, M, sh,
                     qd_requant(acc, M, sh), (int32_t)want);
    }
}
#endif

static void quantize_and_f16(void **st)
{
    (void)st;
    struct qd_qparam q;
    qd_qparam_make(-1.5f, 3.0f, 8, QD_QSCHEME_ASYM, &q);
    assert_int_equal(q.qmin, -128);
    assert_int_equal(q.qmax, 127);
    assert_true(qd_dequantize(qd_quantize(0.0f, &q), &q) == 0.0f);
    assert_int_equal(qd_quantize(1e9f, &q), 127);
    assert_int_equal(qd_quantize(-1e9f, &q), -128);
    for (int t = 0; t < 10000; t++) {
        float x = (float)((int64_t)(rnd() % 9000) - 3000) / 1000.0f;
        double v = round((double)x / q.scale) + q.zero;
        int32_t want = v < q.qmin ? q.qmin : v > q.qmax ? q.qmax : (int32_t)v;
        assert_int_equal(qd_quantize(x, &q), want);
    }
    for (uint32_t h = 0; h < 65536; h++) { /* every half round-trips (NaNs stay NaN) */
        float f = qd_f16_to_f32((uint16_t)h);
        if (f == f)
            assert_int_equal(qd_f32_to_f16(f), h);
    }
}

static void crc_is_the_standard_crc32(void **st)
{
    (void)st;
    assert_int_equal(qd_crc32(0, (const uint8_t *)"123456789", 9), 0xCBF43926u);
    assert_int_equal(qd_crc32(0, NULL, 0), 0);
    uint8_t b[1000];
    for (int i = 0; i < 1000; i++)
        b[i] = (uint8_t)rnd();
    assert_int_equal(qd_crc32(qd_crc32(0, b, 300), b + 300, 700), qd_crc32(0, b, 1000));
}

/* ---------------------------------------------------------------- hand-built models */

struct rspec {
    uint8_t op, act, wbits, obits;
    int16_t in0, in1;
    uint16_t c, h, w, cin, k, stride, pad, groups;
    uint32_t in_len;
    float oscale;
    int32_t ozero;
    uint32_t nscale, wcount;
    uint8_t wfmt, bfmt;
    int64_t bias;
};

struct mspec {
    int32_t in_zero;
    uint8_t mode, in_c, in_bits;
    uint16_t in_h, in_w, nclass;
    uint32_t nq; /* 0: counted from the records */
    int n;
    struct rspec r[8];
};

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->cap + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (src)
        memcpy(b->p + b->len, src, n);
    else
        memset(b->p + b->len, 0, n);
    b->len += n;
}
#define PUTV(b, v)                                                                                 \
    do {                                                                                           \
        __typeof__(v) v_ = (v);                                                                    \
        put(b, &v_, sizeof v_);                                                                    \
    } while (0)

static void align4(struct buf *b)
{
    put(b, NULL, (4 - (b->len & 3)) & 3);
}

/* The .qm bytes of m, laid out as qm_format.h says, with a correct CRC. */
static uint8_t *build(const struct mspec *m, size_t *len)
{
    struct buf b = {0};
    uint32_t nq = 0;
    for (int i = 0; i < m->n; i++)
        nq += m->r[i].wfmt != 0;
    if (m->nq)
        nq = m->nq;
    put(&b, "QDQM", 4);
    PUTV(&b, (uint16_t)QD_QM_VERSION);
    PUTV(&b, (uint16_t)0);
    PUTV(&b, (uint32_t)QD_QM_HEADER);
    PUTV(&b, (uint32_t)0); /* total, patched */
    PUTV(&b, (uint64_t)42);
    PUTV(&b, m->mode);
    PUTV(&b, m->in_c);
    PUTV(&b, m->in_h);
    PUTV(&b, m->in_w);
    PUTV(&b, m->nclass);
    PUTV(&b, (uint32_t)m->n);
    PUTV(&b, nq);
    for (int i = 0; i < 3; i++)
        PUTV(&b, 0.5f);
    for (int i = 0; i < 3; i++)
        PUTV(&b, 0.25f);
    PUTV(&b, 1.0f / 64);
    PUTV(&b, m->in_zero);
    PUTV(&b, m->in_bits);
    put(&b, NULL, 3);
    put(&b, "test", 4);
    put(&b, NULL, 16);
    for (uint32_t q = 0; q < nq && q < 64; q++) {
        PUTV(&b, (uint8_t)8);
        PUTV(&b, (uint8_t)8);
    }
    align4(&b);
    for (int i = 0; i < m->n; i++) {
        const struct rspec *r = &m->r[i];
        uint8_t f[4] = {r->op, r->act, r->wbits, r->obits};
        put(&b, f, 4);
        PUTV(&b, r->in0);
        PUTV(&b, r->in1);
        uint16_t sh[8] = {r->c, r->h, r->w, r->cin, r->k, r->stride, r->pad, r->groups};
        put(&b, sh, 16);
        PUTV(&b, r->in_len);
        PUTV(&b, r->oscale);
        PUTV(&b, r->ozero);
        PUTV(&b, r->nscale);
        PUTV(&b, r->wcount);
        PUTV(&b, r->wfmt);
        PUTV(&b, r->bfmt);
        PUTV(&b, (uint16_t)0);
        if (!r->wfmt)
            continue;
        for (uint32_t c = 0; c < r->nscale; c++)
            PUTV(&b, 0.01f + 0.001f * (float)(c % 7));
        for (uint32_t c = 0; c < r->c; c++) {
            if (r->bfmt == QD_BFMT_I64)
                PUTV(&b, r->bias);
            else if (r->bfmt == QD_BFMT_I32)
                PUTV(&b, (int32_t)r->bias);
            else
                PUTV(&b, (float)r->bias);
        }
        size_t wb = r->wfmt == QD_WFMT_INT  ? (size_t)qd_qm_packed_bytes(r->wcount, r->wbits)
                    : r->wfmt == QD_WFMT_F32 ? 4 * (size_t)r->wcount
                                             : 2 * (size_t)r->wcount;
        size_t at = b.len;
        put(&b, NULL, wb);
        if (r->wfmt == QD_WFMT_F32)
            for (size_t j = 0; j < r->wcount; j++) {
                float v = (float)((int)(rnd() % 200) - 100) / 400.0f;
                memcpy(b.p + at + 4 * j, &v, 4);
            }
        else
            for (size_t j = 0; j < wb && j < (1u << 16); j++)
                b.p[at + j] = (uint8_t)rnd();
        align4(&b);
    }
    uint32_t total = (uint32_t)(b.len + 4);
    memcpy(b.p + 12, &total, 4);
    uint32_t crc = qd_crc32(0, b.p, b.len);
    put(&b, &crc, 4);
    *len = b.len;
    return b.p;
}

/* conv 1->2 3x3 pad 1 (ReLU) -> maxpool 2 -> add with itself -> dense 8 -> 3, on a 1x4x4
 * input: every op kind, in int8 or fp32. */
static struct mspec base_model(int integer)
{
    uint8_t wf = integer ? QD_WFMT_INT : QD_WFMT_F32, bf = integer ? QD_BFMT_I32 : QD_BFMT_F32;
    uint8_t ob = integer ? 8 : 0;
    float os = integer ? 0.05f : 0;
    struct mspec m = {.mode = integer ? QD_QMODE_INT8 : QD_QMODE_F32, .in_c = 1,
                      .in_bits = integer ? 8 : 0, .in_h = 4, .in_w = 4, .nclass = 3, .n = 4};
    m.r[0] = (struct rspec){QD_IOP_CONV, QD_ACT_RELU, integer ? 8 : 0, ob, 0, -1, 2, 4, 4, 1, 3,
                            1, 1, 1, 0, os, integer ? -128 : 0, integer ? 2 : 0, 18, wf, bf, 3};
    m.r[1] = (struct rspec){QD_IOP_MAXPOOL, 0, 0, ob, 1, -1, 2, 2, 2, 0, 2, 2, 0, 0, 0, os,
                            integer ? -128 : 0, 0, 0, 0, 0, 0};
    m.r[2] = (struct rspec){QD_IOP_ADD, 0, 0, ob, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, os * 2,
                            integer ? -128 : 0, 0, 0, 0, 0, 0};
    m.r[3] = (struct rspec){QD_IOP_DENSE, 0, integer ? 8 : 0, ob, 3, -1, 3, 1, 1, 0, 0, 0, 0, 0,
                            8, os, 0, integer ? 3 : 0, 24, wf, bf, -7};
    return m;
}

static void *arena_for(const uint8_t *blob, size_t len, size_t *need)
{
    qd_rt_t *rt;
    static _Alignas(16) uint8_t probe[1 << 16];
    qd_rt_err e = qd_rt_load(blob, len, probe, sizeof probe, &rt, need, NULL);
    assert_true(e == QD_RT_OK || e == QD_RT_ENOMEM || (!QD_RT_FLOAT && e == QD_RT_EUNSUPPORTED));
    if (e == QD_RT_EUNSUPPORTED) /* refused after validation: an arena that holds the tables */
        *need = sizeof probe;
    void *a = aligned_alloc(16, (*need + 15) & ~(size_t)15);
    assert_non_null(a);
    return a;
}

static void valid_models_load_and_run(void **st)
{
    (void)st;
    for (int integer = 0; integer < 2; integer++) {
        struct mspec m = base_model(integer);
        size_t len, need;
        uint8_t *blob = build(&m, &len);
        struct qd_qm_tshape sh[8];
        struct qd_rt_diag d = {0};
        qd_rt_err e = qd_qm_validate_into(blob, len, sh, &d);
        if (e)
            fail_msg("%s model: %s at record %d: %s", integer ? "int8" : "fp32",
                     qd_rt_err_name(e), d.record, d.msg);
        void *arena = arena_for(blob, len, &need);
        qd_rt_t *rt;
        e = qd_rt_load(blob, len, arena, need, &rt, NULL, &d);
#if !QD_RT_FLOAT
        if (!integer) { /* the integer-only build refuses float models, and says so */
            assert_int_equal(e, QD_RT_EUNSUPPORTED);
            free(arena), free(blob);
            continue;
        }
#endif
        assert_int_equal(e, QD_RT_OK);
        assert_int_equal(qd_rt_arena_used(rt), need);
        uint8_t px[16];
        float l1[3], l2[3];
        for (int t = 0; t < 20; t++) {
            for (int i = 0; i < 16; i++)
                px[i] = (uint8_t)rnd();
            qd_rt_set_reference(rt, 1);
            qd_rt_run(rt, px, l1);
            qd_rt_set_reference(rt, 0);
            qd_rt_run(rt, px, l2);
            for (int k = 0; k < 3; k++) {
                assert_true(isfinite(l1[k]));
                assert_true(integer ? l1[k] == l2[k] : fabsf(l1[k] - l2[k]) < 1e-4f);
            }
        }
        free(arena), free(blob);
    }
}

/* A field of record i (or of the header, i < 0) patched in a built blob, CRC fixed up: for
 * values the builder cannot lay out (a payload the record claims but the file lacks). */
static void patch32(uint8_t *blob, size_t len, int i, size_t field, uint32_t v)
{
    size_t off = field;
    if (i >= 0) {
        struct qd_qm_header h;
        qd_qm_header_read(blob, &h);
        const uint8_t *p = h.records;
        struct qd_qm_rec r;
        for (int k = 0; k < i; k++)
            qd_qm_record_read(&p, &r);
        off += (size_t)(p - blob);
    }
    memcpy(blob + off, &v, 4);
    uint32_t crc = qd_crc32(0, blob, len - 4);
    memcpy(blob + len - 4, &crc, 4);
}

struct hostile {
    const char *what;
    qd_rt_err want;
    void (*edit)(struct mspec *m);
    int rec;              /* with field != 0: patch32(rec, field, value) after building */
    size_t field;
    uint32_t value;
};

static void in_c_4(struct mspec *m)
{
    m->in_c = 4; /* the header's mean/std hold 3 */
    m->r[0].cin = 4, m->r[0].wcount = 2 * 4 * 9;
}
static void input_overflows_32_bits(struct mspec *m)
{
    m->in_c = 3, m->in_h = 65535, m->in_w = 65535;
}
static void output_past_cap(struct mspec *m)
{
    /* 1x1 conv with padding 2100: 4 x 4204 x 4204 outputs > 2^26 */
    m->r[0].k = 1, m->r[0].pad = 2100, m->r[0].c = 4, m->r[0].h = m->r[0].w = 4204;
    m->r[0].wcount = 4, m->r[0].nscale = 4;
}
static void per_channel_past_cap(struct mspec *m)
{
    /* 4097x4097 window (padding 4097): 16.8M weights per channel > 2^24, at 2 bits */
    struct rspec *r = &m->r[0];
    r->c = 1, r->k = 4097, r->pad = 4097, r->h = r->w = 4102, r->nscale = 1, r->wbits = 2;
    r->wcount = 4097u * 4097u;
}
static void bias64_past_cap(struct mspec *m)
{
    m->mode = QD_QMODE_INT16X8;
    for (int i = 0; i < 4; i++)
        m->r[i].obits = 16;
    m->in_bits = 16;
    m->r[0].bfmt = m->r[3].bfmt = QD_BFMT_I64;
    m->r[3].bias = INT64_MAX - 5;
}
static void conv_geometry(struct mspec *m)
{
    m->r[0].h = 5;
}
static void input_out_of_range(struct mspec *m)
{
    m->r[1].in0 = 3;
}
static void nq_mismatch(struct mspec *m)
{
    m->nq = 1;
}
static void last_not_dense(struct mspec *m)
{
    m->n = 3, m->nclass = 8;
}
static void zero_scale(struct mspec *m)
{
    m->r[2].oscale = 0;
}

static void input_zero_out_of_range(struct mspec *m)
{
    m->in_zero = 1000; /* an int8 input: the SIMD and DSP kernels' bounds would not hold */
}

static void hostile_fields_are_refused(void **st)
{
    (void)st;
    static const struct hostile cases[] = {
        {"4 input channels", QD_RT_EFORMAT, in_c_4},
        {"input planes overflowing 32 bits", QD_RT_ELIMIT, input_overflows_32_bits},
        {"an output past the cap", QD_RT_ELIMIT, output_past_cap},
        {"weights per channel past the cap", QD_RT_ELIMIT, per_channel_past_cap},
        {"an int64 bias past the cap", QD_RT_EFORMAT, bias64_past_cap},
        {"conv output shape", QD_RT_EFORMAT, conv_geometry},
        {"an input tensor not yet written", QD_RT_EFORMAT, input_out_of_range},
        {"weighted-layer count", QD_RT_EFORMAT, nq_mismatch},
        {"a last op that is no dense layer", QD_RT_EFORMAT, last_not_dense},
        {"a zero output scale", QD_RT_EFORMAT, zero_scale},
        {"an input zero point past int8", QD_RT_EFORMAT, input_zero_out_of_range},
        /* the dense record's scale count (+36) and weight count (+40), and the node count */
        {"2^32 - 1 scales", QD_RT_EFORMAT, NULL, 3, 36, 0xffffffffu},
        {"2^30 scales (2^32 bytes: 0 in 32 bits)", QD_RT_EFORMAT, NULL, 3, 36, 1u << 30},
        {"weights past the payload", QD_RT_EFORMAT, NULL, 3, 40, 0xfffffff0u},
        {"40000 nodes", QD_RT_ELIMIT, NULL, -1, 32, 40000},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct mspec m = base_model(1);
        if (cases[k].edit)
            cases[k].edit(&m);
        size_t len;
        uint8_t *blob = build(&m, &len);
        if (cases[k].field)
            patch32(blob, len, cases[k].rec, cases[k].field, cases[k].value);
        struct qd_qm_tshape *sh = calloc(40001, sizeof *sh);
        struct qd_rt_diag d = {0};
        qd_rt_err e = qd_qm_validate_into(blob, len, sh, &d);
        if (e != cases[k].want)
            fail_msg("%s: %s (%s), want %s", cases[k].what, qd_rt_err_name(e),
                     d.msg ? d.msg : "-", qd_rt_err_name(cases[k].want));
        assert_non_null(d.msg);
        /* the runtime refuses it the same way, given an arena that holds the tables */
        qd_rt_t *rt;
        size_t need;
        static _Alignas(16) uint8_t arena[1 << 18];
        qd_rt_err e2 = qd_rt_load(blob, len, arena, sizeof arena, &rt, &need, NULL);
        if (e2 != cases[k].want && !(e2 == QD_RT_ENOMEM && cases[k].want == QD_RT_ELIMIT))
            fail_msg("%s: load says %s", cases[k].what, qd_rt_err_name(e2));
        free(sh), free(blob);
    }
}

/* The fuzzer's regression inputs and the crafted ones of issue 20's named defects (32-bit size
 * arithmetic that wraps, input channels beyond the header's mean/std: fuzz/regress_qm.py makes
 * them), tests/fuzz-regress/qm/: each is refused with the code its name ends in, or, without
 * one, refused or run inside its arena, an integer model to the same logits on the reference
 * and the fast kernels (a dead node's output once overwrote a tensor still to be read). */
static void fuzz_regress_one(const uint8_t *b, size_t n, const char *name)
{
    static _Alignas(16) uint8_t arena[1 << 20];
    static uint8_t blob[1 << 16];
    if (n > sizeof blob)
        fail_msg("%s: %zu bytes", name, n);
    memcpy(blob, b, n); /* as loaded: aligned */
    qd_rt_t *rt;
    size_t need = 0;
    struct qd_rt_diag d = {0};
    qd_rt_err e = qd_rt_load(blob, n, arena, sizeof arena, &rt, &need, &d);
    const char *want = fuzz_regress_code(name);
    if (*want && strcmp(qd_rt_err_name(e), want))
        fail_msg("%s: %s (%s)", name, qd_rt_err_name(e), d.msg ? d.msg : "-");
    if (e == QD_RT_OK) {
        static uint8_t px[1 << 16];
        static float logits[1 << 16];
        struct qd_qm_header h;
        qd_qm_header_read(blob, &h);
        size_t npx = (size_t)h.in_c * h.in_h * h.in_w, nc = (size_t)qd_rt_classes(rt);
        assert_true(npx <= sizeof px && 2 * nc <= sizeof logits / sizeof logits[0]);
        for (size_t i = 0; i < npx; i++)
            px[i] = (uint8_t)(i * 37 + 11);
        qd_rt_set_reference(rt, 1);
        qd_rt_run(rt, px, logits);
        qd_rt_set_reference(rt, 0);
        qd_rt_run(rt, px, logits + nc);
        if (qd_qmode_integer((enum qd_qmode)h.mode) &&
            memcmp(logits, logits + nc, nc * sizeof *logits))
            fail_msg("%s: the reference and the fast kernels differ", name);
    } else
        assert_non_null(d.msg);
}

static void fuzz_regressions_are_refused(void **st)
{
    (void)st;
    assert_true(fuzz_regress_each("qm", fuzz_regress_one) >= 8);
}

/* Random byte edits, CRC fixed up each time: whatever the validator accepts must load and run
 * inside its arena (ASan and the cross runs see any read or write out of bounds). */
static void mutated_models_run_in_bounds(void **st)
{
    (void)st;
    int accepted = 0;
    for (int integer = 0; integer < 2; integer++) {
        struct mspec m = base_model(integer);
        size_t len;
        uint8_t *blob = build(&m, &len), *c = malloc(len);
        for (int t = 0; t < 20000; t++) {
            memcpy(c, blob, len);
            int edits = 1 + (int)(rnd() % 3);
            for (int k = 0; k < edits; k++)
                c[rnd() % (len - 4)] ^= (uint8_t)(1 + rnd() % 255);
            uint32_t crc = qd_crc32(0, c, len - 4);
            memcpy(c + len - 4, &crc, 4);
            qd_rt_t *rt;
            size_t need = 0;
            qd_rt_err e = qd_rt_load(c, len, NULL, 0, &rt, &need, NULL);
            if (e != QD_RT_ENOMEM || need > (1u << 24))
                continue;
            void *arena = aligned_alloc(16, (need + 15) & ~(size_t)15);
            e = qd_rt_load(c, len, arena, need, &rt, &need, NULL);
            if (e == QD_RT_ENOMEM) { /* the tables fitted; now the whole arena */
                free(arena);
                if (need > (1u << 24))
                    continue;
                arena = aligned_alloc(16, (need + 15) & ~(size_t)15);
                e = qd_rt_load(c, len, arena, need, &rt, &need, NULL);
            }
            if (e == QD_RT_OK) {
                uint8_t px[3 * 4 * 4 * 64];
                for (size_t i = 0; i < sizeof px; i++)
                    px[i] = (uint8_t)rnd();
                float logits[65536 / 4];
                struct qd_qm_header h;
                qd_qm_header_read(c, &h);
                if (qd_rt_classes(rt) <= (int)(sizeof logits / sizeof logits[0]) &&
                    (size_t)h.in_c * h.in_h * h.in_w <= sizeof px) {
                    qd_rt_run(rt, px, logits);
                    accepted++;
                }
            }
            free(arena);
        }
        free(c), free(blob);
    }
    /* edits to scales, weights and zero points are legal: some blobs must have run */
    assert_true(accepted > 100);
}

/* ---------------------------------------------------------------- SIMD back ends */

/* Hand-built integer models of odd shapes for the SIMD kernels (rt_x86.c, rt_arm64.c): the
 * tensor each record reads, and its quantization, follow the previous record's. */
struct oddm {
    struct mspec m;
    int c, h, w;  /* the last tensor's shape */
    float scale;  /* and scale */
};

static void odd_start(struct oddm *o, int c, int h, int w)
{
    memset(o, 0, sizeof *o);
    o->m = (struct mspec){.mode = QD_QMODE_MIXED, .in_c = (uint8_t)c, .in_bits = 8,
                          .in_h = (uint16_t)h, .in_w = (uint16_t)w};
    o->c = c, o->h = h, o->w = w, o->scale = 1.0f / 64; /* build()'s input scale */
}

/* Output scale that spreads a layer's accumulators over about +-40 (8-bit) or +-4000 (16-bit)
 * steps: inputs of about 50 steps, random weights of b bits (standard deviation 2^b / 3.5),
 * build()'s weight scales of about 0.013. */
static float odd_scale(const struct oddm *o, size_t per, int wbits, int obits)
{
    double sd = o->scale * 50.0 * sqrt((double)per) * ((1 << wbits) / 3.5) * 0.013;
    return (float)(sd / (obits == 16 ? 4000 : 40));
}

static void odd_conv(struct oddm *o, int cout, int k, int stride, int pad, int wbits, int obits,
                     int act, int32_t ozero, int64_t bias)
{
    struct rspec *r = &o->m.r[o->m.n];
    int oh = (o->h + 2 * pad - k) / stride + 1, ow = (o->w + 2 * pad - k) / stride + 1;
    size_t per = (size_t)o->c * k * k;
    *r = (struct rspec){QD_IOP_CONV, (uint8_t)act, (uint8_t)wbits, (uint8_t)obits,
                        (int16_t)o->m.n, -1, (uint16_t)cout, (uint16_t)oh, (uint16_t)ow,
                        (uint16_t)o->c, (uint16_t)k, (uint16_t)stride, (uint16_t)pad, 1, 0,
                        odd_scale(o, per, wbits, obits), ozero, (uint32_t)cout,
                        (uint32_t)(cout * per), QD_WFMT_INT, QD_BFMT_I32, bias};
    o->m.n++;
    o->c = cout, o->h = oh, o->w = ow, o->scale = r->oscale;
}

/* The classifier: a dense layer of the classes (8-bit logits). */
static void odd_dense(struct oddm *o, int cout, int wbits, int act, int32_t ozero, int64_t bias)
{
    struct rspec *r = &o->m.r[o->m.n];
    size_t per = (size_t)o->c * o->h * o->w;
    *r = (struct rspec){QD_IOP_DENSE, (uint8_t)act, (uint8_t)wbits, 8, (int16_t)o->m.n, -1,
                        (uint16_t)cout, 1, 1, 0, 0, 0, 0, 0, (uint32_t)per,
                        odd_scale(o, per, wbits, 8), ozero, (uint32_t)cout,
                        (uint32_t)(cout * per), QD_WFMT_INT, QD_BFMT_I32, bias};
    o->m.n++;
    o->m.nclass = (uint16_t)cout;
    o->c = cout, o->h = o->w = 1, o->scale = r->oscale;
}

/* The last layer's output scale made tiny: its requantization saturates int32 (multiplier
 * 2^31 - 1, shift 30), and then the output zero point is added (saturated lanes must clamp). */
static void odd_saturate(struct oddm *o)
{
    o->m.r[o->m.n - 1].oscale = o->scale = 1e-15f; /* multiplier past 2^30 */
}

/* Channel counts 1, 3, 5, 17, 33 (no vector width), strides 1 and 2, pads 0, 1 and 2, 1x1,
 * 3x3 and 5x5 kernels, rows of 4n + 1..3 pixels (tile remainders), weights of 2, 4 and 8 bits,
 * zero points from -128 to 20 (the NEON_DOT and VNNI kernels fold them into the bias), a
 * 16-bit output from an accelerated layer, a 16-bit input (not accelerated), a requantization
 * that saturates, dense layers of odd width. */
static int odd_models(struct oddm *o)
{
    int n = 0;
    odd_start(&o[n], 1, 9, 9);
    odd_conv(&o[n], 5, 3, 1, 1, 8, 8, QD_ACT_RELU, -128, 700);
    odd_conv(&o[n], 17, 5, 2, 2, 4, 8, QD_ACT_NONE, 3, -900);
    odd_conv(&o[n], 33, 1, 1, 0, 2, 8, QD_ACT_RELU6, -20, 5);
    odd_conv(&o[n], 3, 3, 2, 0, 8, 8, QD_ACT_NONE, 7, -40000);
    odd_dense(&o[n], 7, 4, QD_ACT_NONE, 0, 123);
    n++;
    odd_start(&o[n], 3, 11, 10);
    odd_conv(&o[n], 17, 3, 2, 1, 2, 8, QD_ACT_RELU, -128, 3);
    odd_conv(&o[n], 33, 3, 1, 2, 8, 8, QD_ACT_NONE, -5, 100000);
    odd_conv(&o[n], 1, 1, 1, 0, 4, 8, QD_ACT_NONE, 20, -77);
    odd_conv(&o[n], 5, 5, 1, 2, 8, 8, QD_ACT_RELU, -128, 0);
    odd_dense(&o[n], 13, 8, QD_ACT_RELU, -128, -2000);
    odd_dense(&o[n], 10, 2, QD_ACT_NONE, -3, 9);
    n++;
    odd_start(&o[n], 3, 13, 15);
    odd_conv(&o[n], 33, 5, 1, 2, 4, 16, QD_ACT_NONE, -1000, 4000); /* 16-bit output */
    odd_conv(&o[n], 17, 3, 2, 1, 8, 8, QD_ACT_RELU, -128, 0);      /* 16-bit input */
    odd_conv(&o[n], 17, 3, 1, 0, 8, 8, QD_ACT_NONE, 9, 31);
    odd_saturate(&o[n]);
    odd_conv(&o[n], 5, 1, 2, 0, 2, 8, QD_ACT_NONE, -9, -3);
    odd_dense(&o[n], 3, 8, QD_ACT_NONE, 1, 0);
    n++;
    odd_start(&o[n], 3, 12, 12); /* 17 channels x 12 pixels: the input copy's 8x8 transposes */
    odd_conv(&o[n], 17, 3, 1, 1, 4, 8, QD_ACT_RELU, -128, 50);
    odd_conv(&o[n], 17, 3, 2, 1, 8, 8, QD_ACT_NONE, -60, -500);
    odd_dense(&o[n], 5, 2, QD_ACT_NONE, 2, 40);
    n++;
    return n;
}

static qd_rt_t *odd_load(const uint8_t *blob, size_t len, void **arena)
{
    size_t need;
    *arena = arena_for(blob, len, &need);
    qd_rt_t *rt;
    struct qd_rt_diag d = {0};
    qd_rt_err e = qd_rt_load(blob, len, *arena, need, &rt, NULL, &d);
    if (e)
        fail_msg("odd model: %s at record %d: %s", qd_rt_err_name(e), d.record, d.msg);
    return rt;
}

/* Every ISA this CPU has (qd_rt_accel) against the reference kernels, logits bit for bit, and
 * each must run some layers accelerated: a back end that silently accelerates nothing fails.
 * Under qemu-aarch64 -cpu max this runs NEON and NEON_DOT; on x86 AVX2 (and VNNI). */
static void simd_kernels_match_reference_on_odd_shapes(void **st)
{
    (void)st;
    struct oddm o[4];
    int nm = odd_models(o), tried[QD_RT_ISA_AUTO] = {0};
    for (int mi = 0; mi < nm; mi++) {
        size_t len;
        uint8_t *blob = build(&o[mi].m, &len);
        void *a1, *a2;
        qd_rt_t *ref = odd_load(blob, len, &a1), *rt = odd_load(blob, len, &a2);
        qd_rt_set_reference(ref, 1);
        size_t per = (size_t)o[mi].m.in_c * o[mi].m.in_h * o[mi].m.in_w;
        uint8_t *px = malloc(per);
        for (int isa = QD_RT_ISA_PORTABLE; isa < QD_RT_ISA_AUTO; isa++) {
            size_t an = 0;
            if (qd_rt_accel_size(rt, isa, &an) != QD_RT_OK)
                continue; /* not this CPU's (or this build's) */
            void *buf = an ? aligned_alloc(64, (an + 63) & ~(size_t)63) : NULL;
            assert_int_equal(qd_rt_accel(rt, isa, buf, an), QD_RT_OK);
            assert_int_equal(qd_rt_isa(rt), isa);
            int on = 0;
            for (int l = 0; l < qd_rt_layers(rt); l++)
                on += !strcmp(qd_rt_node_kernel(rt, l), qd_rt_isa_name(isa));
            assert_int_equal(on, qd_rt_accel_layers(rt));
            if (isa != QD_RT_ISA_PORTABLE && on == 0)
                fail_msg("model %d: %s accelerated no layer", mi, qd_rt_isa_name(isa));
            tried[isa]++;
            for (int t = 0; t < 6; t++) {
                for (size_t j = 0; j < per; j++)
                    px[j] = (uint8_t)(t == 0 ? 0 : t == 1 ? 255 : rnd());
                float l1[16], l2[16];
                qd_rt_run(ref, px, l1);
                qd_rt_run(rt, px, l2);
                for (int k = 0; k < o[mi].m.nclass; k++)
                    if (memcmp(&l1[k], &l2[k], sizeof l1[k]))
                        fail_msg("model %d image %d logit %d: %s %.9g, reference %.9g", mi, t,
                                 k, qd_rt_isa_name(isa), l2[k], l1[k]);
            }
            assert_int_equal(qd_rt_accel(rt, QD_RT_ISA_PORTABLE, NULL, 0), QD_RT_OK);
            free(buf);
        }
        free(px), free(a1), free(a2), free(blob);
    }
    int simd = 0;
    for (int isa = QD_RT_ISA_PORTABLE + 1; isa < QD_RT_ISA_AUTO; isa++)
        if (tried[isa]) {
            print_message("SIMD %s: %d odd models bit-exact\n", qd_rt_isa_name(isa), tried[isa]);
            simd++;
        }
    assert_int_equal(tried[QD_RT_ISA_PORTABLE], nm);
    assert_true(qd_rt_isa_best() == QD_RT_ISA_PORTABLE || tried[qd_rt_isa_best()] == nm);
#if defined(__aarch64__) /* NEON is every aarch64 core's */
    assert_int_equal(tried[QD_RT_ISA_NEON], nm);
#endif
#if defined(__x86_64__) || defined(__aarch64__)
    assert_true(simd >= 1);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_matches_libm),
        cmocka_unit_test(multiplier_matches_frexp),
#if defined(__SIZEOF_INT128__)
        cmocka_unit_test(requant_matches_int128),
#endif
        cmocka_unit_test(quantize_and_f16),
        cmocka_unit_test(crc_is_the_standard_crc32),
        cmocka_unit_test(valid_models_load_and_run),
        cmocka_unit_test(hostile_fields_are_refused),
        cmocka_unit_test(mutated_models_run_in_bounds),
        cmocka_unit_test(fuzz_regressions_are_refused),
        cmocka_unit_test(simd_kernels_match_reference_on_odd_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
