// test_kernels.cpp -- small kernels that exercise the emulator itself (tests/kernels/test_emulator.py):
// index layout, shuffles, votes, barrier, shared memory, atomics, conversions, launch errors, and
// deliberately broken reductions (a removed barrier, a wrong shuffle offset) that the adversarial
// schedules must expose. Exposed as _emu.test_* functions; not part of the kernel API.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "mbk/portability.cuh"

namespace py = pybind11;

namespace {

template <typename T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

// ---------------------------------------------------------------------------------------------
// Layout: per thread, its indices and the linear id of lane 0 of its warp (through a shuffle, so
// it is the emulator's own warp grouping that is observed), its lane's ballot, and __activemask.
__global__ void layout_kernel(int* out) {
  const int lin_in_block = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  const int threads = blockDim.x * blockDim.y * blockDim.z;
  const int block_lin = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
  int* o = out + (static_cast<long>(block_lin) * threads + lin_in_block) * 14;
  const unsigned full = __activemask();
  const int lane0 = __shfl_sync(full, lin_in_block, 0);
  const unsigned ballot = __ballot_sync(full, 1);
  o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
  o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
  o[6] = blockDim.x; o[7] = blockDim.y; o[8] = blockDim.z;
  o[9] = gridDim.x; o[10] = gridDim.y; o[11] = gridDim.z;
  o[12] = lane0;
  o[13] = static_cast<int>(ballot);
}

py::array_t<int> test_layout(py::tuple grid, py::tuple block) {
  const dim3 g(grid[0].cast<unsigned>(), grid[1].cast<unsigned>(), grid[2].cast<unsigned>());
  const dim3 b(block[0].cast<unsigned>(), block[1].cast<unsigned>(), block[2].cast<unsigned>());
  const long n = static_cast<long>(g.x) * g.y * g.z * b.x * b.y * b.z;
  py::array_t<int> out({n, 14L});
  MBK_LAUNCH(layout_kernel, g, b, 0, nullptr, out.mutable_data());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Shuffles: every thread whose lane is in `mask` shuffles a value derived from its linear id.
// kind: 0 idx, 1 up, 2 down, 3 xor. Threads outside the mask write -1.
template <typename T>
__global__ void shuffle_kernel(T* out, int kind, int arg, int width, unsigned mask) {
  const int lin = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  const int lane = lin % warpSize;
  const T v = static_cast<T>(lin * 3 + 1);
  T r = static_cast<T>(-1);
  if ((mask >> lane) & 1u) {
    switch (kind) {
      case 0: r = __shfl_sync(mask, v, arg, width); break;
      case 1: r = __shfl_up_sync(mask, v, static_cast<unsigned>(arg), width); break;
      case 2: r = __shfl_down_sync(mask, v, static_cast<unsigned>(arg), width); break;
      default: r = __shfl_xor_sync(mask, v, arg, width); break;
    }
  }
  out[lin] = r;
}

template <typename T>
py::array_t<T> test_shuffle(int threads, int kind, int arg, int width, unsigned mask) {
  py::array_t<T> out(threads);
  MBK_LAUNCH(shuffle_kernel<T>, 1, threads, 0, nullptr, out.mutable_data(), kind, arg, width, mask);
  return out;
}

// __half through a shuffle (2-byte type) and votes.
__global__ void vote_kernel(const int* pred, int* out) {
  const int t = threadIdx.x;
  const unsigned ballot = __ballot_sync(0xffffffffu, pred[t]);
  const int any = __any_sync(0xffffffffu, pred[t]);
  const int all = __all_sync(0xffffffffu, pred[t]);
  const __half h = __shfl_xor_sync(0xffffffffu, __float2half(static_cast<float>(t) + 0.5f), 1);
  out[t * 4 + 0] = static_cast<int>(ballot);
  out[t * 4 + 1] = any;
  out[t * 4 + 2] = all;
  out[t * 4 + 3] = static_cast<int>(__half2float(h) * 2.0f);
}

py::array_t<int> test_votes(Arr<int> pred) {
  const int n = static_cast<int>(pred.size());
  py::array_t<int> out({n, 4});
  MBK_LAUNCH(vote_kernel, 1, n, 0, nullptr, pred.data(), out.mutable_data());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Barrier: `rounds` rounds of write-own-slot / barrier / read-a-neighbour's-slot / barrier, using
// both static and dynamic shared memory. Correct under every schedule only if __syncthreads is a
// real barrier.
__global__ void barrier_kernel(const int* shift, int rounds, int* out) {
  MBK_SHARED int stat[1024];
  MBK_DYNAMIC_SHARED(int, dyn);
  const int n = blockDim.x;
  const int t = threadIdx.x;
  int acc = t + 1000 * blockIdx.x;
  for (int r = 0; r < rounds; ++r) {
    int* buf = (r & 1) ? dyn : stat;
    buf[t] = acc;
    __syncthreads();
    acc = buf[(t + shift[r]) % n] * 3 + r;
    __syncthreads();
  }
  out[blockIdx.x * n + t] = acc;
}

py::array_t<int> test_barrier(int blocks, int threads, Arr<int> shift) {
  const int rounds = static_cast<int>(shift.size());
  py::array_t<int> out({blocks, threads});
  MBK_LAUNCH(barrier_kernel, blocks, threads, threads * sizeof(int), nullptr, shift.data(), rounds,
             out.mutable_data());
  return out;
}

// Dynamic shared memory: each thread reports the bit pattern of never-written dynamic smem (the
// emulator poisons it with 0xFF bytes), and the alignment of the pointer.
__global__ void smem_probe_kernel(unsigned* out) {
  MBK_DYNAMIC_SHARED(unsigned, dyn);
  out[threadIdx.x * 2] = dyn[threadIdx.x];
  out[threadIdx.x * 2 + 1] = static_cast<unsigned>(reinterpret_cast<uintptr_t>(dyn) % 16);
}

py::array_t<unsigned> test_smem_probe(int threads, long smem_bytes, long max_smem_bytes) {
  py::array_t<unsigned> out({threads, 2});
  // 0 means CUDA's default limit (48 KiB); set every time so the outcome does not depend on test order
  MBK_SET_MAX_DYNAMIC_SMEM(smem_probe_kernel, max_smem_bytes > 0 ? max_smem_bytes : 48 * 1024);
  MBK_LAUNCH(smem_probe_kernel, 1, threads, static_cast<size_t>(smem_bytes), nullptr, out.mutable_data());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Atomics from every thread of every block.
__global__ void atomics_kernel(const float* xf, const int* xi, float* sum_f, int* sum_i, int* max_i,
                               unsigned* cas_count) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(sum_f, xf[g]);
  atomicAdd(sum_i, xi[g]);
  atomicMax(max_i, xi[g]);
  unsigned old = *cas_count, assumed;
  do {  // an increment through compare-and-swap
    assumed = old;
    old = atomicCAS(cas_count, assumed, assumed + 1u);
  } while (old != assumed);
}

py::tuple test_atomics(int blocks, int threads, Arr<float> xf, Arr<int> xi) {
  if (xf.size() != blocks * threads || xi.size() != blocks * threads)
    throw std::invalid_argument("test_atomics: inputs must have blocks * threads elements");
  float sf = 0.0f;
  int si = 0, mi = -2147483647 - 1;
  unsigned cnt = 0;
  MBK_LAUNCH(atomics_kernel, blocks, threads, 0, nullptr, xf.data(), xi.data(), &sf, &si, &mi, &cnt);
  return py::make_tuple(sf, si, mi, cnt);
}

// ---------------------------------------------------------------------------------------------
// Conversions, run in a kernel (grid-stride loop).
__global__ void to_half_kernel(const float* x, unsigned short* h, unsigned short* b, float* back_h,
                               float* back_b, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(blockDim.x) * gridDim.x) {
    const __half hv = __float2half(x[i]);
    const __nv_bfloat16 bv = __float2bfloat16(x[i]);
    h[i] = __half_as_ushort(hv);
    b[i] = __bfloat16_as_ushort(bv);
    back_h[i] = __half2float(__ushort_as_half(h[i]));
    back_b[i] = __bfloat162float(__ushort_as_bfloat16(b[i]));
  }
}

py::tuple test_convert(Arr<float> x) {
  const long n = static_cast<long>(x.size());
  py::array_t<unsigned short> h(n), b(n);
  py::array_t<float> bh(n), bb(n);
  MBK_LAUNCH(to_half_kernel, 4, 128, 0, nullptr, x.data(), h.mutable_data(), b.mutable_data(), bh.mutable_data(),
             bb.mutable_data(), n);
  return py::make_tuple(h, b, bh, bb);
}

__global__ void from_bits_kernel(const unsigned short* bits, float* from_h, float* from_b, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(blockDim.x) * gridDim.x) {
    from_h[i] = __half2float(__ushort_as_half(bits[i]));
    from_b[i] = __bfloat162float(__ushort_as_bfloat16(bits[i]));
  }
}

py::tuple test_from_bits(Arr<unsigned short> bits) {
  const long n = static_cast<long>(bits.size());
  py::array_t<float> fh(n), fb(n);
  MBK_LAUNCH(from_bits_kernel, 4, 128, 0, nullptr, bits.data(), fh.mutable_data(), fb.mutable_data(), n);
  return py::make_tuple(fh, fb);
}

// ---------------------------------------------------------------------------------------------
// Block sum reduction: warp shuffles, then one partial per warp in shared memory, then warp 0.
// Bug::none is correct; Bug::no_barrier drops the __syncthreads between writing the per-warp
// partials and reading them; Bug::shuffle_offset starts the butterfly at 8 instead of 16, so the two
// half-warps are never combined.
enum class Bug { none = 0, no_barrier = 1, shuffle_offset = 2 };

template <Bug kBug>
__global__ void block_sum_kernel(const float* x, float* out, int n) {
  MBK_SHARED float partial[32];
  const float* row = x + static_cast<long>(blockIdx.x) * n;
  float s = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += row[i];
  const int first = kBug == Bug::shuffle_offset ? 8 : 16;
  for (int o = first; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const int warp = threadIdx.x / warpSize, lane = threadIdx.x % warpSize;
  if (lane == 0) partial[warp] = s;
  if (kBug != Bug::no_barrier) __syncthreads();
  if (warp == 0) {
    const int nwarps = blockDim.x / warpSize;
    float v = lane < nwarps ? partial[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) out[blockIdx.x] = v;
  }
  // Keep the block's partials alive until warp 0 has read them (the next row's block reuses them).
  __syncthreads();
}

py::array_t<float> test_block_sum(Arr<float> x, int threads, int bug) {
  if (x.ndim() != 2) throw std::invalid_argument("test_block_sum: x must be 2-D");
  if (threads % 32 != 0) throw std::invalid_argument("test_block_sum: threads must be a multiple of 32");
  const int rows = static_cast<int>(x.shape(0)), n = static_cast<int>(x.shape(1));
  py::array_t<float> out(rows);
  switch (static_cast<Bug>(bug)) {
    case Bug::none: MBK_LAUNCH(block_sum_kernel<Bug::none>, rows, threads, 0, nullptr, x.data(), out.mutable_data(), n); break;
    case Bug::no_barrier: MBK_LAUNCH(block_sum_kernel<Bug::no_barrier>, rows, threads, 0, nullptr, x.data(), out.mutable_data(), n); break;
    case Bug::shuffle_offset: MBK_LAUNCH(block_sum_kernel<Bug::shuffle_offset>, rows, threads, 0, nullptr, x.data(), out.mutable_data(), n); break;
    default: throw std::invalid_argument("test_block_sum: bug must be 0, 1 or 2");
  }
  return out;
}

// Two block reductions in a row (sum and sum of squares) sharing one partials array. kBroken drops
// the __syncthreads after the first result is read, so a warp that runs ahead can overwrite its
// partial for the second sum while another warp still reads the first: a write-after-read race that
// only a schedule letting one warp run far ahead can show.
template <bool kBroken>
__device__ float block_sum_shared(float v, float* partial) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / warpSize, lane = threadIdx.x % warpSize;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / warpSize); ++w) total += partial[w];
  if (!kBroken) __syncthreads();
  return total;
}

template <bool kBroken>
__global__ void two_sums_kernel(const float* x, float* out, int n) {
  MBK_SHARED float partial[32];
  const float* row = x + static_cast<long>(blockIdx.x) * n;
  float s = 0.0f, s2 = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    s += row[i];
    s2 += row[i] * row[i];
  }
  const float total = block_sum_shared<kBroken>(s, partial);
  const float total2 = block_sum_shared<kBroken>(s2, partial);
  // every thread reports what it got: they must all agree
  float* o = out + (static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x) * 2;
  o[0] = total;
  o[1] = total2;
}

py::array_t<float> test_two_sums(Arr<float> x, int threads, bool broken) {
  if (x.ndim() != 2) throw std::invalid_argument("test_two_sums: x must be 2-D");
  if (threads % 32 != 0) throw std::invalid_argument("test_two_sums: threads must be a multiple of 32");
  const int rows = static_cast<int>(x.shape(0)), n = static_cast<int>(x.shape(1));
  py::array_t<float> out({rows, threads, 2});
  if (broken) MBK_LAUNCH(two_sums_kernel<true>, rows, threads, 0, nullptr, x.data(), out.mutable_data(), n);
  else MBK_LAUNCH(two_sums_kernel<false>, rows, threads, 0, nullptr, x.data(), out.mutable_data(), n);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Misuse the emulator must report rather than hang or return garbage.
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) __syncthreads();  // the other threads never arrive
  out[threadIdx.x] = 1;
}
__global__ void early_exit_shuffle_kernel(int* out) {
  if (threadIdx.x == 5) return;  // lane 5 is in the mask but never arrives
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}
__global__ void partial_warp_read_kernel(int* out) {
  // block of 48 threads: warp 1 has 16 lanes; lane 0 of warp 1 reads lane 16, which does not exist
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<int>(threadIdx.x), 16);
}
__global__ void noop_kernel(int*) {}

void test_misuse(const std::string& what) {
  int buf[2048] = {0};
  if (what == "divergent_barrier") MBK_LAUNCH(divergent_barrier_kernel, 1, 64, 0, nullptr, buf);
  else if (what == "early_exit_shuffle") MBK_LAUNCH(early_exit_shuffle_kernel, 1, 32, 0, nullptr, buf);
  else if (what == "partial_warp_read") MBK_LAUNCH(partial_warp_read_kernel, 1, 48, 0, nullptr, buf);
  else if (what == "too_many_threads") MBK_LAUNCH(noop_kernel, 1, dim3(32, 33, 1), 0, nullptr, buf);
  else if (what == "block_z") MBK_LAUNCH(noop_kernel, 1, dim3(1, 1, 65), 0, nullptr, buf);
  else if (what == "sync_outside_kernel") __syncthreads();
  else throw std::invalid_argument("test_misuse: unknown case " + what);
}

}  // namespace

void register_test_kernels(py::module_& m) {
  m.def("test_layout", &test_layout, py::arg("grid"), py::arg("block"));
  m.def("test_shuffle_int", &test_shuffle<int>, py::arg("threads"), py::arg("kind"), py::arg("arg"), py::arg("width"),
        py::arg("mask"));
  m.def("test_shuffle_double", &test_shuffle<double>, py::arg("threads"), py::arg("kind"), py::arg("arg"),
        py::arg("width"), py::arg("mask"));
  m.def("test_votes", &test_votes, py::arg("pred"));
  m.def("test_barrier", &test_barrier, py::arg("blocks"), py::arg("threads"), py::arg("shift"));
  m.def("test_smem_probe", &test_smem_probe, py::arg("threads"), py::arg("smem_bytes"), py::arg("max_smem_bytes") = 0);
  m.def("test_atomics", &test_atomics, py::arg("blocks"), py::arg("threads"), py::arg("xf"), py::arg("xi"));
  m.def("test_convert", &test_convert, py::arg("x"));
  m.def("test_from_bits", &test_from_bits, py::arg("bits"));
  m.def("test_block_sum", &test_block_sum, py::arg("x"), py::arg("threads"), py::arg("bug") = 0,
        "Block sum of each row; bug=1 drops a __syncthreads, bug=2 uses a wrong shuffle offset.");
  m.def("test_two_sums", &test_two_sums, py::arg("x"), py::arg("threads"), py::arg("broken") = false,
        "Per row and thread, (sum, sum of squares) [rows, threads, 2]; broken=True drops the barrier protecting the shared partials.");
  m.def("test_misuse", &test_misuse, py::arg("what"));
}
