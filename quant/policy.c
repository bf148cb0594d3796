/* Policy text and JSON forms, with every entry validated (count, range, syntax). */
#include "quant/policy.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qd_policy_layers(const struct qd_model *m, int *nodes)
{
    int n = 0;
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].op == QD_OP_CONV || m->nodes[i].op == QD_OP_DENSE) {
            if (nodes)
                nodes[n] = i;
            n++;
        }
    return n;
}

void qd_policy_uniform(struct qd_policy *p, int n, int wbits, int abits)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    for (int i = 0; i < n; i++) {
        p->wbits[i] = (uint8_t)wbits;
        p->abits[i] = (uint8_t)abits;
    }
}

static int read_bits(const char **s, int *out)
{
    const char *p = *s;
    if (!isdigit((unsigned char)*p))
        return -1;
    long v = strtol(p, (char **)s, 10);
    if (v < 2 || v > 16)
        return -1;
    *out = (int)v;
    return 0;
}

qd_err qd_policy_parse(const char *text, int n, struct qd_policy *p)
{
    if (n < 1 || n > QD_POLICY_MAX)
        return qd_seterr(QD_EINVAL, "policy: model has %d quantizable layers (1..%d)", n,
                         QD_POLICY_MAX);
    char buf[8192];
    FILE *f = strchr(text, ',') ? NULL : fopen(text, "r");
    if (f) {
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        text = buf;
    }
    int w[QD_POLICY_MAX], a[QD_POLICY_MAX], cnt = 0;
    const char *s = text;
    while (isspace((unsigned char)*s))
        s++;
    for (;;) {
        if (cnt == QD_POLICY_MAX)
            return qd_seterr(QD_EINVAL, "policy: more than %d entries", QD_POLICY_MAX);
        if (read_bits(&s, &w[cnt]))
            return qd_seterr(QD_EINVAL, "policy: entry %d: weight bits must be 2..16 (near '%.12s')",
                             cnt + 1, s);
        a[cnt] = 8;
        if (*s == '/' && (s++, read_bits(&s, &a[cnt])))
            return qd_seterr(QD_EINVAL,
                             "policy: entry %d: activation bits must be 2..16 (near '%.12s')",
                             cnt + 1, s);
        cnt++;
        while (isspace((unsigned char)*s))
            s++;
        if (*s != ',')
            break;
        s++;
        while (isspace((unsigned char)*s))
            s++;
    }
    if (*s)
        return qd_seterr(QD_EINVAL, "policy: unexpected '%.12s' after entry %d", s, cnt);
    if (cnt != 1 && cnt != n)
        return qd_seterr(QD_EINVAL, "policy: %d entries for a model with %d quantizable layers",
                         cnt, n);
    memset(p, 0, sizeof *p);
    p->n = n;
    for (int i = 0; i < n; i++) {
        p->wbits[i] = (uint8_t)w[cnt == 1 ? 0 : i];
        p->abits[i] = (uint8_t)a[cnt == 1 ? 0 : i];
    }
    return QD_OK;
}

qd_err qd_policy_format(const struct qd_policy *p, char *buf, size_t len)
{
    size_t o = 0;
    for (int i = 0; i < p->n; i++) {
        int k = p->abits[i] == 8
                    ? snprintf(buf + o, len - o, "%s%d", i ? "," : "", p->wbits[i])
                    : snprintf(buf + o, len - o, "%s%d/%d", i ? "," : "", p->wbits[i], p->abits[i]);
        if (k < 0 || (size_t)k >= len - o)
            return qd_seterr(QD_EINVAL, "policy: buffer of %zu bytes too small", len);
        o += (size_t)k;
    }
    return QD_OK;
}

cJSON *qd_policy_to_json(const struct qd_policy *p)
{
    cJSON *j = cJSON_CreateObject(), *w = cJSON_AddArrayToObject(j, "weights"),
          *a = cJSON_AddArrayToObject(j, "activations");
    for (int i = 0; i < p->n; i++) {
        cJSON_AddItemToArray(w, cJSON_CreateNumber(p->wbits[i]));
        cJSON_AddItemToArray(a, cJSON_CreateNumber(p->abits[i]));
    }
    return j;
}

static qd_err bits_array(const cJSON *arr, const char *what, int n, uint8_t *out)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n)
        return qd_seterr(QD_EINVAL, "policy: \"%s\" must be an array of %d bitwidths", what, n);
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || it->valuedouble != (int)it->valuedouble ||
            it->valueint < 2 || it->valueint > 16)
            return qd_seterr(QD_EINVAL, "policy: %s[%d] is not an integer in 2..16", what, i);
        out[i] = (uint8_t)it->valueint;
    }
    return QD_OK;
}

qd_err qd_policy_from_json(const cJSON *j, int n, struct qd_policy *p)
{
    if (n < 1 || n > QD_POLICY_MAX || !cJSON_IsObject(j))
        return qd_seterr(QD_EINVAL, "policy: expected an object for %d layers", n);
    memset(p, 0, sizeof *p);
    p->n = n;
    QD_TRY(bits_array(cJSON_GetObjectItemCaseSensitive(j, "weights"), "weights", n, p->wbits));
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "activations");
    if (!a) {
        memset(p->abits, 8, (size_t)n);
        return QD_OK;
    }
    return bits_array(a, "activations", n, p->abits);
}
