// FlashAttention-2 forward on tensor cores (csrc/kernels/flash_attention_mma_fwd.cuh) for half and bfloat16: the
// explicit instantiations only (the API routes to them through flash_fwd_dispatch, csrc/cuda/ops_api.h).
#include "kernels/flash_attention_mma_fwd.cuh"

template void mbk::flash::flash_mma_fwd<__half>(const mbk::flash::FlashParams&, mbk_stream_t);
template void mbk::flash::flash_mma_fwd<__nv_bfloat16>(const mbk::flash::FlashParams&, mbk_stream_t);
