/* Device profile loading (INI via inih). Every key is checked: known, well formed, in range. */
#include "policy/device.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const qd_device_parts[QD_DEVICE_PARTS] = {
    "cortex-m4", "cortex-m7", "esp32", "rp2040", "cortex-a53", "raspberry-pi-4", "pynq-z1"};

qd_err qd_parse_size(const char *s, double *bytes)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || !isfinite(v))
        return qd_seterr(QD_EINVAL, "bad size \"%s\"", s);
    double mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'M')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'G')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end)
        return qd_seterr(QD_EINVAL, "bad size \"%s\" (want a number with k, M or G)", s);
    if (!isfinite(v * mul)) /* "1e308G": a finite number, an infinite size */
        return qd_seterr(QD_EINVAL, "bad size \"%s\" (too large)", s);
    *bytes = v * mul;
    return QD_OK;
}

struct ctx {
    struct qd_device *d;
    unsigned seen;  /* bit per required key */
    char err[256];
};

enum { K_FLASH, K_RAM, K_CLOCK, K_WBITS, K_ABITS, K_MAC2, K_MAC4, K_MAC8, K_MAC16, K_PJ2, K_PJ4,
       K_PJ8, K_PJ16, K_NREQ };
static const char *req_names[] = {"flash", "ram", "clock_mhz", "weight_bits", "act_bits",
                                  "mac_w2", "mac_w4", "mac_w8", "mac_w16", "pj_per_mac_w2",
                                  "pj_per_mac_w4", "pj_per_mac_w8", "pj_per_mac_w16"};

static int number(const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi))
        return 0;
    *out = x;
    return 1;
}

static int bitlist(const char *v, int *ok)
{
    memset(ok, 0, 17 * sizeof *ok);
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    int n = 0;
    for (char *t = strtok(buf, ", "); t; t = strtok(NULL, ", ")) {
        char *end;
        long b = strtol(t, &end, 10);
        if (*end || (b != 2 && b != 4 && b != 8 && b != 16))
            return 0;
        ok[b] = 1, n++;
    }
    return n > 0;
}

/* inih (the Debian build) gives the handler no line; ini_parse returns the failing line. */
static int handler(void *user, const char *sec, const char *key, const char *val)
{
    struct ctx *c = user;
    struct qd_device *d = c->d;
    double x = 0;
    int ok = 1, req = -1;
#define BAD(what)                                                                                  \
    do {                                                                                           \
        snprintf(c->err, sizeof c->err, "[%s] %s = %s: %s", sec, key, val, what);  \
        return 0;                                                                                  \
    } while (0)
    if (!strcmp(sec, "device")) {
        if (!strcmp(key, "name"))
            snprintf(d->name, sizeof d->name, "%s", val);
        else if (!strcmp(key, "description"))
            snprintf(d->description, sizeof d->description, "%s", val);
        else if (!strcmp(key, "flash"))
            ok = !qd_parse_size(val, &d->flash) && d->flash > 0, req = K_FLASH;
        else if (!strcmp(key, "ram"))
            ok = !qd_parse_size(val, &d->ram) && d->ram > 0, req = K_RAM;
        else if (!strcmp(key, "reserved_flash"))
            ok = !qd_parse_size(val, &d->reserved_flash);
        else if (!strcmp(key, "reserved_ram"))
            ok = !qd_parse_size(val, &d->reserved_ram);
        else if (!strcmp(key, "clock_mhz"))
            ok = number(val, 1e-3, 1e6, &d->clock_mhz), req = K_CLOCK;
        else if (!strcmp(key, "weight_bits"))
            ok = bitlist(val, d->wbits_ok), req = K_WBITS;
        else if (!strcmp(key, "act_bits"))
            ok = bitlist(val, d->abits_ok) && !d->abits_ok[2] && !d->abits_ok[4], req = K_ABITS;
        else if (!strcmp(key, "weights_in_ram"))
            ok = number(val, 0, 1, &x), d->weights_in_ram = x != 0;
        else
            BAD("unknown key");
    } else if (!strcmp(sec, "cycles")) {
        static const char *mk[] = {"mac_w2", "mac_w4", "mac_w8", "mac_w16"};
        int found = 0;
        for (int i = 0; i < 4; i++)
            if (!strcmp(key, mk[i])) {
                ok = number(val, 0, 1e6, &d->mac_cycles[2 << i]), req = K_MAC2 + i, found = 1;
            }
        if (found)
            ;
        else if (!strcmp(key, "act16"))
            ok = number(val, 0, 1e4, &d->act16);
        else if (!strcmp(key, "depthwise"))
            ok = number(val, 0, 1e4, &d->depthwise);
        else if (!strcmp(key, "act16_w16"))
            ok = number(val, 0, 1e4, &d->act16_w16);
        else if (!strcmp(key, "depthwise_16"))
            ok = number(val, 0, 1e4, &d->depthwise_16);
        else if (!strcmp(key, "per_output"))
            ok = number(val, 0, 1e6, &d->per_output);
        else if (!strcmp(key, "per_output_16"))
            ok = number(val, 0, 1e6, &d->per_output_16);
        else if (!strcmp(key, "per_element_16"))
            ok = number(val, 0, 1e6, &d->per_element_16);
        else if (!strcmp(key, "per_byte"))
            ok = number(val, 0, 1e6, &d->per_byte);
        else if (!strcmp(key, "per_layer"))
            ok = number(val, 0, 1e12, &d->per_layer);
        else if (!strcmp(key, "per_element"))
            ok = number(val, 0, 1e6, &d->per_element);
        else
            BAD("unknown key");
    } else if (!strcmp(sec, "kernels")) {
        int found = 0;
        d->kernels = 1;
        for (int i = 0; i < QD_KF_COUNT && !found; i++)
            if (!strcmp(key, qd_kf_keys[i]))
                ok = number(val, 0, 1e9, &d->kcoef[i]), found = 1;
        if (found)
            ;
        else if (!strcmp(key, "simd_lanes"))
            ok = number(val, 1, 64, &x), d->k_lanes = (int)x;
        else if (!strcmp(key, "simd_group"))
            ok = number(val, 1, 64, &x), d->k_group = (int)x;
        else if (!strcmp(key, "simd_tile"))
            ok = sscanf(val, "%d,%d,%d,%d", &d->k_tile[1], &d->k_tile[2], &d->k_tile[3],
                        &d->k_tile[4]) == 4 && d->k_tile[1] > 0 && d->k_tile[2] > 0 &&
                 d->k_tile[3] > 0 && d->k_tile[4] > 0;
        else if (!strcmp(key, "watts"))
            ok = number(val, 0, 1e4, &d->k_watts);
        else
            BAD("unknown key");
    } else if (!strcmp(sec, "mcu_kernels")) {
        int found = 0;
        d->mcu = 1;
        for (int i = 0; i < QD_MF_COUNT && !found; i++)
            if (!strcmp(key, qd_mf_keys[i]))
                ok = number(val, 0, 1e9, &d->mcoef[i]), found = 1;
        if (found)
            ;
        else if (!strcmp(key, "cpi"))
            ok = number(val, 0.1, 100, &d->cpi);
        else
            BAD("unknown key");
    } else if (!strcmp(sec, "energy")) {
        static const char *ek[] = {"pj_per_mac_w2", "pj_per_mac_w4", "pj_per_mac_w8",
                                   "pj_per_mac_w16"};
        int found = 0;
        for (int i = 0; i < 4; i++)
            if (!strcmp(key, ek[i])) {
                ok = number(val, 0, 1e9, &d->pj_mac[2 << i]), req = K_PJ2 + i, found = 1;
            }
        if (found)
            ;
        else if (!strcmp(key, "pj_per_byte"))
            ok = number(val, 0, 1e9, &d->pj_byte);
        else
            BAD("unknown key");
    } else {
        BAD("unknown section");
    }
    if (!ok)
        BAD("bad value");
    if (req >= 0)
        c->seen |= 1u << req;
    return 1;
#undef BAD
}

#define QD_KF_KEY(name, key) key,
const char *const qd_kf_keys[QD_KF_COUNT] = {QD_KF_MAP(QD_KF_KEY)};
const char *const qd_mf_keys[QD_MF_COUNT] = {QD_MF_MAP(QD_KF_KEY)};
#undef QD_KF_KEY

static int readable(const char *p)
{
    return access(p, R_OK) == 0;
}

/* name -> path: $QD_DEVICE_DIR, ./etc/devices, <exe dir>/../etc/devices */
static void resolve(const char *name, char *out, size_t len)
{
    if (strchr(name, '/') || strstr(name, ".ini")) {
        snprintf(out, len, "%s", name);
        return;
    }
    const char *env = getenv("QD_DEVICE_DIR");
    if (env) {
        snprintf(out, len, "%s/%s.ini", env, name);
        if (readable(out))
            return;
    }
    snprintf(out, len, "etc/devices/%s.ini", name);
    if (readable(out))
        return;
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *s = strrchr(exe, '/');
        if (s)
            *s = 0;
        snprintf(out, len, "%.300s/../etc/devices/%.100s.ini", exe, name);
        if (readable(out))
            return;
    }
    snprintf(out, len, "etc/devices/%s.ini", name);
}

qd_err qd_device_load(const char *name, struct qd_device *d)
{
    memset(d, 0, sizeof *d);
    d->act16 = 1, d->depthwise = 1;
    d->act16_w16 = d->depthwise_16 = d->per_element_16 = d->per_output_16 = -1; /* defaults below */
    resolve(name, d->path, sizeof d->path);
    struct ctx c = {.d = d};
    int rc = ini_parse(d->path, handler, &c);
    if (rc < 0)
        return qd_seterr(QD_ENOENT, "device %s: cannot read %s", name, d->path);
    if (rc > 0)
        return qd_seterr(QD_EFORMAT, "device %s: line %d: %s", d->path, rc,
                         c.err[0] ? c.err : "syntax error");
    for (int k = 0; k < K_NREQ; k++)
        if (!(c.seen & (1u << k)))
            return qd_seterr(QD_EFORMAT, "device %s: missing key %s", d->path, req_names[k]);
    if (!d->name[0])
        snprintf(d->name, sizeof d->name, "%s", name);
    if (d->act16_w16 < 0)
        d->act16_w16 = d->act16;
    if (d->depthwise_16 < 0)
        d->depthwise_16 = d->depthwise;
    if (d->per_output_16 < 0)
        d->per_output_16 = d->per_output;
    if (d->per_element_16 < 0)
        d->per_element_16 = d->per_element * d->act16;
    if (d->mcu && d->cpi <= 0)
        return qd_seterr(QD_EFORMAT, "device %s: [mcu_kernels] needs cpi", d->path);
    if (d->kernels && d->mcu)
        return qd_seterr(QD_EFORMAT, "device %s: [kernels] and [mcu_kernels] exclude each other",
                         d->path);
    if (d->kernels && (d->k_lanes < 1 || d->k_group < 1 || d->k_tile[1] < 1))
        return qd_seterr(QD_EFORMAT, "device %s: [kernels] needs simd_lanes, simd_group and "
                                     "simd_tile", d->path);
    if (d->reserved_flash >= d->flash || d->reserved_ram >= d->ram)
        return qd_seterr(QD_EFORMAT, "device %s: reserved flash/RAM leave nothing for the model",
                         d->path);
    return QD_OK;
}
