/* Fuzz target: a push notification as a device's SUB socket receives it (client/client.c:
 * qd_client_wait_note): "<device id>\0" + one JSON line.
 *
 * Feeds the bytes to qd_proto_note_decode. Checks: no crash, sanitizer report or leak; a
 * decoded note has a valid device id, a 64-hex-digit sha256 and positive version and size;
 * and it survives the round trip: encode(decode(x)) decodes to the same struct. */
#include "fuzz/fuzz.h"

#include "core/err.h"
#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qd_proto_note n, n2;
    if (qd_proto_note_decode(data, size, &n))
        return 0;
    uint8_t sha[32];
    FZ_CHECK(qd_proto_id_ok(n.id));
    FZ_CHECK(qd_proto_unhex(n.sha, sha, sizeof sha) == QD_OK);
    FZ_CHECK(n.version >= 1 && n.size >= 1);
    uint8_t *b = NULL;
    size_t len = 0;
    FZ_CHECK(qd_proto_note_encode(&n, &b, &len) == QD_OK);
    FZ_CHECK(qd_proto_note_decode(b, len, &n2) == QD_OK);
    FZ_CHECK(!strcmp(n.id, n2.id) && !strcmp(n.sha, n2.sha) && n.version == n2.version &&
             n.size == n2.size);
    free(b);
    return 0;
}
