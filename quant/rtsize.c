/* Host helpers of the runtime (see rtsize.h). qd_rt_arena_size is the one that allocates (a
 * temporary table), so that the runtime itself never does. */
#include "quant/rtsize.h"

#include <stdlib.h>

qd_err qd_rt_arena_size(const uint8_t *blob, size_t len, size_t *need)
{
    qd_rt_t *rt;
    size_t tables = 0;
    struct qd_rt_diag d = {0};
    qd_rt_err e = qd_rt_load(blob, len, NULL, 0, &rt, &tables, &d);
    if (e != QD_RT_ENOMEM)
        return e ? qd_err_rt(e, &d) : qd_seterr(QD_EINVAL, "runtime: unexpected load into no arena");
    void *buf = aligned_alloc(16, (tables + 15) & ~(size_t)15);
    if (!buf)
        return qd_seterr(QD_ENOMEM, "runtime: out of memory");
    e = qd_rt_load(blob, len, buf, tables, &rt, need, &d);
    free(buf);
    if (e == QD_RT_OK) /* the tables alone sufficed: a model with no activations to speak of */
        return QD_OK;
    return e == QD_RT_ENOMEM && *need > tables ? QD_OK : qd_err_rt(e, &d);
}

qd_err qd_rt_open(const uint8_t *blob, size_t len, void *arena, size_t arena_len, qd_rt_t **rt)
{
    struct qd_rt_diag d = {0};
    size_t need = 0;
    qd_rt_err e = qd_rt_load(blob, len, arena, arena_len, rt, &need, &d);
    if (e == QD_RT_ENOMEM)
        return qd_seterr(QD_ENOMEM, "runtime: arena of %zu bytes (16-aligned) too small, need %zu",
                         arena_len, need);
    return qd_err_rt(e, &d);
}

qd_err qd_rt_accel_alloc(qd_rt_t *rt, int isa, void **buf)
{
    size_t an = 0;
    *buf = NULL;
    if (qd_rt_accel_size(rt, isa, &an))
        return qd_seterr(QD_EINVAL, "runtime: this CPU (or build) has no %s", qd_rt_isa_name(isa));
    if (!an)
        return QD_OK;
    *buf = aligned_alloc(64, (an + 63) & ~(size_t)63);
    if (!*buf)
        return qd_seterr(QD_ENOMEM, "runtime: out of memory");
    qd_rt_err e = qd_rt_accel(rt, isa, *buf, an);
    if (e) {
        free(*buf);
        *buf = NULL;
        return qd_err_rt(e, NULL);
    }
    return QD_OK;
}
