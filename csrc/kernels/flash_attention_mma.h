// The tensor-core flash-attention launchers as the dispatcher (flash_attention_launch.h) sees them.
//
// Under nvcc the launchers are declared only: their kernels are compiled once, in csrc/cuda/flash_attention_mma_
// {fwd,bwd}.cu (explicit instantiations for __half and __nv_bfloat16), not again in every file that dispatches to
// them. Under the emulator (g++) the definitions are included, so any translation unit can run them.
#pragma once

#include "kernels/flash_params.h"
#include "mbk/portability.cuh"

#if defined(__CUDACC__)
namespace mbk {
namespace flash {
template <typename T>
void flash_mma_fwd(const FlashParams& p, mbk_stream_t stream);
template <typename T>
void flash_mma_bwd(const FlashParams& p, mbk_stream_t stream);
}  // namespace flash
}  // namespace mbk
#else
#include "kernels/flash_attention_mma_bwd.cuh"
#include "kernels/flash_attention_mma_fwd.cuh"
#endif
