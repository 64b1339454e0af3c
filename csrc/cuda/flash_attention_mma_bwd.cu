// Tensor-core FlashAttention-2 backward (csrc/kernels/flash_attention_mma_bwd.cuh): the explicit instantiations of
// mbk::flash::flash_mma_bwd for __half and __nv_bfloat16 (each: delta, dK/dV and dQ kernels for head dims 64, 80,
// 96, 128; causal and dropout are run-time flags).
//
// Resources, nvcc 13.0 -O3 -Xptxas -v (registers sm_80 / sm_90, same for both dtypes; 0 bytes stack, 0 spill bytes
// in all 48 kernels; shared memory is dynamic, set by the launcher):
//   kernel   D=64            D=80            D=96            D=128
//   dkdv     223/212, 55 KB  179/182, 44.5KB 194/195, 52.5KB 227/227, 68.5KB
//   dq       199/200, 54 KB  157/154, 44 KB  165/163, 52 KB  181/179, 68 KB
//   delta    18-20, none
// At 128 threads per block that is 2 blocks (8 warps) per SM by registers.
#include "kernels/flash_attention_mma_bwd.cuh"

template void mbk::flash::flash_mma_bwd<__half>(const mbk::flash::FlashParams&, mbk_stream_t);
template void mbk::flash::flash_mma_bwd<__nv_bfloat16>(const mbk::flash::FlashParams&, mbk_stream_t);
