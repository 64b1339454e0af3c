// Fused scaled (masked / causal) softmax forward and its backward, for float, half and bfloat16.
#include <cstdint>

#include "cuda/dtypes.cuh"
#include "kernels/softmax_launch.h"

namespace mbk {
namespace api {

template <DType dt>
static void masked_fwd_impl(const SoftmaxArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  launch_scaled_masked_softmax_fwd<T>(static_cast<const T*>(a.x), reinterpret_cast<const uint8_t*>(a.mask),
                                      static_cast<T*>(a.y), a.batch, a.heads, a.sq, a.sk, a.mask_batch, a.scale,
                                      to_stream(stream));
}

template <DType dt>
static void causal_fwd_impl(const SoftmaxArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  launch_scaled_upper_triang_softmax_fwd<T>(static_cast<const T*>(a.x), static_cast<T*>(a.y), a.batch * a.heads, a.sq,
                                            a.scale, to_stream(stream));
}

template <DType dt>
static void bwd_impl(const SoftmaxArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  const long long rows = static_cast<long long>(a.batch) * a.heads * a.sq;
  launch_scaled_softmax_bwd<T>(static_cast<const T*>(a.dy), static_cast<const T*>(a.y_in), static_cast<T*>(a.dx),
                               rows, a.sk, a.scale, to_stream(stream));
}

MBK_API_DEFINE_DTYPES(scaled_masked_softmax_fwd, SoftmaxArgs, masked_fwd_impl)
MBK_API_DEFINE_DTYPES(scaled_causal_softmax_fwd, SoftmaxArgs, causal_fwd_impl)
MBK_API_DEFINE_DTYPES(scaled_softmax_bwd, SoftmaxArgs, bwd_impl)

}  // namespace api
}  // namespace mbk
