/* Error names, messages and the per-thread detail buffer behind qd_seterr()/qd_errmsg(). */
#include "core/err.h"

#include <stdarg.h>

#include "runtime/rt_err.h"

static const char *const names[] = {
#define QD_ERR_NAME(name, msg) #name,
    QD_ERR_MAP(QD_ERR_NAME)
#undef QD_ERR_NAME
};
static const char *const msgs[] = {
#define QD_ERR_MSG(name, msg) msg,
    QD_ERR_MAP(QD_ERR_MSG)
#undef QD_ERR_MSG
};

static _Thread_local char detail[512];
static _Thread_local qd_err last;

const char *qd_err_name(qd_err e)
{
    return (unsigned)e < QD_ERR_COUNT ? names[e] : "EUNKNOWN";
}

const char *qd_strerror(qd_err e)
{
    return (unsigned)e < QD_ERR_COUNT ? msgs[e] : "unknown error";
}

qd_err qd_seterr(qd_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    last = e;
    return e;
}

const char *qd_errmsg(void)
{
    return detail[0] ? detail : qd_strerror(last);
}

void qd_clearerr(void)
{
    detail[0] = 0;
    last = QD_OK;
}

qd_err qd_wraperr(qd_err e, const char *prefix, const char *suffix)
{
    char keep[sizeof detail];
    snprintf(keep, sizeof keep, "%s", qd_errmsg());
    return qd_seterr(e, "%s%s%s", prefix ? prefix : "", keep, suffix ? suffix : "");
}

qd_err qd_err_rt(int rt_code, const struct qd_rt_diag *d)
{
    static const qd_err map[] = {
        [QD_RT_OK] = QD_OK,
        [QD_RT_EINVAL] = QD_EINVAL,
        [QD_RT_ENOMEM] = QD_ENOMEM,
        [QD_RT_EFORMAT] = QD_EFORMAT,
        [QD_RT_ECHECKSUM] = QD_ECHECKSUM,
        [QD_RT_EVERSION] = QD_EVERSION,
        [QD_RT_ELIMIT] = QD_EFORMAT,
        [QD_RT_EUNSUPPORTED] = QD_EINVAL,
    };
    _Static_assert(sizeof map / sizeof map[0] == QD_RT_ERR_COUNT, "every runtime code mapped");
    if (rt_code == QD_RT_OK)
        return QD_OK;
    qd_err e = (unsigned)rt_code < QD_RT_ERR_COUNT ? map[rt_code] : QD_EINVAL;
    if (!d || !d->msg)
        return qd_seterr(e, "runtime: %s", qd_rt_strerror((qd_rt_err)rt_code));
    if (d->record >= 0)
        return qd_seterr(e, "qm: record %d: %s", (int)d->record, d->msg);
    return qd_seterr(e, "qm: %s", d->msg);
}
