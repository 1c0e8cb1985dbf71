// Small typed helpers over HDF5 with checked errors: read a whole dataset with
// a rank/shape check, write a dataset (chunked + Fletcher-32 checksum).
// Every failure is a one-line error naming the file and the dataset.
#ifndef SPREC_H5IO_H
#define SPREC_H5IO_H

#include <stdint.h>
#include <hdf5.h>

void h5_quiet(void);                        // silence HDF5's own error stack printing
hid_t h5_open_read(const char *path);       // fails clearly if missing / not HDF5
hid_t h5_create(const char *path);          // truncates
void h5_close(hid_t f);
int h5_exists(hid_t loc, const char *name); // path exists (handles nested groups)
hid_t h5_group(hid_t loc, const char *name);   // create nested groups as needed
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
void h5_write_f32(hid_t loc, const char *name, int rank, const long *dims, const float *data);
void h5_write_i32(hid_t loc, const char *name, int rank, const long *dims, const int *data);
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
