/* Fuzz target: a packed model as a device unpacks one (client/client.c: the chunks of a fetch
 * put together, then qd_pack_unpack against the size its manifest states).
 *
 * Feeds the bytes to qd_pack_unpack as each kind: raw, zstd, and a patch against a fixed base
 * model ($QD_FUZZ_BASE, the .qm the seed maker made its patches against; else built-in
 * bytes). The size asked for is the frame's stated content size when it is at most 4 MiB (the
 * manifest would state it), else 4 KiB, so outputs stay small as a device's are. Checks: no
 * crash, sanitizer report or leak; what unpacks has exactly the size asked for; a model that
 * unpacks packs again (qd_pack_best) to something that unpacks to the same bytes. */
#include "fuzz/fuzz.h"

#include <zstd.h>

#include "core/err.h"
#include "proto/pack.h"

static uint8_t *base;
static size_t blen;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *p = getenv("QD_FUZZ_BASE");
    FILE *f = p ? fopen(p, "rb") : NULL;
    if (f) {
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        base = malloc(n > 0 ? (size_t)n : 1);
        blen = n > 0 ? fread(base, 1, (size_t)n, f) : 0;
        fclose(f);
    }
    if (!blen) { /* no seed base: 4 KiB of a fixed pattern */
        free(base);
        blen = 4096;
        base = malloc(blen);
        for (size_t i = 0; i < blen; i++)
            base[i] = (uint8_t)(i * 2654435761u >> 13);
    }
    return 0;
}

static void unpack(enum qd_pack kind, const uint8_t *data, size_t size, size_t want)
{
    uint8_t *out = NULL, *p = NULL, *again = NULL;
    if (qd_pack_unpack(kind, data, size, base, blen, want, &out))
        return;
    FZ_CHECK(out != NULL);
    if (want <= (kind == QD_PACK_RAW ? 2048u : 16384u)) { /* the daemon's side, and back */
        enum qd_pack k;
        size_t n = 0;
        FZ_CHECK(qd_pack_best(out, want, base, blen, 1, &k, &p, &n) == QD_OK);
        FZ_CHECK(qd_pack_unpack(k, p, n, base, blen, want, &again) == QD_OK);
        FZ_CHECK(!memcmp(out, again, want));
    }
    free(again);
    free(p);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned long long fs = ZSTD_getFrameContentSize(data, size);
    size_t want = fs <= ((size_t)4 << 20) && fs > 0 ? (size_t)fs : 4096;
    unpack(QD_PACK_RAW, data, size, size ? size : 1);
    unpack(QD_PACK_ZSTD, data, size, want);
    unpack(QD_PACK_PATCH, data, size, want);
    return 0;
}
