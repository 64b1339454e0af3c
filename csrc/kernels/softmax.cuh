// softmax.cuh -- fused scaled softmax kernels for attention scores, forward and backward:
//   * scaled masked softmax: y = softmax(scale * x) over the last dimension with masked positions
//     excluded (a padding mask [mask_batch, 1, sq, sk], broadcast over heads; nonzero = masked);
//   * scaled upper-triangular (causal) softmax on [attn_batches, sq, sq]: key j > query i excluded.
// Excluded positions get probability 0; a row with nothing left (fully masked) is all zeros, not NaN.
// Backward (both): dx = scale * y * (dy - sum(dy * y)), which is 0 wherever y is 0.
// fp32/fp16/bf16 data, fp32 arithmetic. Host launchers in softmax_launch.h; call those.
//
// Work layout as in layer_norm.cuh: one warp per row (blockDim = (32, 4)) for short rows, one block
// per row for long rows; each thread keeps kIters chunks of kVec elements in registers. Register
// budget (64: blocks of up to 1024 threads) and __launch_bounds__(1024, 1) as explained there.
#pragma once

#include <stdint.h>

#include "mbk/portability.cuh"
#include "mbk/chunk_io.cuh"
#include "mbk/reduce.cuh"

namespace mbk {
namespace softmax {

template <int kVec>
__device__ __forceinline__ void load_mask(const uint8_t* __restrict__ p, int chunk, bool (&masked)[kVec]) {
  if (kVec == 1) {
    masked[0] = p[chunk] != 0;
  } else {
    const AlignedVec<uint8_t, kVec> v = reinterpret_cast<const AlignedVec<uint8_t, kVec>*>(p)[chunk];
    MBK_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) masked[j] = v.v[j] != 0;
  }
}

// Forward over `rows` rows of length sk. Row r is query q = r % sq of attention batch r / sq
// (= batch * heads + head). kCausal: keys j > q are excluded (sq == sk). Otherwise, when mask is
// not null, mask row ((mask_batch == 1 ? 0 : r / (heads * sq)) * sq + q) excludes where nonzero.
template <typename T, int kVec, int kIters, bool kCausal>
__global__ void __launch_bounds__(1024, 1) scaled_softmax_fwd_kernel(const T* __restrict__ x,
                                                                     const uint8_t* __restrict__ mask,
                                                                     T* __restrict__ y, long long rows, int sq,
                                                                     int sk, int heads, int mask_batch, float scale) {
  MBK_SHARED float scratch[32];
  const long long row = static_cast<long long>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;  // only warp-per-row blocks (no barriers) have rows past the end
  const int chunks = sk / kVec;
  const int q = static_cast<int>(row % sq);
  const T* xr = x + row * sk;
  const uint8_t* mr = nullptr;
  if (!kCausal && mask != nullptr) {
    const long long b = mask_batch == 1 ? 0 : row / (static_cast<long long>(heads) * sq);
    mr = mask + (b * sq + q) * static_cast<long long>(sk);
  }

  float v[kIters][kVec];
  float row_max = -INFINITY;
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    MBK_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) v[k][j] = -INFINITY;
    // causal: a chunk wholly above the diagonal is not even read
    if (c < chunks && (!kCausal || c * kVec <= q)) {
      float xv[kVec];
      load_chunk<T, kVec>(xr, c, xv);
      bool masked[kVec];
      if (mr != nullptr) {
        load_mask<kVec>(mr, c, masked);
      } else {
        MBK_PRAGMA_UNROLL
        for (int j = 0; j < kVec; ++j) masked[j] = false;
      }
      MBK_PRAGMA_UNROLL
      for (int j = 0; j < kVec; ++j) {
        const bool excluded = masked[j] || (kCausal && c * kVec + j > q);
        v[k][j] = excluded ? -INFINITY : xv[j] * scale;
        row_max = fmaxf(row_max, v[k][j]);
      }
    }
  }
  row_max = row_allreduce(row_max, MaxOp(), scratch);

  // Nothing left in the row (everything excluded, or only -inf scores): all zeros.
  const bool empty = row_max == -INFINITY;
  float sum = 0.0f;
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    MBK_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) {
      v[k][j] = empty ? 0.0f : expf(v[k][j] - row_max);  // excluded: exp(-inf) = 0
      sum += v[k][j];
    }
  }
  sum = row_allreduce(sum, SumOp(), scratch);
  const float inv = empty ? 0.0f : 1.0f / sum;

  T* yr = y + row * sk;
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    if (c < chunks) {
      float out[kVec];
      MBK_PRAGMA_UNROLL
      for (int j = 0; j < kVec; ++j) out[j] = v[k][j] * inv;
      store_chunk<T, kVec>(yr, c, out);
    }
  }
}

// Backward over `rows` rows of length cols: dx = scale * y * (dy - sum(dy * y)). dx may alias dy.
template <typename T, int kVec, int kIters>
__global__ void __launch_bounds__(1024, 1) scaled_softmax_bwd_kernel(const T* dy, const T* __restrict__ y, T* dx,
                                                                     long long rows, int cols, float scale) {
  MBK_SHARED float scratch[32];
  const long long row = static_cast<long long>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;
  const int chunks = cols / kVec;
  const long long off = row * cols;
  const int n = owned_chunks(chunks);  // this thread's chunks are k < n
  // Only y stays in registers; dy is read again in the second pass (from cache): holding both took
  // the 16-value variants past 64 registers. With dx aliasing dy, each chunk of dy is still read
  // before the same thread overwrites it.
  float p[kIters][kVec];
  float dot = 0.0f;
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    if (k < n) {
      const int c = threadIdx.x + k * blockDim.x;
      float g[kVec];
      load_chunk<T, kVec>(dy + off, c, g);
      load_chunk<T, kVec>(y + off, c, p[k]);
      MBK_PRAGMA_UNROLL
      for (int j = 0; j < kVec; ++j) dot += g[j] * p[k][j];
    }
  }
  dot = row_allreduce(dot, SumOp(), scratch);
  MBK_PRAGMA_UNROLL
  for (int k = 0; k < kIters; ++k) {
    if (k < n) {
      const int c = threadIdx.x + k * blockDim.x;
      float g[kVec];
      load_chunk<T, kVec>(dy + off, c, g);
      MBK_PRAGMA_UNROLL
      for (int j = 0; j < kVec; ++j) p[k][j] = scale * p[k][j] * (g[j] - dot);
      store_chunk<T, kVec>(dx + off, c, p[k]);
    }
  }
}

}  // namespace softmax
}  // namespace mbk
