// IQ2_XXS lookup tables (FORMATS.md §4.6), data copied from ggml; see iq2_xxs_tables.cc.
#pragma once

#include <cstdint>

namespace dsv4::quant {

// 8 magnitudes per entry, one per byte (little-endian), each 8, 25 or 43.
extern const uint64_t iq2xxs_grid[256];
// Sign byte for a 7-bit index: the index in bits 0..6, bit 7 = parity, so every byte has an
// even number of set (negative) bits.
extern const uint8_t ksigns_iq2xs[128];
// 1 << t.
extern const uint8_t kmask_iq2xs[8];

}  // namespace dsv4::quant
