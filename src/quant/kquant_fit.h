// The quantiser shared by Q2_K and Q4_K: both store x ≈ (d·sc)·q − dmin·mn per sub-block, with
// sc and mn small integer codes and d, dmin f16 per 256-element super-block.
#pragma once

#include <cstdint>

namespace dsv4::quant {

struct KSuperBlock {
  float d = 0.0f, dmin = 0.0f;  // already rounded through f16: store with store_f16
  uint8_t sc[16] = {};          // per sub-block scale code, [0, code_max]
  uint8_t mn[16] = {};          // per sub-block min code, [0, code_max]
  uint8_t q[256] = {};          // per element, [0, qmax]
};

// Quantises 256 values split into n_sub sub-blocks of sub_len. Each sub-block's (scale, min) is
// fitted by least squares from several starting grids; the per-block factors are
// max/code_max, and each sub-block then takes the best of its neighbouring integer codes,
// judged with the exact f32 arithmetic the dequantiser uses.
void quantize_k_superblock(const float* x, int n_sub, int sub_len, int qmax, int code_max,
                           KSuperBlock* out);

}  // namespace dsv4::quant
