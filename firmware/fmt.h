/* Text for the firmware's reports without a C library: decimal numbers and strings appended
 * to a line buffer (each returns the position after what it wrote). */
#ifndef QD_FIRMWARE_FMT_H
#define QD_FIRMWARE_FMT_H

#include <stdint.h>

static inline char *fw_dec(char *p, uint64_t v)
{
    char t[24];
    int n = 0;
    do
        t[n++] = (char)('0' + v % 10);
    while (v /= 10);
    while (n)
        *p++ = t[--n];
    return p;
}

static inline char *fw_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

#endif
