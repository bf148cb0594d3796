/* The wire format of quantd: authenticated JSON control messages, error replies with stable
 * codes, signed model frames (fetch replies and pushes). Pure functions over bytes; the
 * sockets are in transport.h.
 *
 * Usage (a device signing a request; the daemon opening it):
 *     char *txt;   // {"v":1,"op":"report","from":"dev-1","nonce":...,"battery":0.4,"mac":"..."}
 *     qd_proto_seal(req_json_without_mac, key, &txt);        // malloc'd
 *     cJSON *j; const char *from;
 *     qd_proto_parse(txt, len, QD_PROTO_MAX_REQUEST, &j);     // size, UTF-8 JSON object, v == 1
 *     qd_proto_verify(txt, len, key);                         // HMAC-SHA256 over the body
 *
 * Requests: a JSON object {"v":1,"op":NAME,"from":ID,"nonce":N,...,"mac":HEX}. The MAC is
 * HMAC-SHA256 (libsodium) under the sender's 32-byte key over every byte of the message before
 * the final member `,"mac":"<64 hex>"}` (which must be last, exactly so), so nothing is
 * re-serialized to check it. `from` is a device id or "admin". The nonce is the sender's clock in
 * microseconds since the epoch, strictly increasing per key; the daemon rejects one not above
 * the last it accepted from that key or more than QD_PROTO_NONCE_WINDOW_US from its own clock.
 * `health` alone needs no MAC.
 *
 * Replies: {"v":1,"ok":true,...} or {"v":1,"ok":false,"error":{"code":"EBUDGET","message":..}}
 * with the code one of qd_err_name()'s. A model reply is binary: the .qm bytes then a 64-byte
 * Ed25519 signature of them by the daemon's signing key. A push on the PUB socket is
 * "<device id>\0" + a JSON header line {"v":1,"op":"push","version":N,"sha256":HEX,...} + "\n"
 * + the same signed model bytes; the device id ends in \0 so that SUB prefix matching is exact.
 */
#ifndef QD_PROTO_PROTO_H
#define QD_PROTO_PROTO_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define QD_PROTO_VERSION 1
#define QD_PROTO_MAX_REQUEST (64 * 1024)  /* default limit on a control request */
#define QD_PROTO_MAX_ID 63                /* device id: [A-Za-z0-9._-]{1,63} */
#define QD_PROTO_KEY_BYTES 32
#define QD_PROTO_SIG_BYTES 64
#define QD_PROTO_PUB_BYTES 32
#define QD_PROTO_SECRET_BYTES 64
#define QD_PROTO_MAC_TAIL 74              /* strlen(",\"mac\":\"") + 64 + strlen("\"}") */
#define QD_PROTO_NONCE_WINDOW_US (300LL * 1000000)

/* Appends the MAC member to `json` (an object's text, ending in '}'); *out is malloc'd. */
qd_err qd_proto_seal(const char *json, const uint8_t key[QD_PROTO_KEY_BYTES], char **out);
/* Checks the MAC of a sealed message of len bytes: QD_EAUTH when absent, misplaced or wrong. */
qd_err qd_proto_verify(const char *msg, size_t len, const uint8_t key[QD_PROTO_KEY_BYTES]);
/* Parses a request: size <= max (QD_ETOOBIG), a JSON object (QD_EFORMAT), "v" == 1
 * (QD_EVERSION), "op" a string. *out is the parsed object (cJSON_Delete it). */
qd_err qd_proto_parse(const char *msg, size_t len, size_t max, cJSON **out);

/* Validated field access: QD_EINVAL naming the field when it is absent (required), of the
 * wrong type, out of range or too long. Absent and optional: *out unchanged, returns QD_OK. */
qd_err qd_proto_str(const cJSON *o, const char *name, size_t maxlen, int required,
                    const char **out);
qd_err qd_proto_num(const cJSON *o, const char *name, double lo, double hi, int required,
                    double *out);
qd_err qd_proto_int(const cJSON *o, const char *name, int64_t lo, int64_t hi, int required,
                    int64_t *out);
/* A device id or profile name: 1..QD_PROTO_MAX_ID of [A-Za-z0-9._-], not starting with '.'. */
int qd_proto_id_ok(const char *s);

/* {"v":1,"ok":false,"error":{"code":..,"message":..}} as malloc'd text. */
char *qd_proto_error(qd_err e, const char *message);
/* A fresh reply object {"v":1,"ok":true}. */
cJSON *qd_proto_ok(void);

/* Hex of n bytes into out (2n + 1); parse back, QD_EINVAL unless exactly 2n hex digits. */
void qd_proto_hex(const uint8_t *b, size_t n, char *out);
qd_err qd_proto_unhex(const char *s, uint8_t *b, size_t n);
/* SHA-256 of a blob as 64 hex digits. */
void qd_proto_sha256_hex(const uint8_t *b, size_t n, char out[65]);

/* Ed25519 over the model bytes; verify: QD_EAUTH when the signature does not match. */
void qd_proto_sign(const uint8_t *qm, size_t len, const uint8_t sk[QD_PROTO_SECRET_BYTES],
                   uint8_t sig[QD_PROTO_SIG_BYTES]);
qd_err qd_proto_verify_model(const uint8_t *qm, size_t len, const uint8_t sig[QD_PROTO_SIG_BYTES],
                             const uint8_t pk[QD_PROTO_PUB_BYTES]);

/* A notification on PUB: the topic (the device id with its NUL), then one JSON line
 * {"v":1,"op":"notify","device":..,"version":..,"sha256":..,"size":..}. Unsigned and without
 * model bytes: only a hint that makes the device fetch over its authenticated channel, where
 * the signed manifest decides. */
struct qd_proto_note {
    char id[QD_PROTO_MAX_ID + 1];
    int64_t version, size;
    char sha[65];
};
qd_err qd_proto_note_encode(const struct qd_proto_note *n, uint8_t **out, size_t *outlen);
qd_err qd_proto_note_decode(const uint8_t *buf, size_t len, struct qd_proto_note *n);

/* A fetch reply (binary): "QDF1", one JSON header line {"version":..,"offset":..,"total":..,
 * "encoding":"raw"|"zstd"|"patch","base":..,"manifest_len":..}, the manifest text, its
 * signature, then bytes [offset, offset + len) of the encoded model (total bytes in all). */
#define QD_PROTO_CHUNK_MAGIC "QDF1"
struct qd_proto_chunk {
    cJSON *header; /* parsed; cJSON_Delete it */
    int64_t version, offset, total, base;
    const char *encoding;  /* inside header */
    const char *manifest;  /* manifest_len bytes inside buf */
    size_t manifest_len;
    const uint8_t *sig;    /* 64 bytes inside buf */
    const uint8_t *data;   /* len bytes inside buf */
    size_t len;
};
qd_err qd_proto_chunk_encode(const char *header, const char *manifest, size_t mlen,
                             const uint8_t sig[QD_PROTO_SIG_BYTES], const uint8_t *data,
                             size_t len, uint8_t **out, size_t *outlen);
/* Views into buf; QD_EFORMAT when malformed or inconsistent (a chunk past total, ...). */
qd_err qd_proto_chunk_decode(const uint8_t *buf, size_t len, struct qd_proto_chunk *c);

/* A device's context (report, decide): what it can spare now. NAN: not given. On the wire
 * each is an optional number field of the same name, at most 1e12 bytes, 1e9 ms or mJ, and a
 * battery level in 0..1. */
struct qd_proto_ctx {
    double free_flash, free_ram; /* bytes */
    double latency_ms, energy_mj;
    double battery;              /* 0..1 */
};
#define QD_PROTO_CTX_NONE ((struct qd_proto_ctx){NAN, NAN, NAN, NAN, NAN})
/* Reads the context fields of j (absent: NAN); QD_EINVAL naming a field out of range. */
qd_err qd_proto_ctx_read(const cJSON *j, struct qd_proto_ctx *c);
/* Adds the given fields of c to j. */
void qd_proto_ctx_write(cJSON *j, const struct qd_proto_ctx *c);

/* Microseconds since the epoch (the nonce clock). */
int64_t qd_proto_now_us(void);

#endif
