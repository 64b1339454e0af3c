// FlashAttention-2 backward on tensor cores (bf16 / fp16 in, fp32 accumulate), torch-free.
//
// Compiled by nvcc (sm_80+: mma.sync m16n8k16, ldmatrix, cp.async through mbk/tensor_core.cuh) and by g++ through
// the CPU emulator, which executes the same instructions with the fragment layouts the PTX ISA documents.
//
// Semantics are those of the scalar backward (flash_attention.cuh, flash_attention_launch.h): grouped-query attention
// (query head h reads kv head h / (num_heads / num_kv_heads)), causal masking bottom-right aligned (query i sees key
// j iff j <= i + seqlen_k - seqlen_q), any lengths including 0 (every element of dq, dk, dv is written; zeros where
// nothing contributes), head dims 64/80/96/128, strided tensors through FlashParams, deterministic (no atomics: the
// sums over query heads and query tiles run in a fixed order inside one block).
//
// Attention dropout (mbk/philox.cuh): the forward computes O = Pd V with Pd = P * mask * scale_d. The backward draws
// the same mask from (seed, offset, b * num_heads + h, i, j) and uses, as flash-attention does,
//   dV = Pd^T dO,   dPd = dO V^T,   dP = dPd * mask * scale_d,   dS = P * (dP - delta),   delta = rowsum(dO * O),
//   dK = softmax_scale * dS^T Q,   dQ = softmax_scale * dS K,   P = exp(softmax_scale * Q K^T - lse).
//
// Kernels (4 warps each; every matrix product is an mma.sync.m16n8k16 with fp32 accumulators; P and dS are rounded
// to T only as mma operands):
//   flash_bwd_delta_mma_kernel  delta[b, h, i] = sum_d dO * O; 16 lanes per row, 16-byte loads.
//   flash_bwd_dkdv_mma_kernel   one block per (64-key tile, kv head, batch); warp w owns keys 16w..16w+15. K and V
//       stay in shared memory; (Q, dO, lse, delta) tiles of kQTile queries stream through a two-stage cp.async
//       pipeline, over every query head of the GQA group and every query tile, in that fixed order. Per tile it
//       computes S^T = K Q^T and dPd^T = V dO^T (A = K/V rows, B = Q/dO rows, both by ldmatrix), forms Pd^T and
//       dS^T in the accumulator registers, and feeds them straight back as A operands (the m16n8 accumulator
//       layout of two adjacent n-tiles is the m16k16 A layout) of dV += Pd^T dO and dK += dS^T Q, whose B operands
//       come from ldmatrix.trans of the same Q/dO tiles.
//   flash_bwd_dq_mma_kernel     one block per (64-query tile, head, batch); warp w owns queries 16w..16w+15. Q and
//       dO stay in shared memory; K/V tiles of kKTile keys stream through a two-stage cp.async pipeline (only up to
//       the causal limit). S = Q K^T and dPd = dO V^T, then dQ += dS K with K by ldmatrix.trans.
// Shared-memory rows are padded by 8 elements (16 bytes) so that the 8 row addresses of an ldmatrix hit distinct
// banks. Causal and dropout are run-time flags (one instantiation per dtype and head dim).
//
// Resources (nvcc 13.0 -Xptxas -v, sm_80 and sm_90): see the report in the header of
// csrc/cuda/flash_attention_mma_bwd.cu.
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

// Tile sizes of the tensor-core backward for head dim D.
template <int D>
struct BwdMmaConfig {
  static_assert(D == 64 || D == 80 || D == 96 || D == 128, "head_dim must be 64, 80, 96 or 128");
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStride = D + 8;  // shared-memory row stride (elements): conflict-free ldmatrix
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row
  // dK/dV kernel: 16 keys per warp; streamed query tile. The accumulators of dK and dV take D registers per lane,
  // S^T and dP^T another kQTile / 2 each: smaller query tiles for larger head dims keep it all in registers.
  static constexpr int kKeyTile = 16 * kWarps;
  static constexpr int kQTile = D <= 64 ? 64 : 32;
  // dQ kernel: 16 queries per warp; streamed key tile.
  static constexpr int kQueryTile = 16 * kWarps;
  static constexpr int kKTile = D <= 64 ? 64 : 32;
  static constexpr int kStages = 2;

  static constexpr size_t dkdv_smem_bytes(size_t elem) {
    return 2 * kKeyTile * kStride * elem + kStages * (2 * kQTile * kStride * elem + 2 * kQTile * sizeof(float));
  }
  static constexpr size_t dq_smem_bytes(size_t elem) {
    return 2 * kQueryTile * kStride * elem + kStages * 2 * kKTile * kStride * elem;
  }
};

// Scalars the host derives once from FlashParams.
struct BwdMmaScalars {
  float scale_log2 = 0.f;       // softmax_scale * log2(e): P = exp2(S * scale_log2 - lse * log2(e))
  uint32_t drop_threshold = 0;  // mbk::dropout_threshold(dropout_p)
  float drop_scale = 1.f;       // mbk::dropout_scale(dropout_p)
  bool dropout = false;
};

namespace bwd_mma {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kBwdThreads = 128;

__device__ __forceinline__ uint16_t bits16(__half x) { return __half_as_ushort(x); }
__device__ __forceinline__ uint16_t bits16(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }
__device__ __forceinline__ __half half_from_bits(uint16_t u, __half*) { return __ushort_as_half(u); }
__device__ __forceinline__ __nv_bfloat16 half_from_bits(uint16_t u, __nv_bfloat16*) { return __ushort_as_bfloat16(u); }

// Two floats rounded to T, packed as an mma operand register (lower-indexed element in the low half).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return static_cast<uint32_t>(bits16(from_float<T>(lo))) | (static_cast<uint32_t>(bits16(from_float<T>(hi))) << 16);
}

// Word j % 4 of a Philox draw, by selects: indexing the array with a run-time index would put it in local memory.
__device__ __forceinline__ uint32_t philox_word(const Philox4& r, int j) {
  const int w = j & 3;
  return w == 0 ? r.x[0] : (w == 1 ? r.x[1] : (w == 2 ? r.x[2] : r.x[3]));
}

__device__ __forceinline__ bool attends(int i, int j, int seqlen_q, int seqlen_k, bool causal) {
  return i < seqlen_q && j < seqlen_k && (!causal || j <= i + (seqlen_k - seqlen_q));
}

// cp.async of rows [r0, r0 + rows) of a strided tensor (row stride `row_stride` elements, `base` already at the
// batch and head) into a shared tile [rows][Cfg::kStride]; rows at or past `seqlen` are zero-filled.
template <typename T, int D>
__device__ __forceinline__ void load_tile_async(T* tile, const T* base, int64_t row_stride, int r0, int rows,
                                                int seqlen) {
  using Cfg = BwdMmaConfig<D>;
  for (int idx = threadIdx.x; idx < rows * Cfg::kChunks; idx += kBwdThreads) {
    const int r = idx / Cfg::kChunks;
    const int c = idx - r * Cfg::kChunks;
    const bool valid = r0 + r < seqlen;
    const T* src = valid ? base + (r0 + r) * row_stride + c * 8 : base;
    cp_async_16(tile + r * Cfg::kStride + c * 8, src, valid);
  }
}

// A operand (16 rows x 16 k) at row r0, column k0 of a row-major shared tile.
template <int LD, typename T>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* tile, int r0, int k0, int lane) {
  ldmatrix_x4(a, tile + (r0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + k0 + (lane >> 4) * 8);
}
// B operands of two n-tiles (n0..n0+7, n0+8..n0+15) x 16 k from a shared tile whose rows are n and columns k
// (B = tile^T): b[0..1] for the first n-tile, b[2..3] for the second.
template <int LD, typename T>
__device__ __forceinline__ void load_b_rows_n(uint32_t (&b)[4], const T* tile, int n0, int k0, int lane) {
  ldmatrix_x4(b, tile + (n0 + (lane >> 4) * 8 + (lane & 7)) * LD + k0 + ((lane >> 3) & 1) * 8);
}
// The same from a tile whose rows are k and columns n (B = tile), by ldmatrix.trans.
template <int LD, typename T>
__device__ __forceinline__ void load_b_rows_k(uint32_t (&b)[4], const T* tile, int k0, int n0, int lane) {
  ldmatrix_x4_trans(b, tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + n0 + (lane >> 4) * 8);
}

template <typename T>
__device__ __forceinline__ void mma2(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4], const uint32_t (&b)[4]) {
  const uint32_t b0[2] = {b[0], b[1]};
  const uint32_t b1[2] = {b[2], b[3]};
  mma_m16n8k16<T>(c0, a, b0, c0);
  mma_m16n8k16<T>(c1, a, b1, c1);
}

// Stores a warp's 16 x D fp32 accumulator (times `mul`) as T to rows [r0, r0 + 16) of a strided tensor; rows at or
// past `seqlen` are skipped.
template <typename T, int D>
__device__ __forceinline__ void store_acc(T* base, int64_t row_stride, int r0, int seqlen, const float (&acc)[D / 8][4],
                                          float mul, int lane) {
  const int g = lane >> 2, t = lane & 3;
  MBK_PRAGMA_UNROLL
  for (int half = 0; half < 2; ++half) {
    const int r = r0 + g + half * 8;
    if (r >= seqlen) continue;
    T* row = base + r * row_stride;
    MBK_PRAGMA_UNROLL
    for (int nt = 0; nt < D / 8; ++nt) {
      const uint32_t v = pack2<T>(acc[nt][2 * half] * mul, acc[nt][2 * half + 1] * mul);
      *reinterpret_cast<uint32_t*>(row + nt * 8 + 2 * t) = v;
    }
  }
}

}  // namespace bwd_mma

// ---------------------------------------------------------------------------------------------------------------
// delta[b, h, i] = sum_d dout[b, i, h, d] * out[b, i, h, d]. grid = (ceil(seqlen_q / 8), num_heads, batch),
// block = 128: 16 lanes per row, one 16-byte chunk each.
template <typename T, int D>
__global__ void __launch_bounds__(128) flash_bwd_delta_mma_kernel(const FlashParams p) {
  constexpr int kChunks = D / 8;
  const int c = threadIdx.x & 15;
  const int i = blockIdx.x * 8 + (threadIdx.x >> 4);
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  float x = 0.f;
  if (i < p.seqlen_q && c < kChunks) {
    const T* o = static_cast<const T*>(p.out) + b * p.out_strides.batch + i * p.out_strides.row +
                 h * p.out_strides.head + c * 8;
    const T* d = static_cast<const T*>(p.dout) + b * p.dout_strides.batch + i * p.dout_strides.row +
                 h * p.dout_strides.head + c * 8;
    const AlignedVec<T, 8> ov = *reinterpret_cast<const AlignedVec<T, 8>*>(o);
    const AlignedVec<T, 8> dv = *reinterpret_cast<const AlignedVec<T, 8>*>(d);
    MBK_PRAGMA_UNROLL
    for (int e = 0; e < 8; ++e) x += to_float(ov.v[e]) * to_float(dv.v[e]);
  }
  MBK_PRAGMA_UNROLL
  for (int off = 8; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off, 16);
  if (c == 0 && i < p.seqlen_q) p.delta[(static_cast<int64_t>(b) * p.num_heads + h) * p.seqlen_q + i] = x;
}

// ---------------------------------------------------------------------------------------------------------------
// dK, dV. grid = (ceil(seqlen_k / kKeyTile), num_kv_heads, batch), block = 128,
// dynamic shared memory = BwdMmaConfig<D>::dkdv_smem_bytes(sizeof(T)).
template <typename T, int D>
__global__ void __launch_bounds__(128, 1) flash_bwd_dkdv_mma_kernel(const FlashParams p, const BwdMmaScalars sc) {
  using Cfg = BwdMmaConfig<D>;
  constexpr int BN = Cfg::kKeyTile;
  constexpr int BM = Cfg::kQTile;
  constexpr int LD = Cfg::kStride;
  using namespace bwd_mma;

  MBK_DYNAMIC_SHARED(T, smem);
  T* s_k = smem;
  T* s_v = s_k + BN * LD;
  T* s_q = s_v + BN * LD;          // [stage][BM][LD]
  T* s_do = s_q + 2 * BM * LD;     // [stage][BM][LD]
  float* s_lse = reinterpret_cast<float*>(s_do + 2 * BM * LD);  // [stage][BM], times log2(e)
  float* s_delta = s_lse + 2 * BM;                             // [stage][BM]

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * BN;
  const int hk = blockIdx.y;
  const int b = blockIdx.z;
  const int group = p.num_heads / p.num_kv_heads;
  const int seqlen_q = p.seqlen_q, seqlen_k = p.seqlen_k;
  const bool causal = p.causal;

  // Query tiles before the first query that sees key n0 contribute nothing (causal).
  int m_begin = 0;
  if (causal) {
    const int first = n0 - (seqlen_k - seqlen_q);
    m_begin = first > 0 ? (first / BM) * BM : 0;
  }
  const int n_mtiles = seqlen_q > m_begin ? (seqlen_q - m_begin + BM - 1) / BM : 0;
  const int n_iters = group * n_mtiles;

  const T* q_b = static_cast<const T*>(p.q) + b * p.q_strides.batch;
  const T* do_b = static_cast<const T*>(p.dout) + b * p.dout_strides.batch;

  // Stage `stage` <- query tile `it` (head hk * group + it / n_mtiles, rows m_begin + (it % n_mtiles) * BM ...).
  auto issue = [&](int it, int stage) {
    const int h = hk * group + it / n_mtiles;
    const int m0 = m_begin + (it % n_mtiles) * BM;
    load_tile_async<T, D>(s_q + stage * BM * LD, q_b + h * p.q_strides.head, p.q_strides.row, m0, BM, seqlen_q);
    load_tile_async<T, D>(s_do + stage * BM * LD, do_b + h * p.dout_strides.head, p.dout_strides.row, m0, BM,
                          seqlen_q);
    const int64_t stat = (static_cast<int64_t>(b) * p.num_heads + h) * seqlen_q;
    for (int r = threadIdx.x; r < BM; r += kBwdThreads) {
      const int i = m0 + r;
      s_lse[stage * BM + r] = i < seqlen_q ? p.lse[stat + i] * kLog2e : 0.f;
      s_delta[stage * BM + r] = i < seqlen_q ? p.delta[stat + i] : 0.f;
    }
  };

  load_tile_async<T, D>(s_k, static_cast<const T*>(p.k) + b * p.k_strides.batch + hk * p.k_strides.head,
                        p.k_strides.row, n0, BN, seqlen_k);
  load_tile_async<T, D>(s_v, static_cast<const T*>(p.v) + b * p.v_strides.batch + hk * p.v_strides.head,
                        p.v_strides.row, n0, BN, seqlen_k);
  if (n_iters > 0) issue(0, 0);
  cp_async_commit();

  float acc_dk[D / 8][4], acc_dv[D / 8][4];
  MBK_PRAGMA_UNROLL
  for (int nt = 0; nt < D / 8; ++nt) {
    MBK_PRAGMA_UNROLL
    for (int e = 0; e < 4; ++e) acc_dk[nt][e] = acc_dv[nt][e] = 0.f;
  }

  const int kr = warp * 16;  // this warp's keys within the tile
  for (int it = 0; it < n_iters; ++it) {
    const int stage = it & 1;
    if (it + 1 < n_iters) issue(it + 1, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();  // everything but the prefetch just issued has landed
    __syncthreads();

    const int h = hk * group + it / n_mtiles;
    const int m0 = m_begin + (it % n_mtiles) * BM;
    const T* tq = s_q + stage * BM * LD;
    const T* tdo = s_do + stage * BM * LD;
    const float* tlse = s_lse + stage * BM;
    const float* tdelta = s_delta + stage * BM;

    // S^T = K Q^T and dPd^T = V dO^T for this warp's 16 keys x BM queries.
    float acc_s[BM / 8][4], acc_dp[BM / 8][4];
    MBK_PRAGMA_UNROLL
    for (int nt = 0; nt < BM / 8; ++nt) {
      MBK_PRAGMA_UNROLL
      for (int e = 0; e < 4; ++e) acc_s[nt][e] = acc_dp[nt][e] = 0.f;
    }
    MBK_PRAGMA_UNROLL
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t a_k[4], a_v[4];
      load_a<LD>(a_k, s_k, kr, ks * 16, lane);
      load_a<LD>(a_v, s_v, kr, ks * 16, lane);
      MBK_PRAGMA_UNROLL
      for (int np = 0; np < BM / 16; ++np) {
        uint32_t b_q[4], b_do[4];
        load_b_rows_n<LD>(b_q, tq, np * 16, ks * 16, lane);
        load_b_rows_n<LD>(b_do, tdo, np * 16, ks * 16, lane);
        mma2<T>(acc_s[2 * np], acc_s[2 * np + 1], a_k, b_q);
        mma2<T>(acc_dp[2 * np], acc_dp[2 * np + 1], a_v, b_do);
      }
    }

    // Pd^T into acc_s, dS^T into acc_dp. Element e of n-tile nt: key n0 + kr + g (+8 for e >= 2), query
    // m0 + nt * 8 + 2t (+1 for odd e).
    const int bh = b * p.num_heads + h;
    MBK_PRAGMA_UNROLL
    for (int nt = 0; nt < BM / 8; ++nt) {
      MBK_PRAGMA_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int col = nt * 8 + 2 * t + (e & 1);
        const int i = m0 + col;
        const int j = n0 + kr + g + (e >> 1) * 8;
        const float pr = attends(i, j, seqlen_q, seqlen_k, causal)
                             ? exp2f(acc_s[nt][e] * sc.scale_log2 - tlse[col])
                             : 0.f;
        float dp = acc_dp[nt][e];
        float pd = pr;
        if (sc.dropout) {
          // = mbk::dropout_keep(seed, offset, threshold, bh, i, j), without its run-time array index
          const bool keep =
              philox_word(dropout_bits4(p.dropout_seed, p.dropout_offset, bh, i, j), j) >= sc.drop_threshold;
          pd = keep ? pr * sc.drop_scale : 0.f;
          dp = keep ? dp * sc.drop_scale : 0.f;
        }
        acc_s[nt][e] = pd;
        acc_dp[nt][e] = pr * (dp - tdelta[col]);
      }
    }

    // dV += Pd^T dO, dK += dS^T Q (k = the BM queries).
    MBK_PRAGMA_UNROLL
    for (int kk = 0; kk < BM / 16; ++kk) {
      const uint32_t a_p[4] = {pack2<T>(acc_s[2 * kk][0], acc_s[2 * kk][1]),
                               pack2<T>(acc_s[2 * kk][2], acc_s[2 * kk][3]),
                               pack2<T>(acc_s[2 * kk + 1][0], acc_s[2 * kk + 1][1]),
                               pack2<T>(acc_s[2 * kk + 1][2], acc_s[2 * kk + 1][3])};
      const uint32_t a_ds[4] = {pack2<T>(acc_dp[2 * kk][0], acc_dp[2 * kk][1]),
                                pack2<T>(acc_dp[2 * kk][2], acc_dp[2 * kk][3]),
                                pack2<T>(acc_dp[2 * kk + 1][0], acc_dp[2 * kk + 1][1]),
                                pack2<T>(acc_dp[2 * kk + 1][2], acc_dp[2 * kk + 1][3])};
      MBK_PRAGMA_UNROLL
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t b_do[4], b_q[4];
        load_b_rows_k<LD>(b_do, tdo, kk * 16, dn * 16, lane);
        load_b_rows_k<LD>(b_q, tq, kk * 16, dn * 16, lane);
        mma2<T>(acc_dv[2 * dn], acc_dv[2 * dn + 1], a_p, b_do);
        mma2<T>(acc_dk[2 * dn], acc_dk[2 * dn + 1], a_ds, b_q);
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  cp_async_wait<0>();  // no copy may still target shared memory when the block exits (none left, but be explicit)

  T* dk_b = static_cast<T*>(p.dk) + b * p.dk_strides.batch + hk * p.dk_strides.head;
  T* dv_b = static_cast<T*>(p.dv) + b * p.dv_strides.batch + hk * p.dv_strides.head;
  store_acc<T, D>(dk_b, p.dk_strides.row, n0 + kr, seqlen_k, acc_dk, p.softmax_scale, lane);
  store_acc<T, D>(dv_b, p.dv_strides.row, n0 + kr, seqlen_k, acc_dv, 1.f, lane);
}

// ---------------------------------------------------------------------------------------------------------------
// dQ. grid = (ceil(seqlen_q / kQueryTile), num_heads, batch), block = 128,
// dynamic shared memory = BwdMmaConfig<D>::dq_smem_bytes(sizeof(T)).
template <typename T, int D>
__global__ void __launch_bounds__(128, 1) flash_bwd_dq_mma_kernel(const FlashParams p, const BwdMmaScalars sc) {
  using Cfg = BwdMmaConfig<D>;
  constexpr int BM = Cfg::kQueryTile;
  constexpr int BN = Cfg::kKTile;
  constexpr int LD = Cfg::kStride;
  using namespace bwd_mma;

  MBK_DYNAMIC_SHARED(T, smem);
  T* s_q = smem;
  T* s_do = s_q + BM * LD;
  T* s_k = s_do + BM * LD;  // [stage][BN][LD]
  T* s_v = s_k + 2 * BN * LD;  // [stage][BN][LD]

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int m0 = blockIdx.x * BM;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int hk = h / (p.num_heads / p.num_kv_heads);
  const int seqlen_q = p.seqlen_q, seqlen_k = p.seqlen_k;
  const bool causal = p.causal;
  const int qr = warp * 16;  // this warp's queries within the tile

  // Keys this block has to visit (causal: up to the last query's limit).
  int key_end = seqlen_k;
  if (causal) {
    const int e = m0 + BM + (seqlen_k - seqlen_q);
    key_end = e < 0 ? 0 : (e < seqlen_k ? e : seqlen_k);
  }
  const int n_iters = (key_end + BN - 1) / BN;

  const T* k_b = static_cast<const T*>(p.k) + b * p.k_strides.batch + hk * p.k_strides.head;
  const T* v_b = static_cast<const T*>(p.v) + b * p.v_strides.batch + hk * p.v_strides.head;
  auto issue = [&](int it, int stage) {
    load_tile_async<T, D>(s_k + stage * BN * LD, k_b, p.k_strides.row, it * BN, BN, seqlen_k);
    load_tile_async<T, D>(s_v + stage * BN * LD, v_b, p.v_strides.row, it * BN, BN, seqlen_k);
  };

  if (n_iters > 0) {  // else no key is visible: dQ = 0
    load_tile_async<T, D>(s_q, static_cast<const T*>(p.q) + b * p.q_strides.batch + h * p.q_strides.head,
                          p.q_strides.row, m0, BM, seqlen_q);
    load_tile_async<T, D>(s_do, static_cast<const T*>(p.dout) + b * p.dout_strides.batch + h * p.dout_strides.head,
                          p.dout_strides.row, m0, BM, seqlen_q);
    issue(0, 0);
  }
  cp_async_commit();

  // This lane's two query rows: m0 + qr + g and + 8.
  const int64_t stat = (static_cast<int64_t>(b) * p.num_heads + h) * seqlen_q;
  float lse2[2], delta[2];
  int rows[2];
  MBK_PRAGMA_UNROLL
  for (int r = 0; r < 2; ++r) {
    rows[r] = m0 + qr + g + r * 8;
    lse2[r] = rows[r] < seqlen_q ? p.lse[stat + rows[r]] * kLog2e : 0.f;
    delta[r] = rows[r] < seqlen_q ? p.delta[stat + rows[r]] : 0.f;
  }
  const int bh = b * p.num_heads + h;

  float acc_dq[D / 8][4];
  MBK_PRAGMA_UNROLL
  for (int nt = 0; nt < D / 8; ++nt) {
    MBK_PRAGMA_UNROLL
    for (int e = 0; e < 4; ++e) acc_dq[nt][e] = 0.f;
  }

  for (int it = 0; it < n_iters; ++it) {
    const int stage = it & 1;
    if (it + 1 < n_iters) issue(it + 1, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const int n0 = it * BN;
    const T* tk = s_k + stage * BN * LD;
    const T* tv = s_v + stage * BN * LD;

    // S = Q K^T, dPd = dO V^T for this warp's 16 queries x BN keys.
    float acc_s[BN / 8][4], acc_dp[BN / 8][4];
    MBK_PRAGMA_UNROLL
    for (int nt = 0; nt < BN / 8; ++nt) {
      MBK_PRAGMA_UNROLL
      for (int e = 0; e < 4; ++e) acc_s[nt][e] = acc_dp[nt][e] = 0.f;
    }
    MBK_PRAGMA_UNROLL
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t a_q[4], a_do[4];
      load_a<LD>(a_q, s_q, qr, ks * 16, lane);
      load_a<LD>(a_do, s_do, qr, ks * 16, lane);
      MBK_PRAGMA_UNROLL
      for (int np = 0; np < BN / 16; ++np) {
        uint32_t b_k[4], b_v[4];
        load_b_rows_n<LD>(b_k, tk, np * 16, ks * 16, lane);
        load_b_rows_n<LD>(b_v, tv, np * 16, ks * 16, lane);
        mma2<T>(acc_s[2 * np], acc_s[2 * np + 1], a_q, b_k);
        mma2<T>(acc_dp[2 * np], acc_dp[2 * np + 1], a_do, b_v);
      }
    }

    // dS into acc_s. Element e of n-tile nt: query rows[e >> 1], key n0 + nt * 8 + 2t (+1 for odd e); the two keys
    // of a pair share one Philox draw (keys 4 * (j / 4) .. + 3, mbk::dropout_bits4 = the words dropout_keep reads).
    MBK_PRAGMA_UNROLL
    for (int nt = 0; nt < BN / 8; ++nt) {
      MBK_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        const int i = rows[r];
        const int j0 = n0 + nt * 8 + 2 * t;
        Philox4 bits{{0u, 0u, 0u, 0u}};
        if (sc.dropout) bits = dropout_bits4(p.dropout_seed, p.dropout_offset, bh, i, j0);
        MBK_PRAGMA_UNROLL
        for (int c = 0; c < 2; ++c) {
          const int e = 2 * r + c;
          const int j = j0 + c;
          const float pr = attends(i, j, seqlen_q, seqlen_k, causal) ? exp2f(acc_s[nt][e] * sc.scale_log2 - lse2[r])
                                                                     : 0.f;
          float dp = acc_dp[nt][e];
          if (sc.dropout) dp = philox_word(bits, j) >= sc.drop_threshold ? dp * sc.drop_scale : 0.f;
          acc_s[nt][e] = pr * (dp - delta[r]);
        }
      }
    }

    // dQ += dS K (k = the BN keys).
    MBK_PRAGMA_UNROLL
    for (int kk = 0; kk < BN / 16; ++kk) {
      const uint32_t a_ds[4] = {pack2<T>(acc_s[2 * kk][0], acc_s[2 * kk][1]),
                                pack2<T>(acc_s[2 * kk][2], acc_s[2 * kk][3]),
                                pack2<T>(acc_s[2 * kk + 1][0], acc_s[2 * kk + 1][1]),
                                pack2<T>(acc_s[2 * kk + 1][2], acc_s[2 * kk + 1][3])};
      MBK_PRAGMA_UNROLL
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t b_k[4];
        load_b_rows_k<LD>(b_k, tk, kk * 16, dn * 16, lane);
        mma2<T>(acc_dq[2 * dn], acc_dq[2 * dn + 1], a_ds, b_k);
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();  // the last (empty) group: no copy may be outstanding when the thread exits

  T* dq_b = static_cast<T*>(p.dq) + b * p.dq_strides.batch + h * p.dq_strides.head;
  store_acc<T, D>(dq_b, p.dq_strides.row, m0 + qr, seqlen_q, acc_dq, p.softmax_scale, lane);
}

// ---------------------------------------------------------------------------------------------------------------
// Host side.

// Throws std::invalid_argument naming the bad argument; called before anything is launched.
inline void flash_mma_bwd_check(const FlashParams& p) {
  const std::string fn = "flash_mma_bwd";
  auto fail = [&](const std::string& what) { throw std::invalid_argument(fn + ": " + what); };
  flash_check_shape(fn, p, /*allow_dropout_one=*/false);
  if (p.batch == 0) return;
  struct Tensor {
    const char* name;
    const void* ptr;
    const Strides* strides;
    bool used;
  };
  const bool has_q = p.seqlen_q > 0, has_k = p.seqlen_k > 0;
  const Tensor tensors[] = {
      {"q", p.q, &p.q_strides, has_q && has_k},       {"k", p.k, &p.k_strides, has_q && has_k},
      {"v", p.v, &p.v_strides, has_q && has_k},       {"out", p.out, &p.out_strides, has_q},
      {"dout", p.dout, &p.dout_strides, has_q},       {"dq", p.dq, &p.dq_strides, has_q},
      {"dk", p.dk, &p.dk_strides, has_k},             {"dv", p.dv, &p.dv_strides, has_k},
  };
  for (const Tensor& x : tensors) {
    if (!x.used) continue;
    if (x.ptr == nullptr) fail(std::string(x.name) + " is null");
    if (reinterpret_cast<uintptr_t>(x.ptr) % 16 != 0) {
      fail(std::string(x.name) + " must be 16-byte aligned (the kernels copy 16 bytes at a time)");
    }
    const int64_t s[3] = {x.strides->batch, x.strides->row, x.strides->head};
    const char* names[3] = {"batch", "row", "head"};
    for (int d = 0; d < 3; ++d) {
      if (s[d] % 8 != 0) {
        fail(std::string(x.name) + " stride " + names[d] + " (" + std::to_string(s[d]) +
             " elements) must be a multiple of 8");
      }
    }
  }
  if (has_q && (p.lse == nullptr || p.delta == nullptr)) fail("lse and delta must not be null");
}

namespace bwd_mma {

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

template <typename T, int D>
void launch_bwd(const FlashParams& p, const BwdMmaScalars& sc, mbk_stream_t stream) {
  using Cfg = BwdMmaConfig<D>;
  const dim3 block(Cfg::kThreads);
  if (p.seqlen_q > 0) {
    auto delta_kernel = flash_bwd_delta_mma_kernel<T, D>;
    MBK_LAUNCH(delta_kernel, dim3(ceil_div(p.seqlen_q, 8), p.num_heads, p.batch), block, 0, stream, p);
    MBK_CHECK_LAUNCH("flash_mma_bwd (delta)");
  }
  if (p.seqlen_k > 0) {
    auto dkdv_kernel = flash_bwd_dkdv_mma_kernel<T, D>;
    const size_t smem = Cfg::dkdv_smem_bytes(sizeof(T));
    MBK_SET_MAX_DYNAMIC_SMEM(dkdv_kernel, smem);
    MBK_LAUNCH(dkdv_kernel, dim3(ceil_div(p.seqlen_k, Cfg::kKeyTile), p.num_kv_heads, p.batch), block, smem, stream,
               p, sc);
    MBK_CHECK_LAUNCH("flash_mma_bwd (dk, dv)");
  }
  if (p.seqlen_q > 0) {
    auto dq_kernel = flash_bwd_dq_mma_kernel<T, D>;
    const size_t smem = Cfg::dq_smem_bytes(sizeof(T));
    MBK_SET_MAX_DYNAMIC_SMEM(dq_kernel, smem);
    MBK_LAUNCH(dq_kernel, dim3(ceil_div(p.seqlen_q, Cfg::kQueryTile), p.num_heads, p.batch), block, smem, stream, p,
               sc);
    MBK_CHECK_LAUNCH("flash_mma_bwd (dq)");
  }
}

}  // namespace bwd_mma

// The tensor-core backward: dq, dk, dv (overwritten) from q, k, v, out, dout, lse; p.delta is the workspace
// (batch * num_heads * seqlen_q floats). T = __half or __nv_bfloat16. Runs asynchronously on `stream`.
template <typename T>
void flash_mma_bwd(const FlashParams& p, mbk_stream_t stream) {
  flash_mma_bwd_check(p);
  if (p.batch == 0 || (p.seqlen_q == 0 && p.seqlen_k == 0)) return;
  BwdMmaScalars sc;
  sc.scale_log2 = p.softmax_scale * bwd_mma::kLog2e;
  sc.dropout = p.dropout_p > 0.f;
  sc.drop_threshold = sc.dropout ? dropout_threshold(p.dropout_p) : 0u;
  sc.drop_scale = sc.dropout ? dropout_scale(p.dropout_p) : 1.f;
  switch (p.head_dim) {
    case 64: return bwd_mma::launch_bwd<T, 64>(p, sc, stream);
    case 80: return bwd_mma::launch_bwd<T, 80>(p, sc, stream);
    case 96: return bwd_mma::launch_bwd<T, 96>(p, sc, stream);
    default: return bwd_mma::launch_bwd<T, 128>(p, sc, stream);
  }
}

}  // namespace flash
}  // namespace mbk
