// Flash attention backward (delta, dK/dV and dQ kernels) for float, half and bfloat16.
#include "cuda/dtypes.cuh"
#include "kernels/flash_attention_launch.h"

namespace mbk {
namespace api {

template <DType dt>
static void flash_bwd_impl(const FlashArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  flash::flash_attention_bwd<T>(static_cast<const T*>(a.q), static_cast<const T*>(a.k),
                                static_cast<const T*>(a.v), static_cast<const T*>(a.out),
                                static_cast<const T*>(a.dout), a.lse, static_cast<T*>(a.dq),
                                static_cast<T*>(a.dk), static_cast<T*>(a.dv), a.delta, a.batch,
                                a.seqlen_q, a.seqlen_k, a.num_heads, a.num_kv_heads, a.head_dim,
                                a.softmax_scale, a.causal, to_stream(stream));
}

MBK_API_DEFINE_DTYPES(flash_attention_bwd, FlashArgs, flash_bwd_impl)

}  // namespace api
}  // namespace mbk
