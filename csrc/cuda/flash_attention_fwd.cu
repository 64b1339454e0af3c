// Flash attention forward for float, half and bfloat16 (all head dims the kernel supports).
// Split from the backward so the two compile in parallel (the backward takes about twice as long).
#include "cuda/dtypes.cuh"
#include "kernels/flash_attention_launch.h"

namespace mbk {
namespace api {

template <DType dt>
static void flash_fwd_impl(const FlashArgs& a, Stream stream) {
  using T = ctype_t<dt>;
  flash::flash_attention_fwd<T>(static_cast<const T*>(a.q), static_cast<const T*>(a.k),
                                static_cast<const T*>(a.v), static_cast<T*>(a.out_mut), a.lse,
                                a.batch, a.seqlen_q, a.seqlen_k, a.num_heads, a.num_kv_heads,
                                a.head_dim, a.softmax_scale, a.causal, to_stream(stream));
}

MBK_API_DEFINE_DTYPES(flash_attention_fwd, FlashArgs, flash_fwd_impl)

}  // namespace api
}  // namespace mbk
