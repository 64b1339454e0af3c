// Torch-free entry points of the csrc CUDA kernels, one per (op, dtype).
//
// Defined in csrc/cuda/*.cu (compiled by nvcc, no torch headers, so they compile fast and the
// nvcc test can compile them on their own) and called by the torch bindings in csrc/torch/*.cpp
// (compiled by g++ with torch headers). Keeping the boundary dtype-erased (void pointers and a
// DType tag) means the bindings never include kernel code and the kernels never include torch.
// The same files also compile with g++ against the CPU emulator (see build_cuda.build_torch_emu),
// which is how the bindings are tested without a GPU. Every function only enqueues work on `stream`; argument errors throw std::invalid_argument
// (from the launchers) before anything is launched.
#pragma once

#include <cstddef>

#include "kernels/flash_params.h"

namespace mbk {
namespace api {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// The stream to enqueue on: a Stream on the GPU, the emulator's stream handle (or nullptr)
// when the same files are compiled for the CPU emulator (tests of the bindings).
using Stream = void*;

// ---- LayerNorm / RMSNorm (csrc/kernels/layer_norm_launch.h) ---------------------------------
// x, y, dy, dx [rows, cols]; gamma, beta, dgamma, dbeta [cols] (beta/dbeta nullptr for RMSNorm);
// mean, rstd [rows] float32; workspace: norm_bwd_workspace_floats(rows, cols) floats.
struct NormArgs {
  const void* x = nullptr;
  const void* gamma = nullptr;
  const void* beta = nullptr;
  const void* dy = nullptr;
  void* y = nullptr;
  void* dx = nullptr;
  void* dgamma = nullptr;
  void* dbeta = nullptr;
  float* mean = nullptr;  // forward output, backward input
  float* rstd = nullptr;  // forward output, backward input
  float* workspace = nullptr;
  int rows = 0, cols = 0;
  float eps = 1e-5f;
};

size_t norm_bwd_workspace_floats(int rows, int cols);

template <DType dt>
void layer_norm_fwd(const NormArgs& a, Stream stream);
template <DType dt>
void layer_norm_bwd(const NormArgs& a, Stream stream);
template <DType dt>
void rms_norm_fwd(const NormArgs& a, Stream stream);
template <DType dt>
void rms_norm_bwd(const NormArgs& a, Stream stream);

#define MBK_API_DECLARE_DTYPES(fn, Args)                          \
  template <>                                                     \
  void fn<DType::kFloat32>(const Args&, Stream);            \
  template <>                                                     \
  void fn<DType::kFloat16>(const Args&, Stream);            \
  template <>                                                     \
  void fn<DType::kBFloat16>(const Args&, Stream);

MBK_API_DECLARE_DTYPES(layer_norm_fwd, NormArgs)
MBK_API_DECLARE_DTYPES(layer_norm_bwd, NormArgs)
MBK_API_DECLARE_DTYPES(rms_norm_fwd, NormArgs)
MBK_API_DECLARE_DTYPES(rms_norm_bwd, NormArgs)

// ---- fused attention softmax (csrc/kernels/softmax_launch.h) ---------------------------------
// x, y, dy, dx [batch, heads, sq, sk]; mask bytes [mask_batch, 1, sq, sk], nonzero = masked out,
// or nullptr. Causal: sq == sk, keys j > i masked.
struct SoftmaxArgs {
  const void* x = nullptr;
  const void* y_in = nullptr;  // backward: the forward's output
  const void* dy = nullptr;
  const unsigned char* mask = nullptr;
  void* y = nullptr;
  void* dx = nullptr;
  int batch = 0, heads = 0, sq = 0, sk = 0, mask_batch = 1;
  float scale = 1.0f;
};

template <DType dt>
void scaled_masked_softmax_fwd(const SoftmaxArgs& a, Stream stream);
template <DType dt>
void scaled_causal_softmax_fwd(const SoftmaxArgs& a, Stream stream);
template <DType dt>
void scaled_softmax_bwd(const SoftmaxArgs& a, Stream stream);

MBK_API_DECLARE_DTYPES(scaled_masked_softmax_fwd, SoftmaxArgs)
MBK_API_DECLARE_DTYPES(scaled_causal_softmax_fwd, SoftmaxArgs)
MBK_API_DECLARE_DTYPES(scaled_softmax_bwd, SoftmaxArgs)

// ---- flash attention (csrc/kernels/flash_attention_launch.h) --------------------------------
// The kernels' own argument struct (plain C++, no CUDA types): strided q, k, v, out, dout, dq, dk, dv
// ([B, S, heads, D] with per-tensor Strides, contiguous last dim), lse [B, H, Sq] float32, delta
// workspace of B * H * Sq floats (backward only), attention dropout (dropout_p, dropout_seed,
// dropout_offset; the backward takes the forward's).
using FlashArgs = flash::FlashParams;

template <DType dt>
void flash_attention_fwd(const FlashArgs& a, Stream stream);
template <DType dt>
void flash_attention_bwd(const FlashArgs& a, Stream stream);

MBK_API_DECLARE_DTYPES(flash_attention_fwd, FlashArgs)
MBK_API_DECLARE_DTYPES(flash_attention_bwd, FlashArgs)

}  // namespace api
}  // namespace mbk
