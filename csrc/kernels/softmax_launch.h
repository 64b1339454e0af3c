// softmax_launch.h -- host launchers for the fused attention softmax kernels in softmax.cuh.
// Compiled unchanged by nvcc (real kernels) and by g++ (the CPU emulator); see mbk/portability.cuh.
// All functions are in namespace mbk; T is float, __half or __nv_bfloat16; tensors are contiguous.
//
//   template <typename T>
//   void launch_scaled_masked_softmax_fwd(const T* x, const uint8_t* mask, T* y, int batch,
//                                         int heads, int sq, int sk, int mask_batch, float scale,
//                                         mbk_stream_t stream);
//       x, y: [batch, heads, sq, sk]. mask: [mask_batch, 1, sq, sk] bytes, nonzero = masked out
//       (a torch bool tensor's storage), broadcast over heads, and over batch when mask_batch == 1
//       (otherwise mask_batch == batch); nullptr = no mask. y = softmax(scale * x) over sk with
//       masked positions 0; a fully masked row is all zeros.
//   template <typename T>
//   void launch_scaled_upper_triang_softmax_fwd(const T* x, T* y, int attn_batches, int sq,
//                                               float scale, mbk_stream_t stream);
//       x, y: [attn_batches, sq, sq]; causal: row i keeps keys j <= i, the rest of y is 0.
//   template <typename T>
//   void launch_scaled_softmax_bwd(const T* dy, const T* y, T* dx, long long rows, int cols,
//                                  float scale, mbk_stream_t stream);
//       Backward of either forward (y its output): dx = scale * y * (dy - sum(dy * y)) per row of
//       cols elements; rows = batch * heads * sq (or attn_batches * sq). dx may alias dy (in place).
//
// Limits: 1 <= sk (cols) <= 16384; 16-byte vector loads when the row length is a multiple of the
// vector width and all pointers are 16-byte aligned, scalar loads otherwise. Bad arguments throw
// std::invalid_argument; a failed CUDA launch throws std::runtime_error.
//
// A g++-compiled file linked with nvcc-compiled instantiations defines MBK_CUDA_HOST before
// including this header (declarations only); the .cu side uses MBK_INSTANTIATE_SOFTMAX(T).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "mbk/portability.cuh"
#include "mbk/row_config.h"

namespace mbk {

template <typename T>
void launch_scaled_masked_softmax_fwd(const T* x, const uint8_t* mask, T* y, int batch, int heads, int sq, int sk,
                                      int mask_batch, float scale, mbk_stream_t stream);
template <typename T>
void launch_scaled_upper_triang_softmax_fwd(const T* x, T* y, int attn_batches, int sq, float scale,
                                            mbk_stream_t stream);
template <typename T>
void launch_scaled_softmax_bwd(const T* dy, const T* y, T* dx, long long rows, int cols, float scale,
                               mbk_stream_t stream);

}  // namespace mbk

#if defined(__CUDACC__) || !defined(MBK_CUDA_HOST)
#include "softmax.cuh"

namespace mbk {
namespace softmax {

inline void check_cols(const char* who, int cols) {
  if (cols < 1 || cols > 16384)
    throw std::invalid_argument(std::string(who) + ": the softmax dimension must be 1..16384, got " +
                                std::to_string(cols));
}

template <typename T>
RowConfig config_for(int cols, bool aligned) {
  constexpr int kVecMax = 16 / static_cast<int>(sizeof(T));
  return pick_row_config(cols, aligned && cols % kVecMax == 0 ? kVecMax : 1);
}

inline dim3 grid_for(long long rows, const RowConfig& cfg, const char* who) {
  const long long blocks = (rows + cfg.rows_per_block - 1) / cfg.rows_per_block;
  if (blocks > 2147483647LL) throw std::invalid_argument(std::string(who) + ": too many rows for one launch");
  return dim3(static_cast<unsigned>(blocks));
}

template <typename T, bool kCausal>
void fwd(const T* x, const uint8_t* mask, T* y, long long rows, int sq, int sk, int heads, int mask_batch,
         float scale, mbk_stream_t stream, const char* who) {
  if (rows == 0) return;
  const bool aligned = aligned16(x) && aligned16(y) && aligned16(mask);
  const RowConfig cfg = config_for<T>(sk, aligned);
  const dim3 block(cfg.threads, cfg.rows_per_block);
  const dim3 grid = grid_for(rows, cfg, who);
  constexpr int kVecMax = 16 / static_cast<int>(sizeof(T));
  dispatch_row_iters(cfg.iters, [&](auto iters_c) {
    constexpr int kIters = decltype(iters_c)::value;
    if (cfg.vec == kVecMax) {
      if constexpr (kIters * kVecMax <= kMaxRowValues) {  // the only vector configurations used
        auto* kern = &scaled_softmax_fwd_kernel<T, kVecMax, kIters, kCausal>;
        MBK_LAUNCH(kern, grid, block, 0, stream, x, mask, y, rows, sq, sk, heads, mask_batch, scale);
      } else {
        throw std::logic_error(std::string(who) + ": unexpected row configuration");
      }
    } else {
      auto* kern = &scaled_softmax_fwd_kernel<T, 1, kIters, kCausal>;
      MBK_LAUNCH(kern, grid, block, 0, stream, x, mask, y, rows, sq, sk, heads, mask_batch, scale);
    }
  });
  MBK_CHECK_LAUNCH(who);
}

}  // namespace softmax

template <typename T>
void launch_scaled_masked_softmax_fwd(const T* x, const uint8_t* mask, T* y, int batch, int heads, int sq, int sk,
                                      int mask_batch, float scale, mbk_stream_t stream) {
  const char* who = "launch_scaled_masked_softmax_fwd";
  softmax::check_cols(who, sk);
  if (batch < 0 || heads < 0 || sq < 0)
    throw std::invalid_argument(std::string(who) + ": negative batch, heads or sq");
  if (mask != nullptr && mask_batch != 1 && mask_batch != batch)
    throw std::invalid_argument(std::string(who) + ": mask_batch must be 1 or batch (" + std::to_string(batch) +
                                "), got " + std::to_string(mask_batch));
  if (x == nullptr || y == nullptr) throw std::invalid_argument(std::string(who) + ": x and y must not be null");
  const long long rows = static_cast<long long>(batch) * heads * sq;
  softmax::fwd<T, false>(x, mask, y, rows, sq > 0 ? sq : 1, sk, heads, mask_batch, scale, stream, who);
}

template <typename T>
void launch_scaled_upper_triang_softmax_fwd(const T* x, T* y, int attn_batches, int sq, float scale,
                                            mbk_stream_t stream) {
  const char* who = "launch_scaled_upper_triang_softmax_fwd";
  softmax::check_cols(who, sq);
  if (attn_batches < 0) throw std::invalid_argument(std::string(who) + ": negative attn_batches");
  if (x == nullptr || y == nullptr) throw std::invalid_argument(std::string(who) + ": x and y must not be null");
  const long long rows = static_cast<long long>(attn_batches) * sq;
  softmax::fwd<T, true>(x, static_cast<const uint8_t*>(nullptr), y, rows, sq, sq, 1, 1, scale, stream, who);
}

template <typename T>
void launch_scaled_softmax_bwd(const T* dy, const T* y, T* dx, long long rows, int cols, float scale,
                               mbk_stream_t stream) {
  const char* who = "launch_scaled_softmax_bwd";
  softmax::check_cols(who, cols);
  if (rows < 0) throw std::invalid_argument(std::string(who) + ": negative rows");
  if (rows == 0) return;
  if (dy == nullptr || y == nullptr || dx == nullptr)
    throw std::invalid_argument(std::string(who) + ": dy, y and dx must not be null");
  const bool aligned = aligned16(dy) && aligned16(y) && aligned16(dx);
  const RowConfig cfg = softmax::config_for<T>(cols, aligned);
  const dim3 block(cfg.threads, cfg.rows_per_block);
  const dim3 grid = softmax::grid_for(rows, cfg, who);
  constexpr int kVecMax = 16 / static_cast<int>(sizeof(T));
  dispatch_row_iters(cfg.iters, [&](auto iters_c) {
    constexpr int kIters = decltype(iters_c)::value;
    if (cfg.vec == kVecMax) {
      if constexpr (kIters * kVecMax <= kMaxRowValues) {
        auto* kern = &softmax::scaled_softmax_bwd_kernel<T, kVecMax, kIters>;
        MBK_LAUNCH(kern, grid, block, 0, stream, dy, y, dx, rows, cols, scale);
      } else {
        throw std::logic_error(std::string(who) + ": unexpected row configuration");
      }
    } else {
      auto* kern = &softmax::scaled_softmax_bwd_kernel<T, 1, kIters>;
      MBK_LAUNCH(kern, grid, block, 0, stream, dy, y, dx, rows, cols, scale);
    }
  });
  MBK_CHECK_LAUNCH(who);
}

}  // namespace mbk

#define MBK_INSTANTIATE_SOFTMAX(T)                                                                                \
  template void mbk::launch_scaled_masked_softmax_fwd<T>(const T*, const uint8_t*, T*, int, int, int, int, int, \
                                                         float, mbk_stream_t);                                  \
  template void mbk::launch_scaled_upper_triang_softmax_fwd<T>(const T*, T*, int, int, float, mbk_stream_t);    \
  template void mbk::launch_scaled_softmax_bwd<T>(const T*, const T*, T*, long long, int, float, mbk_stream_t);
#endif
