/* Error codes of quantd: one table (QD_ERR_MAP), one enum, one name and one message per code.
 *
 * Usage:
 *     qd_err e = qd_data_load(dir, "mnist", 1, &ds);
 *     if (e) fprintf(stderr, "%s: %s\n", qd_err_name(e), qd_errmsg());
 *
 * Fallible functions return a qd_err and pass results through pointers. The code says what kind
 * of failure it was; qd_errmsg() (thread-local, set by the function that failed through
 * qd_seterr) says which file, key or field and why. QD_ASSERT is for programmer bugs only. */
#ifndef QD_CORE_ERR_H
#define QD_CORE_ERR_H

#include <stdio.h>
#include <stdlib.h>

#define QD_ERR_MAP(X)                                                                              \
    X(OK, "success")                                                                               \
    X(EINVAL, "invalid argument")                                                                  \
    X(ENOMEM, "out of memory")                                                                     \
    X(EIO, "input/output error")                                                                   \
    X(ENOENT, "no such file")                                                                      \
    X(EFORMAT, "malformed data")                                                                   \
    X(ECHECKSUM, "checksum mismatch")                                                              \
    X(EVERSION, "unsupported format version")                                                      \
    X(ESHAPE, "shape mismatch")                                                                    \
    X(ESPEC, "invalid model spec")                                                                 \
    X(EEXTERNAL, "external command failed")                                                        \
    X(EBUDGET, "no policy fits the budget")                                                        \
    X(ENOTREADY, "not ready")                                                                      \
    X(EAUTH, "authentication failed")                                                              \
    X(ETOOBIG, "message too large")                                                                \
    X(EREPLAY, "replayed or stale nonce")                                                          \
    X(EOP, "unknown op")                                                                           \
    X(ENODEV, "no such device")                                                                    \
    X(EEXIST, "already exists")                                                                    \
    X(ETIMEDOUT, "timed out")                                                                      \
    X(EFOREIGN, "meant for another device")                                                        \
    X(EROLLBACK, "not newer than the installed version")                                           \
    X(EEXPIRED, "expired")                                                                         \
    X(EBASE, "a patch against a version this device does not hold")                                \
    X(ESELFTEST, "the model's self-test gave other outputs than its manifest's")                   \
    X(EBUSY, "busy: too much work in flight; retry later")                                         \
    X(ELIMIT, "over a limit")                                                                      \
    X(ENOGROUP, "no such group")                                                                   \
    X(ENOVERSION, "no such version of the device")                                                 \
    X(ECONFLICT, "conflicts with an operation in progress")                                        \
    X(EREVOKED, "the device is revoked")

typedef enum {
#define QD_ERR_ENUM(name, msg) QD_##name,
    QD_ERR_MAP(QD_ERR_ENUM)
#undef QD_ERR_ENUM
        QD_ERR_COUNT
} qd_err;

const char *qd_err_name(qd_err e); /* "EFORMAT" */
const char *qd_strerror(qd_err e); /* "malformed data" */

/* Records a detailed message for the calling thread and returns e, so that failing is one line:
 *     return qd_seterr(QD_EFORMAT, "%s: bad magic 0x%08x", path, magic); */
qd_err qd_seterr(qd_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The detail of the last qd_seterr on this thread, or the code's message if none was given. */
const char *qd_errmsg(void);
void qd_clearerr(void);
/* Re-sets the thread's detail to prefix + detail + suffix (either may be NULL); returns e.
 *     return qd_wraperr(e, "model.qm: ", NULL); */
qd_err qd_wraperr(qd_err e, const char *prefix, const char *suffix);

/* Maps a device runtime code (runtime/rt_err.h) and its diagnosis (may be NULL) onto a qd_err
 * with a detail: "qm: record 3: conv geometry does not match its input". A model past one of
 * the runtime's caps is EFORMAT; a float model on an integer-only build EINVAL. */
struct qd_rt_diag;
qd_err qd_err_rt(int rt_code, const struct qd_rt_diag *d);

#define QD_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define QD_TRY(expr)                                                                               \
    do {                                                                                           \
        qd_err qd_try_e_ = (expr);                                                                 \
        if (qd_try_e_)                                                                             \
            return qd_try_e_;                                                                      \
    } while (0)

#endif
