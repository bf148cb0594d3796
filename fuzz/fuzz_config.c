/* Fuzz target: quantd's configuration file (daemon/config.c, INI through inih), as the daemon
 * reads it at start and on SIGHUP (qd_config_load_file only takes a path: the bytes go
 * through a memfd).
 *
 * Checks: no crash, sanitizer report or leak; a file that loads leaves every string key
 * NUL-terminated inside its field, and the restart-key comparison with the defaults works on
 * it (as SIGHUP's reload does). */
#include "fuzz/fuzz.h"

#include "core/err.h"
#include "daemon/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_path(data, size);
    FZ_CHECK(path);
    struct qd_config c, d;
    qd_config_defaults(&c);
    qd_config_defaults(&d);
    if (qd_config_load_file(&c, path))
        return 0;
    FZ_CHECK(memchr(c.control, 0, sizeof c.control) && memchr(c.state_dir, 0, sizeof c.state_dir));
    char keys[1024];
    qd_config_restart_keys(&d, &c, keys, sizeof keys);
    return 0;
}
