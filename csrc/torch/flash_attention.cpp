// torch binding of the flash attention kernels (csrc/kernels/flash_attention_launch.h).
//
// q, k, v, dout may be strided views (any strides in the first three dimensions, contiguous last
// dimension): megatron-core's [seq, batch, heads, dim] tensors are passed as their [batch, seq, ...]
// transposes without copies. Outputs (out, dq, dk, dv) are allocated in the layout of the tensor they
// mirror (out and dq like q, dk like k, dv like v: the same order of the first three dimensions in
// memory, densely packed), so out of a transposed [seq, batch, ...] q is itself a transposed
// contiguous [seq, batch, ...] tensor. lse [batch, heads, seqlen_q] is contiguous float32.
// Attention dropout: dropout_p with a 64-bit seed (passed as int64, same bits) and a 32-bit offset; the
// backward must be given the forward's (see mbk/philox.cuh for the mask).
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "common.h"

namespace mbk {
namespace binding {
namespace {

void check_strided(const at::Tensor& t, const char* op, const char* name, const at::Tensor& like) {
  TORCH_CHECK(on_device(t), op, ": ", name, " must be a " MBK_DEVICE_NAME " tensor");
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but expected ", like.device());
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be [batch, seqlen, heads, head_dim], got ", t.sizes());
  TORCH_CHECK(t.stride(3) == 1 || t.size(3) <= 1, op, ": ", name, " must have a contiguous last dimension (strides ",
              t.strides(), "); call .contiguous() on it");
}

flash::Strides strides_of(const at::Tensor& t) {
  flash::Strides s;
  s.batch = t.stride(0);
  s.row = t.stride(1);
  s.head = t.stride(2);
  return s;
}

// A new tensor shaped like `like` whose first three dimensions lie in memory in the order of
// like's strides (largest first; ties keep the dimension order), densely packed, last dimension innermost.
at::Tensor empty_in_layout_of(const at::Tensor& like) {
  std::array<int64_t, 3> order{0, 1, 2};
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return like.stride(a) > like.stride(b); });
  at::Tensor t = at::empty({like.size(order[0]), like.size(order[1]), like.size(order[2]), like.size(3)},
                           like.options());
  std::array<int64_t, 4> inverse{0, 0, 0, 3};
  for (int64_t pos = 0; pos < 3; ++pos) inverse[order[pos]] = pos;
  return t.permute(inverse);
}

api::FlashArgs flash_shape(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           double softmax_scale, bool causal, double dropout_p, int64_t seed, int64_t offset) {
  check_strided(q, op, "q", q);
  check_strided(k, op, "k", q);
  check_strided(v, op, "v", q);
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), op, ": q, k, v must share a dtype");
  TORCH_CHECK(k.sizes() == v.sizes(), op, ": k ", k.sizes(), " and v ", v.sizes(), " differ");
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(3) == q.size(3), op, ": k/v ", k.sizes(), " do not match q ", q.sizes());
  TORCH_CHECK(dropout_p >= 0.0 && dropout_p <= 1.0, op, ": dropout_p ", dropout_p, " must be in [0, 1]");
  TORCH_CHECK(offset >= 0 && offset <= UINT32_MAX, op, ": dropout offset ", offset, " must be in [0, 2^32)");
  api::FlashArgs a;
  a.batch = checked_int(q.size(0), op, "batch");
  a.seqlen_q = checked_int(q.size(1), op, "seqlen_q");
  a.num_heads = checked_int(q.size(2), op, "num_heads");
  a.head_dim = checked_int(q.size(3), op, "head_dim");
  a.seqlen_k = checked_int(k.size(1), op, "seqlen_k");
  a.num_kv_heads = checked_int(k.size(2), op, "num_kv_heads");
  a.q = q.data_ptr();
  a.k = k.data_ptr();
  a.v = v.data_ptr();
  a.q_strides = strides_of(q);
  a.k_strides = strides_of(k);
  a.v_strides = strides_of(v);
  a.softmax_scale = static_cast<float>(softmax_scale);
  a.causal = causal;
  a.dropout_p = static_cast<float>(dropout_p);
  a.dropout_seed = static_cast<uint64_t>(seed);
  a.dropout_offset = static_cast<uint32_t>(offset);
  return a;
}

std::tuple<at::Tensor, at::Tensor> flash_attn_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  double softmax_scale, bool causal, double dropout_p, int64_t seed,
                                                  int64_t offset) {
  const char* op = "flash_attn_fwd";
  api::FlashArgs a = flash_shape(op, q, k, v, softmax_scale, causal, dropout_p, seed, offset);
  DeviceGuard guard(q.device());
  at::Tensor out = empty_in_layout_of(q);
  at::Tensor lse = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));
  a.out = out.data_ptr();
  a.out_strides = strides_of(out);
  a.lse = lse.data_ptr<float>();
  launch(op, [&] {
    dispatch_dtype(q, op, [&]<api::DType dt>() { api::flash_attention_fwd<dt>(a, current_stream()); });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> flash_attn_bwd(const at::Tensor& dout, const at::Tensor& q,
                                                              const at::Tensor& k, const at::Tensor& v,
                                                              const at::Tensor& out, const at::Tensor& lse,
                                                              double softmax_scale, bool causal, double dropout_p,
                                                              int64_t seed, int64_t offset) {
  const char* op = "flash_attn_bwd";
  api::FlashArgs a = flash_shape(op, q, k, v, softmax_scale, causal, dropout_p, seed, offset);
  check_strided(dout, op, "dout", q);
  check_strided(out, op, "out", q);
  check_device(lse, op, "lse", q);
  TORCH_CHECK(dout.sizes() == q.sizes() && out.sizes() == q.sizes(), op, ": dout and out must have q's shape");
  TORCH_CHECK(dout.scalar_type() == q.scalar_type() && out.scalar_type() == q.scalar_type(), op,
              ": dout and out must have q's dtype");
  TORCH_CHECK(lse.scalar_type() == at::kFloat && lse.dim() == 3 && lse.size(0) == q.size(0) &&
                  lse.size(1) == q.size(2) && lse.size(2) == q.size(1),
              op, ": lse must be float32 [batch, heads, seqlen_q]");
  DeviceGuard guard(q.device());
  at::Tensor dq = empty_in_layout_of(q);
  at::Tensor dk = empty_in_layout_of(k);
  at::Tensor dv = empty_in_layout_of(v);
  at::Tensor delta = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));
  a.out = const_cast<void*>(out.data_ptr());
  a.out_strides = strides_of(out);
  a.dout = dout.data_ptr();
  a.dout_strides = strides_of(dout);
  a.lse = const_cast<float*>(lse.data_ptr<float>());
  a.dq = dq.data_ptr();
  a.dk = dk.data_ptr();
  a.dv = dv.data_ptr();
  a.dq_strides = strides_of(dq);
  a.dk_strides = strides_of(dk);
  a.dv_strides = strides_of(dv);
  a.delta = delta.data_ptr<float>();
  launch(op, [&] {
    dispatch_dtype(q, op, [&]<api::DType dt>() { api::flash_attention_bwd<dt>(a, current_stream()); });
  });
  return {dq, dk, dv};
}

}  // namespace
}  // namespace binding
}  // namespace mbk

TORCH_LIBRARY_IMPL(MBK_TORCH_NS, MBK_TORCH_KEY, m) {
  m.impl("flash_attn_fwd", &mbk::binding::flash_attn_fwd);
  m.impl("flash_attn_bwd", &mbk::binding::flash_attn_bwd);
}
