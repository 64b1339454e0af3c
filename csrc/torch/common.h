// Shared helpers of the torch bindings (argument checks, dtype tags, current stream).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <exception>
#include <string>

#include "cuda/ops_api.h"

namespace mbk {
namespace binding {

inline api::DType dtype_tag(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return api::DType::kFloat32;
    case at::kHalf:
      return api::DType::kFloat16;
    case at::kBFloat16:
      return api::DType::kBFloat16;
    default:
      TORCH_CHECK(false, op, ": dtype ", t.scalar_type(), " is not supported (float32, float16, bfloat16)");
  }
}

// Calls fn.template operator()<dt>() for the DType of `t`: one instantiation per dtype.
template <typename Fn>
void dispatch_dtype(const at::Tensor& t, const char* op, Fn&& fn) {
  switch (dtype_tag(t, op)) {
    case api::DType::kFloat32:
      return fn.template operator()<api::DType::kFloat32>();
    case api::DType::kFloat16:
      return fn.template operator()<api::DType::kFloat16>();
    case api::DType::kBFloat16:
      return fn.template operator()<api::DType::kBFloat16>();
  }
}

inline void check_cuda(const at::Tensor& t, const char* op, const char* name, const at::Tensor& like) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but expected ", like.device());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

inline int checked_int(int64_t v, const char* op, const char* what) {
  TORCH_CHECK(v >= 0 && v <= INT32_MAX, op, ": ", what, " = ", v, " does not fit the kernels' int indexing");
  return static_cast<int>(v);
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Runs a launcher: invalid arguments (std::invalid_argument / std::runtime_error from the csrc
// launchers) become torch errors, and a failed launch is reported at once.
template <typename Fn>
void launch(const char* op, Fn&& fn) {
  try {
    fn();
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    TORCH_CHECK(false, op, ": ", e.what());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace binding
}  // namespace mbk
