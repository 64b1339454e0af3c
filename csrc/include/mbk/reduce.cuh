// mbk/reduce.cuh -- warp and row reductions shared by the csrc kernels (float accumulation).
//
// A "row" is the set of threads with the same threadIdx.y (and z): the kernels here give each row
// of a matrix either one warp (blockDim.x == 32, several rows per block, no barriers involved) or a
// whole block (blockDim.x a multiple of 32 up to 1024, blockDim.y == 1). row_allreduce handles both;
// every thread of the row gets the same result, summed in the same order.
#pragma once

#include "portability.cuh"

namespace mbk {

// How many chunks of a row of `chunks` this thread owns when chunks are dealt out round-robin
// (chunk c = threadIdx.x + k * blockDim.x belongs to this thread for k < owned_chunks(chunks)).
// Kernels test `k < n` with one n rather than `c < chunks` per chunk: one live register instead of
// a predicate per chunk, which is what keeps the long-row variants within their register budget.
__device__ __forceinline__ int owned_chunks(int chunks) {
  const int t = static_cast<int>(threadIdx.x);
  return t < chunks ? (chunks - 1 - t) / static_cast<int>(blockDim.x) + 1 : 0;
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Butterfly all-reduce over the 32 lanes of a full warp.
template <typename Op>
__device__ __forceinline__ float warp_allreduce(float v, Op op) {
  MBK_PRAGMA_UNROLL
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// All-reduce over the threads of a row. `scratch` is shared memory for at least 32 floats
// (unused when blockDim.x == 32). Must be reached by every thread of the block when
// blockDim.x > 32 (it contains __syncthreads).
template <typename Op>
__device__ __forceinline__ float row_allreduce(float v, Op op, float* scratch) {
  v = warp_allreduce(v, op);
  if (blockDim.x == 32) return v;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nwarps = blockDim.x / 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = scratch[0];
  for (int w = 1; w < nwarps; ++w) total = op(total, scratch[w]);
  __syncthreads();  // scratch is free again for the next reduction
  return total;
}

// Two sums at once (one pair of barriers instead of two). `scratch`: at least 64 floats.
__device__ __forceinline__ void row_allreduce_sum2(float& a, float& b, float* scratch) {
  MBK_PRAGMA_UNROLL
  for (int offset = 16; offset > 0; offset >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, offset);
    b += __shfl_xor_sync(0xffffffffu, b, offset);
  }
  if (blockDim.x == 32) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nwarps = blockDim.x / 32;
  if (lane == 0) {
    scratch[warp] = a;
    scratch[32 + warp] = b;
  }
  __syncthreads();
  a = scratch[0];
  b = scratch[32];
  for (int w = 1; w < nwarps; ++w) {
    a += scratch[w];
    b += scratch[32 + w];
  }
  __syncthreads();
}

}  // namespace mbk
