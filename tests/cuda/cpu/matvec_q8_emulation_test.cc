// The Q8_0 row-tile kernel's per-lane code (cuda/matvec_q8.cuh) run on the CPU: one item of a tile
// copied chunk by chunk the way the warp's cp.async do it (into a buffer full of garbage), each
// lane's row read back from its place in the buffer and dotted with the same decoder the kernel
// uses, against quant::dot_row and the exact dot. Partial last tiles (rows past the matrix re-read
// its last row) and rows of one to many superblocks. The GPU suite (tests/cuda/matvec_test.cc)
// checks the kernel itself.
#include <cuda_runtime.h>  // __host__ / __device__ and the vector types, for host compilation
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/matvec_q8.cuh"

namespace dsv4::cuda::testing {
namespace {

using detail::kQ8ItemBytes;
using detail::kQ8SbBytes;
using detail::kQ8SbChunks;
using detail::kQ8SbElems;
using detail::kQ8SbWords;
using detail::kQ8TileRows;

TEST(CudaMatvecQ8Emulation, ChunksCoverTheTileOnceAndLandWhereLanesRead) {
  std::set<int> seen;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < kQ8SbChunks; ++j) {
      const int c = lane + 32 * j;
      EXPECT_TRUE(seen.insert(c).second) << "chunk " << c << " copied twice";
      // Destination byte 16c must be where row c/17's lane reads chunk c%17.
      const int row = detail::q8_chunk_row(lane, j);
      EXPECT_EQ(16 * c, row * kQ8SbBytes + 16 * (c % kQ8SbChunks));
      EXPECT_EQ(detail::q8_chunk_offset(lane, j, 1000 * 16, 31), row * 16000 + 16 * (c % kQ8SbChunks));
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kQ8TileRows * kQ8SbChunks));
  EXPECT_EQ(*seen.rbegin(), kQ8TileRows * kQ8SbChunks - 1);
}

// One tile's superblock `sb` (rows row0.. of a matrix of n_rows), as the kernel stages and decodes
// it; returns each valid lane's Σ over that superblock.
std::vector<float> emulate_item(const std::vector<uint8_t>& w, int64_t row_bytes, int64_t n_rows, int64_t row0,
                                int sb, const float* x, std::mt19937_64& rng) {
  std::vector<uint8_t> buf(kQ8ItemBytes);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  const int last_row = static_cast<int>(n_rows - 1 - row0);
  const uint8_t* base = w.data() + row0 * row_bytes + static_cast<int64_t>(sb) * kQ8SbBytes;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < kQ8SbChunks; ++j) {
      const int64_t off = detail::q8_chunk_offset(lane, j, row_bytes, last_row < 31 ? last_row : 31);
      const uint8_t* src = base + off;
      EXPECT_TRUE(src >= w.data() && src + 16 <= w.data() + w.size()) << "read outside the tensor";
      if (src < w.data() || src + 16 > w.data() + w.size()) return {};
      std::memcpy(buf.data() + 16 * (lane + 32 * j), src, 16);
    }
  }
  // The warp's activation buffer, staged float4 by float4 through the lanes' map.
  std::vector<float> xbuf(kQ8SbElems, std::nanf(""));
  const float* xs = x + static_cast<int64_t>(sb) * kQ8SbElems;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < detail::kQ8XChunks; ++j) {
      const int e = detail::q8_x_index(lane, j);
      std::memcpy(xbuf.data() + e, xs + e, 16);
    }
  }
  std::vector<float> out;
  for (int lane = 0; lane < 32 && lane <= last_row; ++lane) {
    uint32_t words[kQ8SbWords];
    std::memcpy(words, buf.data() + lane * kQ8SbBytes, kQ8SbBytes);
    out.push_back(detail::q8_superblock_dot(words, [&xbuf](int e) {
      return make_float4(xbuf[e], xbuf[e + 1], xbuf[e + 2], xbuf[e + 3]);
    }));
  }
  return out;
}

TEST(CudaMatvecQ8Emulation, ActivationChunksCoverAnItemOnce) {
  std::set<int> seen;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < detail::kQ8XChunks; ++j) {
      const int e = detail::q8_x_index(lane, j);
      EXPECT_EQ(e % 4, 0);
      EXPECT_TRUE(seen.insert(e).second) << "element " << e << " staged twice";
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kQ8SbElems / 4));
  EXPECT_EQ(*seen.rbegin(), kQ8SbElems - 4);
}

TEST(CudaMatvecQ8Emulation, SuperblockDotsMatchTheCpu) {
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Format& f = format_of(TensorType::Q8_0);
  for (int64_t n_in : {256, 768, 4096}) {
    for (int64_t n_rows : {1, 31, 32, 45, 96}) {
      const std::vector<uint8_t> w = random_rows(f, n_in, n_rows, rng);
      const std::vector<float> x = gaussian(n_in, rng);
      const int64_t rb = row_bytes(f, n_in);
      ASSERT_EQ(rb % 16, 0);
      std::vector<double> got(static_cast<size_t>(n_rows), 0.0);
      for (int64_t row0 = 0; row0 < n_rows; row0 += kQ8TileRows) {
        for (int sb = 0; sb < n_in / kQ8SbElems; ++sb) {
          const std::vector<float> part = emulate_item(w, rb, n_rows, row0, sb, x.data(), rng);
          if (HasFailure()) return;
          ASSERT_EQ(static_cast<int64_t>(part.size()), std::min<int64_t>(kQ8TileRows, n_rows - row0));
          for (size_t r = 0; r < part.size(); ++r) got[static_cast<size_t>(row0) + r] += part[r];
        }
      }
      for (int64_t o = 0; o < n_rows; ++o) {
        const RowRef ref = row_reference(f, w.data() + o * rb, x.data(), n_in);
        const double tol = 1e-5 * ref.scale + 1e-30;
        EXPECT_NEAR(got[static_cast<size_t>(o)], ref.cpu, tol) << n_in << " x " << n_rows << ", row " << o;
        EXPECT_NEAR(got[static_cast<size_t>(o)], ref.exact, tol) << n_in << " x " << n_rows << ", row " << o;
      }
    }
  }
}

// Every quant byte position and the scale of every block of a superblock decode to the value the
// format gives (one nonzero weight at a time: the dot is then that weight times its x).
TEST(CudaMatvecQ8Emulation, EveryBytePositionDecodes) {
  std::vector<float> x(kQ8SbElems);
  for (int i = 0; i < kQ8SbElems; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i + 1);
  for (int b = 0; b < 8; ++b) {
    for (int i = 0; i < 32; ++i) {
      for (int q : {-128, -1, 1, 127}) {
        uint8_t sbytes[kQ8SbBytes] = {};
        const uint16_t half_two = 0x4000;  // 2.0
        std::memcpy(sbytes + 34 * b, &half_two, 2);
        sbytes[34 * b + 2 + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
        uint32_t words[kQ8SbWords];
        std::memcpy(words, sbytes, kQ8SbBytes);
        const float got = detail::q8_superblock_dot(words, [&x](int e) {
          return make_float4(x[static_cast<size_t>(e)], x[static_cast<size_t>(e) + 1], x[static_cast<size_t>(e) + 2],
                             x[static_cast<size_t>(e) + 3]);
        });
        EXPECT_EQ(got, 2.0f * static_cast<float>(q) * static_cast<float>(32 * b + i + 1))
            << "block " << b << ", byte " << i << ", q " << q;
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
