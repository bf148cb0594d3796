/* float32 NCHW training kernels: forward and backward for every layer of the model zoo.
 *
 * Usage:
 *     struct qd_conv_desc d;
 *     qd_conv_desc_init(&d, n, cin, h, w, cout, k, stride, pad, groups);
 *     float *scratch = malloc(qd_conv2d_scratch_size(&d) * sizeof(float));  // once, reused
 *     qd_conv2d_fwd_f32(&d, x, w, b, y, scratch);
 *
 * Every op with a fast path has a plain loop twin named *_ref, kept as the reference the fast one
 * is tested against (tests/test_kernels.c). Kernels never allocate: scratch comes from the caller,
 * sized by the *_scratch_size() functions for the number of OpenMP threads in use. Backward
 * kernels overwrite (never accumulate into) their outputs; a NULL dx means "not needed".
 * Threading: OpenMP loops over images or channels; OpenBLAS is called single-threaded from inside
 * them (qd_kernels_init sets that), so the two thread pools never stack. */
#ifndef QD_NN_KERNELS_H
#define QD_NN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Pins OpenBLAS to one thread and OpenMP to `threads` (0: leave OpenMP's default). */
void qd_kernels_init(int threads);
int qd_kernels_threads(void);

struct qd_conv_desc {
    int n, cin, h, w;       /* input (N, C_in, H, W) */
    int cout, kh, kw;       /* weight (C_out, C_in/groups, KH, KW) */
    int stride, pad, groups;
    int oh, ow;             /* output (N, C_out, OH, OW) */
};

void qd_conv_desc_init(struct qd_conv_desc *d, int n, int cin, int h, int w, int cout, int k,
                       int stride, int pad, int groups);
/* Floats of scratch qd_conv2d_{fwd,bwd}_f32 need (all threads together). */
size_t qd_conv2d_scratch_size(const struct qd_conv_desc *d);

void qd_conv2d_fwd_f32_ref(const struct qd_conv_desc *d, const float *x, const float *w,
                           const float *b, float *y);
void qd_conv2d_bwd_f32_ref(const struct qd_conv_desc *d, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db);
/* im2col + sgemm; depthwise (groups == cin == cout) takes a direct kernel. b/db may be NULL. */
void qd_conv2d_fwd_f32(const struct qd_conv_desc *d, const float *x, const float *w,
                       const float *b, float *y, float *scratch);
void qd_conv2d_bwd_f32(const struct qd_conv_desc *d, const float *x, const float *w,
                       const float *dy, float *dx, float *dw, float *db, float *scratch);

/* Dense: x (N, IN), w (OUT, IN), b (OUT), y (N, OUT). */
void qd_dense_fwd_f32_ref(int n, int in, int out, const float *x, const float *w, const float *b,
                          float *y);
void qd_dense_bwd_f32_ref(int n, int in, int out, const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db);
void qd_dense_fwd_f32(int n, int in, int out, const float *x, const float *w, const float *b,
                      float *y);
void qd_dense_bwd_f32(int n, int in, int out, const float *x, const float *w, const float *dy,
                      float *dx, float *dw, float *db);

/* BatchNorm over (N, C, HW). Training: batch statistics, saved mean/invstd (C) for backward. */
void qd_bn_fwd_train_f32(int n, int c, int hw, const float *x, const float *gamma,
                         const float *beta, float eps, float *y, float *mean, float *invstd);
void qd_bn_fwd_eval_f32(int n, int c, int hw, const float *x, const float *gamma, const float *beta,
                        const float *rmean, const float *rvar, float eps, float *y);
void qd_bn_bwd_f32(int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                   const float *mean, const float *invstd, float *dx, float *dgamma, float *dbeta);

/* Elementwise over `len` floats. relu6 clamps to [0, 6]. Backward uses the forward output y. */
void qd_relu_fwd_f32(size_t len, const float *x, float *y, float cap);
void qd_relu_bwd_f32(size_t len, const float *y, const float *dy, float *dx, float cap);
void qd_add_fwd_f32(size_t len, const float *a, const float *b, float *y);

/* Pooling over (N*C planes of H x W), window k, stride s, no padding; output OH x OW.
 * Max pooling records the argmax (plane offset) of every output in idx. */
void qd_maxpool_fwd_f32(int planes, int h, int w, int k, int s, const float *x, float *y,
                        int32_t *idx);
void qd_maxpool_bwd_f32(int planes, int h, int w, int k, int s, const float *dy,
                        const int32_t *idx, float *dx);
void qd_avgpool_fwd_f32(int planes, int h, int w, int k, int s, const float *x, float *y);
void qd_avgpool_bwd_f32(int planes, int h, int w, int k, int s, const float *dy, float *dx);

/* Mean softmax cross-entropy over N rows of K logits; writes dlogits (may be NULL) = d(mean)/d
 * logits and counts rows whose argmax equals the label into *correct (may be NULL). */
float qd_softmax_xent_f32(int n, int k, const float *logits, const uint8_t *labels,
                          float *dlogits, int *correct);

/* Mean distillation loss over N rows of K logits against a teacher's logits at temperature t:
 * t^2 KL(softmax(teacher / t) || softmax(logits / t)); writes dlogits (may be NULL) = d(mean)/d
 * logits = t (softmax(logits / t) - softmax(teacher / t)) / N. */
float qd_softmax_kd_f32(int n, int k, const float *logits, const float *teacher, float t,
                        float *dlogits);

#endif
