/* Levelled logging to stderr. The level is checked before the arguments are evaluated:
 *     qd_log(QD_LOG_INFO, "epoch %d loss %.4f", e, expensive_loss());
 * Kernels and quant/ never log; they return codes. */
#ifndef QD_CORE_LOG_H
#define QD_CORE_LOG_H

enum qd_log_level { QD_LOG_ERROR, QD_LOG_WARN, QD_LOG_INFO, QD_LOG_DEBUG };

extern enum qd_log_level qd_log_threshold;

void qd_log_emit(enum qd_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define qd_log(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= qd_log_threshold)                                                             \
            qd_log_emit((lvl), __VA_ARGS__);                                                       \
    } while (0)

#endif
