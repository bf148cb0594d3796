/* Datasets: IDX and CIFAR readers on small files made here (good and damaged), the PNG sprite
 * converter, and, when the real files are present, their sizes, digests and label balance.
 * QD_REQUIRE_DATA=1 (set by scripts/test.sh, which fetches them) turns absence into failure. */
#include "testutil.h"

#include <png.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/err.h"
#include "core/md5.h"
#include "nn/data.h"

static char *dir;

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

/* Writes an IDX file: magic, dims, then `n` bytes of data (gzip if gz). */
static void write_idx(const char *path, uint32_t magic, const uint32_t *dims, int nd,
                      const uint8_t *data, size_t n, int gz)
{
    uint8_t hdr[16];
    put_be32(hdr, magic);
    for (int i = 0; i < nd && i < 3; i++)
        put_be32(hdr + 4 + 4 * i, dims[i]);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, hdr, 4 + 4 * nd);
        if (n)
            gzwrite(f, data, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(hdr, 1, 4 + 4 * nd, f);
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static void make_mnist_like(const char *sub, int gz, int n, int bad_label)
{
    char d[512], p[600];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    mkdir(d, 0755);
    const char *sfx = gz ? ".gz" : "";
    uint8_t *img = malloc((size_t)n * 784), *lab = malloc(n);
    for (int i = 0; i < n * 784; i++)
        img[i] = (uint8_t)(i * 7);
    for (int i = 0; i < n; i++)
        lab[i] = (uint8_t)(i % 10);
    if (bad_label)
        lab[n - 1] = 10;
    uint32_t di[3] = {n, 28, 28}, dl[1] = {n};
    for (int t = 0; t < 2; t++) {
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", d, t ? "t10k" : "train", sfx);
        write_idx(p, 0x803, di, 3, img, (size_t)n * 784, gz);
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", d, t ? "t10k" : "train", sfx);
        write_idx(p, 0x801, dl, 1, lab, n, gz);
    }
    free(img);
    free(lab);
}

static void idx_loads_plain_and_gzip(void **st)
{
    make_mnist_like("mnist", 0, 30, 0);
    make_mnist_like("fashion-mnist", 1, 20, 0);
    struct qd_dataset ds;
    assert_int_equal(qd_data_load(dir, "mnist", 1, &ds), QD_OK);
    assert_int_equal(ds.n, 30);
    assert_int_equal(ds.c, 1);
    assert_int_equal(ds.h, 28);
    assert_int_equal(ds.x[785], (uint8_t)(785 * 7));
    assert_int_equal(ds.y[13], 3);
    qd_dataset_fini(&ds);
    assert_int_equal(qd_data_load(dir, "fmnist", 0, &ds), QD_OK);
    assert_int_equal(ds.n, 20);
    assert_string_equal(ds.name, "fashion-mnist");
    qd_dataset_fini(&ds);
    assert_int_equal(qd_data_load(dir, "imagenet", 0, &ds), QD_EINVAL);
}

static void idx_rejects_damage_naming_the_file(void **st)
{
    char p[600];
    snprintf(p, sizeof p, "%s/x.idx", dir);
    uint8_t data[100] = {0};
    uint32_t d3[3] = {2, 5, 10}, d1[1] = {100};
    int dims[3];
    uint8_t *out;
    struct {
        uint32_t magic;
        const uint32_t *dims;
        int nd;
        size_t n;
        int want_nd;
        const char *needle;
    } cases[] = {
        {0x803, d3, 3, 100, 3, NULL},              /* good */
        {0x903, d3, 3, 100, 3, "bad IDX magic"},   /* wrong type byte */
        {0x801, d1, 1, 100, 3, "bad IDX magic"},   /* labels where images expected */
        {0x803, d3, 3, 99, 3, "truncated"},        /* one byte short */
        {0x803, d3, 3, 100, 1, "bad IDX magic"},   /* */
        {0x803, d3, 1, 0, 3, "truncated IDX header"},
    };
    for (int gz = 0; gz < 2; gz++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            write_idx(p, cases[i].magic, cases[i].dims, cases[i].nd, data, cases[i].n, gz);
            qd_err e = qd_idx_load(p, cases[i].want_nd, dims, &out);
            if (!cases[i].needle) {
                assert_int_equal(e, QD_OK);
                assert_int_equal(dims[0] * dims[1] * dims[2], 100);
                free(out);
                continue;
            }
            assert_int_equal(e, QD_EFORMAT);
            if (!strstr(qd_errmsg(), cases[i].needle) || !strstr(qd_errmsg(), "x.idx"))
                fail_msg("case %zu: '%s' lacks '%s' or the file name", i, qd_errmsg(),
                         cases[i].needle);
        }
    /* trailing garbage */
    uint8_t more[101] = {0};
    write_idx(p, 0x803, d3, 3, more, 101, 0);
    assert_int_equal(qd_idx_load(p, 3, dims, &out), QD_EFORMAT);
    assert_non_null(strstr(qd_errmsg(), "trailing"));
    /* label out of range and count mismatch, through the dataset loader */
    make_mnist_like("mnist", 0, 10, 1);
    struct qd_dataset ds;
    assert_int_equal(qd_data_load(dir, "mnist", 1, &ds), QD_EFORMAT);
    assert_non_null(strstr(qd_errmsg(), "label 10"));
    make_mnist_like("mnist", 0, 10, 0);
    snprintf(p, sizeof p, "%s/mnist/train-labels-idx1-ubyte", dir);
    uint32_t d9[1] = {9};
    write_idx(p, 0x801, d9, 1, data, 9, 0);
    assert_int_equal(qd_data_load(dir, "mnist", 1, &ds), QD_EFORMAT);
    assert_non_null(strstr(qd_errmsg(), "9 labels for 10 images"));
    snprintf(p, sizeof p, "%s/nope", dir);
    assert_int_equal(qd_data_load(p, "mnist", 1, &ds), QD_ENOENT);
    assert_non_null(strstr(qd_errmsg(), "data fetch"));
}

/* A 1024 x n RGB PNG whose pixel (r, i) has channels (r+i, 2i, 255-r) mod 256. */
static void write_png(const char *path, int n, int width)
{
    FILE *f = fopen(path, "wb");
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    png_init_io(p, f);
    png_set_IHDR(p, info, width, n, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    uint8_t *row = malloc(3 * width);
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < width; i++) {
            row[3 * i] = (uint8_t)(r + i);
            row[3 * i + 1] = (uint8_t)(2 * i);
            row[3 * i + 2] = (uint8_t)(255 - r);
        }
        png_write_row(p, row);
    }
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
    free(row);
}

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    fputs(s, f);
    fclose(f);
}

static void cifar_png_conversion_and_reader(void **st)
{
    char png[600], js[600], out[600];
    snprintf(png, sizeof png, "%s/s.png", dir);
    snprintf(js, sizeof js, "%s/l.json", dir);
    snprintf(out, sizeof out, "%s/b.bin", dir);
    write_png(png, 3, 1024);
    write_text(js, "[9, 1, 4, 7, 2]");
    assert_int_equal(qd_cifar_from_png(png, js, 2, out), QD_OK);
    struct qd_dataset ds = {0};
    assert_int_equal(qd_cifar_load(out, &ds), QD_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.y[0], 4);
    assert_int_equal(ds.y[2], 2);
    /* record 1: R plane at 0, G at 1024, B at 2048; pixel i */
    const uint8_t *x = ds.x + 3072;
    assert_int_equal(x[5], (uint8_t)(1 + 5));
    assert_int_equal(x[1024 + 700], (uint8_t)(1400));
    assert_int_equal(x[2048 + 1023], 254);
    /* a second batch appends */
    assert_int_equal(qd_cifar_load(out, &ds), QD_OK);
    assert_int_equal(ds.n, 6);
    assert_int_equal(ds.y[3], 4);
    qd_dataset_fini(&ds);
    /* damage: too few labels, bad JSON, wrong width, not a PNG, partial record */
    assert_int_equal(qd_cifar_from_png(png, js, 3, out), QD_EFORMAT);
    write_text(js, "[9, 1, \"x\"]");
    assert_int_equal(qd_cifar_from_png(png, js, 0, out), QD_EFORMAT);
    write_text(js, "{");
    assert_int_equal(qd_cifar_from_png(png, js, 0, out), QD_EFORMAT);
    write_text(js, "[1,2,3,4]");
    write_png(png, 2, 512);
    assert_int_equal(qd_cifar_from_png(png, js, 0, out), QD_EFORMAT);
    assert_non_null(strstr(qd_errmsg(), "1024"));
    write_text(png, "not a png at all");
    assert_int_equal(qd_cifar_from_png(png, js, 0, out), QD_EFORMAT);
    FILE *f = fopen(out, "ab");
    fputc(1, f);
    fclose(f);
    assert_int_equal(qd_cifar_load(out, &ds), QD_EFORMAT);
    assert_non_null(strstr(qd_errmsg(), "b.bin"));
    qd_dataset_fini(&ds);
}

static void real_files_when_present(void **st)
{
    char d[1024], p[1100];
    real_data_dir("cifar10/test_batch.bin", d, sizeof d);
    snprintf(p, sizeof p, "%s/cifar10/test_batch.bin", d);
    char hex[33];
    assert_int_equal(qd_md5_file(p, hex), QD_OK);
    assert_string_equal(hex, "803d5f7f4d78ea53de84dbe85f74fb6d");
    snprintf(p, sizeof p, "%s/mnist/t10k-images-idx3-ubyte", d);
    assert_int_equal(qd_md5_file(p, hex), QD_OK);
    assert_string_equal(hex, "2646ac647ad5339dbf082846283269ea");
    const char *names[] = {"mnist", "fashion-mnist", "cifar10"};
    int ntrain[] = {60000, 60000, 50000};
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < 2; t++) {
            struct qd_dataset ds;
            if (qd_data_load(d, names[i], t, &ds))
                fail_msg("%s", qd_errmsg());
            assert_int_equal(ds.n, t ? ntrain[i] : 10000);
            int cnt[10] = {0};
            for (int k = 0; k < ds.n; k++)
                cnt[ds.y[k]]++;
            for (int k = 0; k < 10; k++) /* every class present in a sane share */
                assert_true(cnt[k] > ds.n / 20 && cnt[k] < ds.n / 5);
            qd_dataset_fini(&ds);
        }
}

static int setup(void **st)
{
    int rc = tmpdir_setup(st);
    dir = (char *)tmpdir();
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idx_loads_plain_and_gzip),
        cmocka_unit_test(idx_rejects_damage_naming_the_file),
        cmocka_unit_test(cifar_png_conversion_and_reader),
        cmocka_unit_test(real_files_when_present),
    };
    return cmocka_run_group_tests(tests, setup, tmpdir_teardown);
}
