// DType tag -> CUDA element type and stream handle, for the csrc/cuda/*.cu instantiations
// (compiled by nvcc, or by g++ against the CPU emulator).
#pragma once

#include "mbk/portability.cuh"
#include "ops_api.h"

namespace mbk {
namespace api {

template <DType dt>
struct CType;
template <>
struct CType<DType::kFloat32> {
  using type = float;
};
template <>
struct CType<DType::kFloat16> {
  using type = __half;
};
template <>
struct CType<DType::kBFloat16> {
  using type = __nv_bfloat16;
};

template <DType dt>
using ctype_t = typename CType<dt>::type;

inline mbk_stream_t to_stream(Stream s) { return static_cast<mbk_stream_t>(s); }

// Defines the three explicit specialisations of an ops_api.h entry point `fn<dt>(const Args&,
// stream)` as calls of impl<dt>(args, stream).
#define MBK_API_DEFINE_DTYPES(fn, Args, impl)                                                      \
  template <>                                                                                      \
  void fn<DType::kFloat32>(const Args& a, Stream s) { impl<DType::kFloat32>(a, s); }        \
  template <>                                                                                      \
  void fn<DType::kFloat16>(const Args& a, Stream s) { impl<DType::kFloat16>(a, s); }        \
  template <>                                                                                      \
  void fn<DType::kBFloat16>(const Args& a, Stream s) { impl<DType::kBFloat16>(a, s); }

}  // namespace api
}  // namespace mbk
