/* An open-addressing map from a string to an index: devices by id, blobs by policy and sha. The
 * keys are not copied (each points into the object it names, which outlives the map); the table
 * doubles at half full, so a lookup probes about two slots. Loop thread, or under blob_mu. */
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon_impl.h"

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

int qdd_smap_get(const struct qdd_smap *m, const char *k)
{
    if (!m->cap)
        return -1;
    for (uint32_t i = hash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->key[i])
            return -1;
        if (!strcmp(m->key[i], k))
            return m->val[i];
    }
}

qd_err qdd_smap_put(struct qdd_smap *m, const char *k, int v)
{
    if (2 * (m->n + 1) > m->cap) {
        uint32_t cap = m->cap ? 2 * m->cap : 1024;
        const char **key = calloc(cap, sizeof *key);
        int *val = malloc(cap * sizeof *val);
        if (!key || !val) {
            free(key), free(val);
            return qd_seterr(QD_ENOMEM, "registry: out of memory");
        }
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->key[i]) {
                uint32_t j = hash(m->key[i]) & (cap - 1);
                while (key[j])
                    j = (j + 1) & (cap - 1);
                key[j] = m->key[i];
                val[j] = m->val[i];
            }
        free(m->key), free(m->val);
        m->key = key, m->val = val, m->cap = cap;
    }
    uint32_t i = hash(k) & (m->cap - 1);
    while (m->key[i] && strcmp(m->key[i], k))
        i = (i + 1) & (m->cap - 1);
    if (!m->key[i])
        m->n++;
    m->key[i] = k;
    m->val[i] = v;
    return QD_OK;
}

/* Backward-shift deletion: the entries after the hole move back into it when their home slot
 * is not between the hole and them, so every probe still finds its key without tombstones. */
void qdd_smap_del(struct qdd_smap *m, const char *k, int v)
{
    if (!m->cap)
        return;
    uint32_t mask = m->cap - 1, i = hash(k) & mask;
    while (m->key[i] && strcmp(m->key[i], k))
        i = (i + 1) & mask;
    if (!m->key[i] || m->val[i] != v)
        return;
    m->key[i] = NULL;
    m->n--;
    for (uint32_t j = (i + 1) & mask; m->key[j]; j = (j + 1) & mask) {
        uint32_t home = hash(m->key[j]) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->key[i] = m->key[j], m->val[i] = m->val[j];
            m->key[j] = NULL;
            i = j;
        }
    }
}

void qdd_smap_fini(struct qdd_smap *m)
{
    free(m->key), free(m->val);
    memset(m, 0, sizeof *m);
}
