// flash_attention_bindings.cpp -- FlashAttention-2 (csrc/kernels/flash_attention_launch.h) on the
// CPU emulator, exposed to Python on numpy arrays for tests.
//
//   flash_attention_fwd(q, k, v, causal=False, softmax_scale=None, dtype=None) -> (out, lse)
//   flash_attention_bwd(q, k, v, out, dout, lse, causal=False, softmax_scale=None, dtype=None)
//       -> (dq, dk, dv)
//
// q, out, dout: [batch, seqlen_q, heads, head_dim]; k, v: [batch, seqlen_k, kv_heads, head_dim];
// lse: [batch, heads, seqlen_q] float32. softmax_scale defaults to 1 / sqrt(head_dim).
// Element type: float32 arrays run the float kernel, float16 arrays the __half kernel, uint16
// arrays the __nv_bfloat16 kernel (bit patterns). `dtype` ("float32", "float16", "bfloat16")
// overrides the guess, e.g. dtype="float16" for half values passed as uint16 bits. Outputs have
// the numpy dtype of q (lse is float32).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional arguments

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/flash_attention_launch.h"

namespace py = pybind11;

namespace {

enum class Elem { f32, f16, bf16 };

Elem elem_from(const py::array& q, const std::optional<std::string>& dtype, const char* fn) {
  const py::dtype dt = q.dtype();
  const bool is_f32 = dt.is(py::dtype::of<float>());
  const bool is_f16 = dt.kind() == 'f' && dt.itemsize() == 2;
  const bool is_u16 = dt.is(py::dtype::of<uint16_t>());
  if (!dtype) {
    if (is_f32) return Elem::f32;
    if (is_f16) return Elem::f16;
    if (is_u16) return Elem::bf16;
  } else if (*dtype == "float32" && is_f32) {
    return Elem::f32;
  } else if (*dtype == "float16" && (is_f16 || is_u16)) {
    return Elem::f16;
  } else if (*dtype == "bfloat16" && is_u16) {
    return Elem::bf16;
  } else if (*dtype != "float32" && *dtype != "float16" && *dtype != "bfloat16") {
    throw py::value_error(std::string(fn) + ": dtype must be 'float32', 'float16' or 'bfloat16', not '" +
                          *dtype + "'");
  }
  throw py::type_error(std::string(fn) + ": q has numpy dtype " + py::str(dt).cast<std::string>() +
                       (dtype ? " which cannot hold dtype=" + *dtype : std::string()) +
                       "; pass float32, float16, or uint16 (bfloat16 bits)");
}

// C-contiguous copy (if needed) of `a`, checked to have q's dtype and the given rank.
py::array contiguous(const py::array& a, const py::dtype& want, int ndim, const char* fn,
                     const char* name) {
  if (!a.dtype().is(want)) {
    throw py::type_error(std::string(fn) + ": " + name + " has dtype " +
                         py::str(a.dtype()).cast<std::string>() + " but must match q (" +
                         py::str(want).cast<std::string>() + ")");
  }
  if (a.ndim() != ndim) {
    throw py::value_error(std::string(fn) + ": " + name + " must have " + std::to_string(ndim) +
                          " dimensions, got " + std::to_string(a.ndim()));
  }
  return py::module_::import("numpy").attr("ascontiguousarray")(a).cast<py::array>();
}

void expect_shape(const py::array& a, const std::vector<py::ssize_t>& shape, const char* fn,
                  const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok) {
    std::string want = "[", got = "[";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    for (py::ssize_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
    throw py::value_error(std::string(fn) + ": " + name + " has shape " + got + "] but must be " +
                          want + "]");
  }
}

struct Dims {
  int batch, seqlen_q, seqlen_k, heads, kv_heads, head_dim;
};

Dims dims_of(const py::array& q, const py::array& k, const py::array& v, const char* fn) {
  Dims d{static_cast<int>(q.shape(0)), static_cast<int>(q.shape(1)), static_cast<int>(k.shape(1)),
         static_cast<int>(q.shape(2)), static_cast<int>(k.shape(2)), static_cast<int>(q.shape(3))};
  expect_shape(k, {d.batch, d.seqlen_k, d.kv_heads, d.head_dim}, fn, "k");
  expect_shape(v, {d.batch, d.seqlen_k, d.kv_heads, d.head_dim}, fn, "v");
  return d;
}

template <typename T>
const T* cptr(const py::array& a) {
  return reinterpret_cast<const T*>(a.data());
}
template <typename T>
T* mptr(py::array& a) {
  return reinterpret_cast<T*>(a.mutable_data());
}

// std::invalid_argument from the launchers becomes ValueError, std::runtime_error RuntimeError.
template <typename F>
void run_kernel(F&& f) {
  try {
    py::gil_scoped_release release;
    f();
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

template <typename T>
void fwd_typed(const py::array& q, const py::array& k, const py::array& v, py::array& out,
               py::array& lse, const Dims& d, float scale, bool causal) {
  run_kernel([&] {
    mbk::flash::flash_attention_fwd<T>(cptr<T>(q), cptr<T>(k), cptr<T>(v), mptr<T>(out),
                                       mptr<float>(lse), d.batch, d.seqlen_q, d.seqlen_k, d.heads,
                                       d.kv_heads, d.head_dim, scale, causal, nullptr);
  });
}

template <typename T>
void bwd_typed(const py::array& q, const py::array& k, const py::array& v, const py::array& out,
               const py::array& dout, const py::array& lse, py::array& dq, py::array& dk,
               py::array& dv, std::vector<float>& delta, const Dims& d, float scale, bool causal) {
  run_kernel([&] {
    mbk::flash::flash_attention_bwd<T>(cptr<T>(q), cptr<T>(k), cptr<T>(v), cptr<T>(out),
                                       cptr<T>(dout), cptr<float>(lse), mptr<T>(dq), mptr<T>(dk),
                                       mptr<T>(dv), delta.data(), d.batch, d.seqlen_q, d.seqlen_k,
                                       d.heads, d.kv_heads, d.head_dim, scale, causal, nullptr);
  });
}

float scale_or_default(const std::optional<float>& scale, int head_dim) {
  return scale ? *scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

py::tuple fwd(const py::array& q_in, const py::array& k_in, const py::array& v_in, bool causal,
              std::optional<float> softmax_scale, std::optional<std::string> dtype) {
  const char* fn = "flash_attention_fwd";
  const Elem e = elem_from(q_in, dtype, fn);
  const py::dtype dt = q_in.dtype();
  py::array q = contiguous(q_in, dt, 4, fn, "q");
  py::array k = contiguous(k_in, dt, 4, fn, "k");
  py::array v = contiguous(v_in, dt, 4, fn, "v");
  const Dims d = dims_of(q, k, v, fn);
  py::array out(dt, std::vector<py::ssize_t>{d.batch, d.seqlen_q, d.heads, d.head_dim});
  py::array lse(py::dtype::of<float>(), std::vector<py::ssize_t>{d.batch, d.heads, d.seqlen_q});
  const float scale = scale_or_default(softmax_scale, d.head_dim);
  switch (e) {
    case Elem::f32: fwd_typed<float>(q, k, v, out, lse, d, scale, causal); break;
    case Elem::f16: fwd_typed<__half>(q, k, v, out, lse, d, scale, causal); break;
    case Elem::bf16: fwd_typed<__nv_bfloat16>(q, k, v, out, lse, d, scale, causal); break;
  }
  return py::make_tuple(out, lse);
}

py::tuple bwd(const py::array& q_in, const py::array& k_in, const py::array& v_in,
              const py::array& out_in, const py::array& dout_in, const py::array& lse_in,
              bool causal, std::optional<float> softmax_scale, std::optional<std::string> dtype) {
  const char* fn = "flash_attention_bwd";
  const Elem e = elem_from(q_in, dtype, fn);
  const py::dtype dt = q_in.dtype();
  py::array q = contiguous(q_in, dt, 4, fn, "q");
  py::array k = contiguous(k_in, dt, 4, fn, "k");
  py::array v = contiguous(v_in, dt, 4, fn, "v");
  py::array out = contiguous(out_in, dt, 4, fn, "out");
  py::array dout = contiguous(dout_in, dt, 4, fn, "dout");
  py::array lse = contiguous(lse_in, py::dtype::of<float>(), 3, fn, "lse");
  const Dims d = dims_of(q, k, v, fn);
  expect_shape(out, {d.batch, d.seqlen_q, d.heads, d.head_dim}, fn, "out");
  expect_shape(dout, {d.batch, d.seqlen_q, d.heads, d.head_dim}, fn, "dout");
  expect_shape(lse, {d.batch, d.heads, d.seqlen_q}, fn, "lse");
  py::array dq(dt, std::vector<py::ssize_t>{d.batch, d.seqlen_q, d.heads, d.head_dim});
  py::array dk(dt, std::vector<py::ssize_t>{d.batch, d.seqlen_k, d.kv_heads, d.head_dim});
  py::array dv(dt, std::vector<py::ssize_t>{d.batch, d.seqlen_k, d.kv_heads, d.head_dim});
  std::vector<float> delta(
      mbk::flash::flash_attention_bwd_workspace_floats(d.batch, d.heads, d.seqlen_q));
  const float scale = scale_or_default(softmax_scale, d.head_dim);
  switch (e) {
    case Elem::f32: bwd_typed<float>(q, k, v, out, dout, lse, dq, dk, dv, delta, d, scale, causal); break;
    case Elem::f16: bwd_typed<__half>(q, k, v, out, dout, lse, dq, dk, dv, delta, d, scale, causal); break;
    case Elem::bf16:
      bwd_typed<__nv_bfloat16>(q, k, v, out, dout, lse, dq, dk, dv, delta, d, scale, causal);
      break;
  }
  return py::make_tuple(dq, dk, dv);
}

}  // namespace

void register_flash_attention(py::module_& m) {
  m.def("flash_attention_fwd", &fwd, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("causal") = false, py::arg("softmax_scale") = py::none(),
        py::arg("dtype") = py::none(),
        "FlashAttention-2 forward on the emulator. q [B, Sq, H, D], k/v [B, Sk, Hkv, D] -> "
        "(out [B, Sq, H, D], lse [B, H, Sq] float32). float32 / float16 / uint16 (bfloat16 bits) "
        "arrays; `dtype` overrides the guess.");
  m.def("flash_attention_bwd", &bwd, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"),
        py::arg("dout"), py::arg("lse"), py::arg("causal") = false,
        py::arg("softmax_scale") = py::none(), py::arg("dtype") = py::none(),
        "FlashAttention-2 backward on the emulator -> (dq, dk, dv), shaped like q, k, v. "
        "Deterministic: dk/dv of a GQA group are summed in a fixed order.");
  m.attr("flash_attention_head_dims") = py::make_tuple(64, 80, 96, 128);
}
