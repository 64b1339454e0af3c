// Flash attention backward (delta, dK/dV and dQ kernels) for float, half and bfloat16.
#include "cuda/dtypes.cuh"
#include "kernels/flash_attention_launch.h"

namespace mbk {
namespace api {

template <DType dt>
static void flash_bwd_impl(const FlashArgs& a, Stream stream) {
  flash::flash_attention_bwd<ctype_t<dt>>(a, to_stream(stream));
}

MBK_API_DEFINE_DTYPES(flash_attention_bwd, FlashArgs, flash_bwd_impl)

}  // namespace api
}  // namespace mbk
