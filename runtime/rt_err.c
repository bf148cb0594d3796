/* Names and messages of the runtime's error codes. */
#include "rt_err.h"

static const char *const names[] = {
#define QD_RT_ERR_NAME(name, msg) #name,
    QD_RT_ERR_MAP(QD_RT_ERR_NAME)
#undef QD_RT_ERR_NAME
};
static const char *const msgs[] = {
#define QD_RT_ERR_MSG(name, msg) msg,
    QD_RT_ERR_MAP(QD_RT_ERR_MSG)
#undef QD_RT_ERR_MSG
};

const char *qd_rt_err_name(qd_rt_err e)
{
    return (unsigned)e < QD_RT_ERR_COUNT ? names[e] : "EUNKNOWN";
}

const char *qd_rt_strerror(qd_rt_err e)
{
    return (unsigned)e < QD_RT_ERR_COUNT ? msgs[e] : "unknown error";
}
