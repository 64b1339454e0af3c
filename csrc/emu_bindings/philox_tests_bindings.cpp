// philox_tests_bindings.cpp -- mbk/philox.cuh (Philox4x32-10 and the attention-dropout mask) exposed over numpy
// arrays, so tests compare megatron_biomed/kernels/philox.py with the C++ bit for bit.
//
//   philox4x32_10(counters uint32 [n, 4], keys uint32 [n, 2]) -> uint32 [n, 4]
//   dropout_keep(seed, offset, threshold, bh int32 [n], i int32 [n], j int32 [n]) -> bool [n]
//   dropout_threshold(p) -> int, dropout_scale(p) -> float
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "mbk/philox.cuh"

namespace py = pybind11;

namespace {

using U32 = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

void expect_2d(const py::array& a, py::ssize_t cols, const char* name) {
  if (a.ndim() != 2 || a.shape(1) != cols) {
    throw py::value_error(std::string("philox4x32_10: ") + name + " must be [n, " + std::to_string(cols) + "]");
  }
}

py::array philox(const U32& counters, const U32& keys) {
  expect_2d(counters, 4, "counters");
  expect_2d(keys, 2, "keys");
  if (keys.shape(0) != counters.shape(0)) throw py::value_error("philox4x32_10: counters and keys differ in length");
  const py::ssize_t n = counters.shape(0);
  U32 out({n, static_cast<py::ssize_t>(4)});
  const uint32_t* c = counters.data();
  const uint32_t* k = keys.data();
  uint32_t* o = out.mutable_data();
  for (py::ssize_t r = 0; r < n; ++r) {
    const mbk::Philox4 x = mbk::philox4x32_10(c[4 * r], c[4 * r + 1], c[4 * r + 2], c[4 * r + 3], k[2 * r], k[2 * r + 1]);
    for (int w = 0; w < 4; ++w) o[4 * r + w] = x.x[w];
  }
  return out;
}

py::array keep(uint64_t seed, uint32_t offset, uint32_t threshold, const I32& bh, const I32& i, const I32& j) {
  if (bh.ndim() != 1 || i.ndim() != 1 || j.ndim() != 1 || bh.shape(0) != i.shape(0) || i.shape(0) != j.shape(0)) {
    throw py::value_error("dropout_keep: bh, i, j must be 1-d arrays of one length");
  }
  const py::ssize_t n = bh.shape(0);
  py::array_t<bool> out(n);
  bool* o = out.mutable_data();
  for (py::ssize_t r = 0; r < n; ++r) o[r] = mbk::dropout_keep(seed, offset, threshold, bh.data()[r], i.data()[r], j.data()[r]);
  return out;
}

}  // namespace

void register_philox_tests(py::module_& m) {
  m.def("philox4x32_10", &philox, py::arg("counters"), py::arg("keys"),
        "mbk::philox4x32_10 row by row: counters uint32 [n, 4], keys uint32 [n, 2] -> uint32 [n, 4].");
  m.def("dropout_keep", &keep, py::arg("seed"), py::arg("offset"), py::arg("threshold"), py::arg("bh"), py::arg("i"),
        py::arg("j"), "mbk::dropout_keep element by element -> bool [n].");
  m.def("dropout_threshold", &mbk::dropout_threshold, py::arg("p"), "mbk::dropout_threshold(p) (p as float32).");
  m.def("dropout_scale", &mbk::dropout_scale, py::arg("p"), "mbk::dropout_scale(p) (float32).");
}
