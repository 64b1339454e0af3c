// torch binding of the LayerNorm / RMSNorm kernels (csrc/kernels/layer_norm_launch.h).
// x [..., hidden] is normalised over its last dimension; statistics are float32 x.shape[:-1].
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "common.h"

namespace mbk {
namespace binding {
namespace {

api::NormArgs norm_shape(const char* op, const at::Tensor& x, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias) {
  check_device(x, op, "x", x);
  check_device(weight, op, "weight", x);
  TORCH_CHECK(x.dim() >= 1, op, ": x must have a hidden dimension");
  const int64_t hidden = x.size(-1);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == hidden, op, ": weight shape ", weight.sizes(), " must be (",
              hidden, ",)");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), op, ": weight dtype ", weight.scalar_type(),
              " must equal x dtype ", x.scalar_type());
  if (bias.has_value()) {
    check_device(*bias, op, "bias", x);
    TORCH_CHECK(bias->sizes() == weight.sizes() && bias->scalar_type() == x.scalar_type(), op, ": bias must be (",
                hidden, ",) of dtype ", x.scalar_type());
  }
  api::NormArgs a;
  a.cols = checked_int(hidden, op, "hidden");
  a.rows = checked_int(hidden == 0 ? 0 : x.numel() / hidden, op, "rows");
  a.x = x.data_ptr();
  a.gamma = weight.data_ptr();
  a.beta = bias.has_value() ? bias->data_ptr() : nullptr;
  return a;
}

at::IntArrayRef stats_shape(const at::Tensor& x) { return x.sizes().slice(0, x.dim() - 1); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_fwd(const at::Tensor& x, const at::Tensor& weight,
                                                              const std::optional<at::Tensor>& bias, double eps) {
  const char* op = "layer_norm_fwd";
  api::NormArgs a = norm_shape(op, x, weight, bias);
  DeviceGuard guard(x.device());
  at::Tensor y = at::empty(x.sizes(), x.options());
  at::Tensor mean = at::empty(stats_shape(x), x.options().dtype(at::kFloat));
  at::Tensor rstd = at::empty(stats_shape(x), x.options().dtype(at::kFloat));
  a.y = y.data_ptr();
  a.mean = mean.data_ptr<float>();
  a.rstd = rstd.data_ptr<float>();
  a.eps = static_cast<float>(eps);
  launch(op, [&] { dispatch_dtype(x, op, [&]<api::DType dt>() { api::layer_norm_fwd<dt>(a, current_stream()); }); });
  return {y, mean, rstd};
}

void check_stats(const char* op, const at::Tensor& x, const at::Tensor& s, const char* name) {
  check_device(s, op, name, x);
  TORCH_CHECK(s.scalar_type() == at::kFloat && s.sizes() == stats_shape(x), op, ": ", name,
              " must be float32 of shape x.shape[:-1]");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_bwd(const at::Tensor& dy, const at::Tensor& x,
                                                              const at::Tensor& weight, const at::Tensor& mean,
                                                              const at::Tensor& rstd) {
  const char* op = "layer_norm_bwd";
  api::NormArgs a = norm_shape(op, x, weight, std::nullopt);
  check_device(dy, op, "dy", x);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type(), op, ": dy must match x");
  check_stats(op, x, mean, "mean");
  check_stats(op, x, rstd, "rstd");
  DeviceGuard guard(x.device());
  at::Tensor dx = at::empty(x.sizes(), x.options());
  at::Tensor dweight = at::empty(weight.sizes(), weight.options());
  at::Tensor dbias = at::empty(weight.sizes(), weight.options());
  at::Tensor workspace = at::empty({static_cast<int64_t>(api::norm_bwd_workspace_floats(a.rows, a.cols))},
                                   x.options().dtype(at::kFloat));
  a.dy = dy.data_ptr();
  a.mean = const_cast<float*>(mean.data_ptr<float>());
  a.rstd = const_cast<float*>(rstd.data_ptr<float>());
  a.dx = dx.data_ptr();
  a.dgamma = dweight.data_ptr();
  a.dbeta = dbias.data_ptr();
  a.workspace = workspace.data_ptr<float>();
  if (a.rows == 0) {  // nothing normalised: the parameter gradients are zero
    dweight.zero_();
    dbias.zero_();
    return {dx, dweight, dbias};
  }
  launch(op, [&] { dispatch_dtype(x, op, [&]<api::DType dt>() { api::layer_norm_bwd<dt>(a, current_stream()); }); });
  return {dx, dweight, dbias};
}

std::tuple<at::Tensor, at::Tensor> rms_norm_fwd(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const char* op = "rms_norm_fwd";
  api::NormArgs a = norm_shape(op, x, weight, std::nullopt);
  DeviceGuard guard(x.device());
  at::Tensor y = at::empty(x.sizes(), x.options());
  at::Tensor rstd = at::empty(stats_shape(x), x.options().dtype(at::kFloat));
  a.y = y.data_ptr();
  a.rstd = rstd.data_ptr<float>();
  a.eps = static_cast<float>(eps);
  launch(op, [&] { dispatch_dtype(x, op, [&]<api::DType dt>() { api::rms_norm_fwd<dt>(a, current_stream()); }); });
  return {y, rstd};
}

std::tuple<at::Tensor, at::Tensor> rms_norm_bwd(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& weight,
                                                const at::Tensor& rstd) {
  const char* op = "rms_norm_bwd";
  api::NormArgs a = norm_shape(op, x, weight, std::nullopt);
  check_device(dy, op, "dy", x);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type(), op, ": dy must match x");
  check_stats(op, x, rstd, "rstd");
  DeviceGuard guard(x.device());
  at::Tensor dx = at::empty(x.sizes(), x.options());
  at::Tensor dweight = at::empty(weight.sizes(), weight.options());
  at::Tensor workspace = at::empty({static_cast<int64_t>(api::norm_bwd_workspace_floats(a.rows, a.cols))},
                                   x.options().dtype(at::kFloat));
  a.dy = dy.data_ptr();
  a.rstd = const_cast<float*>(rstd.data_ptr<float>());
  a.dx = dx.data_ptr();
  a.dgamma = dweight.data_ptr();
  a.workspace = workspace.data_ptr<float>();
  if (a.rows == 0) {
    dweight.zero_();
    return {dx, dweight};
  }
  launch(op, [&] { dispatch_dtype(x, op, [&]<api::DType dt>() { api::rms_norm_bwd<dt>(a, current_stream()); }); });
  return {dx, dweight};
}

}  // namespace
}  // namespace binding
}  // namespace mbk

TORCH_LIBRARY_IMPL(MBK_TORCH_NS, MBK_TORCH_KEY, m) {
  m.impl("layer_norm_fwd", &mbk::binding::layer_norm_fwd);
  m.impl("layer_norm_bwd", &mbk::binding::layer_norm_bwd);
  m.impl("rms_norm_fwd", &mbk::binding::rms_norm_fwd);
  m.impl("rms_norm_bwd", &mbk::binding::rms_norm_bwd);
}
