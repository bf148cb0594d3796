/* Fuzz target: quantd-agent's configuration file ([agent] keys, INI through inih), as the
 * agent reads it at start. Its parser is file-private in client/agent_main.c, so this target
 * compiles that file in (its main renamed) and calls load_conf; the bytes go through a memfd.
 *
 * Checks: no crash, sanitizer report or leak; a file that loads names an id, a key, the
 * signing key and a profile, and its numbers are in their ranges. */
#include "fuzz/fuzz.h"

#define main quantd_agent_main
#include "client/agent_main.c"
#undef main

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_path(data, size);
    FZ_CHECK(path);
    struct conf c;
    if (load_conf(path, &c))
        return 0;
    FZ_CHECK(c.id[0] && c.key[0] && c.sign_pub[0] && c.profile[0]);
    FZ_CHECK(c.check_s >= 0.05 && c.check_s <= 86400 && c.hysteresis >= 0 && c.hysteresis <= 10);
    return 0;
}
