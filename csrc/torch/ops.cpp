// megatron_biomed._C: op schemas of the csrc kernels (namespace megatron_biomed) and the Python
// module entry point. The CUDA implementations are registered next to their bindings
// (layer_norm.cpp, softmax.cpp, flash_attention.cpp); the fake (meta) implementations are
// registered in Python (megatron_biomed/kernels/_csrc.py), which also documents shapes.
#include "common.h"

MBK_TORCH_LIBRARY(MBK_TORCH_NS, m) {
  // x [..., hidden]; mean, rstd float32 [...] (x.shape[:-1]).
  m.def("layer_norm_fwd(Tensor x, Tensor weight, Tensor? bias, float eps) -> (Tensor, Tensor, Tensor)");
  m.def("layer_norm_bwd(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd) -> (Tensor, Tensor, Tensor)");
  m.def("rms_norm_fwd(Tensor x, Tensor weight, float eps) -> (Tensor, Tensor)");
  m.def("rms_norm_bwd(Tensor dy, Tensor x, Tensor weight, Tensor rstd) -> (Tensor, Tensor)");
  // x [batch, heads, seqlen_q, seqlen_k]; mask bool [batch or 1, 1, seqlen_q, seqlen_k], True = masked out.
  m.def("scaled_masked_softmax_fwd(Tensor x, Tensor? mask, float scale) -> Tensor");
  m.def("scaled_causal_softmax_fwd(Tensor x, float scale) -> Tensor");
  m.def("scaled_softmax_bwd(Tensor dy, Tensor y, float scale) -> Tensor");
  // q [b, s_q, h, d]; k, v [b, s_k, h_kv, d] (strided, contiguous last dim); lse float32 [b, h, s_q].
  // Attention dropout: dropout_p, seed (64 bits as int64), offset in [0, 2^32); the backward takes the forward's.
  m.def(
      "flash_attn_fwd(Tensor q, Tensor k, Tensor v, float softmax_scale, bool causal, float dropout_p=0., "
      "int seed=0, int offset=0) -> (Tensor, Tensor)");
  m.def(
      "flash_attn_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, float softmax_scale, "
      "bool causal, float dropout_p=0., int seed=0, int offset=0) -> (Tensor, Tensor, Tensor)");
}

#ifndef MBK_TORCH_EMU
#include <Python.h>

// An importable module with no Python-level functions: importing it runs the registrations above.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "megatron-biomed CUDA kernels (torch.ops.megatron_biomed)", -1,
                                   nullptr};
  return PyModule_Create(&module_def);
}
#endif
