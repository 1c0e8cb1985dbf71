// Small typed helpers over HDF5 with checked errors: read a whole dataset with
// a rank/shape check, write a dataset (chunked + Fletcher-32 checksum).
// Every failure is a one-line error naming the file and the dataset. The rest
// of sprec calls HDF5 only through these (hid_t values are passed through).
#ifndef SPREC_H5IO_H
#define SPREC_H5IO_H

#include <stdint.h>
#include <hdf5.h>

void h5_quiet(void);                        // silence HDF5's own error stack printing
hid_t h5_open_read(const char *path);       // fails clearly if missing / not HDF5 / its checksum does not match
hid_t h5_create(const char *path);          // truncates
// As h5_create, with a whole-file checksum (base/filesum.h) in a 512-byte user block: h5_close writes it,
// h5_open_read and h5_open_rw verify it before HDF5 reads the file (checkpoints and datasets).
hid_t h5_create_checksummed(const char *path);
hid_t h5_open_rw(const char *path);         // an existing file, read-write, locked as h5_open_read locks
void h5_flush(hid_t f);                     // everything written so far to the OS (fails on a full disk)
void h5_close(hid_t f);                     // flushes; fails on a full disk; writes the checksum of a written file
int h5_exists(hid_t loc, const char *name); // path exists (handles nested groups)
hid_t h5_group(hid_t loc, const char *name);   // create nested groups as needed
// An existing group (`path` names the file in messages); fails if missing.
hid_t h5_group_open(hid_t loc, const char *path, const char *name);
void h5_group_close(hid_t g);
// Names of the links in group loc/name, sorted by name; fails if the group is
// missing. Free with h5_list_free.
char **h5_list(hid_t loc, const char *path, const char *name, int *count);
void h5_list_free(char **names, int count);
// Shape of a dataset; returns rank, fills dims (up to 8). Fails if missing.
int h5_shape(hid_t loc, const char *path, const char *name, long dims[8]);
// Read the whole dataset as float/int32 (converting from any stored integer or,
// for float, float type; out-of-range values are an error). `dims` gives the
// required dims (rank entries; -1 = any; NULL for a scalar) and receives the
// actual dims. `path` names the file in messages. The caller frees the buffer.
float *h5_read_f32(hid_t loc, const char *path, const char *name, int rank, long *dims);
int *h5_read_i32(hid_t loc, const char *path, const char *name, int rank, long *dims);
// Read into a caller buffer of exactly prod(dims) elements (shape must match).
void h5_read_f32_into(hid_t loc, const char *path, const char *name, int rank, const long *dims, float *dst);
double *h5_read_f64(hid_t loc, const char *path, const char *name, int rank, long *dims);
void h5_write_f32(hid_t loc, const char *name, int rank, const long *dims, const float *data);
void h5_write_i32(hid_t loc, const char *name, int rank, const long *dims, const int *data);
void h5_write_f64(hid_t loc, const char *name, int rank, const long *dims, const double *data);
// Bytes verbatim (a text file, a list of strings) as a 1-D uint8 dataset,
// checksummed like every other; read back NUL-terminated (the caller frees),
// or NULL with *len = 0 when the dataset is absent. chunk_bytes: the largest
// chunk (0 = the default, 4 MiB); a format keeps its own so its files stay the same.
void h5_write_bytes(hid_t loc, const char *name, const void *data, size_t len, size_t chunk_bytes);
char *h5_read_bytes(hid_t loc, const char *path, const char *name, size_t *len);
// Scalar attributes
void h5_attr_write_i64(hid_t obj, const char *name, int64_t v);
void h5_attr_write_f64(hid_t obj, const char *name, double v);
void h5_attr_write_str(hid_t obj, const char *name, const char *v);
void h5_attr_write_u64v(hid_t obj, const char *name, const uint64_t *v, int n);
int h5_attr_has(hid_t obj, const char *name);
int64_t h5_attr_read_i64(hid_t obj, const char *path, const char *name);
double h5_attr_read_f64(hid_t obj, const char *path, const char *name);
void h5_attr_read_str(hid_t obj, const char *path, const char *name, char *buf, size_t cap);
void h5_attr_read_u64v(hid_t obj, const char *path, const char *name, uint64_t *v, int n);

#endif
