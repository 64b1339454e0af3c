// softmax_bindings.cpp -- the fused attention softmax launchers (csrc/kernels/softmax_launch.h) on
// the CPU emulator, as megatron_biomed._emu functions on numpy arrays (dtype convention in
// csrc/emu/py_arrays.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "emu/py_arrays.h"
#include "kernels/softmax_launch.h"

namespace py = pybind11;
using namespace mbk_emu;

namespace {

template <typename T>
using Arr = py::array_t<storage_t<T>, py::array::c_style>;

std::vector<py::ssize_t> shape_of(const py::array& a) { return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()); }

py::object masked_fwd(const py::object& x_obj, const py::object& mask_obj, float scale, const std::string& dtype) {
  py::object result;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    Arr<T> x = as_input<T>(x_obj, "x");
    if (x.ndim() != 4) throw py::value_error("x: expected [batch, heads, sq, sk]");
    const int batch = static_cast<int>(x.shape(0)), heads = static_cast<int>(x.shape(1));
    const int sq = static_cast<int>(x.shape(2)), sk = static_cast<int>(x.shape(3));
    py::array_t<uint8_t, py::array::c_style> mask;
    const uint8_t* mask_ptr = nullptr;
    int mask_batch = 1;
    if (!mask_obj.is_none()) {
      py::array m = py::array::ensure(mask_obj);
      if (!m || !(m.dtype().is(py::dtype::of<bool>()) || m.dtype().is(py::dtype::of<uint8_t>())))
        throw py::type_error("mask: expected a bool or uint8 array");
      if (m.dtype().is(py::dtype::of<bool>())) m = m.attr("view")("uint8");
      mask = py::array_t<uint8_t, py::array::c_style>::ensure(m);
      if (mask.ndim() != 4 || mask.shape(1) != 1 || mask.shape(2) != sq || mask.shape(3) != sk)
        throw py::value_error("mask: expected [1 or batch, 1, sq, sk]");
      mask_batch = static_cast<int>(mask.shape(0));
      mask_ptr = mask.data();
    }
    Arr<T> y = new_array<T>(shape_of(x));
    {
      py::gil_scoped_release nogil;
      mbk::launch_scaled_masked_softmax_fwd<T>(data_of<T>(x), mask_ptr, data_of<T>(y), batch, heads, sq, sk,
                                               mask_batch, scale, nullptr);
    }
    result = as_output<T>(y);
  });
  return result;
}

py::object causal_fwd(const py::object& x_obj, float scale, const std::string& dtype) {
  py::object result;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    Arr<T> x = as_input<T>(x_obj, "x");
    if (x.ndim() != 3 || x.shape(1) != x.shape(2)) throw py::value_error("x: expected [attn_batches, sq, sq]");
    Arr<T> y = new_array<T>(shape_of(x));
    {
      py::gil_scoped_release nogil;
      mbk::launch_scaled_upper_triang_softmax_fwd<T>(data_of<T>(x), data_of<T>(y), static_cast<int>(x.shape(0)),
                                                     static_cast<int>(x.shape(1)), scale, nullptr);
    }
    result = as_output<T>(y);
  });
  return result;
}

py::object softmax_bwd(const py::object& dy_obj, const py::object& y_obj, float scale, const std::string& dtype,
                       bool inplace) {
  py::object result;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    Arr<T> dy = as_input<T>(dy_obj, "dy"), y = as_input<T>(y_obj, "y");
    if (y.ndim() < 1 || shape_of(dy) != shape_of(y)) throw py::value_error("dy and y must have the same shape");
    const int cols = static_cast<int>(y.shape(y.ndim() - 1));
    const long long rows = cols == 0 ? 0 : static_cast<long long>(y.size()) / cols;
    Arr<T> dx = new_array<T>(shape_of(y));
    if (inplace) {  // dx aliases dy, as the launcher allows: work on a copy of dy
      std::copy(dy.data(), dy.data() + dy.size(), dx.mutable_data());
      py::gil_scoped_release nogil;
      mbk::launch_scaled_softmax_bwd<T>(data_of<T>(dx), data_of<T>(y), data_of<T>(dx), rows, cols, scale, nullptr);
    } else {
      py::gil_scoped_release nogil;
      mbk::launch_scaled_softmax_bwd<T>(data_of<T>(dy), data_of<T>(y), data_of<T>(dx), rows, cols, scale, nullptr);
    }
    result = as_output<T>(dx);
  });
  return result;
}

}  // namespace

void register_softmax(py::module_& m) {
  m.def("scaled_masked_softmax_fwd", &masked_fwd, py::arg("x"), py::arg("mask") = py::none(), py::arg("scale") = 1.0f,
        py::arg("dtype") = "float32",
        "softmax(scale * x) over the last dim of x [batch, heads, sq, sk]; mask [1 or batch, 1, sq, sk] "
        "(bool/uint8, True = masked out) or None. Fully masked rows are zeros.");
  m.def("scaled_upper_triang_softmax_fwd", &causal_fwd, py::arg("x"), py::arg("scale") = 1.0f,
        py::arg("dtype") = "float32", "Causal softmax(scale * x) of x [attn_batches, sq, sq]; keys above the diagonal get 0.");
  m.def("scaled_softmax_bwd", &softmax_bwd, py::arg("dy"), py::arg("y"), py::arg("scale") = 1.0f,
        py::arg("dtype") = "float32", py::arg("inplace") = false,
        "Backward of either softmax forward given its output y: scale * y * (dy - sum(dy * y)) over the last dim. "
        "inplace=True runs the kernel with dx aliasing (a copy of) dy.");
}
