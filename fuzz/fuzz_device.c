/* Fuzz target: a device profile (policy/device.c, INI through inih: etc/devices/NAME.ini), as
 * the daemon and quantlab load one by path (qd_device_load; the bytes go through a memfd,
 * whose /proc path is taken as a path, not a name).
 *
 * Checks: no crash, sanitizer report or leak; a profile that loads has positive flash and RAM
 * above what is reserved, a positive clock and at least one supported weight and activation
 * width, and NUL-terminated names. */
#include "fuzz/fuzz.h"

#include <math.h>

#include "core/err.h"
#include "policy/device.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_path(data, size);
    FZ_CHECK(path);
    struct qd_device d;
    if (qd_device_load(path, &d))
        return 0;
    FZ_CHECK(d.flash > d.reserved_flash && d.ram > d.reserved_ram && d.clock_mhz > 0);
    FZ_CHECK(isfinite(d.flash) && isfinite(d.ram));
    int w = 0, a = 0;
    for (int b = 0; b <= 16; b++)
        w += d.wbits_ok[b], a += d.abits_ok[b];
    FZ_CHECK(w > 0 && a > 0);
    FZ_CHECK(memchr(d.name, 0, sizeof d.name) && memchr(d.description, 0, sizeof d.description));
    return 0;
}
