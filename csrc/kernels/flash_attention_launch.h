// Host launchers for the FlashAttention-2 kernels in flash_attention.cuh.
// Compiled unchanged by nvcc (torch extension) and by g++ (CPU emulator module).
//
// Signatures (T = float, __half or __nv_bfloat16; head_dim in {64, 80, 96, 128}):
//
//   template <typename T>
//   void mbk::flash::flash_attention_fwd(
//       const T* q, const T* k, const T* v,      // q [B, Sq, H, D]; k, v [B, Sk, Hkv, D]
//       T* out, float* lse,                      // out [B, Sq, H, D]; lse [B, H, Sq] float32
//       int batch, int seqlen_q, int seqlen_k, int num_heads, int num_kv_heads, int head_dim,
//       float softmax_scale, bool causal, mbk_stream_t stream);
//
//   template <typename T>
//   void mbk::flash::flash_attention_bwd(
//       const T* q, const T* k, const T* v, const T* out, const T* dout,  // dout like out
//       const float* lse,                        // from the forward
//       T* dq, T* dk, T* dv,                     // dq like q; dk, dv like k (overwritten)
//       float* delta,                            // workspace: B * H * Sq floats
//       int batch, int seqlen_q, int seqlen_k, int num_heads, int num_kv_heads, int head_dim,
//       float softmax_scale, bool causal, mbk_stream_t stream);
//
//   size_t mbk::flash::flash_attention_bwd_workspace_floats(batch, num_heads, seqlen_q);
//
// All tensors are contiguous. num_kv_heads must divide num_heads. causal is bottom-right
// aligned (query i sees key j iff j <= i + Sk - Sq). Every output element is written (no
// pre-zeroing needed); the backward is deterministic (no atomics). Invalid arguments throw
// std::invalid_argument before anything is launched; a failed launch throws std::runtime_error
// (MBK_CHECK_LAUNCH). Kernels run asynchronously on `stream` (emulator: pass nullptr).
// Arithmetic is float32 whatever T is; softmax_scale multiplies q.k (usually 1/sqrt(head_dim)).
// batch and num_heads are grid dimensions: at most 65535. Kernel resources: see the .cuh.
//
// Use from a torch binding compiled by g++ and linked with an nvcc object: define MBK_CUDA_HOST
// before including this header; it then only declares the launchers. In the .cu, include it
// normally and write MBK_FLASH_ATTENTION_INSTANTIATE(float), (__half) and (__nv_bfloat16) at
// global scope to emit the definitions.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "mbk/portability.cuh"

namespace mbk {
namespace flash {

inline size_t flash_attention_bwd_workspace_floats(int batch, int num_heads, int seqlen_q) {
  return static_cast<size_t>(batch) * num_heads * seqlen_q;
}

template <typename T>
void flash_attention_fwd(const T* q, const T* k, const T* v, T* out, float* lse, int batch,
                         int seqlen_q, int seqlen_k, int num_heads, int num_kv_heads, int head_dim,
                         float softmax_scale, bool causal, mbk_stream_t stream);

template <typename T>
void flash_attention_bwd(const T* q, const T* k, const T* v, const T* out, const T* dout,
                         const float* lse, T* dq, T* dk, T* dv, float* delta, int batch,
                         int seqlen_q, int seqlen_k, int num_heads, int num_kv_heads, int head_dim,
                         float softmax_scale, bool causal, mbk_stream_t stream);

}  // namespace flash
}  // namespace mbk

// Kernel definitions need a CUDA compiler or the emulator, not the declarations-only mode.
#if !defined(MBK_CUDA_HOST) || defined(__CUDACC__)
#include "flash_attention.cuh"

namespace mbk {
namespace flash {

inline void flash_check_args(const char* fn, int batch, int seqlen_q, int seqlen_k,
                             int num_heads, int num_kv_heads, int head_dim) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(fn) + ": " + what);
  };
  if (batch < 0 || seqlen_q < 0 || seqlen_k < 0) fail("batch and sequence lengths must be >= 0");
  if (num_heads <= 0 || num_kv_heads <= 0) fail("num_heads and num_kv_heads must be > 0");
  if (num_heads % num_kv_heads != 0) {
    fail("num_kv_heads (" + std::to_string(num_kv_heads) + ") must divide num_heads (" +
         std::to_string(num_heads) + ")");
  }
  if (head_dim != 64 && head_dim != 80 && head_dim != 96 && head_dim != 128) {
    fail("head_dim " + std::to_string(head_dim) + " is not supported (64, 80, 96 or 128)");
  }
  if (num_heads > 65535 || batch > 65535) fail("num_heads and batch must be <= 65535 (grid y/z)");
}

inline int flash_ceil_div(int a, int b) { return (a + b - 1) / b; }

template <typename T, int D>
void flash_attention_fwd_hdim(const T* q, const T* k, const T* v, T* out, float* lse, int batch,
                              int seqlen_q, int seqlen_k, int num_heads, int num_kv_heads,
                              float softmax_scale, bool causal, mbk_stream_t stream) {
  const dim3 grid(flash_ceil_div(seqlen_q, FlashConfig<D>::kBlockRows), num_heads, batch);
  const dim3 block(kThreads);
  // Through a pointer: a template-id with a comma cannot be a macro argument.
  auto kernel = flash_fwd_kernel<T, D>;
  MBK_LAUNCH(kernel, grid, block, 0, stream, q, k, v, out, lse, seqlen_q, seqlen_k, num_heads,
             num_kv_heads, softmax_scale, causal);
  MBK_CHECK_LAUNCH("flash_attention_fwd");
}

template <typename T, int D>
void flash_attention_bwd_hdim(const T* q, const T* k, const T* v, const T* out, const T* dout,
                              const float* lse, T* dq, T* dk, T* dv, float* delta, int batch,
                              int seqlen_q, int seqlen_k, int num_heads, int num_kv_heads,
                              float softmax_scale, bool causal, mbk_stream_t stream) {
  const dim3 block(kThreads);
  const float* delta_in = delta;
  // Empty grids are skipped: with seqlen_k == 0 the dQ kernel writes zeros (no key is
  // visible); with seqlen_q == 0 the dK/dV kernel writes zeros (no query contributes).
  if (seqlen_q > 0) {
    auto delta_kernel = flash_bwd_delta_kernel<T, D>;
    MBK_LAUNCH(delta_kernel, dim3(flash_ceil_div(seqlen_q, kWarps), num_heads, batch), block, 0,
               stream, out, dout, delta, seqlen_q, num_heads);
    MBK_CHECK_LAUNCH("flash_attention_bwd (delta)");
  }
  if (seqlen_k > 0) {
    auto dkdv_kernel = flash_bwd_dkdv_kernel<T, D>;
    MBK_LAUNCH(dkdv_kernel,
               dim3(flash_ceil_div(seqlen_k, FlashConfig<D>::kBwdBlockRows), num_kv_heads, batch),
               block, 0, stream, q, k, v, dout, lse, delta_in, dk, dv, seqlen_q, seqlen_k,
               num_heads, num_kv_heads, softmax_scale, causal);
    MBK_CHECK_LAUNCH("flash_attention_bwd (dk, dv)");
  }
  if (seqlen_q > 0) {
    auto dq_kernel = flash_bwd_dq_kernel<T, D>;
    MBK_LAUNCH(dq_kernel,
               dim3(flash_ceil_div(seqlen_q, FlashConfig<D>::kBwdBlockRows), num_heads, batch),
               block, 0, stream, q, k, v, dout, lse, delta_in, dq, seqlen_q, seqlen_k, num_heads,
               num_kv_heads, softmax_scale, causal);
    MBK_CHECK_LAUNCH("flash_attention_bwd (dq)");
  }
}

template <typename T>
void flash_attention_fwd(const T* q, const T* k, const T* v, T* out, float* lse, int batch,
                         int seqlen_q, int seqlen_k, int num_heads, int num_kv_heads, int head_dim,
                         float softmax_scale, bool causal, mbk_stream_t stream) {
  flash_check_args("flash_attention_fwd", batch, seqlen_q, seqlen_k, num_heads, num_kv_heads,
                   head_dim);
  if (batch == 0 || seqlen_q == 0) return;
  // seqlen_k == 0 still launches: every row is fully masked, so out = 0 and lse = -inf.
  switch (head_dim) {
    case 64:
      return flash_attention_fwd_hdim<T, 64>(q, k, v, out, lse, batch, seqlen_q, seqlen_k,
                                             num_heads, num_kv_heads, softmax_scale, causal,
                                             stream);
    case 80:
      return flash_attention_fwd_hdim<T, 80>(q, k, v, out, lse, batch, seqlen_q, seqlen_k,
                                             num_heads, num_kv_heads, softmax_scale, causal,
                                             stream);
    case 96:
      return flash_attention_fwd_hdim<T, 96>(q, k, v, out, lse, batch, seqlen_q, seqlen_k,
                                             num_heads, num_kv_heads, softmax_scale, causal,
                                             stream);
    default:
      return flash_attention_fwd_hdim<T, 128>(q, k, v, out, lse, batch, seqlen_q, seqlen_k,
                                              num_heads, num_kv_heads, softmax_scale, causal,
                                              stream);
  }
}

template <typename T>
void flash_attention_bwd(const T* q, const T* k, const T* v, const T* out, const T* dout,
                         const float* lse, T* dq, T* dk, T* dv, float* delta, int batch,
                         int seqlen_q, int seqlen_k, int num_heads, int num_kv_heads, int head_dim,
                         float softmax_scale, bool causal, mbk_stream_t stream) {
  flash_check_args("flash_attention_bwd", batch, seqlen_q, seqlen_k, num_heads, num_kv_heads,
                   head_dim);
  if (batch == 0) return;
  switch (head_dim) {
    case 64:
      return flash_attention_bwd_hdim<T, 64>(q, k, v, out, dout, lse, dq, dk, dv, delta, batch,
                                             seqlen_q, seqlen_k, num_heads, num_kv_heads,
                                             softmax_scale, causal, stream);
    case 80:
      return flash_attention_bwd_hdim<T, 80>(q, k, v, out, dout, lse, dq, dk, dv, delta, batch,
                                             seqlen_q, seqlen_k, num_heads, num_kv_heads,
                                             softmax_scale, causal, stream);
    case 96:
      return flash_attention_bwd_hdim<T, 96>(q, k, v, out, dout, lse, dq, dk, dv, delta, batch,
                                             seqlen_q, seqlen_k, num_heads, num_kv_heads,
                                             softmax_scale, causal, stream);
    default:
      return flash_attention_bwd_hdim<T, 128>(q, k, v, out, dout, lse, dq, dk, dv, delta, batch,
                                              seqlen_q, seqlen_k, num_heads, num_kv_heads,
                                              softmax_scale, causal, stream);
  }
}

}  // namespace flash
}  // namespace mbk

#define MBK_FLASH_ATTENTION_INSTANTIATE(T)                                                      \
  template void mbk::flash::flash_attention_fwd<T>(const T*, const T*, const T*, T*, float*, int, \
                                                   int, int, int, int, int, float, bool,        \
                                                   mbk_stream_t);                               \
  template void mbk::flash::flash_attention_bwd<T>(const T*, const T*, const T*, const T*,       \
                                                   const T*, const float*, T*, T*, T*, float*,  \
                                                   int, int, int, int, int, int, float, bool,   \
                                                   mbk_stream_t)

#endif  // kernel definitions
