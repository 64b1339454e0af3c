// cuda_emu.h -- a CPU emulator of CUDA's execution model, so csrc kernels run (and are tested)
// without a GPU. Do not include directly from kernels: include mbk/portability.cuh, which selects
// this header when not compiling with nvcc. Implementation: csrc/emu/cuda_emu.cpp (tensor-core
// instructions: cuda_emu_tensor_core.{h,cpp}).
//
// Model:
//   * Blocks of a grid run one after another on the calling OS thread.
//   * Each CUDA thread of a block is a fiber (its own stack; x86-64 uses a hand-written context
//     switch, other architectures ucontext). A fiber runs until it reaches a synchronisation point
//     (__syncthreads, a warp shuffle/vote/__syncwarp, an mma or ldmatrix) or returns.
//   * Warps are formed as CUDA forms them: linear id = x + y*Dx + z*Dx*Dy (threadIdx.x fastest),
//     warp = linear / 32, lane = linear % 32.
//   * __syncthreads is a real barrier over all threads of the block; a warp collective waits for
//     every lane of its mask that exists in the warp, then each lane reads the others' values.
//   * One thread runs at a time. Whenever the running thread blocks (or exits), the scheduler
//     resumes, per set_schedule(): the lowest-numbered runnable thread (in_order), the highest
//     (reverse; blocks also run in reverse), or a uniformly random one (random, seeded; blocks in a
//     random order). So in_order/reverse let one warp run as far ahead of the others as CUDA
//     allows -- through any number of shuffles, up to the next __syncthreads -- and random mixes
//     everything. A barrier emulator is not a race detector; running these adversarial orders is
//     what exposes a missing __syncthreads (a read before another warp's write, or a write before
//     another warp's read).
//   * A warp collective is a WarpOp: every lane of the warp must reach the same one (a lane in a
//     shuffle while the others are in an mma is an error). Shuffles and votes exchange one 64-bit
//     word per lane; the tensor-core instructions of mbk/tensor_core.cuh (cuda_emu_tensor_core.h)
//     are collectives of all 32 lanes: mma_m16n8k16 exchanges the A and B fragments and each lane
//     computes its own D (fp32, in k order); ldmatrix_x{1,2,4}[_trans] is completed by the last
//     lane to arrive, which reads every row at that one instant and hands each lane its registers,
//     so lanes running on afterwards (and writing shared memory) cannot change what another lane
//     gets, under any schedule.
//   * cp.async (cp_async_16 / cp_async_commit / cp_async_wait<N>) is a queue per thread: a copy is
//     performed only by the cp_async_wait that retires its commit group, so a read before the wait
//     sees the old shared bytes, and other threads see the new ones after that wait and a barrier.
//     set_cp_async_landing(at_issue) performs each copy at issue instead, which exposes a stage refilled before
//     every warp is done reading it (a missing __syncthreads) under the random schedule.
//   * Static shared memory (MBK_SHARED) is a `static thread_local` variable: one copy shared by the
//     block that is running. Dynamic shared memory is allocated per launch and filled with 0xFF
//     bytes (NaN as float) before every block, so reads of never-written shared memory show up.
//   * Misuse is reported as std::runtime_error thrown from the launch: a barrier or warp collective
//     that some thread never reaches (deadlock; at once when a lane it waits for has returned), a
//     shuffle reading a lane that does not take part, mismatched masks, lanes of one warp in
//     different collectives, a tensor-core instruction without all 32 lanes, an ldmatrix or
//     cp.async address that is not 16-byte aligned, a thread returning with cp.async copies it never
//     waited for, a block over 1024 threads, dynamic shared memory over the limit.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------------------------
// Qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

// ---------------------------------------------------------------------------------------------
// Vector and index types
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned int x, y; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

constexpr int warpSize = 32;

// The running thread's indices; set by the emulator before it resumes each CUDA thread.
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

using mbk_stream_t = struct mbk_emu_stream*;

// ---------------------------------------------------------------------------------------------
// Half and bfloat16: storage types only (16 bits); arithmetic goes through float, as in our kernels.
struct __half {
  unsigned short __x;
};
struct __nv_bfloat16 {
  unsigned short __x;
};

namespace mbk_emu {
namespace detail {
inline uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
inline float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
// float -> IEEE binary16, round to nearest even.
inline unsigned short float_to_half_bits(float f) {
  const uint32_t x = f2u(f);
  const unsigned short sign = static_cast<unsigned short>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf or NaN
    return ax == 0x7f800000u ? (sign | 0x7c00u) : static_cast<unsigned short>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  }
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  const uint32_t e = ax >> 23;
  if (e < 113) {  // result is a half denormal (or zero): units of 2^-24
    if (e == 0) return sign;  // float denormals are far below half's smallest denormal
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t s = 126u - e;  // value = m * 2^(e-150) = (m >> s) units of 2^-24
    if (s > 24) return sign;
    uint32_t q = m >> s;
    const uint32_t rem = m & ((1u << s) - 1u);
    const uint32_t halfway = 1u << (s - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return static_cast<unsigned short>(sign | q);
  }
  uint32_t r = ((e - 112u) << 10) | ((ax >> 13) & 0x3ffu);
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // carry may round up into inf: correct
  return static_cast<unsigned short>(sign | r);
}
inline float half_bits_to_float(unsigned short h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0) {
    // zero or denormal: m * 2^-24, exact in float
    const float v = static_cast<float>(m) * 5.9604644775390625e-08f;
    return u2f(f2u(v) | sign);
  }
  if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
  return u2f(sign | ((e + 112u) << 23) | (m << 13));
}
// float -> bfloat16, round to nearest even; NaN -> quiet NaN with the same sign.
inline unsigned short float_to_bf16_bits(float f) {
  const uint32_t x = f2u(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((x >> 16) | 0x0040u);
  const uint32_t r = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<unsigned short>(r >> 16);
}
inline float bf16_bits_to_float(unsigned short b) { return u2f(static_cast<uint32_t>(b) << 16); }
}  // namespace detail
}  // namespace mbk_emu

inline __half __float2half(float f) { return __half{mbk_emu::detail::float_to_half_bits(f)}; }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline float __half2float(__half h) { return mbk_emu::detail::half_bits_to_float(h.__x); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16{mbk_emu::detail::float_to_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return mbk_emu::detail::bf16_bits_to_float(b.__x); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }

inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }

// ---------------------------------------------------------------------------------------------
// Math (expf, logf, sqrtf, fmaxf, ... come from <math.h>)
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x != x ? 0.0f : x)); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(int a, unsigned b) { return min(static_cast<unsigned>(a), b); }
inline unsigned max(int a, unsigned b) { return max(static_cast<unsigned>(a), b); }
inline unsigned min(unsigned a, int b) { return min(a, static_cast<unsigned>(b)); }
inline unsigned max(unsigned a, int b) { return max(a, static_cast<unsigned>(b)); }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------------------------------------
// Atomics (blocks run one at a time, but these are real atomics anyway)
namespace mbk_emu {
namespace detail {
template <typename T, typename F>
inline T atomic_update_bits(T* addr, F f) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomic on a 4- or 8-byte type");
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U* p = reinterpret_cast<U*>(addr);
  U old_bits = __atomic_load_n(p, __ATOMIC_RELAXED);
  for (;;) {
    T old_val;
    memcpy(&old_val, &old_bits, sizeof(T));
    const T new_val = f(old_val);
    U new_bits;
    memcpy(&new_bits, &new_val, sizeof(T));
    if (__atomic_compare_exchange_n(p, &old_bits, new_bits, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
      return old_val;
  }
}
}  // namespace detail
}  // namespace mbk_emu

inline float atomicAdd(float* a, float v) { return mbk_emu::detail::atomic_update_bits(a, [v](float o) { return o + v; }); }
inline double atomicAdd(double* a, double v) { return mbk_emu::detail::atomic_update_bits(a, [v](double o) { return o + v; }); }
inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline int atomicMax(int* a, int v) { return mbk_emu::detail::atomic_update_bits(a, [v](int o) { return o > v ? o : v; }); }
inline unsigned atomicMax(unsigned* a, unsigned v) { return mbk_emu::detail::atomic_update_bits(a, [v](unsigned o) { return o > v ? o : v; }); }
inline int atomicMin(int* a, int v) { return mbk_emu::detail::atomic_update_bits(a, [v](int o) { return o < v ? o : v; }); }
inline unsigned atomicMin(unsigned* a, unsigned v) { return mbk_emu::detail::atomic_update_bits(a, [v](unsigned o) { return o < v ? o : v; }); }
inline int atomicExch(int* a, int v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicExch(unsigned* a, unsigned v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }
inline float atomicExch(float* a, float v) { return mbk_emu::detail::atomic_update_bits(a, [v](float) { return v; }); }
template <typename T>
inline T mbk_emu_atomic_cas(T* a, T compare, T v) {
  __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;  // holds the old value whether or not the swap happened
}
inline int atomicCAS(int* a, int c, int v) { return mbk_emu_atomic_cas(a, c, v); }
inline unsigned atomicCAS(unsigned* a, unsigned c, unsigned v) { return mbk_emu_atomic_cas(a, c, v); }
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long c, unsigned long long v) {
  return mbk_emu_atomic_cas(a, c, v);
}

// ---------------------------------------------------------------------------------------------
// Emulator control and the pieces the macros below call.
namespace mbk_emu {

enum class Schedule { in_order, reverse, random };

// Order in which threads (and blocks) run between synchronisation points; applies to all later
// launches in the process. random uses `seed` (the sequence continues across launches).
void set_schedule(Schedule s, uint64_t seed = 0);
Schedule get_schedule();
// When a cp.async copy lands: at the cp_async_wait that retires it (default: a read before the wait sees the old
// bytes, exposing a missing wait) or at issue (exposing a missing __syncthreads before a pipeline stage is refilled
// while other warps still read it; run it with the random schedule). A GPU may do either.
enum class CpAsyncLanding { at_wait, at_issue };
void set_cp_async_landing(CpAsyncLanding when);
CpAsyncLanding get_cp_async_landing();
// Stack size of each emulated CUDA thread (default 256 KiB); a guard page below catches overflow.
void set_thread_stack_bytes(size_t bytes);
// Allow a kernel to use more than 48 KiB of dynamic shared memory (at most 227 KiB, as on H100).
int set_max_dynamic_smem(const void* kernel, int bytes);

// Counters since the process started (for tests and curiosity).
struct Stats {
  unsigned long long launches, blocks, threads, context_switches;
};
Stats stats();

// RAII helper for tests: sets a schedule, restores the previous one.
class ScopedSchedule {
 public:
  ScopedSchedule(Schedule s, uint64_t seed = 0);
  ~ScopedSchedule();

 private:
  Schedule prev_;
  uint64_t prev_seed_;
};
uint64_t get_seed();

namespace detail {
using Body = void (*)(void*);
void run_grid(const void* kernel_id, dim3 grid, dim3 block, size_t smem_bytes, Body body, void* ctx);
void block_barrier();
// A warp-collective instruction. Every lane of a warp must reach the same WarpOp (by address) in a
// collective, or the launch fails naming both. `complete`, if set, runs once when the last lane
// arrives, before any lane goes on: it reads the lanes' words (table[word][lane]) and writes each
// lane's results in place, so whatever it reads (e.g. shared memory) is read at one instant for the
// whole warp, under every schedule. It may throw std::runtime_error (the launch fails with it).
constexpr int kWarpWords = 4;  // 64-bit words each lane may contribute to one collective
struct WarpOp {
  const char* name;  // for messages: "mma_m16n8k16<__half>", ...
  bool full_warp;    // the instruction needs all 32 lanes (a partial warp or mask is an error)
  void (*complete)(uint64_t (*table)[32], unsigned participants);
};
// Every lane of `mask` (that exists in the warp) contributes in[0..nwords); returns the warp's table
// [word][lane] (after `complete`), valid until this lane's next collective, and the participants.
const uint64_t (*warp_collective(unsigned mask, const WarpOp& op, const uint64_t* in, int nwords,
                                  unsigned* participants, int* my_lane))[32];
// The one-word collective of shuffles and votes: returns the 32 contributions (valid until this
// lane's next collective) and the set of participating lanes.
const uint64_t* warp_exchange(unsigned mask, uint64_t value, unsigned* participants, int* my_lane);
// cp.async of the running thread (mbk/tensor_core.cuh; csrc/emu/cuda_emu_tensor_core.h).
void cp_async_16(void* smem, const void* gmem, bool valid);
void cp_async_commit();
void cp_async_wait(int n);
enum class ShflKind { idx, up, down, bfly };
uint64_t shuffle_bits(unsigned mask, uint64_t value, ShflKind kind, int arg, int width);
void* dynamic_smem();
unsigned active_mask();

template <typename T>
inline T shuffle(unsigned mask, T var, ShflKind kind, int arg, int width) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "warp shuffles take trivially copyable values of at most 8 bytes");
  uint64_t bits = 0;
  memcpy(&bits, &var, sizeof(T));
  const uint64_t out = shuffle_bits(mask, bits, kind, arg, width);
  T r;
  memcpy(&r, &out, sizeof(T));
  return r;
}
}  // namespace detail

template <typename... P, typename... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem_bytes, mbk_stream_t /*stream*/,
            A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "MBK_LAUNCH: wrong number of kernel arguments");
  using Params = std::tuple<std::decay_t<P>...>;
  struct Ctx {
    void (*k)(P...);
    Params params;
  };
  Ctx ctx{kernel, Params(std::forward<A>(args)...)};
  // Every emulated thread calls the kernel with its own copies of the parameters, as CUDA does.
  detail::run_grid(reinterpret_cast<const void*>(kernel), grid, block, smem_bytes,
                   [](void* c) {
                     Ctx* x = static_cast<Ctx*>(c);
                     std::apply(x->k, x->params);
                   },
                   &ctx);
}

}  // namespace mbk_emu

inline void __syncthreads() { mbk_emu::detail::block_barrier(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  unsigned participants;
  int lane;
  mbk_emu::detail::warp_exchange(mask, 0, &participants, &lane);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  unsigned participants;
  int lane;
  const uint64_t* v = mbk_emu::detail::warp_exchange(mask, pred != 0, &participants, &lane);
  unsigned r = 0;
  for (int i = 0; i < 32; ++i)
    if (((participants >> i) & 1u) && v[i]) r |= 1u << i;
  return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) {
  unsigned participants;
  int lane;
  const uint64_t* v = mbk_emu::detail::warp_exchange(mask, pred != 0, &participants, &lane);
  for (int i = 0; i < 32; ++i)
    if (((participants >> i) & 1u) && !v[i]) return 0;
  return 1;
}
inline unsigned __activemask() { return mbk_emu::detail::active_mask(); }

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize) {
  return mbk_emu::detail::shuffle(mask, var, mbk_emu::detail::ShflKind::idx, srcLane, width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize) {
  return mbk_emu::detail::shuffle(mask, var, mbk_emu::detail::ShflKind::up, static_cast<int>(delta), width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize) {
  return mbk_emu::detail::shuffle(mask, var, mbk_emu::detail::ShflKind::down, static_cast<int>(delta), width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize) {
  return mbk_emu::detail::shuffle(mask, var, mbk_emu::detail::ShflKind::bfly, laneMask, width);
}

// ---------------------------------------------------------------------------------------------
// Shared memory and launch macros (see mbk/portability.cuh)
#define MBK_SHARED static thread_local
#define MBK_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::mbk_emu::detail::dynamic_smem())
#define MBK_LAUNCH(kernel, grid, block, smem_bytes, stream, ...) \
  ::mbk_emu::launch(kernel, (grid), (block), (smem_bytes), (stream), __VA_ARGS__)
#define MBK_SET_MAX_DYNAMIC_SMEM(kernel, bytes) \
  ::mbk_emu::set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), static_cast<int>(bytes))
#define MBK_CHECK_LAUNCH(what) \
  do {                         \
  } while (0)
