// Host launchers for the FlashAttention-2 kernels. Compiled unchanged by nvcc (torch extension) and
// by g++ (CPU emulator module).
//
//   template <typename T> void mbk::flash::flash_attention_fwd(const FlashParams& p, mbk_stream_t stream);
//     reads q, k, v; writes out and lse.
//   template <typename T> void mbk::flash::flash_attention_bwd(const FlashParams& p, mbk_stream_t stream);
//     reads q, k, v, out, dout, lse (the forward's) and the forward's dropout seed/offset; writes dq, dk, dv
//     (every element: no pre-zeroing needed) using p.delta as workspace.
//   size_t mbk::flash::flash_attention_bwd_workspace_floats(batch, num_heads, seqlen_q);
//
// T = float, __half or __nv_bfloat16; FlashParams (flash_params.h): strided tensors with a contiguous last
// dimension, head_dim in {64, 80, 96, 128}, num_kv_heads dividing num_heads, causal bottom-right aligned
// (query i sees key j iff j <= i + Sk - Sq), attention dropout (mbk/philox.cuh) with 0 <= dropout_p <= 1.
// The backward is deterministic (no atomics). Invalid arguments throw std::invalid_argument before anything
// is launched; a failed launch throws std::runtime_error (MBK_CHECK_LAUNCH). Kernels run asynchronously on
// `stream` (emulator: pass nullptr). Arithmetic is float32 whatever T is; softmax_scale multiplies q.k
// (usually 1/sqrt(head_dim)). batch and num_heads are grid dimensions: at most 65535.
//
// Each entry point checks its arguments once and runs ONE dispatch function, flash_fwd_dispatch<T> /
// flash_bwd_dispatch<T>, which picks the kernels for a call: the tensor-core kernels for half/bf16 where the
// layout suits them, else the scalar FlashAttention-2 kernels of flash_attention.cuh (fp32 keeps them for good).
// Kernel resources: see the .cuh files.
//
// Use from a torch binding compiled by g++ and linked with an nvcc object: define MBK_CUDA_HOST
// before including this header; it then only declares the launchers. In the .cu, include it
// normally and write MBK_FLASH_ATTENTION_INSTANTIATE(float), (__half) and (__nv_bfloat16) at
// global scope to emit the definitions.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/flash_params.h"
#include "mbk/portability.cuh"

namespace mbk {
namespace flash {

inline size_t flash_attention_bwd_workspace_floats(int batch, int num_heads, int seqlen_q) {
  return static_cast<size_t>(batch) * num_heads * seqlen_q;
}

template <typename T>
void flash_attention_fwd(const FlashParams& p, mbk_stream_t stream);

template <typename T>
void flash_attention_bwd(const FlashParams& p, mbk_stream_t stream);

}  // namespace flash
}  // namespace mbk

// Kernel definitions need a CUDA compiler or the emulator, not the declarations-only mode.
#if !defined(MBK_CUDA_HOST) || defined(__CUDACC__)
#include <type_traits>

#include "flash_attention.cuh"
#include "kernels/flash_attention_mma.h"

namespace mbk {
namespace flash {

inline void flash_check_params(const char* fn, const FlashParams& p, bool backward) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(std::string(fn) + ": " + what); };
  flash_check_shape(fn, p, /*allow_dropout_one=*/true);
  const bool has_q = p.batch > 0 && p.seqlen_q > 0, has_k = p.batch > 0 && p.seqlen_k > 0;
  auto need = [&](const void* ptr, bool needed, const char* name) {
    if (needed && ptr == nullptr) fail(std::string(name) + " is null");
  };
  need(p.q, has_q, "q");
  need(p.k, has_q && has_k, "k");
  need(p.v, has_q && has_k, "v");
  need(p.out, has_q, "out");
  need(p.lse, has_q, "lse");
  if (backward) {
    need(p.dout, has_q, "dout");
    need(p.delta, has_q, "delta");
    need(p.dq, has_q, "dq");
    need(p.dk, has_k, "dk");
    need(p.dv, has_k, "dv");
  }
}

inline int flash_ceil_div(int a, int b) { return (a + b - 1) / b; }

// ---- the scalar FlashAttention-2 kernels (flash_attention.cuh) --------------------------------

template <typename T, int D>
void flash_fwd_scalar_hdim(const FlashParams& p, mbk_stream_t stream) {
  const dim3 grid(flash_ceil_div(p.seqlen_q, FlashConfig<D>::kBlockRows), p.num_heads, p.batch);
  // Through a pointer: a template-id with a comma cannot be a macro argument.
  auto kernel = flash_fwd_kernel<T, D>;
  MBK_LAUNCH(kernel, grid, dim3(kThreads), 0, stream, p, make_dropout_args(p));
  MBK_CHECK_LAUNCH("flash_attention_fwd");
}

template <typename T, int D>
void flash_bwd_scalar_hdim(const FlashParams& p, mbk_stream_t stream) {
  const dim3 block(kThreads);
  const DropoutArgs drop = make_dropout_args(p);
  // Empty grids are skipped: with seqlen_k == 0 the dQ kernel writes zeros (no key is
  // visible); with seqlen_q == 0 the dK/dV kernel writes zeros (no query contributes).
  if (p.seqlen_q > 0) {
    auto delta_kernel = flash_bwd_delta_kernel<T, D>;
    MBK_LAUNCH(delta_kernel, dim3(flash_ceil_div(p.seqlen_q, kWarps), p.num_heads, p.batch), block, 0, stream, p);
    MBK_CHECK_LAUNCH("flash_attention_bwd (delta)");
  }
  if (p.seqlen_k > 0) {
    auto dkdv_kernel = flash_bwd_dkdv_kernel<T, D>;
    MBK_LAUNCH(dkdv_kernel, dim3(flash_ceil_div(p.seqlen_k, FlashConfig<D>::kBwdBlockRows), p.num_kv_heads, p.batch),
               block, 0, stream, p, drop);
    MBK_CHECK_LAUNCH("flash_attention_bwd (dk, dv)");
  }
  if (p.seqlen_q > 0) {
    auto dq_kernel = flash_bwd_dq_kernel<T, D>;
    MBK_LAUNCH(dq_kernel, dim3(flash_ceil_div(p.seqlen_q, FlashConfig<D>::kBwdBlockRows), p.num_heads, p.batch),
               block, 0, stream, p, drop);
    MBK_CHECK_LAUNCH("flash_attention_bwd (dq)");
  }
}

template <typename T>
void flash_fwd_scalar(const FlashParams& p, mbk_stream_t stream) {
  switch (p.head_dim) {
    case 64: return flash_fwd_scalar_hdim<T, 64>(p, stream);
    case 80: return flash_fwd_scalar_hdim<T, 80>(p, stream);
    case 96: return flash_fwd_scalar_hdim<T, 96>(p, stream);
    default: return flash_fwd_scalar_hdim<T, 128>(p, stream);
  }
}

template <typename T>
void flash_bwd_scalar(const FlashParams& p, mbk_stream_t stream) {
  switch (p.head_dim) {
    case 64: return flash_bwd_scalar_hdim<T, 64>(p, stream);
    case 80: return flash_bwd_scalar_hdim<T, 80>(p, stream);
    case 96: return flash_bwd_scalar_hdim<T, 96>(p, stream);
    default: return flash_bwd_scalar_hdim<T, 128>(p, stream);
  }
}

// ---- THE dispatch: which kernels run a (checked, non-empty) call ------------------------------
//
// float runs the scalar kernels of flash_attention.cuh; __half and __nv_bfloat16 run the tensor-core kernels
// (flash_attention_mma_{fwd,bwd}.cuh: mma.sync m16n8k16, ldmatrix, cp.async) whenever the tensors' layout suits them
// (flash_mma_layout_ok: 16-byte aligned, strides multiples of 8 elements), else the scalar kernels, so unaligned
// strided views keep working. Both take the same FlashParams and draw the same dropout mask (mbk/philox.cuh), so a
// forward on one and a backward on the other agree.

template <typename T>
void flash_fwd_dispatch(const FlashParams& p, mbk_stream_t stream) {
  if constexpr (!std::is_same<T, float>::value) {
    if (p.dropout_p < 1.f && flash_mma_layout_ok(p, false)) return flash_mma_fwd<T>(p, stream);
  }
  flash_fwd_scalar<T>(p, stream);
}

template <typename T>
void flash_bwd_dispatch(const FlashParams& p, mbk_stream_t stream) {
  if constexpr (!std::is_same<T, float>::value) {
    if (p.dropout_p < 1.f && flash_mma_layout_ok(p, true)) return flash_mma_bwd<T>(p, stream);
  }
  flash_bwd_scalar<T>(p, stream);
}

// ---- the entry points ------------------------------------------------------------------------

template <typename T>
void flash_attention_fwd(const FlashParams& p, mbk_stream_t stream) {
  flash_check_params("flash_attention_fwd", p, false);
  if (p.batch == 0 || p.seqlen_q == 0) return;
  // seqlen_k == 0 still launches: every row is fully masked, so out = 0 and lse = -inf.
  flash_fwd_dispatch<T>(p, stream);
}

template <typename T>
void flash_attention_bwd(const FlashParams& p, mbk_stream_t stream) {
  flash_check_params("flash_attention_bwd", p, true);
  if (p.batch == 0) return;
  flash_bwd_dispatch<T>(p, stream);
}

}  // namespace flash
}  // namespace mbk

#define MBK_FLASH_ATTENTION_INSTANTIATE(T)                                                            \
  template void mbk::flash::flash_attention_fwd<T>(const mbk::flash::FlashParams&, mbk_stream_t); \
  template void mbk::flash::flash_attention_bwd<T>(const mbk::flash::FlashParams&, mbk_stream_t)

#endif  // kernel definitions
