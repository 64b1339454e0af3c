// cuda_emu.cpp -- the scheduler behind cuda_emu.h: fibers for CUDA threads, the block barrier,
// warp collectives, dynamic shared memory and the launch checks. See cuda_emu.h for the model.
#include "cuda_emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

// MBK_EMU_USE_UCONTEXT forces the portable (slower) ucontext switch on x86-64 too.
#if !defined(__x86_64__) || defined(MBK_EMU_USE_UCONTEXT)
#define MBK_EMU_UCONTEXT 1
#include <ucontext.h>
#endif

namespace mbk_emu {
namespace {

// ------------------------------------------------------------------------------------------
// Settings shared by all OS threads.
std::mutex g_settings_mu;
Schedule g_schedule = Schedule::in_order;
uint64_t g_seed = 0;
std::atomic<CpAsyncLanding> g_cp_async_landing{CpAsyncLanding::at_wait};
std::mt19937_64 g_rng(0);
size_t g_stack_bytes = 256 * 1024;
std::map<const void*, int> g_max_dyn_smem;
std::atomic<unsigned long long> g_launches{0}, g_blocks{0}, g_threads{0}, g_switches{0};

constexpr size_t kDefaultDynSmemLimit = 48 * 1024;
constexpr size_t kMaxDynSmemOptIn = 227 * 1024;

}  // namespace

void set_schedule(Schedule s, uint64_t seed) {
  std::lock_guard<std::mutex> lk(g_settings_mu);
  g_schedule = s;
  g_seed = seed;
  g_rng.seed(seed);
}
Schedule get_schedule() {
  std::lock_guard<std::mutex> lk(g_settings_mu);
  return g_schedule;
}
uint64_t get_seed() {
  std::lock_guard<std::mutex> lk(g_settings_mu);
  return g_seed;
}
void set_cp_async_landing(CpAsyncLanding when) { g_cp_async_landing.store(when); }
CpAsyncLanding get_cp_async_landing() { return g_cp_async_landing.load(); }
void set_thread_stack_bytes(size_t bytes) {
  std::lock_guard<std::mutex> lk(g_settings_mu);
  g_stack_bytes = std::max<size_t>(bytes, 16 * 1024);
}
int set_max_dynamic_smem(const void* kernel, int bytes) {
  if (bytes < 0 || static_cast<size_t>(bytes) > kMaxDynSmemOptIn)
    throw std::runtime_error("MBK_SET_MAX_DYNAMIC_SMEM: " + std::to_string(bytes) +
                             " bytes is over the 227 KiB a block can have");
  std::lock_guard<std::mutex> lk(g_settings_mu);
  g_max_dyn_smem[kernel] = bytes;
  return 0;
}
Stats stats() { return Stats{g_launches.load(), g_blocks.load(), g_threads.load(), g_switches.load()}; }

ScopedSchedule::ScopedSchedule(Schedule s, uint64_t seed) : prev_(get_schedule()), prev_seed_(get_seed()) {
  set_schedule(s, seed);
}
ScopedSchedule::~ScopedSchedule() { set_schedule(prev_, prev_seed_); }

namespace detail {
namespace {

// ------------------------------------------------------------------------------------------
// Context switching.
#if !defined(MBK_EMU_UCONTEXT)
// save_sp <- current stack pointer after pushing callee-saved state; then continue on load_sp.
extern "C" __attribute__((visibility("hidden"))) void mbk_emu_ctx_switch(void** save_sp, void* load_sp);
extern "C" __attribute__((visibility("hidden"))) void mbk_emu_ctx_trampoline();
asm(R"(
.text
.p2align 4
.globl mbk_emu_ctx_switch
.hidden mbk_emu_ctx_switch
.type mbk_emu_ctx_switch,@function
mbk_emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size mbk_emu_ctx_switch,.-mbk_emu_ctx_switch

.p2align 4
.globl mbk_emu_ctx_trampoline
.hidden mbk_emu_ctx_trampoline
.type mbk_emu_ctx_trampoline,@function
mbk_emu_ctx_trampoline:
    movq %r12, %rdi
    callq *%r13
    ud2
.size mbk_emu_ctx_trampoline,.-mbk_emu_ctx_trampoline
)");

struct Context {
  void* sp = nullptr;
};
// Lay out a fresh stack so that the first switch into it "returns" into the trampoline, which
// calls entry(arg) with a 16-byte aligned stack.
void make_context(Context* c, char* stack_lo, size_t size, void (*entry)(void*), void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack_lo) + size) & ~uintptr_t(15);
  uint64_t* ret_slot = reinterpret_cast<uint64_t*>(top - 24);  // == 8 (mod 16)
  ret_slot[0] = reinterpret_cast<uint64_t>(&mbk_emu_ctx_trampoline);
  ret_slot[-1] = 0;                                   // rbp
  ret_slot[-2] = 0;                                   // rbx
  ret_slot[-3] = reinterpret_cast<uint64_t>(arg);     // r12
  ret_slot[-4] = reinterpret_cast<uint64_t>(entry);   // r13
  ret_slot[-5] = 0;                                   // r14
  ret_slot[-6] = 0;                                   // r15
  uint32_t* fp_state = reinterpret_cast<uint32_t*>(&ret_slot[-7]);
  fp_state[0] = 0x1f80;  // default MXCSR
  fp_state[1] = 0x037f;  // default x87 control word
  c->sp = &ret_slot[-7];
}
inline void switch_context(Context* from, Context* to) { mbk_emu_ctx_switch(&from->sp, to->sp); }
#else
struct Context {
  ucontext_t uc;
};
thread_local void (*t_entry)(void*);
thread_local void* t_arg;
void uc_entry() { t_entry(t_arg); }
void make_context(Context* c, char* stack_lo, size_t size, void (*entry)(void*), void* arg) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack_lo;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, uc_entry, 0);
  t_entry = entry;  // all fibers of a block share entry and arg
  t_arg = arg;
}
inline void switch_context(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
#endif

// ------------------------------------------------------------------------------------------
// Stacks: mmap'd with a PROT_NONE guard page below, kept per OS thread and reused.
struct Stack {
  char* base = nullptr;  // start of the mapping (guard page)
  size_t total = 0;
  char* lo() const { return base + page(); }
  size_t usable() const { return total - page(); }
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
};

struct StackPool {
  std::vector<Stack> stacks;
  size_t bytes = 0;
  ~StackPool() { release(); }
  void release() {
    for (auto& s : stacks) munmap(s.base, s.total);
    stacks.clear();
  }
  void ensure(size_t n, size_t want_bytes) {
    if (want_bytes != bytes) {
      release();
      bytes = want_bytes;
    }
    while (stacks.size() < n) {
      Stack s;
      s.total = bytes + Stack::page();
      void* p = mmap(nullptr, s.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) throw std::runtime_error("cuda_emu: cannot map a thread stack");
      s.base = static_cast<char*>(p);
      mprotect(s.base, Stack::page(), PROT_NONE);
      stacks.push_back(s);
    }
  }
};
thread_local StackPool t_stacks;

// ------------------------------------------------------------------------------------------
// One block in flight.
enum class State { runnable, at_barrier, at_warp, done };

// One cp.async of a thread, performed when a cp_async_wait retires its group.
struct AsyncCopy {
  void* dst;
  const void* src;
  bool valid;
};

struct Fiber {
  Context ctx;
  uint3 tid;
  int linear = 0, warp = 0, lane = 0;
  State state = State::runnable;
  std::deque<AsyncCopy> copies;    // issued and not yet performed, oldest first
  std::deque<size_t> group_sizes;  // committed groups, oldest first: how many of `copies` each holds
};

struct Warp {
  unsigned existing = 0;  // lanes that exist in this warp (a block's last warp may be partial)
  unsigned expected = 0;  // lanes the pending collective waits for
  unsigned arrived = 0;
  unsigned gen = 0;
  const WarpOp* op = nullptr;  // the pending collective's instruction (every lane must call the same)
  uint64_t words[2][kWarpWords][32];  // [generation parity][word][lane]
  unsigned participants[2];
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  std::vector<uint64_t> runnable;  // bit i: fibers[i] can run (mirrors Fiber::state)
  int nthreads = 0;
  int barrier_arrived = 0;
  Fiber* current = nullptr;
  Context scheduler;
  Body body = nullptr;
  void* body_ctx = nullptr;
  void* dyn_smem = nullptr;
  std::exception_ptr error;
};
thread_local Block* t_block = nullptr;

inline void set_state(Block& b, Fiber& f, State s) {
  f.state = s;
  const uint64_t bit = uint64_t(1) << (f.linear & 63);
  if (s == State::runnable) b.runnable[f.linear >> 6] |= bit;
  else b.runnable[f.linear >> 6] &= ~bit;
}

const char* state_name(State s) {
  switch (s) {
    case State::runnable: return "runnable";
    case State::at_barrier: return "waiting at __syncthreads";
    case State::at_warp: return "waiting at a warp collective";
    case State::done: return "exited";
  }
  return "?";
}

Block& current_block(const char* what) {
  if (t_block == nullptr || t_block->current == nullptr)
    throw std::runtime_error(std::string("cuda_emu: ") + what + " called outside a kernel launch");
  return *t_block;
}

void yield_to_scheduler(Block& b) {
  Fiber* f = b.current;
  switch_context(&f->ctx, &b.scheduler);
}

void check_exit(Block& b, Fiber& f);

void fiber_main(void* arg) {
  Block* b = static_cast<Block*>(arg);
  try {
    b->body(b->body_ctx);
    check_exit(*b, *b->current);
  } catch (...) {
    if (!b->error) b->error = std::current_exception();
  }
  Fiber* f = b->current;
  set_state(*b, *f, State::done);
  switch_context(&f->ctx, &b->scheduler);
  __builtin_trap();  // a finished fiber is never resumed
}

std::string where(const Fiber& f) {
  std::ostringstream os;
  os << "thread (" << f.tid.x << "," << f.tid.y << "," << f.tid.z << ") of block (" << blockIdx.x << ","
     << blockIdx.y << "," << blockIdx.z << ")";
  return os.str();
}

std::string hex(unsigned v) {
  std::ostringstream o;
  o << "0x" << std::hex << v;
  return o.str();
}

// A thread that returns must not leave its warp waiting for it in a collective (that can never
// complete), nor cp.async copies it never waited for (on a GPU they land at some unknown time, so
// a kernel that relies on them, or on their absence, is wrong either way).
void check_exit(Block& b, Fiber& f) {
  const Warp& w = b.warps[f.warp];
  if (w.arrived != 0 && ((w.expected >> f.lane) & 1u)) {
    throw std::runtime_error("cuda_emu: deadlock: " + where(f) + " returns while lanes " + hex(w.arrived) +
                             " of its warp wait for it in " + w.op->name);
  }
  if (!f.copies.empty()) {
    throw std::runtime_error("cuda_emu: " + where(f) + " returns with " + std::to_string(f.copies.size()) +
                             " cp.async copies never waited for (" + std::to_string(f.group_sizes.size()) +
                             " committed groups); end the pipeline with cp_async_commit() and cp_async_wait<0>()");
  }
}

[[noreturn]] void deadlock(Block& b) {
  std::ostringstream os;
  os << "cuda_emu: deadlock in block (" << blockIdx.x << "," << blockIdx.y << "," << blockIdx.z
     << "): no thread can run. A __syncthreads or warp collective is not reached by every thread it"
        " waits for (divergent barrier, early return, or a mask naming lanes that exited). States:";
  int shown = 0;
  State last = State::runnable;
  for (auto& f : b.fibers) {
    if (shown < 8 && (shown == 0 || f.state != last)) {
      os << " [" << f.tid.x << "," << f.tid.y << "," << f.tid.z << ": " << state_name(f.state) << "]";
      ++shown;
      last = f.state;
    }
  }
  throw std::runtime_error(os.str());
}

// The next fiber to resume: the first runnable one in thread order (in_order), the last one
// (reverse), or a uniformly random one (random). Always resuming the first (or last) runnable thread
// lets a warp run as far ahead of the others as CUDA allows -- through any number of warp-level
// synchronisations up to the next __syncthreads -- which is what exposes a missing barrier between
// a write and another warp's read, or between a read and another warp's next write.
int pick(const Block& b, Schedule sched, std::mt19937_64* rng) {
  const int words = static_cast<int>(b.runnable.size());
  if (sched == Schedule::in_order) {
    for (int w = 0; w < words; ++w)
      if (b.runnable[w]) return w * 64 + __builtin_ctzll(b.runnable[w]);
    return -1;
  }
  if (sched == Schedule::reverse) {
    for (int w = words - 1; w >= 0; --w)
      if (b.runnable[w]) return w * 64 + 63 - __builtin_clzll(b.runnable[w]);
    return -1;
  }
  int count = 0;
  for (int w = 0; w < words; ++w) count += __builtin_popcountll(b.runnable[w]);
  if (count == 0) return -1;
  int k = static_cast<int>((*rng)() % static_cast<uint64_t>(count));
  for (int w = 0; w < words; ++w) {
    const int c = __builtin_popcountll(b.runnable[w]);
    if (k >= c) {
      k -= c;
      continue;
    }
    uint64_t bits = b.runnable[w];
    for (; k > 0; --k) bits &= bits - 1;  // drop the lowest set bits
    return w * 64 + __builtin_ctzll(bits);
  }
  return -1;
}

void run_block(Block& b, Schedule sched, std::mt19937_64* rng) {
  int done = 0;
  const int n = b.nthreads;
  unsigned long long switches = 0;
  while (done < n) {
    const int idx = pick(b, sched, rng);
    if (idx < 0) {
      g_switches += switches;
      deadlock(b);
    }
    Fiber& f = b.fibers[idx];
    threadIdx = f.tid;
    b.current = &f;
    switch_context(&b.scheduler, &f.ctx);
    ++switches;
    b.current = nullptr;
    if (b.error) {
      g_switches += switches;
      std::rethrow_exception(b.error);
    }
    if (f.state == State::done) ++done;
  }
  g_switches += switches;
}

}  // namespace

void block_barrier() {
  Block& b = current_block("__syncthreads");
  Fiber* f = b.current;
  set_state(b, *f, State::at_barrier);
  if (++b.barrier_arrived == b.nthreads) {
    b.barrier_arrived = 0;
    for (auto& g : b.fibers) set_state(b, g, State::runnable);
  }
  yield_to_scheduler(b);
}

const uint64_t (*warp_collective(unsigned mask, const WarpOp& op, const uint64_t* in, int nwords,
                                  unsigned* participants, int* my_lane))[32] {
  Block& b = current_block(op.name);
  Fiber* f = b.current;
  if (nwords < 0 || nwords > kWarpWords)
    throw std::logic_error(std::string("cuda_emu: ") + op.name + " exchanges " + std::to_string(nwords) +
                           " words per lane; at most kWarpWords fit");
  Warp& w = b.warps[f->warp];
  const unsigned bit = 1u << f->lane;
  if (!(mask & bit)) {
    throw std::runtime_error("cuda_emu: " + where(*f) + " calls " + op.name + " with mask " + hex(mask) +
                             " that does not include its own lane " + std::to_string(f->lane));
  }
  const unsigned expected = mask & w.existing;
  if (op.full_warp && expected != 0xffffffffu) {
    throw std::runtime_error("cuda_emu: " + where(*f) + " calls " + op.name + ", which needs all 32 lanes of the warp" +
                             (w.existing != 0xffffffffu ? "; this warp has only lanes " + hex(w.existing) +
                                                              " (make the block a multiple of 32 threads)"
                                                        : "; the mask is " + hex(mask)));
  }
  if (w.arrived == 0) {
    w.expected = expected;
    w.op = &op;
    for (int l = 0; l < 32; ++l) {
      const int i = f->warp * 32 + l;
      if (((expected >> l) & 1u) && b.fibers[i].state == State::done) {
        throw std::runtime_error("cuda_emu: deadlock: " + where(*f) + " calls " + op.name + " with mask " + hex(mask) +
                                 ", but lane " + std::to_string(l) + " of its warp has returned");
      }
    }
  } else if (w.op != &op) {
    throw std::runtime_error("cuda_emu: " + where(*f) + " calls " + op.name + " while lanes " + hex(w.arrived) +
                             " of its warp wait in " + w.op->name +
                             " (every lane of a warp must reach the same collective)");
  } else if (w.expected != expected) {
    throw std::runtime_error("cuda_emu: " + where(*f) + " joins " + op.name + " with mask " + hex(mask) +
                             " while lanes of its warp wait in one with mask " + hex(w.expected) +
                             " (divergent collectives in one warp are not supported)");
  }
  const unsigned my_gen = w.gen;
  const int buf = static_cast<int>(my_gen & 1u);
  for (int i = 0; i < nwords; ++i) w.words[buf][i][f->lane] = in[i];
  w.arrived |= bit;
  set_state(b, *f, State::at_warp);
  if (w.arrived == w.expected) {
    // The last lane to arrive completes the instruction for the whole warp, before any lane runs
    // on: what it reads (e.g. ldmatrix's shared memory) is read at one instant, as on the GPU.
    if (op.complete != nullptr) {
      try {
        op.complete(w.words[buf], w.expected);
      } catch (const std::exception& e) {
        throw std::runtime_error("cuda_emu: " + std::string(op.name) + " in warp " + std::to_string(f->warp) +
                                 " of block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
                                 std::to_string(blockIdx.z) + "): " + e.what());
      }
    }
    w.participants[buf] = w.expected;
    w.arrived = 0;
    ++w.gen;
    for (int l = 0; l < 32; ++l)
      if ((w.expected >> l) & 1u) set_state(b, b.fibers[f->warp * 32 + l], State::runnable);
  }
  yield_to_scheduler(b);
  // Double-buffered by generation: the buffer read here cannot be overwritten before every lane
  // has reached the next collective, i.e. has finished reading this one.
  *participants = w.participants[buf];
  *my_lane = f->lane;
  return w.words[buf];
}

namespace {
const WarpOp kExchange{"a warp shuffle, vote or __syncwarp", false, nullptr};
}  // namespace

const uint64_t* warp_exchange(unsigned mask, uint64_t value, unsigned* participants, int* my_lane) {
  return warp_collective(mask, kExchange, &value, 1, participants, my_lane)[0];
}

uint64_t shuffle_bits(unsigned mask, uint64_t value, ShflKind kind, int arg, int width) {
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
    Block& b = current_block("a warp shuffle");
    throw std::runtime_error("cuda_emu: " + where(*b.current) + " shuffles with width " + std::to_string(width) +
                             " (must be a power of 2 from 1 to 32)");
  }
  unsigned participants;
  int lane;
  const uint64_t* v = warp_exchange(mask, value, &participants, &lane);
  const int seg = lane & ~(width - 1);
  int src = lane;
  switch (kind) {
    case ShflKind::idx: src = seg + (arg & (width - 1)); break;
    case ShflKind::up: src = lane - arg >= seg ? lane - arg : lane; break;
    case ShflKind::down: src = lane + arg < seg + width ? lane + arg : lane; break;
    case ShflKind::bfly: {
      const int j = lane ^ arg;
      src = (j >= 0 && j < seg + width) ? j : lane;
      break;
    }
  }
  if (src < 0 || src > 31 || !((participants >> src) & 1u)) {
    Block& b = current_block("a warp shuffle");
    throw std::runtime_error("cuda_emu: " + where(*b.current) + " reads lane " + std::to_string(src) +
                             " in a shuffle, but that lane does not take part (not in the mask or does not"
                             " exist in this warp); CUDA leaves the result undefined");
  }
  return v[src];
}

// ------------------------------------------------------------------------------------------
// cp.async: a per-thread queue. Copies are issued into the open group; cp_async_commit closes it;
// cp_async_wait(n) performs the copies of every committed group but the newest n, oldest first.
// The copy (its read of gmem and its write of shared memory) happens at that wait, so until then
// the destination keeps its old bytes and the source may still change. With set_cp_async_landing(at_issue) the
// copy is performed at issue instead (the queue then only counts it).
void cp_async_16(void* smem, const void* gmem, bool valid) {
  Block& b = current_block("cp_async_16");
  Fiber& f = *b.current;
  const auto misaligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) != 0; };
  if (smem == nullptr || misaligned(smem) || (valid && (gmem == nullptr || misaligned(gmem)))) {
    std::ostringstream o;
    o << "cuda_emu: " << where(f) << " calls cp_async_16(smem=" << smem << ", gmem=" << gmem
      << ", valid=" << valid << "): both addresses must be 16-byte aligned and not null (gmem is not read when"
      << " valid is false)";
    throw std::runtime_error(o.str());
  }
  if (g_cp_async_landing.load() == CpAsyncLanding::at_issue) {  // lands now; the wait only does the bookkeeping
    if (valid) memmove(smem, gmem, 16);
    else memset(smem, 0, 16);
    f.copies.push_back(AsyncCopy{nullptr, nullptr, false});
    return;
  }
  f.copies.push_back(AsyncCopy{smem, gmem, valid});
}

void cp_async_commit() {
  Block& b = current_block("cp_async_commit");
  Fiber& f = *b.current;
  size_t committed = 0;
  for (size_t g : f.group_sizes) committed += g;
  f.group_sizes.push_back(f.copies.size() - committed);  // an empty group is allowed, as in PTX
}

void cp_async_wait(int n) {
  Block& b = current_block("cp_async_wait");
  Fiber& f = *b.current;
  if (n < 0) throw std::runtime_error("cuda_emu: " + where(f) + " calls cp_async_wait<" + std::to_string(n) + ">");
  while (f.group_sizes.size() > static_cast<size_t>(n)) {
    for (size_t k = f.group_sizes.front(); k > 0; --k) {
      const AsyncCopy c = f.copies.front();
      f.copies.pop_front();
      if (c.dst == nullptr) continue;  // landed at issue
      if (c.valid) memmove(c.dst, c.src, 16);
      else memset(c.dst, 0, 16);
    }
    f.group_sizes.pop_front();
  }
}

void* dynamic_smem() {
  Block& b = current_block("MBK_DYNAMIC_SHARED");
  return b.dyn_smem;
}

unsigned active_mask() {
  Block& b = current_block("__activemask");
  Fiber* f = b.current;
  unsigned m = 0;
  for (int l = 0; l < 32; ++l) {
    const int i = f->warp * 32 + l;
    if (i < b.nthreads && b.fibers[i].state != State::done) m |= 1u << l;
  }
  return m;
}

void run_grid(const void* kernel_id, dim3 grid, dim3 block, size_t smem_bytes, Body body, void* ctx) {
  if (t_block != nullptr) throw std::runtime_error("cuda_emu: launching a kernel from inside a kernel is not supported");
  const unsigned long long nthreads = 1ull * block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
    std::ostringstream o;
    o << "cuda_emu: invalid launch configuration: grid (" << grid.x << "," << grid.y << "," << grid.z << "), block ("
      << block.x << "," << block.y << "," << block.z << ") has a zero dimension";
    throw std::runtime_error(o.str());
  }
  if (nthreads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.y > 65535 || grid.z > 65535 ||
      grid.x > 2147483647u) {
    std::ostringstream o;
    o << "cuda_emu: invalid launch configuration: grid (" << grid.x << "," << grid.y << "," << grid.z << "), block ("
      << block.x << "," << block.y << "," << block.z << "); CUDA allows at most 1024 threads per block (z <= 64)";
    throw std::runtime_error(o.str());
  }
  size_t stack_bytes;
  Schedule sched;
  size_t smem_limit = kDefaultDynSmemLimit;
  {
    std::lock_guard<std::mutex> lk(g_settings_mu);
    stack_bytes = g_stack_bytes;
    sched = g_schedule;
    auto it = g_max_dyn_smem.find(kernel_id);
    if (it != g_max_dyn_smem.end()) smem_limit = std::max<size_t>(smem_limit, static_cast<size_t>(it->second));
  }
  if (smem_bytes > smem_limit) {
    throw std::runtime_error("cuda_emu: launch asks for " + std::to_string(smem_bytes) +
                             " bytes of dynamic shared memory; the limit for this kernel is " +
                             std::to_string(smem_limit) +
                             (smem_limit == kDefaultDynSmemLimit
                                  ? " (call MBK_SET_MAX_DYNAMIC_SMEM(kernel, bytes) first to go over 48 KiB)"
                                  : ""));
  }
  const int n = static_cast<int>(nthreads);
  t_stacks.ensure(static_cast<size_t>(n), stack_bytes);

  // Random orders come from the shared generator; draw a private one so the launch is
  // deterministic given the schedule and the sequence of launches.
  std::mt19937_64 rng;
  if (sched == Schedule::random) {
    std::lock_guard<std::mutex> lk(g_settings_mu);
    rng.seed(g_rng());
  }

  Block b;
  b.nthreads = n;
  b.body = body;
  b.body_ctx = ctx;
  b.fibers.resize(static_cast<size_t>(n));
  const int nwarps = (n + 31) / 32;
  b.warps.resize(static_cast<size_t>(nwarps));
  b.runnable.assign(static_cast<size_t>((n + 63) / 64), 0);
  for (int w = 0; w < nwarps; ++w) {
    const int lanes = std::min(32, n - 32 * w);
    b.warps[w].existing = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  }
  for (unsigned z = 0, i = 0; z < block.z; ++z)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x, ++i) {  // x fastest, as CUDA linearises
        Fiber& f = b.fibers[i];
        f.tid = uint3{x, y, z};
        f.linear = static_cast<int>(i);
        f.warp = static_cast<int>(i / 32);
        f.lane = static_cast<int>(i % 32);
      }

  std::vector<unsigned char> smem_storage;
  unsigned char* smem = nullptr;
  if (smem_bytes > 0) {
    smem_storage.resize(smem_bytes + 128);
    smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_storage.data()) + 127) & ~uintptr_t(127));
  }
  b.dyn_smem = smem;

  std::vector<uint3> blocks;
  blocks.reserve(static_cast<size_t>(grid.x) * grid.y * grid.z);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) blocks.push_back(uint3{x, y, z});
  if (sched == Schedule::reverse) std::reverse(blocks.begin(), blocks.end());
  if (sched == Schedule::random) std::shuffle(blocks.begin(), blocks.end(), rng);

  ++g_launches;
  struct Reset {
    ~Reset() {
      t_block = nullptr;
      threadIdx = uint3{0, 0, 0};
      blockIdx = uint3{0, 0, 0};
      blockDim = dim3(1, 1, 1);
      gridDim = dim3(1, 1, 1);
    }
  } reset;
  blockDim = block;
  gridDim = grid;
  t_block = &b;
  for (const uint3& bid : blocks) {
    blockIdx = bid;
    for (int i = 0; i < n; ++i) {
      const Stack& s = t_stacks.stacks[static_cast<size_t>(i)];
      set_state(b, b.fibers[i], State::runnable);
      b.fibers[i].copies.clear();
      b.fibers[i].group_sizes.clear();
      make_context(&b.fibers[i].ctx, s.lo(), s.usable(), &fiber_main, &b);
    }
    for (auto& w : b.warps) {
      w.arrived = 0;
      w.expected = 0;
      w.op = nullptr;
    }
    b.barrier_arrived = 0;
    if (smem) memset(smem, 0xff, smem_bytes);
    run_block(b, sched, &rng);
    ++g_blocks;
    g_threads += static_cast<unsigned long long>(n);
  }
}

}  // namespace detail
}  // namespace mbk_emu
