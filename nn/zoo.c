/* Spec writers for the five families. Each writes into a growing string buffer; names of the
 * layers follow the paper's blocks (s1b2_conv1 = stage 1, block 2, first conv). */
#include "nn/zoo.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *const qd_zoo_families[] = {"custom",       "resnet_v1",    "resnet_v2",
                                       "mobilenet_v1", "mobilenet_v2", NULL};

struct sb {
    char *s;
    size_t len, cap;
    int oom;
};

__attribute__((format(printf, 2, 3))) static void put(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
}

static int make_div(float v, int d)
{
    int r = (int)(v + d / 2.0f) / d * d;
    if (r < d)
        r = d;
    if (r < 0.9f * v)
        r += d;
    return r;
}

static void custom(struct sb *b, int nclass)
{
    put(b, "conv name=c1 out=32 k=3 pad=1\nbn\nrelu\nmaxpool k=2\n"
           "conv name=c2 out=64 k=3 pad=1\nbn\nrelu\n"
           "conv name=c3 out=64 k=3 pad=1\nbn\nrelu\nmaxpool k=2\n"
           "conv name=c4 out=128 k=3 pad=1\nbn\nrelu\nmaxpool k=2\n"
           "flatten\ndense name=fc out=%d\n",
        nclass);
}

/* CIFAR ResNet (He et al. 2016): stem conv 16, three stages of (depth-2)/6 blocks at 16, 32, 64
 * channels, stride 2 entering stages 2 and 3 with a 1x1 projection shortcut. v1 blocks are
 * conv-bn-relu-conv-bn + shortcut, relu; v2 blocks are pre-activation bn-relu-conv-bn-relu-conv. */
static void resnet(struct sb *b, int nclass, int depth, int v2)
{
    int nb = (depth - 2) / 6, cin = 16;
    char prev[64] = "stem";
    put(b, "conv name=stem out=16 k=3 pad=1\n");
    if (!v2) {
        put(b, "bn\nrelu name=stem_act\n");
        strcpy(prev, "stem_act");
    }
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < nb; i++) {
            int c = 16 << s, st = (s > 0 && i == 0) ? 2 : 1, proj = st != 1 || c != cin;
            char p[32], sc[64];
            snprintf(p, sizeof p, "s%db%d", s + 1, i + 1);
            if (!v2) {
                put(b, "conv name=%s_c1 in=%s out=%d k=3 stride=%d pad=1\nbn\nrelu\n", p, prev, c,
                    st);
                put(b, "conv name=%s_c2 out=%d k=3 pad=1\nbn name=%s_bn2\n", p, c, p);
                if (proj) {
                    put(b, "conv name=%s_sc in=%s out=%d k=1 stride=%d\nbn name=%s_scbn\n", p, prev,
                        c, st, p);
                    snprintf(sc, sizeof sc, "%s_scbn", p);
                } else {
                    snprintf(sc, sizeof sc, "%s", prev);
                }
                put(b, "add in=%s_bn2,%s\nrelu name=%s_out\n", p, sc, p);
            } else {
                put(b, "bn name=%s_bn1 in=%s\nrelu name=%s_pre\n", p, prev, p);
                put(b, "conv name=%s_c1 out=%d k=3 stride=%d pad=1\nbn\nrelu\n", p, c, st);
                put(b, "conv name=%s_c2 out=%d k=3 pad=1\n", p, c);
                if (proj) {
                    put(b, "conv name=%s_sc in=%s_pre out=%d k=1 stride=%d\n", p, p, c, st);
                    snprintf(sc, sizeof sc, "%s_sc", p);
                } else {
                    snprintf(sc, sizeof sc, "%s", prev);
                }
                put(b, "add name=%s_out in=%s_c2,%s\n", p, p, sc);
            }
            snprintf(prev, sizeof prev, "%s_out", p);
            cin = c;
        }
    if (v2)
        put(b, "bn\nrelu\n");
    put(b, "gap\ndense name=fc out=%d\n", nclass);
}

/* MobileNetV1 (Howard et al. 2017): 3x3 stem, then 13 depthwise-separable blocks. */
static void mobilenet_v1(struct sb *b, int nclass, float a)
{
    static const int cfg[][2] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1},
                                 {512, 2}, {512, 1}, {512, 1}, {512, 1}, {512, 1},
                                 {512, 1}, {1024, 2}, {1024, 1}};
    int cin = make_div(32 * a, 8);
    put(b, "conv name=stem out=%d k=3 pad=1\nbn\nrelu\n", cin);
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        int c = make_div(cfg[i][0] * a, 8);
        put(b, "conv name=b%zu_dw out=%d groups=%d k=3 stride=%d pad=1\nbn\nrelu\n", i + 1, cin, cin,
            cfg[i][1]);
        put(b, "conv name=b%zu_pw out=%d k=1\nbn\nrelu\n", i + 1, c);
        cin = c;
    }
    put(b, "gap\ndense name=fc out=%d\n", nclass);
}

/* MobileNetV2 (Sandler et al. 2018), CIFAR variant: stem and the 24-channel stage at stride 1.
 * Inverted residual: 1x1 expand (t), 3x3 depthwise, linear 1x1 project, add when shapes match. */
static void mobilenet_v2(struct sb *b, int nclass, float a)
{
    static const int cfg[][4] = {{1, 16, 1, 1}, {6, 24, 2, 1},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                 {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int cin = make_div(32 * a, 8), blk = 0;
    char prev[64] = "stem_act";
    put(b, "conv name=stem out=%d k=3 pad=1\nbn\nrelu6 name=stem_act\n", cin);
    for (size_t s = 0; s < sizeof cfg / sizeof cfg[0]; s++)
        for (int i = 0; i < cfg[s][2]; i++) {
            int t = cfg[s][0], c = make_div(cfg[s][1] * a, 8), st = i == 0 ? cfg[s][3] : 1;
            int hid = cin * t;
            blk++;
            if (t != 1)
                put(b, "conv name=b%d_exp in=%s out=%d k=1\nbn\nrelu6\n", blk, prev, hid);
            put(b, "conv name=b%d_dw%s%s out=%d groups=%d k=3 stride=%d pad=1\nbn\nrelu6\n", blk,
                t != 1 ? "" : " in=", t != 1 ? "" : prev, hid, hid, st);
            put(b, "conv name=b%d_proj out=%d k=1\nbn name=b%d_bn\n", blk, c, blk);
            if (st == 1 && c == cin) {
                put(b, "add name=b%d_out in=b%d_bn,%s\n", blk, blk, prev);
                snprintf(prev, sizeof prev, "b%d_out", blk);
            } else {
                snprintf(prev, sizeof prev, "b%d_bn", blk);
            }
            cin = c;
        }
    int last = a > 1.0f ? make_div(1280 * a, 8) : 1280;
    put(b, "conv name=head out=%d k=1\nbn\nrelu6\ngap\ndense name=fc out=%d\n", last, nclass);
}

qd_err qd_zoo_spec(const char *family, int c, int h, int w, int nclass,
                   const struct qd_zoo_opts *o, char **spec)
{
    int depth = o && o->depth ? o->depth : 20;
    float width = o && o->width > 0 ? o->width : 1.0f;
    if (c < 1 || h < 8 || w < 8 || nclass < 2)
        return qd_seterr(QD_EINVAL, "zoo: input %dx%dx%d / %d classes is too small", c, h, w,
                         nclass);
    struct sb b = {0};
    put(&b, "model %s\ninput c=%d h=%d w=%d\n", family, c, h, w);
    if (!strcmp(family, "custom")) {
        custom(&b, nclass);
    } else if (!strcmp(family, "resnet_v1") || !strcmp(family, "resnet_v2")) {
        if (depth < 8 || (depth - 2) % 6) {
            free(b.s);
            return qd_seterr(QD_EINVAL, "zoo: resnet depth %d is not 6n+2 (8, 14, 20, ...)", depth);
        }
        resnet(&b, nclass, depth, family[8] == '2');
    } else if (!strcmp(family, "mobilenet_v1") || !strcmp(family, "mobilenet_v2")) {
        if (width < 0.1f || width > 4.0f) {
            free(b.s);
            return qd_seterr(QD_EINVAL, "zoo: width multiplier %g outside [0.1, 4]", width);
        }
        if (family[11] == '1')
            mobilenet_v1(&b, nclass, width);
        else
            mobilenet_v2(&b, nclass, width);
    } else {
        free(b.s);
        return qd_seterr(QD_EINVAL,
                         "zoo: unknown model '%s' (custom, resnet_v1, resnet_v2, mobilenet_v1, "
                         "mobilenet_v2, or a spec file)",
                         family);
    }
    if (b.oom) {
        free(b.s);
        return qd_seterr(QD_ENOMEM, "zoo: out of memory");
    }
    *spec = b.s;
    return QD_OK;
}
