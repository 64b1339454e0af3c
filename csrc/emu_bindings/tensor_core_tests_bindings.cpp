// tensor_core_tests_bindings.cpp -- test kernels for the tensor-core instructions of
// mbk/tensor_core.cuh on the CPU emulator (tests/kernels/test_tensor_core_emu.py). Each kernel loads
// its operands the way mbk/tensor_core.cuh documents, so the tests check the emulator's fragment
// layouts against products computed in numpy. Not part of the kernel API.
//
//   tc_mma(a, b, c, dtype, alias=False) -> d        a [W,16,16], b [W,16,8] uint16 bits; c [W,16,8] f32
//       Warp w computes d[w] = a[w] @ b[w] + c[w] with fragments loaded straight from global memory.
//       alias: accumulate in place (d and c the same registers).
//   tc_ldmatrix(mats, row_slot, row_stride, trans) -> r [W,32,N] uint32
//       mats [W,N,8,8] uint16 (N = 1, 2, 4); row i of matrix j of warp w is stored in shared memory at
//       slot row_slot[w,j,i] (slots are row_stride uint16 apart). Each lane passes its row's address
//       (lanes beyond 8N a bogus, misaligned one, which must be ignored) and then overwrites its own
//       row, so an emulator that read rows lane by lane would give wrong registers.
//   tc_gemm(a, b, b_k_major, dtype) -> d [M,N] f32
//       a [M,K] (M = 16 x warps), b [K,N] (b_k_major) or b^T [N,K]; operands reach shared memory by
//       cp_async_16 (two commit groups), then ldmatrix_x4 (A), ldmatrix_x4_trans (B k-major) or
//       ldmatrix_x4 (B^T), and mma_m16n8k16 accumulating over K. K, N multiples of 16.
//   tc_cp_async(src, old_byte, threads) -> seen [threads, 8, 16] uint8
//       The visibility protocol (see cp_async_kernel).
//   tc_misuse(what)  raises the emulator's error for a misuse case.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "mbk/portability.cuh"
#include "mbk/tensor_core.cuh"

namespace py = pybind11;

namespace {

template <typename T>
using Arr = py::array_t<T, py::array::c_style>;

template <typename F>
void dispatch_16bit(const std::string& dtype, const char* fn, F&& f) {
  if (dtype == "float16") f(__half{});
  else if (dtype == "bfloat16") f(__nv_bfloat16{});
  else throw py::value_error(std::string(fn) + ": dtype must be 'float16' or 'bfloat16', not '" + dtype + "'");
}

template <typename T>
Arr<T> checked(const py::object& obj, int ndim, const char* fn, const char* name) {
  py::array a = py::array::ensure(obj);
  if (!a || !a.dtype().is(py::dtype::of<T>()) || a.ndim() != ndim)
    throw py::type_error(std::string(fn) + ": " + name + " must be a " + std::to_string(ndim) + "-d " +
                         py::str(py::dtype::of<T>()).cast<std::string>() + " array");
  return Arr<T>::ensure(a);
}

void check_dim(py::ssize_t got, py::ssize_t want, const char* fn, const char* what) {
  if (got != want)
    throw py::value_error(std::string(fn) + ": " + what + " is " + std::to_string(got) + ", expected " +
                          std::to_string(want));
}

inline uint32_t pack2(const uint16_t* p) { return p[0] | static_cast<uint32_t>(p[1]) << 16; }

// ---------------------------------------------------------------------------------------------
// mma with fragments from global memory (documented layout; g = lane/4, t = lane%4).
template <typename T>
__global__ void mma_kernel(const uint16_t* a, const uint16_t* b, const float* c, float* d, bool alias) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const uint16_t* A = a + warp * 256;  // [16][16]
  const uint16_t* B = b + warp * 128;  // [16][8]
  const float* C = c + warp * 128;     // [16][8]
  float* D = d + warp * 128;
  const uint32_t af[4] = {pack2(A + g * 16 + 2 * t), pack2(A + (g + 8) * 16 + 2 * t), pack2(A + g * 16 + 2 * t + 8),
                          pack2(A + (g + 8) * 16 + 2 * t + 8)};
  uint16_t bk[4] = {B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g], B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]};
  const uint32_t bf[2] = {pack2(bk), pack2(bk + 2)};
  float cf[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  float df[4];
  if (alias) {
    mbk::mma_m16n8k16<T>(cf, af, bf, cf);
    memcpy(df, cf, sizeof(df));
  } else {
    mbk::mma_m16n8k16<T>(df, af, bf, cf);
  }
  D[g * 8 + 2 * t] = df[0];
  D[g * 8 + 2 * t + 1] = df[1];
  D[(g + 8) * 8 + 2 * t] = df[2];
  D[(g + 8) * 8 + 2 * t + 1] = df[3];
}

py::array_t<float> tc_mma(const py::object& a_obj, const py::object& b_obj, const py::object& c_obj,
                          const std::string& dtype, bool alias) {
  const char* fn = "tc_mma";
  auto a = checked<uint16_t>(a_obj, 3, fn, "a");
  auto b = checked<uint16_t>(b_obj, 3, fn, "b");
  auto c = checked<float>(c_obj, 3, fn, "c");
  const py::ssize_t w = a.shape(0);
  if (w < 1 || w > 32) throw py::value_error("tc_mma: 1 to 32 problems (one per warp)");
  check_dim(a.shape(1), 16, fn, "a.shape[1]");
  check_dim(a.shape(2), 16, fn, "a.shape[2]");
  for (int i = 0; i < 3; ++i) check_dim(b.shape(i), i == 0 ? w : (i == 1 ? 16 : 8), fn, "a dimension of b");
  for (int i = 0; i < 3; ++i) check_dim(c.shape(i), i == 0 ? w : (i == 1 ? 16 : 8), fn, "a dimension of c");
  py::array_t<float> d({w, py::ssize_t(16), py::ssize_t(8)});
  dispatch_16bit(dtype, fn, [&](auto tag) {
    using T = decltype(tag);
    MBK_LAUNCH(mma_kernel<T>, 1, static_cast<unsigned>(32 * w), 0, nullptr, a.data(), b.data(), c.data(),
               d.mutable_data(), alias);
  });
  return d;
}

// ---------------------------------------------------------------------------------------------
// ldmatrix: rows at given slots of shared memory.
template <int N, bool kTrans>
__global__ void ldmatrix_kernel(const uint16_t* mats, const int* row_slot, int slots, int stride, uint32_t* out) {
  MBK_DYNAMIC_SHARED(uint16_t, smem);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint16_t* mine = smem + static_cast<long>(warp) * slots * stride;
  const int* slot = row_slot + warp * 8 * N;
  for (int r = lane; r < 8 * N; r += 32)
    for (int e = 0; e < 8; ++e) mine[slot[r] * stride + e] = mats[(warp * 8 * N + r) * 8 + e];
  __syncwarp();
  // Lanes past the matrices give a misaligned, dangling address: the instruction ignores it.
  const void* addr = lane < 8 * N ? static_cast<const void*>(mine + slot[lane] * stride)
                                  : reinterpret_cast<const void*>(uintptr_t(0x7) + lane);
  uint32_t r[N];
  if (N == 1) {
    uint32_t (&r1)[1] = *reinterpret_cast<uint32_t(*)[1]>(r);
    kTrans ? mbk::ldmatrix_x1_trans(r1, addr) : mbk::ldmatrix_x1(r1, addr);
  } else if (N == 2) {
    uint32_t (&r2)[2] = *reinterpret_cast<uint32_t(*)[2]>(r);
    kTrans ? mbk::ldmatrix_x2_trans(r2, addr) : mbk::ldmatrix_x2(r2, addr);
  } else {
    uint32_t (&r4)[4] = *reinterpret_cast<uint32_t(*)[4]>(r);
    kTrans ? mbk::ldmatrix_x4_trans(r4, addr) : mbk::ldmatrix_x4(r4, addr);
  }
  // Overwrite this lane's row at once: the instruction must already have read every row.
  if (lane < 8 * N)
    for (int e = 0; e < 8; ++e) mine[slot[lane] * stride + e] = 0xdead;
  for (int i = 0; i < N; ++i) out[(warp * 32 + lane) * N + i] = r[i];
}

py::array_t<uint32_t> tc_ldmatrix(const py::object& mats_obj, const py::object& slot_obj, int row_stride, bool trans) {
  const char* fn = "tc_ldmatrix";
  auto mats = checked<uint16_t>(mats_obj, 4, fn, "mats");
  auto slots = checked<int>(slot_obj, 3, fn, "row_slot");
  const py::ssize_t w = mats.shape(0), n = mats.shape(1);
  if (w < 1 || w > 32) throw py::value_error("tc_ldmatrix: 1 to 32 warps");
  if (n != 1 && n != 2 && n != 4) throw py::value_error("tc_ldmatrix: mats.shape[1] must be 1, 2 or 4");
  check_dim(mats.shape(2), 8, fn, "mats.shape[2]");
  check_dim(mats.shape(3), 8, fn, "mats.shape[3]");
  check_dim(slots.shape(0), w, fn, "row_slot.shape[0]");
  check_dim(slots.shape(1), n, fn, "row_slot.shape[1]");
  check_dim(slots.shape(2), 8, fn, "row_slot.shape[2]");
  if (row_stride < 8 || row_stride % 8 != 0)
    throw py::value_error("tc_ldmatrix: row_stride must be a multiple of 8 uint16 (16 bytes)");
  int nslots = 0;
  for (py::ssize_t i = 0; i < slots.size(); ++i) {
    if (slots.data()[i] < 0) throw py::value_error("tc_ldmatrix: negative row slot");
    nslots = std::max(nslots, slots.data()[i] + 1);
  }
  const size_t smem = static_cast<size_t>(w) * nslots * row_stride * sizeof(uint16_t);
  if (smem > 48 * 1024) throw py::value_error("tc_ldmatrix: the slots need more than 48 KiB of shared memory");
  py::array_t<uint32_t> out({w, py::ssize_t(32), n});
  const unsigned threads = static_cast<unsigned>(32 * w);
  const auto run = [&](auto kernel) {
    MBK_LAUNCH(kernel, 1, threads, smem, nullptr, mats.data(), slots.data(), nslots, row_stride, out.mutable_data());
  };
  if (n == 1) trans ? run(ldmatrix_kernel<1, true>) : run(ldmatrix_kernel<1, false>);
  else if (n == 2) trans ? run(ldmatrix_kernel<2, true>) : run(ldmatrix_kernel<2, false>);
  else trans ? run(ldmatrix_kernel<4, true>) : run(ldmatrix_kernel<4, false>);
  return out;
}

// ---------------------------------------------------------------------------------------------
// End to end: cp.async to shared memory, ldmatrix fragments, mma over K (d aliasing c).
constexpr int kPad = 8;  // uint16 of padding per shared row (keeps rows 16-byte aligned)

template <typename T>
__global__ void gemm_kernel(const uint16_t* a, const uint16_t* b, float* d, int M, int N, int K, bool b_k_major) {
  MBK_DYNAMIC_SHARED(uint16_t, smem);
  const int lda = K + kPad;
  const int b_rows = b_k_major ? K : N, b_cols = b_k_major ? N : K, ldb = b_cols + kPad;
  uint16_t* sa = smem;
  uint16_t* sb = smem + M * lda;
  // Each 16-byte chunk (8 elements) of A, then of B, by one thread: A in one commit group, B in the next.
  for (int i = threadIdx.x; i < M * K / 8; i += blockDim.x) {
    const int r = i / (K / 8), c8 = i % (K / 8);
    mbk::cp_async_16(sa + r * lda + 8 * c8, a + r * K + 8 * c8, true);
  }
  mbk::cp_async_commit();
  for (int i = threadIdx.x; i < b_rows * b_cols / 8; i += blockDim.x) {
    const int r = i / (b_cols / 8), c8 = i % (b_cols / 8);
    mbk::cp_async_16(sb + r * ldb + 8 * c8, b + r * b_cols + 8 * c8, true);
  }
  mbk::cp_async_commit();
  mbk::cp_async_wait<0>();
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int m0 = 16 * warp;
  for (int n0 = 0; n0 < N; n0 += 16) {
    float acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    for (int k0 = 0; k0 < K; k0 += 16) {
      // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
      uint32_t af[4];
      mbk::ldmatrix_x4(af, sa + (m0 + lane % 8 + 8 * ((lane / 8) % 2)) * lda + k0 + 8 * (lane / 16));
      uint32_t bf[4];  // {b[0], b[1]} of n-tile n0, then of n-tile n0 + 8
      if (b_k_major) {  // B [K][N]: matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
        mbk::ldmatrix_x4_trans(bf, sb + (k0 + lane % 8 + 8 * ((lane / 8) % 2)) * ldb + n0 + 8 * (lane / 16));
      } else {  // B^T [N][K]: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
        mbk::ldmatrix_x4(bf, sb + (n0 + lane % 8 + 8 * (lane / 16)) * ldb + k0 + 8 * ((lane / 8) % 2));
      }
      const uint32_t b0[2] = {bf[0], bf[1]}, b1[2] = {bf[2], bf[3]};
      mbk::mma_m16n8k16<T>(acc[0], af, b0, acc[0]);
      mbk::mma_m16n8k16<T>(acc[1], af, b1, acc[1]);
    }
    for (int j = 0; j < 2; ++j) {
      float* row0 = d + (m0 + g) * N + n0 + 8 * j + 2 * t;
      float* row8 = d + (m0 + g + 8) * N + n0 + 8 * j + 2 * t;
      row0[0] = acc[j][0];
      row0[1] = acc[j][1];
      row8[0] = acc[j][2];
      row8[1] = acc[j][3];
    }
  }
}

py::array_t<float> tc_gemm(const py::object& a_obj, const py::object& b_obj, bool b_k_major, const std::string& dtype) {
  const char* fn = "tc_gemm";
  auto a = checked<uint16_t>(a_obj, 2, fn, "a");
  auto b = checked<uint16_t>(b_obj, 2, fn, "b");
  const int M = static_cast<int>(a.shape(0)), K = static_cast<int>(a.shape(1));
  const int N = static_cast<int>(b_k_major ? b.shape(1) : b.shape(0));
  check_dim(b_k_major ? b.shape(0) : b.shape(1), K, fn, "b's k dimension");
  if (M < 16 || M % 16 != 0 || M > 16 * 32 || K < 16 || K % 16 != 0 || N < 16 || N % 16 != 0)
    throw py::value_error("tc_gemm: M (up to 512), K and N must be positive multiples of 16");
  const size_t smem = (static_cast<size_t>(M) * (K + kPad) + static_cast<size_t>(b_k_major ? K : N) *
                                                                   ((b_k_major ? N : K) + kPad)) * sizeof(uint16_t);
  if (smem > 48 * 1024) throw py::value_error("tc_gemm: operands over 48 KiB of shared memory");
  py::array_t<float> d({M, N});
  dispatch_16bit(dtype, fn, [&](auto tag) {
    using T = decltype(tag);
    MBK_LAUNCH(gemm_kernel<T>, 1, static_cast<unsigned>(2 * M), smem, nullptr, a.data(), b.data(), d.mutable_data(),
               M, N, K, b_k_major);
  });
  return d;
}

// ---------------------------------------------------------------------------------------------
// cp.async visibility. Thread t owns chunks 3t, 3t+1, 3t+2 (16 bytes each) of shared memory, all
// first filled with `old_byte`; it copies src chunk 2t into chunk 3t (group 1), src chunk 2t+1
// into chunk 3t+1 (group 2), and zero-fills chunk 3t+2 (left uncommitted at first). It records
//   seen[t,0] chunk 3t before any wait                       -> old
//   seen[t,1] chunk 3t   after wait<1>                      -> new (group 1 retired)
//   seen[t,2] chunk 3t+1 after wait<1>                      -> old (group 2 pending)
//   seen[t,3] chunk 3t+1 after wait<0>                      -> new
//   seen[t,4] chunk 3t+2 after wait<0>                      -> old (never committed)
//   seen[t,5] chunk 3t+2 after commit + wait<0>             -> zeros
//   seen[t,6] chunk 3u of thread u = (t+1) % T after __syncthreads   -> new
//   seen[t,7] chunk 3u+1 of thread u = T-1-t after __syncthreads     -> new
__global__ void cp_async_kernel(const uint8_t* src, int old_byte, uint8_t* seen) {
  MBK_DYNAMIC_SHARED(uint8_t, smem);
  const int t = threadIdx.x, T = blockDim.x;
  uint8_t* mine = smem + 48 * t;
  memset(mine, old_byte, 48);
  __syncthreads();
  uint8_t* out = seen + 128 * t;
  mbk::cp_async_16(mine, src + 32 * t, true);
  mbk::cp_async_commit();
  mbk::cp_async_16(mine + 16, src + 32 * t + 16, true);
  mbk::cp_async_commit();
  mbk::cp_async_16(mine + 32, nullptr, false);
  memcpy(out + 0, mine, 16);
  mbk::cp_async_wait<1>();
  memcpy(out + 16, mine, 16);
  memcpy(out + 32, mine + 16, 16);
  mbk::cp_async_wait<0>();
  memcpy(out + 48, mine + 16, 16);
  memcpy(out + 64, mine + 32, 16);
  mbk::cp_async_commit();
  mbk::cp_async_wait<0>();
  memcpy(out + 80, mine + 32, 16);
  __syncthreads();
  memcpy(out + 96, smem + 48 * ((t + 1) % T), 16);
  memcpy(out + 112, smem + 48 * (T - 1 - t) + 16, 16);
}

py::array_t<uint8_t> tc_cp_async(const py::object& src_obj, int old_byte, int threads) {
  const char* fn = "tc_cp_async";
  auto src = checked<uint8_t>(src_obj, 1, fn, "src");
  if (threads < 1 || threads > 1024) throw py::value_error("tc_cp_async: 1 to 1024 threads");
  check_dim(src.shape(0), 32 * threads, fn, "src.shape[0]");
  if (reinterpret_cast<uintptr_t>(src.data()) % 16 != 0) throw py::value_error("tc_cp_async: src must be 16-byte aligned");
  py::array_t<uint8_t> seen({threads, 8, 16});
  MBK_LAUNCH(cp_async_kernel, 1, static_cast<unsigned>(threads), static_cast<size_t>(48 * threads), nullptr,
             src.data(), old_byte, seen.mutable_data());
  return seen;
}

// ---------------------------------------------------------------------------------------------
// Misuse.
__global__ void mma_lane_missing_kernel(float* out) {
  if (threadIdx.x % 32 == 31) return;
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float c[4] = {0, 0, 0, 0};
  mbk::mma_m16n8k16<__half>(c, a, b, c);
  out[threadIdx.x] = c[0];
}
__global__ void mma_mixed_kernel(float* out) {
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float c[4] = {0, 0, 0, 0};
  if (threadIdx.x == 5) c[0] = __shfl_sync(0xffffffffu, 1.0f, 0);
  else mbk::mma_m16n8k16<__nv_bfloat16>(c, a, b, c);
  out[threadIdx.x] = c[0];
}
__global__ void ldmatrix_misaligned_kernel(float* out, int bad_lane) {
  MBK_DYNAMIC_SHARED(uint16_t, smem);
  const int lane = threadIdx.x % 32;
  uint32_t r[2];
  mbk::ldmatrix_x2_trans(r, smem + 8 * lane + (lane == bad_lane ? 4 : 0));
  out[threadIdx.x] = static_cast<float>(r[0]);
}
__global__ void cp_async_misaligned_kernel(float* out) {
  MBK_DYNAMIC_SHARED(uint8_t, smem);
  mbk::cp_async_16(smem + 16 * threadIdx.x + (threadIdx.x == 3 ? 8 : 0), out + 4 * threadIdx.x, true);
  mbk::cp_async_commit();
  mbk::cp_async_wait<0>();
}
__global__ void cp_async_never_waited_kernel(float* out) {
  MBK_DYNAMIC_SHARED(uint8_t, smem);
  mbk::cp_async_16(smem + 16 * threadIdx.x, out + 4 * threadIdx.x, true);
  mbk::cp_async_commit();
  if (threadIdx.x != 7) mbk::cp_async_wait<0>();
}
__global__ void cp_async_uncommitted_kernel(float* out) {
  MBK_DYNAMIC_SHARED(uint8_t, smem);
  mbk::cp_async_16(smem + 16 * threadIdx.x, out + 4 * threadIdx.x, true);
  mbk::cp_async_wait<0>();  // retires nothing: the copy was never committed
}

void tc_misuse(const std::string& what) {
  alignas(16) static float buf[4 * 64];
  if (what == "mma_lane_missing") MBK_LAUNCH(mma_lane_missing_kernel, 1, 32, 0, nullptr, buf);
  else if (what == "mma_partial_warp") MBK_LAUNCH(mma_lane_missing_kernel, 1, 16, 0, nullptr, buf);
  else if (what == "mma_mixed") MBK_LAUNCH(mma_mixed_kernel, 1, 32, 0, nullptr, buf);
  else if (what == "ldmatrix_misaligned") MBK_LAUNCH(ldmatrix_misaligned_kernel, 1, 32, 1024, nullptr, buf, 13);
  else if (what == "ldmatrix_partial_warp") MBK_LAUNCH(ldmatrix_misaligned_kernel, 1, 40, 1024, nullptr, buf, -1);
  else if (what == "cp_async_misaligned") MBK_LAUNCH(cp_async_misaligned_kernel, 1, 32, 1024, nullptr, buf);
  else if (what == "cp_async_never_waited") MBK_LAUNCH(cp_async_never_waited_kernel, 1, 32, 1024, nullptr, buf);
  else if (what == "cp_async_uncommitted") MBK_LAUNCH(cp_async_uncommitted_kernel, 1, 32, 1024, nullptr, buf);
  else throw py::value_error("tc_misuse: unknown case '" + what + "'");
}

}  // namespace

void register_tensor_core_tests(py::module_& m) {
  m.def("tc_mma", &tc_mma, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("dtype"), py::arg("alias") = false,
        "d[w] = a[w] @ b[w] + c[w] by mma_m16n8k16, one warp per problem (test kernel).");
  m.def("tc_ldmatrix", &tc_ldmatrix, py::arg("mats"), py::arg("row_slot"), py::arg("row_stride"), py::arg("trans"),
        "Registers of ldmatrix_x{N}[_trans] per warp and lane (test kernel).");
  m.def("tc_gemm", &tc_gemm, py::arg("a"), py::arg("b"), py::arg("b_k_major"), py::arg("dtype"),
        "a @ b through cp.async, ldmatrix and mma (test kernel).");
  m.def("tc_cp_async", &tc_cp_async, py::arg("src"), py::arg("old_byte"), py::arg("threads"),
        "What each thread sees of its cp.async copies around the waits (test kernel).");
  m.def("tc_misuse", &tc_misuse, py::arg("what"), "Runs a kernel that misuses a tensor-core instruction.");
}
