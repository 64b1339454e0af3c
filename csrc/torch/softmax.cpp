// torch binding of the fused attention softmax kernels (csrc/kernels/softmax_launch.h).
// x [batch, heads, seqlen_q, seqlen_k]; mask bool [batch or 1, 1, seqlen_q, seqlen_k], True = masked.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>

#include "common.h"

namespace mbk {
namespace binding {
namespace {

api::SoftmaxArgs softmax_shape(const char* op, const at::Tensor& x) {
  check_device(x, op, "x", x);
  TORCH_CHECK(x.dim() == 4, op, ": x must be [batch, heads, seqlen_q, seqlen_k], got ", x.sizes());
  api::SoftmaxArgs a;
  a.batch = checked_int(x.size(0), op, "batch");
  a.heads = checked_int(x.size(1), op, "heads");
  a.sq = checked_int(x.size(2), op, "seqlen_q");
  a.sk = checked_int(x.size(3), op, "seqlen_k");
  checked_int(x.size(0) * x.size(1), op, "batch * heads");
  return a;
}

at::Tensor scaled_masked_softmax_fwd(const at::Tensor& x, const std::optional<at::Tensor>& mask, double scale) {
  const char* op = "scaled_masked_softmax_fwd";
  api::SoftmaxArgs a = softmax_shape(op, x);
  if (mask.has_value()) {
    check_device(*mask, op, "mask", x);
    TORCH_CHECK(mask->scalar_type() == at::kBool, op, ": mask must be bool (True = masked out), got ",
                mask->scalar_type());
    TORCH_CHECK(mask->dim() == 4 && (mask->size(0) == 1 || mask->size(0) == x.size(0)) && mask->size(1) == 1 &&
                    mask->size(2) == x.size(2) && mask->size(3) == x.size(3),
                op, ": mask shape ", mask->sizes(), " must be [1 or ", x.size(0), ", 1, ", x.size(2), ", ", x.size(3),
                "]");
    a.mask = reinterpret_cast<const unsigned char*>(mask->data_ptr<bool>());
    a.mask_batch = static_cast<int>(mask->size(0));
  }
  DeviceGuard guard(x.device());
  at::Tensor y = at::empty(x.sizes(), x.options());
  a.x = x.data_ptr();
  a.y = y.data_ptr();
  a.scale = static_cast<float>(scale);
  launch(op, [&] {
    dispatch_dtype(x, op, [&]<api::DType dt>() { api::scaled_masked_softmax_fwd<dt>(a, current_stream()); });
  });
  return y;
}

at::Tensor scaled_causal_softmax_fwd(const at::Tensor& x, double scale) {
  const char* op = "scaled_causal_softmax_fwd";
  api::SoftmaxArgs a = softmax_shape(op, x);
  TORCH_CHECK(a.sq == a.sk, op, ": causal softmax needs seqlen_q == seqlen_k, got ", a.sq, " and ", a.sk);
  DeviceGuard guard(x.device());
  at::Tensor y = at::empty(x.sizes(), x.options());
  a.x = x.data_ptr();
  a.y = y.data_ptr();
  a.scale = static_cast<float>(scale);
  launch(op, [&] {
    dispatch_dtype(x, op, [&]<api::DType dt>() { api::scaled_causal_softmax_fwd<dt>(a, current_stream()); });
  });
  return y;
}

at::Tensor scaled_softmax_bwd(const at::Tensor& dy, const at::Tensor& y, double scale) {
  const char* op = "scaled_softmax_bwd";
  api::SoftmaxArgs a = softmax_shape(op, y);
  check_device(dy, op, "dy", y);
  TORCH_CHECK(dy.sizes() == y.sizes() && dy.scalar_type() == y.scalar_type(), op, ": dy must match y");
  DeviceGuard guard(y.device());
  at::Tensor dx = at::empty(y.sizes(), y.options());
  a.dy = dy.data_ptr();
  a.y_in = y.data_ptr();
  a.dx = dx.data_ptr();
  a.scale = static_cast<float>(scale);
  launch(op, [&] { dispatch_dtype(y, op, [&]<api::DType dt>() { api::scaled_softmax_bwd<dt>(a, current_stream()); }); });
  return dx;
}

}  // namespace
}  // namespace binding
}  // namespace mbk

TORCH_LIBRARY_IMPL(MBK_TORCH_NS, MBK_TORCH_KEY, m) {
  m.impl("scaled_masked_softmax_fwd", &mbk::binding::scaled_masked_softmax_fwd);
  m.impl("scaled_causal_softmax_fwd", &mbk::binding::scaled_causal_softmax_fwd);
  m.impl("scaled_softmax_bwd", &mbk::binding::scaled_softmax_bwd);
}
