// A minimal reader of ONNX model files (protobuf ModelProto): the graph's
// weight initializers (FLOAT and INT64 TensorProtos with their data inline),
// its nodes (op type, input and output names, the attributes a weight importer
// needs: a float `epsilon`, a tensor `value`) and its output names. Enough to
// find the weights of an exported network and follow the graph between them;
// nothing is executed. Every length and offset is checked against the file,
// so a truncated or malformed file is a one-line error naming it.
#ifndef SPREC_ONNX_H
#define SPREC_ONNX_H

#include <stddef.h>

enum { ONNX_FLOAT = 1, ONNX_INT64 = 7 };   // TensorProto.DataType values read

typedef struct {
    char *name;
    int dtype;           // ONNX_FLOAT or ONNX_INT64 (others: data left NULL)
    int rank;
    long dims[8];
    size_t numel;
    float *f;            // [numel] when FLOAT (a copy: protobuf data is unaligned)
    long long *i;        // [numel] when INT64
} OnnxTensor;

typedef struct {
    char *op, *name;
    int n_in, n_out;
    char **in, **out;    // value names ("" for an omitted optional input)
    int has_epsilon;
    float epsilon;       // attribute `epsilon` (LayerNormalization)
    int has_value;
    OnnxTensor value;    // attribute `value` (Constant)
} OnnxNode;

typedef struct {
    const char *path;
    OnnxTensor *inits; int n_inits;
    OnnxNode *nodes; int n_nodes;
    char **outputs; int n_outputs;
} OnnxModel;

void onnx_load(OnnxModel *m, const char *path);
void onnx_free(OnnxModel *m);
const OnnxTensor *onnx_initializer(const OnnxModel *m, const char *name);   // NULL if none
const OnnxNode *onnx_producer(const OnnxModel *m, const char *value);       // the node writing it, or NULL
// The k-th node (k = 0, 1, ...) reading value `name` as any input; NULL past the last.
const OnnxNode *onnx_consumer(const OnnxModel *m, const char *value, int k);

#endif
