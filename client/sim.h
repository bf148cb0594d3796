/* Simulated devices for quantctl simulate, the end-to-end test and the benchmark: N devices
 * of different profiles that register (keys from the admin), say hello, report contexts,
 * receive notifications, fetch and verify the models (the signed manifest, the bytes), run
 * them on test images with the device runtime and ack them; a refused model is reported back
 * as the device's event.
 *
 * Usage:
 *     struct qd_sim s;
 *     struct qd_sim_opts o = {.control = C, .push = P, .admin_key = "state/admin.key",
 *                             .devices = 50, .images = 50, .data_dir = "data"};
 *     qd_sim_open(&s, &o);                 // waits for the backbone, loads the test images
 *     qd_sim_provision(&s);                // keys add, subscribe, hello
 *     for (i...) qd_sim_report(&s, i, &ctx);
 *     qd_sim_collect(&s, 30000, 1);        // until every device holds what it was told
 *     qd_sim_close(&s);
 */
#ifndef QD_CLIENT_SIM_H
#define QD_CLIENT_SIM_H

#include "client/agent.h"
#include "client/client.h"
#include "nn/data.h"

struct qd_sim_opts {
    const char *control, *push, *admin_key, *data_dir, *prefix;
    const char *const *profiles; /* NULL: the six real parts */
    int nprofiles;
    const char *store_dir; /* each device installs into the agent's store in DIR/ID (NULL: none) */
    int devices, images, timeout_ms;
    int quiet;
};

struct qd_sim_dev {
    struct qd_ident who;
    const char *profile;
    int64_t want; /* the version the last reply named */
    char want_sha[65];
    char policy[256];
    struct qd_agent_store *store; /* what it holds (version, sha, bytes): the agent's store,
                                     in memory without store_dir */
    int64_t acked;
    double acc;   /* on the test images, of the model held; -1 before any */
    double flash; /* the decided model's predicted flash */
    /* the last decision's figures and the budgets it was made under (NAN: none), in the order
     * of enum qd_budget: flash, latency, energy, RAM */
    double cost[4], budget[4];
    int64_t pinned; /* the last reply: the device is held on this version (0: not) */
    int pushes, rejected;
    int nofit; /* the last report: no policy fits (the device keeps its model) */
    char nofit_msg[160];
    double t_report; /* when the report that asked for `want` was sent (s) */
    double push_lat; /* last report -> verified push, s */
};

struct qd_sim {
    struct qd_sim_opts o;
    struct qd_client c;
    struct qd_ident admin;
    uint8_t pk[QD_PROTO_PUB_BYTES];
    struct qd_sim_dev *dev;
    int n;
    struct qd_dataset te;
    int have_te;
    char data[32];
    long pushes, verified, rejected, acks, duplicates;
    long packed[3], wire_bytes, model_bytes; /* fetches by packing (raw, zstd, patch) */
    long reply_bytes;                        /* every fetch reply's bytes */
    long selftest_failed;
};

qd_err qd_sim_open(struct qd_sim *s, const struct qd_sim_opts *o);
qd_err qd_sim_provision(struct qd_sim *s);
/* Says hello again (a device reconnecting after the daemon restarted). */
qd_err qd_sim_hello_all(struct qd_sim *s);
qd_err qd_sim_report(struct qd_sim *s, int i, const struct qd_client_ctx *ctx);
/* A new subscriber socket, every device subscribed again (after the daemon restarted: nanomsg's
 * SUB does not reconnect over ipc://, so notifications would be lost until then). */
qd_err qd_sim_resubscribe(struct qd_sim *s);
/* Every device's `want` from the registry (after re-decisions the daemon made on its own). */
qd_err qd_sim_refresh(struct qd_sim *s);
/* The budget that bound a device's last decision: the one its figure came closest to (share of
 * it into *share), -1 when none was given. */
int qd_sim_binding(const struct qd_sim_dev *d, double *share);
extern const char *const QD_SIM_BUDGET_NAME[4]; /* flash, latency_ms, energy_mj, ram */
/* Receives notifications and fetches until every device has verified the version it was last told
 * (acking each when ack is set), or timeout_ms passes: QD_ETIMEDOUT naming how many are missing. */
qd_err qd_sim_collect(struct qd_sim *s, int timeout_ms, int ack);
void qd_sim_close(struct qd_sim *s);
/* Wall clock, seconds (monotonic). */
double qd_sim_now(void);

#endif
