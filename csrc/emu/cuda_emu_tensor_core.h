// cuda_emu_tensor_core.h -- the CPU emulator's versions of the tensor-core instructions of
// mbk/tensor_core.cuh (which documents the API and the fragment layouts; include that, not this).
// Implementation: csrc/emu/cuda_emu_tensor_core.cpp (mma, ldmatrix) and csrc/emu/cuda_emu.cpp
// (the cp.async queues, which live with each emulated thread).
//
// How each instruction is emulated:
//   * mma_m16n8k16<T>: a warp collective of all 32 lanes (mask 0xffffffff; a missing lane is a
//     deadlock error, a partial warp an error). Each lane contributes its a[4] and b[2]; each lane
//     then computes its own d[4] = its rows of A times its columns of B plus its c, from the 16-bit
//     values converted to float (every product of two fp16 or bf16 values is exact in float), summed
//     in float in k order starting from c. Tensor cores add the products in a different order and
//     width, so results agree with the GPU to rounding (exactly when the sums are exact in float).
//   * ldmatrix_x{1,2,4}[_trans]: a warp collective of all 32 lanes; each lane contributes its row
//     address. The last lane to arrive reads all the rows (8 per matrix, from lanes 8i..8i+7) at that
//     instant and hands every lane its registers; addresses must be 16-byte aligned (an error names
//     the lane). The addresses of lanes beyond the matrices used (x1: 8-31, x2: 16-31) are ignored.
//   * cp_async_16 / cp_async_commit / cp_async_wait<N>: a queue per emulated thread. A copy is
//     performed -- gmem read and shared memory written, or 16 zero bytes when !valid -- only when a
//     cp_async_wait retires its group (wait<N> performs every committed group but the newest N;
//     copies issued after the last commit are not committed and stay pending). So a read before the
//     wait sees the old bytes, and another thread sees the new ones only after the issuing thread's
//     wait and a __syncthreads. A thread that returns with copies never waited for is an error (on a
//     GPU they land at some unknown time: end a pipeline with cp_async_commit(); cp_async_wait<0>()).
//     Both addresses must be 16-byte aligned (gmem only when valid).
#pragma once

#include <stdint.h>

#include "cuda_emu.h"

namespace mbk_emu {
namespace detail {
void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]);
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]);
// ldmatrix of `n` (1, 2, 4) 8x8 b16 matrices, transposed if `trans`; writes r[0..n).
void ldmatrix(uint32_t* r, int n, bool trans, const void* row);
}  // namespace detail
}  // namespace mbk_emu

namespace mbk {

template <typename T>
inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]);
template <>
inline void mma_m16n8k16<__half>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  mbk_emu::detail::mma_m16n8k16_f16(d, a, b, c);
}
template <>
inline void mma_m16n8k16<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                        const float (&c)[4]) {
  mbk_emu::detail::mma_m16n8k16_bf16(d, a, b, c);
}

inline void ldmatrix_x1(uint32_t (&r)[1], const void* p) { mbk_emu::detail::ldmatrix(r, 1, false, p); }
inline void ldmatrix_x2(uint32_t (&r)[2], const void* p) { mbk_emu::detail::ldmatrix(r, 2, false, p); }
inline void ldmatrix_x4(uint32_t (&r)[4], const void* p) { mbk_emu::detail::ldmatrix(r, 4, false, p); }
inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void* p) { mbk_emu::detail::ldmatrix(r, 1, true, p); }
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* p) { mbk_emu::detail::ldmatrix(r, 2, true, p); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) { mbk_emu::detail::ldmatrix(r, 4, true, p); }

inline void cp_async_16(void* smem, const void* gmem, bool valid) { mbk_emu::detail::cp_async_16(smem, gmem, valid); }
inline void cp_async_commit() { mbk_emu::detail::cp_async_commit(); }
template <int N>
inline void cp_async_wait() {
  static_assert(N >= 0, "cp_async_wait<N>: N is the number of groups left pending, >= 0");
  mbk_emu::detail::cp_async_wait(N);
}

}  // namespace mbk
