// mbk/row_config.h -- host-side choice of thread layout for the row-wise kernels (norms, softmax).
//
// A row of `cols` elements is split into chunks of `vec` elements (vec > 1 only when the caller
// has checked alignment and divisibility); each thread keeps `iters` chunks in registers. Short rows
// get one warp each (4 rows per block); long rows a whole block. `iters` is a power of two up to 16,
// so rows up to 16 * 1024 * vec elements fit; iters * vec <= 16 for rows up to 16384 elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace mbk {

struct RowConfig {
  int vec = 1;             // elements per chunk (one vector load)
  int iters = 1;           // chunks per thread, power of two in [1, 16]
  int threads = 32;        // threads per row (blockDim.x), a multiple of 32
  int rows_per_block = 1;  // blockDim.y
};

constexpr int kMaxRowIters = 16;
// Largest vec * iters pick_row_config returns for rows of up to 16384 elements.
constexpr int kMaxRowValues = 16;

inline bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// vec: the vector width to use (1 when unaligned or cols % width != 0; the caller decides).
inline RowConfig pick_row_config(int cols, int vec) {
  RowConfig cfg;
  cfg.vec = vec;
  const int chunks = cols / vec;
  // aim for about 8 elements per thread (at most 16 with the longest rows), to stay in registers
  const int target_chunks = vec >= 8 ? 1 : 8 / vec;
  int threads = ((chunks + target_chunks - 1) / target_chunks + 31) / 32 * 32;
  threads = threads < 32 ? 32 : (threads > 1024 ? 1024 : threads);
  int iters = 1;
  while (iters * threads < chunks) iters *= 2;
  if (iters > kMaxRowIters) throw std::invalid_argument("pick_row_config: row of " + std::to_string(cols) + " elements is too long");
  cfg.iters = iters;
  threads = ((chunks + iters - 1) / iters + 31) / 32 * 32;  // fewest threads for that many iterations
  cfg.threads = threads < 32 ? 32 : threads;
  cfg.rows_per_block = cfg.threads == 32 ? 4 : 1;
  return cfg;
}

// Calls f(std::integral_constant<int, iters>()) for iters in {1, 2, 4, 8, 16}. Kernels instantiate
// only the (vec, iters) pairs pick_row_config can return for their row lengths (see kMaxRowValues).
template <typename F>
void dispatch_row_iters(int iters, F&& f) {
  switch (iters) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    case 8: f(std::integral_constant<int, 8>()); break;
    case 16: f(std::integral_constant<int, 16>()); break;
    default: throw std::invalid_argument("dispatch_row_iters: iters must be a power of two up to 16");
  }
}

}  // namespace mbk
