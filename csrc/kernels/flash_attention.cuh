// FlashAttention-2 forward and backward device code (torch-free).
//
// Compiled by nvcc for real GPUs and by g++ through the CPU emulator; everything CUDA-specific
// comes from "mbk/portability.cuh". Host launchers live in flash_attention_launch.h.
//
// Arguments: mbk::flash::FlashParams (flash_params.h). Layout, strided in the first three dimensions
// (per-tensor Strides in elements) with a contiguous last dimension:
//   q, out, dout, dq : [batch, seqlen_q, num_heads,    head_dim]
//   k, v, dk, dv     : [batch, seqlen_k, num_kv_heads, head_dim]
//   lse, delta       : [batch, num_heads, seqlen_q] float32, contiguous
// so megatron-core's [seq, batch, heads, dim] tensors are read and written in place.
// Grouped-query attention: query head h reads kv head h / (num_heads / num_kv_heads).
// Causal masking is bottom-right aligned (as in flash-attention >= 2.1): query i sees key j iff
// j <= i + (seqlen_k - seqlen_q). A query row that sees no key gets out = 0 and lse = -inf.
//
// Algorithm (FlashAttention-2, scalar FMA version without tensor cores):
//   forward: one block per (query tile, head, batch); 4 warps, each owning kRows query rows.
//     K/V tiles of 32 keys stream through shared memory; lane j scores key j of the tile, the
//     row max and row sum are warp shuffle reductions, and the running output (lane owns head
//     dims lane, lane+32, ...) is rescaled online. Saves lse = m + log(l) per row.
//   backward, deterministic (no atomics), two kernels after a delta = rowsum(dO * O) pass:
//     dK/dV: one block per (key tile, kv head, batch); warps own key rows, lane i handles query
//       i of a 32-query tile; the block loops over every query head of its GQA group and every
//       query tile, so the group sum happens in registers in a fixed order.
//     dQ: one block per (query tile, head, batch); recomputes P from lse like the forward.
// Inputs may be float, __half or __nv_bfloat16; all arithmetic and shared tiles are float32.
//
// Attention dropout (FlashParams::dropout_p > 0): the mask of mbk/philox.cuh (dropout_keep of
// (b * num_heads + h, i, j)), a pure function of (seed, offset, coordinates), so the backward
// regenerates the forward's mask. With Z_ij = keep_ij / (1 - p) (0 where dropped) and P = softmax:
//   forward:  out = (P o Z) V; lse is that of P (before dropout), as flash-attention saves it.
//   backward: dV = (P o Z)^T dO; dP = Z o (dO V^T); dS = P o (dP - delta) with delta_i = rowsum(dO_i o out_i)
//             (= sum_j P_ij dP_ij); dQ = scale dS K, dK = scale dS^T Q.
// Without dropout Z = 1 exactly, so results are bitwise those of the dropout-free kernels.
//
// Shared memory tiles that are read both "one element per lane" and "one row broadcast" are
// stored transposed with an XOR swizzle (column j of row d lives at j ^ (d & 31)), which makes
// both access patterns bank-conflict free without padding, so head dim 128 fits in 48 KB of
// static shared memory.
//
// Resources (nvcc 13.0 -Xptxas -v, all dtypes and head dims, sm_80 and sm_90): no spills, 24-48 KB static
// shared memory; registers: forward 69-116, dK/dV 92-147, dQ 89-117, delta 21-26 (with strides and dropout;
// before them 64-102: the 64-bit strided offsets cost most of the difference, Philox the rest at head dim
// 64). The shuffle-broadcast loops are unrolled only 4x and the kernels declare __launch_bounds__(128, 1):
// with full unrolling dK/dV at head dim 64 took 236 registers, and with __launch_bounds__(128) alone ptxas
// spilled a few bytes in the fp16 dQ kernel.
#pragma once

#include "kernels/flash_params.h"
#include "mbk/philox.cuh"
#include "mbk/portability.cuh"

namespace mbk {
namespace flash {

// `#pragma unroll n` on nvcc, nothing on g++ (which warns about the unknown pragma).
#if defined(__CUDACC__)
#define MBK_FLASH_PRAGMA(x) _Pragma(#x)
#define MBK_FLASH_UNROLL_N(n) MBK_FLASH_PRAGMA(unroll n)
#else
#define MBK_FLASH_UNROLL_N(n)
#endif

constexpr int kWarpSize = 32;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
constexpr unsigned kFullMask = 0xffffffffu;

// Tile shape per head dim. kRows query rows per warp in the forward (fewer for larger head dims so
// that static shared memory stays <= 48 KB), kBwdRows key rows (dK/dV) or query rows (dQ) per warp
// in the backward.
template <int D>
struct FlashConfig {
  static_assert(D == 64 || D == 80 || D == 96 || D == 128, "head_dim must be 64, 80, 96 or 128");
  static constexpr int kHeadDim = D;
  static constexpr int kRows = D <= 64 ? 8 : 4;      // forward
  static constexpr int kBlockRows = kWarps * kRows;  // rows owned by one forward block
  // The backward kernels carry two products per row (S and dP; dK and dV): 4 rows per warp at
  // every head dim keeps them at <= 114 registers and <= 48 KB of shared memory.
  static constexpr int kBwdRows = 4;
  static constexpr int kBwdBlockRows = kWarps * kBwdRows;
  static constexpr int kTile = kWarpSize;            // streamed tile: one key/query per lane
  static constexpr int kDimPerLane = (D + kWarpSize - 1) / kWarpSize;
};

// to_float / from_float<T> come from mbk/portability.cuh (namespace mbk).

__device__ __forceinline__ float warp_max(float x) {
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    x = fmaxf(x, __shfl_xor_sync(kFullMask, x, offset));
  }
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    x += __shfl_xor_sync(kFullMask, x, offset);
  }
  return x;
}

// Column of a swizzled [D][32] tile.
__device__ __forceinline__ int swz(int d, int j) { return j ^ (d & (kWarpSize - 1)); }

// Offset (elements) of row (b, s, h) of a strided [batch, seqlen, heads, D] tensor.
__device__ __forceinline__ long long row_offset(const Strides& st, int b, int s, int h) {
  return b * st.batch + s * st.row + h * st.head;
}

// Dropout of one kernel launch: the launcher converts dropout_p to the integer threshold and the
// scale of kept elements (host-only functions of mbk/philox.cuh).
struct DropoutArgs {
  uint64_t seed = 0;
  uint32_t offset = 0;
  uint32_t threshold = 0;
  float scale = 1.f;  // 1 / (1 - p); exactly 1 without dropout
  bool enabled = false;
};

inline DropoutArgs make_dropout_args(const FlashParams& p) {
  DropoutArgs d;
  d.enabled = p.dropout_p > 0.f;
  if (d.enabled) {
    d.seed = p.dropout_seed;
    d.offset = p.dropout_offset;
    d.threshold = dropout_threshold(p.dropout_p);
    d.scale = dropout_scale(p.dropout_p);
  }
  return d;
}

// Z_ij of the header comment: the factor of probability (bh, i, j) after dropout.
__device__ __forceinline__ float dropout_factor(const DropoutArgs& drop, int bh, int i, int j) {
  if (!drop.enabled) return 1.f;
  return dropout_keep(drop.seed, drop.offset, drop.threshold, bh, i, j) ? drop.scale : 0.f;
}

// Whether query i may attend key j.
__device__ __forceinline__ bool attend(int i, int j, int seqlen_q, int seqlen_k, bool causal) {
  return i < seqlen_q && j < seqlen_k && (!causal || j <= i + (seqlen_k - seqlen_q));
}

// Number of keys a causal block of query rows [m0, m0 + rows) has to visit.
__device__ __forceinline__ int causal_key_end(int m0, int rows, int seqlen_q, int seqlen_k,
                                              bool causal) {
  if (!causal) return seqlen_k;
  int end = m0 + rows + (seqlen_k - seqlen_q);
  end = end < 0 ? 0 : end;
  return end < seqlen_k ? end : seqlen_k;
}

// Loads `rows` rows of a strided [.., seqlen, heads, D] tensor starting at row r0 into a
// row-major float tile [rows][D] (multiplied by `mul`), zero-filling rows past seqlen.
template <typename T, int D>
__device__ __forceinline__ void load_rows(float* tile, const T* src, const Strides& st, int b,
                                          int r0, int rows, int h, int seqlen, float mul) {
  for (int idx = threadIdx.x; idx < rows * D; idx += kThreads) {
    const int r = idx / D;
    const int d = idx - r * D;
    const int s = r0 + r;
    tile[idx] = s < seqlen ? to_float(src[row_offset(st, b, s, h) + d]) * mul : 0.f;
  }
}

// Loads 32 rows starting at r0 into a transposed, swizzled float tile [D][32].
template <typename T, int D>
__device__ __forceinline__ void load_rows_transposed(float* tile, const T* src, const Strides& st,
                                                     int b, int r0, int h, int seqlen, float mul) {
  for (int idx = threadIdx.x; idx < kWarpSize * D; idx += kThreads) {
    const int r = idx / D;
    const int d = idx - r * D;
    const int s = r0 + r;
    const float x = s < seqlen ? to_float(src[row_offset(st, b, s, h) + d]) * mul : 0.f;
    tile[d * kWarpSize + swz(d, r)] = x;
  }
}

// ---------------------------------------------------------------------------------------------
// Forward. grid = (ceil(seqlen_q / kBlockRows), num_heads, batch), block = kThreads.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1) flash_fwd_kernel(const FlashParams params, const DropoutArgs drop) {
  using Cfg = FlashConfig<D>;
  constexpr int R = Cfg::kRows;
  constexpr int BM = Cfg::kBlockRows;
  constexpr int BN = Cfg::kTile;
  constexpr int DL = Cfg::kDimPerLane;

  MBK_SHARED float s_q[BM * D];   // query rows, pre-multiplied by scale
  MBK_SHARED float s_kt[D * BN];  // K tile transposed + swizzled
  MBK_SHARED float s_v[BN * D];   // V tile row-major

  const T* __restrict__ q = static_cast<const T*>(params.q);
  const T* __restrict__ k = static_cast<const T*>(params.k);
  const T* __restrict__ v = static_cast<const T*>(params.v);
  const int seqlen_q = params.seqlen_q, seqlen_k = params.seqlen_k;
  const bool causal = params.causal;

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int m0 = blockIdx.x * BM;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int hk = h / (params.num_heads / params.num_kv_heads);
  const int bh = b * params.num_heads + h;

  load_rows<T, D>(s_q, q, params.q_strides, b, m0, BM, h, seqlen_q, params.softmax_scale);

  float acc[R][DL];
  float row_max[R];
  float row_sum[R];
  MBK_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.f;
    MBK_PRAGMA_UNROLL
    for (int c = 0; c < DL; ++c) acc[r][c] = 0.f;
  }

  const int key_end = causal_key_end(m0, BM, seqlen_q, seqlen_k, causal);
  for (int n0 = 0; n0 < key_end; n0 += BN) {
    __syncthreads();  // everyone is done with the previous K/V tile (and s_q is written)
    load_rows_transposed<T, D>(s_kt, k, params.k_strides, b, n0, hk, seqlen_k, 1.f);
    load_rows<T, D>(s_v, v, params.v_strides, b, n0, BN, hk, seqlen_k, 1.f);
    __syncthreads();

    const int j = n0 + lane;
    MBK_PRAGMA_UNROLL
    for (int r = 0; r < R; ++r) {
      const int row = warp * R + r;
      const int i = m0 + row;
      float s = 0.f;
      MBK_FLASH_UNROLL_N(8)
      for (int d = 0; d < D; ++d) s += s_q[row * D + d] * s_kt[d * BN + swz(d, lane)];
      s = attend(i, j, seqlen_q, seqlen_k, causal) ? s : -INFINITY;

      const float m_new = fmaxf(row_max[r], warp_max(s));
      // All keys so far masked: keep exponents finite, every p is exp(-inf) = 0.
      const float m_ref = m_new == -INFINITY ? 0.f : m_new;
      const float p = expf(s - m_ref);
      const float alpha = expf(row_max[r] - m_ref);
      row_sum[r] = row_sum[r] * alpha + warp_sum(p);  // lse of P, before dropout
      row_max[r] = m_new;
      // Dropped probabilities leave the output; the kept ones' 1 / (1 - p) is applied at the end.
      const float p_out = (drop.enabled && !dropout_keep(drop.seed, drop.offset, drop.threshold, bh, i, j)) ? 0.f : p;
      MBK_PRAGMA_UNROLL
      for (int c = 0; c < DL; ++c) acc[r][c] *= alpha;
      MBK_FLASH_UNROLL_N(4)  // fully unrolled, these loops cost 100+ registers
      for (int jj = 0; jj < BN; ++jj) {
        const float pj = __shfl_sync(kFullMask, p_out, jj);
        MBK_PRAGMA_UNROLL
        for (int c = 0; c < DL; ++c) {
          const int d = lane + c * kWarpSize;
          if (d < D) acc[r][c] += pj * s_v[jj * D + d];
        }
      }
    }
  }

  T* __restrict__ out = static_cast<T*>(params.out);
  MBK_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    const int i = m0 + warp * R + r;
    if (i >= seqlen_q) continue;
    const float inv = row_sum[r] > 0.f ? drop.scale / row_sum[r] : 0.f;
    T* out_row = out + row_offset(params.out_strides, b, i, h);
    MBK_PRAGMA_UNROLL
    for (int c = 0; c < DL; ++c) {
      const int d = lane + c * kWarpSize;
      if (d < D) out_row[d] = from_float<T>(acc[r][c] * inv);
    }
    if (lane == 0) {
      params.lse[static_cast<long long>(bh) * seqlen_q + i] =
          row_sum[r] > 0.f ? row_max[r] + logf(row_sum[r]) : -INFINITY;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward pre-pass: delta[b, h, i] = sum_d dout[b, i, h, d] * out[b, i, h, d].
// grid = (ceil(seqlen_q / kWarps), num_heads, batch), block = kThreads; one warp per row.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1) flash_bwd_delta_kernel(const FlashParams params) {
  const int lane = threadIdx.x % kWarpSize;
  const int i = blockIdx.x * kWarps + threadIdx.x / kWarpSize;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  if (i >= params.seqlen_q) return;  // whole warp leaves together
  const T* __restrict__ out = static_cast<const T*>(params.out) + row_offset(params.out_strides, b, i, h);
  const T* __restrict__ dout = static_cast<const T*>(params.dout) + row_offset(params.dout_strides, b, i, h);
  float x = 0.f;
  for (int d = lane; d < D; d += kWarpSize) x += to_float(dout[d]) * to_float(out[d]);
  x = warp_sum(x);
  if (lane == 0) params.delta[(static_cast<long long>(b) * params.num_heads + h) * params.seqlen_q + i] = x;
}

// ---------------------------------------------------------------------------------------------
// Backward dK, dV. grid = (ceil(seqlen_k / kBwdBlockRows), num_kv_heads, batch), block = kThreads.
// dS_ij = P_ij (Z_ij dPd_ij - delta_i), dV_j = sum_i P_ij Z_ij dO_i, dK_j = scale * sum_i dS_ij q_i.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1) flash_bwd_dkdv_kernel(const FlashParams params, const DropoutArgs drop) {
  using Cfg = FlashConfig<D>;
  constexpr int R = Cfg::kBwdRows;
  constexpr int BN = Cfg::kBwdBlockRows;  // keys owned by the block
  constexpr int BM = Cfg::kTile;       // streamed query tile: one query per lane
  constexpr int DL = Cfg::kDimPerLane;

  MBK_SHARED float s_k[BN * D];
  MBK_SHARED float s_v[BN * D];
  MBK_SHARED float s_qt[D * BM];   // Q tile * scale, transposed + swizzled
  MBK_SHARED float s_dot[D * BM];  // dO tile, transposed + swizzled

  const T* __restrict__ q = static_cast<const T*>(params.q);
  const T* __restrict__ dout = static_cast<const T*>(params.dout);
  const int seqlen_q = params.seqlen_q, seqlen_k = params.seqlen_k, num_heads = params.num_heads;
  const bool causal = params.causal;

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int n0 = blockIdx.x * BN;
  const int hk = blockIdx.y;
  const int b = blockIdx.z;
  const int group = num_heads / params.num_kv_heads;

  load_rows<T, D>(s_k, static_cast<const T*>(params.k), params.k_strides, b, n0, BN, hk, seqlen_k, 1.f);
  load_rows<T, D>(s_v, static_cast<const T*>(params.v), params.v_strides, b, n0, BN, hk, seqlen_k, 1.f);

  float dk_acc[R][DL];
  float dv_acc[R][DL];
  MBK_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    MBK_PRAGMA_UNROLL
    for (int c = 0; c < DL; ++c) dk_acc[r][c] = dv_acc[r][c] = 0.f;
  }

  // First query that can see key n0 (causal); earlier query tiles contribute nothing.
  int m_begin = 0;
  if (causal) {
    const int first = n0 - (seqlen_k - seqlen_q);
    m_begin = first > 0 ? (first / BM) * BM : 0;
  }

  for (int h = hk * group; h < (hk + 1) * group; ++h) {
    const int bh = b * num_heads + h;
    const long long stat_base = static_cast<long long>(bh) * seqlen_q;
    for (int m0 = m_begin; m0 < seqlen_q; m0 += BM) {
      __syncthreads();  // previous Q/dO tile consumed (and s_k/s_v written)
      load_rows_transposed<T, D>(s_qt, q, params.q_strides, b, m0, h, seqlen_q, params.softmax_scale);
      load_rows_transposed<T, D>(s_dot, dout, params.dout_strides, b, m0, h, seqlen_q, 1.f);
      __syncthreads();

      const int i = m0 + lane;
      const float lse_i = i < seqlen_q ? params.lse[stat_base + i] : 0.f;
      const float delta_i = i < seqlen_q ? params.delta[stat_base + i] : 0.f;
      MBK_PRAGMA_UNROLL
      for (int r = 0; r < R; ++r) {
        const int row = warp * R + r;
        const int j = n0 + row;
        float s = 0.f;
        float dp = 0.f;
        MBK_FLASH_UNROLL_N(8)
        for (int d = 0; d < D; ++d) {
          const int col = d * BM + swz(d, lane);
          s += s_qt[col] * s_k[row * D + d];
          dp += s_dot[col] * s_v[row * D + d];
        }
        const float p = attend(i, j, seqlen_q, seqlen_k, causal) ? expf(s - lse_i) : 0.f;
        const float z = dropout_factor(drop, bh, i, j);
        const float pz = p * z;
        const float ds = p * (dp * z - delta_i);
        MBK_FLASH_UNROLL_N(4)  // fully unrolled, these loops cost 100+ registers
        for (int ii = 0; ii < BM; ++ii) {
          const float p_i = __shfl_sync(kFullMask, pz, ii);
          const float ds_i = __shfl_sync(kFullMask, ds, ii);
          MBK_PRAGMA_UNROLL
          for (int c = 0; c < DL; ++c) {
            const int d = lane + c * kWarpSize;
            if (d < D) {
              dv_acc[r][c] += p_i * s_dot[d * BM + swz(d, ii)];
              dk_acc[r][c] += ds_i * s_qt[d * BM + swz(d, ii)];
            }
          }
        }
      }
    }
  }

  T* __restrict__ dk = static_cast<T*>(params.dk);
  T* __restrict__ dv = static_cast<T*>(params.dv);
  MBK_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    const int j = n0 + warp * R + r;
    if (j >= seqlen_k) continue;
    T* dk_row = dk + row_offset(params.dk_strides, b, j, hk);
    T* dv_row = dv + row_offset(params.dv_strides, b, j, hk);
    MBK_PRAGMA_UNROLL
    for (int c = 0; c < DL; ++c) {
      const int d = lane + c * kWarpSize;
      if (d < D) {
        dk_row[d] = from_float<T>(dk_acc[r][c]);
        dv_row[d] = from_float<T>(dv_acc[r][c]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward dQ. grid = (ceil(seqlen_q / kBwdBlockRows), num_heads, batch), block = kThreads.
// dQ_i = scale * sum_j dS_ij k_j.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1) flash_bwd_dq_kernel(const FlashParams params, const DropoutArgs drop) {
  using Cfg = FlashConfig<D>;
  constexpr int R = Cfg::kBwdRows;
  constexpr int BM = Cfg::kBwdBlockRows;
  constexpr int BN = Cfg::kTile;
  constexpr int DL = Cfg::kDimPerLane;

  MBK_SHARED float s_q[BM * D];   // * scale
  MBK_SHARED float s_do[BM * D];
  MBK_SHARED float s_kt[D * BN];  // transposed + swizzled
  MBK_SHARED float s_vt[D * BN];  // transposed + swizzled

  const T* __restrict__ k = static_cast<const T*>(params.k);
  const T* __restrict__ v = static_cast<const T*>(params.v);
  const int seqlen_q = params.seqlen_q, seqlen_k = params.seqlen_k;
  const bool causal = params.causal;
  const float scale = params.softmax_scale;

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int m0 = blockIdx.x * BM;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int hk = h / (params.num_heads / params.num_kv_heads);
  const int bh = b * params.num_heads + h;
  const long long stat_base = static_cast<long long>(bh) * seqlen_q;

  load_rows<T, D>(s_q, static_cast<const T*>(params.q), params.q_strides, b, m0, BM, h, seqlen_q, scale);
  load_rows<T, D>(s_do, static_cast<const T*>(params.dout), params.dout_strides, b, m0, BM, h, seqlen_q, 1.f);

  float dq_acc[R][DL];
  float lse_r[R];
  float delta_r[R];
  MBK_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    const int i = m0 + warp * R + r;
    lse_r[r] = i < seqlen_q ? params.lse[stat_base + i] : 0.f;
    delta_r[r] = i < seqlen_q ? params.delta[stat_base + i] : 0.f;
    MBK_PRAGMA_UNROLL
    for (int c = 0; c < DL; ++c) dq_acc[r][c] = 0.f;
  }

  const int key_end = causal_key_end(m0, BM, seqlen_q, seqlen_k, causal);
  for (int n0 = 0; n0 < key_end; n0 += BN) {
    __syncthreads();
    load_rows_transposed<T, D>(s_kt, k, params.k_strides, b, n0, hk, seqlen_k, 1.f);
    load_rows_transposed<T, D>(s_vt, v, params.v_strides, b, n0, hk, seqlen_k, 1.f);
    __syncthreads();

    const int j = n0 + lane;
    MBK_PRAGMA_UNROLL
    for (int r = 0; r < R; ++r) {
      const int row = warp * R + r;
      const int i = m0 + row;
      float s = 0.f;
      float dp = 0.f;
      MBK_FLASH_UNROLL_N(8)
      for (int d = 0; d < D; ++d) {
        const int col = d * BN + swz(d, lane);
        s += s_q[row * D + d] * s_kt[col];
        dp += s_do[row * D + d] * s_vt[col];
      }
      const float p = attend(i, j, seqlen_q, seqlen_k, causal) ? expf(s - lse_r[r]) : 0.f;
      const float ds = p * (dp * dropout_factor(drop, bh, i, j) - delta_r[r]);
      MBK_FLASH_UNROLL_N(4)  // fully unrolled, these loops cost 100+ registers
      for (int jj = 0; jj < BN; ++jj) {
        const float ds_j = __shfl_sync(kFullMask, ds, jj);
        MBK_PRAGMA_UNROLL
        for (int c = 0; c < DL; ++c) {
          const int d = lane + c * kWarpSize;
          if (d < D) dq_acc[r][c] += ds_j * s_kt[d * BN + swz(d, jj)];
        }
      }
    }
  }

  T* __restrict__ dq = static_cast<T*>(params.dq);
  MBK_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    const int i = m0 + warp * R + r;
    if (i >= seqlen_q) continue;
    T* dq_row = dq + row_offset(params.dq_strides, b, i, h);
    MBK_PRAGMA_UNROLL
    for (int c = 0; c < DL; ++c) {
      const int d = lane + c * kWarpSize;
      if (d < D) dq_row[d] = from_float<T>(dq_acc[r][c] * scale);
    }
  }
}

}  // namespace flash
}  // namespace mbk
