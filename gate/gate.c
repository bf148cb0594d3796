/* The gating network (see gate.h): the MLP, its file, the context vector, and decisions. */
#include "gate/gate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/file.h"
#include "core/rng.h"

static const int WB[4] = {2, 4, 8, 16};

static size_t count(int L, int nin, int h)
{
    return (size_t)h * nin + h + (size_t)h * h + h + (size_t)L * QD_GATE_OUT * h +
           (size_t)L * QD_GATE_OUT;
}

qd_err qd_gate_init(struct qd_gate *g, int L, int hidden, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    if (L < 1 || L > QD_POLICY_MAX || hidden < 1 || hidden > 4096)
        return qd_seterr(QD_EINVAL, "gate: %d layers, %d hidden is out of range", L, hidden);
    g->L = L, g->nin = QD_GATE_IN, g->hidden = hidden;
    g->nparam = count(L, g->nin, hidden);
    if (!(g->param = calloc(g->nparam, sizeof *g->param)))
        return qd_seterr(QD_ENOMEM, "gate: out of memory");
    struct qd_rng r;
    qd_rng_seed(&r, seed);
    float *p = g->param;
    int fan[3] = {g->nin, hidden, hidden}, rows[3] = {hidden, hidden, L * QD_GATE_OUT};
    for (int k = 0; k < 3; k++) {
        float s = sqrtf(2.0f / fan[k]) * (k == 2 ? 0.1f : 1.0f);
        for (int i = 0; i < rows[k] * fan[k]; i++)
            *p++ = s * (float)qd_rng_normal(&r);
        p += rows[k]; /* biases 0 */
    }
    return QD_OK;
}

void qd_gate_fini(struct qd_gate *g)
{
    free(g->param);
    memset(g, 0, sizeof *g);
}

static const char MAGIC[8] = "QDGATE01";

struct hdr {
    char magic[8];
    uint32_t L, nin, hidden, reserved;
    char backbone[40], family[32], data[32], ckpt[256];
};

qd_err qd_gate_save(const struct qd_gate *g, const char *path)
{
    struct hdr h = {{0}, (uint32_t)g->L, (uint32_t)g->nin, (uint32_t)g->hidden, 0, {0}, {0}, {0},
                    {0}};
    memcpy(h.magic, MAGIC, 8);
    memcpy(h.backbone, g->backbone, sizeof g->backbone);
    memcpy(h.family, g->family, sizeof g->family);
    memcpy(h.data, g->data, sizeof g->data);
    memcpy(h.ckpt, g->ckpt, sizeof g->ckpt);
    size_t n = sizeof h + g->nparam * sizeof(float) + 4;
    uint8_t *b = malloc(n);
    if (!b)
        return qd_seterr(QD_ENOMEM, "gate: out of memory");
    memcpy(b, &h, sizeof h);
    memcpy(b + sizeof h, g->param, g->nparam * sizeof(float));
    uint32_t crc = (uint32_t)crc32(0, b, (uInt)(n - 4));
    memcpy(b + n - 4, &crc, 4);
    qd_err e = qd_file_write_atomic(path, b, n);
    free(b);
    return e;
}

qd_err qd_gate_load(const char *path, struct qd_gate *g)
{
    memset(g, 0, sizeof *g);
    uint8_t *b;
    size_t n;
    QD_TRY(qd_file_read(path, &b, &n));
    struct hdr h;
    qd_err e = QD_OK;
    if (n < sizeof h + 4)
        e = qd_seterr(QD_EFORMAT, "%s: %zu bytes is too short for a gate", path, n);
    else {
        memcpy(&h, b, sizeof h);
        uint32_t crc;
        memcpy(&crc, b + n - 4, 4);
        if (memcmp(h.magic, MAGIC, 8))
            e = qd_seterr(QD_EFORMAT, "%s: not a gate file (bad magic)", path);
        else if (h.nin != QD_GATE_IN || h.L < 1 || h.L > QD_POLICY_MAX || h.hidden < 1 ||
                 h.hidden > 4096)
            e = qd_seterr(QD_EFORMAT, "%s: bad dimensions %u/%u/%u", path, h.L, h.nin, h.hidden);
        else if (n != sizeof h + count((int)h.L, (int)h.nin, (int)h.hidden) * sizeof(float) + 4)
            e = qd_seterr(QD_EFORMAT, "%s: size %zu does not match its dimensions", path, n);
        else if (crc != (uint32_t)crc32(0, b, (uInt)(n - 4)))
            e = qd_seterr(QD_ECHECKSUM, "%s: CRC mismatch", path);
    }
    if (!e)
        e = qd_gate_init(g, (int)h.L, (int)h.hidden, 0);
    if (!e) {
        memcpy(g->param, b + sizeof h, g->nparam * sizeof(float));
        memcpy(g->backbone, h.backbone, sizeof g->backbone - 1);
        memcpy(g->family, h.family, sizeof g->family - 1);
        memcpy(g->data, h.data, sizeof g->data - 1);
        memcpy(g->ckpt, h.ckpt, sizeof g->ckpt - 1);
    }
    free(b);
    return e;
}

static float ratio(double budget, double ref)
{
    if (!isfinite(budget) || !(ref > 0))
        return 2.0f;
    double r = log2(fmax(budget, 1e-30) / ref);
    return (float)(r < -4 ? -4 : r > 2 ? 2 : r);
}

void qd_gate_context(const struct qd_decide_tables *t, const double *budget, double battery,
                     float *c)
{
    c[0] = ratio(budget[QD_BUDGET_FLASH], t->int8.flash);
    c[1] = ratio(budget[QD_BUDGET_RAM], t->int8.ram);
    c[2] = ratio(budget[QD_BUDGET_LATENCY], t->int8.latency_ms);
    c[3] = ratio(budget[QD_BUDGET_ENERGY], t->int8.energy_mj);
    c[4] = isnan(battery) ? 1.0f : (float)battery;
    for (int k = 0; k < 4; k++)
        c[5 + k] = t->dev.wbits_ok[WB[k]] ? 1.0f : 0.0f;
    c[9] = t->dev.abits_ok[8] ? 1.0f : 0.0f;
    c[10] = t->dev.abits_ok[16] ? 1.0f : 0.0f;
}

void qd_gate_forward(const struct qd_gate *g, const float *c, float *work, float *logits)
{
    int H = g->hidden, I = g->nin, O = g->L * QD_GATE_OUT;
    const float *W1 = g->param, *b1 = W1 + H * I, *W2 = b1 + H, *b2 = W2 + H * H, *W3 = b2 + H,
                *b3 = W3 + (size_t)O * H;
    float *h1 = work, *h2 = work + H;
    for (int i = 0; i < H; i++) {
        float s = b1[i];
        for (int k = 0; k < I; k++)
            s += W1[i * I + k] * c[k];
        h1[i] = s > 0 ? s : 0;
    }
    for (int i = 0; i < H; i++) {
        float s = b2[i];
        for (int k = 0; k < H; k++)
            s += W2[i * H + k] * h1[k];
        h2[i] = s > 0 ? s : 0;
    }
    for (int o = 0; o < O; o++) {
        float s = b3[o];
        for (int k = 0; k < H; k++)
            s += W3[(size_t)o * H + k] * h2[k];
        logits[o] = s;
    }
}

void qd_gate_backward(const struct qd_gate *g, const float *c, const float *work,
                      const float *dlogits, float *grad)
{
    int H = g->hidden, I = g->nin, O = g->L * QD_GATE_OUT;
    const float *W1 = g->param, *b1 = W1 + H * I, *W2 = b1 + H, *b2 = W2 + H * H, *W3 = b2 + H;
    (void)W1;
    float *gW1 = grad, *gb1 = gW1 + H * I, *gW2 = gb1 + H, *gb2 = gW2 + H * H, *gW3 = gb2 + H,
          *gb3 = gW3 + (size_t)O * H;
    const float *h1 = work, *h2 = work + H;
    float dh2[4096], dh1[4096];
    for (int k = 0; k < H; k++)
        dh2[k] = 0;
    for (int o = 0; o < O; o++) {
        float d = dlogits[o];
        gb3[o] += d;
        for (int k = 0; k < H; k++) {
            gW3[(size_t)o * H + k] += d * h2[k];
            dh2[k] += d * W3[(size_t)o * H + k];
        }
    }
    for (int i = 0; i < H; i++)
        dh2[i] = h2[i] > 0 ? dh2[i] : 0;
    for (int k = 0; k < H; k++)
        dh1[k] = 0;
    for (int i = 0; i < H; i++) {
        gb2[i] += dh2[i];
        for (int k = 0; k < H; k++) {
            gW2[i * H + k] += dh2[i] * h1[k];
            dh1[k] += dh2[i] * W2[i * H + k];
        }
    }
    for (int i = 0; i < H; i++) {
        float d = h1[i] > 0 ? dh1[i] : 0;
        gb1[i] += d;
        for (int k = 0; k < I; k++)
            gW1[i * I + k] += d * c[k];
    }
}

void qd_gate_objective(const struct qd_gate *g, const struct qd_decide_tables *t,
                       const float *logits, double *objw, double *obja)
{
    obja[0] = obja[1] = 0;
    for (int l = 0; l < g->L; l++) {
        const float *z = logits + l * QD_GATE_OUT;
        double mx = -INFINITY, s = 0;
        for (int k = 0; k < 4; k++)
            if (t->dev.wbits_ok[WB[k]])
                mx = fmax(mx, z[k]);
        for (int k = 0; k < 4; k++)
            if (t->dev.wbits_ok[WB[k]])
                s += exp(z[k] - mx);
        for (int b = 0; b <= 16; b++)
            objw[l * 17 + b] = INFINITY;
        for (int k = 0; k < 4; k++)
            if (t->dev.wbits_ok[WB[k]])
                objw[l * 17 + WB[k]] = -(z[k] - mx - log(s));
        double a8 = t->dev.abits_ok[8] ? z[4] : -INFINITY,
               a16 = t->dev.abits_ok[16] ? z[5] : -INFINITY;
        double am = fmax(a8, a16), as = exp(a8 - am) + exp(a16 - am);
        obja[0] += -(a8 - am - log(as));
        obja[1] += -(a16 - am - log(as));
    }
}

qd_err qd_gate_decide(const struct qd_gate *g, const struct qd_decider *d,
                      const struct qd_decide_tables *t, const double *budget, double battery,
                      struct qd_decision *r)
{
    return qd_gate_decide_limited(g, d, t, budget, battery, NULL, r);
}

qd_err qd_gate_decide_limited(const struct qd_gate *g, const struct qd_decider *d,
                              const struct qd_decide_tables *t, const double *budget,
                              double battery, const struct qd_decide_limits *lim,
                              struct qd_decision *r)
{
    if (g->L != d->g.nq)
        return qd_seterr(QD_EINVAL, "the gate has %d layers, the backbone %d", g->L, d->g.nq);
    float c[QD_GATE_IN], work[2 * 4096], logits[QD_POLICY_MAX * QD_GATE_OUT];
    double objw[QD_POLICY_MAX * 17], obja[2];
    qd_gate_context(t, budget, battery, c);
    qd_gate_forward(g, c, work, logits);
    qd_gate_objective(g, t, logits, objw, obja);
    return qd_decide_limited(d, t, budget, objw, obja, lim, r);
}
