// Emulated tensor-core instructions for mbk/tensor_core.cuh (the API and fragment layouts are documented there).
// Placeholder until the emulator implements them: every call throws, so a kernel that uses them fails loudly.
#pragma once

#include <stdint.h>

#include <stdexcept>

namespace mbk {

template <typename T>
inline void mma_m16n8k16(float (&)[4], const uint32_t (&)[4], const uint32_t (&)[2], const float (&)[4]) {
  throw std::runtime_error("emulator: mma_m16n8k16 not implemented yet");
}
#define MBK_EMU_TC_TODO(name, n)                                                              \
  inline void name(uint32_t (&)[n], const void*) {                                            \
    throw std::runtime_error("emulator: " #name " not implemented yet");                      \
  }
MBK_EMU_TC_TODO(ldmatrix_x1, 1)
MBK_EMU_TC_TODO(ldmatrix_x2, 2)
MBK_EMU_TC_TODO(ldmatrix_x4, 4)
MBK_EMU_TC_TODO(ldmatrix_x1_trans, 1)
MBK_EMU_TC_TODO(ldmatrix_x2_trans, 2)
MBK_EMU_TC_TODO(ldmatrix_x4_trans, 4)
#undef MBK_EMU_TC_TODO
inline void cp_async_16(void*, const void*, bool) { throw std::runtime_error("emulator: cp_async_16 not implemented yet"); }
inline void cp_async_commit() {}
template <int N>
inline void cp_async_wait() {}

}  // namespace mbk
