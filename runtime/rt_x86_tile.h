/* One register tile of the host SIMD kernels (rt_x86.c), included once per tile shape with
 * NP (output pixels) and NB (vectors of output channels) defined, so the accumulators are a
 * fixed-size array the compiler keeps in registers. TILE_VNNI selects the ISA. */
#if TILE_VNNI
static VNNI_TARGET void CAT(tile_vnni_, NP, NB)(const struct kargs *k)
{
    __m512i acc[NP][NB];
    for (int p = 0; p < NP; p++)
        for (int b = 0; b < NB; b++)
            acc[p][b] = _mm512_setzero_si512();
    const int8_t *w0 = k->a->w8 + (size_t)k->cb0 * 64;
    size_t wg = (size_t)k->nb * 64; /* bytes per channel group */
    for (int ky = 0; ky < k->K; ky++)
        for (int kx = 0; kx < k->K; kx++) {
            const uint8_t *xr = k->x + ky * k->row + (size_t)kx * 4 * k->ng;
            const int8_t *wt = w0 + (size_t)(ky * k->K + kx) * k->ng * wg;
            for (int c = 0; c < k->ng; c++) {
                __m512i wv[NB];
                for (int b = 0; b < NB; b++)
                    wv[b] = _mm512_loadu_si512(wt + c * wg + b * 64);
                for (int p = 0; p < NP; p++) {
                    __m512i av = _mm512_set1_epi32(rd32(xr + p * k->xstep + 4 * c));
                    for (int b = 0; b < NB; b++)
                        acc[p][b] = _mm512_dpbusd_epi32(acc[p][b], av, wv[b]);
                }
            }
        }
    const __m512i lo = _mm512_set1_epi64(k->amin - k->zo), hi = _mm512_set1_epi64(k->amax - k->zo);
    const __m512i zo = _mm512_set1_epi64(k->zo);
    for (int b = 0; b < NB; b++) {
        int co = (k->cb0 + b) * 16;
        __m512i bias = _mm512_loadu_si512(k->a->bias + co);
        __m512i m0 = _mm512_loadu_si512(k->a->m64 + co), m1 = _mm512_loadu_si512(k->a->m64 + co + 8);
        __m512i r0 = _mm512_loadu_si512(k->a->rnd64 + co);
        __m512i r1 = _mm512_loadu_si512(k->a->rnd64 + co + 8);
        __m512i s0 = _mm512_loadu_si512(k->a->rs64 + co);
        __m512i s1 = _mm512_loadu_si512(k->a->rs64 + co + 8);
        int nlane = k->cout - co < 16 ? k->cout - co : 16;
#if NP == 16
        if (k->bits == 8 && nlane == 16) { /* 16 pixels x 16 channels: transpose, 16-byte rows */
            __m128i rows[16];
            for (int p = 0; p < NP; p++) {
                __m512i v = _mm512_add_epi32(acc[p][b], bias);
                __m512i v0 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v));
                __m512i v1 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1));
                v0 = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(v0, m0), r0), s0);
                v1 = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(v1, m1), r1), s1);
                v0 = _mm512_add_epi64(_mm512_min_epi64(_mm512_max_epi64(v0, lo), hi), zo);
                v1 = _mm512_add_epi64(_mm512_min_epi64(_mm512_max_epi64(v1, lo), hi), zo);
                rows[p] = _mm_unpacklo_epi64(_mm512_cvtepi64_epi8(v0), _mm512_cvtepi64_epi8(v1));
            }
            transpose16(rows);
            for (int j = 0; j < 16; j++)
                _mm_storeu_si128((__m128i *)((int8_t *)k->y + (size_t)(co + j) * k->ohw + k->pix),
                                 rows[j]);
            continue;
        }
#endif
        for (int p = 0; p < NP; p++) {
            __m512i v = _mm512_add_epi32(acc[p][b], bias);
            __m512i v0 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v));
            __m512i v1 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1));
            v0 = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(v0, m0), r0), s0);
            v1 = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(v1, m1), r1), s1);
            v0 = _mm512_add_epi64(_mm512_min_epi64(_mm512_max_epi64(v0, lo), hi), zo);
            v1 = _mm512_add_epi64(_mm512_min_epi64(_mm512_max_epi64(v1, lo), hi), zo);
            int32_t out[16];
            _mm256_storeu_si256((__m256i *)out, _mm512_cvtepi64_epi32(v0));
            _mm256_storeu_si256((__m256i *)(out + 8), _mm512_cvtepi64_epi32(v1));
            size_t at = (size_t)co * k->ohw + k->pix + p;
            for (int j = 0; j < nlane; j++, at += k->ohw)
                store_out(k->y, at, k->bits, out[j]);
        }
    }
}
#else
static AVX2_TARGET void CAT(tile_avx2_, NP, NB)(const struct kargs *k, const struct qd_rt *rt, int i)
{
    __m256i acc[NP][NB];
    for (int p = 0; p < NP; p++)
        for (int b = 0; b < NB; b++)
            acc[p][b] = _mm256_setzero_si256();
    const int16_t *w0 = k->a->w16 + (size_t)k->cb0 * 16;
    size_t wg = (size_t)k->nb * 16; /* int16 per channel pair */
    for (int ky = 0; ky < k->K; ky++)
        for (int kx = 0; kx < k->K; kx++) {
            const uint8_t *xr = k->x + ky * k->row + (size_t)kx * 4 * k->ng;
            const int16_t *wt = w0 + (size_t)(ky * k->K + kx) * k->ng * wg;
            for (int c = 0; c < k->ng; c++) {
                __m256i wv[NB];
                for (int b = 0; b < NB; b++)
                    wv[b] = _mm256_loadu_si256((const __m256i *)(wt + c * wg + b * 16));
                for (int p = 0; p < NP; p++) {
                    __m256i av = _mm256_set1_epi32(rd32(xr + p * k->xstep + 4 * c));
                    for (int b = 0; b < NB; b++)
                        acc[p][b] = _mm256_add_epi32(acc[p][b], _mm256_madd_epi16(av, wv[b]));
                }
            }
        }
    const struct rt_node *nd = &rt->nodes[i];
    for (int b = 0; b < NB; b++) {
        int co = (k->cb0 + b) * 8;
        int nlane = k->cout - co < 8 ? k->cout - co : 8;
        for (int p = 0; p < NP; p++) {
            int32_t out[8];
            _mm256_storeu_si256((__m256i *)out, acc[p][b]);
            size_t at = (size_t)co * k->ohw + k->pix + p;
            for (int j = 0; j < nlane; j++, at += k->ohw) {
                int64_t v = qd_requant((int64_t)out[j] + k->a->bias[co + j], nd->mult[co + j],
                                       nd->shift[co + j]);
                v += k->zo;
                store_out(k->y, at, k->bits, (int32_t)(v < k->amin ? k->amin : v > k->amax ? k->amax : v));
            }
        }
    }
}
#endif
