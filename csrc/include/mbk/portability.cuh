// mbk/portability.cuh -- the one header kernel code includes for CUDA features.
//
// Kernel headers (csrc/kernels/*.cuh) are written once and compiled two ways:
//   * by nvcc (__CUDACC__ defined): this header includes cuda_runtime.h, cuda_fp16.h, cuda_bf16.h
//     and maps the MBK_* macros below onto CUDA;
//   * by g++ (no __CUDACC__): this header includes csrc/emu/cuda_emu.h, our CPU emulator of CUDA's
//     execution model, which provides the same names with the same meaning.
// A third mode, MBK_CUDA_HOST (define it before including, in a g++-compiled .cpp that is linked
// with nvcc-compiled objects, e.g. a torch binding), gives the CUDA types only (dim3, __half,
// __nv_bfloat16, mbk_stream_t = cudaStream_t) so that launcher *declarations* can be used; kernels
// cannot be compiled in that mode (the *_launch.h headers then only declare their templates).
//
// API, identical in both worlds (anything else CUDA has is not guaranteed to exist here):
//   Types         dim3, uint3, warpSize (32), float2/float4/int2/int4/uint2/uint4 (+ make_*),
//                 __half, __nv_bfloat16, mbk_stream_t (cudaStream_t; emulator: opaque pointer,
//                 pass nullptr), mbk::AlignedVec<T, N> (N elements of T, aligned to their size,
//                 for vectorised loads)
//   Indices       threadIdx, blockIdx, blockDim, gridDim (.x/.y/.z)
//   Qualifiers    __global__ __device__ __host__ __forceinline__ __restrict__ __align__(n)
//                 __launch_bounds__(...), MBK_PRAGMA_UNROLL (a `#pragma unroll` on nvcc),
//                 MBK_PRAGMA_NO_UNROLL (`#pragma unroll 1`: keep the loop a loop)
//   Sync          __syncthreads(), __syncwarp(mask)
//   Warp          __shfl_sync(mask, v, srcLane, width=32), __shfl_xor_sync(mask, v, laneMask, width),
//                 __shfl_up_sync(mask, v, delta, width), __shfl_down_sync(mask, v, delta, width)
//                 (v: any trivially copyable type of at most 8 bytes), __ballot_sync, __any_sync,
//                 __all_sync, __activemask()
//   Atomics       atomicAdd (float, double, int, unsigned, unsigned long long), atomicMax/atomicMin
//                 (int, unsigned), atomicExch (int, unsigned, float), atomicCAS (int, unsigned,
//                 unsigned long long)
//   Conversions   __float2half, __float2half_rn, __half2float, __float2bfloat16,
//                 __float2bfloat16_rn, __bfloat162float (round-to-nearest-even; NaN stays NaN,
//                 inf stays inf, denormals exact), __half_as_ushort, __ushort_as_half,
//                 __bfloat16_as_ushort, __ushort_as_bfloat16, __float_as_int, __int_as_float,
//                 __float_as_uint, __uint_as_float; and mbk::to_float(x) / mbk::from_float<T>(f)
//                 for T in {float, __half, __nv_bfloat16} (use these in templated kernels)
//   Math          expf logf exp2f log2f sqrtf rsqrtf fabsf fmaxf fminf fmaf tanhf erff powf,
//                 __expf __logf __log2f __powf __fdividef __frcp_rn __fsqrt_rn __saturatef,
//                 min/max (int, unsigned, float, double, long long), isnan/isinf, INFINITY, NAN
//   Bits          __popc, __clz, __ffs
//   Fences        __threadfence(), __threadfence_block()
//   Shared mem    MBK_SHARED float buf[64];          static shared memory (all threads of a block)
//                 MBK_DYNAMIC_SHARED(float, buf);    declares `float* buf` = the block's dynamic
//                                                    shared memory (16-byte aligned)
//                 MBK_SET_MAX_DYNAMIC_SMEM(kernel, bytes)  required before launching with more than
//                                                    48 KiB of dynamic shared memory (both worlds)
//   Launch        MBK_LAUNCH(kernel, grid, block, smem_bytes, stream, args...)
//                 CUDA: kernel<<<grid, block, smem_bytes, stream>>>(args...). A template kernel
//                 whose argument list has a comma must be parenthesised, e.g.
//                 MBK_LAUNCH((k<float, 4>), ...), or taken into a local first:
//                 auto* kern = &k<float, 4>; MBK_LAUNCH(kern, ...).
//                 MBK_CHECK_LAUNCH("what")  after a launch: throws std::runtime_error if the launch
//                 failed (CUDA: cudaGetLastError; the emulator throws from MBK_LAUNCH itself).
//
// Emulator-only knobs (in namespace mbk_emu, see csrc/emu/cuda_emu.h): set_schedule(...) picks the
// order in which threads run between synchronisation points (in_order, reverse, random(seed)),
// which is how tests expose missing barriers; the emulator also reports deadlocks (a barrier some
// thread never reaches), shuffles reading non-participating lanes, oversize blocks and
// oversize dynamic shared memory as std::runtime_error.
#pragma once

#if defined(__CUDACC__) || defined(MBK_CUDA_HOST)
#define MBK_CUDA 1
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdexcept>
#include <string>

using mbk_stream_t = cudaStream_t;

#define MBK_SHARED __shared__
#define MBK_DYNAMIC_SHARED(T, name)                                   \
  extern __shared__ __align__(16) unsigned char mbk_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(mbk_dynamic_smem_)
#define MBK_LAUNCH(kernel, grid, block, smem_bytes, stream, ...) \
  kernel<<<(grid), (block), (smem_bytes), (stream)>>>(__VA_ARGS__)
#define MBK_SET_MAX_DYNAMIC_SMEM(kernel, bytes) \
  cudaFuncSetAttribute((kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes))
#define MBK_CHECK_LAUNCH(what)                                                              \
  do {                                                                                      \
    cudaError_t mbk_err_ = cudaGetLastError();                                              \
    if (mbk_err_ != cudaSuccess)                                                            \
      throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(mbk_err_));    \
  } while (0)
#if defined(__CUDACC__)
#define MBK_PRAGMA_UNROLL _Pragma("unroll")
#define MBK_PRAGMA_NO_UNROLL _Pragma("unroll 1")
#else
#define MBK_PRAGMA_UNROLL
#define MBK_PRAGMA_NO_UNROLL
#endif

#else  // the CPU emulator
#include "../../emu/cuda_emu.h"
#define MBK_PRAGMA_UNROLL
#define MBK_PRAGMA_NO_UNROLL
#endif

namespace mbk {

// N elements of T in one aligned chunk, so that a load/store of the whole is one vector access on
// the GPU (e.g. AlignedVec<__half, 8> is a 16-byte load).
template <typename T, int N>
struct alignas(sizeof(T) * N) AlignedVec {
  T v[N];
};

__host__ __device__ __forceinline__ float to_float(float x) { return x; }
__host__ __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__host__ __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__host__ __device__ __forceinline__ T from_float(float x);
template <>
__host__ __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__host__ __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }
template <>
__host__ __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}

}  // namespace mbk
