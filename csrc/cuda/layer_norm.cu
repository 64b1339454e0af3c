// LayerNorm and RMSNorm, forward and backward, for float, half and bfloat16.
#include "cuda/dtypes.cuh"
#include "kernels/layer_norm_launch.h"

namespace mbk {
namespace api {

size_t norm_bwd_workspace_floats(int rows, int cols) { return layer_norm_bwd_workspace_floats(rows, cols); }

template <DType dt>
static void layer_norm_fwd_impl(const NormArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  launch_layer_norm_fwd<T>(static_cast<const T*>(a.x), static_cast<const T*>(a.gamma), static_cast<const T*>(a.beta),
                           static_cast<T*>(a.y), a.mean, a.rstd, a.rows, a.cols, a.eps, to_stream(stream));
}

template <DType dt>
static void layer_norm_bwd_impl(const NormArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  launch_layer_norm_bwd<T>(static_cast<const T*>(a.dy), static_cast<const T*>(a.x), static_cast<const T*>(a.gamma),
                           a.mean, a.rstd, static_cast<T*>(a.dx), static_cast<T*>(a.dgamma),
                           static_cast<T*>(a.dbeta), a.workspace, a.rows, a.cols, to_stream(stream));
}

template <DType dt>
static void rms_norm_fwd_impl(const NormArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  launch_rms_norm_fwd<T>(static_cast<const T*>(a.x), static_cast<const T*>(a.gamma), static_cast<T*>(a.y), a.rstd,
                         a.rows, a.cols, a.eps, to_stream(stream));
}

template <DType dt>
static void rms_norm_bwd_impl(const NormArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  launch_rms_norm_bwd<T>(static_cast<const T*>(a.dy), static_cast<const T*>(a.x), static_cast<const T*>(a.gamma),
                         a.rstd, static_cast<T*>(a.dx), static_cast<T*>(a.dgamma), a.workspace, a.rows, a.cols,
                         to_stream(stream));
}

MBK_API_DEFINE_DTYPES(layer_norm_fwd, NormArgs, layer_norm_fwd_impl)
MBK_API_DEFINE_DTYPES(layer_norm_bwd, NormArgs, layer_norm_bwd_impl)
MBK_API_DEFINE_DTYPES(rms_norm_fwd, NormArgs, rms_norm_fwd_impl)
MBK_API_DEFINE_DTYPES(rms_norm_bwd, NormArgs, rms_norm_bwd_impl)

}  // namespace api
}  // namespace mbk
