/* Host-side helper of the runtime: the exact arena a blob needs. It is the one function of the
 * runtime's API that allocates (a temporary table), so that runtime.c itself never does. */
#include <stdlib.h>

#include "quant/runtime.h"

qd_err qd_rt_arena_size(const uint8_t *blob, size_t len, size_t *need)
{
    qd_rt_t *rt;
    size_t tables = 0;
    qd_err e = qd_rt_load(blob, len, NULL, 0, &rt, &tables);
    if (e != QD_ENOMEM)
        return e ? e : qd_seterr(QD_EINVAL, "runtime: unexpected load into no arena");
    void *buf = aligned_alloc(16, (tables + 15) & ~(size_t)15);
    if (!buf)
        return qd_seterr(QD_ENOMEM, "runtime: out of memory");
    e = qd_rt_load(blob, len, buf, tables, &rt, need);
    free(buf);
    if (e == QD_OK) /* the tables alone sufficed: a model with no activations to speak of */
        return QD_OK;
    return e == QD_ENOMEM && *need > tables ? QD_OK : e;
}
