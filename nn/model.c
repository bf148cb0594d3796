/* Spec parser, shape inference, parameter layout and the batch executor.
 * Invariants: nodes are in topological order (a layer may only read earlier layers); node 0 is
 * the input; the last node is a dense layer of nclass outputs; every offset lies inside its
 * block. The executor holds every activation and gradient for a batch of `cap` samples in one
 * allocation made at init; forward/backward never allocate. */
#include "nn/model.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"
#include "nn/kernels.h"

static const char *const op_names[] = {
#define QD_OP_STR(name, str) str,
    QD_OP_MAP(QD_OP_STR)
#undef QD_OP_STR
};

const char *qd_op_name(enum qd_op op)
{
    return (unsigned)op < QD_OP_COUNT ? op_names[op] : "?";
}

/* ---------------------------------------------------------------- parsing */

/* Caps, so that every shape and count the parser derives fits its type (ints for shapes,
 * size_t offsets) and a spec cannot ask for more than a host could hold: a layer's output of
 * one sample at most 2^26 elements (the .qm format's cap, runtime/qm_format.h), the model at
 * most 2^28 parameters (2 GiB with their gradients). */
#define MAX_ELEMS ((int64_t)1 << 26)
#define MAX_PARAMS ((size_t)1 << 28)

static int find_node(const struct qd_model *m, int upto, const char *name)
{
    for (int i = upto - 1; i >= 0; i--)
        if (!strcmp(m->nodes[i].name, name))
            return i;
    return -1;
}

static qd_err parse_int(const char *v, int lo, int hi, int line, const char *key, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return qd_seterr(QD_ESPEC, "spec line %d: %s=%s is not an integer in [%d, %d]", line, key,
                         v, lo, hi);
    *out = (int)x;
    return QD_OK;
}

static qd_err parse_line(struct qd_model *m, char *s, int line, int *in_c, int *in_h, int *in_w)
{
    char *save = NULL, *tok = strtok_r(s, " \t", &save);
    if (!strcmp(tok, "model")) {
        char *f = strtok_r(NULL, " \t", &save);
        if (!f || strlen(f) >= QD_NAME_MAX)
            return qd_seterr(QD_ESPEC, "spec line %d: model needs a name (< %d chars)", line,
                             QD_NAME_MAX);
        strcpy(m->family, f);
        return QD_OK;
    }
    int op = -1;
    for (int i = 0; i < QD_OP_COUNT; i++)
        if (!strcmp(tok, op_names[i]))
            op = i;
    if (op < 0)
        return qd_seterr(QD_ESPEC, "spec line %d: unknown layer '%s'", line, tok);
    if ((op == QD_OP_INPUT) != (m->nnodes == 0))
        return qd_seterr(QD_ESPEC, "spec line %d: 'input' must be the first layer, once", line);
    if (m->nnodes >= QD_MAX_NODES)
        return qd_seterr(QD_ESPEC, "spec line %d: more than %d layers", line, QD_MAX_NODES);
    struct qd_node *n = &m->nodes[m->nnodes];
    memset(n, 0, sizeof *n);
    n->op = (enum qd_op)op;
    n->stride = -1;
    n->groups = 1;
    n->bias = op == QD_OP_DENSE;
    n->nin = op == QD_OP_INPUT ? 0 : 1;
    n->sets = 1;
    n->line = line;
    n->in[0] = m->nnodes - 1;
    n->woff = n->boff = n->soff = QD_NONE;
    snprintf(n->name, sizeof n->name, "%s%d", op_names[op], m->nnodes);
    while ((tok = strtok_r(NULL, " \t", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return qd_seterr(QD_ESPEC, "spec line %d: expected key=value, got '%s'", line, tok);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        if (!strcmp(k, "name")) {
            if (!*v || strlen(v) >= QD_NAME_MAX || strchr(v, ','))
                return qd_seterr(QD_ESPEC, "spec line %d: bad name '%s'", line, v);
            if (find_node(m, m->nnodes, v) >= 0)
                return qd_seterr(QD_ESPEC, "spec line %d: duplicate name '%s'", line, v);
            strcpy(n->name, v);
        } else if (!strcmp(k, "in")) {
            char buf[2 * QD_NAME_MAX + 2];
            snprintf(buf, sizeof buf, "%s", v);
            n->nin = 0;
            char *s2 = NULL;
            for (char *p = strtok_r(buf, ",", &s2); p; p = strtok_r(NULL, ",", &s2)) {
                int j = find_node(m, m->nnodes, p);
                if (j < 0)
                    return qd_seterr(QD_ESPEC, "spec line %d: no earlier layer named '%s'", line,
                                     p);
                if (n->nin == 2)
                    return qd_seterr(QD_ESPEC, "spec line %d: at most two inputs", line);
                n->in[n->nin++] = j;
            }
        } else if (!strcmp(k, "out"))
            QD_TRY(parse_int(v, 1, 1 << 16, line, k, &n->out));
        else if (!strcmp(k, "k"))
            QD_TRY(parse_int(v, 1, 15, line, k, &n->k));
        else if (!strcmp(k, "stride"))
            QD_TRY(parse_int(v, 1, 15, line, k, &n->stride));
        else if (!strcmp(k, "pad"))
            QD_TRY(parse_int(v, 0, 15, line, k, &n->pad));
        else if (!strcmp(k, "groups"))
            QD_TRY(parse_int(v, 1, 1 << 16, line, k, &n->groups));
        else if (!strcmp(k, "bias"))
            QD_TRY(parse_int(v, 0, 1, line, k, &n->bias));
        else if (!strcmp(k, "sets") && op == QD_OP_BN)
            QD_TRY(parse_int(v, 1, 16, line, k, &n->sets));
        else if (!strcmp(k, "c"))
            QD_TRY(parse_int(v, 1, 64, line, k, in_c));
        else if (!strcmp(k, "h"))
            QD_TRY(parse_int(v, 1, 1024, line, k, in_h));
        else if (!strcmp(k, "w"))
            QD_TRY(parse_int(v, 1, 1024, line, k, in_w));
        else
            return qd_seterr(QD_ESPEC, "spec line %d: unknown key '%s' for %s", line, k,
                             op_names[op]);
    }
    /* shapes */
    if (op == QD_OP_ADD && n->nin != 2)
        return qd_seterr(QD_ESPEC, "spec line %d: add needs in=a,b", line);
    if (op != QD_OP_ADD && op != QD_OP_INPUT && n->nin != 1)
        return qd_seterr(QD_ESPEC, "spec line %d: %s takes one input", line, op_names[op]);
    const struct qd_node *a = op == QD_OP_INPUT ? NULL : &m->nodes[n->in[0]];
    switch (n->op) {
    case QD_OP_INPUT:
        if (!*in_c || !*in_h || !*in_w)
            return qd_seterr(QD_ESPEC, "spec line %d: input needs c=, h=, w=", line);
        n->c = *in_c, n->h = *in_h, n->w = *in_w;
        break;
    case QD_OP_CONV:
        if (!n->out || !n->k)
            return qd_seterr(QD_ESPEC, "spec line %d: conv needs out= and k=", line);
        if (n->stride < 0)
            n->stride = 1;
        if (a->c % n->groups || n->out % n->groups)
            return qd_seterr(QD_ESPEC,
                             "spec line %d: groups=%d must divide in channels %d and out=%d", line,
                             n->groups, a->c, n->out);
        if (a->h + 2 * n->pad < n->k || a->w + 2 * n->pad < n->k)
            return qd_seterr(QD_ESPEC, "spec line %d: kernel %d larger than padded input %dx%d",
                             line, n->k, a->h, a->w);
        n->c = n->out;
        n->h = (a->h + 2 * n->pad - n->k) / n->stride + 1;
        n->w = (a->w + 2 * n->pad - n->k) / n->stride + 1;
        n->woff = m->nparam;
        n->wlen = (size_t)n->out * (a->c / n->groups) * n->k * n->k;
        m->nparam += n->wlen;
        if (n->bias) {
            n->boff = m->nparam;
            n->blen = n->out;
            m->nparam += n->blen;
        }
        break;
    case QD_OP_DENSE:
        if (!n->out)
            return qd_seterr(QD_ESPEC, "spec line %d: dense needs out=", line);
        n->c = n->out, n->h = n->w = 1;
        n->woff = m->nparam;
        n->wlen = (size_t)n->out * a->c * a->h * a->w;
        m->nparam += n->wlen;
        if (n->bias) {
            n->boff = m->nparam;
            n->blen = n->out;
            m->nparam += n->blen;
        }
        break;
    case QD_OP_BN:
        n->c = a->c, n->h = a->h, n->w = a->w;
        n->woff = m->nparam;
        n->wlen = (size_t)n->sets * a->c;
        n->boff = m->nparam + n->wlen;
        n->blen = n->wlen;
        m->nparam += 2 * n->wlen;
        n->soff = m->nstat;
        m->nstat += 2 * (size_t)a->c;
        break;
    case QD_OP_MAXPOOL:
    case QD_OP_AVGPOOL:
        if (!n->k)
            return qd_seterr(QD_ESPEC, "spec line %d: %s needs k=", line, op_names[op]);
        if (n->stride < 0)
            n->stride = n->k;
        if (a->h < n->k || a->w < n->k)
            return qd_seterr(QD_ESPEC, "spec line %d: pool window %d larger than input %dx%d",
                             line, n->k, a->h, a->w);
        n->c = a->c;
        n->h = (a->h - n->k) / n->stride + 1;
        n->w = (a->w - n->k) / n->stride + 1;
        break;
    case QD_OP_GAP: /* a square window: what the executor and the .qm's pooling run */
        if (a->h != a->w)
            return qd_seterr(QD_ESPEC, "spec line %d: gap of a non-square %dx%d input", line, a->h,
                             a->w);
        n->c = a->c, n->h = n->w = 1;
        break;
    case QD_OP_FLATTEN: /* a's elements are below MAX_ELEMS: an int */
        n->c = a->c * a->h * a->w, n->h = n->w = 1;
        break;
    case QD_OP_ADD: {
        const struct qd_node *b = &m->nodes[n->in[1]];
        if (a->c != b->c || a->h != b->h || a->w != b->w)
            return qd_seterr(QD_ESPEC, "spec line %d: add of %dx%dx%d and %dx%dx%d", line, a->c,
                             a->h, a->w, b->c, b->h, b->w);
        n->c = a->c, n->h = a->h, n->w = a->w;
        break;
    }
    default: /* relu, relu6 */
        n->c = a->c, n->h = a->h, n->w = a->w;
    }
    if ((int64_t)n->c * n->h * n->w > MAX_ELEMS)
        return qd_seterr(QD_ESPEC, "spec line %d: an output of %lld elements (at most %lld)", line,
                         (long long)n->c * n->h * n->w, (long long)MAX_ELEMS);
    if (m->nparam > MAX_PARAMS)
        return qd_seterr(QD_ESPEC, "spec line %d: %zu parameters so far (at most %zu)", line,
                         m->nparam, MAX_PARAMS);
    m->nnodes++;
    return QD_OK;
}

qd_err qd_model_parse(const char *text, struct qd_model *m)
{
    memset(m, 0, sizeof *m);
    strcpy(m->family, "unnamed");
    m->nodes = calloc(QD_MAX_NODES, sizeof *m->nodes);
    m->spec = strdup(text);
    char *buf = strdup(text);
    if (!m->nodes || !m->spec || !buf) {
        free(buf);
        qd_model_fini(m);
        return qd_seterr(QD_ENOMEM, "model spec: out of memory");
    }
    qd_err e = QD_OK;
    int line = 0, in_c = 0, in_h = 0, in_w = 0;
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        char *hash = strchr(l, '#');
        if (hash)
            *hash = 0;
        while (*l && isspace((unsigned char)*l))
            l++;
        size_t len = strlen(l);
        while (len && isspace((unsigned char)l[len - 1]))
            l[--len] = 0;
        if (!len)
            continue;
        if ((e = parse_line(m, l, line, &in_c, &in_h, &in_w)))
            break;
    }
    free(buf);
    if (!e && m->nnodes < 2)
        e = qd_seterr(QD_ESPEC, "model spec: needs an input and at least one layer");
    if (!e && m->nodes[m->nnodes - 1].op != QD_OP_DENSE)
        e = qd_seterr(QD_ESPEC, "model spec: the last layer must be dense (the classifier)");
    if (e) {
        qd_model_fini(m);
        return e;
    }
    m->nclass = m->nodes[m->nnodes - 1].out;
    m->param = qd_mem_alloc(m->nparam * sizeof(float));
    m->grad = qd_mem_alloc(m->nparam * sizeof(float));
    m->stat = qd_mem_alloc((m->nstat + 1) * sizeof(float));
    m->bn_set = malloc((size_t)m->nnodes);
    if (!m->param || !m->grad || !m->stat || !m->bn_set) {
        qd_model_fini(m);
        return qd_seterr(QD_ENOMEM, "model: cannot allocate %zu parameters", m->nparam);
    }
    for (int i = 0; i < m->nnodes; i++)
        m->bn_set[i] = (uint8_t)(m->nodes[i].sets - 1);
    return QD_OK;
}

void qd_model_init_params(struct qd_model *m, uint64_t seed)
{
    struct qd_rng r;
    qd_rng_seed(&r, seed);
    for (int i = 1; i < m->nnodes; i++) {
        struct qd_node *n = &m->nodes[i];
        const struct qd_node *a = &m->nodes[n->in[0]];
        if (n->op == QD_OP_CONV || n->op == QD_OP_DENSE) {
            size_t fan_in = n->wlen / n->out;
            float sd = sqrtf((n->op == QD_OP_CONV ? 2.0f : 1.0f) / (float)fan_in);
            for (size_t j = 0; j < n->wlen; j++)
                m->param[n->woff + j] = sd * qd_rng_normal(&r);
            if (n->bias)
                memset(m->param + n->boff, 0, n->blen * sizeof(float));
        } else if (n->op == QD_OP_BN) {
            for (size_t j = 0; j < n->wlen; j++) {
                m->param[n->woff + j] = 1.0f;
                m->param[n->boff + j] = 0.0f;
            }
            for (int j = 0; j < a->c; j++) {
                m->stat[n->soff + j] = 0.0f;
                m->stat[n->soff + a->c + j] = 1.0f;
            }
        }
    }
}

void qd_model_fini(struct qd_model *m)
{
    free(m->bn_set);
    free(m->nodes);
    free(m->spec);
    qd_mem_free(m->param, m->nparam * sizeof(float));
    qd_mem_free(m->grad, m->nparam * sizeof(float));
    qd_mem_free(m->stat, (m->nstat + 1) * sizeof(float));
    memset(m, 0, sizeof *m);
}

int qd_model_has_bn_sets(const struct qd_model *m)
{
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].sets > 1)
            return 1;
    return 0;
}

qd_err qd_model_bn_sets(const struct qd_model *m, int sets, struct qd_model *out)
{
    if (sets < 1 || sets > 16)
        return qd_seterr(QD_EINVAL, "model: BatchNorm sets must be 1..16, not %d", sets);
    size_t cap = strlen(m->spec) + 16 * (size_t)m->nnodes + 2;
    char *buf = strdup(m->spec), *spec = malloc(cap), *save = NULL;
    if (!buf || !spec) {
        free(buf), free(spec);
        return qd_seterr(QD_ENOMEM, "model: out of memory");
    }
    size_t len = 0;
    int line = 0;
    /* the lines as the parser counts them (blank ones dropped): a BN line that follows a conv
     * gets sets=, before any comment */
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        int bn = 0;
        for (int i = 1; i < m->nnodes; i++) {
            const struct qd_node *n = &m->nodes[i];
            bn |= n->line == line && n->op == QD_OP_BN && n->sets == 1 &&
                  m->nodes[n->in[0]].op == QD_OP_CONV;
        }
        char *hash = bn ? strchr(l, '#') : NULL;
        if (hash)
            *hash = 0;
        len += (size_t)snprintf(spec + len, cap - len, bn ? "%s sets=%d\n" : "%s\n", l, sets);
    }
    free(buf);
    qd_err e = qd_model_parse(spec, out);
    free(spec);
    if (e)
        return e;
    for (int i = 0; i < m->nnodes; i++) {
        const struct qd_node *a = &m->nodes[i], *b = &out->nodes[i];
        if (a->woff == QD_NONE)
            continue;
        for (size_t k = 0; k < b->wlen; k += a->wlen)
            memcpy(out->param + b->woff + k, m->param + a->woff, sizeof(float) * a->wlen);
        if (a->boff != QD_NONE)
            for (size_t k = 0; k < b->blen; k += a->blen)
                memcpy(out->param + b->boff + k, m->param + a->boff, sizeof(float) * a->blen);
    }
    memcpy(out->stat, m->stat, sizeof(float) * m->nstat);
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].sets == out->nodes[i].sets)
            out->bn_set[i] = m->bn_set[i];
    return QD_OK;
}

uint64_t qd_model_macs(const struct qd_model *m)
{
    uint64_t s = 0;
    for (int i = 1; i < m->nnodes; i++) {
        const struct qd_node *n = &m->nodes[i];
        if (n->op == QD_OP_CONV)
            s += (uint64_t)n->wlen * n->h * n->w;
        else if (n->op == QD_OP_DENSE)
            s += n->wlen;
    }
    return s;
}

/* ---------------------------------------------------------------- executor */

static size_t node_len(const struct qd_node *n)
{
    return (size_t)n->c * n->h * n->w;
}

static void conv_desc(const struct qd_model *m, const struct qd_node *n, int batch,
                      struct qd_conv_desc *d)
{
    const struct qd_node *a = &m->nodes[n->in[0]];
    qd_conv_desc_init(d, batch, a->c, a->h, a->w, n->out, n->k, n->stride, n->pad, n->groups);
}

qd_err qd_exec_init(struct qd_exec *e, const struct qd_model *m, int cap)
{
    memset(e, 0, sizeof *e);
    e->m = m;
    e->cap = cap;
    e->bn_momentum = 0.1f;
    e->bn_eps = 1e-5f;
    int N = m->nnodes;
    size_t floats = 0, maxlen = 0;
    for (int i = 0; i < N; i++) {
        const struct qd_node *n = &m->nodes[i];
        size_t len = node_len(n) * cap;
        floats += 2 * len;
        if (n->op == QD_OP_MAXPOOL)
            floats += len; /* int32 argmax, same size as a float */
        if (n->op == QD_OP_BN)
            floats += 2 * (size_t)n->c;
        if (len > maxlen)
            maxlen = len;
        if (n->op == QD_OP_CONV) {
            struct qd_conv_desc d;
            conv_desc(m, n, cap, &d);
            size_t s = qd_conv2d_scratch_size(&d);
            if (s > e->scratch_len)
                e->scratch_len = s;
        }
    }
    floats += maxlen + e->scratch_len;
    e->block_bytes = floats * sizeof(float);
    e->block = qd_mem_alloc(e->block_bytes);
    e->act = calloc(N, sizeof *e->act);
    e->dact = calloc(N, sizeof *e->dact);
    e->idx = calloc(N, sizeof *e->idx);
    e->bn_mean = calloc(N, sizeof *e->bn_mean);
    e->bn_inv = calloc(N, sizeof *e->bn_inv);
    e->ginit = calloc(N, 1);
    if (!e->block || !e->act || !e->dact || !e->idx || !e->bn_mean || !e->bn_inv || !e->ginit) {
        qd_exec_fini(e);
        return qd_seterr(QD_ENOMEM, "executor: cannot allocate %zu MiB for batch %d",
                         e->block_bytes >> 20, cap);
    }
    float *p = e->block;
    for (int i = 0; i < N; i++) {
        const struct qd_node *n = &m->nodes[i];
        size_t len = node_len(n) * cap;
        e->act[i] = p, p += len;
        e->dact[i] = p, p += len;
        if (n->op == QD_OP_MAXPOOL)
            e->idx[i] = (int32_t *)p, p += len;
        if (n->op == QD_OP_BN) {
            e->bn_mean[i] = p, p += n->c;
            e->bn_inv[i] = p, p += n->c;
        }
    }
    e->tmp = p, p += maxlen;
    e->scratch = p;
    return QD_OK;
}

void qd_exec_fini(struct qd_exec *e)
{
    qd_mem_free(e->block, e->block_bytes);
    free(e->act);
    free(e->dact);
    free(e->idx);
    free(e->bn_mean);
    free(e->bn_inv);
    free(e->ginit);
    memset(e, 0, sizeof *e);
}

const float *qd_exec_logits(const struct qd_exec *e)
{
    return e->act[e->m->nnodes - 1];
}

/* The grid of an activation fake quantizer: value = (q - zero) * scale, q in [qmin, qmax]. */
static void act_grid(int bits, float lo, float hi, float *scale, float *zero, float *qmin,
                     float *qmax)
{
    lo = lo < 0 ? lo : 0, hi = hi > 0 ? hi : 0;
    if (bits >= 16) { /* symmetric, as the int16x8 runtime */
        float a = fmaxf(-lo, hi);
        *qmin = -32767, *qmax = 32767, *zero = 0;
        *scale = a > 0 ? a / 32767 : 1;
        return;
    }
    *qmin = -(float)(1 << (bits - 1)), *qmax = (float)((1 << (bits - 1)) - 1);
    *scale = hi > lo ? (hi - lo) / (*qmax - *qmin) : 1;
    *zero = roundf(*qmin - lo / *scale);
}

static void fake_quant_act(struct qd_exec *e, int i, float *y, size_t len, int train)
{
    float *lo = &e->act_range[2 * i], *hi = lo + 1;
    if (train) {
        float mn = y[0], mx = y[0];
        for (size_t k = 1; k < len; k++)
            mn = y[k] < mn ? y[k] : mn, mx = y[k] > mx ? y[k] : mx;
        if (isnan(*lo))
            *lo = mn, *hi = mx;
        else
            *lo = 0.99f * *lo + 0.01f * mn, *hi = 0.99f * *hi + 0.01f * mx;
    }
    if (isnan(*lo))
        return;
    float s, z, qmin, qmax;
    act_grid(e->act_bits[i], *lo, *hi, &s, &z, &qmin, &qmax);
    for (size_t k = 0; k < len; k++) {
        float q = rintf(y[k] / s) + z;
        q = q < qmin ? qmin : q > qmax ? qmax : q;
        y[k] = (q - z) * s;
    }
}

void qd_exec_forward(struct qd_exec *e, int n, const float *x, int train)
{
    QD_ASSERT(n > 0 && n <= e->cap);
    memcpy(e->act[0], x, sizeof(float) * n * node_len(&e->m->nodes[0]));
    qd_exec_forward_from(e, n, 1, train);
}

void qd_exec_forward_from(struct qd_exec *e, int n, int from, int train)
{
    const struct qd_model *m = e->m;
    QD_ASSERT(n > 0 && n <= e->cap && from >= 1);
    for (int i = from; i < m->nnodes; i++) {
        const struct qd_node *nd = &m->nodes[i], *a = &m->nodes[nd->in[0]];
        const float *xa = e->act[nd->in[0]];
        float *y = e->act[i];
        const float *w = nd->woff != QD_NONE ? m->param + nd->woff : NULL;
        const float *b = nd->boff != QD_NONE ? m->param + nd->boff : NULL;
        if (nd->op == QD_OP_BN)
            w = m->param + qd_bn_gamma(m, i), b = m->param + qd_bn_beta(m, i);
        size_t len = (size_t)n * node_len(nd);
        switch (nd->op) {
        case QD_OP_CONV: {
            struct qd_conv_desc d;
            conv_desc(m, nd, n, &d);
            qd_conv2d_fwd_f32(&d, xa, w, b, y, e->scratch);
            break;
        }
        case QD_OP_DENSE:
            qd_dense_fwd_f32(n, (int)node_len(a), nd->out, xa, w, b, y);
            break;
        case QD_OP_BN: {
            float *rm = m->stat + nd->soff, *rv = rm + nd->c;
            int hw = nd->h * nd->w;
            if (train) {
                qd_bn_fwd_train_f32(n, nd->c, hw, xa, w, b, e->bn_eps, y, e->bn_mean[i],
                                    e->bn_inv[i]);
                float mo = e->bn_momentum, cnt = (float)n * hw;
                for (int c = 0; c < nd->c; c++) {
                    float is = e->bn_inv[i][c];
                    float var = 1.0f / (is * is) - e->bn_eps;
                    if (cnt > 1)
                        var *= cnt / (cnt - 1);
                    rm[c] = (1 - mo) * rm[c] + mo * e->bn_mean[i][c];
                    rv[c] = (1 - mo) * rv[c] + mo * var;
                }
            } else {
                qd_bn_fwd_eval_f32(n, nd->c, hw, xa, w, b, rm, rv, e->bn_eps, y);
            }
            break;
        }
        case QD_OP_RELU:
            qd_relu_fwd_f32(len, xa, y, 0);
            break;
        case QD_OP_RELU6:
            qd_relu_fwd_f32(len, xa, y, 6.0f);
            break;
        case QD_OP_MAXPOOL:
            qd_maxpool_fwd_f32(n * a->c, a->h, a->w, nd->k, nd->stride, xa, y, e->idx[i]);
            break;
        case QD_OP_AVGPOOL:
            qd_avgpool_fwd_f32(n * a->c, a->h, a->w, nd->k, nd->stride, xa, y);
            break;
        case QD_OP_GAP:
            qd_avgpool_fwd_f32(n * a->c, a->h, a->w, a->h, 1, xa, y);
            QD_ASSERT(a->h == a->w);
            break;
        case QD_OP_ADD:
            qd_add_fwd_f32(len, xa, e->act[nd->in[1]], y);
            break;
        case QD_OP_FLATTEN:
            memcpy(y, xa, sizeof(float) * len);
            break;
        default:
            QD_ASSERT(0);
        }
        if (e->act_bits && e->act_bits[i])
            fake_quant_act(e, i, y, len, train);
    }
}

/* Where node i's backward writes the gradient for its input j: straight into dact[j] for the
 * first consumer, into tmp (to be added) for later ones. */
static float *grad_dst(struct qd_exec *e, int j)
{
    return e->ginit[j] ? e->tmp : e->dact[j];
}

static void grad_done(struct qd_exec *e, int j, size_t len)
{
    if (e->ginit[j]) {
        float *d = e->dact[j];
        const float *t = e->tmp;
        for (size_t k = 0; k < len; k++)
            d[k] += t[k];
    }
    e->ginit[j] = 1;
}

void qd_exec_backward(struct qd_exec *e, int n, const float *dlogits)
{
    const struct qd_model *m = e->m;
    int N = m->nnodes;
    memset(e->ginit, 0, N);
    memcpy(e->dact[N - 1], dlogits, sizeof(float) * n * m->nclass);
    e->ginit[N - 1] = 1;
    for (int i = N - 1; i >= 1; i--) {
        const struct qd_node *nd = &m->nodes[i];
        if (!e->ginit[i])
            continue; /* nothing downstream uses this node */
        if (e->act_bits && e->act_bits[i] && !isnan(e->act_range[2 * i])) {
            /* straight through, but not where the forward clipped to the top of the range */
            float s, z, qmin, qmax;
            act_grid(e->act_bits[i], e->act_range[2 * i], e->act_range[2 * i + 1], &s, &z, &qmin,
                     &qmax);
            float top = (qmax - z) * s;
            const float *y = e->act[i];
            float *dy = e->dact[i];
            for (size_t k = 0, len = (size_t)n * node_len(nd); k < len; k++)
                if (y[k] >= top && top > 0)
                    dy[k] = 0;
        }
        int j = nd->in[0];
        const struct qd_node *a = &m->nodes[j];
        const float *dy = e->dact[i], *xa = e->act[j];
        size_t alen = (size_t)n * node_len(a);
        float *dx = j == 0 ? NULL : grad_dst(e, j);
        const float *w = nd->woff != QD_NONE ? m->param + nd->woff : NULL;
        float *dw = nd->woff != QD_NONE ? m->grad + nd->woff : NULL;
        float *db = nd->boff != QD_NONE ? m->grad + nd->boff : NULL;
        switch (nd->op) {
        case QD_OP_CONV: {
            struct qd_conv_desc d;
            conv_desc(m, nd, n, &d);
            qd_conv2d_bwd_f32(&d, xa, w, dy, dx, dw, db, e->scratch);
            break;
        }
        case QD_OP_DENSE:
            qd_dense_bwd_f32(n, (int)node_len(a), nd->out, xa, w, dy, dx, dw, db);
            break;
        case QD_OP_BN:
            if (nd->sets > 1) { /* the active set's gradient; zero for the others */
                memset(dw, 0, sizeof *dw * nd->wlen);
                memset(db, 0, sizeof *db * nd->blen);
                w = m->param + qd_bn_gamma(m, i);
                dw = m->grad + qd_bn_gamma(m, i), db = m->grad + qd_bn_beta(m, i);
            }
            qd_bn_bwd_f32(n, nd->c, nd->h * nd->w, xa, dy, w, e->bn_mean[i], e->bn_inv[i], dx, dw,
                          db);
            break;
        case QD_OP_RELU:
        case QD_OP_RELU6:
            if (dx)
                qd_relu_bwd_f32(alen, e->act[i], dy, dx, nd->op == QD_OP_RELU6 ? 6.0f : 0);
            break;
        case QD_OP_MAXPOOL:
            if (dx)
                qd_maxpool_bwd_f32(n * a->c, a->h, a->w, nd->k, nd->stride, dy, e->idx[i], dx);
            break;
        case QD_OP_AVGPOOL:
            if (dx)
                qd_avgpool_bwd_f32(n * a->c, a->h, a->w, nd->k, nd->stride, dy, dx);
            break;
        case QD_OP_GAP:
            if (dx)
                qd_avgpool_bwd_f32(n * a->c, a->h, a->w, a->h, 1, dy, dx);
            break;
        case QD_OP_FLATTEN:
        case QD_OP_ADD:
            if (dx)
                memcpy(dx, dy, sizeof(float) * alen);
            break;
        default:
            QD_ASSERT(0);
        }
        if (dx)
            grad_done(e, j, alen);
        if (nd->op == QD_OP_ADD) {
            int j2 = nd->in[1];
            if (j2 != 0) {
                memcpy(grad_dst(e, j2), dy, sizeof(float) * alen);
                grad_done(e, j2, alen);
            }
        }
    }
}
