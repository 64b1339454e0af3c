// Shared helpers of the torch bindings (argument checks, dtype tags, current stream).
//
// The bindings are compiled twice from the same sources:
//   * normally: ops torch.ops.megatron_biomed.* for CUDA tensors, kernels from nvcc (csrc/cuda);
//   * with MBK_TORCH_EMU (tests, see build_cuda.build_torch_emu): ops torch.ops.megatron_biomed_emu.*
//     for CPU tensors, the csrc/cuda files compiled by g++ against the CPU emulator. This runs the
//     bindings' argument handling end to end without a GPU.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <exception>
#include <string>

#include "cuda/ops_api.h"

#ifdef MBK_TORCH_EMU
#define MBK_TORCH_NS megatron_biomed_emu
#define MBK_TORCH_KEY CPU
#define MBK_DEVICE_NAME "CPU"
#define MBK_LAUNCH_CHECK() \
  do {                     \
  } while (0)
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define MBK_TORCH_NS megatron_biomed
#define MBK_TORCH_KEY CUDA
#define MBK_DEVICE_NAME "CUDA"
#define MBK_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()
#endif
// TORCH_LIBRARY pastes its namespace argument, so a macro namespace needs one more expansion.
#define MBK_TORCH_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)

namespace mbk {
namespace binding {

#ifdef MBK_TORCH_EMU
struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};
inline bool on_device(const at::Tensor& t) { return t.is_cpu(); }
inline api::Stream current_stream() { return nullptr; }
#else
using DeviceGuard = c10::cuda::CUDAGuard;
inline bool on_device(const at::Tensor& t) { return t.is_cuda(); }
inline api::Stream current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
#endif

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

inline void check_device(const at::Tensor& t, const char* op, const char* name, const at::Tensor& like) {
  TORCH_CHECK(on_device(t), op, ": ", name, " must be a " MBK_DEVICE_NAME " tensor");
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but expected ", like.device());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

inline int checked_int(int64_t v, const char* op, const char* what) {
  TORCH_CHECK(v >= 0 && v <= INT32_MAX, op, ": ", what, " = ", v, " does not fit the kernels' int indexing");
  return static_cast<int>(v);
}

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
  MBK_LAUNCH_CHECK();
}

}  // namespace binding
}  // namespace mbk
