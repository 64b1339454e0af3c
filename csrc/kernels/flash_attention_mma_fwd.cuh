// FlashAttention-2 forward on tensor cores (bf16 / fp16 in, fp32 accumulate), torch-free.
//
// Same semantics as the scalar kernel in flash_attention.cuh: grouped-query attention (query head h reads kv head
// h / (num_heads / num_kv_heads)), causal masking bottom-right aligned (query i sees key j iff
// j <= i + seqlen_k - seqlen_q), any seqlen_q / seqlen_k, head dims 64/80/96/128, lse = m + log(l) saved per row
// ([batch, heads, seqlen_q] float32), a row that sees no key gets out = 0 and lse = -inf. Tensors are strided
// through FlashParams (csrc/kernels/flash_params.h); attention dropout (mbk/philox.cuh) when p.dropout_p > 0.
// Compiled by nvcc (PTX mma / ldmatrix / cp.async) and by g++ against the CPU emulator (csrc/emu), through
// mbk/tensor_core.cuh only.
//
// Work split: one block of 4 warps per (64-query tile, head, batch); warp w owns query rows 16w..16w+15 of the tile
// (one m16 slice of every mma). Keys stream in tiles of 64 through a 2-stage cp.async ring in shared memory
// (tile j+2 is in flight while tile j is used). Per key tile and warp:
//   S = Q K^T        : Q fragments live in registers for the whole kernel (ldmatrix x4 once); K fragments by
//                      ldmatrix x4 (the [key][dim] tile read as the mma's "col" B operand needs no transpose);
//                      fp32 accumulators, 8 n-tiles of 8 keys.
//   online softmax   : fp32, exp2f with softmax_scale * log2(e) folded into one fma; row max over the quad of lanes
//                      sharing a row (2 shuffles); row sums stay per lane until the end (the rescale factor is
//                      uniform over the quad), as in flash-attention.
//   dropout          : after the statistics (lse and the row sums are of the undropped P, as flash-attention does),
//                      dropped elements are zeroed; the 1 / (1 - p) of the kept ones is applied once to the output
//                      row together with 1 / l (mathematically the same as scaling each kept element).
//   O += P V         : the S accumulator layout of a lane is exactly its A-fragment layout for the next mma (the
//                      FA2 register reuse): P is rounded to T in registers, no shared-memory round trip; V
//                      fragments by ldmatrix x4 .trans.
// The output is staged through the warp's own rows of the Q tile (Q is in registers by then) and written with
// 16-byte stores.
//
// Shared memory: Q [64][D+8] + 2 stages x (K, V) [64][D+8] elements of T. The 8-element (16-byte) row padding puts
// the 8 rows of every ldmatrix 8x8 matrix on 8 disjoint groups of 4 banks for each D in {64, 80, 96, 128} (row
// pitch 36/44/52/68 words), so ldmatrix and the staging stores are bank-conflict free without a swizzle.
// 46 KiB (D=64), 55 KiB (80), 65 KiB (96), 85 KiB (128): dynamic, MBK_SET_MAX_DYNAMIC_SMEM above 48 KiB.
// Registers / spills per instantiation (nvcc 13.0 -Xptxas -v): see notes in the report of issue 21; 0 spill bytes
// on sm_80 and sm_90 is a requirement (tests/kernels/test_cuda_build.py checks spills of every kernel).
// Causal masking and dropout are run-time flags (one instantiation per (T, D)): the mask code only runs on tiles
// that cross the diagonal or the end of the keys, the dropout code only when p > 0.
#pragma once

#include <stdint.h>

#include <stdexcept>
#include <string>

#include "kernels/flash_params.h"
#include "mbk/philox.cuh"
#include "mbk/portability.cuh"
#include "mbk/tensor_core.cuh"

namespace mbk {
namespace flash {
namespace mma_fwd {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockM = kWarps * 16;  // query rows per block
constexpr int kBlockN = 64;           // keys per streamed tile
constexpr int kStages = 2;            // K/V tiles in shared memory (cp.async ring)
constexpr int kPad = 8;               // elements of row padding (16 bytes)
constexpr unsigned kFullMask = 0xffffffffu;

template <int D>
struct Tile {
  static_assert(D == 64 || D == 80 || D == 96 || D == 128, "head_dim must be 64, 80, 96 or 128");
  static constexpr int kPitch = D + kPad;                 // elements per shared-memory row
  static constexpr int kTileElems = kBlockM * kPitch;     // one [64][D+8] tile (Q, a K stage or a V stage)
  static constexpr int kChunks = D / 8;                   // 16-byte chunks per row
  static constexpr int kKSteps = D / 16;                  // k-steps of S = Q K^T
  static constexpr int kDTiles = D / 8;                   // n-tiles of O (8 dims each)
  static constexpr int kNTiles = kBlockN / 8;             // n-tiles of S (8 keys each)
  static constexpr size_t kSmemBytes = sizeof(uint16_t) * kTileElems * (1 + 2 * kStages);
};
static_assert(kBlockM == kBlockN, "one tile shape for Q, K and V");

// Everything the kernel needs besides the tensors' geometry: derived on the host once per call.
struct FwdArgs {
  FlashParams p;
  float scale_log2;            // softmax_scale * log2(e)
  uint32_t dropout_threshold;  // mbk::dropout_threshold(p.dropout_p); used when dropout is on
  float dropout_scale;         // mbk::dropout_scale(p.dropout_p), or 1 without dropout
  bool dropout;                // p.dropout_p > 0
};

// Two floats rounded to T, packed with the lower-indexed element in the low half (the mma's fragment order).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
#if defined(__CUDACC__)
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}
#else
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  return static_cast<uint32_t>(__half_as_ushort(__float2half_rn(lo))) |
         (static_cast<uint32_t>(__half_as_ushort(__float2half_rn(hi))) << 16);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
}
#endif

// Element offset of (b, s, h, 0) in a strided [batch, seqlen, heads, D] tensor.
__device__ __forceinline__ int64_t offset_of(const Strides& st, int b, int s, int h) {
  return static_cast<int64_t>(b) * st.batch + static_cast<int64_t>(s) * st.row + static_cast<int64_t>(h) * st.head;
}

// Issues the cp.async copies of rows [r0, r0 + 64) of head h of a strided tensor into a [64][D+8] tile; rows at or
// past `seqlen` are zero-filled (their global memory is not read).
template <typename T, int D>
__device__ __forceinline__ void load_tile_async(T* tile, const T* base, const Strides& st, int b, int r0, int h,
                                                int seqlen) {
  using Cfg = Tile<D>;
  static_assert(kBlockM * Cfg::kChunks % kThreads == 0, "whole chunks per thread");
  MBK_PRAGMA_UNROLL
  for (int it = 0; it < kBlockM * Cfg::kChunks / kThreads; ++it) {
    const int idx = threadIdx.x + it * kThreads;
    const int r = idx / Cfg::kChunks;
    const int c = idx - r * Cfg::kChunks;
    const bool valid = r0 + r < seqlen;
    const T* src = valid ? base + offset_of(st, b, r0 + r, h) + c * 8 : base;
    cp_async_16(tile + r * Cfg::kPitch + c * 8, src, valid);
  }
}

// Keep bits of this lane's four elements (rows g, g+8 x columns j, j+1 with j = n0 + 2t, n0 a multiple of 8) of a
// dropout mask: bit 0/1 = row g, columns j/j+1; bit 2/3 = row g+8. Columns j, j+1 share one Philox call (one group
// of 4 columns); lanes t and t^1 share that group, so each of the two computes one row for both and they swap the
// halves: one Philox4x32-10 per lane per 8x16 slice of the mask instead of two.
__device__ __forceinline__ uint32_t dropout_bits(const FwdArgs& a, int bh, int row_g, int n0, int lane) {
  const int t = lane & 3;
  const int row = (t & 1) ? row_g + 8 : row_g;  // even lanes draw row g, odd lanes row g+8
  const Philox4 r = dropout_bits4(a.p.dropout_seed, a.p.dropout_offset, bh, row, n0 + 2 * t);
  const uint32_t th = a.dropout_threshold;
  const uint32_t lo = (r.x[0] >= th ? 1u : 0u) | (r.x[1] >= th ? 2u : 0u);  // columns 0, 1 of the group
  const uint32_t hi = (r.x[2] >= th ? 1u : 0u) | (r.x[3] >= th ? 2u : 0u);  // columns 2, 3
  // Even lane t (columns 0,1 of the group) keeps lo of row g, needs lo of row g+8 (from t+1) and gives hi of row g.
  // Odd lane t (columns 2,3) keeps hi of row g+8, needs hi of row g (from t-1) and gives lo of row g+8.
  const uint32_t mine = (t & 1) ? hi : lo;
  const uint32_t give = (t & 1) ? lo : hi;
  const uint32_t got = __shfl_xor_sync(kFullMask, give, 1);
  return (t & 1) ? (got | (mine << 2)) : (mine | (got << 2));
}

// grid = (ceil(seqlen_q / 64), num_heads, batch), block = 128, dynamic shared memory Tile<D>::kSmemBytes.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) flash_fwd_mma_kernel(const FwdArgs args) {
  using Cfg = Tile<D>;
  constexpr int P = Cfg::kPitch;
  const FlashParams& p = args.p;

  MBK_DYNAMIC_SHARED(T, smem);
  T* s_q = smem;
  T* s_k = smem + Cfg::kTileElems;                   // stage s at s_k + s * 2 * kTileElems
  T* s_v = smem + 2 * Cfg::kTileElems;               // stage s at s_v + s * 2 * kTileElems
  constexpr int kStageStride = 2 * Cfg::kTileElems;

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int g = lane / 4;
  const int t = lane % 4;
  const int m0 = blockIdx.x * kBlockM;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int hk = h / (p.num_heads / p.num_kv_heads);
  const int bh = b * p.num_heads + h;
  const int diag = p.seqlen_k - p.seqlen_q;  // causal: query i sees keys j <= i + diag

  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);

  // Keys this block visits: all, or (causal) up to the last one its last row sees.
  int key_end = p.seqlen_k;
  if (p.causal) {
    const int e = m0 + kBlockM + diag;
    key_end = e < 0 ? 0 : (e < key_end ? e : key_end);
  }
  const int n_tiles = (key_end + kBlockN - 1) / kBlockN;

  // Prologue: group 0 = Q + tile 0, group 1 = tile 1 (groups are committed even when empty, so that group j is
  // always tile j and the wait count below is constant).
  if (n_tiles > 0) {
    load_tile_async<T, D>(s_q, q, p.q_strides, b, m0, h, p.seqlen_q);
    load_tile_async<T, D>(s_k, k, p.k_strides, b, 0, hk, p.seqlen_k);
    load_tile_async<T, D>(s_v, v, p.v_strides, b, 0, hk, p.seqlen_k);
  }
  cp_async_commit();
  if (n_tiles > 1) {
    load_tile_async<T, D>(s_k + kStageStride, k, p.k_strides, b, kBlockN, hk, p.seqlen_k);
    load_tile_async<T, D>(s_v + kStageStride, v, p.v_strides, b, kBlockN, hk, p.seqlen_k);
  }
  cp_async_commit();

  float o[Cfg::kDTiles][4];
  MBK_PRAGMA_UNROLL
  for (int i = 0; i < Cfg::kDTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};  // rows g, g+8 (raw scores, quad-uniform)
  float row_sum[2] = {0.f, 0.f};              // this lane's partial sums (quad sum at the end)
  const int row_g = m0 + warp * 16 + g;  // query index of this lane's row g (row g+8 is row_g + 8)
  const int ldm_row = lane % 8;          // the row this lane addresses within its 8x8 matrix
  const int ldm_mat = lane / 8;          // which of the four matrices of an x4

  // Q A-fragments, loaded once: matrices (rows 0-7, cols k..k+7), (rows 8-15, k..), (rows 0-7, k+8..),
  // (rows 8-15, k+8..) of the warp's 16 rows.
  uint32_t qf[Cfg::kKSteps][4] = {};
  if (n_tiles > 0) {
    cp_async_wait<1>();  // group 0 (Q, tile 0) landed
    __syncthreads();
    const T* qrow = s_q + (warp * 16 + ldm_row + (ldm_mat & 1) * 8) * P + (ldm_mat >> 1) * 8;
    MBK_PRAGMA_UNROLL
    for (int ks = 0; ks < Cfg::kKSteps; ++ks) ldmatrix_x4(qf[ks], qrow + ks * 16);
  }

  for (int j = 0; j < n_tiles; ++j) {
    cp_async_wait<1>();  // tile j (and Q) landed for this thread's copies ...
    __syncthreads();     // ... and for everyone's
    const T* kt = s_k + (j % kStages) * kStageStride;
    const T* vt = s_v + (j % kStages) * kStageStride;
    const int n0 = j * kBlockN;

    // S = Q K^T: per pair of key n-tiles (16 keys) and k-step, one ldmatrix x4 gives both n-tiles' B fragments:
    // matrices (keys 0-7, dims k..k+7), (keys 0-7, k+8..), (keys 8-15, k..), (keys 8-15, k+8..).
    float s[Cfg::kNTiles][4];
    MBK_PRAGMA_UNROLL
    for (int i = 0; i < Cfg::kNTiles; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
    const T* krow = kt + (ldm_row + (ldm_mat >> 1) * 8) * P + (ldm_mat & 1) * 8;
    MBK_PRAGMA_UNROLL
    for (int ks = 0; ks < Cfg::kKSteps; ++ks) {
      MBK_PRAGMA_UNROLL
      for (int np = 0; np < Cfg::kNTiles / 2; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, krow + np * 16 * P + ks * 16);
        const uint32_t b0[2] = {kb[0], kb[1]};
        const uint32_t b1[2] = {kb[2], kb[3]};
        mma_m16n8k16<T>(s[2 * np], qf[ks], b0, s[2 * np]);
        mma_m16n8k16<T>(s[2 * np + 1], qf[ks], b1, s[2 * np + 1]);
      }
    }

    // Mask keys past seqlen_k and (causal) keys right of the diagonal, only on tiles that reach them.
    const bool tail = n0 + kBlockN > p.seqlen_k;
    const bool cross = p.causal && n0 + kBlockN - 1 > m0 + diag;
    if (tail || cross) {
      MBK_PRAGMA_UNROLL
      for (int nt = 0; nt < Cfg::kNTiles; ++nt) {
        MBK_PRAGMA_UNROLL
        for (int e = 0; e < 4; ++e) {
          const int i = row_g + (e >> 1) * 8;
          const int col = n0 + nt * 8 + 2 * t + (e & 1);
          const bool visible = col < p.seqlen_k && (!p.causal || col <= i + diag);
          if (!visible) s[nt][e] = -INFINITY;
        }
      }
    }

    // Online softmax (fp32): new row max over the quad, rescale, p = exp2(s * scale_log2 - m * scale_log2).
    MBK_PRAGMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      float mx = row_max[r];
      MBK_PRAGMA_UNROLL
      for (int nt = 0; nt < Cfg::kNTiles; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
      // A row with no visible key yet keeps m = -inf; exponents are taken against 0 so every p is exp2(-inf) = 0.
      const float m_scaled = (mx == -INFINITY ? 0.f : mx) * args.scale_log2;
      const float alpha = exp2f(row_max[r] * args.scale_log2 - m_scaled);
      row_max[r] = mx;
      float sum = 0.f;
      MBK_PRAGMA_UNROLL
      for (int nt = 0; nt < Cfg::kNTiles; ++nt) {
        s[nt][2 * r] = exp2f(fmaf(s[nt][2 * r], args.scale_log2, -m_scaled));
        s[nt][2 * r + 1] = exp2f(fmaf(s[nt][2 * r + 1], args.scale_log2, -m_scaled));
        sum += s[nt][2 * r] + s[nt][2 * r + 1];
      }
      row_sum[r] = row_sum[r] * alpha + sum;
      MBK_PRAGMA_UNROLL
      for (int dt = 0; dt < Cfg::kDTiles; ++dt) {
        o[dt][2 * r] *= alpha;
        o[dt][2 * r + 1] *= alpha;
      }
    }

    // Dropout on P (after the statistics): zero the dropped elements.
    if (args.dropout) {
      MBK_PRAGMA_UNROLL
      for (int nt = 0; nt < Cfg::kNTiles; ++nt) {
        const uint32_t keep = dropout_bits(args, bh, row_g, n0 + nt * 8, lane);
        MBK_PRAGMA_UNROLL
        for (int e = 0; e < 4; ++e)
          if (!((keep >> e) & 1u)) s[nt][e] = 0.f;
      }
    }

    // O += P V: P's A fragment for keys 16kk..16kk+15 is the S accumulators of n-tiles 2kk, 2kk+1 rounded to T.
    // V B fragments by ldmatrix x4 .trans: matrices (keys 0-7, dims n..n+7), (keys 8-15, n..), (keys 0-7, n+8..),
    // (keys 8-15, n+8..).
    const T* vrow = vt + (ldm_row + (ldm_mat & 1) * 8) * P + (ldm_mat >> 1) * 8;
    MBK_PRAGMA_UNROLL
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      MBK_PRAGMA_UNROLL
      for (int dp = 0; dp < Cfg::kDTiles / 2; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, vrow + kk * 16 * P + dp * 16);
        const uint32_t b0[2] = {vb[0], vb[1]};
        const uint32_t b1[2] = {vb[2], vb[3]};
        mma_m16n8k16<T>(o[2 * dp], pa, b0, o[2 * dp]);
        mma_m16n8k16<T>(o[2 * dp + 1], pa, b1, o[2 * dp + 1]);
      }
    }

    __syncthreads();  // everyone is done with stage j % 2: refill it with tile j + 2
    if (j + kStages < n_tiles) {
      T* kdst = s_k + (j % kStages) * kStageStride;
      T* vdst = s_v + (j % kStages) * kStageStride;
      load_tile_async<T, D>(kdst, k, p.k_strides, b, (j + kStages) * kBlockN, hk, p.seqlen_k);
      load_tile_async<T, D>(vdst, v, p.v_strides, b, (j + kStages) * kBlockN, hk, p.seqlen_k);
    }
    cp_async_commit();
  }
  cp_async_wait<0>();  // nothing is left in flight (only empty groups can be), before s_q is reused below

  // Epilogue: l = quad sum, out = O * dropout_scale / l (0 for rows without a visible key), lse = m * scale + ln l.
  float inv[2];
  MBK_PRAGMA_UNROLL
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
    l += __shfl_xor_sync(kFullMask, l, 1);
    l += __shfl_xor_sync(kFullMask, l, 2);
    inv[r] = l > 0.f ? args.dropout_scale / l : 0.f;
    const int i = row_g + r * 8;
    if (t == 0 && i < p.seqlen_q) {
      p.lse[static_cast<int64_t>(bh) * p.seqlen_q + i] =
          l > 0.f ? row_max[r] * p.softmax_scale + logf(l) : -INFINITY;
    }
  }
  // Stage the warp's 16 output rows in its own rows of s_q (read only by this warp, into qf), then 16-byte stores.
  T* s_o = s_q + warp * 16 * P;
  MBK_PRAGMA_UNROLL
  for (int dt = 0; dt < Cfg::kDTiles; ++dt) {
    *reinterpret_cast<uint32_t*>(s_o + g * P + dt * 8 + 2 * t) = pack2<T>(o[dt][0] * inv[0], o[dt][1] * inv[0]);
    *reinterpret_cast<uint32_t*>(s_o + (g + 8) * P + dt * 8 + 2 * t) =
        pack2<T>(o[dt][2] * inv[1], o[dt][3] * inv[1]);
  }
  __syncwarp(kFullMask);
  T* out = static_cast<T*>(p.out);
  MBK_PRAGMA_UNROLL
  for (int it = 0; it < 16 * Cfg::kChunks / 32; ++it) {
    const int idx = lane + it * 32;
    const int r = idx / Cfg::kChunks;
    const int c = idx - r * Cfg::kChunks;
    const int i = m0 + warp * 16 + r;
    if (i < p.seqlen_q) {
      *reinterpret_cast<uint4*>(out + offset_of(p.out_strides, b, i, h) + c * 8) =
          *reinterpret_cast<const uint4*>(s_o + r * P + c * 8);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

inline void check_tensor(const char* fn, const char* name, const void* ptr, const Strides& st) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(fn) + ": " + name + " " + what);
  };
  if (ptr == nullptr) fail("is null");
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) fail("must be 16-byte aligned (the kernel copies 16 bytes at a time)");
  if (st.batch % 8 != 0 || st.row % 8 != 0 || st.head % 8 != 0) {
    fail("strides (batch " + std::to_string(st.batch) + ", row " + std::to_string(st.row) + ", head " +
         std::to_string(st.head) + ") must be multiples of 8 elements");
  }
}

inline void check_args(const FlashParams& p) {
  const char* fn = "flash_mma_fwd";
  auto fail = [&](const std::string& what) { throw std::invalid_argument(std::string(fn) + ": " + what); };
  if (p.batch < 0 || p.seqlen_q < 0 || p.seqlen_k < 0) fail("batch and sequence lengths must be >= 0");
  if (p.num_heads <= 0 || p.num_kv_heads <= 0) fail("num_heads and num_kv_heads must be > 0");
  if (p.num_heads % p.num_kv_heads != 0) {
    fail("num_kv_heads (" + std::to_string(p.num_kv_heads) + ") must divide num_heads (" +
         std::to_string(p.num_heads) + ")");
  }
  if (p.head_dim != 64 && p.head_dim != 80 && p.head_dim != 96 && p.head_dim != 128) {
    fail("head_dim " + std::to_string(p.head_dim) + " is not supported (64, 80, 96 or 128)");
  }
  if (p.num_heads > 65535 || p.batch > 65535) fail("num_heads and batch must be <= 65535 (grid y/z)");
  if (!(p.dropout_p >= 0.f && p.dropout_p < 1.f)) {
    fail("dropout_p " + std::to_string(p.dropout_p) + " must be in [0, 1)");
  }
  if (p.batch == 0 || p.seqlen_q == 0) return;  // nothing is read or written
  check_tensor(fn, "q", p.q, p.q_strides);
  check_tensor(fn, "out", p.out, p.out_strides);
  if (p.seqlen_k > 0) {
    check_tensor(fn, "k", p.k, p.k_strides);
    check_tensor(fn, "v", p.v, p.v_strides);
  }
  if (p.lse == nullptr) fail("lse is null");
}

template <typename T, int D>
void launch_hdim(const FwdArgs& args, mbk_stream_t stream) {
  const FlashParams& p = args.p;
  const dim3 grid((p.seqlen_q + kBlockM - 1) / kBlockM, p.num_heads, p.batch);
  constexpr size_t smem = Tile<D>::kSmemBytes;
  auto kernel = flash_fwd_mma_kernel<T, D>;
  if (smem > 48 * 1024) MBK_SET_MAX_DYNAMIC_SMEM(kernel, smem);
  MBK_LAUNCH(kernel, grid, dim3(kThreads), smem, stream, args);
  MBK_CHECK_LAUNCH("flash_mma_fwd");
}

}  // namespace mma_fwd

// FlashAttention-2 forward on tensor cores, T = __half or __nv_bfloat16. Writes p.out and p.lse; every row < seqlen_q
// is written (no pre-zeroing needed). Throws std::invalid_argument (naming the argument) before launching anything.
template <typename T>
void flash_mma_fwd(const FlashParams& p, mbk_stream_t stream) {
  mma_fwd::check_args(p);
  if (p.batch == 0 || p.seqlen_q == 0) return;
  mma_fwd::FwdArgs args;
  args.p = p;
  args.scale_log2 = p.softmax_scale * 1.4426950408889634f;
  args.dropout = p.dropout_p > 0.f;
  args.dropout_threshold = args.dropout ? dropout_threshold(p.dropout_p) : 0u;
  args.dropout_scale = args.dropout ? dropout_scale(p.dropout_p) : 1.f;
  switch (p.head_dim) {
    case 64: return mma_fwd::launch_hdim<T, 64>(args, stream);
    case 80: return mma_fwd::launch_hdim<T, 80>(args, stream);
    case 96: return mma_fwd::launch_hdim<T, 96>(args, stream);
    default: return mma_fwd::launch_hdim<T, 128>(args, stream);
  }
}

}  // namespace flash
}  // namespace mbk
