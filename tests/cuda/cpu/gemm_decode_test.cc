// The GEMM's weight decoders (cuda/gemm_decode.cuh) run on the CPU against quant::dequantize_row,
// on fresh random blocks, every stage offset the kernel can produce (a stage sits in shared memory
// at its global address mod 16) and every 8-element chunk of a stage. Exact formats must give
// f16_satfinite(dequantize_row) bit for bit; Q2_K/Q4_K use one FMA where the CPU rounds twice, so
// their f32 value may differ by ≤ 1.5·2^-23·(|step·q| + |offset|) and the f16 may be the other
// neighbour only when that interval straddles a rounding midpoint. A last test pins the
// saturation of weights beyond f16's range. The split GEMM's code decoders (gemm_codes.cuh) follow.
#include <cuda_runtime.h>  // __host__ / __device__ and the vector types, for host compilation
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/gemm_codes.cuh"
#include "cuda/gemm_decode.cuh"
#include "cuda/gemm_int8_codes.cuh"
#include "quant/iq2_xxs_tables.h"

namespace dsv4::cuda::testing {
namespace {

// The IQ2_XXS tables as FmtIQ2_XXS::load_tables lays them out: grid as uint2, then the signs.
std::vector<uint8_t> shared_tables() {
  std::vector<uint8_t> t(2048 + 128);
  for (int i = 0; i < 256; ++i) std::memcpy(t.data() + 8 * i, &quant::iq2xxs_grid[i], 8);
  for (int i = 0; i < 128; ++i) t[static_cast<size_t>(2048 + i)] = quant::ksigns_iq2xs[i];
  return t;
}

// Stages every kStageBytes block of 16 random rows (1024 elements) at each offset of `offsets`
// (poisoned around it) and calls visit(staged, row, stage_first_element, offset, want, mag) with the
// row's dequantised values and magnitudes. Returns how many stages it visited.
template <class D, class Visit>
int for_each_stage(const Format& f, std::mt19937_64& rng, const std::vector<int>& offsets, Visit visit) {
  const int64_t n_in = 1024, n_rows = 16;
  const std::vector<uint8_t> w = random_rows(f, n_in, n_rows, rng);
  alignas(16) uint8_t stage[512 + 32];
  int visited = 0;
  for (int64_t r = 0; r < n_rows; ++r) {
    const uint8_t* row = w.data() + r * row_bytes(f, n_in);
    std::vector<float> want(static_cast<size_t>(n_in));
    quant::dequantize_row(f.type, row, want.data(), n_in);
    const std::vector<double> mag = magnitudes(f, row, n_in);
    for (int64_t s = 0; s < n_in / D::kStageElems; ++s) {
      for (const int mis : offsets) {
        std::memset(stage, 0xA5, sizeof stage);
        std::memcpy(stage + mis, row + s * D::kStageBytes, D::kStageBytes);
        visit(stage + mis, r, s * D::kStageElems, mis, want, mag);
        if (::testing::Test::HasFatalFailure()) return visited;
        ++visited;
      }
    }
  }
  return visited;
}

template <class D>
void check_decoder(TensorType type, int natural_alignment) {
  const Format& f = format_of(type);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(std::string(f.name) + " seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::vector<uint8_t> tables = shared_tables();
  const bool fused = type == TensorType::Q2_K || type == TensorType::Q4_K;
  std::vector<int> offsets;
  for (int mis = 0; mis <= D::kMisalign; mis += natural_alignment) offsets.push_back(mis);
  const auto check = [&](const uint8_t* staged, int64_t r, int64_t first, int mis, const std::vector<float>& want,
                          const std::vector<double>& mag) {
    for (int e = 0; e < D::kStageElems; e += 8) {
      const uint4 v = D::decode8(staged, e, tables.data());
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
      for (int i = 0; i < 8; ++i) {
        const size_t j = static_cast<size_t>(first + e + i);
        const uint16_t got = static_cast<uint16_t>(words[i / 2] >> (16 * (i % 2)));
        const uint16_t exact = detail::f16_satfinite(want[j]);
        bool ok = got == exact;
        if (!ok && fused) {
          const double delta = 1.5 * std::ldexp(mag[j], -23);
          ok = got == detail::f16_satfinite(static_cast<float>(want[j] - delta)) ||
               got == detail::f16_satfinite(static_cast<float>(want[j] + delta));
        }
        ASSERT_TRUE(ok) << "row " << r << " element " << j << " offset " << mis << ": got f16 0x" << std::hex
                        << got << ", want 0x" << exact << std::dec << " (" << want[j] << ")";
      }
    }
  };
  EXPECT_GT(for_each_stage<D>(f, rng, offsets, check), 0);
}

TEST(GemmDecode, F32) { check_decoder<detail::GemmF32>(TensorType::F32, 16); }
TEST(GemmDecode, F16) { check_decoder<detail::GemmF16>(TensorType::F16, 16); }
TEST(GemmDecode, BF16) { check_decoder<detail::GemmBF16>(TensorType::BF16, 16); }
TEST(GemmDecode, Q8_0) { check_decoder<detail::GemmQ8_0>(TensorType::Q8_0, 4); }
TEST(GemmDecode, Q2_K) { check_decoder<detail::GemmQ2_K>(TensorType::Q2_K, 4); }
TEST(GemmDecode, Q4_K) { check_decoder<detail::GemmQ4_K>(TensorType::Q4_K, 16); }
TEST(GemmDecode, IQ2_XXS) { check_decoder<detail::GemmIQ2_XXS>(TensorType::IQ2_XXS, 2); }

// The tables a split decoder reads: CodesIQ2_XXS lays out its own (an f16 grid), the others the
// f16 decoders' ones.
template <class D>
std::vector<uint8_t> codes_tables() {
  if constexpr (std::is_same_v<D, detail::CodesIQ2_XXS>) {
    std::vector<uint8_t> t(D::kTableBytes);
    for (int i = 0; i < 256; ++i) D::table_entry(t.data(), quant::iq2xxs_grid, quant::ksigns_iq2xs, i);
    return t;
  }
  return shared_tables();
}

// The split GEMM's decoders (gemm_codes.cuh): every code of a scaled format is an integer of
// magnitude ≤ 2048 (exact in f16; F16's code is the weight), and scale·code − min_term equals
// dequantize_row's value up to the CPU's own f32 roundings of step·q − offset (≤ 2^-23·mag;
// exactly for the other formats, whose f32 values are exact products).
template <class D>
void check_codes(TensorType type) {
  const Format& f = format_of(type);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(std::string(f.name) + " seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::vector<uint8_t> tables = codes_tables<D>();
  const auto check = [&](const uint8_t* staged, int64_t r, int64_t first, int, const std::vector<float>& want,
                          const std::vector<double>& mag) {
    for (int e = 0; e < D::kStageElems; e += 8) {
      const uint4 v = D::codes8(staged, e, tables.data());
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
      for (int i = 0; i < 8; ++i) {
        const size_t j = static_cast<size_t>(first + e + i);
        const double code = f16_to_f32(static_cast<uint16_t>(words[i / 2] >> (16 * (i % 2))));
        if (D::kScaled) {  // F16: the code is the weight itself
          ASSERT_EQ(code, std::nearbyint(code)) << "element " << j;
          ASSERT_LE(std::fabs(code), 2048.0) << "element " << j;
        }
        const double scale = D::kScaled ? D::scale(staged, e + i) : 1.0;
        const double value = scale * code - (D::kMinGroups ? D::min_term(staged, e + i) : 0.0);
        ASSERT_LE(std::fabs(value - want[j]), std::ldexp(mag[j], -23))
            << "row " << r << " element " << j << ": scale " << scale << " code " << code << " gives " << value
            << ", want " << want[j];
      }
    }
  };
  // The largest offset only (the f16 decoders' test covers the others).
  EXPECT_GT(for_each_stage<D>(f, rng, {D::kMisalign}, check), 0);
}

TEST(GemmCodes, F16) { check_codes<detail::CodesF16>(TensorType::F16); }
TEST(GemmCodes, Q8_0) { check_codes<detail::CodesQ8_0>(TensorType::Q8_0); }
TEST(GemmCodes, Q2_K) { check_codes<detail::CodesQ2_K>(TensorType::Q2_K); }
TEST(GemmCodes, Q4_K) { check_codes<detail::CodesQ4_K>(TensorType::Q4_K); }
TEST(GemmCodes, IQ2_XXS) { check_codes<detail::CodesIQ2_XXS>(TensorType::IQ2_XXS); }

// Every grid point with every sign pattern in every group position (the sign spreading of
// CodesIQ2_XXS::codes8 depends on both), against dequantize_row, exactly, and codes32, one_group8
// and one_group8_odd against codes8 and scale: blocks with d = 1 and
// random sub-block scales, group g of sub-block sb holding point (i + 4·sb + g) mod 256 and pattern
// (s + sb + g) mod 128 for every i and s.
TEST(GemmCodes, IQ2_XXSEveryGridPointAndSignPattern) {
  using D = detail::CodesIQ2_XXS;
  const std::vector<uint8_t> tables = codes_tables<D>();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  alignas(16) uint8_t block[80] = {};
  float want[256];
  for (int i = 0; i < 256; ++i) {
    for (int s = 0; s < 128; ++s) {
      block[0] = 0x00;
      block[1] = 0x3C;  // d = 1
      for (int sb = 0; sb < 8; ++sb) {
        uint32_t a0 = 0, a1 = static_cast<uint32_t>(rng() & 15u) << 28;
        for (int g = 0; g < 4; ++g) {
          a0 |= static_cast<uint32_t>((i + 4 * sb + g) % 256) << (8 * g);
          a1 |= static_cast<uint32_t>((s + sb + g) % 128) << (7 * g);
        }
        std::memcpy(block + 2 + 8 * sb, &a0, 4);
        std::memcpy(block + 6 + 8 * sb, &a1, 4);
      }
      quant::dequantize_row(TensorType::IQ2_XXS, block, want, 256);
      for (int e = 0; e < 256; e += 32) {  // codes32: codes8 of its four groups and their scale
        uint4 v[4];
        ASSERT_EQ(D::codes32(block, e, tables.data(), v), D::scale(block, e));
        for (int g = 0; g < 4; ++g) {
          const uint4 w = D::codes8(block, e + 8 * g, tables.data());
          ASSERT_TRUE(v[g].x == w.x && v[g].y == w.y && v[g].z == w.z && v[g].w == w.w) << "element " << e + 8 * g;
          // The one-group decoders of gemm_wgmma_regs.cu: codes8 with block_d8 · odd_factor as the
          // scale, and the codes times 2·ls + 1 with block_d8 as the scale, both exact.
          float odd = 0.0f;
          const uint4 o = D::one_group8(block, e, g, tables.data(), tables.data(), &odd);
          ASSERT_TRUE(o.x == w.x && o.y == w.y && o.z == w.z && o.w == w.w) << "element " << e + 8 * g;
          ASSERT_EQ(D::block_d8(block) * odd, D::scale(block, e));
          const uint4 f = D::one_group8_odd(block, e, g, tables.data(), tables.data());
          const uint32_t folded[4] = {f.x, f.y, f.z, f.w};
          for (int k = 0; k < 8; ++k) {
            const float code = f16_to_f32(static_cast<uint16_t>(folded[k / 2] >> (16 * (k % 2))));
            ASSERT_EQ(D::block_d8(block) * code, want[e + 8 * g + k]) << "folded element " << e + 8 * g + k;
          }
        }
      }
      for (int e = 0; e < 256; e += 8) {
        const uint4 v = D::codes8(block, e, tables.data());
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
        for (int k = 0; k < 8; ++k) {
          const double code = f16_to_f32(static_cast<uint16_t>(words[k / 2] >> (16 * (k % 2))));
          ASSERT_EQ(D::scale(block, e + k) * code, want[e + k])
              << "point " << i << " pattern " << s << " element " << e + k;
        }
      }
    }
  }
}

// The int8 GEMM's Q2_K decoder (gemm_int8_codes.cuh) at every stage offset: codes are int8 q·sc
// ≤ 45, and with the feature record's d, dmin·2^12 and m pairs, d·code − dmin·m equals
// dequantize_row's value up to its own f32 roundings (≤ 2^-23·mag).
TEST(GemmInt8Codes, Q2_K) {
  using D = detail::Int8Q2_K;
  const Format& f = format_of(TensorType::Q2_K);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<int> offsets;
  for (int mis = 0; mis <= D::kMisalign; mis += 4) offsets.push_back(mis);
  const auto check = [&](const uint8_t* staged, int64_t r, int64_t first, int, const std::vector<float>& want,
                         const std::vector<double>& mag) {
    float rec[detail::kInt8TableWords];
    D::table(staged, rec);
    for (int e = 0; e < D::kStageElems; e += 16) {
      const uint4 v = D::codes16(staged, e);
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
      for (int i = 0; i < 16; ++i) {
        const size_t j = static_cast<size_t>(first + e + i);
        const int code = static_cast<int8_t>(words[i / 4] >> (8 * (i % 4)));
        ASSERT_GE(code, 0);
        ASSERT_LE(code, 45);
        uint32_t mw;
        std::memcpy(&mw, &rec[2 + (e / 16) / 2], 4);
        const double m = f16_to_f32(static_cast<uint16_t>(mw >> (16 * ((e / 16) % 2))));
        const double value = static_cast<double>(rec[0]) * code - static_cast<double>(rec[1]) / 4096.0 * m;
        ASSERT_LE(std::fabs(value - want[j]), std::ldexp(mag[j], -23))
            << "row " << r << " element " << j << ": d " << rec[0] << " code " << code << " m " << m;
      }
    }
  };
  EXPECT_GT(for_each_stage<D>(f, rng, offsets, check), 0);
}

// A block's term from limb chains: the biased chains read back exactly, combined as
// 2^E·(d·(c0 + 2^8·c1 + 2^16·c2) − dmin·2^12·o), within the four f32 roundings of the header.
TEST(GemmInt8Codes, BlockTerm) {
  std::mt19937_64 rng(fresh_seed());
  for (int it = 0; it < 10000; ++it) {
    int32_t c[3];
    for (int32_t& v : c) v = static_cast<int32_t>(rng() % (1u << 23)) - (1 << 22) + 1;  // |v| < 2^22
    const float o = std::ldexp(static_cast<float>(static_cast<int32_t>(rng() % 2000001) - 1000000), -10);
    const float d = std::ldexp(1.0f + static_cast<float>(rng() % 1024) / 1024.0f, static_cast<int>(rng() % 20) - 18);
    const float dm = std::ldexp(1.0f + static_cast<float>(rng() % 1024) / 1024.0f, static_cast<int>(rng() % 20) - 6);
    const float e2 = std::ldexp(1.0f, static_cast<int>(rng() % 60) - 40);
    const float acc = static_cast<float>(rng() % 1000) * 1e-3f;
    const double v = c[0] + 256.0 * c[1] + 65536.0 * c[2];
    const double exact = acc + static_cast<double>(e2) * (d * v - static_cast<double>(dm) * o);
    const double mag = std::fabs(acc) + e2 * (d * (std::fabs(c[0]) + 256.0 * std::fabs(c[1]) + 65536.0 * std::fabs(c[2])) +
                                            dm * std::fabs(o));
    const float got = detail::int8_block_term(acc, c[0] + detail::kCBias, c[1] + detail::kCBias,
                                              c[2] + detail::kCBias, o, d, dm, e2);
    ASSERT_LE(std::fabs(got - exact), 5.0 * std::ldexp(mag, -24)) << it;
  }
}

// Beyond ±65504 an f16 weight saturates (cvt .satfinite) instead of becoming an infinity; NaN stays.
TEST(GemmDecode, SaturatesBeyondF16Range) {
  alignas(16) float row[64] = {};
  row[0] = 1e6f;
  row[1] = -70000.0f;
  row[2] = 65504.0f;
  row[3] = 65519.0f;  // rounds to 65504
  row[4] = std::nanf("");
  row[5] = 1.0f;
  const uint4 v = detail::GemmF32::decode8(reinterpret_cast<const uint8_t*>(row), 0, nullptr);
  EXPECT_EQ(v.x & 0xFFFFu, 0x7BFFu);
  EXPECT_EQ(v.x >> 16, 0xFBFFu);
  EXPECT_EQ(v.y & 0xFFFFu, 0x7BFFu);
  EXPECT_EQ(v.y >> 16, 0x7BFFu);
  EXPECT_EQ((v.z & 0x7C00u), 0x7C00u);
  EXPECT_NE((v.z & 0x03FFu), 0u);  // NaN
  EXPECT_EQ(v.z >> 16, 0x3C00u);
}

}  // namespace
}  // namespace dsv4::cuda::testing
