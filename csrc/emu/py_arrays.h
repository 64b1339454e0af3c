// py_arrays.h -- numpy <-> kernel element types for the emulator bindings (csrc/emu_bindings).
//
// Convention of megatron_biomed._emu: a dtype argument "float32" | "float16" | "bfloat16" names the
// kernel's element type. float32 data are float32 arrays; float16 data are np.float16 arrays (or
// their uint16 bit patterns); bfloat16 data are uint16 bit patterns (numpy has no bfloat16).
// Results come back in the same representation (float16 as np.float16).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mbk/portability.cuh"

namespace mbk_emu {
namespace py = pybind11;

// numpy storage type of a kernel element type
template <typename T>
using storage_t = std::conditional_t<std::is_same<T, float>::value, float, uint16_t>;

template <typename T>
const char* dtype_name() {
  if (std::is_same<T, float>::value) return "float32";
  if (std::is_same<T, __half>::value) return "float16";
  return "bfloat16";
}

// Calls f(T{}) with T the kernel element type named by `dtype`.
template <typename F>
void dispatch_dtype(const std::string& dtype, F&& f) {
  if (dtype == "float32") f(float{});
  else if (dtype == "float16") f(__half{});
  else if (dtype == "bfloat16") f(__nv_bfloat16{});
  else throw py::value_error("dtype must be 'float32', 'float16' or 'bfloat16', not '" + dtype + "'");
}

// A C-contiguous array holding T's storage; float16 input may be np.float16 (viewed as bits).
// Anything else that does not match is an error rather than a silent value conversion.
template <typename T>
py::array_t<storage_t<T>, py::array::c_style> as_input(const py::object& obj, const char* name) {
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(std::string(name) + ": expected a numpy array");
  if (std::is_same<T, float>::value) {
    if (!a.dtype().is(py::dtype::of<float>()))
      throw py::type_error(std::string(name) + ": float32 data must be a float32 array");
  } else {
    if (std::is_same<T, __half>::value && a.dtype().is(py::dtype("float16"))) a = a.attr("view")("uint16");
    if (!a.dtype().is(py::dtype::of<uint16_t>()))
      throw py::type_error(std::string(name) + ": " + dtype_name<T>() +
                           " data must be " + (std::is_same<T, __half>::value ? "np.float16 or " : "") +
                           "uint16 bit patterns");
  }
  return py::array_t<storage_t<T>, py::array::c_style>::ensure(a);
}

template <typename T>
const T* data_of(const py::array_t<storage_t<T>, py::array::c_style>& a) {
  return reinterpret_cast<const T*>(a.data());
}
template <typename T>
T* data_of(py::array_t<storage_t<T>, py::array::c_style>& a) {
  return reinterpret_cast<T*>(a.mutable_data());
}

template <typename T>
py::array_t<storage_t<T>, py::array::c_style> new_array(const std::vector<py::ssize_t>& shape) {
  return py::array_t<storage_t<T>, py::array::c_style>(shape);
}

// The array as the caller should see it (float16 bits -> np.float16).
template <typename T>
py::object as_output(const py::array_t<storage_t<T>, py::array::c_style>& a) {
  if (std::is_same<T, __half>::value) return a.attr("view")("float16");
  return a;
}

inline py::array_t<float, py::array::c_style> as_float_input(const py::object& obj, const char* name) {
  py::array a = py::array::ensure(obj);
  if (!a || !a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + ": expected a float32 array");
  return py::array_t<float, py::array::c_style>::ensure(a);
}

}  // namespace mbk_emu
