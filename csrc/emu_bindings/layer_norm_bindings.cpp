// layer_norm_bindings.cpp -- LayerNorm / RMSNorm launchers (csrc/kernels/layer_norm_launch.h) on
// the CPU emulator, as megatron_biomed._emu functions taking and returning numpy arrays
// (dtype convention in csrc/emu/py_arrays.h). x is [rows, cols]; gamma/beta are [cols].
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "emu/py_arrays.h"
#include "kernels/layer_norm_launch.h"

namespace py = pybind11;
using namespace mbk_emu;

namespace {

template <typename T>
using Arr = py::array_t<storage_t<T>, py::array::c_style>;

void check_2d(const py::array& x, const char* name) {
  if (x.ndim() != 2) throw py::value_error(std::string(name) + ": expected a 2-D [rows, cols] array");
}

template <typename T>
const T* optional_param(const py::object& obj, Arr<T>& holder, py::ssize_t cols, const char* name) {
  if (obj.is_none()) return nullptr;
  holder = as_input<T>(obj, name);
  if (holder.ndim() != 1 || holder.shape(0) != cols)
    throw py::value_error(std::string(name) + ": expected shape [" + std::to_string(cols) + "]");
  return data_of<T>(holder);
}

py::tuple norm_fwd(const py::object& x_obj, const py::object& gamma_obj, const py::object& beta_obj, float eps,
                   const std::string& dtype, bool rms) {
  py::tuple result;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    Arr<T> x = as_input<T>(x_obj, "x");
    check_2d(x, "x");
    const int rows = static_cast<int>(x.shape(0)), cols = static_cast<int>(x.shape(1));
    Arr<T> g, b;
    const T* gamma = optional_param<T>(gamma_obj, g, cols, "gamma");
    const T* beta = rms ? nullptr : optional_param<T>(beta_obj, b, cols, "beta");
    Arr<T> y = new_array<T>({rows, cols});
    py::array_t<float> mean(rows), rstd(rows);
    {
      py::gil_scoped_release nogil;
      if (rms)
        mbk::launch_rms_norm_fwd<T>(data_of<T>(x), gamma, data_of<T>(y), rstd.mutable_data(), rows, cols, eps, nullptr);
      else
        mbk::launch_layer_norm_fwd<T>(data_of<T>(x), gamma, beta, data_of<T>(y), mean.mutable_data(),
                                      rstd.mutable_data(), rows, cols, eps, nullptr);
    }
    if (rms) result = py::make_tuple(as_output<T>(y), rstd);
    else result = py::make_tuple(as_output<T>(y), mean, rstd);
  });
  return result;
}

py::tuple norm_bwd(const py::object& dy_obj, const py::object& x_obj, const py::object& gamma_obj,
                   const py::object& mean_obj, const py::object& rstd_obj, const std::string& dtype, bool rms,
                   bool compute_dbeta) {
  py::tuple result;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    Arr<T> x = as_input<T>(x_obj, "x"), dy = as_input<T>(dy_obj, "dy");
    check_2d(x, "x");
    if (dy.ndim() != 2 || dy.shape(0) != x.shape(0) || dy.shape(1) != x.shape(1))
      throw py::value_error("dy: expected the shape of x");
    const int rows = static_cast<int>(x.shape(0)), cols = static_cast<int>(x.shape(1));
    Arr<T> g;
    const T* gamma = optional_param<T>(gamma_obj, g, cols, "gamma");
    py::array_t<float, py::array::c_style> mean, rstd = as_float_input(rstd_obj, "rstd");
    if (rstd.ndim() != 1 || rstd.shape(0) != rows) throw py::value_error("rstd: expected shape [rows]");
    if (!rms) {
      mean = as_float_input(mean_obj, "mean");
      if (mean.ndim() != 1 || mean.shape(0) != rows) throw py::value_error("mean: expected shape [rows]");
    }
    Arr<T> dx = new_array<T>({rows, cols});
    Arr<T> dgamma = new_array<T>({cols}), dbeta = new_array<T>({cols});
    std::vector<float> workspace(mbk::layer_norm_bwd_workspace_floats(rows, cols) + 4);
    // the launcher wants 16-byte aligned buffers for its vector path; std::vector gives 16 on x86-64
    {
      py::gil_scoped_release nogil;
      T* dg = gamma != nullptr ? data_of<T>(dgamma) : nullptr;
      if (rms)
        mbk::launch_rms_norm_bwd<T>(data_of<T>(dy), data_of<T>(x), gamma, rstd.data(), data_of<T>(dx), dg,
                                    workspace.data(), rows, cols, nullptr);
      else
        mbk::launch_layer_norm_bwd<T>(data_of<T>(dy), data_of<T>(x), gamma, mean.data(), rstd.data(), data_of<T>(dx),
                                      dg, compute_dbeta ? data_of<T>(dbeta) : nullptr, workspace.data(), rows,
                                      cols, nullptr);
    }
    py::object dg = gamma != nullptr ? as_output<T>(dgamma) : py::object(py::none());
    if (rms) {
      result = py::make_tuple(as_output<T>(dx), dg);
    } else {
      py::object db = compute_dbeta ? as_output<T>(dbeta) : py::object(py::none());
      result = py::make_tuple(as_output<T>(dx), dg, db);
    }
  });
  return result;
}

}  // namespace

void register_layer_norm(py::module_& m) {
  m.def(
      "layer_norm_fwd",
      [](const py::object& x, const py::object& gamma, const py::object& beta, float eps, const std::string& dtype) {
        return norm_fwd(x, gamma, beta, eps, dtype, false);
      },
      py::arg("x"), py::arg("gamma") = py::none(), py::arg("beta") = py::none(), py::arg("eps") = 1e-5f,
      py::arg("dtype") = "float32",
      "LayerNorm forward of x [rows, cols]: returns (y, mean, rstd); mean/rstd are float32 [rows].");
  m.def(
      "layer_norm_bwd",
      [](const py::object& dy, const py::object& x, const py::object& gamma, const py::object& mean,
         const py::object& rstd, const std::string& dtype, bool compute_dbeta) {
        return norm_bwd(dy, x, gamma, mean, rstd, dtype, false, compute_dbeta);
      },
      py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("rstd"), py::arg("dtype") = "float32",
      py::arg("compute_dbeta") = true,
      "LayerNorm backward: returns (dx, dgamma or None if gamma is None, dbeta or None).");
  m.def(
      "rms_norm_fwd",
      [](const py::object& x, const py::object& gamma, float eps, const std::string& dtype) {
        return norm_fwd(x, gamma, py::none(), eps, dtype, true);
      },
      py::arg("x"), py::arg("gamma") = py::none(), py::arg("eps") = 1e-5f, py::arg("dtype") = "float32",
      "RMSNorm forward of x [rows, cols]: returns (y, rstd).");
  m.def(
      "rms_norm_bwd",
      [](const py::object& dy, const py::object& x, const py::object& gamma, const py::object& rstd,
         const std::string& dtype) { return norm_bwd(dy, x, gamma, py::none(), rstd, dtype, true, false); },
      py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("rstd"), py::arg("dtype") = "float32",
      "RMSNorm backward: returns (dx, dgamma or None if gamma is None).");
}
