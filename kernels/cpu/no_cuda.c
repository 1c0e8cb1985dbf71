// Stand-in until the CUDA backend lands: this build has no GPU support.
#include "../backend.h"

const Backend *backend_cuda(void) { return NULL; }
