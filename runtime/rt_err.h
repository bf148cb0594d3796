/* Error codes of the device runtime: one table (QD_RT_ERR_MAP), one enum. The runtime has no
 * stdio, so a failure is a code plus, where the caller asks for it, a diagnosis: a static
 * message and the record it concerns. The host maps both onto core/err.h (qd_err_rt).
 *
 * Usage:
 *     struct qd_rt_diag d;
 *     qd_rt_err e = qd_qm_validate_into(blob, len, shapes, &d);
 *     if (e) report(qd_rt_err_name(e), d.record, d.msg);   // "EFORMAT", 3, "conv geometry ..."
 */
#ifndef QD_RUNTIME_RT_ERR_H
#define QD_RUNTIME_RT_ERR_H

#include <stdint.h>

#define QD_RT_ERR_MAP(X)                                                                           \
    X(OK, "success")                                                                               \
    X(EINVAL, "invalid argument")                                                                  \
    X(ENOMEM, "arena too small")                                                                   \
    X(EFORMAT, "malformed model")                                                                  \
    X(ECHECKSUM, "checksum mismatch")                                                              \
    X(EVERSION, "unsupported format version")                                                      \
    X(ELIMIT, "model exceeds the runtime's limits")                                                \
    X(EUNSUPPORTED, "not built into this runtime")

typedef enum {
#define QD_RT_ERR_ENUM(name, msg) QD_RT_##name,
    QD_RT_ERR_MAP(QD_RT_ERR_ENUM)
#undef QD_RT_ERR_ENUM
        QD_RT_ERR_COUNT
} qd_rt_err;

/* Where and why: msg is a static string; record is the .qm record (node) it concerns, -1 for
 * the header or the file as a whole. */
struct qd_rt_diag {
    const char *msg;
    int32_t record;
};

const char *qd_rt_err_name(qd_rt_err e);  /* "EFORMAT" */
const char *qd_rt_strerror(qd_rt_err e);  /* "malformed model" */

/* Fills *d (when not NULL) and returns e, so that failing is one line. */
static inline qd_rt_err qd_rt_fail(struct qd_rt_diag *d, qd_rt_err e, int32_t record,
                                   const char *msg)
{
    if (d)
        d->msg = msg, d->record = record;
    return e;
}

#define QD_RT_TRY(expr)                                                                            \
    do {                                                                                           \
        qd_rt_err qd_rt_try_e_ = (expr);                                                           \
        if (qd_rt_try_e_)                                                                          \
            return qd_rt_try_e_;                                                                   \
    } while (0)

#endif
