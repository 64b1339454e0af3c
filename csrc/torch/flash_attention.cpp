// torch binding of the flash attention kernels (csrc/kernels/flash_attention_launch.h).
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"

namespace mbk {
namespace binding {
namespace {

api::FlashArgs flash_shape(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_device(q, op, "q", q);
  check_device(k, op, "k", q);
  check_device(v, op, "v", q);
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": q, k, v must be [batch, seqlen, heads, head_dim]");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), op, ": q, k, v must share a dtype");
  TORCH_CHECK(k.sizes() == v.sizes(), op, ": k ", k.sizes(), " and v ", v.sizes(), " differ");
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(3) == q.size(3), op, ": k/v ", k.sizes(), " do not match q ", q.sizes());
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
  return a;
}

std::tuple<at::Tensor, at::Tensor> flash_attn_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  double softmax_scale, bool causal) {
  const char* op = "flash_attn_fwd";
  api::FlashArgs a = flash_shape(op, q, k, v);
  DeviceGuard guard(q.device());
  at::Tensor out = at::empty(q.sizes(), q.options());
  at::Tensor lse = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));
  a.out_mut = out.data_ptr();
  a.lse = lse.data_ptr<float>();
  a.softmax_scale = static_cast<float>(softmax_scale);
  a.causal = causal;
  launch(op, [&] {
    dispatch_dtype(q, op, [&]<api::DType dt>() { api::flash_attention_fwd<dt>(a, current_stream()); });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> flash_attn_bwd(const at::Tensor& dout, const at::Tensor& q,
                                                              const at::Tensor& k, const at::Tensor& v,
                                                              const at::Tensor& out, const at::Tensor& lse,
                                                              double softmax_scale, bool causal) {
  const char* op = "flash_attn_bwd";
  api::FlashArgs a = flash_shape(op, q, k, v);
  check_device(dout, op, "dout", q);
  check_device(out, op, "out", q);
  check_device(lse, op, "lse", q);
  TORCH_CHECK(dout.sizes() == q.sizes() && out.sizes() == q.sizes(), op, ": dout and out must have q's shape");
  TORCH_CHECK(dout.scalar_type() == q.scalar_type() && out.scalar_type() == q.scalar_type(), op,
              ": dout and out must have q's dtype");
  TORCH_CHECK(lse.scalar_type() == at::kFloat && lse.dim() == 3 && lse.size(0) == q.size(0) &&
                  lse.size(1) == q.size(2) && lse.size(2) == q.size(1),
              op, ": lse must be float32 [batch, heads, seqlen_q]");
  DeviceGuard guard(q.device());
  at::Tensor dq = at::empty(q.sizes(), q.options());
  at::Tensor dk = at::empty(k.sizes(), k.options());
  at::Tensor dv = at::empty(v.sizes(), v.options());
  at::Tensor delta = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));
  a.out = out.data_ptr();
  a.dout = dout.data_ptr();
  a.lse = const_cast<float*>(lse.data_ptr<float>());
  a.dq = dq.data_ptr();
  a.dk = dk.data_ptr();
  a.dv = dv.data_ptr();
  a.delta = delta.data_ptr<float>();
  a.softmax_scale = static_cast<float>(softmax_scale);
  a.causal = causal;
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
