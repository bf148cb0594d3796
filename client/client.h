/* libquantd-client: what a gateway needs to talk to quantd. Connect, say hello, report a
 * context, receive notifications of new versions, fetch a version in chunks and verify it
 * (the signed manifest under the daemon's pinned key, then the bytes' sha256), ack it, report
 * what became of it. Also the admin calls quantctl makes.
 *
 * Usage:
 *     struct qd_client c;
 *     qd_client_open(&c, "tcp://127.0.0.1:7411", "tcp://127.0.0.1:7412", 5000);
 *     struct qd_ident me;
 *     qd_ident_init(&me, "gw-17", "f00d...64 hex...");           // the key from `quantctl keys add`
 *     cJSON *r;
 *     qd_client_hello(&c, &me, "cortex-m4", &r); cJSON_Delete(r);
 *     qd_client_subscribe(&c, "gw-17");
 *     struct qd_client_ctx ctx = QD_CLIENT_CTX_NONE; ctx.battery = 0.3;
 *     qd_client_report(&c, &me, &ctx, &r); cJSON_Delete(r);     // {"version":..,"changed":..}
 *     struct qd_proto_note n;
 *     struct qd_client_model m;
 *     if (!qd_client_notify_recv(&c, 10000, &n) &&                 // "version 7 is out"
 *         !qd_client_fetch(&c, &me, NULL, n.version, installed, held, held_len, sign_pub,
 *                          &m)) {                              // verified
 *         run(m.qm, m.len); qd_client_ack(&c, &me, m.m.version, m.m.sha);
 *         qd_client_model_fini(&m);
 *     }
 *     qd_client_close(&c);
 *
 * Every call signs its request (HMAC-SHA256 under the identity's key, nonce = microseconds,
 * strictly increasing per identity). An error reply becomes the qd_err of its code, with the
 * daemon's message in qd_errmsg(); *reply (when asked for) still holds the whole reply. */
#ifndef QD_CLIENT_CLIENT_H
#define QD_CLIENT_CLIENT_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>

#include "core/err.h"
#include "proto/manifest.h"
#include "proto/proto.h"

struct qd_client {
    int req, sub; /* sockets; sub < 0 until a push endpoint is given */
    int timeout_ms;
};

struct qd_ident {
    char id[QD_PROTO_MAX_ID + 1]; /* a device id or "admin" */
    uint8_t key[QD_PROTO_KEY_BYTES];
    int64_t nonce;
};

/* A device's context: what it can spare now. NAN: not reported. */
struct qd_client_ctx {
    double free_flash, free_ram, latency_ms, energy_mj, battery;
};
#define QD_CLIENT_CTX_NONE ((struct qd_client_ctx){NAN, NAN, NAN, NAN, NAN})

/* A model fetched and verified: its signed manifest (the device, version, sha256, policy, ...)
 * and its bytes. */
struct qd_client_model {
    struct qd_manifest m;
    uint8_t *qm; /* malloc'd, m.size bytes */
    size_t len;
    size_t wire;        /* bytes of model that crossed the wire (packed) */
    size_t reply_bytes; /* every fetch reply's bytes (with headers and manifests) */
    int chunks;
    char encoding[8];   /* how: raw, zstd, patch */
};

qd_err qd_client_open(struct qd_client *c, const char *control, const char *push, int timeout_ms);
void qd_client_close(struct qd_client *c);
/* key: 64 hex digits, or the path of a file holding them. */
qd_err qd_ident_init(struct qd_ident *who, const char *id, const char *key);
/* n bytes from v: 2n hex digits, or the path of a file holding them (keys, pinned keys). */
qd_err qd_client_hex_arg(const char *v, uint8_t *out, size_t n);

/* Adds v, from, nonce and the MAC to req (consumed) unless who is NULL. A JSON reply goes to
 * *reply (may be NULL), a binary one to *bin and *binlen (may be NULL: then it is an error). */
qd_err qd_client_call(struct qd_client *c, struct qd_ident *who, cJSON *req, cJSON **reply,
                      uint8_t **bin, size_t *binlen);
/* Same, for a request text the caller made (tests of malformed input): reply text malloc'd. */
qd_err qd_client_call_raw(struct qd_client *c, const void *msg, size_t len, char **reply,
                           size_t *rlen);

/* Adds the context's given fields to a request object. */
void qd_client_ctx_json(cJSON *req, const struct qd_client_ctx *ctx);

qd_err qd_client_hello(struct qd_client *c, struct qd_ident *who, const char *profile,
                       cJSON **reply);
qd_err qd_client_report(struct qd_client *c, struct qd_ident *who,
                        const struct qd_client_ctx *ctx, cJSON **reply);
/* Fetches a model in chunks (version 0: the current one; device NULL: who's own, else admin
 * fetching a device's) and accepts it only when its manifest verifies under pk, names that
 * device, has a version above `installed` and has not expired, and the bytes match it (see
 * proto/manifest.h for each refusal's code). With base (the installed version's bytes) the
 * daemon may send a patch against it; a patch against anything else is QD_EBASE. A chunk
 * that times out is asked for again from its offset (three times). */
qd_err qd_client_fetch(struct qd_client *c, struct qd_ident *who, const char *device,
                       int64_t version, int64_t installed, const uint8_t *base, size_t base_len,
                       const uint8_t pk[QD_PROTO_PUB_BYTES], struct qd_client_model *out);
void qd_client_model_fini(struct qd_client_model *m);
qd_err qd_client_ack(struct qd_client *c, struct qd_ident *who, int64_t version,
                     const char *sha);
/* The daemon's model-signing public key (admin). */
/* keys add|rotate (action) for device id: its new key, 64 hex digits, into key. The key comes
 * sealed to a one-time X25519 key of ours (crypto_box_seal), never in clear. */
qd_err qd_client_device_key(struct qd_client *c, struct qd_ident *admin, const char *action,
                            const char *id, char key[2 * QD_PROTO_KEY_BYTES + 1]);
qd_err qd_client_sign_pub(struct qd_client *c, struct qd_ident *admin,
                          uint8_t pk[QD_PROTO_PUB_BYTES]);

qd_err qd_client_subscribe(struct qd_client *c, const char *id);
/* Every device's notifications (an operator's watch; a subscriber without a key learns only
 * ids, versions, sizes and hashes). */
qd_err qd_client_subscribe_all(struct qd_client *c);
/* Waits for one notification (a device's new version: fetch it): QD_ETIMEDOUT when none came,
 * QD_EFORMAT when malformed. Unsigned: only the fetched manifest is trusted. */
qd_err qd_client_notify_recv(struct qd_client *c, int timeout_ms, struct qd_proto_note *n);
/* Tells the daemon what became of a version: kind "refused" (code: why), "selftest-failed",
 * "installed"; message may be NULL. Recorded as the device's event. */
qd_err qd_client_event(struct qd_client *c, struct qd_ident *who, const char *kind,
                       int64_t version, qd_err code, const char *message);

#endif
