// Flash attention forward for float, half and bfloat16 (all head dims the kernel supports).
// Split from the backward so the two compile in parallel (the backward takes about twice as long).
#include "cuda/dtypes.cuh"
#include "kernels/flash_attention_launch.h"

namespace mbk {
namespace api {

template <DType dt>
static void flash_fwd_impl(const FlashArgs& a, Stream stream) {
  flash::flash_attention_fwd<ctype_t<dt>>(a, to_stream(stream));
}

MBK_API_DEFINE_DTYPES(flash_attention_fwd, FlashArgs, flash_fwd_impl)

}  // namespace api
}  // namespace mbk
