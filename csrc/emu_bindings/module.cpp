// module.cpp -- megatron_biomed._emu: the csrc kernels run on the CPU emulator (csrc/emu), for tests.
//
// Each kernel family has its own bindings file in this folder defining
// `void register_<family>(pybind11::module_& m)`. They are declared weak here, so the module links
// (and the other families stay testable) while a family's file is absent; a family that is present
// is always registered. Adding a family: write its file and add one line to each list below.
#include <pybind11/pybind11.h>

#include <string>

#include "emu/cuda_emu.h"

namespace py = pybind11;

#define MBK_DECLARE_FAMILY(name) __attribute__((weak)) void register_##name(py::module_& m);
MBK_DECLARE_FAMILY(test_kernels)
MBK_DECLARE_FAMILY(layer_norm)
MBK_DECLARE_FAMILY(softmax)
MBK_DECLARE_FAMILY(flash_attention)
MBK_DECLARE_FAMILY(tensor_core_tests)
MBK_DECLARE_FAMILY(philox_tests)
MBK_DECLARE_FAMILY(flash_mma_fwd)
MBK_DECLARE_FAMILY(flash_mma_bwd)
#undef MBK_DECLARE_FAMILY

namespace {

mbk_emu::Schedule parse_schedule(const std::string& mode) {
  if (mode == "in_order") return mbk_emu::Schedule::in_order;
  if (mode == "reverse") return mbk_emu::Schedule::reverse;
  if (mode == "random") return mbk_emu::Schedule::random;
  throw py::value_error("set_schedule: mode must be 'in_order', 'reverse' or 'random', not '" + mode + "'");
}

const char* schedule_name(mbk_emu::Schedule s) {
  switch (s) {
    case mbk_emu::Schedule::in_order: return "in_order";
    case mbk_emu::Schedule::reverse: return "reverse";
    case mbk_emu::Schedule::random: return "random";
  }
  return "?";
}

}  // namespace

PYBIND11_MODULE(_emu, m) {
  m.doc() = "csrc kernels on the CPU emulator of CUDA's execution model (see csrc/emu/cuda_emu.h)";
  m.def(
      "set_schedule", [](const std::string& mode, uint64_t seed) { mbk_emu::set_schedule(parse_schedule(mode), seed); },
      py::arg("mode") = "in_order", py::arg("seed") = 0,
      "Order in which emulated threads (and blocks) run between synchronisation points: "
      "'in_order', 'reverse' or 'random' (seeded). Applies to all later launches.");
  m.def(
      "set_cp_async_landing",
      [](const std::string& when) {
        if (when != "at_wait" && when != "at_issue")
          throw py::value_error("set_cp_async_landing: 'at_wait' or 'at_issue', not '" + when + "'");
        mbk_emu::set_cp_async_landing(when == "at_wait" ? mbk_emu::CpAsyncLanding::at_wait
                                                        : mbk_emu::CpAsyncLanding::at_issue);
      },
      py::arg("when"),
      "When emulated cp.async copies land: 'at_wait' (default; exposes a missing wait) or 'at_issue' (exposes a "
      "missing __syncthreads before a pipeline stage is refilled; use with the random schedule).");
  m.def(
      "get_schedule", [] { return py::make_tuple(schedule_name(mbk_emu::get_schedule()), mbk_emu::get_seed()); },
      "The current (mode, seed).");
  m.def(
      "stats",
      [] {
        const mbk_emu::Stats s = mbk_emu::stats();
        py::dict d;
        d["launches"] = s.launches;
        d["blocks"] = s.blocks;
        d["threads"] = s.threads;
        d["context_switches"] = s.context_switches;
        return d;
      },
      "Counters since the module was loaded: launches, blocks, threads, context_switches.");
  py::list families;
  if (register_test_kernels) { register_test_kernels(m); families.append("test_kernels"); }
  if (register_layer_norm) { register_layer_norm(m); families.append("layer_norm"); }
  if (register_softmax) { register_softmax(m); families.append("softmax"); }
  if (register_flash_attention) { register_flash_attention(m); families.append("flash_attention"); }
  if (register_tensor_core_tests) { register_tensor_core_tests(m); families.append("tensor_core_tests"); }
  if (register_philox_tests) { register_philox_tests(m); families.append("philox_tests"); }
  if (register_flash_mma_fwd) { register_flash_mma_fwd(m); families.append("flash_mma_fwd"); }
  if (register_flash_mma_bwd) { register_flash_mma_bwd(m); families.append("flash_mma_bwd"); }
  m.attr("families") = families;
}
