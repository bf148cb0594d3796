/* Quantizers: ranges, zero-point exactness, error bounds, per-channel weights, float16 against
 * the CPU's F16C converter, calibration methods, and the policy's text and JSON forms. */
#include "testutil.h"

#include <immintrin.h>

#include "nn/train.h"
#include "quant/policy.h"
#include "quant/quantize.h"

static void ranges_follow_tflite(void **st)
{
    int32_t lo, hi;
    qd_qrange(8, QD_QSCHEME_SYM, &lo, &hi);
    assert_true(lo == -127 && hi == 127);
    qd_qrange(8, QD_QSCHEME_ASYM, &lo, &hi);
    assert_true(lo == -128 && hi == 127);
    qd_qrange(4, QD_QSCHEME_SYM, &lo, &hi);
    assert_true(lo == -7 && hi == 7);
    qd_qrange(2, QD_QSCHEME_SYM, &lo, &hi);
    assert_true(lo == -1 && hi == 1);
    qd_qrange(16, QD_QSCHEME_SYM, &lo, &hi);
    assert_true(lo == -32767 && hi == 32767);
    struct qd_qparam q;
    assert_int_equal(qd_qparam_from_range(0, 1, 1, QD_QSCHEME_SYM, &q), QD_EINVAL);
    assert_int_equal(qd_qparam_from_range(0, 1, 17, QD_QSCHEME_SYM, &q), QD_EINVAL);
    assert_int_equal(qd_qparam_from_range(2, 1, 8, QD_QSCHEME_SYM, &q), QD_EINVAL);
    assert_int_equal(qd_qparam_from_range(0, NAN, 8, QD_QSCHEME_SYM, &q), QD_EINVAL);
}

static void zero_is_exact_and_error_is_half_a_step(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 11);
    for (int t = 0; t < 2000; t++) {
        int bits = 2 + (int)qd_rng_below(&r, 15);
        enum qd_qscheme s = t & 1 ? QD_QSCHEME_ASYM : QD_QSCHEME_SYM;
        float lo = -10 * qd_rng_uniform(&r), hi = 10 * qd_rng_uniform(&r);
        if (t % 7 == 0)
            lo = 0.5f; /* range not containing 0 is widened to include it */
        if (lo > hi)
            hi = lo;
        struct qd_qparam q;
        assert_int_equal(qd_qparam_from_range(lo, hi, bits, s, &q), QD_OK);
        assert_true(qd_dequantize(qd_quantize(0.0f, &q), &q) == 0.0f);
        assert_true(q.zero >= q.qmin && q.zero <= q.qmax);
        float clo = fminf(lo, 0), chi = fmaxf(hi, 0);
        for (int k = 0; k < 20; k++) {
            float x = clo + (chi - clo) * qd_rng_uniform(&r);
            float e = fabsf(qd_dequantize(qd_quantize(x, &q), &q) - x);
            if (e > q.scale * 0.5001f + 1e-6f)
                fail_msg("bits %d scheme %d x %g: error %g > scale/2 %g", bits, s, x, e, q.scale / 2);
        }
        /* beyond the representable ends: clamped to them */
        assert_int_equal(qd_quantize(q.scale * (float)(q.qmax - q.zero + 100), &q), q.qmax);
        assert_int_equal(qd_quantize(q.scale * (float)(q.qmin - q.zero - 100), &q), q.qmin);
        /* the range is covered to within half a step (zero-point rounding shifts the grid) */
        assert_true(qd_dequantize(q.qmax, &q) >= chi - 0.5001f * q.scale - 1e-6f);
        assert_true(qd_dequantize(q.qmin, &q) <= clo + 0.5001f * q.scale + 1e-6f);
    }
}

static void per_channel_weights(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 12);
    int cout = 5;
    size_t per = 27;
    float *w = rand_buf(&r, cout * per, 1), sc[5], y[27];
    for (size_t i = 0; i < per; i++)
        w[2 * per + i] *= 0.01f; /* one channel much smaller: gets its own fine scale */
    int32_t q[5 * 27];
    for (int bits = 2; bits <= 16; bits++) {
        qd_quantize_per_channel(w, cout, per, bits, sc, q);
        int32_t qmax = (1 << (bits - 1)) - 1;
        for (int c = 0; c < cout; c++) {
            int32_t mx = 0;
            for (size_t i = 0; i < per; i++) {
                int32_t v = q[c * per + i];
                assert_true(v >= -qmax && v <= qmax);
                mx = abs(v) > mx ? abs(v) : mx;
                y[i] = sc[c] * v;
            }
            assert_int_equal(mx, qmax); /* the largest weight maps to the end of the range */
            /* within the clip, half a step; beyond it (at 4 bits and fewer), the clip */
            const float *wc = w + c * per;
            float clip = qd_weight_clip(wc, per, bits);
            assert_float_equal(sc[c] * qmax, clip, 1e-6 * clip);
            for (size_t i = 0; i < per; i++)
                if (fabsf(wc[i]) <= clip)
                    assert_true(fabsf(y[i] - wc[i]) <= sc[c] * 0.5001f);
                else
                    assert_float_equal(y[i], copysignf(clip, wc[i]), 1e-6 * clip);
        }
        assert_true(sc[2] < sc[0] * 0.05f);
    }
    free(w);
}

/* F16C is enabled for this function alone: the sanitizer build is not built for x86-64-v3. */
__attribute__((target("f16c"))) static void float16_matches_f16c(void **st)
{
    /* every half converts to float and back unchanged (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qd_f16_to_f32((uint16_t)h);
        float hw = _cvtsh_ss((unsigned short)h);
        if (isnan(hw)) {
            assert_true(isnan(f));
            continue;
        }
        if (memcmp(&f, &hw, 4))
            fail_msg("half 0x%04x: %g, F16C says %g", h, f, hw);
        assert_int_equal(qd_f32_to_f16(f), h);
    }
    /* random floats over the whole exponent range, rounding ties included */
    struct qd_rng r;
    qd_rng_seed(&r, 13);
    for (int i = 0; i < 2000000; i++) {
        uint32_t x = (uint32_t)qd_rng_next(&r);
        if (i % 3 == 0) /* bias toward half's range, including subnormals */
            x = (x & 0x8fffffffu) | ((uint32_t)(100 + qd_rng_below(&r, 60)) << 23);
        if (i % 5 == 0)
            x &= ~0xfffu; /* exact ties at the rounding bit */
        float f;
        memcpy(&f, &x, 4);
        if (isnan(f))
            continue;
        uint16_t hw = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT), sw = qd_f32_to_f16(f);
        if (hw != sw)
            fail_msg("float 0x%08x (%g): 0x%04x, F16C says 0x%04x", x, f, sw, hw);
    }
    assert_true(isnan(qd_f16_to_f32(qd_f32_to_f16(NAN))));
}

static void calibration_methods(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 14);
    struct qd_calib_hist h;
    assert_int_equal(qd_calib_init(&h, 7), QD_EINVAL);
    assert_int_equal(qd_calib_init(&h, 2048), QD_OK);
    /* Gaussian activations in small batches of growing spread, plus two outliers */
    size_t total = 0;
    float *x = malloc(sizeof(float) * 10000);
    for (int b = 0; b < 10; b++) {
        for (int i = 0; i < 10000; i++)
            x[i] = (0.5f + b * 0.05f) * qd_rng_normal(&r);
        if (b == 9)
            x[0] = 40, x[1] = -35;
        qd_calib_observe(&h, x, 10000);
        total += 10000;
    }
    assert_int_equal(h.count, total);
    uint64_t s = 0;
    for (int i = 0; i < h.nbins; i++)
        s += h.bins[i];
    assert_int_equal(s, total); /* widening lost nothing */
    float lo, hi, plo, phi, mlo, mhi;
    qd_calib_range(&h, QD_CALIB_MINMAX, 0, 8, QD_QSCHEME_ASYM, &lo, &hi);
    assert_true(lo == -35 && hi == 40);
    qd_calib_range(&h, QD_CALIB_PERCENTILE, 0.01, 8, QD_QSCHEME_ASYM, &plo, &phi);
    assert_true(phi < 6 && phi > 2 && plo > -6 && plo < -2); /* outliers clipped */
    qd_calib_range(&h, QD_CALIB_MSE, 0, 4, QD_QSCHEME_SYM, &mlo, &mhi);
    assert_true(mhi < hi && mhi > 0.5f);
    /* the MSE range really has lower error on the data than min/max */
    struct qd_qparam qa, qb;
    qd_qparam_from_range(lo, hi, 4, QD_QSCHEME_SYM, &qa);
    qd_qparam_from_range(mlo, mhi, 4, QD_QSCHEME_SYM, &qb);
    double ea = 0, eb = 0;
    for (int i = 0; i < 10000; i++) {
        double da = x[i] - qd_dequantize(qd_quantize(x[i], &qa), &qa);
        double db = x[i] - qd_dequantize(qd_quantize(x[i], &qb), &qb);
        ea += da * da;
        eb += db * db;
    }
    assert_true(eb < ea * 0.5);
    qd_calib_fini(&h);
    free(x);
}

static void policy_text_and_json(void **st)
{
    struct qd_policy p, q;
    char buf[256];
    assert_int_equal(qd_policy_parse("8,4,4/16,2", 4, &p), QD_OK);
    assert_true(p.wbits[0] == 8 && p.wbits[2] == 4 && p.abits[2] == 16 && p.abits[3] == 8);
    assert_int_equal(qd_policy_format(&p, buf, sizeof buf), QD_OK);
    assert_string_equal(buf, "8,4,4/16,2");
    assert_int_equal(qd_policy_parse(" 4 ", 6, &p), QD_OK);
    assert_true(p.n == 6 && p.wbits[5] == 4 && p.abits[5] == 8);
    const char *bad[] = {"", "8,4", "8,4,4,4,4", "1,4,4", "8,17,4", "8,x,4", "8,4,4/1",
                         "8,,4", "8;4;4", "8,4,4 z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (qd_policy_parse(bad[i], 3, &p) != QD_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
    /* from a file */
    char *dir = make_tmpdir(), path[300];
    snprintf(path, sizeof path, "%s/p.txt", dir);
    FILE *f = fopen(path, "w");
    fputs("2/16, 4, 8\n", f);
    fclose(f);
    assert_int_equal(qd_policy_parse(path, 3, &p), QD_OK);
    assert_true(p.wbits[0] == 2 && p.abits[0] == 16 && p.wbits[2] == 8);
    rm_rf(dir);
    free(dir);
    /* JSON round trip and validation */
    cJSON *j = qd_policy_to_json(&p);
    assert_int_equal(qd_policy_from_json(j, 3, &q), QD_OK);
    assert_memory_equal(p.wbits, q.wbits, 3);
    assert_memory_equal(p.abits, q.abits, 3);
    assert_int_equal(qd_policy_from_json(j, 4, &q), QD_EINVAL);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"weights\":[8,4.5,2]}");
    assert_int_equal(qd_policy_from_json(j, 3, &q), QD_EINVAL);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"weights\":[8,4,2]}");
    assert_int_equal(qd_policy_from_json(j, 3, &q), QD_OK);
    assert_int_equal(q.abits[1], 8);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ranges_follow_tflite),
        cmocka_unit_test(zero_is_exact_and_error_is_half_a_step),
        cmocka_unit_test(per_channel_weights),
        cmocka_unit_test(float16_matches_f16c),
        cmocka_unit_test(calibration_methods),
        cmocka_unit_test(policy_text_and_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
