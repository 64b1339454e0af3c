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
// Work split: one block of 4 warps per (128-query tile, head, batch); warp w owns query rows 32w..32w+31 of the
// tile (two m16 slices of every mma). Keys stream in tiles of 64 (32 at D = 128) through a 2-stage cp.async ring in
// shared memory: tile j+2 is in flight while tile j is used. Per key tile and warp:
//   S = Q K^T        : per k-step of 16 dims, the warp's Q A-fragments (one ldmatrix x4 per m16 slice; Q stays in
//                      shared memory, as in flash-attention: registers go to the accumulators) and, per 16 keys, one
//                      ldmatrix x4 of K giving the B fragments of two n-tiles (the [key][dim] tile read as the
//                      mma's "col" B operand needs no transpose), each used by both m16 slices. fp32 accumulators.
//   online softmax   : fp32, exp2f with softmax_scale * log2(e) folded into one fma; row max over the quad of lanes
//                      sharing a row (2 shuffles); row sums stay per lane until the end (the rescale factor is
//                      uniform over the quad), as in flash-attention.
//   dropout          : after the statistics (lse and the row sums are of the undropped P, as flash-attention does),
//                      dropped elements are zeroed; the 1 / (1 - p) of the kept ones is applied once to the output
//                      row together with 1 / l (mathematically the same as scaling each kept element).
//   O += P V         : the S accumulator layout of a lane is exactly its A-fragment layout for the next mma (the
//                      FA2 register reuse): P is rounded to T in registers, no shared-memory round trip; V
//                      fragments by ldmatrix x4 .trans, each used by both m16 slices.
// The output is staged through the warp's own rows of the Q tile and written with 16-byte stores.
//
// Shared memory: Q [128][D+8] + 2 stages x (K, V) [64 or 32][D+8] elements of T. The 8-element (16-byte) row
// padding puts the 8 rows of every ldmatrix 8x8 matrix on 8 disjoint groups of 4 banks for each D in
// {64, 80, 96, 128} (row pitch 36/44/52/68 words), so ldmatrix and the staging stores are bank-conflict free
// without a swizzle. 54 KiB (D=64), 66 KiB (80), 78 KiB (96), 68 KiB (128): dynamic, MBK_SET_MAX_DYNAMIC_SMEM.
// Resources (nvcc 13.0 -Xptxas -v, half and bf16 alike): 0 spill bytes everywhere; registers sm_80 / sm_90:
// D=64 217/220, D=80 231/234, D=96 240/239, D=128 (32-key tiles) 237/236; 2 blocks (8 warps) per SM on
// H100 by registers. Causal masking and dropout are run-time flags (one instantiation per (T, D)): the mask code
// only runs on tiles that cross the diagonal or the end of the keys, the dropout code only when p > 0.
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
constexpr int kMTiles = 2;                      // m16 slices per warp: each warp owns 32 query rows
constexpr int kBlockM = kWarps * 16 * kMTiles;  // query rows per block (128)
constexpr int kStages = 2;                      // K/V tiles in shared memory (cp.async ring)
constexpr int kPad = 8;                         // elements of row padding (16 bytes)
constexpr unsigned kFullMask = 0xffffffffu;

template <int D>
struct Tile {
  static_assert(D == 64 || D == 80 || D == 96 || D == 128, "head_dim must be 64, 80, 96 or 128");
  // Keys per streamed tile. At D = 128 a 64-key tile needs S (64 fp32) + O (128 fp32) accumulators per lane next to
  // the fragments: ptxas reaches 255 registers and spills on sm_90, so D = 128 streams 32 keys (as
  // flash-attention's 128 x 32 tile does).
  static constexpr int kBlockN = D == 128 ? 32 : 64;
  static constexpr int kPitch = D + kPad;       // elements per shared-memory row
  static constexpr int kChunks = D / 8;         // 16-byte chunks per row
  static constexpr int kKSteps = D / 16;        // k-steps of S = Q K^T
  static constexpr int kDTiles = D / 8;         // n-tiles of O (8 dims each)
  static constexpr int kNTiles = kBlockN / 8;   // n-tiles of S (8 keys each)
  static constexpr int kQElems = kBlockM * kPitch;
  static constexpr int kKVElems = kBlockN * kPitch;
  // Q, then kStages x (K, V).
  static constexpr size_t kSmemBytes = sizeof(uint16_t) * (kQElems + 2 * kStages * kKVElems);
};

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

// Issues the cp.async copies of rows [r0, r0 + ROWS) of head h of a strided tensor into a [ROWS][D+8] tile; rows at
// or past `seqlen` are zero-filled (their global memory is not read).
template <typename T, int D, int ROWS>
__device__ __forceinline__ void load_tile_async(T* tile, const T* base, const Strides& st, int b, int r0, int h,
                                                int seqlen) {
  using Cfg = Tile<D>;
  static_assert(ROWS * Cfg::kChunks % kThreads == 0, "whole chunks per thread");
  MBK_PRAGMA_UNROLL
  for (int it = 0; it < ROWS * Cfg::kChunks / kThreads; ++it) {
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
// halves: one Philox4x32-10 per lane per 16x8 slice of the mask instead of two.
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

// grid = (ceil(seqlen_q / 128), num_heads, batch), block = 128, dynamic shared memory Tile<D>::kSmemBytes.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) flash_fwd_mma_kernel(const FwdArgs args) {
  using Cfg = Tile<D>;
  constexpr int P = Cfg::kPitch;
  constexpr int MT = kMTiles;
  const FlashParams& p = args.p;

  MBK_DYNAMIC_SHARED(T, smem);
  T* s_q = smem;
  T* s_k = smem + Cfg::kQElems;                  // stage s at s_k + s * kStageStride
  T* s_v = smem + Cfg::kQElems + Cfg::kKVElems;  // stage s at s_v + s * kStageStride
  constexpr int kStageStride = 2 * Cfg::kKVElems;

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
  const int warp_row0 = warp * 16 * MT;      // the warp's first row within the block

  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);

  // Keys this block visits: all, or (causal) up to the last one its last row sees.
  int key_end = p.seqlen_k;
  if (p.causal) {
    const int e = m0 + kBlockM + diag;
    key_end = e < 0 ? 0 : (e < key_end ? e : key_end);
  }
  const int n_tiles = (key_end + Cfg::kBlockN - 1) / Cfg::kBlockN;

  // Prologue: group 0 = Q + tile 0, group 1 = tile 1 (groups are committed even when empty, so that group j is
  // always tile j and the wait count below is constant).
  if (n_tiles > 0) {
    load_tile_async<T, D, kBlockM>(s_q, q, p.q_strides, b, m0, h, p.seqlen_q);
    load_tile_async<T, D, Cfg::kBlockN>(s_k, k, p.k_strides, b, 0, hk, p.seqlen_k);
    load_tile_async<T, D, Cfg::kBlockN>(s_v, v, p.v_strides, b, 0, hk, p.seqlen_k);
  }
  cp_async_commit();
  if (n_tiles > 1) {
    load_tile_async<T, D, Cfg::kBlockN>(s_k + kStageStride, k, p.k_strides, b, Cfg::kBlockN, hk, p.seqlen_k);
    load_tile_async<T, D, Cfg::kBlockN>(s_v + kStageStride, v, p.v_strides, b, Cfg::kBlockN, hk, p.seqlen_k);
  }
  cp_async_commit();

  float o[MT][Cfg::kDTiles][4];
  float row_max[MT][2];  // rows g, g+8 of each m-tile (raw scores, uniform over the quad of lanes of a row)
  float row_sum[MT][2];  // this lane's partial sums (quad sum at the end)
  MBK_PRAGMA_UNROLL
  for (int mt = 0; mt < MT; ++mt) {
    MBK_PRAGMA_UNROLL
    for (int i = 0; i < Cfg::kDTiles; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }

  const int ldm_row = lane % 8;  // the row this lane addresses within its 8x8 matrix
  const int ldm_mat = lane / 8;  // which of the four matrices of an x4
  // Q A-fragments: matrices (rows 0-7, cols k..k+7), (rows 8-15, k..), (rows 0-7, k+8..), (rows 8-15, k+8..).
  const T* qrow = s_q + (warp_row0 + ldm_row + (ldm_mat & 1) * 8) * P + (ldm_mat >> 1) * 8;

  for (int j = 0; j < n_tiles; ++j) {
    cp_async_wait<1>();  // tile j (and Q) landed for this thread's copies ...
    __syncthreads();     // ... and for everyone's
    const T* kt = s_k + (j % kStages) * kStageStride;
    const T* vt = s_v + (j % kStages) * kStageStride;
    const int n0 = j * Cfg::kBlockN;

    // S = Q K^T. Per k-step: the warp's Q fragments (ldmatrix x4 per m-tile), then per pair of key n-tiles (16 keys)
    // one ldmatrix x4 gives both n-tiles' B fragments -- matrices (keys 0-7, dims k..k+7), (keys 0-7, k+8..),
    // (keys 8-15, k..), (keys 8-15, k+8..) -- used by every m-tile.
    float s[MT][Cfg::kNTiles][4];
    MBK_PRAGMA_UNROLL
    for (int mt = 0; mt < MT; ++mt) {
      MBK_PRAGMA_UNROLL
      for (int i = 0; i < Cfg::kNTiles; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
    }
    const T* krow = kt + (ldm_row + (ldm_mat >> 1) * 8) * P + (ldm_mat & 1) * 8;
    MBK_PRAGMA_UNROLL
    for (int ks = 0; ks < Cfg::kKSteps; ++ks) {
      uint32_t qa[MT][4];
      MBK_PRAGMA_UNROLL
      for (int mt = 0; mt < MT; ++mt) ldmatrix_x4(qa[mt], qrow + mt * 16 * P + ks * 16);
      MBK_PRAGMA_UNROLL
      for (int np = 0; np < Cfg::kNTiles / 2; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, krow + np * 16 * P + ks * 16);
        const uint32_t b0[2] = {kb[0], kb[1]};
        const uint32_t b1[2] = {kb[2], kb[3]};
        MBK_PRAGMA_UNROLL
        for (int mt = 0; mt < MT; ++mt) {
          mma_m16n8k16<T>(s[mt][2 * np], qa[mt], b0, s[mt][2 * np]);
          mma_m16n8k16<T>(s[mt][2 * np + 1], qa[mt], b1, s[mt][2 * np + 1]);
        }
      }
    }

    // Mask keys past seqlen_k and (causal) keys right of the diagonal, only on tiles that reach them.
    const bool tail = n0 + Cfg::kBlockN > p.seqlen_k;
    const bool cross = p.causal && n0 + Cfg::kBlockN - 1 > m0 + diag;
    if (tail || cross) {
      MBK_PRAGMA_UNROLL
      for (int mt = 0; mt < MT; ++mt) {
        MBK_PRAGMA_UNROLL
        for (int nt = 0; nt < Cfg::kNTiles; ++nt) {
          MBK_PRAGMA_UNROLL
          for (int e = 0; e < 4; ++e) {
            const int i = m0 + warp_row0 + mt * 16 + g + (e >> 1) * 8;
            const int col = n0 + nt * 8 + 2 * t + (e & 1);
            const bool visible = col < p.seqlen_k && (!p.causal || col <= i + diag);
            if (!visible) s[mt][nt][e] = -INFINITY;
          }
        }
      }
    }

    // Online softmax (fp32): new row max over the quad, rescale, p = exp2(s * scale_log2 - m * scale_log2).
    MBK_PRAGMA_UNROLL
    for (int mt = 0; mt < MT; ++mt) {
      MBK_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        float mx = row_max[mt][r];
        MBK_PRAGMA_UNROLL
        for (int nt = 0; nt < Cfg::kNTiles; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
        // A row with no visible key yet keeps m = -inf; exponents are taken against 0 so every p is exp2(-inf) = 0.
        const float m_scaled = (mx == -INFINITY ? 0.f : mx) * args.scale_log2;
        const float alpha = exp2f(row_max[mt][r] * args.scale_log2 - m_scaled);
        row_max[mt][r] = mx;
        float sum = 0.f;
        MBK_PRAGMA_UNROLL
        for (int nt = 0; nt < Cfg::kNTiles; ++nt) {
          s[mt][nt][2 * r] = exp2f(fmaf(s[mt][nt][2 * r], args.scale_log2, -m_scaled));
          s[mt][nt][2 * r + 1] = exp2f(fmaf(s[mt][nt][2 * r + 1], args.scale_log2, -m_scaled));
          sum += s[mt][nt][2 * r] + s[mt][nt][2 * r + 1];
        }
        row_sum[mt][r] = row_sum[mt][r] * alpha + sum;
        MBK_PRAGMA_UNROLL
        for (int dt = 0; dt < Cfg::kDTiles; ++dt) {
          o[mt][dt][2 * r] *= alpha;
          o[mt][dt][2 * r + 1] *= alpha;
        }
      }
    }

    // Dropout on P (after the statistics): zero the dropped elements. The keep bits of all of the lane's elements
    // are drawn first in a rolled loop (one Philox in flight: unrolled, the 16 Philox instances of a tile cost
    // ptxas 100+ bytes of spills at D=128), then applied.
    if (args.dropout) {
      static_assert(MT * Cfg::kNTiles * 4 <= 64, "keep bits of a tile fit in 64 bits");
      uint64_t keep = 0;
      MBK_PRAGMA_NO_UNROLL
      for (int x = 0; x < MT * Cfg::kNTiles; ++x) {
        const int mt = x / Cfg::kNTiles;
        const int nt = x - mt * Cfg::kNTiles;
        const uint32_t bits = dropout_bits(args, bh, m0 + warp_row0 + mt * 16 + g, n0 + nt * 8, lane);
        keep |= static_cast<uint64_t>(bits) << (4 * x);
      }
      MBK_PRAGMA_UNROLL
      for (int mt = 0; mt < MT; ++mt) {
        MBK_PRAGMA_UNROLL
        for (int nt = 0; nt < Cfg::kNTiles; ++nt) {
          MBK_PRAGMA_UNROLL
          for (int e = 0; e < 4; ++e)
            if (!((keep >> (4 * (mt * Cfg::kNTiles + nt) + e)) & 1u)) s[mt][nt][e] = 0.f;
        }
      }
    }

    // O += P V: P's A fragment for keys 16kk..16kk+15 is the S accumulators of n-tiles 2kk, 2kk+1 rounded to T.
    // V B fragments by ldmatrix x4 .trans -- matrices (keys 0-7, dims n..n+7), (keys 8-15, n..), (keys 0-7, n+8..),
    // (keys 8-15, n+8..) -- used by every m-tile.
    const T* vrow = vt + (ldm_row + (ldm_mat & 1) * 8) * P + (ldm_mat >> 1) * 8;
    MBK_PRAGMA_UNROLL
    for (int kk = 0; kk < Cfg::kBlockN / 16; ++kk) {
      uint32_t pa[MT][4];
      MBK_PRAGMA_UNROLL
      for (int mt = 0; mt < MT; ++mt) {
        pa[mt][0] = pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
      MBK_PRAGMA_UNROLL
      for (int dp = 0; dp < Cfg::kDTiles / 2; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, vrow + kk * 16 * P + dp * 16);
        const uint32_t b0[2] = {vb[0], vb[1]};
        const uint32_t b1[2] = {vb[2], vb[3]};
        MBK_PRAGMA_UNROLL
        for (int mt = 0; mt < MT; ++mt) {
          mma_m16n8k16<T>(o[mt][2 * dp], pa[mt], b0, o[mt][2 * dp]);
          mma_m16n8k16<T>(o[mt][2 * dp + 1], pa[mt], b1, o[mt][2 * dp + 1]);
        }
      }
    }

    __syncthreads();  // everyone is done with stage j % 2: refill it with tile j + 2
    if (j + kStages < n_tiles) {
      T* kdst = s_k + (j % kStages) * kStageStride;
      T* vdst = s_v + (j % kStages) * kStageStride;
      load_tile_async<T, D, Cfg::kBlockN>(kdst, k, p.k_strides, b, (j + kStages) * Cfg::kBlockN, hk, p.seqlen_k);
      load_tile_async<T, D, Cfg::kBlockN>(vdst, v, p.v_strides, b, (j + kStages) * Cfg::kBlockN, hk, p.seqlen_k);
    }
    cp_async_commit();
  }
  cp_async_wait<0>();  // nothing is left in flight (only empty groups can be), before s_q is reused below

  // Epilogue: l = quad sum, out = O * dropout_scale / l (0 for rows without a visible key), lse = m * scale + ln l.
  // The warp's output rows are staged in its own rows of s_q (no other warp reads them), then 16-byte stores.
  T* s_o = s_q + warp_row0 * P;
  MBK_PRAGMA_UNROLL
  for (int mt = 0; mt < MT; ++mt) {
    float inv[2];
    MBK_PRAGMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      float l = row_sum[mt][r];
      l += __shfl_xor_sync(kFullMask, l, 1);
      l += __shfl_xor_sync(kFullMask, l, 2);
      inv[r] = l > 0.f ? args.dropout_scale / l : 0.f;
      const int i = m0 + warp_row0 + mt * 16 + g + r * 8;
      if (t == 0 && i < p.seqlen_q) {
        p.lse[static_cast<int64_t>(bh) * p.seqlen_q + i] =
            l > 0.f ? row_max[mt][r] * p.softmax_scale + logf(l) : -INFINITY;
      }
    }
    T* rows = s_o + mt * 16 * P;
    MBK_PRAGMA_UNROLL
    for (int dt = 0; dt < Cfg::kDTiles; ++dt) {
      *reinterpret_cast<uint32_t*>(rows + g * P + dt * 8 + 2 * t) =
          pack2<T>(o[mt][dt][0] * inv[0], o[mt][dt][1] * inv[0]);
      *reinterpret_cast<uint32_t*>(rows + (g + 8) * P + dt * 8 + 2 * t) =
          pack2<T>(o[mt][dt][2] * inv[1], o[mt][dt][3] * inv[1]);
    }
  }
  __syncwarp(kFullMask);
  T* out = static_cast<T*>(p.out);
  MBK_PRAGMA_UNROLL
  for (int it = 0; it < 16 * MT * Cfg::kChunks / 32; ++it) {
    const int idx = lane + it * 32;
    const int r = idx / Cfg::kChunks;
    const int c = idx - r * Cfg::kChunks;
    const int i = m0 + warp_row0 + r;
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
  flash_check_shape(fn, p, /*allow_dropout_one=*/false);
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

// Whether the tensor-core forward can take these tensors as they are (16-byte aligned pointers, strides multiples of
// 8 elements): a dispatcher can fall back to the scalar kernel (or copy) instead of meeting flash_mma_fwd's
// std::invalid_argument. The other arguments are checked (and reported) by flash_mma_fwd itself.
inline bool flash_mma_fwd_layout_ok(const FlashParams& p) { return flash_mma_layout_ok(p, false); }

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
