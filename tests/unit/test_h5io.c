// HDF5 helpers: bit-exact round trips (all ranks, scalars included), chunking
// with Fletcher-32, attributes as h5py writes them, and bad files (missing,
// not HDF5, truncated, flipped bytes, wrong shapes) failing with one line and
// exit 1, never a crash or silently wrong data (checked in forked children).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests.h"
#include "base/h5io.h"


// Under -fsanitize=address: HDF5 itself leaks a few bytes on some corrupt-file
// error paths (in the byte-flip children); those leaks are not ours.
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "print_suppressions=0"; }

static void tmp_h5(char *path) {
    strcpy(path, "/tmp/sprec_test_XXXXXX.h5");
    int fd = mkstemps(path, 3);
    assert_true(fd >= 0);
    close(fd);
}

// Runs fn(path) in a child; asserts exit 1 and a single stderr line containing want.
static void expect_child_error(void (*fn)(void *), const char *path, const char *want) {
    char err[4096];
    int rc = run_forked(fn, (void *)path, err, sizeof err);
    size_t n = strlen(err);
    if (rc != 1 || !strstr(err, want) || strncmp(err, "sprec: error: ", 14) != 0 || n == 0 ||
        strchr(err, '\n') != err + n - 1)
        fail_msg("exit %d, stderr:\n%s\nwanted one line containing: %s", rc, err, want);
}

static void test_h5_roundtrip(void **state) {
    (void)state;
    char path[64];
    tmp_h5(path);
    // odd values must survive bit for bit: -0, denormal, inf, NaN with payload
    uint32_t bits[7] = {0x80000000u, 0x00000001u, 0x7f800000u, 0x7fc12345u, 0x3f800000u, 0xc0490fdbu, 0x12345678u};
    float f[24];
    int i32[24];
    for (int i = 0; i < 24; i++) {
        if (i < 7) memcpy(&f[i], &bits[i], 4);
        else f[i] = sinf((float)i) * 1e3f;
        i32[i] = i % 2 ? -2147483647 - 1 + i : 2147483647 - i;
    }
    long d0[1] = {0}, d1[1] = {24}, d2[2] = {4, 6}, d3[3] = {2, 3, 4}, dz[2] = {0, 5};
    hid_t h = h5_create(path);
    h5_write_f32(h, "loss", 0, NULL, &f[5]);
    h5_write_f32(h, "f1", 1, d1, f);
    h5_write_f32(h, "f2", 2, d2, f);
    h5_write_f32(h, "f3", 3, d3, f);
    h5_write_i32(h, "n", 0, NULL, &i32[3]);
    h5_write_i32(h, "i1", 1, d1, i32);
    h5_write_i32(h, "i2", 2, d2, i32);
    h5_write_i32(h, "i3", 3, d3, i32);
    h5_write_f32(h, "empty", 2, dz, f);
    h5_write_f32(h, "empty1", 1, d0, f);
    h5_close(h);

    h = h5_open_read(path);
    long any2[2] = {-1, -1}, any1[1] = {-1};
    float *loss = h5_read_f32(h, path, "loss", 0, NULL);
    assert_memory_equal(loss, &f[5], 4);
    float *g1 = h5_read_f32(h, path, "f1", 1, any1);
    assert_int_equal(any1[0], 24);
    assert_memory_equal(g1, f, sizeof f);
    float *g2 = h5_read_f32(h, path, "f2", 2, any2);
    assert_true(any2[0] == 4 && any2[1] == 6);
    assert_memory_equal(g2, f, sizeof f);
    long want3[3] = {2, -1, 4};
    float *g3 = h5_read_f32(h, path, "f3", 3, want3);
    assert_true(want3[1] == 3);
    assert_memory_equal(g3, f, sizeof f);
    float into[24];
    h5_read_f32_into(h, path, "f3", 3, d3, into);
    assert_memory_equal(into, f, sizeof f);
    int *n = h5_read_i32(h, path, "n", 0, NULL);
    assert_int_equal(*n, i32[3]);
    int *j1 = h5_read_i32(h, path, "i1", 1, (long[]){24});
    assert_memory_equal(j1, i32, sizeof i32);
    int *j2 = h5_read_i32(h, path, "i2", 2, (long[]){4, 6});
    assert_memory_equal(j2, i32, sizeof i32);
    long a3[3] = {-1, -1, -1};
    int *j3 = h5_read_i32(h, path, "i3", 3, a3);
    assert_memory_equal(j3, i32, sizeof i32);
    long ez[2] = {-1, -1};
    float *e = h5_read_f32(h, path, "empty", 2, ez);
    assert_true(ez[0] == 0 && ez[1] == 5);
    long dims[8];
    assert_int_equal(h5_shape(h, path, "f3", dims), 3);
    assert_true(dims[0] == 2 && dims[1] == 3 && dims[2] == 4);
    assert_int_equal(h5_shape(h, path, "loss", dims), 0);
    assert_int_equal(h5_shape(h, path, "empty1", dims), 1);
    assert_int_equal(dims[0], 0);
    h5_close(h);
    free(loss); free(g1); free(g2); free(g3); free(n); free(j1); free(j2); free(j3); free(e);
    unlink(path);
}

// A tensor bigger than one chunk: chunked along the first dim, Fletcher-32 on.
static void test_h5_chunked(void **state) {
    (void)state;
    char path[64];
    tmp_h5(path);
    long d[2] = {1500, 1024};   // 6 MB
    size_t n = (size_t)d[0] * (size_t)d[1];
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)i * 0.5f - 7.0f;
    hid_t h = h5_create(path);
    h5_write_f32(h, "x", 2, d, x);
    h5_close(h);

    h = h5_open_read(path);
    hid_t ds = H5Dopen2(h, "x", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(ds);
    hsize_t chunk[2];
    assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
    assert_int_equal(H5Pget_chunk(dcpl, 2, chunk), 2);
    assert_true(chunk[1] == 1024 && chunk[0] >= 64 && chunk[0] < 1500);
    assert_true(chunk[0] * chunk[1] * 4 <= ((size_t)4 << 20));
    unsigned flags;
    size_t nelem = 0;
    assert_true(H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &nelem, NULL, 0, NULL, NULL) >= 0);
    H5Pclose(dcpl);
    H5Dclose(ds);
    long any[2] = {-1, -1};
    float *y = h5_read_f32(h, path, "x", 2, any);
    assert_memory_equal(x, y, n * sizeof(float));
    h5_close(h);
    free(x);
    free(y);
    unlink(path);
}

static void test_h5_groups(void **state) {
    (void)state;
    char path[64];
    tmp_h5(path);
    float v[3] = {1, 2, 3};
    hid_t h = h5_create(path);
    h5_write_f32(h, "grad/model.layers.10.mlp.up_proj.weight", 1, (long[]){3}, v);
    h5_write_f32(h, "grad/model.layers.2.mlp.up_proj.weight", 1, (long[]){3}, v);
    hid_t g = h5_group(h, "optim/m");
    h5_write_f32(g, "w", 1, (long[]){3}, v);
    H5Gclose(g);
    g = h5_group(h, "optim/m");   // opening an existing group
    H5Gclose(g);
    h5_close(h);

    h = h5_open_read(path);
    assert_true(h5_exists(h, "grad"));
    assert_true(h5_exists(h, "grad/model.layers.2.mlp.up_proj.weight"));
    assert_true(h5_exists(h, "optim/m/w"));
    assert_true(h5_exists(h, "/optim/m"));
    assert_false(h5_exists(h, "optim/v/w"));   // missing intermediate group
    assert_false(h5_exists(h, "nope"));
    assert_false(h5_exists(h, ""));
    int n;
    char **names = h5_list(h, path, "grad", &n);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "model.layers.10.mlp.up_proj.weight");
    assert_string_equal(names[1], "model.layers.2.mlp.up_proj.weight");
    h5_list_free(names, n);
    g = h5_group(h, "optim/m");
    float *w = h5_read_f32(g, path, "w", 1, (long[]){3});
    assert_memory_equal(w, v, sizeof v);
    free(w);
    H5Gclose(g);
    h5_close(h);
    unlink(path);
}

static void test_h5_attrs(void **state) {
    (void)state;
    char path[64], s[64];
    tmp_h5(path);
    uint64_t rng[4] = {1, UINT64_MAX, 0x0123456789abcdefull, 42}, back[4];
    hid_t h = h5_create(path);
    h5_attr_write_i64(h, "version", 7);
    h5_attr_write_i64(h, "version", 1);   // rewriting replaces
    h5_attr_write_i64(h, "big", INT64_MIN);
    h5_attr_write_f64(h, "theta", 500000.0);
    h5_attr_write_f64(h, "eps", 1e-5);
    h5_attr_write_str(h, "format", "sprec-checkpoint");
    h5_attr_write_str(h, "empty", "");
    h5_attr_write_u64v(h, "rng", rng, 4);
    hid_t g = h5_group(h, "config");
    h5_attr_write_str(g, "stage", "sft \xc3\xa9");
    H5Gclose(g);
    h5_close(h);

    h = h5_open_read(path);
    assert_true(h5_attr_has(h, "version"));
    assert_false(h5_attr_has(h, "nope"));
    assert_int_equal(h5_attr_read_i64(h, path, "version"), 1);
    assert_true(h5_attr_read_i64(h, path, "big") == INT64_MIN);
    assert_true(h5_attr_read_f64(h, path, "theta") == 500000.0);
    assert_true(h5_attr_read_f64(h, path, "eps") == 1e-5);
    assert_true(h5_attr_read_f64(h, path, "version") == 1.0);   // integer read as a number
    assert_int_equal(h5_attr_read_i64(h, path, "theta"), 500000);   // integral float read as an integer
    h5_attr_read_str(h, path, "format", s, sizeof s);
    assert_string_equal(s, "sprec-checkpoint");
    h5_attr_read_str(h, path, "empty", s, sizeof s);
    assert_string_equal(s, "");
    h5_attr_read_u64v(h, path, "rng", back, 4);
    assert_memory_equal(rng, back, sizeof rng);
    g = h5_group(h, "config");
    h5_attr_read_str(g, path, "stage", s, sizeof s);
    assert_string_equal(s, "sft \xc3\xa9");
    H5Gclose(g);
    h5_close(h);
    unlink(path);
}

// Attributes the way h5py/numpy write them, through the plain HDF5 API with
// default (oldest) file format: fixed-length strings, numpy bools (an int8
// enum), 1-element arrays, a big-endian double, int64 datasets for tokens.
static void write_h5py_style(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t scalar = H5Screate(H5S_SCALAR);
    hsize_t one = 1;
    hid_t vec1 = H5Screate_simple(1, &one, NULL);

    hid_t fixed = H5Tcopy(H5T_C_S1);   // np.bytes_(b"llama3"): fixed length, NULL padded
    H5Tset_size(fixed, 6);
    H5Tset_strpad(fixed, H5T_STR_NULLPAD);
    hid_t a = H5Acreate2(f, "fixed", fixed, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, fixed, "llama3");
    H5Aclose(a);
    hid_t vlen = H5Tcopy(H5T_C_S1);   // a Python str: variable length UTF-8
    H5Tset_size(vlen, H5T_VARIABLE);
    H5Tset_cset(vlen, H5T_CSET_UTF8);
    const char *stage = "dpo \xe2\x9c\x93";
    a = H5Acreate2(f, "vlen", vlen, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, vlen, &stage);
    H5Aclose(a);
    H5Tclose(vlen);
    hid_t spaced = H5Tcopy(H5T_C_S1);   // Fortran-style space padding
    H5Tset_size(spaced, 8);
    H5Tset_strpad(spaced, H5T_STR_SPACEPAD);
    a = H5Acreate2(f, "spaced", spaced, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, spaced, "none    ");
    H5Aclose(a);

    hid_t boolt = H5Tenum_create(H5T_STD_I8LE);   // what h5py writes for True
    signed char fv = 0, tv = 1;
    H5Tenum_insert(boolt, "FALSE", &fv);
    H5Tenum_insert(boolt, "TRUE", &tv);
    a = H5Acreate2(f, "tied", boolt, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, boolt, &tv);
    H5Aclose(a);
    a = H5Acreate2(f, "untied", boolt, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, boolt, &fv);
    H5Aclose(a);

    long long dim = 4096;
    a = H5Acreate2(f, "dim", H5T_STD_I64LE, vec1, H5P_DEFAULT, H5P_DEFAULT);   // np.array([4096])
    H5Awrite(a, H5T_NATIVE_LLONG, &dim);
    H5Aclose(a);
    double theta = 500000.0, half = 2.5;
    a = H5Acreate2(f, "theta_be", H5T_IEEE_F64BE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &theta);
    H5Aclose(a);
    a = H5Acreate2(f, "half", H5T_IEEE_F64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &half);
    H5Aclose(a);

    hsize_t d[2] = {2, 3};
    hid_t sp = H5Screate_simple(2, d, NULL);
    long long tok[6] = {1, 2, 3, 4, 5, 6}, big[6] = {1, 2, 3, 4, 5, 1ll << 40};
    double mask[6] = {0, 1, 1, 0, 0.5, 1};
    hid_t ds = H5Dcreate2(f, "tokens", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok);
    H5Dclose(ds);
    ds = H5Dcreate2(f, "big_tokens", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, big);
    H5Dclose(ds);
    ds = H5Dcreate2(f, "mask", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, mask);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(boolt);
    H5Tclose(spaced);
    H5Tclose(fixed);
    H5Sclose(vec1);
    H5Sclose(scalar);
    H5Fclose(f);
}

static char h5py_path[64];

static void read_as_i32_child(void *name) {
    hid_t h = h5_open_read(h5py_path);
    free(h5_read_i32(h, h5py_path, name, 2, (long[]){-1, -1}));
}

static void read_attr_i64_child(void *name) {
    hid_t h = h5_open_read(h5py_path);
    h5_attr_read_i64(h, h5py_path, name);
}

static void read_attr_str_child(void *name) {
    char s[64];
    hid_t h = h5_open_read(h5py_path);
    h5_attr_read_str(h, h5py_path, name, s, sizeof s);
}

static void read_attr_str4_child(void *name) {
    char s[4];
    hid_t h = h5_open_read(h5py_path);
    h5_attr_read_str(h, h5py_path, name, s, sizeof s);
}

static void test_h5_h5py_style(void **state) {
    (void)state;
    char s[64];
    tmp_h5(h5py_path);
    write_h5py_style(h5py_path);
    hid_t h = h5_open_read(h5py_path);
    h5_attr_read_str(h, h5py_path, "fixed", s, sizeof s);
    assert_string_equal(s, "llama3");
    h5_attr_read_str(h, h5py_path, "spaced", s, sizeof s);
    assert_string_equal(s, "none");
    h5_attr_read_str(h, h5py_path, "vlen", s, sizeof s);
    assert_string_equal(s, "dpo \xe2\x9c\x93");
    assert_int_equal(h5_attr_read_i64(h, h5py_path, "tied"), 1);
    assert_int_equal(h5_attr_read_i64(h, h5py_path, "untied"), 0);
    assert_int_equal(h5_attr_read_i64(h, h5py_path, "dim"), 4096);
    assert_true(h5_attr_read_f64(h, h5py_path, "theta_be") == 500000.0);
    assert_true(h5_attr_read_f64(h, h5py_path, "tied") == 1.0);
    long d[2] = {-1, 3};
    int *tok = h5_read_i32(h, h5py_path, "tokens", 2, d);   // int64 on disk
    for (int i = 0; i < 6; i++) assert_int_equal(tok[i], i + 1);
    float *mask = h5_read_f32(h, h5py_path, "mask", 2, d);   // float64 on disk
    assert_true(mask[1] == 1.0f && mask[4] == 0.5f);
    float *tf = h5_read_f32(h, h5py_path, "tokens", 2, d);   // integers are fine as floats
    assert_true(tf[5] == 6.0f);
    free(tok);
    free(mask);
    free(tf);
    h5_close(h);
    expect_child_error(read_as_i32_child, "big_tokens", "dataset 'big_tokens' has values out of range for int32");
    expect_child_error(read_as_i32_child, "mask", "dataset 'mask' has float type, expected integer");
    expect_child_error(read_attr_i64_child, "half", "attribute 'half' on '/' = 2.5, expected an integer");
    expect_child_error(read_attr_i64_child, "fixed", "attribute 'fixed' on '/' has string type, expected an integer");
    expect_child_error(read_attr_i64_child, "nope", "attribute 'nope' missing on '/'");
    expect_child_error(read_attr_str_child, "dim", "attribute 'dim' on '/' has integer type, expected a string");
    expect_child_error(read_attr_str4_child, "vlen", "attribute 'vlen' on '/' is too long (7 bytes, at most 3)");
    unlink(h5py_path);
}

// ---- bad files ------------------------------------------------------------------

static char bad_path[64];

static void open_child(void *path) {
    h5_close(h5_open_read(path));
}

static void read_x_child(void *path) {
    hid_t h = h5_open_read(path);
    free(h5_read_f32(h, path, "x", 2, (long[]){-1, -1}));
    h5_close(h);
}

static void shape_child(void *arg) {
    hid_t h = h5_open_read(bad_path);
    long *want = arg;
    free(h5_read_f32(h, bad_path, "x", want[0] == 99 ? 1 : 2, want));
}

static void missing_child(void *arg) {
    (void)arg;
    hid_t h = h5_open_read(bad_path);
    free(h5_read_f32(h, bad_path, "params/nope", 1, (long[]){-1}));
}

static void test_h5_bad_shape_and_missing(void **state) {
    (void)state;
    tmp_h5(bad_path);
    float v[10] = {0};
    hid_t h = h5_create(bad_path);
    h5_write_f32(h, "x", 2, (long[]){2, 5}, v);
    h5_close(h);
    long want[2] = {-1, 4};
    char err[1024];
    assert_int_equal(run_forked(shape_child, want, err, sizeof err), 1);
    assert_non_null(strstr(err, "dataset 'x' has shape [2,5], expected rank 2 [*,4]"));
    long want1[1] = {99};
    assert_int_equal(run_forked(shape_child, want1, err, sizeof err), 1);
    assert_non_null(strstr(err, "dataset 'x' has shape [2,5], expected rank 1 [99]"));
    expect_child_error(missing_child, NULL, "dataset 'params/nope' not found");
    unlink(bad_path);
}

static void test_h5_missing_and_not_hdf5(void **state) {
    (void)state;
    expect_child_error(open_child, "/nonexistent/x.h5", "sprec: error: cannot open '/nonexistent/x.h5': No such file or directory");
    char path[64], want[128];
    tmp_h5(path);
    FILE *f = fopen(path, "w");
    fputs("tokens,mask\n1,2\n", f);
    fclose(f);
    snprintf(want, sizeof want, "sprec: error: %s: not an HDF5 file or truncated", path);
    expect_child_error(open_child, path, want);
    f = fopen(path, "w");   // empty file
    fclose(f);
    expect_child_error(open_child, path, want);
    unlink(path);
}

// A file that is mostly one 16 MB dataset.
static void write_big(const char *path) {
    long d[2] = {4096, 1024};
    size_t n = (size_t)d[0] * (size_t)d[1];
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(i % 1000) * 0.25f;
    hid_t h = h5_create(path);
    h5_write_f32(h, "x", 2, d, x);
    h5_close(h);
    free(x);
}

static void test_h5_flipped_byte(void **state) {
    (void)state;
    char path[64];
    tmp_h5(path);
    write_big(path);
    flip_byte(path, file_size(path) / 2, 0x10);
    expect_child_error(read_x_child, path, "dataset 'x': checksum mismatch or read error (file corrupt?)");
    unlink(path);
}

static void test_h5_truncated(void **state) {
    (void)state;
    char path[64], want[128];
    tmp_h5(path);
    write_big(path);
    long size = file_size(path);
    snprintf(want, sizeof want, "%s: not an HDF5 file or truncated", path);
    long cuts[] = {size - 1, size / 2, 4096, 100, 9};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(truncate(path, cuts[i]), 0);
        expect_child_error(read_x_child, path, want);
    }
    unlink(path);
}

// Single-byte corruptions of a small file (every third byte: each fork costs
// ~3 ms) either leave the data read back intact (unused bytes) or fail with
// our one-line error: no crash, no hang, no wrong values. With HDF5 1.8
// structures or variable-length strings this finds dozens of silent failures. Covers the metadata (checksummed v2 headers), the
// chunk index, the chunk data and string attributes.
static float fz_a[20];
static int fz_s[1] = {-77};
static int fz_b[3] = {5, 6, 7};

static void write_small(const char *path) {
    hid_t h = h5_create(path);
    h5_attr_write_i64(h, "version", 3);
    h5_attr_write_f64(h, "theta", 0.125);
    h5_attr_write_str(h, "format", "sprec-checkpoint");
    h5_write_f32(h, "a", 2, (long[]){4, 5}, fz_a);
    h5_write_i32(h, "s", 0, NULL, fz_s);
    h5_write_i32(h, "g/b", 1, (long[]){3}, fz_b);
    hid_t g = h5_group(h, "g");
    h5_attr_write_str(g, "stage", "sft");
    H5Gclose(g);
    h5_close(h);
}

static void read_small_child(void *path) {
    hid_t h = h5_open_read(path);
    char fmt[32], stage[32];
    int ok = h5_attr_read_i64(h, path, "version") == 3 && h5_attr_read_f64(h, path, "theta") == 0.125;
    h5_attr_read_str(h, path, "format", fmt, sizeof fmt);
    hid_t g = h5_group(h, "g");
    h5_attr_read_str(g, path, "stage", stage, sizeof stage);
    H5Gclose(g);
    ok = ok && !strcmp(fmt, "sprec-checkpoint") && !strcmp(stage, "sft");
    float *a = h5_read_f32(h, path, "a", 2, (long[]){4, 5});
    int *s = h5_read_i32(h, path, "s", 0, NULL);
    int *b = h5_read_i32(h, path, "g/b", 1, (long[]){3});
    ok = ok && !memcmp(a, fz_a, sizeof fz_a) && !memcmp(s, fz_s, sizeof fz_s) && !memcmp(b, fz_b, sizeof fz_b);
    h5_close(h);
    _exit(ok ? 0 : 3);   // 3: read "successfully" but wrong
}

static void test_h5_flipped_byte_sweep(void **state) {
    (void)state;
    char path[64];
    for (int i = 0; i < 20; i++) fz_a[i] = (float)i - 9.5f;
    tmp_h5(path);
    write_small(path);
    long size = file_size(path);
    int intact = 0, caught = 0;
    for (long off = 0; off < size; off += 3) {
        char err[4096];
        flip_byte(path, off, 0x04);
        int rc = run_forked(read_small_child, path, err, sizeof err);
        flip_byte(path, off, 0x04);
        if (rc == 0) intact++;
        else if (rc == 1 && !strncmp(err, "sprec: error: ", 14) && strchr(err, '\n') == err + strlen(err) - 1) caught++;
        else fail_msg("flipping byte %ld of %ld: exit %d, stderr:\n%s", off, size, rc, err);
    }
    assert_true(caught > intact);
    unlink(path);
}

// The helpers the rest of sprec uses instead of HDF5 calls: checksummed byte
// arrays, float64 datasets, groups opened for reading, read-write files.
static void group_open_child(void *path) {
    hid_t h = h5_open_read(path);
    h5_group_open(h, path, "nope/deeper");
}

static void rw_child(void *path) { h5_close(h5_open_rw(path)); }

static void test_h5_helpers(void **state) {
    (void)state;
    char path[64], want[256];
    tmp_h5(path);
    const char text[] = "{\"model\": \"bpe\"}\n\xc3\xa9";
    const double d[3] = {0.1, -1e300, 5e-324};
    hid_t h = h5_create(path);
    hid_t g = h5_group(h, "tokenizer");
    h5_write_bytes(g, "tokenizer.json", text, sizeof text - 1, 0);
    h5_write_bytes(g, "empty", "", 0, 0);
    h5_group_close(g);
    h5_write_f64(h, "w", 1, (long[]){3}, d);
    h5_flush(h);
    h5_close(h);

    h = h5_open_read(path);
    size_t len;
    char *t = h5_read_bytes(h, path, "tokenizer/tokenizer.json", &len);
    assert_int_equal(len, sizeof text - 1);
    assert_memory_equal(t, text, sizeof text);   // NUL-terminated
    free(t);
    g = h5_group_open(h, path, "tokenizer");
    t = h5_read_bytes(g, path, "empty", &len);
    assert_true(t && len == 0 && t[0] == 0);
    free(t);
    len = 7;
    assert_null(h5_read_bytes(g, path, "absent", &len));
    assert_int_equal(len, 0);
    h5_group_close(g);
    long n[1] = {-1};
    double *back = h5_read_f64(h, path, "w", 1, n);
    assert_int_equal(n[0], 3);
    assert_memory_equal(back, d, sizeof d);
    free(back);
    h5_close(h);

    // read-write: add to an existing file, keep what was there
    h = h5_open_rw(path);
    h5_write_i32(h, "added/x", 1, (long[]){1}, (int[]){7});
    h5_close(h);
    h = h5_open_read(path);
    assert_true(h5_exists(h, "added/x") && h5_exists(h, "tokenizer/tokenizer.json"));
    h5_close(h);

    snprintf(want, sizeof want, "sprec: error: %s: group 'nope/deeper' not found", path);
    expect_child_error(group_open_child, path, want);
    expect_child_error(rw_child, "/nonexistent/x.h5", "sprec: error: cannot open '/nonexistent/x.h5' for writing: No such file");
    unlink(path);
}

DEFINE_TEST_GROUP(test_h5io,
    cmocka_unit_test(test_h5_roundtrip),
    cmocka_unit_test(test_h5_chunked),
    cmocka_unit_test(test_h5_groups),
    cmocka_unit_test(test_h5_attrs),
    cmocka_unit_test(test_h5_h5py_style),
    cmocka_unit_test(test_h5_bad_shape_and_missing),
    cmocka_unit_test(test_h5_missing_and_not_hdf5),
    cmocka_unit_test(test_h5_flipped_byte),
    cmocka_unit_test(test_h5_truncated),
    cmocka_unit_test(test_h5_flipped_byte_sweep),
    cmocka_unit_test(test_h5_helpers),
)
