/* stderr logger with a UTC timestamp and level tag. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

enum qd_log_level qd_log_threshold = QD_LOG_INFO;

void qd_log_emit(enum qd_log_level lvl, const char *fmt, ...)
{
    static const char *const tag[] = {"error", "warn", "info", "debug"};
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s %s: ", ts, tag[lvl]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
