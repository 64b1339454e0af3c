// flash_mma_fwd_bindings.cpp -- the tensor-core FlashAttention-2 forward (csrc/kernels/flash_attention_mma_fwd.cuh)
// on the CPU emulator, on numpy arrays, for tests.
//
//   flash_mma_fwd(q, k, v, causal=False, softmax_scale=None, dtype=None, dropout_p=0.0, seed=0, offset=0,
//                 out=None) -> (out, lse)
//   flash_mma_fwd_layout_ok(q, k, v, out=None) -> bool   (alignment and strides the kernel can take)
//
// q [batch, seqlen_q, heads, head_dim], k/v [batch, seqlen_k, kv_heads, head_dim] with any strides in the first
// three dimensions (numpy views, e.g. a [seq, batch, heads, dim] array transposed to [batch, seq, ...]) and a
// contiguous last dimension: the strides go to the kernel as they are (no copies), so the kernel's stride and
// alignment checks are what a caller meets. `out` (optional) is written in place with its own strides; otherwise a
// new contiguous array is returned. lse: [batch, heads, seqlen_q] float32.
// Element type: np.float16 arrays run the __half kernel, uint16 arrays the __nv_bfloat16 kernel (bit patterns);
// `dtype` ("float16" / "bfloat16") overrides the guess for uint16 arrays. Dropout: p in [0, 1), Philox seed and
// offset as in mbk/philox.cuh. Invalid arguments raise ValueError / TypeError naming the argument.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional arguments

#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/flash_attention_mma_fwd.cuh"

namespace py = pybind11;

namespace {

constexpr const char* kFn = "flash_mma_fwd";

enum class Elem { f16, bf16 };

Elem elem_from(const py::array& q, const std::optional<std::string>& dtype) {
  const py::dtype dt = q.dtype();
  const bool is_f16 = dt.kind() == 'f' && dt.itemsize() == 2;
  const bool is_u16 = dt.is(py::dtype::of<uint16_t>());
  if (dtype && *dtype != "float16" && *dtype != "bfloat16") {
    throw py::value_error(std::string(kFn) + ": dtype must be 'float16' or 'bfloat16', not '" + *dtype + "'");
  }
  if (!dtype) {
    if (is_f16) return Elem::f16;
    if (is_u16) return Elem::bf16;
  } else if (*dtype == "float16" && (is_f16 || is_u16)) {
    return Elem::f16;
  } else if (*dtype == "bfloat16" && is_u16) {
    return Elem::bf16;
  }
  throw py::type_error(std::string(kFn) + ": q has numpy dtype " + py::str(dt).cast<std::string>() +
                       (dtype ? " which cannot hold dtype=" + *dtype : std::string()) +
                       "; the tensor-core kernel takes float16, or uint16 (bfloat16 bits)");
}

// Checks dtype and rank of a [batch, seqlen, heads, head_dim] array and returns its strides in elements.
mbk::flash::Strides strides_of(const py::array& a, const py::dtype& want, const char* name) {
  if (!a.dtype().is(want)) {
    throw py::type_error(std::string(kFn) + ": " + name + " has dtype " + py::str(a.dtype()).cast<std::string>() +
                         " but must match q (" + py::str(want).cast<std::string>() + ")");
  }
  if (a.ndim() != 4) {
    throw py::value_error(std::string(kFn) + ": " + name + " must have 4 dimensions, got " + std::to_string(a.ndim()));
  }
  const py::ssize_t item = a.itemsize();
  if (a.size() > 0 && a.shape(3) > 1 && a.strides(3) != item) {  // (numpy gives empty arrays stride 0)
    throw py::value_error(std::string(kFn) + ": " + name + " must be contiguous in its last dimension (stride " +
                          std::to_string(a.strides(3)) + " bytes)");
  }
  for (int i = 0; i < 3; ++i) {
    if (a.strides(i) % item != 0) {
      throw py::value_error(std::string(kFn) + ": " + name + " has a stride that is not a whole number of elements");
    }
  }
  mbk::flash::Strides s;
  s.batch = a.strides(0) / item;
  s.row = a.strides(1) / item;
  s.head = a.strides(2) / item;
  return s;
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

// The call's tensors and geometry: dtype, shapes and strides checked, `out` allocated (contiguous) unless given.
struct Call {
  mbk::flash::FlashParams p;
  py::array out;
  py::array_t<float> lse;
};

Call prepare(const py::array& q, const py::array& k, const py::array& v, const std::optional<py::array>& out_arg) {
  const py::dtype dt = q.dtype();
  Call c;
  mbk::flash::FlashParams& p = c.p;
  p.q_strides = strides_of(q, dt, "q");
  p.k_strides = strides_of(k, dt, "k");
  p.v_strides = strides_of(v, dt, "v");
  p.batch = static_cast<int>(q.shape(0));
  p.seqlen_q = static_cast<int>(q.shape(1));
  p.num_heads = static_cast<int>(q.shape(2));
  p.head_dim = static_cast<int>(q.shape(3));
  p.seqlen_k = static_cast<int>(k.shape(1));
  p.num_kv_heads = static_cast<int>(k.shape(2));
  expect_shape(k, {p.batch, p.seqlen_k, p.num_kv_heads, p.head_dim}, "k");
  expect_shape(v, {p.batch, p.seqlen_k, p.num_kv_heads, p.head_dim}, "v");
  c.out = out_arg ? *out_arg : py::array(dt, std::vector<py::ssize_t>{p.batch, p.seqlen_q, p.num_heads, p.head_dim});
  p.out_strides = strides_of(c.out, dt, "out");
  expect_shape(c.out, {p.batch, p.seqlen_q, p.num_heads, p.head_dim}, "out");
  if (!c.out.writeable()) throw py::value_error(std::string(kFn) + ": out is not writeable");
  c.lse = py::array_t<float>(std::vector<py::ssize_t>{p.batch, p.num_heads, p.seqlen_q});
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.out = c.out.mutable_data();
  p.lse = c.lse.mutable_data();
  return c;
}

bool layout_ok(const py::array& q, const py::array& k, const py::array& v, std::optional<py::array> out_arg) {
  return mbk::flash::flash_mma_fwd_layout_ok(prepare(q, k, v, out_arg).p);
}

py::tuple fwd(const py::array& q, const py::array& k, const py::array& v, bool causal,
              std::optional<float> softmax_scale, std::optional<std::string> dtype, float dropout_p, uint64_t seed,
              uint32_t offset, std::optional<py::array> out_arg) {
  const Elem e = elem_from(q, dtype);
  Call c = prepare(q, k, v, out_arg);
  mbk::flash::FlashParams& p = c.p;
  p.softmax_scale = softmax_scale ? *softmax_scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  p.causal = causal;
  p.dropout_p = dropout_p;
  p.dropout_seed = seed;
  p.dropout_offset = offset;
  try {
    py::gil_scoped_release release;
    if (e == Elem::f16) {
      mbk::flash::flash_mma_fwd<__half>(p, nullptr);
    } else {
      mbk::flash::flash_mma_fwd<__nv_bfloat16>(p, nullptr);
    }
  } catch (const std::invalid_argument& err) {
    throw py::value_error(err.what());
  }
  return py::make_tuple(c.out, c.lse);
}

}  // namespace

void register_flash_mma_fwd(py::module_& m) {
  m.def("flash_mma_fwd", &fwd, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("causal") = false,
        py::arg("softmax_scale") = py::none(), py::arg("dtype") = py::none(), py::arg("dropout_p") = 0.0f,
        py::arg("seed") = 0, py::arg("offset") = 0, py::arg("out") = py::none(),
        "Tensor-core FlashAttention-2 forward on the emulator. q [B, Sq, H, D], k/v [B, Sk, Hkv, D] (strided "
        "numpy views allowed, last dim contiguous) -> (out [B, Sq, H, D], lse [B, H, Sq] float32). float16 or "
        "uint16 (bfloat16 bits) arrays; `out` is written in place when given.");
  m.def("flash_mma_fwd_layout_ok", &layout_ok, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out") = py::none(),
        "Whether the tensor-core forward takes these arrays as they are (16-byte aligned, strides multiples of 8 "
        "elements): mbk::flash::flash_mma_fwd_layout_ok, what a dispatcher asks before choosing the kernel.");
}
