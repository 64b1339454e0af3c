// flash_mma_bwd_bindings.cpp -- the tensor-core FlashAttention-2 backward (csrc/kernels/flash_attention_mma_bwd.cuh)
// on the CPU emulator, exposed to Python on numpy arrays for tests.
//
//   flash_mma_bwd(q, k, v, out, dout, lse, causal=False, softmax_scale=None, dtype=None,
//                 dropout_p=0.0, dropout_seed=0, dropout_offset=0, dq=None, dk=None, dv=None) -> (dq, dk, dv)
//
// q, out, dout: [batch, seqlen_q, heads, head_dim]; k, v: [batch, seqlen_k, kv_heads, head_dim]; lse: [batch, heads,
// seqlen_q] float32 (the forward's). Element type: np.float16 arrays (or uint16 half bits with dtype="float16") run
// the __half kernels, uint16 arrays (bfloat16 bit patterns) the __nv_bfloat16 kernels. Arrays are passed with their
// own strides (any strides in the first three dimensions, multiples of 8 elements, contiguous last dimension: e.g. a
// [seq, batch, heads, dim] array transposed to [batch, seq, heads, dim] without a copy). dq, dk, dv may be given
// (writable, any such strides): the kernels write into them; otherwise new contiguous arrays are returned. float16
// results come back as np.float16, bfloat16 as uint16 bits.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/flash_attention_mma_bwd.cuh"

namespace py = pybind11;

namespace {

const char* const kFn = "flash_mma_bwd";

// uint16 view of a float16 or uint16 array (strides kept); anything else is a TypeError.
py::array bits_view(const py::object& obj, const char* name) {
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(std::string(kFn) + ": " + name + " must be a numpy array");
  if (a.dtype().kind() == 'f' && a.itemsize() == 2) return a.attr("view")("uint16").cast<py::array>();
  if (a.dtype().is(py::dtype::of<uint16_t>())) return a;
  throw py::type_error(std::string(kFn) + ": " + name + " has dtype " + py::str(a.dtype()).cast<std::string>() +
                       "; pass np.float16 or uint16 bit patterns (bfloat16, or float16 with dtype='float16')");
}

bool is_f16(const py::object& obj) {
  py::array a = py::array::ensure(obj);
  return a && a.dtype().kind() == 'f' && a.itemsize() == 2;
}

void expect_shape(const py::array& a, const std::vector<py::ssize_t>& shape, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok) {
    std::string want = "[", got = "[";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    for (py::ssize_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
    throw py::value_error(std::string(kFn) + ": " + name + " has shape " + got + "] but must be " + want + "]");
  }
}

// Element strides of a 4-d 16-bit array with a contiguous last dimension.
mbk::flash::Strides strides_of(const py::array& a, const char* name) {
  if (a.ndim() != 4) {
    throw py::value_error(std::string(kFn) + ": " + name + " must have 4 dimensions, got " + std::to_string(a.ndim()));
  }
  if (a.size() == 0) {  // numpy gives empty arrays zero strides; nothing is read or written through them
    return mbk::flash::contiguous_strides(static_cast<int>(a.shape(1)), static_cast<int>(a.shape(2)),
                                          static_cast<int>(a.shape(3)));
  }
  if (a.shape(3) > 1 && a.strides(3) != 2) {
    throw py::value_error(std::string(kFn) + ": " + name + " must be contiguous in its last dimension");
  }
  for (int d = 0; d < 3; ++d) {
    if (a.strides(d) % 2 != 0) {
      throw py::value_error(std::string(kFn) + ": " + name + " strides must be whole elements");
    }
  }
  mbk::flash::Strides s;
  s.batch = a.strides(0) / 2;
  s.row = a.strides(1) / 2;
  s.head = a.strides(2) / 2;
  return s;
}

py::array output(const std::optional<py::object>& given, const std::vector<py::ssize_t>& shape, const char* name) {
  if (!given || given->is_none()) return py::array(py::dtype::of<uint16_t>(), shape);
  py::array a = bits_view(*given, name);
  expect_shape(a, shape, name);
  if (!a.writeable()) throw py::value_error(std::string(kFn) + ": " + name + " must be writable");
  return a;
}

py::tuple bwd(const py::object& q_in, const py::object& k_in, const py::object& v_in, const py::object& out_in,
              const py::object& dout_in, const py::object& lse_in, bool causal, std::optional<float> softmax_scale,
              std::optional<std::string> dtype, float dropout_p, uint64_t dropout_seed, uint32_t dropout_offset,
              std::optional<py::object> dq_in, std::optional<py::object> dk_in, std::optional<py::object> dv_in) {
  bool half = is_f16(q_in);
  if (dtype) {
    if (*dtype != "float16" && *dtype != "bfloat16") {
      throw py::value_error(std::string(kFn) + ": dtype must be 'float16' or 'bfloat16', not '" + *dtype + "'");
    }
    if (*dtype == "bfloat16" && half) {
      throw py::type_error(std::string(kFn) + ": q is np.float16, which cannot hold dtype=bfloat16");
    }
    half = *dtype == "float16";
  }
  const py::array q = bits_view(q_in, "q"), k = bits_view(k_in, "k"), v = bits_view(v_in, "v");
  const py::array out = bits_view(out_in, "out"), dout = bits_view(dout_in, "dout");
  mbk::flash::FlashParams p;
  p.q_strides = strides_of(q, "q");
  p.k_strides = strides_of(k, "k");
  p.batch = static_cast<int>(q.shape(0));
  p.seqlen_q = static_cast<int>(q.shape(1));
  p.num_heads = static_cast<int>(q.shape(2));
  p.head_dim = static_cast<int>(q.shape(3));
  p.seqlen_k = static_cast<int>(k.shape(1));
  p.num_kv_heads = static_cast<int>(k.shape(2));
  const std::vector<py::ssize_t> q_shape{p.batch, p.seqlen_q, p.num_heads, p.head_dim};
  const std::vector<py::ssize_t> k_shape{p.batch, p.seqlen_k, p.num_kv_heads, p.head_dim};
  expect_shape(k, k_shape, "k");
  expect_shape(v, k_shape, "v");
  expect_shape(out, q_shape, "out");
  expect_shape(dout, q_shape, "dout");
  py::array_t<float, py::array::c_style> lse = py::array_t<float, py::array::c_style>::ensure(lse_in);
  if (!lse || !py::array::ensure(lse_in).dtype().is(py::dtype::of<float>())) {
    throw py::type_error(std::string(kFn) + ": lse must be a float32 array");
  }
  expect_shape(lse, {p.batch, p.num_heads, p.seqlen_q}, "lse");
  py::array dq = output(dq_in, q_shape, "dq");
  py::array dk = output(dk_in, k_shape, "dk");
  py::array dv = output(dv_in, k_shape, "dv");
  p.v_strides = strides_of(v, "v");
  p.out_strides = strides_of(out, "out");
  p.dout_strides = strides_of(dout, "dout");
  p.dq_strides = strides_of(dq, "dq");
  p.dk_strides = strides_of(dk, "dk");
  p.dv_strides = strides_of(dv, "dv");
  std::vector<float> delta(static_cast<size_t>(p.batch) * p.num_heads * p.seqlen_q + 1);
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.out = const_cast<void*>(out.data());
  p.dout = dout.data();
  p.lse = const_cast<float*>(lse.data());
  p.delta = delta.data();
  p.dq = dq.mutable_data();
  p.dk = dk.mutable_data();
  p.dv = dv.mutable_data();
  p.softmax_scale = softmax_scale ? *softmax_scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  p.causal = causal;
  p.dropout_p = dropout_p;
  p.dropout_seed = dropout_seed;
  p.dropout_offset = dropout_offset;
  try {
    py::gil_scoped_release release;
    if (half) {
      mbk::flash::flash_mma_bwd<__half>(p, nullptr);
    } else {
      mbk::flash::flash_mma_bwd<__nv_bfloat16>(p, nullptr);
    }
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  auto back = [&](py::array& a) -> py::object { return half ? a.attr("view")("float16") : py::object(a); };
  return py::make_tuple(back(dq), back(dk), back(dv));
}

}  // namespace

void register_flash_mma_bwd(py::module_& m) {
  m.def("flash_mma_bwd", &bwd, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("dout"),
        py::arg("lse"), py::arg("causal") = false, py::arg("softmax_scale") = py::none(),
        py::arg("dtype") = py::none(), py::arg("dropout_p") = 0.0f, py::arg("dropout_seed") = 0,
        py::arg("dropout_offset") = 0, py::arg("dq") = py::none(), py::arg("dk") = py::none(),
        py::arg("dv") = py::none(),
        "Tensor-core FlashAttention-2 backward on the emulator -> (dq, dk, dv). np.float16 or uint16 (bfloat16 "
        "bits; dtype='float16' for half bits) arrays with their own strides; dq/dk/dv may be given to be written.");
}
