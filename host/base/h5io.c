// HDF5 helpers. Every HDF5 call is checked; every failure is one line naming the
// file and the object (HDF5's own error stack printing is switched off).
//
// Files are written with HDF5 1.8+ structures (superblock v2, object header v2),
// whose metadata carries checksums, and every non-scalar dataset is chunked with
// a Fletcher-32 filter, so a flipped byte anywhere in the file is caught on read
// instead of producing silently wrong numbers. Checkpoints and datasets also carry
// a whole-file checksum (h5_create_checksummed, base/filesum.h), checked before
// HDF5 parses the file: libhdf5 can crash on corrupt metadata before its own
// checksums are looked at.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "h5io.h"
#include "filesum.h"
#include "kernels/errors.h"

#define H5IO_MAX_RANK 8
#define CHUNK_BYTES ((size_t)4 << 20)   // ~4 MiB chunks: small I/O units, far below HDF5's 4 GiB limit

// libhdf5 closes the files still open when the process exits. After a failed write (a full disk) a file is
// half-closed, and that close crashed (SIGSEGV in H5F__close_cb) after the one-line error; and a file being
// written when fail() ends the process is an abandoned temporary anyway. So the library gets no exit handler:
// every file sprec writes is closed by h5_close, and readers lose nothing. (Must run before any HDF5 call.)
__attribute__((constructor)) static void h5_no_exit_handler(void) { H5dont_atexit(); }

// A write, flush or close that failed: one line naming the file, the object and the system's reason, which
// HDF5's POSIX driver leaves in errno (ENOSPC: "No space left on device"; err 0: HDF5 gave no reason).
__attribute__((noreturn)) static void write_failed(const char *file, const char *what, int err) {
    fail("cannot write '%s' (%s): %s", file, what, err ? strerror(err) : "HDF5 write error (disk full?)");
}

void h5_quiet(void) {
    check(H5Eset_auto2(H5E_DEFAULT, NULL, NULL) >= 0, "H5Eset_auto2 failed");
}

// ---- names for messages ---------------------------------------------------

// The file an object lives in (writes get no path argument).
static const char *file_of(hid_t loc, const char *path, char *buf, size_t cap) {
    if (path) return path;
    if (H5Fget_name(loc, buf, cap) < 0) snprintf(buf, cap, "(hdf5 file)");
    return buf;
}

// Path of loc/name inside the file without the leading '/', e.g. "optim/m/lm_head.weight";
// name NULL: loc itself, e.g. "/config".
static const char *obj_label(hid_t loc, const char *name, char *buf, size_t cap) {
    char base[512];
    ssize_t n = H5Iget_name(loc, base, sizeof base);
    const char *b = (n > 1) ? base + 1 : "";   // "/" (root or a file id) -> ""
    if (!name) snprintf(buf, cap, "/%s", b);     // the object itself: "/config"
    else snprintf(buf, cap, "%s%s%s", b, *b ? "/" : "", name);
    return buf;
}

static void shape_str(char *buf, size_t cap, int rank, const long *dims) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && n < cap; i++) {
        if (dims[i] < 0) n += (size_t)snprintf(buf + n, cap - n, "%s*", i ? "," : "");
        else n += (size_t)snprintf(buf + n, cap - n, "%s%ld", i ? "," : "", dims[i]);
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static const char *class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_ENUM: return "enum";
    case H5T_COMPOUND: return "compound";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length";
    default: return "non-numeric";
    }
}

// ---- files -------------------------------------------------------------

static hid_t file_access(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    check(fapl >= 0, "H5Pcreate(FILE_ACCESS) failed");
#if H5_VERSION_GE(1, 10, 7)
    // keep file locking, but do not fail on file systems without it (NFS, Lustre)
    check(H5Pset_file_locking(fapl, 1, 1) >= 0, "H5Pset_file_locking failed");
#endif
    return fapl;
}

// An existing file, read-only or read-write: a missing or unreadable file
// gets the system's own reason first (HDF5's would be vaguer).
static hid_t open_existing(const char *path, int write) {
    h5_quiet();
    int fd = open(path, write ? O_RDWR : O_RDONLY);
    if (fd < 0) fail("cannot open '%s'%s: %s", path, write ? " for writing" : "", strerror(errno));
    close(fd);
    filesum_verify(path);   // before HDF5 parses anything: corrupt metadata can crash libhdf5
    if (!write && H5Fis_hdf5(path) <= 0) fail("%s: not an HDF5 file or truncated", path);
    hid_t fapl = file_access();
    hid_t f = H5Fopen(path, write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
    check(H5Pclose(fapl) >= 0, "H5Pclose failed");
    if (f < 0) {
        if (write) fail("%s: cannot open for writing (not an HDF5 file, or in use by another process?)", path);
        fail("%s: not an HDF5 file or truncated", path);
    }
    return f;
}

hid_t h5_open_read(const char *path) { return open_existing(path, 0); }

static hid_t create(const char *path, hsize_t userblock) {
    h5_quiet();
    hid_t fapl = file_access();
    // 1.8+ structures have checksummed metadata; 1.10 chunk indexes are checksummed too.
    check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) >= 0, "H5Pset_libver_bounds failed");
    // closing with objects still open is an error (a leak would delay the real close)
    check(H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) >= 0, "H5Pset_fclose_degree failed");
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    check(fcpl >= 0 && H5Pset_userblock(fcpl, userblock) >= 0, "H5Pset_userblock failed");
    // no creation/modification times in object headers (here the root group's): two identical runs write
    // byte-identical files, which `cmp` can compare
    check(H5Pset_obj_track_times(fcpl, 0) >= 0, "H5Pset_obj_track_times failed");
    errno = 0;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    int err = errno;
    check(H5Pclose(fapl) >= 0 && H5Pclose(fcpl) >= 0, "H5Pclose failed");
    if (f < 0) fail("cannot create '%s': %s", path, err ? strerror(err) : "HDF5 error");
    return f;
}

hid_t h5_create(const char *path) { return create(path, 0); }
hid_t h5_create_checksummed(const char *path) { return create(path, FILESUM_BLOCK); }

hid_t h5_open_rw(const char *path) { return open_existing(path, 1); }

void h5_flush(hid_t f) {
    char name[1024];
    errno = 0;
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) write_failed(file_of(f, NULL, name, sizeof name), "flush", errno);
}

void h5_close(hid_t f) {
    char name[1024];
    file_of(f, NULL, name, sizeof name);
    unsigned intent;
    hsize_t userblock;
    hid_t fcpl = H5Fget_create_plist(f);
    check(fcpl >= 0 && H5Pget_userblock(fcpl, &userblock) >= 0 && H5Pclose(fcpl) >= 0 && H5Fget_intent(f, &intent) >= 0,
          "cannot query the HDF5 file '%s'", name);
    // the final metadata flush happens here, so this is where a full disk shows up
    errno = 0;
    if (H5Fclose(f) < 0) write_failed(name, "closing the file", errno);
    // a file written with a checksum block gets the checksum of its final bytes
    if ((intent & H5F_ACC_RDWR) && userblock == FILESUM_BLOCK) filesum_seal(name);
}

// ---- groups and links ---------------------------------------------------

int h5_exists(hid_t loc, const char *name) {
    char buf[1024];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof buf) return 0;
    if (strcmp(name, "/") == 0) return 1;
    memcpy(buf, name, n + 1);
    // H5Lexists fails on a missing intermediate group, so walk the path one level at a time
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
            if (!c) break;
            *p = c;
        }
    }
    return H5Oexists_by_name(loc, name, H5P_DEFAULT) > 0;   // not a dangling soft link
}

// Creates the group loc/name, whose parent exists. HDF5's own creation of intermediate groups would give
// them creation times (the default group property list), so every level is made here.
static hid_t create_group(hid_t loc, const char *name) {
    char fb[1024], lb[1024];
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    check(gcpl >= 0 && H5Pset_obj_track_times(gcpl, 0) >= 0, "H5Pset_obj_track_times failed");   // (see create)
    errno = 0;
    hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    const int err = errno;
    check(H5Pclose(gcpl) >= 0, "H5Pclose failed");
    if (g < 0 && err) write_failed(file_of(loc, NULL, fb, sizeof fb), obj_label(loc, name, lb, sizeof lb), err);
    if (g < 0) fail("%s: cannot create group '%s' (read-only file?)", file_of(loc, NULL, fb, sizeof fb),
                    obj_label(loc, name, lb, sizeof lb));
    return g;
}

// The groups above loc/name ("a" and "a/b" for "a/b/c"), created where missing.
static void make_parents(hid_t loc, const char *name) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (!h5_exists(loc, buf)) h5_group_close(create_group(loc, buf));
        *p = '/';
    }
}

hid_t h5_group(hid_t loc, const char *name) {
    char fb[1024], lb[1024];
    if (h5_exists(loc, name)) {
        hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
        if (g < 0) fail("%s: '%s' is not a group (file corrupt?)", file_of(loc, NULL, fb, sizeof fb),
                        obj_label(loc, name, lb, sizeof lb));
        return g;
    }
    make_parents(loc, name);
    return create_group(loc, name);
}

hid_t h5_group_open(hid_t loc, const char *path, const char *name) {
    char fb[1024], lb[1024];
    const char *file = file_of(loc, path, fb, sizeof fb);
    obj_label(loc, name, lb, sizeof lb);
    if (!h5_exists(loc, name)) fail("%s: group '%s' not found", file, lb);
    hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0) fail("%s: '%s' is not a group (file corrupt?)", file, lb);
    return g;
}

void h5_group_close(hid_t g) {
    char fb[1024], lb[1024];
    file_of(g, NULL, fb, sizeof fb);
    obj_label(g, NULL, lb, sizeof lb);
    errno = 0;   // (a group's metadata may meet a full disk when it leaves HDF5's cache)
    if (H5Gclose(g) < 0) write_failed(fb, lb, errno);
}

char **h5_list(hid_t loc, const char *path, const char *name, int *count) {
    char fb[1024], lb[1024];
    const char *file = file_of(loc, path, fb, sizeof fb);
    obj_label(loc, name, lb, sizeof lb);
    if (!h5_exists(loc, name)) fail("%s: group '%s' not found", file, lb);
    hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0) fail("%s: '%s' is not a readable group (file corrupt?)", file, lb);
    if (info.nlinks > INT_MAX) fail("%s: group '%s' has too many entries", file, lb);
    char **names = xcalloc(info.nlinks, sizeof *names);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        if (n < 0) fail("%s: cannot list group '%s' (file corrupt?)", file, lb);
        names[i] = xmalloc((size_t)n + 1);
        if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, names[i], (size_t)n + 1, H5P_DEFAULT) < 0)
            fail("%s: cannot list group '%s' (file corrupt?)", file, lb);
    }
    check(H5Gclose(g) >= 0, "H5Gclose failed");
    *count = (int)info.nlinks;
    return names;
}

void h5_list_free(char **names, int count) {
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}

// ---- datasets -----------------------------------------------------------

// Chunk shape of at most max_bytes, filled from the last dimension backwards,
// so small tensors are one chunk and big ones split along the leading dims.
static void chunk_dims(int rank, const hsize_t *dims, size_t esize, size_t max_bytes, hsize_t *chunk) {
    size_t bytes = esize;
    for (int d = rank - 1; d >= 0; d--) {
        size_t fit = max_bytes / bytes;
        if (fit == 0) fit = 1;
        chunk[d] = dims[d] < fit ? dims[d] : fit;
        bytes *= chunk[d];
    }
}

static void write_dataset(hid_t loc, const char *name, int rank, const long *dims, hid_t ftype,
                          hid_t mtype, const void *data, size_t chunk_bytes) {
    char fb[1024], lb[1024];
    check(rank >= 0 && rank <= H5IO_MAX_RANK, "rank %d out of range", rank);
    hsize_t hd[H5IO_MAX_RANK], chunk[H5IO_MAX_RANK];
    size_t numel = 1;
    for (int i = 0; i < rank; i++) {
        check(dims[i] >= 0, "negative dimension");
        hd[i] = (hsize_t)dims[i];
        numel *= (size_t)dims[i];
    }
    hid_t space = rank ? H5Screate_simple(rank, hd, NULL) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    check(space >= 0 && dcpl >= 0, "HDF5 property/dataspace creation failed");
    check(H5Pset_obj_track_times(dcpl, 0) >= 0, "H5Pset_obj_track_times failed");   // (see create)
    make_parents(loc, name);
    if (rank == 0 || numel == 0) {
        // scalars cannot be chunked (so no filter); compact data sits inside the
        // object header, which the v2 header checksum protects
        check(H5Pset_layout(dcpl, H5D_COMPACT) >= 0, "H5Pset_layout failed");
    } else {
        chunk_dims(rank, hd, H5Tget_size(mtype), chunk_bytes, chunk);
        check(H5Pset_chunk(dcpl, rank, chunk) >= 0, "H5Pset_chunk failed");
        check(H5Pset_fletcher32(dcpl) >= 0, "H5Pset_fletcher32 failed");
    }
    errno = 0;
    hid_t ds = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0 && errno) write_failed(file_of(loc, NULL, fb, sizeof fb), obj_label(loc, name, lb, sizeof lb), errno);
    if (ds < 0) fail("%s: cannot create dataset '%s' (already exists, or file not writable?)",
                     file_of(loc, NULL, fb, sizeof fb), obj_label(loc, name, lb, sizeof lb));
    // the chunks go to the file in the write or, from HDF5's chunk cache, in the close: either meets a full disk
    if ((numel && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) || H5Dclose(ds) < 0)
        write_failed(file_of(loc, NULL, fb, sizeof fb), obj_label(loc, name, lb, sizeof lb), errno);
    check(H5Pclose(dcpl) >= 0 && H5Sclose(space) >= 0, "closing HDF5 objects failed");
}

void h5_write_f32(hid_t loc, const char *name, int rank, const long *dims, const float *data) {
    write_dataset(loc, name, rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, CHUNK_BYTES);
}

void h5_write_i32(hid_t loc, const char *name, int rank, const long *dims, const int *data) {
    write_dataset(loc, name, rank, dims, H5T_STD_I32LE, H5T_NATIVE_INT, data, CHUNK_BYTES);
}

void h5_write_f64(hid_t loc, const char *name, int rank, const long *dims, const double *data) {
    write_dataset(loc, name, rank, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data, CHUNK_BYTES);
}

void h5_write_bytes(hid_t loc, const char *name, const void *data, size_t len, size_t chunk_bytes) {
    check(len <= LONG_MAX, "byte array too long");
    const long dims[1] = {(long)len};
    write_dataset(loc, name, 1, dims, H5T_STD_U8LE, H5T_NATIVE_UCHAR, data, chunk_bytes ? chunk_bytes : CHUNK_BYTES);
}

int h5_shape(hid_t loc, const char *path, const char *name, long dims[8]) {
    char fb[1024], lb[1024];
    const char *file = file_of(loc, path, fb, sizeof fb);
    obj_label(loc, name, lb, sizeof lb);
    if (!h5_exists(loc, name)) fail("%s: dataset '%s' not found", file, lb);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) fail("%s: cannot open dataset '%s' (not a dataset, or file corrupt?)", file, lb);
    hid_t space = H5Dget_space(ds);
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (rank < 0) fail("%s: dataset '%s' has an unreadable shape (file corrupt?)", file, lb);
    if (rank > H5IO_MAX_RANK) fail("%s: dataset '%s' has rank %d (at most %d supported)", file, lb, rank, H5IO_MAX_RANK);
    hsize_t hd[H5IO_MAX_RANK];
    check(H5Sget_simple_extent_dims(space, hd, NULL) >= 0, "H5Sget_simple_extent_dims failed");
    for (int i = 0; i < rank; i++) {
        if (hd[i] > (hsize_t)LONG_MAX) fail("%s: dataset '%s' has an absurd shape (file corrupt?)", file, lb);
        dims[i] = (long)hd[i];
    }
    check(H5Sclose(space) >= 0 && H5Dclose(ds) >= 0, "closing HDF5 objects failed");
    return rank;
}

// Set when a type conversion on read overflowed, so the message can say so.
static H5T_conv_ret_t conv_overflow(H5T_conv_except_t ex, hid_t src, hid_t dst, void *sbuf, void *dbuf,
                                    void *flag) {
    (void)src; (void)dst; (void)sbuf; (void)dbuf;
    if (ex == H5T_CONV_EXCEPT_RANGE_HI || ex == H5T_CONV_EXCEPT_RANGE_LOW) {
        *(int *)flag = 1;
        return H5T_CONV_ABORT;   // HDF5 would otherwise clamp silently
    }
    return H5T_CONV_UNHANDLED;
}

// Reads a whole dataset, converting to mtype. want_int: the stored type must be
// an integer (a float dataset read as ints would be truncated). dims: rank
// entries, -1 = any, actual dims written back. dst NULL = allocate.
static void *read_dataset(hid_t loc, const char *path, const char *name, int rank, long *dims,
                          hid_t mtype, int want_int, void *dst) {
    char fb[1024], lb[1024], have[256], want[256];
    const char *file = file_of(loc, path, fb, sizeof fb);
    obj_label(loc, name, lb, sizeof lb);
    check(rank >= 0 && rank <= H5IO_MAX_RANK, "rank %d out of range", rank);
    long actual[H5IO_MAX_RANK];
    int r = h5_shape(loc, path, name, actual);
    int ok = r == rank;
    for (int i = 0; ok && i < rank; i++) ok = dims[i] < 0 || dims[i] == actual[i];
    if (!ok) {
        shape_str(have, sizeof have, r, actual);
        shape_str(want, sizeof want, rank, dims);
        fail("%s: dataset '%s' has shape %s, expected rank %d %s", file, lb, have, rank, want);
    }

    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t ftype = ds < 0 ? -1 : H5Dget_type(ds);
    if (ftype < 0) fail("%s: cannot open dataset '%s' (file corrupt?)", file, lb);
    H5T_class_t cls = H5Tget_class(ftype);
    if (!(cls == H5T_INTEGER || (!want_int && cls == H5T_FLOAT)))
        fail("%s: dataset '%s' has %s type, expected %s", file, lb, class_name(cls),
             want_int ? "integer" : "float");
    hid_t space = H5Dget_space(ds);
    check(space >= 0, "H5Dget_space failed");
    if (H5Sget_simple_extent_type(space) == H5S_NULL) fail("%s: dataset '%s' holds no data", file, lb);

    size_t esize = H5Tget_size(mtype), numel = 1;
    for (int i = 0; i < rank; i++) {
        if (actual[i] && numel > SIZE_MAX / esize / (size_t)actual[i])
            fail("%s: dataset '%s' is too large", file, lb);
        numel *= (size_t)actual[i];
    }
    void *buf = dst ? dst : xmalloc(numel * esize);
    int overflow = 0;
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    check(dxpl >= 0 && H5Pset_type_conv_cb(dxpl, conv_overflow, &overflow) >= 0, "transfer property list failed");
    if (numel && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, dxpl, buf) < 0) {
        if (overflow) fail("%s: dataset '%s' has values out of range for %s", file, lb, want_int ? "int32" : "float32");
        fail("%s: dataset '%s': checksum mismatch or read error (file corrupt?)", file, lb);
    }
    check(H5Pclose(dxpl) >= 0 && H5Sclose(space) >= 0 && H5Tclose(ftype) >= 0 && H5Dclose(ds) >= 0,
          "closing HDF5 objects failed");
    for (int i = 0; i < rank; i++) dims[i] = actual[i];
    return buf;
}

float *h5_read_f32(hid_t loc, const char *path, const char *name, int rank, long *dims) {
    return read_dataset(loc, path, name, rank, dims, H5T_NATIVE_FLOAT, 0, NULL);
}

int *h5_read_i32(hid_t loc, const char *path, const char *name, int rank, long *dims) {
    return read_dataset(loc, path, name, rank, dims, H5T_NATIVE_INT, 1, NULL);
}

double *h5_read_f64(hid_t loc, const char *path, const char *name, int rank, long *dims) {
    return read_dataset(loc, path, name, rank, dims, H5T_NATIVE_DOUBLE, 0, NULL);
}

// Any 1-D dataset of 1-byte integers (h5py writes numpy uint8 or int8).
char *h5_read_bytes(hid_t loc, const char *path, const char *name, size_t *len) {
    char fb[1024], lb[1024];
    const char *file = file_of(loc, path, fb, sizeof fb);
    obj_label(loc, name, lb, sizeof lb);
    *len = 0;
    if (!h5_exists(loc, name)) return NULL;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) fail("%s: cannot open dataset '%s' (file corrupt?)", file, lb);
    hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    hsize_t n = 0;
    if (type < 0 || space < 0 || H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 1 ||
        H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_dims(space, &n, NULL) != 1 ||
        n >= SIZE_MAX)
        fail("%s: dataset '%s' must be a 1-D array of bytes", file, lb);
    char *text = xmalloc((size_t)n + 1);
    if (n && H5Dread(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) < 0)
        fail("%s: dataset '%s': checksum mismatch or read error (file corrupt?)", file, lb);
    text[n] = 0;
    check(H5Tclose(type) >= 0 && H5Sclose(space) >= 0 && H5Dclose(ds) >= 0, "HDF5 close failed");
    *len = (size_t)n;
    return text;
}

void h5_read_f32_into(hid_t loc, const char *path, const char *name, int rank, const long *dims, float *dst) {
    long d[H5IO_MAX_RANK];
    check(rank >= 0 && rank <= H5IO_MAX_RANK, "rank %d out of range", rank);
    for (int i = 0; i < rank; i++) {
        check(dims[i] >= 0, "h5_read_f32_into needs exact dims");
        d[i] = dims[i];
    }
    read_dataset(loc, path, name, rank, d, H5T_NATIVE_FLOAT, 0, dst);
}

// ---- attributes -----------------------------------------------------------

// Creates (replacing) attribute name on obj with the given file type and shape.
static hid_t attr_create(hid_t obj, const char *name, hid_t ftype, hsize_t n) {
    char fb[1024], lb[1024];
    htri_t e = H5Aexists(obj, name);
    if (e > 0 && H5Adelete(obj, name) < 0) e = -1;
    hid_t space = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    errno = 0;
    hid_t a = (e < 0 || space < 0) ? -1 : H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 && errno) write_failed(file_of(obj, NULL, fb, sizeof fb), name, errno);
    if (a < 0) fail("%s: cannot write attribute '%s' on '%s' (file not writable?)",
                    file_of(obj, NULL, fb, sizeof fb), name, obj_label(obj, NULL, lb, sizeof lb));
    check(H5Sclose(space) >= 0, "H5Sclose failed");
    return a;
}

static void attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, hsize_t n, const void *v) {
    char fb[1024], lb[1024];
    hid_t a = attr_create(obj, name, ftype, n);
    errno = 0;
    const herr_t rc = H5Awrite(a, mtype, v);
    if (rc < 0 && errno) write_failed(file_of(obj, NULL, fb, sizeof fb), name, errno);
    if (rc < 0) fail("%s: cannot write attribute '%s' on '%s'",
                                        file_of(obj, NULL, fb, sizeof fb), name, obj_label(obj, NULL, lb, sizeof lb));
    errno = 0;
    if (H5Aclose(a) < 0) write_failed(file_of(obj, NULL, fb, sizeof fb), name, errno);
}

void h5_attr_write_i64(hid_t obj, const char *name, int64_t v) {
    attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &v);
}

void h5_attr_write_f64(hid_t obj, const char *name, double v) {
    attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &v);
}

void h5_attr_write_u64v(hid_t obj, const char *name, const uint64_t *v, int n) {
    check(n > 0, "empty attribute");
    attr_write(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, (hsize_t)n, v);
}

// Fixed-length UTF-8, stored inside the (checksummed) object header. h5py's
// variable-length strings live in the global heap, which has no checksum: a
// flipped byte there reads back silently wrong or crashes HDF5. (h5py reads
// these as bytes: .decode() them.)
void h5_attr_write_str(hid_t obj, const char *name, const char *v) {
    size_t n = strlen(v);
    hid_t t = H5Tcopy(H5T_C_S1);
    check(t >= 0 && H5Tset_size(t, n ? n : 1) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0 &&
          H5Tset_cset(t, H5T_CSET_UTF8) >= 0, "string type failed");
    attr_write(obj, name, t, t, 0, n ? v : "");
    check(H5Tclose(t) >= 0, "H5Tclose failed");
}

// Does obj carry attribute name? A damaged attribute table is an error, not "no".
static int attr_exists(hid_t obj, const char *file, const char *name) {
    char lb[1024];
    htri_t e = H5Aexists(obj, name);
    if (e < 0) fail("%s: cannot read the attributes of '%s' (file corrupt?)", file, obj_label(obj, NULL, lb, sizeof lb));
    return e > 0;
}

int h5_attr_has(hid_t obj, const char *name) {
    char fb[1024];
    return attr_exists(obj, file_of(obj, NULL, fb, sizeof fb), name);
}

// Opens attribute name on obj, which must hold exactly n elements (scalars: a
// true scalar or a 1-element array, as numpy sometimes writes). Returns the
// attribute; *ftype gets its file type (caller closes both).
static hid_t attr_open(hid_t obj, const char *path, const char *name, hssize_t n, hid_t *ftype,
                       const char **file, char *fb, char *lb) {
    *file = file_of(obj, path, fb, 1024);
    obj_label(obj, NULL, lb, 1024);
    if (!attr_exists(obj, *file, name)) fail("%s: attribute '%s' missing on '%s'", *file, name, lb);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t space = a < 0 ? -1 : H5Aget_space(a);
    *ftype = a < 0 ? -1 : H5Aget_type(a);
    if (space < 0 || *ftype < 0) fail("%s: cannot read attribute '%s' on '%s' (file corrupt?)", *file, name, lb);
    hssize_t np = H5Sget_simple_extent_npoints(space);
    if (np != n) fail("%s: attribute '%s' on '%s' has %lld values, expected %lld", *file, name, lb,
                      (long long)np, (long long)n);
    check(H5Sclose(space) >= 0, "H5Sclose failed");
    return a;
}

static void attr_close(hid_t a, hid_t t) {
    check(H5Tclose(t) >= 0 && H5Aclose(a) >= 0, "closing HDF5 attribute failed");
}

int64_t h5_attr_read_i64(hid_t obj, const char *path, const char *name) {
    char fb[1024], lb[1024];
    const char *file;
    hid_t t, a = attr_open(obj, path, name, 1, &t, &file, fb, lb);
    H5T_class_t cls = H5Tget_class(t);
    int64_t v = 0;
    herr_t rc = -1;
    if (cls == H5T_INTEGER) {
        rc = H5Aread(a, H5T_NATIVE_INT64, &v);
    } else if (cls == H5T_ENUM && H5Tget_size(t) <= 8) {
        // numpy bools are an int8 enum {FALSE, TRUE}; HDF5 has no enum->int
        // conversion, so read the raw base value and convert that
        unsigned char raw[8] = {0};
        hid_t native = H5Tget_native_type(t, H5T_DIR_ASCEND);
        hid_t base = native < 0 ? -1 : H5Tget_super(native);
        if (base >= 0 && H5Aread(a, native, raw) >= 0 &&
            H5Tconvert(base, H5T_NATIVE_INT64, 1, raw, NULL, H5P_DEFAULT) >= 0) {
            memcpy(&v, raw, sizeof v);
            rc = 0;
        }
        check((base < 0 || H5Tclose(base) >= 0) && (native < 0 || H5Tclose(native) >= 0), "H5Tclose failed");
    } else if (cls == H5T_FLOAT) {
        double d;   // accept 4.0 for 4 (a script that wrote a float), but not 4.5
        rc = H5Aread(a, H5T_NATIVE_DOUBLE, &d);
        if (rc >= 0 && !(d == floor(d) && fabs(d) < 9.2e18))
            fail("%s: attribute '%s' on '%s' = %g, expected an integer", file, name, lb, d);
        v = (int64_t)d;
    } else {
        fail("%s: attribute '%s' on '%s' has %s type, expected an integer", file, name, lb, class_name(cls));
    }
    if (rc < 0) fail("%s: cannot read attribute '%s' on '%s' (file corrupt?)", file, name, lb);
    attr_close(a, t);
    return v;
}

double h5_attr_read_f64(hid_t obj, const char *path, const char *name) {
    char fb[1024], lb[1024];
    const char *file;
    hid_t t, a = attr_open(obj, path, name, 1, &t, &file, fb, lb);
    H5T_class_t cls = H5Tget_class(t);
    if (cls == H5T_ENUM) {   // a bool where a number is expected: reuse the integer path
        attr_close(a, t);
        return (double)h5_attr_read_i64(obj, path, name);
    }
    if (cls != H5T_FLOAT && cls != H5T_INTEGER)
        fail("%s: attribute '%s' on '%s' has %s type, expected a number", file, name, lb, class_name(cls));
    double v;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) fail("%s: cannot read attribute '%s' on '%s' (file corrupt?)", file, name, lb);
    attr_close(a, t);
    return v;
}

void h5_attr_read_str(hid_t obj, const char *path, const char *name, char *buf, size_t cap) {
    char fb[1024], lb[1024];
    const char *file;
    hid_t t, a = attr_open(obj, path, name, 1, &t, &file, fb, lb);
    if (H5Tget_class(t) != H5T_STRING)
        fail("%s: attribute '%s' on '%s' has %s type, expected a string", file, name, lb, class_name(H5Tget_class(t)));
    hid_t mt = H5Tcopy(t);   // same size, padding and character set as stored
    check(mt >= 0, "H5Tcopy failed");
    htri_t vlen = H5Tis_variable_str(t);
    char *s = NULL;
    int ok = 0;
    if (vlen > 0) {   // h5py's default for str
        if (H5Aread(a, mt, &s) >= 0) ok = 1;
    } else if (vlen == 0) {   // fixed length: not necessarily NUL-terminated
        size_t n = H5Tget_size(t);
        s = xmalloc(n + 1);
        if (n && H5Aread(a, mt, s) >= 0) ok = 1;
        s[n] = 0;
        while (n && s[n - 1] == ' ' && H5Tget_strpad(t) == H5T_STR_SPACEPAD) s[--n] = 0;
    }
    if (!ok) fail("%s: cannot read attribute '%s' on '%s' (file corrupt?)", file, name, lb);
    const char *v = s ? s : "";   // HDF5 may return NULL for an empty variable-length string
    if (strlen(v) >= cap) fail("%s: attribute '%s' on '%s' is too long (%zu bytes, at most %zu)", file, name,
                               lb, strlen(v), cap - 1);
    strcpy(buf, v);
    if (vlen > 0) check(!s || H5free_memory(s) >= 0, "H5free_memory failed");
    else free(s);
    check(H5Tclose(mt) >= 0, "H5Tclose failed");
    attr_close(a, t);
}

void h5_attr_read_u64v(hid_t obj, const char *path, const char *name, uint64_t *v, int n) {
    char fb[1024], lb[1024];
    const char *file;
    hid_t t, a = attr_open(obj, path, name, n, &t, &file, fb, lb);
    if (H5Tget_class(t) != H5T_INTEGER)
        fail("%s: attribute '%s' on '%s' has %s type, expected integers", file, name, lb, class_name(H5Tget_class(t)));
    if (H5Aread(a, H5T_NATIVE_UINT64, v) < 0) fail("%s: cannot read attribute '%s' on '%s' (file corrupt?)", file, name, lb);
    attr_close(a, t);
}
