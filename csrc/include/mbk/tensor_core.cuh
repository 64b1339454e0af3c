// mbk/tensor_core.cuh -- warp-level tensor-core instructions (sm_80+), one API for nvcc and the CPU emulator.
//
// On nvcc these are the PTX instructions themselves (inline asm); under the emulator (csrc/emu) each is a warp
// collective that reproduces the fragment layouts the PTX ISA documents ("Warp-level matrix fragments for
// mma.m16n8k16", "ldmatrix", "cp.async"), so a kernel written against this header runs unchanged on both.
//
// Fragments (lane = threadIdx linear % 32, g = lane / 4, t = lane % 4; two 16-bit elements per 32-bit register,
// the lower-indexed element in the low half):
//   A 16x16 row-major:   a[0] = A[g][2t..2t+1]      a[1] = A[g+8][2t..2t+1]
//                        a[2] = A[g][2t+8..2t+9]    a[3] = A[g+8][2t+8..2t+9]
//   B 16x8 "col":        b[0] = B[2t..2t+1][g]      b[1] = B[2t+8..2t+9][g]      (k index first)
//   C, D 16x8 float32:   c[0..1] = C[g][2t..2t+1]   c[2..3] = C[g+8][2t..2t+1]
//
// API (T = __half or __nv_bfloat16):
//   mma_m16n8k16<T>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4])
//       D = A * B + C, fp32 accumulate (mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32).
//       d may alias c.
//   ldmatrix_x1/x2/x4(uint32_t (&r)[N], const void* smem_row)         (ldmatrix.sync.aligned.m8n8.xN.shared.b16)
//   ldmatrix_x1/x2/x4_trans(uint32_t (&r)[N], const void* smem_row)   (... .trans ...)
//       Lanes 8i..8i+7 give the 8 row addresses (16 bytes each, 16-byte aligned, shared memory) of matrix i
//       (x1: lanes 0-7 only matter, x2: 0-15); every lane receives r[i] = matrix i [lane/4][2(lane%4)..+1]
//       (.trans: the transposed element pair, [2(lane%4)][lane/4] and [2(lane%4)+1][lane/4]).
//   cp_async_16(void* smem, const void* gmem, bool valid)   16-byte global->shared copy (cp.async.cg); when
//       !valid the 16 shared bytes are zero-filled and gmem is not read (src-size 0).
//   cp_async_commit()                                        closes the current group of this thread's copies.
//   cp_async_wait<N>()                                       waits until at most N of this thread's committed
//       groups are pending (cp.async.wait_group N). Copies are only guaranteed visible to *this* thread after its
//       wait; other threads need a __syncthreads() after their waits as well. The emulator performs a copy only
//       at the wait that retires it, so a read before the wait sees the old shared bytes (tests rely on this).
//
// Every lane of the warp must call the warp-collective ones (mma, ldmatrix) together (mask 0xffffffff).
#pragma once

#include "mbk/portability.cuh"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace mbk {

template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                             const float (&c)[4]);

template <>
__device__ __forceinline__ void mma_m16n8k16<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                            const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#else
  __trap();
#endif
}

template <>
__device__ __forceinline__ void mma_m16n8k16<__half>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                     const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#else
  __trap();
#endif
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

}  // namespace mbk

#elif !defined(MBK_CUDA_HOST)
// The CPU emulator's warp-collective versions (csrc/emu/cuda_emu_tensor_core.h).
#include "../../emu/cuda_emu_tensor_core.h"
#endif
