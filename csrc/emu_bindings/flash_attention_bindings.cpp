// flash_attention_bindings.cpp -- FlashAttention-2 (csrc/kernels/flash_attention_launch.h) on the
// CPU emulator, exposed to Python on numpy arrays for tests.
//
//   flash_attention_fwd(q, k, v, causal=False, softmax_scale=None, dtype=None,
//                       dropout_p=0.0, seed=0, offset=0) -> (out, lse)
//   flash_attention_bwd(q, k, v, out, dout, lse, causal=False, softmax_scale=None, dtype=None,
//                       dropout_p=0.0, seed=0, offset=0) -> (dq, dk, dv)
//
// q, out, dout: [batch, seqlen_q, heads, head_dim]; k, v: [batch, seqlen_k, kv_heads, head_dim];
// lse: [batch, heads, seqlen_q] float32. softmax_scale defaults to 1 / sqrt(head_dim).
// q, k, v, out, dout may be strided views (e.g. a [seq, batch, ...] array transposed): the kernels
// read them through their strides when the last dimension is contiguous and every stride is a whole
// number of elements, otherwise from a contiguous copy. Outputs are contiguous.
// Attention dropout (mbk/philox.cuh): dropout_p with the 64-bit seed and 32-bit offset; the backward
// must be given the forward's.
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

// `a` itself when the kernels can read it through strides (last dimension contiguous, strides whole
// elements), else a C-contiguous copy; checked to have q's dtype and the given rank.
py::array readable(const py::array& a, const py::dtype& want, int ndim, const char* fn, const char* name) {
  if (!a.dtype().is(want)) {
    throw py::type_error(std::string(fn) + ": " + name + " has dtype " +
                         py::str(a.dtype()).cast<std::string>() + " but must match q (" +
                         py::str(want).cast<std::string>() + ")");
  }
  if (a.ndim() != ndim) {
    throw py::value_error(std::string(fn) + ": " + name + " must have " + std::to_string(ndim) +
                          " dimensions, got " + std::to_string(a.ndim()));
  }
  const py::ssize_t item = a.itemsize();
  bool ok = a.shape(ndim - 1) <= 1 || a.strides(ndim - 1) == item;
  for (int i = 0; ok && i < ndim; ++i) ok = a.strides(i) % item == 0 && a.strides(i) >= 0;
  if (ok) return a;
  return py::module_::import("numpy").attr("ascontiguousarray")(a).cast<py::array>();
}

// Element strides of the first three dimensions of a [batch, seqlen, heads, D] array.
mbk::flash::Strides strides_of(const py::array& a) {
  const py::ssize_t item = a.itemsize();
  mbk::flash::Strides s;
  s.batch = a.strides(0) / item;
  s.row = a.strides(1) / item;
  s.head = a.strides(2) / item;
  return s;
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

float scale_or_default(const std::optional<float>& scale, int head_dim) {
  return scale ? *scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

template <typename F>
void dispatch(Elem e, F&& f) {
  switch (e) {
    case Elem::f32: f(float{}); break;
    case Elem::f16: f(__half{}); break;
    case Elem::bf16: f(__nv_bfloat16{}); break;
  }
}

mbk::flash::FlashParams params_of(const py::array& q, const py::array& k, const py::array& v, const Dims& d,
                                  bool causal, float scale, float dropout_p, uint64_t seed, uint32_t offset) {
  mbk::flash::FlashParams p;
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.q_strides = strides_of(q);
  p.k_strides = strides_of(k);
  p.v_strides = strides_of(v);
  p.batch = d.batch;
  p.seqlen_q = d.seqlen_q;
  p.seqlen_k = d.seqlen_k;
  p.num_heads = d.heads;
  p.num_kv_heads = d.kv_heads;
  p.head_dim = d.head_dim;
  p.softmax_scale = scale;
  p.causal = causal;
  p.dropout_p = dropout_p;
  p.dropout_seed = seed;
  p.dropout_offset = offset;
  return p;
}

py::tuple fwd(const py::array& q_in, const py::array& k_in, const py::array& v_in, bool causal,
              std::optional<float> softmax_scale, std::optional<std::string> dtype, float dropout_p,
              uint64_t seed, uint32_t offset) {
  const char* fn = "flash_attention_fwd";
  const Elem e = elem_from(q_in, dtype, fn);
  const py::dtype dt = q_in.dtype();
  py::array q = readable(q_in, dt, 4, fn, "q");
  py::array k = readable(k_in, dt, 4, fn, "k");
  py::array v = readable(v_in, dt, 4, fn, "v");
  const Dims d = dims_of(q, k, v, fn);
  py::array out(dt, std::vector<py::ssize_t>{d.batch, d.seqlen_q, d.heads, d.head_dim});
  py::array lse(py::dtype::of<float>(), std::vector<py::ssize_t>{d.batch, d.heads, d.seqlen_q});
  mbk::flash::FlashParams p =
      params_of(q, k, v, d, causal, scale_or_default(softmax_scale, d.head_dim), dropout_p, seed, offset);
  p.out = out.mutable_data();
  p.out_strides = strides_of(out);
  p.lse = static_cast<float*>(lse.mutable_data());
  dispatch(e, [&](auto t) {
    using T = decltype(t);
    run_kernel([&] { mbk::flash::flash_attention_fwd<T>(p, nullptr); });
  });
  return py::make_tuple(out, lse);
}

py::tuple bwd(const py::array& q_in, const py::array& k_in, const py::array& v_in,
              const py::array& out_in, const py::array& dout_in, const py::array& lse_in,
              bool causal, std::optional<float> softmax_scale, std::optional<std::string> dtype,
              float dropout_p, uint64_t seed, uint32_t offset) {
  const char* fn = "flash_attention_bwd";
  const Elem e = elem_from(q_in, dtype, fn);
  const py::dtype dt = q_in.dtype();
  py::array q = readable(q_in, dt, 4, fn, "q");
  py::array k = readable(k_in, dt, 4, fn, "k");
  py::array v = readable(v_in, dt, 4, fn, "v");
  py::array out = readable(out_in, dt, 4, fn, "out");
  py::array dout = readable(dout_in, dt, 4, fn, "dout");
  if (!lse_in.dtype().is(py::dtype::of<float>()) || lse_in.ndim() != 3) {
    throw py::type_error(std::string(fn) + ": lse must be a float32 [batch, heads, seqlen_q] array");
  }
  py::array lse = py::module_::import("numpy").attr("ascontiguousarray")(lse_in).cast<py::array>();
  const Dims d = dims_of(q, k, v, fn);
  expect_shape(out, {d.batch, d.seqlen_q, d.heads, d.head_dim}, fn, "out");
  expect_shape(dout, {d.batch, d.seqlen_q, d.heads, d.head_dim}, fn, "dout");
  expect_shape(lse, {d.batch, d.heads, d.seqlen_q}, fn, "lse");
  py::array dq(dt, std::vector<py::ssize_t>{d.batch, d.seqlen_q, d.heads, d.head_dim});
  py::array dk(dt, std::vector<py::ssize_t>{d.batch, d.seqlen_k, d.kv_heads, d.head_dim});
  py::array dv(dt, std::vector<py::ssize_t>{d.batch, d.seqlen_k, d.kv_heads, d.head_dim});
  std::vector<float> delta(mbk::flash::flash_attention_bwd_workspace_floats(d.batch, d.heads, d.seqlen_q));
  mbk::flash::FlashParams p =
      params_of(q, k, v, d, causal, scale_or_default(softmax_scale, d.head_dim), dropout_p, seed, offset);
  p.out = const_cast<void*>(out.data());
  p.out_strides = strides_of(out);
  p.dout = dout.data();
  p.dout_strides = strides_of(dout);
  p.lse = const_cast<float*>(static_cast<const float*>(lse.data()));
  p.dq = dq.mutable_data();
  p.dk = dk.mutable_data();
  p.dv = dv.mutable_data();
  p.dq_strides = strides_of(dq);
  p.dk_strides = strides_of(dk);
  p.dv_strides = strides_of(dv);
  p.delta = delta.data();
  dispatch(e, [&](auto t) {
    using T = decltype(t);
    run_kernel([&] { mbk::flash::flash_attention_bwd<T>(p, nullptr); });
  });
  return py::make_tuple(dq, dk, dv);
}

}  // namespace

void register_flash_attention(py::module_& m) {
  m.def("flash_attention_fwd", &fwd, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("causal") = false, py::arg("softmax_scale") = py::none(),
        py::arg("dtype") = py::none(), py::arg("dropout_p") = 0.0f, py::arg("seed") = 0,
        py::arg("offset") = 0,
        "FlashAttention-2 forward on the emulator. q [B, Sq, H, D], k/v [B, Sk, Hkv, D] (strided views "
        "allowed) -> (out [B, Sq, H, D], lse [B, H, Sq] float32). float32 / float16 / uint16 (bfloat16 "
        "bits) arrays; `dtype` overrides the guess. Attention dropout dropout_p with (seed, offset).");
  m.def("flash_attention_bwd", &bwd, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"),
        py::arg("dout"), py::arg("lse"), py::arg("causal") = false,
        py::arg("softmax_scale") = py::none(), py::arg("dtype") = py::none(),
        py::arg("dropout_p") = 0.0f, py::arg("seed") = 0, py::arg("offset") = 0,
        "FlashAttention-2 backward on the emulator -> (dq, dk, dv), shaped like q, k, v. "
        "Deterministic: dk/dv of a GQA group are summed in a fixed order. dropout_p, seed, offset: "
        "the forward's.");
  m.attr("flash_attention_head_dims") = py::make_tuple(64, 80, 96, 128);
}
