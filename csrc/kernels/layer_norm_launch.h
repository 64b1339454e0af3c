// layer_norm_launch.h -- host launchers for the LayerNorm / RMSNorm kernels in layer_norm.cuh.
// Compiled unchanged by nvcc (real kernels) and by g++ (the CPU emulator); see
// mbk/portability.cuh. All functions are in namespace mbk; T is float, __half or __nv_bfloat16.
// Tensors are contiguous row-major [rows, cols]; parameters are [cols]; statistics are [rows] fp32.
//
//   template <typename T>
//   void launch_layer_norm_fwd(const T* x, const T* gamma, const T* beta, T* y, float* mean,
//                              float* rstd, int rows, int cols, float eps, mbk_stream_t stream);
//       y = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps) (biased variance).
//       gamma / beta may be nullptr (weight 1 / bias 0); mean may be nullptr (not saved).
//   template <typename T>
//   void launch_rms_norm_fwd(const T* x, const T* gamma, T* y, float* rstd, int rows, int cols,
//                            float eps, mbk_stream_t stream);
//       y = x * rstd * gamma, rstd = 1/sqrt(mean(x^2) + eps). gamma may be nullptr.
//   size_t layer_norm_bwd_workspace_floats(int rows, int cols);
//       Size (in floats) of the scratch buffer the backward launchers need (no initialisation).
//   template <typename T>
//   void launch_layer_norm_bwd(const T* dy, const T* x, const T* gamma, const float* mean,
//                              const float* rstd, T* dx, T* dgamma, T* dbeta, float* workspace,
//                              int rows, int cols, mbk_stream_t stream);
//       mean/rstd as saved by the forward. gamma nullptr = weight 1. dgamma / dbeta may be nullptr
//       (not computed). Column sums are deterministic (fixed order).
//   template <typename T>
//   void launch_rms_norm_bwd(const T* dy, const T* x, const T* gamma, const float* rstd, T* dx,
//                            T* dgamma, float* workspace, int rows, int cols, mbk_stream_t stream);
//
// Limits: 1 <= cols <= 16384 (any value; 16-byte vector loads are used when cols is a multiple of
// the vector width and all pointers are 16-byte aligned), rows >= 0. Bad arguments throw
// std::invalid_argument; a failed CUDA launch throws std::runtime_error.
//
// A g++-compiled file that links against nvcc-compiled instantiations (e.g. a torch binding) defines
// MBK_CUDA_HOST before including this header: it then only declares the templates, and the .cu
// side instantiates them with MBK_INSTANTIATE_LAYER_NORM(T).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "mbk/portability.cuh"
#include "mbk/row_config.h"

namespace mbk {

// Row groups used by the backward's partial column sums: a multiple of 4, at most 256.
inline int layer_norm_bwd_groups(int rows) {
  const int r4 = (rows + 3) / 4 * 4;
  return r4 < 256 ? r4 : 256;
}

inline size_t layer_norm_bwd_workspace_floats(int rows, int cols) {
  return rows <= 0 || cols <= 0 ? 0 : 2 * static_cast<size_t>(layer_norm_bwd_groups(rows)) * static_cast<size_t>(cols);
}

template <typename T>
void launch_layer_norm_fwd(const T* x, const T* gamma, const T* beta, T* y, float* mean, float* rstd, int rows,
                           int cols, float eps, mbk_stream_t stream);
template <typename T>
void launch_rms_norm_fwd(const T* x, const T* gamma, T* y, float* rstd, int rows, int cols, float eps,
                         mbk_stream_t stream);
template <typename T>
void launch_layer_norm_bwd(const T* dy, const T* x, const T* gamma, const float* mean, const float* rstd, T* dx,
                           T* dgamma, T* dbeta, float* workspace, int rows, int cols, mbk_stream_t stream);
template <typename T>
void launch_rms_norm_bwd(const T* dy, const T* x, const T* gamma, const float* rstd, T* dx, T* dgamma,
                         float* workspace, int rows, int cols, mbk_stream_t stream);

}  // namespace mbk

#if defined(__CUDACC__) || !defined(MBK_CUDA_HOST)
#include "layer_norm.cuh"

namespace mbk {
namespace layer_norm {

inline void check_sizes(const char* who, int rows, int cols) {
  if (rows < 0 || cols < 1 || cols > 16384)
    throw std::invalid_argument(std::string(who) + ": need rows >= 0 and 1 <= cols <= 16384, got rows=" +
                                std::to_string(rows) + ", cols=" + std::to_string(cols));
}

template <typename T>
RowConfig config_for(int cols, bool aligned) {
  constexpr int kVecMax = 16 / static_cast<int>(sizeof(T));
  return pick_row_config(cols, aligned && cols % kVecMax == 0 ? kVecMax : 1);
}

template <typename T, bool kRMS>
void fwd(const T* x, const T* gamma, const T* beta, T* y, float* mean, float* rstd, int rows, int cols, float eps,
         mbk_stream_t stream, const char* who) {
  check_sizes(who, rows, cols);
  if (rows == 0) return;
  if (x == nullptr || y == nullptr || rstd == nullptr)
    throw std::invalid_argument(std::string(who) + ": x, y and rstd must not be null");
  const bool aligned = aligned16(x) && aligned16(y) && aligned16(gamma) && aligned16(beta);
  const RowConfig cfg = config_for<T>(cols, aligned);
  const dim3 block(cfg.threads, cfg.rows_per_block);
  const dim3 grid((rows + cfg.rows_per_block - 1) / cfg.rows_per_block);
  constexpr int kVecMax = 16 / static_cast<int>(sizeof(T));
  dispatch_row_iters(cfg.iters, [&](auto iters_c) {
    constexpr int kIters = decltype(iters_c)::value;
    if (cfg.vec == kVecMax) {
      if constexpr (kIters * kVecMax <= kMaxRowValues) {  // the only vector configurations used
        auto* kern = &layer_norm_fwd_kernel<T, kRMS, kVecMax, kIters>;
        MBK_LAUNCH(kern, grid, block, 0, stream, x, gamma, beta, y, mean, rstd, rows, cols, eps);
      } else {
        throw std::logic_error(std::string(who) + ": unexpected row configuration");
      }
    } else {
      auto* kern = &layer_norm_fwd_kernel<T, kRMS, 1, kIters>;
      MBK_LAUNCH(kern, grid, block, 0, stream, x, gamma, beta, y, mean, rstd, rows, cols, eps);
    }
  });
  MBK_CHECK_LAUNCH(who);
}

template <typename T, bool kRMS>
void bwd(const T* dy, const T* x, const T* gamma, const float* mean, const float* rstd, T* dx, T* dgamma, T* dbeta,
         float* workspace, int rows, int cols, mbk_stream_t stream, const char* who) {
  check_sizes(who, rows, cols);
  if (rows == 0) return;
  if (dy == nullptr || x == nullptr || rstd == nullptr || dx == nullptr || workspace == nullptr || (!kRMS && mean == nullptr))
    throw std::invalid_argument(std::string(who) + ": dy, x, mean (LayerNorm), rstd, dx and workspace must not be null");
  const bool aligned = aligned16(dy) && aligned16(x) && aligned16(gamma) && aligned16(dx) && aligned16(workspace);
  const RowConfig cfg = config_for<T>(cols, aligned);
  const int groups = layer_norm_bwd_groups(rows);
  const dim3 block(cfg.threads, cfg.rows_per_block);
  const dim3 grid(groups / cfg.rows_per_block);  // groups is a multiple of 4
  float* part_dgamma = workspace;
  float* part_dbeta = kRMS ? nullptr : workspace + static_cast<size_t>(groups) * cols;
  constexpr int kVecMax = 16 / static_cast<int>(sizeof(T));
  dispatch_row_iters(cfg.iters, [&](auto iters_c) {
    constexpr int kIters = decltype(iters_c)::value;
    if (cfg.vec == kVecMax) {
      if constexpr (kIters * kVecMax <= kMaxRowValues) {  // the only vector configurations used
        auto* kern = &layer_norm_bwd_dx_kernel<T, kRMS, kVecMax, kIters>;
        MBK_LAUNCH(kern, grid, block, 0, stream, dy, x, gamma, mean, rstd, dx, part_dgamma, part_dbeta, rows, cols);
      } else {
        throw std::logic_error(std::string(who) + ": unexpected row configuration");
      }
    } else {
      auto* kern = &layer_norm_bwd_dx_kernel<T, kRMS, 1, kIters>;
      MBK_LAUNCH(kern, grid, block, 0, stream, dy, x, gamma, mean, rstd, dx, part_dgamma, part_dbeta, rows, cols);
    }
  });
  MBK_CHECK_LAUNCH(who);
  if (dgamma != nullptr || (!kRMS && dbeta != nullptr)) {
    auto* kern = &layer_norm_bwd_params_kernel<T>;
    MBK_LAUNCH(kern, dim3((cols + 255) / 256), dim3(256), 0, stream, part_dgamma, part_dbeta, groups, cols, dgamma,
               kRMS ? static_cast<T*>(nullptr) : dbeta);
    MBK_CHECK_LAUNCH(who);
  }
}

}  // namespace layer_norm

template <typename T>
void launch_layer_norm_fwd(const T* x, const T* gamma, const T* beta, T* y, float* mean, float* rstd, int rows,
                           int cols, float eps, mbk_stream_t stream) {
  layer_norm::fwd<T, false>(x, gamma, beta, y, mean, rstd, rows, cols, eps, stream, "launch_layer_norm_fwd");
}

template <typename T>
void launch_rms_norm_fwd(const T* x, const T* gamma, T* y, float* rstd, int rows, int cols, float eps,
                         mbk_stream_t stream) {
  layer_norm::fwd<T, true>(x, gamma, static_cast<const T*>(nullptr), y, static_cast<float*>(nullptr), rstd, rows,
                           cols, eps, stream, "launch_rms_norm_fwd");
}

template <typename T>
void launch_layer_norm_bwd(const T* dy, const T* x, const T* gamma, const float* mean, const float* rstd, T* dx,
                           T* dgamma, T* dbeta, float* workspace, int rows, int cols, mbk_stream_t stream) {
  layer_norm::bwd<T, false>(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, workspace, rows, cols, stream,
                            "launch_layer_norm_bwd");
}

template <typename T>
void launch_rms_norm_bwd(const T* dy, const T* x, const T* gamma, const float* rstd, T* dx, T* dgamma,
                         float* workspace, int rows, int cols, mbk_stream_t stream) {
  layer_norm::bwd<T, true>(dy, x, gamma, static_cast<const float*>(nullptr), rstd, dx, dgamma,
                           static_cast<T*>(nullptr), workspace, rows, cols, stream, "launch_rms_norm_bwd");
}

}  // namespace mbk

// Explicit instantiation of every launcher for one element type (for the nvcc side of a build
// whose callers only see the declarations, see MBK_CUDA_HOST above).
#define MBK_INSTANTIATE_LAYER_NORM(T)                                                                        \
  template void mbk::launch_layer_norm_fwd<T>(const T*, const T*, const T*, T*, float*, float*, int, int, float, \
                                              mbk_stream_t);                                                 \
  template void mbk::launch_rms_norm_fwd<T>(const T*, const T*, T*, float*, int, int, float, mbk_stream_t);     \
  template void mbk::launch_layer_norm_bwd<T>(const T*, const T*, const T*, const float*, const float*, T*, T*, \
                                              T*, float*, int, int, mbk_stream_t);                           \
  template void mbk::launch_rms_norm_bwd<T>(const T*, const T*, const T*, const float*, T*, T*, float*, int, int, \
                                            mbk_stream_t);
#endif
