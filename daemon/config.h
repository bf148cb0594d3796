/* quantd's configuration: one table of keys (section, name, type, range, whether SIGHUP can
 * change it), read from an INI file with inih, every key also a flag (--state-dir DIR or
 * --state-dir=DIR for state_dir). A bad file or flag is an error naming the file, line and key.
 *
 * Usage:
 *     struct qd_config c;
 *     qd_config_defaults(&c);
 *     if (qd_config_load_file(&c, "etc/quantd.conf")) die(qd_errmsg());  // "file:12: ..."
 *     if (qd_config_apply_flags(&c, argc, argv)) die(qd_errmsg());
 */
#ifndef QD_DAEMON_CONFIG_H
#define QD_DAEMON_CONFIG_H

#include <stdio.h>

#include "core/err.h"

struct qd_config {
    /* [quantd] */
    char control[256], push[256], state_dir[1024], log_level[16], metrics[256];
    double ack_timeout_ms, max_message, push_rate, fetch_chunk, manifest_ttl_s, pack_level;
    double unauth_rate;
    int threads, keys_in_clear, max_jobs;
    /* [backbone] */
    char ckpt[1024], model[32], data[32], data_dir[1024], gate[1024];
    int train_epochs, train_subset, sens_n, calib_n, bn_batches, supernet_epochs, gate_steps;
    int supernet_sandwich, supernet_kd_self, supernet_bn_sets, gate_probe;
    double supernet_kd;
    /* [decide] */
    char devices_dir[1024];
    double battery_floor;
    /* [retention] */
    double sweep_s, decisions_days, events_days;
    int versions_max, decisions_max, events_max;
};

void qd_config_defaults(struct qd_config *c);
qd_err qd_config_load_file(struct qd_config *c, const char *path);
/* Applies every --key[=value] flag; skips -c FILE. Unknown flags are errors, as are keys that
 * contradict each other (after the file and the flags). */
qd_err qd_config_apply_flags(struct qd_config *c, int argc, char **argv);
/* Names the keys whose change needs a restart, comparing old with new ("" if none). */
void qd_config_restart_keys(const struct qd_config *old, const struct qd_config *c, char *buf,
                            size_t len);
void qd_config_usage(FILE *f);

#endif
