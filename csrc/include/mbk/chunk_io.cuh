// Row chunks of kVec elements: vectorized loads/stores of T converted to/from fp32 registers, shared
// by the LayerNorm and softmax kernels. ``chunk`` indexes kVec-element chunks of ``p``.
#pragma once

#include "mbk/portability.cuh"

namespace mbk {

template <typename T, int kVec>
__device__ __forceinline__ void load_chunk(const T* __restrict__ p, int chunk, float (&out)[kVec]) {
  if (kVec == 1) {
    out[0] = to_float(p[chunk]);
  } else {
    const AlignedVec<T, kVec> v = reinterpret_cast<const AlignedVec<T, kVec>*>(p)[chunk];
    MBK_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) out[j] = to_float(v.v[j]);
  }
}

template <typename T, int kVec>
__device__ __forceinline__ void store_chunk(T* __restrict__ p, int chunk, const float (&in)[kVec]) {
  if (kVec == 1) {
    p[chunk] = from_float<T>(in[0]);
  } else {
    AlignedVec<T, kVec> v;
    MBK_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) v.v[j] = from_float<T>(in[j]);
    reinterpret_cast<AlignedVec<T, kVec>*>(p)[chunk] = v;
  }
}

}  // namespace mbk
