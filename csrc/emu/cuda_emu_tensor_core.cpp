// cuda_emu_tensor_core.cpp -- mma.m16n8k16 and ldmatrix as warp collectives of the CPU emulator
// (see cuda_emu_tensor_core.h for the model, mbk/tensor_core.cuh for the fragment layouts).
#include "cuda_emu_tensor_core.h"

#include <sstream>
#include <stdexcept>
#include <string>

namespace mbk_emu {
namespace detail {
namespace {

// ------------------------------------------------------------------------------------------
// mma.m16n8k16.row.col.f32.{f16,bf16}: lane (g = lane/4, t = lane%4) holds
//   a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..2t+1], a[2] = A[g][2t+8..2t+9], a[3] = A[g+8][2t+8..2t+9]
//   b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]
//   c/d: [0..1] = C[g][2t..2t+1], [2..3] = C[g+8][2t..2t+1]
// Words exchanged per lane: a[0] | a[1] << 32, a[2] | a[3] << 32, b[0] | b[1] << 32.
template <bool kBf16>
void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  static const WarpOp op{kBf16 ? "mma_m16n8k16<__nv_bfloat16>" : "mma_m16n8k16<__half>", true, nullptr};
  const uint64_t in[3] = {a[0] | uint64_t(a[1]) << 32, a[2] | uint64_t(a[3]) << 32, b[0] | uint64_t(b[1]) << 32};
  unsigned participants;
  int lane;
  const uint64_t(*w)[32] = warp_collective(0xffffffffu, op, in, 3, &participants, &lane);
  const auto to_float = [](uint32_t bits16) {
    return kBf16 ? bf16_bits_to_float(static_cast<unsigned short>(bits16))
                 : half_bits_to_float(static_cast<unsigned short>(bits16));
  };
  const int g = lane / 4, t = lane % 4;
  // Rows g and g+8 of A (k = 0..15) live in lanes 4g..4g+3; columns 2t and 2t+1 of B in lanes
  // 4(2t)..4(2t)+3 and 4(2t+1)..4(2t+1)+3.
  float arow[2][16], bcol[2][16];
  for (int q = 0; q < 4; ++q) {
    const uint64_t lo = w[0][4 * g + q], hi = w[1][4 * g + q];  // A k 2q..2q+1 and 2q+8..2q+9
    for (int r = 0; r < 2; ++r) {
      const uint32_t k0 = static_cast<uint32_t>(lo >> (32 * r)), k8 = static_cast<uint32_t>(hi >> (32 * r));
      arow[r][2 * q] = to_float(k0 & 0xffffu);
      arow[r][2 * q + 1] = to_float(k0 >> 16);
      arow[r][2 * q + 8] = to_float(k8 & 0xffffu);
      arow[r][2 * q + 9] = to_float(k8 >> 16);
    }
    for (int n = 0; n < 2; ++n) {
      const uint64_t bw = w[2][4 * (2 * t + n) + q];
      const uint32_t k0 = static_cast<uint32_t>(bw), k8 = static_cast<uint32_t>(bw >> 32);
      bcol[n][2 * q] = to_float(k0 & 0xffffu);
      bcol[n][2 * q + 1] = to_float(k0 >> 16);
      bcol[n][2 * q + 8] = to_float(k8 & 0xffffu);
      bcol[n][2 * q + 9] = to_float(k8 >> 16);
    }
  }
  float out[4];
  for (int r = 0; r < 2; ++r)
    for (int n = 0; n < 2; ++n) {
      float acc = c[2 * r + n];
      for (int k = 0; k < 16; ++k) acc += arow[r][k] * bcol[n][k];  // each product exact in float
      out[2 * r + n] = acc;
    }
  for (int i = 0; i < 4; ++i) d[i] = out[i];  // d may alias c
}

// ------------------------------------------------------------------------------------------
// ldmatrix.m8n8.xN[.trans].b16: lanes 8i..8i+7 give the row addresses of matrix i; lane L gets
//   r[i] = M_i[L/4][2(L%4)] | M_i[L/4][2(L%4)+1] << 16         (plain)
//   r[i] = M_i[2(L%4)][L/4] | M_i[2(L%4)+1][L/4] << 16         (.trans)
// Input word 0 of each lane: its address; output words 0-1: r[0] | r[1] << 32, r[2] | r[3] << 32.
template <int N, bool kTrans>
void ldmatrix_complete(uint64_t (*table)[32], unsigned /*participants: always the full warp*/) {
  uint16_t m[N][8][8];
  for (int lane = 0; lane < 8 * N; ++lane) {
    const uint64_t addr = table[0][lane];
    if (addr == 0 || (addr & 15u) != 0) {
      std::ostringstream o;
      o << "lane " << lane << " gives row address 0x" << std::hex << addr << std::dec << " (row " << lane % 8
        << " of matrix " << lane / 8 << "); ldmatrix rows must be 16-byte aligned shared-memory addresses";
      throw std::runtime_error(o.str());
    }
    memcpy(m[lane / 8][lane % 8], reinterpret_cast<const void*>(addr), 16);
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int row = lane / 4, col = 2 * (lane % 4);
    uint32_t r[4] = {0, 0, 0, 0};
    for (int i = 0; i < N; ++i) {
      const uint32_t lo = kTrans ? m[i][col][row] : m[i][row][col];
      const uint32_t hi = kTrans ? m[i][col + 1][row] : m[i][row][col + 1];
      r[i] = lo | hi << 16;
    }
    table[0][lane] = r[0] | uint64_t(r[1]) << 32;
    table[1][lane] = r[2] | uint64_t(r[3]) << 32;
  }
}

template <int N, bool kTrans>
const WarpOp* ldmatrix_op() {
  static const WarpOp op{N == 1   ? (kTrans ? "ldmatrix_x1_trans" : "ldmatrix_x1")
                         : N == 2 ? (kTrans ? "ldmatrix_x2_trans" : "ldmatrix_x2")
                                  : (kTrans ? "ldmatrix_x4_trans" : "ldmatrix_x4"),
                         true, &ldmatrix_complete<N, kTrans>};
  return &op;
}

}  // namespace

void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  mma<false>(d, a, b, c);
}
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  mma<true>(d, a, b, c);
}

void ldmatrix(uint32_t* r, int n, bool trans, const void* row) {
  const WarpOp* op = nullptr;
  switch (n) {
    case 1: op = trans ? ldmatrix_op<1, true>() : ldmatrix_op<1, false>(); break;
    case 2: op = trans ? ldmatrix_op<2, true>() : ldmatrix_op<2, false>(); break;
    case 4: op = trans ? ldmatrix_op<4, true>() : ldmatrix_op<4, false>(); break;
    default: throw std::logic_error("ldmatrix: n must be 1, 2 or 4");
  }
  const uint64_t in = reinterpret_cast<uintptr_t>(row);
  unsigned participants;
  int lane;
  const uint64_t(*w)[32] = warp_collective(0xffffffffu, *op, &in, 1, &participants, &lane);
  for (int i = 0; i < n; ++i) r[i] = static_cast<uint32_t>(w[i / 2][lane] >> (32 * (i % 2)));
}

}  // namespace detail
}  // namespace mbk_emu
