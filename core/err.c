/* Error names, messages and the per-thread detail buffer behind qd_seterr()/qd_errmsg(). */
#include "core/err.h"

#include <stdarg.h>

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
