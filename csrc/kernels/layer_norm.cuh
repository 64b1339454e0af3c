// layer_norm.cuh -- fused LayerNorm (with optional affine weight and bias) and RMSNorm kernels,
// forward and backward, for fp32/fp16/bf16 data with fp32 accumulation. Host launchers that pick
// the configuration are in layer_norm_launch.h; call those, not these kernels.
//
// Work layout: each matrix row is handled by one "row group" of threads -- a single warp
// (blockDim = (32, rows_per_block)) for short rows, or a whole block (blockDim = (threads, 1)) for
// long ones. A thread owns the chunks c = threadIdx.x + k * blockDim.x (k < kIters) of kVec
// consecutive elements; kVec > 1 means 16-byte vector loads, used only when cols % kVec == 0 and
// every pointer is 16-byte aligned (the launcher checks). The row stays in registers between the
// forward's passes, so statistics are two-pass (mean, then the sum of squared deviations) without
// re-reading global memory. The launcher keeps kIters * kVec <= 16 values per thread.
//
// Registers: blocks have up to 1024 threads, so every variant must fit in 64 registers, and the
// 16-value ones (rows over 8192 elements) use nearly all of them. The kernels are written so that
// ptxas needs no spills (tests/kernels/test_cuda_build.py checks): __launch_bounds__(1024, 1), as
// with a bare (1024) ptxas (CUDA 13.0) held some variants to 32 registers and spilled to do so; a
// thread's chunks bounded by one count (owned_chunks), not a comparison per chunk; and where
// ptxas would otherwise load many chunks ahead (the forward's output pass, the backward's first
// pass), only a few chunks in flight.
//
// Backward: dx per row as usual; dgamma/dbeta are column sums over rows, done deterministically in
// two steps: each row group accumulates its columns over the rows it visits in registers and writes
// one partial row to a float workspace, then layer_norm_bwd_params_kernel sums the partials.
#pragma once

#include "mbk/portability.cuh"
#include "mbk/chunk_io.cuh"
#include "mbk/reduce.cuh"

namespace mbk {
namespace layer_norm {

// gamma chunk, or ones when there is no weight
template <typename T, int kVec>
__device__ __forceinline__ void load_gamma(const T* __restrict__ gamma, int chunk, float (&out)[kVec]) {
  if (gamma != nullptr) {
    load_chunk<T, kVec>(gamma, chunk, out);
  } else {
    MBK_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) out[j] = 1.0f;
  }
}

// Forward. mean_out may be null (and is not written for RMSNorm); gamma/beta may be null (weight 1,
// bias 0). grid.x * blockDim.y >= rows.
template <typename T, bool kRMS, int kVec, int kIters>
__global__ void __launch_bounds__(1024, 1) layer_norm_fwd_kernel(const T* __restrict__ x, const T* __restrict__ gamma,
                                                                 const T* __restrict__ beta, T* __restrict__ y,
                                                                 float* __restrict__ mean_out,
                                                                 float* __restrict__ rstd_out, int rows, int cols,
                                                                 float eps) {
  MBK_SHARED float scratch[32];
  const int row = blockIdx.x * blockDim.y + threadIdx.y;
  // Only warp-per-row blocks (no barriers) can have rows past the end, so returning is safe.
  if (row >= rows) return;
  const int chunks = cols / kVec;
  const T* xr = x + static_cast<long long>(row) * cols;

  const int n = owned_chunks(chunks);  // this thread's chunks are k < n
  float v[kIters][kVec];
  float sum = 0.0f;
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    if (k < n) {
      load_chunk<T, kVec>(xr, threadIdx.x + k * blockDim.x, v[k]);
      MBK_PRAGMA_UNROLL
      for (int j = 0; j < kVec; ++j) sum += v[k][j];
    }
  }
  const float inv_cols = 1.0f / static_cast<float>(cols);
  float mean = 0.0f;
  if (!kRMS) mean = row_allreduce(sum, SumOp(), scratch) * inv_cols;

  float sq = 0.0f;
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    if (k < n) {
      MBK_PRAGMA_UNROLL
      for (int j = 0; j < kVec; ++j) {
        v[k][j] -= mean;
        sq += v[k][j] * v[k][j];
      }
    }
  }
  const float rstd = rsqrtf(row_allreduce(sq, SumOp(), scratch) * inv_cols + eps);
  if (threadIdx.x == 0) {
    if (!kRMS && mean_out != nullptr) mean_out[row] = mean;
    rstd_out[row] = rstd;
  }

  T* yr = y + static_cast<long long>(row) * cols;
  const bool has_beta = !kRMS && beta != nullptr;
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    if (k < n) {
      const int c = threadIdx.x + k * blockDim.x;
      float g[kVec];
      load_gamma<T, kVec>(gamma, c, g);
      MBK_PRAGMA_UNROLL
      for (int j = 0; j < kVec; ++j) v[k][j] = v[k][j] * rstd * g[j];
      if (has_beta) {
        float b[kVec];
        load_chunk<T, kVec>(beta, c, b);
        MBK_PRAGMA_UNROLL
        for (int j = 0; j < kVec; ++j) v[k][j] += b[j];
      }
      store_chunk<T, kVec>(yr, c, v[k]);
    }
    // Keeps ptxas from loading gamma/beta for every chunk up front (it does not hoist loads above
    // a __syncwarp): with 16 values held, that took more than 64 registers. The whole warp gets
    // here (a warp-per-row warp past the last row returned as a whole).
    if (k % 4 == 3 && k + 1 < kIters) __syncwarp(0xffffffffu);
  }
}

// Backward, step 1: dx for every row, and per-row-group partial column sums of dy * xhat (for
// dgamma) and dy (for dbeta) into part_dgamma/part_dbeta, each [gridDim.x * blockDim.y, cols].
// Row group p = blockIdx.x * blockDim.y + threadIdx.y visits rows p, p + P, p + 2P, ...
// mean is ignored for RMSNorm; gamma may be null (weight 1); part_dbeta may be null.
template <typename T, bool kRMS, int kVec, int kIters>
__global__ void __launch_bounds__(1024, 1) layer_norm_bwd_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                                    const T* __restrict__ gamma,
                                                                    const float* __restrict__ mean,
                                                                    const float* __restrict__ rstd,
                                                                    T* __restrict__ dx, float* __restrict__ part_dgamma,
                                                                    float* __restrict__ part_dbeta, int rows, int cols) {
  MBK_SHARED float scratch[64];
  const int chunks = cols / kVec;
  const int groups = gridDim.x * blockDim.y;
  const int group = blockIdx.x * blockDim.y + threadIdx.y;
  const float inv_cols = 1.0f / static_cast<float>(cols);

  // Only the column accumulators live across rows; x, dy and gamma are read again in the second
  // pass over a row (from cache) rather than held, to keep register use at 2 * kIters * kVec.
  float acc_dg[kIters][kVec];
  float acc_db[kIters][kVec];
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    MBK_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) {
      acc_dg[k][j] = 0.0f;
      acc_db[k][j] = 0.0f;
    }
  }

  const int n = owned_chunks(chunks);  // this thread's chunks are k < n

  // Block-per-row launches have blockDim.y == 1, so every thread of the block runs the same
  // iterations and reaches the barriers inside row_allreduce_sum2 together.
  for (int row = group; row < rows; row += groups) {
    const long long off = static_cast<long long>(row) * cols;
    const float m = kRMS ? 0.0f : mean[row];
    const float rs = rstd[row];
    // First pass: the row sums only. It touches no per-chunk registers, so it can stay a loop:
    // unrolled, ptxas loads several chunks ahead on top of the 2 * kIters * kVec accumulators.
    float s_gdy = 0.0f, s_gdy_xhat = 0.0f;
    MBK_PRAGMA_NO_UNROLL
    for (int k = 0; k < n; ++k) {
      const int c = threadIdx.x + k * blockDim.x;
      float xv[kVec], dyv[kVec], g[kVec];
      load_chunk<T, kVec>(x + off, c, xv);
      load_chunk<T, kVec>(dy + off, c, dyv);
      load_gamma<T, kVec>(gamma, c, g);
      MBK_PRAGMA_UNROLL
      for (int j = 0; j < kVec; ++j) {
        const float xhat = (xv[j] - m) * rs;
        const float gdy = dyv[j] * g[j];
        s_gdy += gdy;
        s_gdy_xhat += gdy * xhat;
      }
    }
    row_allreduce_sum2(s_gdy, s_gdy_xhat, scratch);
    // Second pass: dx = rs * (dy * g - mean(g * dy) - xhat * mean(g * dy * xhat)) (rs folded into
    // a and b), and the column sums for dgamma/dbeta.
    const float a = kRMS ? 0.0f : rs * s_gdy * inv_cols;
    const float b = rs * s_gdy_xhat * inv_cols;
    MBK_PRAGMA_UNROLL
    for (int k = 0; k < kIters; ++k) {
      if (k < n) {
        const int c = threadIdx.x + k * blockDim.x;
        float xv[kVec], dyv[kVec], g[kVec];
        load_chunk<T, kVec>(x + off, c, xv);
        load_chunk<T, kVec>(dy + off, c, dyv);
        load_gamma<T, kVec>(gamma, c, g);
        MBK_PRAGMA_UNROLL
        for (int j = 0; j < kVec; ++j) {
          const float xhat = (xv[j] - m) * rs;
          acc_dg[k][j] += dyv[j] * xhat;
          acc_db[k][j] += dyv[j];
          xv[j] = rs * dyv[j] * g[j] - a - xhat * b;
        }
        store_chunk<T, kVec>(dx + off, c, xv);
      }
    }
  }

  if (group < groups) {
    float* pg = part_dgamma + static_cast<long long>(group) * cols;
    float* pb = part_dbeta != nullptr ? part_dbeta + static_cast<long long>(group) * cols : nullptr;
    MBK_PRAGMA_UNROLL
    for (int k = 0; k < kIters; ++k) {
      if (k < n) {
        const int c = threadIdx.x + k * blockDim.x;
        // scalar stores: the workspace is only guaranteed 16-byte aligned, kVec floats may be 32 bytes
        MBK_PRAGMA_UNROLL
        for (int j = 0; j < kVec; ++j) {
          pg[c * kVec + j] = acc_dg[k][j];
          if (pb != nullptr) pb[c * kVec + j] = acc_db[k][j];
        }
      }
    }
  }
}

// Backward, step 2: dgamma[c] = sum_p part_dgamma[p, c] (and the same for dbeta), summed in a fixed
// order, so the result does not depend on scheduling. One thread per column.
template <typename T>
__global__ void layer_norm_bwd_params_kernel(const float* __restrict__ part_dgamma,
                                             const float* __restrict__ part_dbeta, int groups, int cols,
                                             T* __restrict__ dgamma, T* __restrict__ dbeta) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  if (dgamma != nullptr) {
    float s = 0.0f;
    for (int p = 0; p < groups; ++p) s += part_dgamma[static_cast<long long>(p) * cols + c];
    dgamma[c] = from_float<T>(s);
  }
  if (dbeta != nullptr && part_dbeta != nullptr) {
    float s = 0.0f;
    for (int p = 0; p < groups; ++p) s += part_dbeta[static_cast<long long>(p) * cols + c];
    dbeta[c] = from_float<T>(s);
  }
}

}  // namespace layer_norm
}  // namespace mbk
