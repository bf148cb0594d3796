/* Fuzz target: a fetch reply chunk as a device receives one (client/client.c: qd_client_fetch):
 * "QDF1", a JSON header line, the manifest, its signature, the model bytes.
 *
 * Feeds the bytes to qd_proto_chunk_decode. Checks: no crash, sanitizer report or leak; a
 * decoded chunk's views lie inside the input, in order, and end exactly at its end; its byte
 * range lies inside the stated total; and re-encoding it decodes to the same fields (the header
 * written as the daemon writes it). The manifest view goes to qd_manifest_parse as the client's
 * would. */
#include "fuzz/fuzz.h"

#include "core/err.h"
#include "proto/manifest.h"
#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qd_proto_chunk c, c2;
    if (qd_proto_chunk_decode(data, size, &c)) {
        FZ_CHECK(!c.header);
        return 0;
    }
    const uint8_t *m = (const uint8_t *)c.manifest;
    FZ_CHECK(m > data + 4 && m + c.manifest_len == c.sig && c.sig + 64 == c.data);
    FZ_CHECK(c.data + c.len == data + size);
    FZ_CHECK(c.offset >= 0 && c.offset <= c.total && (int64_t)c.len <= c.total - c.offset);
    FZ_CHECK(!strcmp(c.encoding, "raw") || !strcmp(c.encoding, "zstd") ||
             !strcmp(c.encoding, "patch"));
    struct qd_manifest mf;
    qd_manifest_parse(c.manifest, c.manifest_len, &mf);
    char h[256]; /* as the daemon writes it (daemon/ops_device.c) */
    snprintf(h, sizeof h,
             "{\"version\":%lld,\"offset\":%lld,\"total\":%lld,\"encoding\":\"%s\","
             "\"base\":%lld,\"manifest_len\":%zu}",
             (long long)c.version, (long long)c.offset, (long long)c.total, c.encoding,
             (long long)c.base, c.manifest_len);
    uint8_t *b = NULL;
    size_t n = 0;
    if (!qd_proto_chunk_encode(h, c.manifest, c.manifest_len, c.sig, c.data, c.len, &b, &n)) {
        FZ_CHECK(n == size - (size_t)(m - data) + 5 + strlen(h));
        FZ_CHECK(qd_proto_chunk_decode(b, n, &c2) == QD_OK);
        FZ_CHECK(c2.version == c.version && c2.offset == c.offset && c2.total == c.total &&
                 c2.base == c.base && !strcmp(c2.encoding, c.encoding) &&
                 c2.manifest_len == c.manifest_len && c2.len == c.len &&
                 !memcmp(c2.manifest, c.manifest, c.manifest_len) && !memcmp(c2.sig, c.sig, 64) &&
                 !memcmp(c2.data, c.data, c.len));
        cJSON_Delete(c2.header);
        free(b);
    }
    cJSON_Delete(c.header);
    return 0;
}
