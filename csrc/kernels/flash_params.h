// The arguments of one flash-attention call, shared by the host launchers, every kernel (scalar fp32 and tensor-core
// bf16/fp16, forward and backward) and the torch-free API (csrc/cuda/ops_api.h). Plain C++: no CUDA types.
//
// Tensors are strided in their first three dimensions (elements, not bytes) with a contiguous last dimension:
//   q, out, dout, dq : [batch, seqlen_q, num_heads,    head_dim]
//   k, v, dk, dv     : [batch, seqlen_k, num_kv_heads, head_dim]
//   lse, delta       : [batch, num_heads, seqlen_q] float32, contiguous
// so megatron-core's [seq, batch, heads, dim] tensors are passed as they are (batch stride = heads * dim, row
// stride = batch * heads * dim): no transposes around the kernels. The tensor-core kernels copy 16 bytes at a time:
// their pointers must be 16-byte aligned and their strides multiples of 8 elements (checked by the launcher).
#pragma once

#include <stdint.h>

#include <stdexcept>
#include <string>

namespace mbk {
namespace flash {

struct Strides {
  int64_t batch = 0, row = 0, head = 0;
};

// Strides of a contiguous [batch, seqlen, heads, head_dim] tensor.
inline Strides contiguous_strides(int seqlen, int heads, int head_dim) {
  Strides s;
  s.head = head_dim;
  s.row = static_cast<int64_t>(heads) * head_dim;
  s.batch = static_cast<int64_t>(seqlen) * s.row;
  return s;
}

struct FlashParams {
  // forward inputs
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  // forward outputs, backward inputs (out, lse)
  void* out = nullptr;
  float* lse = nullptr;
  // backward
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  float* delta = nullptr;  // workspace: batch * num_heads * seqlen_q floats

  Strides q_strides, k_strides, v_strides, out_strides, dout_strides, dq_strides, dk_strides, dv_strides;

  int batch = 0, seqlen_q = 0, seqlen_k = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float softmax_scale = 1.0f;
  bool causal = false;  // bottom-right aligned: query i sees key j iff j <= i + seqlen_k - seqlen_q

  // Attention dropout on the probabilities (mbk/philox.cuh): p = 0 disables it. The backward must be given the
  // forward's seed and offset.
  float dropout_p = 0.0f;
  uint64_t dropout_seed = 0;
  uint32_t dropout_offset = 0;
};

// The checks of a call's shape and dropout every flash launcher makes (std::invalid_argument naming `fn`).
// dropout_p = 1 (everything dropped) is allowed where `allow_dropout_one`: the scalar kernels take it, the
// tensor-core ones need p < 1 (the dispatcher sends p = 1 to the scalar kernels).
inline void flash_check_shape(const std::string& fn, const FlashParams& p, bool allow_dropout_one) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(fn + ": " + what); };
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
  if (!(p.dropout_p >= 0.f && (allow_dropout_one ? p.dropout_p <= 1.f : p.dropout_p < 1.f))) {
    fail("dropout_p " + std::to_string(p.dropout_p) + (allow_dropout_one ? " must be in [0, 1]" : " must be in [0, 1)"));
  }
}

// Whether the tensor-core kernels (flash_attention_mma_{fwd,bwd}.cuh) can take a call's tensors as they are:
// 16-byte aligned pointers and strides that are multiples of 8 elements (they copy 16 bytes at a time). Where not,
// the dispatcher (flash_attention_launch.h) runs the scalar kernels.
inline bool flash_mma_tensor_ok(const void* ptr, const Strides& st) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && st.batch % 8 == 0 && st.row % 8 == 0 && st.head % 8 == 0;
}

inline bool flash_mma_layout_ok(const FlashParams& p, bool backward) {
  const bool fwd = flash_mma_tensor_ok(p.q, p.q_strides) && flash_mma_tensor_ok(p.k, p.k_strides) &&
                   flash_mma_tensor_ok(p.v, p.v_strides) && flash_mma_tensor_ok(p.out, p.out_strides);
  if (!backward) return fwd;
  return fwd && flash_mma_tensor_ok(p.dout, p.dout_strides) && flash_mma_tensor_ok(p.dq, p.dq_strides) &&
         flash_mma_tensor_ok(p.dk, p.dk_strides) && flash_mma_tensor_ok(p.dv, p.dv_strides);
}

}  // namespace flash
}  // namespace mbk
