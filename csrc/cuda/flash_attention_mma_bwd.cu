// Tensor-core FlashAttention-2 backward (csrc/kernels/flash_attention_mma_bwd.cuh): the explicit instantiations of
// mbk::flash::flash_mma_bwd for __half and __nv_bfloat16 (each: delta, dK/dV and dQ kernels for head dims 64, 80,
// 96, 128; causal and dropout are run-time flags). Resources: see the .cuh header.
#include "kernels/flash_attention_mma_bwd.cuh"

template void mbk::flash::flash_mma_bwd<__half>(const mbk::flash::FlashParams&, mbk_stream_t);
template void mbk::flash::flash_mma_bwd<__nv_bfloat16>(const mbk::flash::FlashParams&, mbk_stream_t);
