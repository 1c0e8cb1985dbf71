// DPO on the GPU: the segmented sum of head log-probs into sequence log-probs
// and the loss with its reweighting (twins of kernels/cpu/dpo.c; contracts in
// kernels/backend.h, formulas in docs/dpo.md).
//
// Numerics: fp32 inputs (head log-probs, mask), everything else in double,
// every sum sequential in index order, no atomics: deterministic, and the same
// arithmetic as the CPU. nvcc would contract a*b+c into an FMA where the CPU's
// ISO C does not, so products that meet sums use the _rn intrinsics. The
// sequence sums are bit-identical to the CPU's (each float*float product is
// exact in double); the loss, weights and statistics can differ from the CPU in
// the last bit of a double, because the device's exp/log1p are not glibc's.
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

// ---- sequence log-probs ---------------------------------------------------------

static const int SEQ_THREADS = 128, SEQ_TILE = 1024;

// Thread s owns seq_lp[s] and walks every row in increasing i, adding the rows
// of its sequence: the CPU's loop, restricted to one sequence. The block stages
// tiles of (seq, mask, lp) in shared memory, so a row is read from global
// memory once per block and the scan is a broadcast read. Works for rows in
// any order; costs O(n) per thread, which is nothing next to the forward that
// produced the n rows.
__global__ void seq_logprob_kernel(double *seq_lp, const float *lp, const float *mask,
                                   const int *seq, int n, int S) {
    __shared__ int t_seq[SEQ_TILE];
    __shared__ float t_mask[SEQ_TILE], t_lp[SEQ_TILE];
    const int s = blockIdx.x * blockDim.x + threadIdx.x;
    double acc = 0.0;
    for (int i0 = 0; i0 < n; i0 += SEQ_TILE) {   // every thread runs every tile: no early exit
        const int len = n - i0 < SEQ_TILE ? n - i0 : SEQ_TILE;
        for (int j = threadIdx.x; j < len; j += blockDim.x) {
            t_seq[j] = seq[i0 + j];
            t_mask[j] = mask[i0 + j];
            t_lp[j] = lp[i0 + j];
        }
        __syncthreads();
        for (int j = 0; j < len; j++)
            if (t_seq[j] == s) acc = __dadd_rn(acc, __dmul_rn((double)t_mask[j], (double)t_lp[j]));
        __syncthreads();
    }
    if (s < S) seq_lp[s] = acc;
}

void cuda_seq_logprob(double *seq_lp, const float *lp, const float *mask, const int *seq, int n, int S) {
    if (S <= 0) return;
    seq_logprob_kernel<<<cdiv((size_t)S, SEQ_THREADS), SEQ_THREADS, 0, cuda_stream()>>>(seq_lp, lp, mask,
                                                                                          seq, n, S);
    LAUNCH_CHECK();
}

// ---- loss, weights, statistics, token weights -------------------------------------

static const int DPO_THREADS = 512;

// One pair's rewards and z = beta * margin, as cpu_dpo_loss computes them.
struct PairTerms { double reward_c, reward_r, z; };
__device__ __forceinline__ PairTerms pair_terms(const double *lp, const double *ref, double beta, int n,
                                                int i) {
    PairTerms t;
    t.reward_c = __dmul_rn(beta, __dsub_rn(lp[i], ref[i]));
    t.reward_r = __dmul_rn(beta, __dsub_rn(lp[n + i], ref[n + i]));
    t.z = __dsub_rn(t.reward_c, t.reward_r);
    return t;
}

// One block, one launch: the threads write the pair weights w in parallel;
// thread 0 forms the loss and the statistics as sequential sums in pair order
// (n is a batch of pairs: tens, not millions); after the barrier (which makes
// w visible to the whole block) the threads write the token weights.
__global__ void dpo_loss_kernel(double *out, double *w, float *tw, const double *lp, const double *ref,
                                const double *pair_weight, double beta, int n, const int *seq,
                                const float *mask, int n_rows) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const PairTerms t = pair_terms(lp, ref, beta, n, i);
        const double pw = pair_weight ? pair_weight[i] : 1.0;
        // d(-log sigmoid(z))/dz = -sigmoid(-z); dz/dlp_c = beta, dz/dlp_r = -beta
        const double g = __ddiv_rn(__dmul_rn(__dmul_rn(-beta, dpo_sigmoid(-t.z)), pw), (double)n);
        w[i] = g;
        w[n + i] = -g;
    }
    if (threadIdx.x == 0) {
        double loss = 0, rc = 0, rr = 0, acc = 0, lc = 0, lr = 0;
        for (int i = 0; i < n; i++) {
            const PairTerms t = pair_terms(lp, ref, beta, n, i);
            const double pw = pair_weight ? pair_weight[i] : 1.0;
            loss = __dsub_rn(loss, __dmul_rn(pw, dpo_log_sigmoid(t.z)));
            rc = __dadd_rn(rc, t.reward_c);
            rr = __dadd_rn(rr, t.reward_r);
            acc = __dadd_rn(acc, t.reward_c > t.reward_r ? 1.0 : 0.0);
            lc = __dadd_rn(lc, lp[i]);
            lr = __dadd_rn(lr, lp[n + i]);
        }
        const double dn = (double)n;
        out[DPO_OUT_LOSS] = __ddiv_rn(loss, dn);
        out[DPO_OUT_REWARDS_CHOSEN] = __ddiv_rn(rc, dn);
        out[DPO_OUT_REWARDS_REJECTED] = __ddiv_rn(rr, dn);
        out[DPO_OUT_REWARDS_MARGINS] = __ddiv_rn(__dsub_rn(rc, rr), dn);
        out[DPO_OUT_REWARDS_ACCURACIES] = __ddiv_rn(acc, dn);
        out[DPO_OUT_LOGPS_CHOSEN] = __ddiv_rn(lc, dn);
        out[DPO_OUT_LOGPS_REJECTED] = __ddiv_rn(lr, dn);
    }
    __syncthreads();
    // logprob_bwd takes the gradient of -sum_r tw_r * logprob_r: tw_r = -w_seq * mask_r
    for (int r = threadIdx.x; r < n_rows; r += blockDim.x)
        tw[r] = __double2float_rn(__dmul_rn(-w[seq[r]], (double)mask[r]));
}

void cuda_dpo_loss(double *out, double *w, float *tw, const double *lp, const double *ref,
                   const double *pair_weight, double beta, int n, const int *seq, const float *mask,
                   int n_rows) {
    if (n <= 0) return;
    dpo_loss_kernel<<<1, DPO_THREADS, 0, cuda_stream()>>>(out, w, tw, lp, ref, pair_weight, beta, n, seq, mask,
                                                          n_rows);
    LAUNCH_CHECK();
}
