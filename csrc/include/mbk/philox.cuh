// mbk/philox.cuh -- Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2, 3") and the
// attention-dropout mask every flash-attention kernel draws from it.
//
// Counter-based: the random bits of an element are a pure function of (seed, offset, element coordinates), so the
// forward and the backward regenerate the same mask, any tiling or thread mapping gives the same mask, and the
// mask is reproducible from the seed and offset alone (megatron_biomed/kernels/philox.py computes it in PyTorch
// for the tests and for the unfused fallback).
//
// Mask of element (b, h, i, j) (batch, query head, query row, key column) for a call with (seed, offset):
//   key     = (lo32(seed), hi32(seed))
//   counter = (j / 4, i, b * num_heads + h, offset)        -> 4 x 32 random bits, word j % 4 belongs to column j
//   kept    iff bits >= threshold, threshold = dropout_threshold(p) = min(round(p * 2^32), 2^32 - 1)
//   kept elements are scaled by 1 / (1 - p) (dropout_scale(p)).
#pragma once

#include "mbk/portability.cuh"

#include <stdint.h>

namespace mbk {

struct Philox4 {
  uint32_t x[4];
};

__host__ __device__ __forceinline__ void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Philox4x32 with 10 rounds, Random123's constants and round function.
__host__ __device__ __forceinline__ Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                                          uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  MBK_PRAGMA_UNROLL
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, c0, hi0, lo0);
    philox_mulhilo(kM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Host side: the integer threshold a 32-bit draw is compared with, and the scale of kept elements.
inline uint32_t dropout_threshold(float p) {
  const double t = static_cast<double>(p) * 4294967296.0 + 0.5;
  return t >= 4294967295.0 ? 4294967295u : (t <= 0.0 ? 0u : static_cast<uint32_t>(t));
}
inline float dropout_scale(float p) { return p < 1.f ? 1.f / (1.f - p) : 0.f; }

// The four random words of columns 4 * (j / 4) .. + 3 of row i of head bh (= b * num_heads + h).
__host__ __device__ __forceinline__ Philox4 dropout_bits4(uint64_t seed, uint32_t offset, int bh, int i, int j) {
  return philox4x32_10(static_cast<uint32_t>(j) >> 2, static_cast<uint32_t>(i), static_cast<uint32_t>(bh), offset,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Whether element (bh, i, j) is kept.
__host__ __device__ __forceinline__ bool dropout_keep(uint64_t seed, uint32_t offset, uint32_t threshold, int bh, int i,
                                                      int j) {
  // The word is picked with selects, not x[j & 3]: a run-time index into the array would put it in local memory.
  const Philox4 r = dropout_bits4(seed, offset, bh, i, j);
  const int w = j & 3;
  const uint32_t bits = w == 0 ? r.x[0] : (w == 1 ? r.x[1] : (w == 2 ? r.x[2] : r.x[3]));
  return bits >= threshold;
}

}  // namespace mbk
