/* Kernels: each fast kernel against its plain reference on random and odd shapes, and each
 * backward pass against central finite differences of L = sum(y * r) for a random r. */
#include "testutil.h"

#include "nn/kernels.h"

struct shape {
    int n, cin, h, w, cout, k, stride, pad, groups;
};

static const struct shape shapes[] = {
    {2, 3, 8, 8, 4, 3, 1, 1, 1},     {3, 5, 7, 9, 6, 3, 2, 1, 1},   {1, 4, 6, 5, 8, 1, 1, 0, 1},
    {2, 6, 9, 7, 6, 3, 1, 1, 6},     {2, 8, 10, 10, 8, 3, 2, 1, 8}, {2, 6, 7, 7, 9, 3, 1, 0, 3},
    {1, 2, 5, 5, 3, 5, 1, 2, 1},     {4, 16, 8, 8, 32, 3, 1, 1, 1}, {2, 7, 11, 13, 5, 1, 2, 0, 1},
    {3, 12, 6, 6, 12, 3, 2, 0, 12},  {1, 1, 28, 28, 8, 3, 1, 1, 1},
};

static void conv_fwd_matches_ref(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 1);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const struct shape *p = &shapes[s];
        struct qd_conv_desc d;
        qd_conv_desc_init(&d, p->n, p->cin, p->h, p->w, p->cout, p->k, p->stride, p->pad,
                          p->groups);
        size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.oh * d.ow;
        size_t nw = (size_t)d.cout * (d.cin / d.groups) * d.kh * d.kw;
        float *x = rand_buf(&r, nx, 1), *w = rand_buf(&r, nw, 1), *b = rand_buf(&r, d.cout, 1);
        float *y0 = calloc(ny, 4), *y1 = calloc(ny, 4);
        float *sc = calloc(qd_conv2d_scratch_size(&d) + 1, 4);
        qd_conv2d_fwd_f32_ref(&d, x, w, b, y0);
        qd_conv2d_fwd_f32(&d, x, w, b, y1, sc);
        assert_close(y1, y0, ny, 1e-4, 1e-4);
        qd_conv2d_fwd_f32(&d, x, w, NULL, y1, sc); /* no bias */
        qd_conv2d_fwd_f32_ref(&d, x, w, NULL, y0);
        assert_close(y1, y0, ny, 1e-4, 1e-4);
        free(x), free(w), free(b), free(y0), free(y1), free(sc);
    }
}

static void conv_bwd_matches_ref(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 2);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const struct shape *p = &shapes[s];
        struct qd_conv_desc d;
        qd_conv_desc_init(&d, p->n, p->cin, p->h, p->w, p->cout, p->k, p->stride, p->pad,
                          p->groups);
        size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.oh * d.ow;
        size_t nw = (size_t)d.cout * (d.cin / d.groups) * d.kh * d.kw;
        float *x = rand_buf(&r, nx, 1), *w = rand_buf(&r, nw, 1), *dy = rand_buf(&r, ny, 1);
        float *dx0 = calloc(nx, 4), *dx1 = rand_buf(&r, nx, 9), *dw0 = calloc(nw, 4),
              *dw1 = rand_buf(&r, nw, 9), *db0 = calloc(d.cout, 4), *db1 = rand_buf(&r, d.cout, 9);
        float *sc = calloc(qd_conv2d_scratch_size(&d) + 1, 4);
        qd_conv2d_bwd_f32_ref(&d, x, w, dy, dx0, dw0, db0);
        qd_conv2d_bwd_f32(&d, x, w, dy, dx1, dw1, db1, sc); /* outputs start as garbage */
        assert_close(dx1, dx0, nx, 1e-4, 1e-4);
        assert_close(dw1, dw0, nw, 1e-3, 1e-4);
        assert_close(db1, db0, d.cout, 1e-3, 1e-4);
        qd_conv2d_bwd_f32(&d, x, w, dy, NULL, dw1, NULL, sc); /* dx not needed */
        assert_close(dw1, dw0, nw, 1e-3, 1e-4);
        free(x), free(w), free(dy), free(dx0), free(dx1), free(dw0), free(dw1), free(db0),
            free(db1), free(sc);
    }
}

/* Central differences of L(v) = sum(f(v) * r) with respect to v[i], in double via float f. */
typedef void (*fwd_fn)(void *ctx, float *y);

static void fd_check(fwd_fn f, void *ctx, float *v, size_t nv, const float *grad, const float *r,
                     size_t ny, float eps, double tol)
{
    float *y = malloc(ny * 4);
    size_t step = nv > 60 ? nv / 60 : 1; /* check a spread of coordinates */
    for (size_t i = 0; i < nv; i += step) {
        float keep = v[i];
        double lp = 0, lm = 0;
        v[i] = keep + eps;
        f(ctx, y);
        for (size_t j = 0; j < ny; j++)
            lp += (double)y[j] * r[j];
        v[i] = keep - eps;
        f(ctx, y);
        for (size_t j = 0; j < ny; j++)
            lm += (double)y[j] * r[j];
        v[i] = keep;
        double num = (lp - lm) / (2 * eps);
        if (fabs(num - grad[i]) > tol * (1 + fabs(num)))
            fail_msg("coordinate %zu: analytic %g, numeric %g", i, grad[i], num);
    }
    free(y);
}

struct conv_ctx {
    struct qd_conv_desc d;
    float *x, *w, *b;
};

static void conv_f(void *c, float *y)
{
    struct conv_ctx *k = c;
    qd_conv2d_fwd_f32_ref(&k->d, k->x, k->w, k->b, y);
}

static void conv_bwd_finite_differences(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 3);
    for (size_t s = 0; s < 6; s++) {
        const struct shape *p = &shapes[s];
        struct conv_ctx k;
        qd_conv_desc_init(&k.d, p->n, p->cin, p->h, p->w, p->cout, p->k, p->stride, p->pad,
                          p->groups);
        struct qd_conv_desc *d = &k.d;
        size_t nx = (size_t)d->n * d->cin * d->h * d->w, ny = (size_t)d->n * d->cout * d->oh * d->ow;
        size_t nw = (size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw;
        k.x = rand_buf(&r, nx, 1), k.w = rand_buf(&r, nw, 1), k.b = rand_buf(&r, d->cout, 1);
        float *rr = rand_buf(&r, ny, 1), *dx = calloc(nx, 4), *dw = calloc(nw, 4),
              *db = calloc(d->cout, 4), *sc = calloc(qd_conv2d_scratch_size(d) + 1, 4);
        qd_conv2d_bwd_f32(d, k.x, k.w, rr, dx, dw, db, sc); /* the fast one, against numbers */
        fd_check(conv_f, &k, k.x, nx, dx, rr, ny, 1e-2f, 2e-3);
        fd_check(conv_f, &k, k.w, nw, dw, rr, ny, 1e-2f, 2e-3);
        fd_check(conv_f, &k, k.b, d->cout, db, rr, ny, 1e-2f, 2e-3);
        free(k.x), free(k.w), free(k.b), free(rr), free(dx), free(dw), free(db), free(sc);
    }
}

struct dense_ctx {
    int n, in, out;
    float *x, *w, *b;
};

static void dense_f(void *c, float *y)
{
    struct dense_ctx *k = c;
    qd_dense_fwd_f32_ref(k->n, k->in, k->out, k->x, k->w, k->b, y);
}

static void dense_fast_ref_and_fd(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 4);
    int dims[][3] = {{1, 1, 1}, {3, 7, 5}, {17, 33, 10}, {64, 128, 10}};
    for (int t = 0; t < 4; t++) {
        struct dense_ctx k = {dims[t][0], dims[t][1], dims[t][2]};
        size_t nx = (size_t)k.n * k.in, nw = (size_t)k.in * k.out, ny = (size_t)k.n * k.out;
        k.x = rand_buf(&r, nx, 1), k.w = rand_buf(&r, nw, 1), k.b = rand_buf(&r, k.out, 1);
        float *y0 = calloc(ny, 4), *y1 = calloc(ny, 4), *dy = rand_buf(&r, ny, 1);
        qd_dense_fwd_f32_ref(k.n, k.in, k.out, k.x, k.w, k.b, y0);
        qd_dense_fwd_f32(k.n, k.in, k.out, k.x, k.w, k.b, y1);
        assert_close(y1, y0, ny, 1e-4, 1e-4);
        float *dx0 = calloc(nx, 4), *dx1 = calloc(nx, 4), *dw0 = calloc(nw, 4),
              *dw1 = calloc(nw, 4), *db0 = calloc(k.out, 4), *db1 = calloc(k.out, 4);
        qd_dense_bwd_f32_ref(k.n, k.in, k.out, k.x, k.w, dy, dx0, dw0, db0);
        qd_dense_bwd_f32(k.n, k.in, k.out, k.x, k.w, dy, dx1, dw1, db1);
        assert_close(dx1, dx0, nx, 1e-4, 1e-4);
        assert_close(dw1, dw0, nw, 1e-4, 1e-4);
        assert_close(db1, db0, k.out, 1e-4, 1e-4);
        fd_check(dense_f, &k, k.x, nx, dx0, dy, ny, 1e-2f, 2e-3);
        fd_check(dense_f, &k, k.w, nw, dw0, dy, ny, 1e-2f, 2e-3);
        fd_check(dense_f, &k, k.b, k.out, db0, dy, ny, 1e-2f, 2e-3);
        free(k.x), free(k.w), free(k.b), free(y0), free(y1), free(dy), free(dx0), free(dx1),
            free(dw0), free(dw1), free(db0), free(db1);
    }
}

struct bn_ctx {
    int n, c, hw;
    float *x, *g, *b, mean[16], inv[16];
};

static void bn_f(void *p, float *y)
{
    struct bn_ctx *k = p;
    float m[16], iv[16];
    qd_bn_fwd_train_f32(k->n, k->c, k->hw, k->x, k->g, k->b, 1e-5f, y, m, iv);
}

static void bn_bwd_finite_differences(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 5);
    struct bn_ctx k = {3, 4, 5};
    size_t nx = (size_t)k.n * k.c * k.hw;
    k.x = rand_buf(&r, nx, 2), k.g = rand_buf(&r, k.c, 1), k.b = rand_buf(&r, k.c, 1);
    float *y = calloc(nx, 4), *rr = rand_buf(&r, nx, 1), *dx = calloc(nx, 4), dg[4], db[4];
    qd_bn_fwd_train_f32(k.n, k.c, k.hw, k.x, k.g, k.b, 1e-5f, y, k.mean, k.inv);
    qd_bn_bwd_f32(k.n, k.c, k.hw, k.x, rr, k.g, k.mean, k.inv, dx, dg, db);
    fd_check(bn_f, &k, k.x, nx, dx, rr, nx, 1e-2f, 5e-3);
    fd_check(bn_f, &k, k.g, k.c, dg, rr, nx, 1e-2f, 5e-3);
    fd_check(bn_f, &k, k.b, k.c, db, rr, nx, 1e-2f, 5e-3);
    /* eval mode with running stats equal to the batch's reproduces the training output */
    float rm[4], rv[4], *y2 = calloc(nx, 4);
    for (int c = 0; c < k.c; c++) {
        rm[c] = k.mean[c];
        rv[c] = 1.0f / (k.inv[c] * k.inv[c]) - 1e-5f;
    }
    qd_bn_fwd_eval_f32(k.n, k.c, k.hw, k.x, k.g, k.b, rm, rv, 1e-5f, y2);
    assert_close(y2, y, nx, 1e-4, 1e-4);
    free(k.x), free(k.g), free(k.b), free(y), free(y2), free(rr), free(dx);
}

struct pool_ctx {
    int planes, h, w, k, s, max, cap;
    float *x;
    int32_t idx[4096];
};

static void pool_f(void *p, float *y)
{
    struct pool_ctx *k = p;
    if (k->max == 1)
        qd_maxpool_fwd_f32(k->planes, k->h, k->w, k->k, k->s, k->x, y, k->idx);
    else if (k->max == 0)
        qd_avgpool_fwd_f32(k->planes, k->h, k->w, k->k, k->s, k->x, y);
    else
        qd_relu_fwd_f32((size_t)k->planes * k->h * k->w, k->x, y, (float)k->cap);
}

static void pool_and_relu_finite_differences(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 6);
    int cfg[][4] = {{2, 2, 2}, {3, 3, 2}, {2, 2, 1}, {3, 3, 3}}; /* k, s (h=w=7 or 8) */
    for (int t = 0; t < 4; t++)
        for (int max = -1; max <= 1; max++) {
            struct pool_ctx k = {3, 7 + (t & 1), 8, cfg[t][0], cfg[t][1], max, t % 2 ? 6 : 0};
            size_t nx = (size_t)k.planes * k.h * k.w;
            int oh = (k.h - k.k) / k.s + 1, ow = (k.w - k.k) / k.s + 1;
            size_t ny = max >= 0 ? (size_t)k.planes * oh * ow : nx;
            k.x = malloc(nx * 4);
            /* distinct values away from ties and kinks, so the derivative exists */
            for (size_t i = 0; i < nx; i++)
                k.x[i] = (float)((i * 37) % nx) * 0.37f - 0.2f * nx + 0.05f;
            if (max < 0)
                for (size_t i = 0; i < nx; i++)
                    k.x[i] = 0.031f * k.x[i];
            float *y = calloc(ny, 4), *rr = rand_buf(&r, ny, 1), *dx = calloc(nx, 4);
            pool_f(&k, y);
            if (max == 1)
                qd_maxpool_bwd_f32(k.planes, k.h, k.w, k.k, k.s, rr, k.idx, dx);
            else if (max == 0)
                qd_avgpool_bwd_f32(k.planes, k.h, k.w, k.k, k.s, rr, dx);
            else
                qd_relu_bwd_f32(nx, y, rr, dx, (float)k.cap);
            fd_check(pool_f, &k, k.x, nx, dx, rr, ny, 1e-3f, 5e-3);
            free(k.x), free(y), free(rr), free(dx);
        }
}

struct xent_ctx {
    int n, k;
    float *z;
    uint8_t lab[8];
};

static void xent_f(void *p, float *y)
{
    struct xent_ctx *c = p;
    y[0] = qd_softmax_xent_f32(c->n, c->k, c->z, c->lab, NULL, NULL);
}

static void softmax_xent_gradient_and_accuracy(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 7);
    struct xent_ctx c = {5, 7, NULL, {0, 3, 6, 2, 2}};
    c.z = rand_buf(&r, 35, 3);
    float dz[35], one = 1.0f;
    int ok;
    qd_softmax_xent_f32(c.n, c.k, c.z, c.lab, dz, &ok);
    fd_check(xent_f, &c, c.z, 35, dz, &one, 1, 1e-3f, 5e-3);
    /* correct count equals argmax agreement */
    int want = 0;
    for (int i = 0; i < c.n; i++) {
        int am = 0;
        for (int j = 1; j < c.k; j++)
            if (c.z[i * c.k + j] > c.z[i * c.k + am])
                am = j;
        want += am == c.lab[i];
    }
    assert_int_equal(ok, want);
    /* huge logits stay finite */
    for (int i = 0; i < 35; i++)
        c.z[i] *= 1e4f;
    float l = qd_softmax_xent_f32(c.n, c.k, c.z, c.lab, dz, NULL);
    assert_true(isfinite(l));
    free(c.z);
}

struct kd_ctx {
    int n, k;
    float *z, *u, t;
};

static void kd_f(void *p, float *y)
{
    struct kd_ctx *c = p;
    y[0] = qd_softmax_kd_f32(c->n, c->k, c->z, c->u, c->t, NULL);
}

/* The distillation loss: its gradient against finite differences at two temperatures, zero
 * (loss and gradient) when the student's logits equal the teacher's, positive otherwise, and the
 * same as cross-entropy when the teacher is one-hot in the limit (large logit gaps). */
static void softmax_kd_gradient_and_limits(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 11);
    struct kd_ctx c = {4, 6, NULL, NULL, 1};
    c.z = rand_buf(&r, 24, 3);
    c.u = rand_buf(&r, 24, 3);
    float dz[24], one = 1.0f;
    for (int t = 1; t <= 2; t++) {
        c.t = (float)t;
        float l = qd_softmax_kd_f32(c.n, c.k, c.z, c.u, c.t, dz);
        assert_true(l > 0);
        fd_check(kd_f, &c, c.z, 24, dz, &one, 1, 1e-3f, 5e-3);
        float l2 = qd_softmax_kd_f32(c.n, c.k, c.u, c.u, c.t, dz);
        assert_true(fabsf(l2) < 1e-6f);
        for (int i = 0; i < 24; i++)
            assert_true(fabsf(dz[i]) < 1e-7f);
    }
    /* teacher logits 0 or 100 (one-hot at temperature 1): KL = cross-entropy on its argmax */
    uint8_t lab[4] = {1, 5, 0, 3};
    float hard[24] = {0}, dx[24];
    for (int i = 0; i < 4; i++)
        hard[i * 6 + lab[i]] = 100;
    float kd = qd_softmax_kd_f32(4, 6, c.z, hard, 1, dz);
    float xe = qd_softmax_xent_f32(4, 6, c.z, lab, dx, NULL);
    assert_float_equal(kd, xe, 1e-4);
    assert_close(dz, dx, 24, 1e-5, 1e-5);
    free(c.z), free(c.u);
}

int main(void)
{
    qd_kernels_init(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv_fwd_matches_ref),
        cmocka_unit_test(conv_bwd_matches_ref),
        cmocka_unit_test(conv_bwd_finite_differences),
        cmocka_unit_test(dense_fast_ref_and_fd),
        cmocka_unit_test(bn_bwd_finite_differences),
        cmocka_unit_test(pool_and_relu_finite_differences),
        cmocka_unit_test(softmax_xent_gradient_and_accuracy),
        cmocka_unit_test(softmax_kd_gradient_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
